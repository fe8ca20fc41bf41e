//! `assemble clean` and `assemble purge`: remove build outputs, and the cache.

use std::path::Path;

use crate::output::Printer;
use crate::Error;

/// Removes a directory tree, returning the bytes it held (0 when absent).
pub fn remove_tree(path: &Path) -> Result<u64, Error> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(0);
    }
    let bytes = walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    crate::unpack::make_writable(path);
    fs_err::remove_dir_all(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes)
}

/// Removes each directory and says what was freed.
pub fn clean(dirs: &[&Path], printer: &Printer) -> Result<u64, Error> {
    let mut total = 0;
    for d in dirs {
        let freed = remove_tree(d)?;
        if freed > 0 || d.exists() {
            printer.step(&format!("removed {} ({})", d.display(), human(freed)));
        }
        total += freed;
    }
    printer.step(&format!("freed {}", human(total)));
    Ok(total)
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_counts_bytes_and_handles_read_only_dirs() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("ro")).unwrap();
        std::fs::write(t.join("ro/f"), [0u8; 10]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(remove_tree(&t).unwrap(), 10);
        assert!(!t.exists());
        assert_eq!(human(1536), "1.5 KiB");
    }
}
