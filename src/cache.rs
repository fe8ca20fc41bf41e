//! The content-addressed cache under `$XDG_CACHE_HOME/assemble`.
//!
//! ```text
//! blobs/sha256/<hex>         layer and config blobs, by digest
//! rootfs/<key>/              an unpacked base or compiler rootfs and its layer list
//! wheelhouse/<key>/          wheels compiled for one set of inputs
//! layers/<key>.json          a built layer's description, keyed by its inputs
//! registry/<host>.json       which repositories of a registry hold which blobs (mount sources)
//! pulled/<reference>/        OCI layouts of base images pulled from registries
//! tmp/                       work in progress; renamed into place when complete
//! ```
//!
//! Every entry is made under `tmp/` and renamed to its final name only when
//! complete, so a crash leaves nothing half-made under a final name, and two
//! builds racing for one entry both end up using the same complete one.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::env;
use crate::oci::{BlobStore, OciError};

/// Failure to use the cache directory.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache directory could be determined.
    #[error("no cache directory: set {var} or HOME", var = env::ASSEMBLE_CACHE_DIR)]
    NoHome,
    /// The cache directory could not be used.
    #[error("cannot use cache directory {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blob store failed.
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// The cache.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    blobs: BlobStore,
}

impl Cache {
    /// The cache at `ASSEMBLE_CACHE_DIR`, else `$XDG_CACHE_HOME/assemble`, else `~/.cache/assemble`.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        if let Some(d) = std::env::var_os(env::ASSEMBLE_CACHE_DIR).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os(env::XDG_CACHE_HOME).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d).join("assemble"));
        }
        let home = std::env::var_os("HOME")
            .filter(|d| !d.is_empty())
            .ok_or(CacheError::NoHome)?;
        Ok(PathBuf::from(home).join(".cache").join("assemble"))
    }

    /// Opens (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for sub in [
            "tmp",
            "rootfs",
            "wheelhouse",
            "layers",
            "registry",
            "pulled",
        ] {
            let p = root.join(sub);
            fs_err::create_dir_all(&p).map_err(|source| CacheError::Io { path: p, source })?;
        }
        let blobs = BlobStore::open(root.join("blobs").join("sha256"))?;
        remove_stale(&root.join("tmp"), STALE_AFTER);
        remove_stale(blobs.dir(), STALE_AFTER);
        Ok(Self {
            root: root.to_path_buf(),
            blobs,
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Final path of an entry.
    pub fn entry(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    /// A fresh work directory under `tmp/`, removed when dropped unless committed.
    pub fn work_dir(&self, what: &str) -> Result<tempfile::TempDir, CacheError> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .tempdir_in(&tmp)
            .map_err(|source| CacheError::Io { path: tmp, source })
    }

    /// Renames a complete work directory to its final name. When another
    /// process got there first, its entry is kept and ours is dropped.
    pub fn commit_dir(
        &self,
        work: tempfile::TempDir,
        kind: &str,
        key: &str,
    ) -> Result<PathBuf, CacheError> {
        let dest = self.entry(kind, key);
        let src = work.keep();
        match std::fs::rename(&src, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                crate::unpack::make_writable(&src);
                let _ = std::fs::remove_dir_all(&src);
                Ok(dest)
            }
            Err(source) => Err(CacheError::Io { path: dest, source }),
        }
    }

    /// Reads a JSON record (`kind/key.json`), None when absent or unreadable.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.entry(kind, &format!("{key}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes a JSON record atomically.
    pub fn put_json<T: serde::Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), CacheError> {
        let path = self.entry(kind, &format!("{key}.json"));
        let bytes = serde_json::to_vec_pretty(value).expect("cache records serialise");
        crate::oci::write_atomic(&path, &bytes)?;
        Ok(())
    }
}

/// Work left by a killed run is removed once it is this old: no live build
/// keeps a temporary entry for a day.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes temporary entries (work directories, `.`-prefixed temporary
/// files) older than `age`; final names are never touched.
fn remove_stale(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let is_tmp_dir = dir.ends_with("tmp");
        let is_tmp_file = e.file_name().to_string_lossy().starts_with('.');
        if !(is_tmp_dir || is_tmp_file) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if old {
            let p = e.path();
            if p.is_dir() {
                crate::unpack::make_writable(&p);
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Builds a cache key from labelled parts; each part is length-prefixed so
/// that no two different lists of parts give the same key.
#[derive(Default)]
pub struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    /// A key for entries of the given kind and format version.
    pub fn new(kind: &str) -> Self {
        let mut k = Self::default();
        k.part("kind", kind.as_bytes());
        k
    }

    /// Adds a labelled part.
    pub fn part(&mut self, label: &str, value: &[u8]) -> &mut Self {
        for bytes in [label.as_bytes(), value] {
            self.hasher.update((bytes.len() as u64).to_le_bytes());
            self.hasher.update(bytes);
        }
        self
    }

    /// The key: 32 hex digits are plenty for a local cache.
    pub fn finish(&self) -> String {
        hex::encode(&self.hasher.clone().finalize()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_entries_go_and_final_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join(".layer-x"), "partial").unwrap();
        std::fs::write(blobs.join("ab"), "final").unwrap();
        remove_stale(&blobs, std::time::Duration::ZERO);
        assert!(!blobs.join(".layer-x").exists());
        assert!(blobs.join("ab").exists());
    }

    #[test]
    fn key_parts_are_not_ambiguous() {
        let a = KeyBuilder::new("x").part("a", b"bc").finish();
        let b = KeyBuilder::new("x").part("ab", b"c").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn second_commit_of_the_same_entry_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let w1 = cache.work_dir("t").unwrap();
        std::fs::write(w1.path().join("f"), "1").unwrap();
        let w2 = cache.work_dir("t").unwrap();
        std::fs::write(w2.path().join("f"), "2").unwrap();
        let p1 = cache.commit_dir(w1, "rootfs", "k").unwrap();
        let p2 = cache.commit_dir(w2, "rootfs", "k").unwrap();
        assert_eq!(p1, p2);
        assert_eq!(std::fs::read_to_string(p1.join("f")).unwrap(), "1");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
