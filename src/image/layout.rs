//! The OCI image layout on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/`): a source of images and a sink for them.
//!
//! Everything is written under a temporary name and renamed, and
//! `index.json` last, so an interrupted write never leaves an index naming
//! missing blobs. [`StagedLayout`] writes a whole layout beside its final
//! place and moves it there only when complete (pulls).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::digest::Digest;
use crate::fsutil;
use crate::image::blobs::{descriptor_digest, BlobSource, BlobStore};
use crate::image::documents::{canonical_json, descriptor};
use crate::image::error::ImageError;
use crate::image::{parse_index, Image};

/// Annotation naming a manifest in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The `oci-layout` file's content.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    blobs: BlobStore,
}

/// The blobs of a layout, as an image's source: named after the layout.
#[derive(Debug)]
struct LayoutBlobs {
    root: PathBuf,
    blobs: BlobStore,
}

impl BlobSource for LayoutBlobs {
    fn name(&self) -> String {
        format!("OCI layout {}", self.root.display())
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.blobs.path(digest))
    }
}

impl Layout {
    /// Opens or creates a layout at `root`.
    pub fn create(root: &Path) -> Result<Self, ImageError> {
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
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            return Err(ImageError::BadLayout {
                path: root.to_path_buf(),
                reason: "it has no oci-layout or index.json file".into(),
            });
        }
        Ok(Self::at(root))
    }

    fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            blobs: BlobStore::at(root.join("blobs").join("sha256")),
        }
    }

    /// Checks, before anything is written, that `root` can take an image:
    /// absent, or a directory whose `index.json` (if any) is an OCI index and
    /// whose `oci-layout` (if any) is the layout marker.
    pub fn check_target(root: &Path) -> Result<(), ImageError> {
        let bad = |reason: &str| ImageError::BadLayout {
            path: root.to_path_buf(),
            reason: reason.to_string(),
        };
        let Ok(meta) = std::fs::metadata(root) else {
            return Ok(());
        };
        if !meta.is_dir() {
            return Err(bad(
                "it is a file, not a directory; name a directory for the OCI layout",
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
                    "its oci-layout file is not an OCI layout marker; choose another directory",
                ));
            }
        }
        if root.join("index.json").exists() {
            Self::at(root).index()?;
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

    /// The layout's blobs as an image source.
    fn source(&self) -> Arc<dyn BlobSource> {
        Arc::new(LayoutBlobs {
            root: self.root.clone(),
            blobs: self.blobs.clone(),
        })
    }

    /// Reads `index.json` (an empty index when there is none).
    pub fn index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.root.join("index.json");
        if !path.exists() {
            return ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::<Descriptor>::new())
                .build()
                .map_err(|source| ImageError::Document {
                    what: "index",
                    source,
                });
        }
        let bytes = fs_err::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        parse_index(&bytes).map_err(|source| ImageError::BadIndex {
            path: self.root.clone(),
            source,
        })
    }

    /// Records a manifest in `index.json` under `ref_name`, replacing an entry
    /// of the same name; `index.json` is rewritten atomically.
    pub fn tag(&self, manifest: &Digest, size: u64, ref_name: &str) -> Result<(), ImageError> {
        let mut index = self.index()?;
        let mut desc = descriptor(MediaType::ImageManifest, manifest, size)?;
        desc.set_annotations(Some(HashMap::from([(
            REF_NAME.to_string(),
            ref_name.to_string(),
        )])));
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name_of(d) != Some(ref_name))
            .cloned()
            .collect();
        manifests.push(desc);
        index.set_manifests(manifests);
        Ok(fsutil::write_atomic(
            &self.root.join("index.json"),
            &canonical_json(&index),
        )?)
    }

    /// The image named `tag` (or the only one when `tag` is None).
    pub fn image(&self, tag: Option<&str>) -> Result<Image, ImageError> {
        let index = self.index()?;
        let bad = |reason: String| ImageError::BadLayout {
            path: self.root.clone(),
            reason,
        };
        let names: Vec<&str> = index.manifests().iter().filter_map(ref_name_of).collect();
        let chosen = match tag {
            Some(t) => index
                .manifests()
                .iter()
                .find(|d| ref_name_of(d) == Some(t))
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
        self.image_by_digest(&descriptor_digest(chosen)?)
    }

    /// The image whose manifest has this digest.
    pub fn image_by_digest(&self, digest: &Digest) -> Result<Image, ImageError> {
        let bytes = self.blobs.read_verified(digest)?;
        Image::from_manifest(bytes, self.source())
    }

    /// Writes an image here: its blobs, its manifest, then its tag in
    /// `index.json`, so that the index never names a missing blob.
    pub fn write_image(&self, image: &Image, tag: &str) -> Result<(), ImageError> {
        for blob in image.layers() {
            image.source().copy_into(blob, &self.blobs)?;
        }
        self.blobs.put_bytes(image.config_bytes()?)?;
        let digest = self.blobs.put_bytes(image.manifest_bytes())?;
        self.tag(&digest, image.manifest_bytes().len() as u64, tag)
    }
}

/// The ref name annotation of an index entry.
fn ref_name_of(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
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
    pub fn new(dest: &Path) -> Result<Self, ImageError> {
        Layout::check_target(dest)?;
        let mut at = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let anchor = loop {
            match at {
                Some(p) if p.is_dir() => break p.to_path_buf(),
                Some(p) => at = p.parent().filter(|p| !p.as_os_str().is_empty()),
                None => break PathBuf::from("."),
            }
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
        };
        let dir = tempfile::Builder::new()
            .prefix(".pull-")
            .tempdir_in(&anchor)
            .map_err(io(&anchor))?;
        // tempfile makes the directory 0700; a layout is readable by all.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(io(dir.path()))?;
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
    pub fn commit(
        self,
        manifest: &Digest,
        size: u64,
        ref_name: &str,
    ) -> Result<Layout, ImageError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
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

#[cfg(test)]
mod tests {
    use super::*;

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
