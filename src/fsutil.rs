//! Files written whole or not at all: temporary names beside the final
//! one, renamed into place when complete.
//!
//! Every file assemble writes outside a cache work directory (blobs,
//! `index.json`, archives, bundles, locks, result files, credentials) goes
//! through here, so that an interrupted run never leaves a half-written
//! file under a final name. The temporary names start with a dot and a
//! prefix that says what they are (`.tmp-`, `.blob-`, `.layer-`, ...);
//! `assemble clean` recognises them by those prefixes. [`make_writable`]
//! lets trees unpacked with read-only directories be removed.

use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A file could not be written under its temporary name or renamed into place.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct WriteError {
    /// The final path.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: io::Error,
}

impl WriteError {
    /// A closure turning an I/O error into a `WriteError` for `path`.
    pub fn at(path: &Path) -> impl Fn(io::Error) -> WriteError + '_ {
        move |source| WriteError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The directory holding `path`: its parent, or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file in `dir` with mode 0644 (tempfile's default is 0600,
/// which would make blobs unreadable to other users and tools).
pub fn temp_file(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    temp_file_mode(dir, prefix, 0o644)
}

/// A temporary file in `dir` with the given mode.
pub fn temp_file_mode(dir: &Path, prefix: &str, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
}

/// Writes `path` through `write` under a temporary name (`prefix`, `mode`)
/// in the same directory, syncs it, then renames it into place. An error of
/// `write` or of the file leaves nothing behind.
pub fn write_with<T, E>(
    path: &Path,
    prefix: &str,
    mode: u32,
    write: impl FnOnce(&mut BufWriter<&std::fs::File>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<WriteError>,
{
    let err = WriteError::at(path);
    let tmp = temp_file_mode(parent_dir(path), prefix, mode).map_err(&err)?;
    let mut out = BufWriter::new(tmp.as_file());
    let value = write(&mut out)?;
    out.flush().map_err(&err)?;
    drop(out);
    tmp.as_file().sync_all().map_err(&err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(value)
}

/// Writes bytes to `path` under a temporary name in the same directory,
/// then renames it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's mode (0600 for credentials).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write_with(path, ".tmp-", mode, |out| {
        out.write_all(bytes).map_err(WriteError::at(path))
    })
}

/// Gives the owner write access to every directory below `path`, so that a
/// tree unpacked with read-only directories can be removed.
pub fn make_writable(path: &Path) {
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            if let Ok(m) = entry.metadata() {
                let mode = m.permissions().mode();
                if mode & 0o700 != 0o700 {
                    let _ = std::fs::set_permissions(
                        entry.path(),
                        std::fs::Permissions::from_mode(mode | 0o700),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_its_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let r: Result<(), WriteError> = write_with(&path, ".tmp-", 0o644, |out| {
            out.write_all(b"half").map_err(WriteError::at(&path))?;
            Err(WriteError {
                path: path.clone(),
                source: io::Error::other("stopped"),
            })
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_written_file_has_its_bytes_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic_mode(&path, b"x", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
