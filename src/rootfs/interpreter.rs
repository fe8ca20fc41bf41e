//! Which Python a rootfs has, and which one a build uses.

use std::path::Path;

use crate::rootfs::error::RootfsError;

/// Interpreter versions (`3.11`) the tree has in /usr/bin.
pub fn python_versions(tree: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(tree.join("usr/bin"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_prefix("python")?;
            let (a, b) = v.split_once('.')?;
            (a.chars().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.chars().all(|c| c.is_ascii_digit()))
            .then(|| v.to_string())
        })
        .collect();
    found.sort();
    found
}

/// Picks the interpreter: the one asked for, else what `python3` points at.
pub fn choose_python(tree: &Path, wanted: Option<&str>) -> Result<String, RootfsError> {
    let found = python_versions(tree);
    let list = || {
        if found.is_empty() {
            "no python at all".to_string()
        } else {
            found
                .iter()
                .map(|v| format!("python{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(w) = wanted {
        return if found.iter().any(|f| f == w) {
            Ok(w.to_string())
        } else {
            Err(RootfsError::NoPython {
                wanted: w.to_string(),
                found: list(),
            })
        };
    }
    if let Ok(target) = std::fs::read_link(tree.join("usr/bin/python3")) {
        if let Some(v) = target.to_string_lossy().strip_prefix("python") {
            if found.iter().any(|f| f == v) {
                return Ok(v.to_string());
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(RootfsError::NoPython {
            wanted: "3".into(),
            found: list(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_choice_follows_the_python3_link_and_lists_the_others() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("python3.11"), "").unwrap();
        std::fs::write(bin.join("python3.12"), "").unwrap();
        std::os::unix::fs::symlink("python3.12", bin.join("python3")).unwrap();
        assert_eq!(choose_python(t.path(), None).unwrap(), "3.12");
        assert_eq!(choose_python(t.path(), Some("3.11")).unwrap(), "3.11");
        let e = choose_python(t.path(), Some("2.7"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("python3.11, python3.12"), "{e}");
    }
}
