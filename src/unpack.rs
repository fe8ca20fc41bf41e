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

/// Largest PAX or GNU long-name extension accepted, to refuse hostile headers
/// that would make the reader allocate without bound.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// Unpacks an uncompressed tar stream into `target`, which must exist.
pub fn unpack(reader: impl Read, target: &Path) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(ExtensionGuard::new(reader));
    let mut stats = UnpackStats::default();
    let mut this_layer: HashSet<Vec<String>> = HashSet::new();
    let entries = archive.entries().map_err(UnpackError::Read)?;
    for entry in entries {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason: String| UnpackError::Unsafe {
            entry: raw_name.clone(),
            reason,
        };
        let header_kind = entry.header().entry_type();
        if matches!(
            header_kind,
            tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) && entry.size() > MAX_EXTENSION_BYTES
        {
            return Err(unsafe_entry(format!(
                "extension header of {} bytes is over the 1 MiB limit",
                entry.size()
            )));
        }
        let comps = normalise(&raw_name).map_err(unsafe_entry)?;
        let Some((name, parent)) = comps.split_last() else {
            continue; // the root directory itself
        };
        if name == ".wh..wh..opq" {
            let dir = resolve_dir(target, parent, true).map_err(unsafe_entry)?;
            remove_lower_children(target, &dir, &this_layer)?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            // `.wh..` and `.wh...` would name the directory itself or its
            // parent, and `remove_any` would empty the target or what is
            // beside it.
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(unsafe_entry(format!(
                    "whiteout of {hidden:?}, which is not a name in its directory"
                )));
            }
            let dir = resolve_dir(target, parent, true).map_err(unsafe_entry)?;
            let victim = real_path(target, &dir).join(hidden);
            remove_any(&victim)?;
            stats.whiteouts += 1;
            continue;
        }
        let dir = resolve_dir(target, parent, true).map_err(unsafe_entry)?;
        let dest = real_path(target, &dir).join(name);
        let mut key = dir.clone();
        key.push(name.clone());
        let mode = entry.header().mode().map_err(UnpackError::Read)?;
        match header_kind {
            tar::EntryType::Directory => {
                match fs_err::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&dest)?;
                        create_dir(&dest)?;
                    }
                    Err(_) => create_dir(&dest)?,
                }
                set_mode(&dest, (mode & 0o777) | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_any(&dest)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode((mode & 0o777) | 0o600)
                    .open(&dest)
                    .map_err(|source| UnpackError::Write {
                        path: dest.clone(),
                        source,
                    })?;
                io::copy(&mut entry, &mut file).map_err(|source| {
                    if source.kind() == io::ErrorKind::UnexpectedEof
                        || source.kind() == io::ErrorKind::InvalidData
                    {
                        UnpackError::Read(source)
                    } else {
                        UnpackError::Write {
                            path: dest.clone(),
                            source,
                        }
                    }
                })?;
                set_mode(&dest, (mode & 0o777) | 0o600)?;
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
                let link_comps =
                    normalise(&link).map_err(|r| unsafe_entry(format!("hard link target: {r}")))?;
                let Some((lname, lparent)) = link_comps.split_last() else {
                    return Err(unsafe_entry("hard link to the root directory".into()));
                };
                let ldir = resolve_dir(target, lparent, false)
                    .map_err(|r| unsafe_entry(format!("hard link target {link:?}: {r}")))?;
                let source_path = real_path(target, &ldir).join(lname);
                match fs_err::symlink_metadata(&source_path) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(unsafe_entry(format!(
                        "hard link target {link:?} is not a regular file already in the archive"
                    )))
                    }
                }
                remove_any(&dest)?;
                std::fs::hard_link(&source_path, &dest).map_err(|source| UnpackError::Write {
                    path: dest.clone(),
                    source,
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                stats.skipped_special += 1;
                continue;
            }
            other => {
                tracing::debug!(entry = %raw_name, kind = ?other, "skipping tar entry of unsupported type");
                continue;
            }
        }
        this_layer.insert(key);
        stats.written += 1;
    }
    Ok(stats)
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

/// Follows the tar structure as bytes pass and fails the read when an
/// extension header (PAX `x`/`g`, GNU `L`/`K`) is larger than
/// [`MAX_EXTENSION_BYTES`]: the tar crate reads those whole into memory before
/// any entry reaches us, so a hostile archive could make it allocate without
/// bound. PAX `size` records are honoured to keep following the structure.
struct ExtensionGuard<R> {
    inner: R,
    /// Bytes of the current header block collected so far.
    header: Vec<u8>,
    /// Data and padding bytes still to pass before the next header.
    skip: u64,
    /// The PAX data being collected (for a `size` record), if any.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// A `size` record for the next entry.
    next_size: Option<u64>,
    /// Size of the GNU sparse entry whose extension blocks are being read.
    sparse_pending: Option<u64>,
    ended: bool,
}

impl<R> ExtensionGuard<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            header: Vec::with_capacity(512),
            skip: 0,
            pax: None,
            pax_left: 0,
            next_size: None,
            sparse_pending: None,
            ended: false,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    let take = (self.pax_left.min(n as u64)) as usize;
                    pax.extend_from_slice(&data[..take]);
                    self.pax_left -= take as u64;
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.next_size = pax_size(&pax);
                    }
                }
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 512 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            if let Some(size) = self.sparse_pending {
                // A GNU sparse extension block; more follow while its flag is set.
                if h[504] == 0 {
                    self.sparse_pending = None;
                    self.skip = size.div_ceil(512) * 512;
                }
                continue;
            }
            if h.iter().all(|b| *b == 0) {
                // End of archive: what follows is padding.
                self.ended = true;
                break;
            }
            let kind = h[156];
            let mut size = header_size(&h[124..136]).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a tar header has an invalid size field",
                )
            })?;
            let is_extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
            if is_extension && size > MAX_EXTENSION_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a tar extension header of {size} bytes is over the {MAX_EXTENSION_BYTES}-byte limit"),
                ));
            }
            if !is_extension {
                if let Some(s) = self.next_size.take() {
                    size = s;
                }
            }
            // Links and directories carry no data whatever their size says.
            if matches!(kind, b'1' | b'2' | b'5') {
                size = 0;
            }
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
                self.pax_left = size;
            }
            if kind == b'S' && h[482] != 0 {
                self.sparse_pending = Some(size);
                continue;
            }
            self.skip = size.div_ceil(512) * 512;
            if self.skip == 0 && kind == b'x' {
                self.pax = None;
            }
        }
        Ok(())
    }
}

/// The size field of a tar header: octal, or base-256 when the high bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of PAX extension data (`<len> size=<n>\n` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|l| {
        l.split_once(' ')
            .and_then(|(_, kv)| kv.strip_prefix("size="))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl<R: Read> Read for ExtensionGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
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
        let mut layer = crate::layer::Layer::new();
        layer.add(
            crate::layer::Entry::bytes(long.clone(), "x", 0o644, crate::layer::Owner::ROOT),
            crate::layer::Owner::ROOT,
        );
        layer.add(
            crate::layer::Entry::bytes("after", "y", 0o644, crate::layer::Owner::ROOT),
            crate::layer::Owner::ROOT,
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
