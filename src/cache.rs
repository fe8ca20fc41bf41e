//! The content-addressed cache under `$XDG_CACHE_HOME/assemble`.
//!
//! ```text
//! blobs/sha256/<hex>         layer and config blobs, by digest
//! rootfs/<key>/              an unpacked base or compiler rootfs and its layer list
//! rootfs/state-<key>.json    the last Debian archive state a built rootfs definition was served for
//! rootfs/sources-<key>.json  the suites mmdebstrap uses by default, per mmdebstrap binary
//! wheelhouse/<key>/          wheels compiled for one set of inputs
//! layers/<key>.json          a built layer's description, keyed by its inputs
//! registry/<host>.json       which repositories of a registry hold which blobs (mount sources)
//! pulled/<reference>/        OCI layouts of base images pulled from registries
//! run/<manifest hex>/        an image unpacked for `assemble run`, bound read-only
//! run/<manifest hex>.lock    held (shared) by each `assemble run` of that tree
//! run/.lock                  held while a tree is unpacked or removed
//! records/<key>.json         a build's record (`remote_cache::Record`), by the key of its inputs
//! tools/<key>/               pinned tools (uv), checked by sha256
//! tmp/                       work in progress; renamed into place when complete
//! CACHEDIR.TAG               the marker: this directory is assemble's cache
//! ```
//!
//! Every entry is made under `tmp/` and renamed to its final name only when
//! complete, so a crash leaves nothing half-made under a final name, and two
//! builds racing for one entry both end up using the same complete one.
//!
//! The marker is a [cache directory tag](https://bford.info/cachedir/) (so
//! backup tools skip the cache) whose text names assemble; `assemble purge`
//! removes a directory only when it holds exactly that file. It is written
//! when the cache is created. A directory without it is adopted (marked) on
//! open only when it is empty or holds nothing but the entries above, as a
//! cache made before the marker existed does; any other directory is used as
//! it is and never marked, so purge never removes it.
//!
//! A cache may have a second, shared tier behind it ([`RemoteTier`]: the
//! build cache in a registry, `remote_cache`): the stages that look an
//! entry up here and miss ask it ([`Cache::remote_json`]) before building,
//! and offer it what they built ([`Cache::offer`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::env;
use crate::image::{Blob, BlobStore, ImageError};
use crate::output::Printer;

/// Failure to use the cache directory.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache directory could be determined.
    #[error("no cache directory: set {var} or HOME", var = env::ASSEMBLE_CACHE_DIR)]
    NoHome,
    /// `ASSEMBLE_CACHE_DIR` is set but empty: a typo, not a wish for the default.
    #[error(
        "{var} is set but empty; unset it to use the default cache, or name a directory",
        var = env::ASSEMBLE_CACHE_DIR
    )]
    EmptyVariable,
    /// The cache directory could not be used.
    #[error("cannot use cache directory {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be written.
    #[error(transparent)]
    Write(#[from] crate::fsutil::WriteError),
    /// The blob store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl CacheError {
    /// True for an empty `ASSEMBLE_CACHE_DIR` (exit 2); a cache that cannot
    /// be found or written is a failure of the machine (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, CacheError::EmptyVariable)
    }
}

/// The cache.
#[derive(Clone)]
pub struct Cache {
    root: PathBuf,
    blobs: BlobStore,
    remote: Option<Arc<dyn RemoteTier>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

/// Where a stage's output came from, as the result file says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Made by this run.
    #[default]
    Built,
    /// From this machine's cache.
    Cached,
    /// From the build cache in a registry ([`RemoteTier`]).
    Remote,
}

impl Origin {
    /// `built`, `cached` or `remote-cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Built => "built",
            Origin::Cached => "cached",
            Origin::Remote => "remote-cache",
        }
    }
}

/// A shared tier behind the local cache: entries of a kind (`rootfs`,
/// `wheel`, `layer`) under the same keys as here, each a JSON value and the
/// blobs it names. Reading checks every digest and says what it could not
/// use (a warning), never fails a build; writing is deferred to the end of
/// the build and is the tier owner's.
pub trait RemoteTier: Send + Sync {
    /// The entry's value, with every blob it names now in `cache`'s blob
    /// store, checked; None when no repository has a usable one. `check`
    /// judges the value before any blob is fetched (why not, otherwise).
    fn fetch(
        &self,
        cache: &Cache,
        kind: &str,
        key: &str,
        check: &dyn Fn(&serde_json::Value) -> Result<(), String>,
        printer: &Printer,
    ) -> Option<serde_json::Value>;
    /// Whether entries offered are written anywhere.
    fn writes(&self) -> bool;
    /// Keeps an entry made here to be written when the build ends; its
    /// blobs are in the cache's blob store.
    fn offer(&self, kind: &str, key: &str, value: serde_json::Value, blobs: Vec<Blob>);
}

impl Cache {
    /// The cache at `ASSEMBLE_CACHE_DIR`, else `$XDG_CACHE_HOME/assemble`,
    /// else `~/.cache/assemble`. A set but empty `ASSEMBLE_CACHE_DIR` is an
    /// error: a CI variable that lost its value must not mean the real cache.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        Self::dir_from(|name| std::env::var_os(name))
    }

    /// [`Cache::default_dir`] with the environment given as a lookup.
    fn dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf, CacheError> {
        if let Some(d) = var(env::ASSEMBLE_CACHE_DIR) {
            if d.is_empty() {
                return Err(CacheError::EmptyVariable);
            }
            return Ok(PathBuf::from(d));
        }
        if let Some(d) = var(env::XDG_CACHE_HOME).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d).join("assemble"));
        }
        let home = var(env::HOME)
            .filter(|d| !d.is_empty())
            .ok_or(CacheError::NoHome)?;
        Ok(PathBuf::from(home).join(".cache").join("assemble"))
    }

    /// Opens (creating) the cache at `root`, marking it as assemble's when
    /// it is new or holds only the cache's own entries.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        let adopt = !is_marked(root) && holds_only_cache_entries(root);
        for sub in ENTRIES.iter().filter(|e| **e != "blobs") {
            let p = root.join(sub);
            fs_err::create_dir_all(&p).map_err(|source| CacheError::Io { path: p, source })?;
        }
        if adopt {
            crate::fsutil::write_atomic(&root.join(MARKER), MARKER_TEXT.as_bytes())?;
        }
        let blobs = BlobStore::open(root.join("blobs").join("sha256"))?;
        remove_stale(&root.join("tmp"), STALE_AFTER);
        remove_stale(blobs.dir(), STALE_AFTER);
        Ok(Self {
            root: root.to_path_buf(),
            blobs,
            remote: None,
        })
    }

    /// This cache with `tier` behind it.
    pub fn with_remote(mut self, tier: Arc<dyn RemoteTier>) -> Self {
        self.remote = Some(tier);
        self
    }

    /// The entry `kind`/`key` from the tier behind this cache, its blobs
    /// fetched into the blob store; None without a tier, or when it has no
    /// usable entry (said by the tier).
    pub fn remote_json<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        check: impl Fn(&T) -> Result<(), String>,
        printer: &Printer,
    ) -> Option<T> {
        let read = |value: &serde_json::Value| {
            T::deserialize(value).map_err(|e| format!("its value does not read ({e})"))
        };
        let value = self.remote.as_ref()?.fetch(
            self,
            kind,
            key,
            &|value| read(value).and_then(|v| check(&v)),
            printer,
        )?;
        read(&value).ok()
    }

    /// Whether a layer named by an entry of the tier is the blob fetched:
    /// its digest, and the tar it decompresses to (its diff_id, which no
    /// registry checks); a warning when it is not.
    pub fn remote_layer_ok(
        &self,
        blob: &crate::image::layer::LayerBlob,
        printer: &Printer,
    ) -> bool {
        let ok = blob.matches_file(&self.blobs.path(&blob.digest));
        if !ok {
            printer.warn(&format!(
                "ignoring the build cache's layer {}: its blob is not the layer it names; building here",
                blob.digest
            ));
        }
        ok
    }

    /// Whether entries offered are written to a tier behind this cache
    /// (when not, preparing one is wasted work).
    pub fn offers(&self) -> bool {
        self.remote.as_ref().is_some_and(|t| t.writes())
    }

    /// Offers an entry made here to the tier behind this cache, if any.
    pub fn offer<T: serde::Serialize>(&self, kind: &str, key: &str, value: &T, blobs: Vec<Blob>) {
        if let Some(tier) = &self.remote {
            let value = serde_json::to_value(value).expect("cache entries serialise");
            tier.offer(kind, key, value, blobs);
        }
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `assemble run` keeps unpacked images (`run/`).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
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
                crate::fsutil::make_writable(&src);
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
        crate::fsutil::write_atomic(&path, &bytes)?;
        Ok(())
    }

    /// Remembers that `repo` of `host` holds these blobs, for later mounts.
    pub fn remember_blobs(&self, host: &str, repo: &str, digests: &[Digest]) {
        let key = host.replace([':', '/'], "_");
        let mut known: std::collections::BTreeMap<String, String> =
            self.get_json("registry", &key).unwrap_or_default();
        for d in digests {
            known.insert(d.to_string(), repo.to_string());
        }
        // Losing a record to a race only costs an upload later.
        let _ = self.put_json("registry", &key, &known);
    }

    /// Repositories of `host` known to hold any of these blobs.
    pub fn known_sources(&self, host: &str, digests: &[Digest]) -> Vec<String> {
        let key = host.replace([':', '/'], "_");
        let known: std::collections::BTreeMap<String, String> =
            self.get_json("registry", &key).unwrap_or_default();
        let mut v: Vec<String> = digests
            .iter()
            .filter_map(|d| known.get(&d.to_string()).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// File name of the marker that makes a directory assemble's cache.
pub const MARKER: &str = "CACHEDIR.TAG";

/// The marker's exact text: a cache directory tag (its first line is the
/// tag's signature) that names assemble.
pub const MARKER_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by assemble.\n\
# `assemble purge` removes this directory only while this file is here.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The entries of a cache directory (besides the marker).
pub const ENTRIES: [&str; 12] = [
    "tmp",
    "rootfs",
    "resolutions",
    "wheels",
    "tools",
    "wheelhouse",
    "layers",
    "records",
    "registry",
    "pulled",
    "blobs",
    "run",
];

/// True when `dir` holds assemble's marker, with assemble's text: another
/// tool's cache directory tag does not count.
pub fn is_marked(dir: &Path) -> bool {
    let path = dir.join(MARKER);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return false;
    };
    meta.is_file()
        && meta.len() == MARKER_TEXT.len() as u64
        && std::fs::read(&path).is_ok_and(|b| b == MARKER_TEXT.as_bytes())
}

/// True when `dir` is missing, empty, or holds only entries of the cache's
/// layout (a cache made before the marker existed).
fn holds_only_cache_entries(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(entries) => entries.flatten().all(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            ENTRIES.contains(&name.as_ref()) && e.file_type().is_ok_and(|t| t.is_dir())
        }),
    }
}

/// An advisory lock (`flock`) on a file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
}

impl FileLock {
    /// Takes the lock, waiting for it: `exclusive`, else shared.
    pub fn acquire(path: &Path, exclusive: bool) -> Result<Self, CacheError> {
        Self::take(path, exclusive, true).map(|l| l.expect("a blocking lock is always taken"))
    }

    /// Takes the lock if nobody holds a conflicting one; None otherwise.
    pub fn try_acquire(path: &Path, exclusive: bool) -> Result<Option<Self>, CacheError> {
        Self::take(path, exclusive, false)
    }

    fn take(path: &Path, exclusive: bool, wait: bool) -> Result<Option<Self>, CacheError> {
        use std::os::unix::io::AsRawFd;
        let io = |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        if !wait {
            op |= libc::LOCK_NB;
        }
        loop {
            // SAFETY: flock(2) on a descriptor this function owns; it touches
            // no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(Self { file }));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
                _ => return Err(io(e)),
            }
        }
    }

    /// The locked file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
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
                crate::fsutil::make_writable(&p);
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
    fn a_new_cache_carries_assembles_marker() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        Cache::open(&root).unwrap();
        assert!(is_marked(&root));
    }

    #[test]
    fn a_cache_made_before_the_marker_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "rootfs", "blobs/sha256", "wheelhouse"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Cache::open(dir.path()).unwrap();
        assert!(is_marked(dir.path()));
    }

    #[test]
    fn a_directory_holding_anything_else_is_never_marked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        Cache::open(dir.path()).unwrap();
        assert!(!is_marked(dir.path()));
        assert!(dir.path().join("notes.txt").is_file());
    }

    #[test]
    fn another_tools_cache_directory_tag_is_not_assembles_marker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MARKER),
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n",
        )
        .unwrap();
        Cache::open(dir.path()).unwrap();
        assert!(!is_marked(dir.path()));
    }

    #[test]
    fn an_empty_assemble_cache_dir_is_an_error_not_the_default() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let r = Cache::dir_from(vars(&[("ASSEMBLE_CACHE_DIR", ""), ("HOME", "/h")]));
        assert!(matches!(r, Err(CacheError::EmptyVariable)), "{r:?}");
        let r = Cache::dir_from(vars(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")]));
        assert_eq!(r.unwrap(), Path::new("/h/.cache/assemble"));
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
