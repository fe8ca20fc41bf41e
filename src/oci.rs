//! OCI image configuration, manifest and index, and the OCI image layout on
//! disk.
//!
//! The documents are built with oci-spec's types, whose maps are `HashMap`s;
//! [`canonical_json`] therefore re-serialises every document with its object
//! keys sorted before anything is hashed, so a digest never depends on a
//! hasher's seed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use crate::digest::{Digest, HashingReader};
use crate::fsutil;
use crate::layer::LayerBlob;

/// Annotation naming a manifest in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Failure while reading or writing OCI documents and layouts.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file of the layout could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be written into place.
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
    /// oci-spec refused a document.
    #[error("invalid OCI document: {0}")]
    Spec(String),
    /// A blob's content does not match its digest.
    #[error("blob {path} does not match its digest {expected} (found {found}); delete it and build again")]
    DigestMismatch {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        found: Digest,
    },
    /// The directory is not an OCI layout or lacks the requested image.
    #[error("{path} is not a usable OCI layout: {reason}")]
    BadLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn spec_err(e: impl std::fmt::Display) -> OciError {
    OciError::Spec(e.to_string())
}

/// Serialises a value as compact JSON with every object's keys sorted.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut items: Vec<_> = map.into_iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(items.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let v = serde_json::to_value(value).expect("OCI documents serialise to JSON");
    serde_json::to_vec(&sort(v)).expect("JSON values serialise")
}

/// A content-addressed directory of blobs (`<dir>/<hex digest>`).
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// A store rooted at `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, OciError> {
        let dir = dir.into();
        fs_err::create_dir_all(&dir).map_err(|source| OciError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory holding the blobs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the blob with this digest (which may not exist).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// True when the blob is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Stores bytes under their digest (temporary name, then rename).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, OciError> {
        let digest = Digest::of(bytes);
        if !self.has(&digest) {
            let io_err = |source| OciError::Io {
                path: self.dir.clone(),
                source,
            };
            let mut tmp = fsutil::temp_file(&self.dir, ".blob-").map_err(io_err)?;
            io::Write::write_all(&mut tmp, bytes).map_err(io_err)?;
            tmp.persist(self.path(&digest))
                .map_err(|e| io_err(e.error))?;
        }
        Ok(digest)
    }

    /// Brings a blob of another store here (see [`BlobStore::import_path`]).
    pub fn import(&self, from: &BlobStore, digest: &Digest) -> Result<(), OciError> {
        self.import_path(&from.path(digest), digest)
    }

    /// Brings a file whose digest should be `digest` here: a hard link when
    /// both are on one filesystem (the digest was just computed by the
    /// caller or is the source store's name), else a copy whose digest is
    /// checked before it gets its name.
    pub fn import_path(&self, src: &Path, digest: &Digest) -> Result<(), OciError> {
        if self.has(digest) {
            return Ok(());
        }
        let dest = self.path(digest);
        if std::fs::hard_link(src, &dest).is_ok() {
            return Ok(());
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OciError::Io { path, source }
        };
        let tmp = fsutil::temp_file(&self.dir, ".blob-").map_err(io_err(&self.dir))?;
        let mut reader = HashingReader::new(fs_err::File::open(src).map_err(io_err(src))?);
        io::copy(&mut reader, &mut tmp.as_file()).map_err(io_err(&dest))?;
        let (found, _) = reader.finish();
        if &found != digest {
            return Err(OciError::DigestMismatch {
                path: src.to_path_buf(),
                expected: digest.clone(),
                found,
            });
        }
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(())
    }

    /// Reads a whole (small) blob, checking its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, OciError> {
        let path = self.path(digest);
        let bytes = fs_err::read(&path).map_err(|source| OciError::Io {
            path: path.clone(),
            source,
        })?;
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(OciError::DigestMismatch {
                path,
                expected: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }
}

/// What goes into an image configuration besides its layers.
#[derive(Clone, Debug, Default)]
pub struct ImageSettings {
    /// `Config.User`.
    pub user: String,
    /// `Config.Env`, in order.
    pub env: Vec<String>,
    /// `Config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Config.Cmd`.
    pub cmd: Vec<String>,
    /// `Config.WorkingDir`.
    pub working_dir: String,
    /// `Config.ExposedPorts` (`8080/tcp`).
    pub exposed_ports: Vec<String>,
    /// `Config.Volumes`.
    pub volumes: Vec<String>,
    /// `Config.Labels`.
    pub labels: Vec<(String, String)>,
    /// `created`, RFC 3339.
    pub created: String,
    /// OCI architecture name (`amd64`).
    pub architecture: String,
}

/// One layer of an image with the history line that describes it.
#[derive(Clone, Debug)]
pub struct ImageLayer {
    /// The blob.
    pub blob: LayerBlob,
    /// `history[].created_by`.
    pub created_by: String,
}

/// The serialised configuration and manifest of an image.
#[derive(Clone, Debug)]
pub struct ImageDocuments {
    /// Canonical JSON of the configuration.
    pub config: Vec<u8>,
    /// Canonical JSON of the manifest.
    pub manifest: Vec<u8>,
}

impl ImageDocuments {
    /// Digest of the manifest.
    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// Builds the configuration and manifest of an image.
pub fn image_documents(
    settings: &ImageSettings,
    layers: &[ImageLayer],
) -> Result<ImageDocuments, OciError> {
    let mut config = ConfigBuilder::default()
        .env(settings.env.clone())
        .working_dir(settings.working_dir.clone())
        .labels(settings.labels.iter().cloned().collect::<HashMap<_, _>>());
    if !settings.user.is_empty() {
        config = config.user(settings.user.clone());
    }
    if !settings.entrypoint.is_empty() {
        config = config.entrypoint(settings.entrypoint.clone());
    }
    if !settings.cmd.is_empty() {
        config = config.cmd(settings.cmd.clone());
    }
    if !settings.exposed_ports.is_empty() {
        config = config.exposed_ports(settings.exposed_ports.clone());
    }
    if !settings.volumes.is_empty() {
        config = config.volumes(settings.volumes.clone());
    }
    let config = config.build().map_err(spec_err)?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|l| l.blob.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_err)?;
    let history = layers
        .iter()
        .map(|l| {
            HistoryBuilder::default()
                .created(settings.created.clone())
                .created_by(l.created_by.clone())
                .build()
                .map_err(spec_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let image = ImageConfigurationBuilder::default()
        .created(settings.created.clone())
        .architecture(Arch::from(settings.architecture.as_str()))
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(spec_err)?;
    let config_bytes = canonical_json(&image);
    let config_desc = descriptor(
        MediaType::ImageConfig,
        &Digest::of(&config_bytes),
        config_bytes.len() as u64,
    )?;
    let layer_descs = layers
        .iter()
        .map(|l| {
            descriptor(
                MediaType::from(l.blob.media_type.as_str()),
                &l.blob.digest,
                l.blob.size,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(spec_err)?;
    Ok(ImageDocuments {
        config: config_bytes,
        manifest: canonical_json(&manifest),
    })
}

fn descriptor(media_type: MediaType, digest: &Digest, size: u64) -> Result<Descriptor, OciError> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(oci_spec::image::Digest::from_str(&digest.to_string()).map_err(spec_err)?)
        .size(size)
        .build()
        .map_err(spec_err)
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    blobs: BlobStore,
}

const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl Layout {
    /// Opens or creates a layout at `root`.
    pub fn create(root: &Path) -> Result<Self, OciError> {
        let blobs = BlobStore::open(root.join("blobs").join("sha256"))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            fsutil::write_atomic(&marker, OCI_LAYOUT_FILE)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            blobs,
        })
    }

    /// Opens an existing layout, checking its `oci-layout` marker.
    pub fn open(root: &Path) -> Result<Self, OciError> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            return Err(OciError::BadLayout {
                path: root.to_path_buf(),
                reason: "it has no oci-layout or index.json file".into(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            blobs: BlobStore {
                dir: root.join("blobs").join("sha256"),
            },
        })
    }

    /// Checks, before anything is written, that `root` can take an image:
    /// absent, or a directory whose `index.json` (if any) is an OCI index and
    /// whose `oci-layout` (if any) is the layout marker.
    pub fn check_target(root: &Path) -> Result<(), OciError> {
        let bad = |reason: String| OciError::BadLayout {
            path: root.to_path_buf(),
            reason,
        };
        let Ok(meta) = std::fs::metadata(root) else {
            return Ok(());
        };
        if !meta.is_dir() {
            return Err(bad(
                "it is a file, not a directory; name a directory for the OCI layout".into(),
            ));
        }
        let marker = root.join("oci-layout");
        if marker.exists() {
            let ok = std::fs::read(&marker)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["imageLayoutVersion"].is_string());
            if !ok {
                return Err(bad(
                    "its oci-layout file is not an OCI layout marker; choose another directory"
                        .into(),
                ));
            }
        }
        if root.join("index.json").exists() {
            Layout {
                root: root.to_path_buf(),
                blobs: BlobStore {
                    dir: root.join("blobs").join("sha256"),
                },
            }
            .index()?;
        }
        Ok(())
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout's blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Reads `index.json` (an empty index when there is none).
    pub fn index(&self) -> Result<ImageIndex, OciError> {
        let path = self.root.join("index.json");
        if !path.exists() {
            return ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::<Descriptor>::new())
                .build()
                .map_err(spec_err);
        }
        let bytes = fs_err::read(&path).map_err(|source| OciError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| OciError::BadLayout {
            path: self.root.clone(),
            reason: format!(
                "index.json is not an OCI index ({e}); choose another directory, or move that file away"
            ),
        })
    }

    /// Records a manifest in `index.json` under `ref_name`, replacing an entry
    /// of the same name; `index.json` is rewritten atomically.
    pub fn tag(&self, manifest: &Digest, size: u64, ref_name: &str) -> Result<(), OciError> {
        let mut index = self.index()?;
        let mut desc = descriptor(MediaType::ImageManifest, manifest, size)?;
        desc.set_annotations(Some(HashMap::from([(
            REF_NAME.to_string(),
            ref_name.to_string(),
        )])));
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .map(String::as_str)
                    != Some(ref_name)
            })
            .cloned()
            .collect();
        manifests.push(desc);
        index.set_manifests(manifests);
        Ok(fsutil::write_atomic(
            &self.root.join("index.json"),
            &canonical_json(&index),
        )?)
    }

    /// Finds the manifest named `tag` (or the only one when `tag` is None).
    pub fn resolve(&self, tag: Option<&str>) -> Result<(Digest, ImageManifest), OciError> {
        let index = self.index()?;
        let bad = |reason: String| OciError::BadLayout {
            path: self.root.clone(),
            reason,
        };
        let names: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .cloned()
            })
            .collect();
        let chosen = match tag {
            Some(t) => index
                .manifests()
                .iter()
                .find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .map(String::as_str)
                        == Some(t)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "it has no image tagged {t:?} (tags: {})",
                        names.join(", ")
                    ))
                })?,
            None => match index.manifests().as_slice() {
                [one] => one,
                [] => return Err(bad("its index.json lists no image".into())),
                _ => {
                    return Err(bad(format!(
                        "it holds several images; name one with DIR:TAG (tags: {})",
                        names.join(", ")
                    )))
                }
            },
        };
        let digest: Digest = chosen.digest().to_string().parse().map_err(spec_err)?;
        let bytes = self.blobs.read_verified(&digest)?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "manifest {digest} is not an OCI image manifest: {e}"
            ))
        })?;
        Ok((digest, manifest))
    }

    /// Reads the manifest with this digest.
    pub fn resolve_digest(&self, digest: &Digest) -> Result<(Digest, ImageManifest), OciError> {
        let bytes = self.blobs.read_verified(digest)?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| OciError::BadLayout {
            path: self.root.clone(),
            reason: format!("manifest {digest} is not an OCI image manifest: {e}"),
        })?;
        Ok((digest.clone(), manifest))
    }

    /// Reads and parses an image configuration blob.
    pub fn config(&self, manifest: &ImageManifest) -> Result<ImageConfiguration, OciError> {
        let digest: Digest = manifest
            .config()
            .digest()
            .to_string()
            .parse()
            .map_err(spec_err)?;
        let bytes = self.blobs.read_verified(&digest)?;
        serde_json::from_slice(&bytes).map_err(spec_err)
    }
}

/// A layout written beside its final place (`.pull-XXXXXX` in the nearest
/// existing ancestor) and moved there only when complete, so that a failed
/// pull leaves nothing, and never touches what the destination held.
#[derive(Debug)]
pub struct StagedLayout {
    dir: tempfile::TempDir,
    layout: Layout,
    dest: PathBuf,
}

impl StagedLayout {
    /// Starts a layout that will become (or join) `dest`.
    pub fn new(dest: &Path) -> Result<Self, OciError> {
        Layout::check_target(dest)?;
        let mut at = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let anchor = loop {
            match at {
                Some(p) if p.is_dir() => break p.to_path_buf(),
                Some(p) => at = p.parent().filter(|p| !p.as_os_str().is_empty()),
                None => break PathBuf::from("."),
            }
        };
        let dir = tempfile::Builder::new()
            .prefix(".pull-")
            .tempdir_in(&anchor)
            .map_err(|source| OciError::Io {
                path: anchor.clone(),
                source,
            })?;
        {
            // tempfile makes the directory 0700; a layout is readable by all.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(
                |source| OciError::Io {
                    path: dir.path().to_path_buf(),
                    source,
                },
            )?;
        }
        let layout = Layout::create(dir.path())?;
        Ok(Self {
            dir,
            layout,
            dest: dest.to_path_buf(),
        })
    }

    /// The layout being written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Tags the manifest and moves everything to the destination: the whole
    /// layout when it is new, else each new blob, then its index entry.
    pub fn commit(self, manifest: &Digest, size: u64, ref_name: &str) -> Result<Layout, OciError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OciError::Io { path, source }
        };
        Layout::check_target(&self.dest)?;
        if !self.dest.exists() {
            self.layout.tag(manifest, size, ref_name)?;
            if let Some(parent) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs_err::create_dir_all(parent).map_err(io(parent))?;
            }
            let src = self.dir.keep();
            if let Err(e) = std::fs::rename(&src, &self.dest) {
                let _ = std::fs::remove_dir_all(&src);
                return Err(io(&self.dest)(e));
            }
            return Layout::open(&self.dest);
        }
        let target = Layout::create(&self.dest)?;
        let from = self.layout.blobs().dir();
        for e in fs_err::read_dir(from).map_err(io(from))?.flatten() {
            let name = e.file_name();
            let dest = target.blobs().dir().join(&name);
            if !dest.exists() {
                std::fs::rename(e.path(), &dest).map_err(io(&dest))?;
            }
        }
        target.tag(manifest, size, ref_name)?;
        Ok(target)
    }
}

/// A descriptor's digest in our own type.
pub fn descriptor_digest(desc: &Descriptor) -> Result<Digest, OciError> {
    desc.digest().to_string().parse().map_err(spec_err)
}

/// Platform of the running machine, in OCI terms.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": {"z": 1, "a": 2}, "a": [ {"y": 1, "x": 2} ]});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}"#
        );
    }

    #[test]
    fn tag_replaces_an_entry_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let a = layout.blobs().put_bytes(b"{}").unwrap();
        let b = layout.blobs().put_bytes(b"{ }").unwrap();
        layout.tag(&a, 2, "1.0").unwrap();
        layout.tag(&b, 3, "1.0").unwrap();
        layout.tag(&a, 2, "2.0").unwrap();
        let index = layout.index().unwrap();
        let tagged: Vec<(String, String)> = index
            .manifests()
            .iter()
            .map(|m| {
                (
                    m.annotations()
                        .as_ref()
                        .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                        .cloned()
                        .unwrap_or_default(),
                    m.digest().to_string(),
                )
            })
            .collect();
        assert_eq!(
            tagged,
            [
                ("1.0".to_string(), b.to_string()),
                ("2.0".to_string(), a.to_string())
            ],
            "1.0 now names the second manifest, and only it"
        );
    }
}
