//! The image's tree for `assemble run`: unpacked once per manifest digest
//! into the cache, its mount points made without following symlinks, and
//! the writable copies of the places the image writes to.

use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, FileLock};
use crate::image::layer;
use crate::image::Image;
use crate::output::Printer;
use crate::run::RunError;
use crate::sandbox::Mount;
use crate::Error;

/// Files copied into one writable directory at most: each is a descriptor
/// bwrap inherits, and the open-files limit is often 1024.
pub(super) const MAX_COPIED_FILES: usize = 256;

/// Unpacks the image's layers, in order, into `tree`.
pub fn unpack_image(image: &Image, tree: &Path) -> Result<(), Error> {
    for blob in image.layers() {
        let file = io::BufReader::new(image.source().open(&blob.digest)?);
        let reader = layer::decoder(&blob.media_type, file).map_err(|source| RunError::Layer {
            digest: blob.digest.clone(),
            source,
        })?;
        crate::image::unpack::unpack(reader, tree)?;
    }
    Ok(())
}

/// The image's tree in the cache, unpacked on first use, with a shared lock
/// that keeps `clean` and `purge` from removing it during the run. Missing
/// mount points (`dests`) are made in it while nobody else changes it.
pub(super) fn cached_tree(
    cache: &Cache,
    image: &Image,
    dests: &[(String, bool)],
    printer: &Printer,
) -> Result<(PathBuf, FileLock), Error> {
    let digest = image.digest();
    let run_dir = cache.run_dir();
    let hex = digest.hex();
    let tree = run_dir.join(hex);
    // Unpacking and removal happen under this lock only, so any `tmp/run-*`
    // seen while holding it was left by a run that died.
    let guard = FileLock::acquire(&run_dir.join(".lock"), true)?;
    remove_abandoned_work(cache);
    if !tree.is_dir() {
        printer.step(&format!(
            "run: unpacking {digest} ({} layers) into the cache",
            image.layers().len()
        ));
        let work = cache.work_dir("run")?;
        let unpacked = unpack_image(image, work.path()).and_then(|()| prepare_tree(work.path()));
        if let Err(e) = unpacked {
            crate::fsutil::make_writable(work.path());
            return Err(e);
        }
        cache.commit_dir(work, "run", hex)?;
    }
    for (dest, is_dir) in dests {
        ensure_mount_point(&tree, dest, *is_dir)?;
    }
    let lock = FileLock::acquire(&run_dir.join(format!("{hex}.lock")), false)?;
    drop(guard);
    Ok((tree, lock))
}

/// Removes work directories of runs that died while unpacking.
fn remove_abandoned_work(cache: &Cache) {
    let tmp = cache.root().join("tmp");
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("run-") {
            crate::fsutil::make_writable(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Makes the mount points every run needs, before the tree is committed.
fn prepare_tree(tree: &Path) -> Result<(), Error> {
    for d in ["dev", "proc", "tmp", "run"] {
        ensure_mount_point(tree, &format!("/{d}"), true)?;
    }
    // resolv.conf is bound from the host: it must be a file of the tree, not
    // a symlink that bwrap would follow to a path the read-only root lacks.
    let etc = tree.join("etc");
    if std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
        let resolv = etc.join("resolv.conf");
        if !std::fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(&resolv);
            fs_err::write(&resolv, b"").map_err(|source| Error::Io {
                path: resolv.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Makes `dest` (absolute, inside the image) exist in the tree, as a
/// directory or an empty file, when bwrap needs it as a mount point.
/// Only real directories are walked: a symlink on the way is refused rather
/// than followed, since on the host it could lead out of the tree.
fn ensure_mount_point(tree: &Path, dest: &str, is_dir: bool) -> Result<(), Error> {
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = tree.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        if *c == "." || *c == ".." {
            return Err(RunError::DotInMount {
                dest: dest.to_string(),
            }
            .into());
        }
        cur.push(c);
        let last = i + 1 == comps.len();
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) if last => return Ok(()),
            Ok(_) => {
                return Err(RunError::NotADirectory {
                    dest: dest.to_string(),
                    on: comps[..=i].join("/"),
                }
                .into())
            }
            Err(_) if dev_or_tmpfs(&comps[..i]) => return Ok(()),
            Err(_) => {
                let made = if last && !is_dir {
                    std::fs::File::create(&cur).map(drop)
                } else {
                    std::fs::create_dir(&cur)
                };
                made.map_err(|source| Error::Io {
                    path: cur.clone(),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// True under the places bwrap itself makes writable (`/dev`, `/tmp`,
/// `/run`): a mount point there is created by bwrap.
fn dev_or_tmpfs(parents: &[&str]) -> bool {
    matches!(parents.first(), Some(&"dev" | &"tmp" | &"run"))
}

/// A tmpfs at `dest` holding a copy of what the tree has there, made by
/// bwrap from descriptors (kept open in `files` until the run starts).
pub(super) fn writable_copy(
    tree: &Path,
    dest: &str,
    mounts: &mut Vec<Mount>,
    files: &mut Vec<std::fs::File>,
) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let src = tree.join(dest.trim_start_matches('/'));
    let mode = |m: &std::fs::Metadata| m.permissions().mode() & 0o7777;
    let Ok(top) = std::fs::symlink_metadata(&src) else {
        return Ok(());
    };
    if !top.is_dir() {
        return Ok(());
    }
    mounts.push(Mount::TmpfsMode(dest.to_string(), mode(&top)));
    let mut copied = 0;
    for e in walkdir::WalkDir::new(&src)
        .min_depth(1)
        .sort_by_file_name()
        .follow_links(false)
    {
        let e = e.map_err(|e| Error::Io {
            path: src.clone(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(&src).expect("under src");
        let inside = format!("{dest}/{}", rel.display());
        let m = e.metadata().map_err(|e| Error::Io {
            path: e.path().map(Path::to_path_buf).unwrap_or_default(),
            source: e.into(),
        })?;
        if m.is_dir() {
            mounts.push(Mount::Dir(inside, mode(&m)));
        } else if m.file_type().is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(|source| Error::Io {
                path: e.path().to_path_buf(),
                source,
            })?;
            mounts.push(Mount::Symlink(target.display().to_string(), inside));
        } else if m.is_file() {
            copied += 1;
            if copied > MAX_COPIED_FILES {
                return Err(RunError::TooManyFiles {
                    dest: dest.to_string(),
                }
                .into());
            }
            let f = std::fs::File::open(e.path()).map_err(|source| Error::Io {
                path: e.path().to_path_buf(),
                source,
            })?;
            mounts.push(Mount::File {
                fd: f.as_raw_fd(),
                dest: inside,
                mode: mode(&m),
            });
            files.push(f);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_made_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("data")).unwrap();
        ensure_mount_point(t.path(), "/srv/new", true).unwrap();
        assert!(t.path().join("srv/new").is_dir());
        ensure_mount_point(t.path(), "/etc/one.conf", false).unwrap();
        assert!(t.path().join("etc/one.conf").is_file());
        assert!(ensure_mount_point(t.path(), "/data/x", true).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        ensure_mount_point(t.path(), "/dev/log", false).unwrap();
        assert!(
            t.path().join("dev").is_dir(),
            "/dev is the mount point of --dev"
        );
        assert!(
            !t.path().join("dev/log").exists(),
            "bwrap makes what is in /dev"
        );
    }

    #[test]
    fn a_writable_copy_holds_what_the_image_ships_there() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("home/blue/config/app");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("50_default.ini"), "x").unwrap();
        std::os::unix::fs::symlink("50_default.ini", d.join("link.ini")).unwrap();
        let (mut mounts, mut files) = (Vec::new(), Vec::new());
        writable_copy(t.path(), "/home/blue/config/app", &mut mounts, &mut files).unwrap();
        assert!(matches!(&mounts[0], Mount::TmpfsMode(p, _) if p == "/home/blue/config/app"));
        assert!(mounts.iter().any(
            |m| matches!(m, Mount::File { dest, .. } if dest == "/home/blue/config/app/50_default.ini")
        ));
        assert!(mounts
            .iter()
            .any(|m| matches!(m, Mount::Dir(p, _) if p == "/home/blue/config/app/sub")));
        assert!(mounts.iter().any(|m| matches!(m, Mount::Symlink(t, p) if t == "50_default.ini" && p.ends_with("link.ini"))));
        assert_eq!(files.len(), 1);
    }
}
