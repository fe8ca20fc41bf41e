//! Blobs and where they live: the [`BlobSource`] an image reads its blobs
//! from, and [`BlobStore`], the content-addressed directory of the cache, of
//! OCI layouts and of the offline store.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::Descriptor;

use crate::digest::{Digest, HashingReader};
use crate::fsutil;
use crate::image::error::ImageError;

/// One blob an image names: its configuration or a layer (as the build
/// cache's entries name it, too).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl Blob {
    /// The blob a descriptor names.
    pub fn from_descriptor(desc: &Descriptor) -> Result<Self, ImageError> {
        Ok(Self {
            digest: descriptor_digest(desc)?,
            size: desc.size(),
            media_type: desc.media_type().to_string(),
        })
    }
}

/// A descriptor's digest in our own type.
pub fn descriptor_digest(desc: &Descriptor) -> Result<Digest, ImageError> {
    Digest::from_str(desc.digest().as_ref()).map_err(ImageError::Descriptor)
}

/// Where an image's blobs are read from: a blob store on this machine (the
/// cache, an OCI layout, the offline store) or a registry.
pub trait BlobSource: fmt::Debug + Send + Sync {
    /// Where the blobs are, for messages (`OCI layout build/oci`).
    fn name(&self) -> String;

    /// The file holding the blob on this machine, when there is one.
    fn local_path(&self, digest: &Digest) -> Option<PathBuf>;

    /// The blob's file, or the error saying this source has none on disk.
    fn require_local(&self, digest: &Digest) -> Result<PathBuf, ImageError> {
        self.local_path(digest).ok_or_else(|| ImageError::NotLocal {
            origin: self.name(),
            digest: digest.clone(),
        })
    }

    /// Opens a blob to read it from its start (the reader does not check
    /// the digest: callers that need to hash what they read).
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, ImageError> {
        let path = self.require_local(digest)?;
        let file = fs_err::File::open(&path).map_err(|source| ImageError::Io { path, source })?;
        Ok(Box::new(file))
    }

    /// Reads a whole (small) blob, checking its digest.
    fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.require_local(digest)?;
        let bytes = fs_err::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(ImageError::DigestMismatch {
                path,
                expected: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Brings a blob into `store` under its digest, checking it on the way
    /// unless it is a hard link to a file named by its digest already.
    fn copy_into(&self, blob: &Blob, store: &BlobStore) -> Result<(), ImageError> {
        let path = self
            .local_path(&blob.digest)
            .ok_or_else(|| ImageError::NotLocal {
                origin: self.name(),
                digest: blob.digest.clone(),
            })?;
        store.import_path(&path, &blob.digest)
    }
}

/// A content-addressed directory of blobs (`<dir>/<hex digest>`).
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobSource for BlobStore {
    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.path(digest))
    }
}

impl BlobStore {
    /// A store rooted at `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let dir = dir.into();
        fs_err::create_dir_all(&dir).map_err(|source| ImageError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// A store at `dir`, which is not created (a layout opened for reading).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
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
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if !self.has(&digest) {
            let io_err = |source| ImageError::Io {
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
    pub fn import(&self, from: &BlobStore, digest: &Digest) -> Result<(), ImageError> {
        self.import_path(&from.path(digest), digest)
    }

    /// Brings a file whose digest should be `digest` here: a hard link when
    /// both are on one filesystem (the digest was just computed by the
    /// caller or is the source store's name), else a copy whose digest is
    /// checked before it gets its name.
    pub fn import_path(&self, src: &Path, digest: &Digest) -> Result<(), ImageError> {
        if self.has(digest) {
            return Ok(());
        }
        let dest = self.path(digest);
        if std::fs::hard_link(src, &dest).is_ok() {
            return Ok(());
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
        };
        let tmp = fsutil::temp_file(&self.dir, ".blob-").map_err(io_err(&self.dir))?;
        let mut reader = HashingReader::new(fs_err::File::open(src).map_err(io_err(src))?);
        io::copy(&mut reader, &mut tmp.as_file()).map_err(io_err(&dest))?;
        let (found, _) = reader.finish();
        if &found != digest {
            return Err(ImageError::DigestMismatch {
                path: src.to_path_buf(),
                expected: digest.clone(),
                found,
            });
        }
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(())
    }

    /// Reads a whole (small) blob, checking its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        BlobSource::read_verified(self, digest)
    }
}
