//! The guard of `clean` and `purge`: the root directory, the home
//! directory and mount points are never removed, whatever the command line
//! says.

use std::path::{Path, PathBuf};

use super::{io_err, CleanError};

/// Refuses `/`, the home directory and mount points; returns the path
/// with symlinks resolved (what would really be touched).
pub fn check_removable(path: &Path, action: &'static str) -> Result<PathBuf, CleanError> {
    let real = std::fs::canonicalize(path).map_err(io_err(path))?;
    let refuse = |why: &str| CleanError::Refused {
        action,
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if real.parent().is_none() {
        return Err(refuse("it is the root directory"));
    }
    if home_dirs().contains(&real) {
        return Err(refuse("it is your home directory"));
    }
    if is_mount_point(&real) {
        return Err(refuse(
            "it is a mount point (a disk, volume or bind mount of its own); remove what you \
             want gone from it yourself",
        ));
    }
    Ok(real)
}

/// `$HOME` and the home directory of this user in /etc/passwd, resolved.
fn home_dirs() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = std::env::var_os(crate::env::HOME)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() }.to_string();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        homes.extend(passwd.lines().filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2] == uid).then(|| PathBuf::from(f[5]))
        }));
    }
    homes
        .into_iter()
        .filter_map(|h| std::fs::canonicalize(h).ok())
        .collect()
}

/// True when `real` (symlinks resolved) is a mount point: its device
/// differs from its parent's, or the kernel lists it as one (a bind mount
/// of the same device).
pub fn is_mount_point(real: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(parent)) = (std::fs::metadata(real), real.parent()) else {
        return true;
    };
    let Ok(up) = std::fs::metadata(parent) else {
        return true;
    };
    if me.dev() != up.dev() || me.ino() == up.ino() {
        return true;
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mount(m)) == real)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_directory_is_refused() {
        let e = check_removable(Path::new("/"), "clean").unwrap_err();
        assert!(matches!(e, CleanError::Refused { .. }), "{e}");
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
