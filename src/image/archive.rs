//! Image archives: `oci-archive` (a tar of an OCI layout holding one image)
//! and `docker-archive` (the `docker save` format that `docker load` and
//! `podman load` read). Both are written with the deterministic tar writer
//! under a temporary name and renamed when complete; an oci-archive is also
//! a source, unpacked safely into a directory first.

use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::image::documents::canonical_json;
use crate::image::error::ImageError;
use crate::image::layer::{Content, Entry, Kind, Layer, Owner};
use crate::image::layout::{Layout, OCI_LAYOUT_FILE, REF_NAME};
use crate::image::{media, unpack, Blob, Image};

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

/// `--archive` is neither `oci-archive:FILE` nor `docker-archive:FILE`.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveSpecError {
    /// An unknown kind.
    #[error("--archive {0:?} is not oci-archive:FILE or docker-archive:FILE")]
    Kind(String),
    /// No file.
    #[error("--archive {0:?} names no file")]
    NoFile(String),
}

impl ArchiveSpec {
    /// Parses `oci-archive:FILE` or `docker-archive:FILE`.
    pub fn parse(s: &str) -> Result<Self, ArchiveSpecError> {
        let (kind, path) = if let Some(p) = s.strip_prefix("oci-archive:") {
            (ArchiveKind::Oci, p)
        } else if let Some(p) = s.strip_prefix("docker-archive:") {
            (ArchiveKind::Docker, p)
        } else {
            return Err(ArchiveSpecError::Kind(s.to_string()));
        };
        if path.is_empty() {
            return Err(ArchiveSpecError::NoFile(s.to_string()));
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

fn blob_entry(image: &Image, blob: &Blob) -> Result<Entry, ImageError> {
    let src = image
        .source()
        .local_path(&blob.digest)
        .ok_or_else(|| ImageError::NotLocal {
            origin: image.source().name(),
            digest: blob.digest.clone(),
        })?;
    Ok(Entry {
        path: format!("blobs/sha256/{}", blob.digest.hex()),
        kind: Kind::File(Content::File(src)),
        mode: 0o644,
        owner: Owner::ROOT,
        xattrs: Vec::new(),
    })
}

/// The archive's entries: the blobs, then the format's own files.
fn entries(
    kind: ArchiveKind,
    image: &Image,
    tag: &str,
    repo_tag: &str,
) -> Result<Layer, ImageError> {
    let mut tar = Layer::new();
    let dir = |p: &str| Entry::dir(p, 0o755, Owner::ROOT);
    tar.add(dir("blobs"), Owner::ROOT);
    tar.add(dir("blobs/sha256"), Owner::ROOT);
    for blob in image.blobs() {
        tar.add(blob_entry(image, blob)?, Owner::ROOT);
    }
    match kind {
        ArchiveKind::Oci => {
            // The manifest's exact bytes, as a blob of the layout.
            let manifest = image.manifest_bytes();
            tar.add(
                file_entry(
                    &format!("blobs/sha256/{}", image.digest().hex()),
                    manifest.to_vec(),
                ),
                Owner::ROOT,
            );
            tar.add(
                file_entry("oci-layout", OCI_LAYOUT_FILE.to_vec()),
                Owner::ROOT,
            );
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_INDEX,
                "manifests": [{
                    "mediaType": media::OCI_MANIFEST,
                    "digest": image.digest(),
                    "size": manifest.len(),
                    "annotations": {REF_NAME: tag},
                }],
            });
            tar.add(
                file_entry("index.json", canonical_json(&index)),
                Owner::ROOT,
            );
        }
        ArchiveKind::Docker => {
            let blob_path = |b: &Blob| format!("blobs/sha256/{}", b.digest.hex());
            let m = serde_json::json!([{
                "Config": blob_path(image.config_blob()),
                "RepoTags": [repo_tag],
                "Layers": image.layers().iter().map(blob_path).collect::<Vec<_>>(),
            }]);
            tar.add(file_entry("manifest.json", canonical_json(&m)), Owner::ROOT);
        }
    }
    Ok(tar)
}

/// Writes an image as an archive. `tag` is the OCI ref name; `repo_tag`
/// the docker-archive's RepoTags entry.
pub fn write(
    spec: &ArchiveSpec,
    image: &Image,
    tag: &str,
    repo_tag: &str,
    epoch: u64,
) -> Result<(), ImageError> {
    let tar = entries(spec.kind, image, tag, repo_tag)?;
    let target_dir = fsutil::parent_dir(&spec.path);
    fs_err::create_dir_all(target_dir).map_err(|source| ImageError::Io {
        path: target_dir.to_path_buf(),
        source,
    })?;
    fsutil::write_with(&spec.path, ".archive-", 0o644, |out| {
        tar.write_tar(out, epoch)?;
        Ok(())
    })
}

/// Unpacks an oci-archive into `dir` (which must exist) and opens it as a layout.
pub fn open_oci_archive(path: &Path, dir: &Path) -> Result<Layout, ImageError> {
    let file = fs_err::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    unpack::unpack(std::io::BufReader::new(file), dir)?;
    Layout::open(dir)
}
