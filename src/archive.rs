//! Image archives: `oci-archive` (a tar of an OCI layout holding one image)
//! and `docker-archive` (the `docker save` format that `docker load` and
//! `podman load` read). Both are written with the deterministic tar writer
//! under a temporary name and renamed when complete.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layer::{Content, Entry, Kind, Layer, Owner};
use crate::oci::{self, Layout};
use crate::Error;

/// Which archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `oci-archive:FILE`.
    Oci,
    /// `docker-archive:FILE`.
    Docker,
}

/// An archive to write or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// Format.
    pub kind: ArchiveKind,
    /// File.
    pub path: PathBuf,
}

impl ArchiveSpec {
    /// Parses `oci-archive:FILE` or `docker-archive:FILE`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (kind, path) = if let Some(p) = s.strip_prefix("oci-archive:") {
            (ArchiveKind::Oci, p)
        } else if let Some(p) = s.strip_prefix("docker-archive:") {
            (ArchiveKind::Docker, p)
        } else {
            return Err(Error::Usage(format!(
                "--archive {s:?} is not oci-archive:FILE or docker-archive:FILE"
            )));
        };
        if path.is_empty() {
            return Err(Error::Usage(format!("--archive {s:?} names no file")));
        }
        Ok(Self {
            kind,
            path: PathBuf::from(path),
        })
    }
}

fn file_entry(path: &str, bytes: Vec<u8>) -> Entry {
    Entry::bytes(path, bytes, 0o644, Owner::ROOT)
}

fn blob_entry(layout: &Layout, digest: &Digest) -> Entry {
    Entry {
        path: format!("blobs/sha256/{}", digest.hex()),
        kind: Kind::File(Content::File(layout.blobs().path(digest))),
        mode: 0o644,
        owner: Owner::ROOT,
        xattrs: Vec::new(),
    }
}

/// Writes the image `manifest` of `layout` as an archive. `tag` is the OCI
/// ref name; `repo_tag` the docker-archive's RepoTags entry.
pub fn write(
    spec: &ArchiveSpec,
    layout: &Layout,
    manifest: &Digest,
    tag: &str,
    repo_tag: &str,
    epoch: u64,
) -> Result<(), Error> {
    let (_, parsed) = layout.resolve_digest(manifest)?;
    let config = oci::descriptor_digest(parsed.config())?;
    let layers: Vec<Digest> = parsed
        .layers()
        .iter()
        .map(oci::descriptor_digest)
        .collect::<Result<_, _>>()?;
    let manifest_size = layout.blobs().read_verified(manifest)?.len();
    let mut tar = Layer::new();
    let dir = |p: &str| Entry::dir(p, 0o755, Owner::ROOT);
    tar.add(dir("blobs"), Owner::ROOT);
    tar.add(dir("blobs/sha256"), Owner::ROOT);
    for d in std::iter::once(&config).chain(&layers) {
        tar.add(blob_entry(layout, d), Owner::ROOT);
    }
    match spec.kind {
        ArchiveKind::Oci => {
            tar.add(blob_entry(layout, manifest), Owner::ROOT);
            tar.add(
                file_entry("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
                Owner::ROOT,
            );
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest,
                    "size": manifest_size,
                    "annotations": {oci::REF_NAME: tag},
                }],
            });
            tar.add(
                file_entry("index.json", oci::canonical_json(&index)),
                Owner::ROOT,
            );
        }
        ArchiveKind::Docker => {
            let m = serde_json::json!([{
                "Config": format!("blobs/sha256/{}", config.hex()),
                "RepoTags": [repo_tag],
                "Layers": layers.iter().map(|d| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
            }]);
            tar.add(
                file_entry("manifest.json", oci::canonical_json(&m)),
                Owner::ROOT,
            );
        }
    }
    let target_dir = crate::fsutil::parent_dir(&spec.path);
    fs_err::create_dir_all(target_dir).map_err(|source| Error::Io {
        path: target_dir.to_path_buf(),
        source,
    })?;
    crate::fsutil::write_with(&spec.path, ".archive-", 0o644, |out| {
        tar.write_tar(out, epoch)?;
        Ok(())
    })
}

/// Unpacks an oci-archive into `dir` (which must exist) and opens it as a layout.
pub fn open_oci_archive(path: &Path, dir: &Path) -> Result<Layout, Error> {
    let file = fs_err::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    crate::unpack::unpack(std::io::BufReader::new(file), dir)?;
    Ok(Layout::open(dir)?)
}
