//! The base and compiler root filesystems.
//!
//! A rootfs is a list of layer blobs (in the cache's blob store, never
//! recompressed once there) plus the same layers unpacked into a tree that
//! the sandbox uses as its root. Sources: built from `layers/base` and
//! `layers/compiler` with `mmdebstrap --mode=unshare` (rootless), a tarball,
//! an OCI layout, or a registry image (`docker://REF`, pulled into a layout
//! first). Each is cached under a key derived from what defines it,
//! so a second build neither runs mmdebstrap nor unpacks again.
//!
//! Pieces: `debian` (mmdebstrap and the definitions of `layers/`),
//! `given` (tarball, layout, image and offline-store bases),
//! `interpreter` (the Python a rootfs has), `error`. This module owns
//! the cache entries they all commit: a tree with its mount points made and
//! the layer list beside it.

mod archive;
mod debian;
mod derived;
mod error;
mod given;
mod interpreter;

use std::io;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, Origin};
use crate::image::layer::LayerBlob;
use crate::output::Printer;

pub use archive::{DebPackage, DebianRecord, SuiteState};
pub use debian::{
    built, built_locked, choose_release, releases, Definition, Release, BASE_PACKAGES,
    COMPILER_PACKAGES, SETUP_HOOK,
};
pub use derived::{completed, derivable, derived};
use error::io_err;
pub use error::RootfsError;
pub use given::{from_blobs, from_image, from_layout, from_tarball};
pub use interpreter::{
    check_base, check_compiler, check_libc, choose_python, exists_inside, interpreters, libc_of,
    Interpreter, Libc, DEFAULT_PATH,
};

/// Where the base (or a given compiler) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseSource {
    /// Built from `layers/` with mmdebstrap.
    Built,
    /// A tar or tar.gz file.
    Tarball(PathBuf),
    /// An OCI layout and an optional tag.
    Layout(PathBuf, Option<String>),
    /// An image in a registry (`docker://REF`).
    Registry(crate::registry::Reference),
}

impl BaseSource {
    /// Parses `--base` or `--compiler` (`option`, for the message):
    /// `docker://REF`, `oci:DIR[:tag]` or `FILE.tar[.gz]`.
    pub fn parse(option: &str, s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_layout_ref(rest);
            return Ok(BaseSource::Layout(dir, tag));
        }
        if s.starts_with("docker://") {
            return crate::registry::Reference::parse(s)
                .map(BaseSource::Registry)
                .map_err(|e| e.to_string());
        }
        let lower = s.to_ascii_lowercase();
        if [".tar", ".tar.gz", ".tgz"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            return Ok(BaseSource::Tarball(PathBuf::from(s)));
        }
        Err(format!(
            "{option} {s:?} is not docker://REF, oci:DIR[:TAG] or a FILE.tar / FILE.tar.gz"
        ))
    }
}

impl std::fmt::Display for BaseSource {
    /// As the user wrote it (a built one: where it is built from).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseSource::Built => write!(f, "built from layers/"),
            BaseSource::Tarball(p) => write!(f, "{}", p.display()),
            BaseSource::Layout(dir, None) => write!(f, "oci:{}", dir.display()),
            BaseSource::Layout(dir, Some(tag)) => write!(f, "oci:{}:{tag}", dir.display()),
            BaseSource::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

/// Whether the archive `def` builds from moved since `recorded` was read:
/// the suites `def`'s mirror names now (with its credentials; mmdebstrap's
/// defaults, which need a probe run to learn, are taken as recorded) must
/// be the recorded ones, and each `InRelease`, asked again (conditionally
/// when validators were kept), must have the recorded sha256. Err: a suite
/// could not be read, and why (credentials masked).
pub fn archive_moved(
    def: &Definition,
    recorded: &[SuiteState],
    cache: &Cache,
    runner: &dyn crate::sandbox::Runner,
) -> Result<bool, String> {
    let urls: Vec<String> = if def.mirror.trim().is_empty() {
        recorded.iter().map(|s| s.url.clone()).collect()
    } else {
        archive::suites(&def.mirror, &def.release, cache, runner).map_err(|e| e.to_string())?
    };
    let public: Vec<String> = urls
        .iter()
        .map(|u| crate::output::strip_credentials(u))
        .collect();
    let was: Vec<&str> = recorded.iter().map(|s| s.url.as_str()).collect();
    if public != was {
        return Ok(true);
    }
    let last = archive::ArchiveState {
        suites: recorded.to_vec(),
    };
    let now = archive::revalidate(&urls, Some(&last))?;
    Ok(now
        .suites
        .iter()
        .zip(recorded)
        .any(|(n, s)| n.sha256 != s.sha256))
}

/// Splits `DIR[:TAG]`; a colon followed by something with a slash is part of the path.
pub fn split_layout_ref(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((dir, tag)) if !tag.is_empty() && !tag.contains('/') && !dir.is_empty() => {
            (PathBuf::from(dir), Some(tag.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

/// An unpacked root filesystem and the layers it is made of.
#[derive(Clone, Debug)]
pub struct Rootfs {
    /// Cache key.
    pub key: String,
    /// The unpacked tree (read-only use).
    pub tree: PathBuf,
    /// Layer blobs, bottom first, in the cache's blob store.
    pub layers: Vec<LayerBlob>,
    /// One history line per layer.
    pub created_by: Vec<String>,
    /// Where it came from: made by this run, this machine's cache or the
    /// build cache in a registry.
    pub origin: Origin,
    /// What a rootfs built with mmdebstrap was made from (archive state,
    /// epoch, packages); None for a given base.
    pub debian: Option<DebianRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    layers: Vec<LayerBlob>,
    created_by: Vec<String>,
    #[serde(default)]
    debian: Option<DebianRecord>,
}

/// The cache entry under `key`, if it is whole.
fn load_cached(cache: &Cache, key: &str) -> Option<Rootfs> {
    let dir = cache.entry("rootfs", key);
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    if !meta.layers.iter().all(|l| cache.blobs().has(&l.digest)) || !dir.join("tree").is_dir() {
        return None;
    }
    // A tree cached by an older assemble may lack newer mount points.
    if !dir.join("tree/assemble/uv").is_dir() {
        prepare_tree(&dir.join("tree")).ok()?;
    }
    Some(Rootfs {
        key: key.to_string(),
        tree: dir.join("tree"),
        layers: meta.layers,
        created_by: meta.created_by,
        origin: Origin::Cached,
        debian: meta.debian,
    })
}

/// The rootfs `key` from the build cache behind the local cache, its
/// layers unpacked here (each checked against its diff_id) when `accept`
/// takes its Debian record; None when the build cache has none, or one
/// that is refused or does not unpack (a warning).
fn from_remote(
    cache: &Cache,
    key: &str,
    name: &str,
    accept: impl Fn(Option<&DebianRecord>) -> Result<(), String>,
    printer: &Printer,
) -> Option<Rootfs> {
    // Its Debian record is judged before its layers are fetched.
    let meta: Meta =
        cache.remote_json("rootfs", key, |m: &Meta| accept(m.debian.as_ref()), printer)?;
    let unpacked = given::unpack_known(
        cache,
        key,
        &meta.layers,
        &meta.created_by,
        meta.debian,
        cache.blobs(),
        name,
    )
    .map_err(|e| crate::registry::error_chain(&e));
    match unpacked {
        Ok(r) => Some(Rootfs {
            origin: Origin::Remote,
            ..r
        }),
        Err(why) => {
            printer.warn(&format!(
                "ignoring the build cache's {name} {}: {why}; building here",
                &key[..key.len().min(12)],
            ));
            None
        }
    }
}

/// Offers a rootfs made here to the build cache behind the local cache;
/// not one without its Debian record (unpacked from an offline store),
/// which no reader would take.
fn offer(cache: &Cache, r: &Rootfs) {
    if r.debian.is_none() {
        return;
    }
    let meta = Meta {
        layers: r.layers.clone(),
        created_by: r.created_by.clone(),
        debian: r.debian.clone(),
    };
    let blobs = r.layers.iter().map(LayerBlob::blob).collect();
    cache.offer("rootfs", &r.key, &meta, blobs);
}

/// Commits a work directory holding `tree/` as the cache entry `key`.
fn commit(
    cache: &Cache,
    work: tempfile::TempDir,
    key: &str,
    layers: Vec<LayerBlob>,
    created_by: Vec<String>,
    debian: Option<DebianRecord>,
) -> Result<Rootfs, RootfsError> {
    prepare_tree(&work.path().join("tree"))?;
    let meta = Meta {
        layers,
        created_by,
        debian,
    };
    let meta_path = work.path().join("meta.json");
    fs_err::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).expect("meta serialises"),
    )
    .map_err(io_err(&meta_path))?;
    let dir = cache.commit_dir(work, "rootfs", key)?;
    load_cached(cache, key)
        .map(|r| Rootfs {
            origin: Origin::Built,
            ..r
        })
        .ok_or_else(|| RootfsError::Io {
            path: dir,
            source: io::Error::other("cache entry vanished after it was written"),
        })
}

/// Creates the mount points the sandbox binds onto, so that the read-only
/// root needs no change at run time. The tree is never packed into a layer.
/// A tree comes from layers nobody here controls: a symlink on the way to
/// a mount point is refused, never followed out of the tree.
fn prepare_tree(tree: &Path) -> Result<(), RootfsError> {
    for d in [
        "assemble/wheelhouse",
        "assemble/project",
        "assemble/src",
        "assemble/tools",
        "assemble/out",
        "assemble/uv",
        "assemble/sdists",
        crate::contract::VENV.trim_start_matches('/'),
        "tmp",
        "dev",
        "proc",
    ] {
        dirs_inside(tree, d)?;
    }
    let etc = tree.join("etc");
    let etc_is_dir = std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir());
    let resolv = etc.join("resolv.conf");
    if etc_is_dir
        && std::fs::symlink_metadata(&resolv)
            .map(|m| !m.is_file())
            .unwrap_or(true)
    {
        // A symlink (or anything but a file) is replaced by an empty file;
        // removing a symlink never touches what it names.
        let _ = std::fs::remove_file(&resolv);
        fs_err::write(&resolv, b"").map_err(io_err(&resolv))?;
    }
    Ok(())
}

/// Creates `rel` under `tree`, one component at a time, each a directory
/// of the tree: a symlink or a file on the way is an error.
fn dirs_inside(tree: &Path, rel: &str) -> Result<(), RootfsError> {
    let mut at = tree.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RootfsError::Io {
                    path: at.clone(),
                    source: io::Error::other(format!(
                        "/{rel} must be a directory of the root filesystem, not a symlink or a file"
                    )),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir(&at).map_err(io_err(&at))?;
            }
            Err(e) => return Err(io_err(&at)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_on_the_way_to_a_mount_point_is_refused_and_nothing_is_made_outside() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, outside) = (dir.path().join("tree"), dir.path().join("outside"));
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("assemble")).unwrap();
        assert!(prepare_tree(&tree).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // /etc a symlink: resolv.conf is not written through it.
        std::fs::remove_file(tree.join("assemble")).unwrap();
        std::fs::remove_dir(tree.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("etc")).unwrap();
        prepare_tree(&tree).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(tree.join("assemble/uv").is_dir());
    }

    #[test]
    fn base_source_forms() {
        assert_eq!(
            BaseSource::parse("--base", "oci:/x/y:1.0").unwrap(),
            BaseSource::Layout("/x/y".into(), Some("1.0".into()))
        );
        assert_eq!(
            BaseSource::parse("--base", "oci:./a").unwrap(),
            BaseSource::Layout("./a".into(), None)
        );
        assert_eq!(
            BaseSource::parse("--base", "b.tar.gz").unwrap(),
            BaseSource::Tarball("b.tar.gz".into())
        );
        assert!(BaseSource::parse("--base", "b.zip").is_err());
        assert!(
            matches!(BaseSource::parse("--base", "docker://127.0.0.1:5000/x/y:1").unwrap(), BaseSource::Registry(r) if r.repository == "x/y")
        );
        assert!(BaseSource::parse("--base", "docker://127.0.0.1:5000/X").is_err());
    }
}
