//! Safe unpacking of layer tarballs into a directory.
//!
//! Nothing is ever written outside the target: entry paths that are absolute
//! or climb with `..` are refused, parent directories are resolved inside the
//! target (a relative symlink that stays inside is followed, one that is
//! absolute or leaves the target is refused), hard links must point at a
//! regular file inside, and device nodes and fifos are skipped (an
//! unprivileged user cannot create them; the sandbox provides its own /dev).
//! OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove what lower layers left.
//! Files are created owned by the invoking user, with setuid, setgid and sticky
//! bits dropped and owner read/write kept, since the tree only serves as a
//! sandbox root or for inspection; image layers themselves are never rebuilt
//! from it.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::fsutil::make_writable;

mod guard;

use guard::ExtensionGuard;

/// Failure while unpacking a tarball.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would write outside the target or is otherwise unsafe.
    #[error("refusing tar entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as stored in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The archive could not be read.
    #[error("cannot read tar archive")]
    Read(#[source] io::Error),
    /// Writing to the target failed.
    #[error("cannot write {path}")]
    Write {
        /// The path being written.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the archive itself is at fault (bad input), not the machine.
    pub fn is_bad_input(&self) -> bool {
        match self {
            UnpackError::Unsafe { .. } => true,
            UnpackError::Read(e) => {
                e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof
            }
            UnpackError::Write { .. } => false,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written (files, directories, links).
    pub written: u64,
    /// Device nodes and fifos skipped.
    pub skipped_special: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
}

/// Unpacks an uncompressed tar stream into `target`, which must exist.
pub fn unpack(reader: impl Read, target: &Path) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(ExtensionGuard::new(reader));
    let mut unpacker = Unpacker {
        target,
        stats: UnpackStats::default(),
        this_layer: HashSet::new(),
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        unpacker.entry(entry.map_err(UnpackError::Read)?)?;
    }
    Ok(unpacker.stats)
}

/// What unpacking one archive keeps from entry to entry.
struct Unpacker<'a> {
    target: &'a Path,
    stats: UnpackStats,
    /// The paths this archive wrote: an opaque whiteout spares them.
    this_layer: HashSet<Vec<String>>,
}

impl Unpacker<'_> {
    /// Unpacks one entry: refused, skipped, a whiteout applied, or written.
    fn entry(&mut self, mut entry: tar::Entry<impl Read>) -> Result<(), UnpackError> {
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason: String| UnpackError::Unsafe {
            entry: raw_name.clone(),
            reason,
        };
        let header_kind = entry.header().entry_type();
        if guard::is_extension(header_kind) && entry.size() > guard::MAX_EXTENSION_BYTES {
            return Err(unsafe_entry(format!(
                "extension header of {} bytes is over the 1 MiB limit",
                entry.size()
            )));
        }
        let comps = normalise(&raw_name).map_err(unsafe_entry)?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root directory itself
        };
        if self.whiteout(name, parent).map_err(|e| match e {
            Refusal::Unsafe(reason) => unsafe_entry(reason),
            Refusal::Error(e) => e,
        })? {
            return Ok(());
        }
        let target = self.target;
        let dir = resolve_dir(target, parent, true).map_err(unsafe_entry)?;
        let dest = real_path(target, &dir).join(name);
        let mode = entry.header().mode().map_err(UnpackError::Read)?;
        match header_kind {
            tar::EntryType::Directory => directory(&dest, mode)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                regular_file(&mut entry, &dest, mode)?
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("symlink without a target".into()))?;
                let link = PathBuf::from(String::from_utf8_lossy(&link).into_owned());
                remove_any(&dest)?;
                std::os::unix::fs::symlink(&link, &dest).map_err(|source| UnpackError::Write {
                    path: dest.clone(),
                    source,
                })?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("hard link without a target".into()))?;
                let link = String::from_utf8_lossy(&link).into_owned();
                hard_link(target, &link, &dest).map_err(|e| match e {
                    Refusal::Unsafe(reason) => unsafe_entry(reason),
                    Refusal::Error(e) => e,
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.stats.skipped_special += 1;
                return Ok(());
            }
            other => {
                tracing::debug!(entry = %raw_name, kind = ?other, "skipping tar entry of unsupported type");
                return Ok(());
            }
        }
        let mut key = dir;
        key.push(name.clone());
        self.this_layer.insert(key);
        self.stats.written += 1;
        Ok(())
    }

    /// Applies the entry if it is a whiteout (`.wh..wh..opq` empties its
    /// directory of what lower layers left, `.wh.NAME` removes NAME);
    /// returns whether it was one.
    fn whiteout(&mut self, name: &str, parent: &[String]) -> Result<bool, Refusal> {
        let target = self.target;
        if name == ".wh..wh..opq" {
            let dir = resolve_dir(target, parent, true).map_err(Refusal::Unsafe)?;
            remove_lower_children(target, &dir, &self.this_layer)?;
            self.stats.whiteouts += 1;
            return Ok(true);
        }
        let Some(hidden) = name.strip_prefix(".wh.") else {
            return Ok(false);
        };
        // `.wh..` and `.wh...` would name the directory itself or its
        // parent, and `remove_any` would empty the target or what is
        // beside it.
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(Refusal::Unsafe(format!(
                "whiteout of {hidden:?}, which is not a name in its directory"
            )));
        }
        let dir = resolve_dir(target, parent, true).map_err(Refusal::Unsafe)?;
        remove_any(&real_path(target, &dir).join(hidden))?;
        self.stats.whiteouts += 1;
        Ok(true)
    }
}

/// Why an entry was not unpacked: it is unsafe (the reason), or writing failed.
enum Refusal {
    Unsafe(String),
    Error(UnpackError),
}

impl From<UnpackError> for Refusal {
    fn from(e: UnpackError) -> Self {
        Refusal::Error(e)
    }
}

/// A directory entry: made (replacing what is not a directory), owner rwx kept.
fn directory(dest: &Path, mode: u32) -> Result<(), UnpackError> {
    match fs_err::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            remove_any(dest)?;
            create_dir(dest)?;
        }
        Err(_) => create_dir(dest)?,
    }
    set_mode(dest, (mode & 0o777) | 0o700)
}

/// A regular file entry: written anew, never through a symlink.
fn regular_file(entry: &mut impl Read, dest: &Path, mode: u32) -> Result<(), UnpackError> {
    remove_any(dest)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode((mode & 0o777) | 0o600)
        .open(dest)
        .map_err(|source| UnpackError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
    io::copy(entry, &mut file).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof
            || source.kind() == io::ErrorKind::InvalidData
        {
            UnpackError::Read(source)
        } else {
            UnpackError::Write {
                path: dest.to_path_buf(),
                source,
            }
        }
    })?;
    set_mode(dest, (mode & 0o777) | 0o600)
}

/// A hard link entry: its target must be a regular file already unpacked.
fn hard_link(target: &Path, link: &str, dest: &Path) -> Result<(), Refusal> {
    let link_comps =
        normalise(link).map_err(|r| Refusal::Unsafe(format!("hard link target: {r}")))?;
    let Some((lname, lparent)) = link_comps.split_last() else {
        return Err(Refusal::Unsafe("hard link to the root directory".into()));
    };
    let ldir = resolve_dir(target, lparent, false)
        .map_err(|r| Refusal::Unsafe(format!("hard link target {link:?}: {r}")))?;
    let source_path = real_path(target, &ldir).join(lname);
    match fs_err::symlink_metadata(&source_path) {
        Ok(m) if m.is_file() => {}
        _ => {
            return Err(Refusal::Unsafe(format!(
                "hard link target {link:?} is not a regular file already in the archive"
            )))
        }
    }
    remove_any(dest)?;
    std::fs::hard_link(&source_path, dest).map_err(|source| {
        Refusal::Error(UnpackError::Write {
            path: dest.to_path_buf(),
            source,
        })
    })
}

/// Splits an entry name into components, refusing absolute names and `..`.
fn normalise(name: &str) -> Result<Vec<String>, String> {
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    let mut out = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(out)
}

fn real_path(target: &Path, comps: &[String]) -> PathBuf {
    let mut p = target.to_path_buf();
    p.extend(comps);
    p
}

/// Resolves a directory path inside `target`, following relative symlinks
/// that stay inside and creating missing directories when `create` is set.
/// Returns the resolved components (all real directories).
fn resolve_dir(target: &Path, comps: &[String], create: bool) -> Result<Vec<String>, String> {
    let mut hops = 0;
    resolve_inner(target, comps, create, &mut hops)
}

fn resolve_inner(
    target: &Path,
    comps: &[String],
    create: bool,
    hops: &mut u32,
) -> Result<Vec<String>, String> {
    let mut cur: Vec<String> = Vec::new();
    for c in comps {
        let candidate = real_path(target, &cur).join(c);
        match std::fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&candidate)
                    .map_err(|e| format!("cannot create {}: {e}", candidate.display()))?;
                cur.push(c.clone());
            }
            Err(e) => return Err(format!("{} is missing: {e}", cur_display(&cur, c))),
            Ok(m) if m.is_dir() => cur.push(c.clone()),
            Ok(m) if m.file_type().is_symlink() => {
                *hops += 1;
                if *hops > 40 {
                    return Err("too many levels of symbolic links".into());
                }
                let link = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                if link.is_absolute() {
                    return Err(format!(
                        "it goes through {}, a symlink to the absolute path {}",
                        cur_display(&cur, c),
                        link.display()
                    ));
                }
                let mut next = cur.clone();
                for lc in link.components() {
                    match lc {
                        Component::Normal(s) => next.push(s.to_string_lossy().into_owned()),
                        Component::CurDir => {}
                        Component::ParentDir => {
                            if next.pop().is_none() {
                                return Err(format!(
                                    "it goes through {}, a symlink that leads outside the root ({})",
                                    cur_display(&cur, c),
                                    link.display()
                                ));
                            }
                        }
                        _ => return Err("unexpected symlink target".into()),
                    }
                }
                cur = resolve_inner(target, &next, create, hops)?;
            }
            Ok(_) => return Err(format!("{} is not a directory", cur_display(&cur, c))),
        }
    }
    Ok(cur)
}

fn cur_display(cur: &[String], c: &str) -> String {
    let mut v = cur.to_vec();
    v.push(c.to_string());
    v.join("/")
}

fn create_dir(path: &Path) -> Result<(), UnpackError> {
    std::fs::create_dir(path).map_err(|source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), UnpackError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        UnpackError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Removes whatever is at `path` (never following a symlink); absent is fine.
fn remove_any(path: &Path) -> Result<(), UnpackError> {
    let res = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => {
            make_writable(path);
            std::fs::remove_dir_all(path)
        }
        Ok(_) => std::fs::remove_file(path),
    };
    res.map_err(|source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn remove_lower_children(
    target: &Path,
    dir: &[String],
    this_layer: &HashSet<Vec<String>>,
) -> Result<(), UnpackError> {
    let real = real_path(target, dir);
    let read = std::fs::read_dir(&real).map_err(|source| UnpackError::Write {
        path: real.clone(),
        source,
    })?;
    for child in read.flatten() {
        let mut key = dir.to_vec();
        key.push(child.file_name().to_string_lossy().into_owned());
        if !this_layer.contains(&key) {
            remove_any(&child.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        // Write the name bytes directly: set_path would refuse the hostile ones.
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn parent_dir_entry_is_refused_and_nothing_escapes() {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("root");
        std::fs::create_dir(&target).unwrap();
        let t = tar_of(|b| raw_entry(b, "../escaped", tar::EntryType::Regular, None, b"x"));
        let err = unpack(t.as_slice(), &target).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("../escaped"), "{err}");
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn absolute_entry_is_refused() {
        let target = tempfile::tempdir().unwrap();
        let t = tar_of(|b| raw_entry(b, "/etc/evil", tar::EntryType::Regular, None, b"x"));
        assert!(matches!(
            unpack(t.as_slice(), target.path()),
            Err(UnpackError::Unsafe { .. })
        ));
    }

    #[test]
    fn write_through_escaping_symlink_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("root");
        std::fs::create_dir(&target).unwrap();
        let t = tar_of(|b| {
            raw_entry(b, "link", tar::EntryType::Symlink, Some("../"), b"");
            raw_entry(b, "link/marker", tar::EntryType::Regular, None, b"x");
        });
        assert!(unpack(t.as_slice(), &target).unwrap_err().is_bad_input());
        assert!(!outer.path().join("marker").exists());
    }

    #[test]
    fn write_through_absolute_symlink_is_refused() {
        let target = tempfile::tempdir().unwrap();
        let marker = tempfile::tempdir().unwrap();
        let link = marker.path().to_str().unwrap().to_string();
        let t = tar_of(|b| {
            raw_entry(b, "link", tar::EntryType::Symlink, Some(&link), b"");
            raw_entry(b, "link/marker", tar::EntryType::Regular, None, b"x");
        });
        assert!(unpack(t.as_slice(), target.path()).is_err());
        assert!(!marker.path().join("marker").exists());
    }

    #[test]
    fn relative_symlink_inside_is_followed() {
        let target = tempfile::tempdir().unwrap();
        let t = tar_of(|b| {
            raw_entry(b, "usr/bin/", tar::EntryType::Directory, None, b"");
            raw_entry(b, "bin", tar::EntryType::Symlink, Some("usr/bin"), b"");
            raw_entry(b, "bin/sh", tar::EntryType::Regular, None, b"#!");
        });
        unpack(t.as_slice(), target.path()).unwrap();
        assert!(target.path().join("usr/bin/sh").is_file());
    }

    #[test]
    fn hardlink_outside_is_refused() {
        let target = tempfile::tempdir().unwrap();
        let t = tar_of(|b| raw_entry(b, "h", tar::EntryType::Link, Some("../../etc/passwd"), b""));
        assert!(unpack(t.as_slice(), target.path())
            .unwrap_err()
            .is_bad_input());
    }

    #[test]
    fn an_oversized_extension_header_is_refused_before_it_is_read() {
        let target = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("PaxHeaders/x").unwrap();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(64 << 20);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        // Only the header and a little data: the guard must fail on the header.
        t.extend(std::iter::repeat_n(b'a', 4096));
        let err = unpack(t.as_slice(), target.path()).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(
            format!("{err:?}").contains("over the 1048576-byte limit"),
            "{err:?}"
        );
    }

    #[test]
    fn pax_long_names_within_the_limit_still_unpack() {
        let target = tempfile::tempdir().unwrap();
        let long = format!(
            "d/{}/{}/{}",
            "a".repeat(120),
            "b".repeat(120),
            "c".repeat(120)
        );
        let mut layer = crate::image::layer::Layer::new();
        layer.add(
            crate::image::layer::Entry::bytes(
                long.clone(),
                "x",
                0o644,
                crate::image::layer::Owner::ROOT,
            ),
            crate::image::layer::Owner::ROOT,
        );
        layer.add(
            crate::image::layer::Entry::bytes(
                "after",
                "y",
                0o644,
                crate::image::layer::Owner::ROOT,
            ),
            crate::image::layer::Owner::ROOT,
        );
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
        unpack(bytes.as_slice(), target.path()).unwrap();
        assert!(target.path().join(&long).is_file());
        assert_eq!(
            std::fs::read_to_string(target.path().join("after")).unwrap(),
            "y"
        );
    }

    #[test]
    fn device_nodes_are_skipped() {
        let target = tempfile::tempdir().unwrap();
        let t = tar_of(|b| raw_entry(b, "dev/null", tar::EntryType::Char, None, b""));
        let stats = unpack(t.as_slice(), target.path()).unwrap();
        assert_eq!(stats.skipped_special, 1);
        assert!(!target.path().join("dev/null").exists());
    }

    /// Regression: `.wh..` and `.wh...` removed the layer directory's
    /// contents or its parent's, and the unpack reported success.
    #[test]
    fn whiteouts_naming_the_directory_or_its_parent_are_refused() {
        for hostile in [
            ".wh.",
            ".wh..",
            ".wh...",
            "a/.wh..",
            "a/.wh...",
            "a/b/.wh...",
        ] {
            let outer = tempfile::tempdir().unwrap();
            let target = outer.path().join("root");
            let sibling = outer.path().join("sibling");
            std::fs::create_dir_all(target.join("a/b")).unwrap();
            std::fs::create_dir(&sibling).unwrap();
            std::fs::write(target.join("a/b/kept"), "1").unwrap();
            std::fs::write(target.join("a/kept"), "1").unwrap();
            std::fs::write(target.join("kept"), "1").unwrap();
            std::fs::write(sibling.join("kept"), "1").unwrap();
            let t = tar_of(|b| raw_entry(b, hostile, tar::EntryType::Regular, None, b""));
            let err = unpack(t.as_slice(), &target).unwrap_err();
            assert!(err.is_bad_input(), "{hostile}: {err}");
            assert!(err.to_string().contains(hostile), "{hostile}: {err}");
            for f in ["a/b/kept", "a/kept", "kept"] {
                assert!(target.join(f).is_file(), "{hostile} removed {f}");
            }
            assert!(
                sibling.join("kept").is_file(),
                "{hostile} removed a sibling"
            );
        }
    }

    #[test]
    fn whiteouts_remove_lower_files() {
        let target = tempfile::tempdir().unwrap();
        let lower = tar_of(|b| {
            raw_entry(b, "a/old", tar::EntryType::Regular, None, b"1");
            raw_entry(b, "a/keep", tar::EntryType::Regular, None, b"1");
            raw_entry(b, "b/x", tar::EntryType::Regular, None, b"1");
        });
        let upper = tar_of(|b| {
            raw_entry(b, "a/.wh.old", tar::EntryType::Regular, None, b"");
            raw_entry(b, "b/new", tar::EntryType::Regular, None, b"2");
            raw_entry(b, "b/.wh..wh..opq", tar::EntryType::Regular, None, b"");
        });
        unpack(lower.as_slice(), target.path()).unwrap();
        unpack(upper.as_slice(), target.path()).unwrap();
        assert!(!target.path().join("a/old").exists());
        assert!(target.path().join("a/keep").exists());
        assert!(!target.path().join("b/x").exists());
        assert!(target.path().join("b/new").exists());
    }
}
