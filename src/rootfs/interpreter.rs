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

/// What the image runs from its base besides Python: (path in the tree,
/// what to call it, the Debian package that brings it).
const RUNTIME: [(&str, &str, &str); 4] = [
    ("usr/sbin/nginx", "nginx", "nginx-light"),
    ("usr/bin/supervisord", "supervisord", "supervisor"),
    ("usr/bin/uwsgi", "uwsgi", "uwsgi-core"),
    (
        "usr/lib/uwsgi/plugins/python3_plugin.so",
        "uWSGI's python3 plugin",
        "uwsgi-plugin-python3",
    ),
];

/// Checks, before any work on it, that a given base can carry the image:
/// glibc (not musl), Debian's Python in /usr/bin, and the runtime programs
/// (nginx, supervisord, uWSGI and its python3 plugin). Each refusal names
/// what is missing and what to do instead.
pub fn check_base(tree: &Path) -> Result<(), RootfsError> {
    let loaders = |dir: &str, prefix: &str| -> Vec<String> {
        std::fs::read_dir(tree.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .map(|n| format!("/{dir}/{n}"))
            .collect()
    };
    let musl = loaders("lib", "ld-musl-");
    let glibc = [
        loaders("lib", "ld-linux"),
        loaders("lib64", "ld-linux"),
        loaders("usr/lib", "ld-linux"),
        loaders("usr/lib64", "ld-linux"),
    ]
    .concat();
    if let (Some(loader), true) = (musl.first(), glibc.is_empty()) {
        return Err(RootfsError::MuslBase {
            loader: loader.clone(),
        });
    }
    if python_versions(tree).is_empty() {
        let local: Vec<String> = std::fs::read_dir(tree.join("usr/local/bin"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("python3"))
            .collect();
        if !local.is_empty() {
            let mut local = local;
            local.sort();
            return Err(RootfsError::LocalPython {
                found: local.join(", "),
            });
        }
    }
    let missing: Vec<_> = RUNTIME
        .iter()
        .filter(|(path, _, _)| tree.join(path).symlink_metadata().is_err())
        .collect();
    if !missing.is_empty() {
        return Err(RootfsError::BaseLacks {
            missing: missing
                .iter()
                .map(|(_, what, _)| what.to_string())
                .collect(),
            packages: missing.iter().map(|(_, _, pkg)| pkg.to_string()).collect(),
            apt: tree.join("usr/bin/apt-get").symlink_metadata().is_ok(),
        });
    }
    Ok(())
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

    fn tree_with(files: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in files {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        t
    }

    #[test]
    fn a_base_that_cannot_carry_the_image_is_refused_saying_why() {
        let runtime = [
            "usr/sbin/nginx",
            "usr/bin/supervisord",
            "usr/bin/uwsgi",
            "usr/lib/uwsgi/plugins/python3_plugin.so",
        ];
        let debian = [
            &["usr/bin/python3.11", "lib64/ld-linux-x86-64.so.2"][..],
            &runtime,
        ]
        .concat();
        assert!(check_base(tree_with(&debian).path()).is_ok());
        let alpine = tree_with(&["lib/ld-musl-x86_64.so.1", "usr/bin/python3.12"]);
        let err = check_base(alpine.path()).unwrap_err();
        assert!(matches!(err, RootfsError::MuslBase { .. }), "{err}");
        assert!(
            err.to_string().contains("/lib/ld-musl-x86_64.so.1"),
            "{err}"
        );
        let slim = tree_with(&[
            "usr/local/bin/python3.12",
            "lib64/ld-linux-x86-64.so.2",
            "usr/bin/apt-get",
        ]);
        let err = check_base(slim.path()).unwrap_err();
        assert!(
            err.to_string().contains("under /usr/local (python3.12)"),
            "{err}"
        );
        let bare = tree_with(&["usr/bin/python3.11", "usr/bin/apt-get", "usr/sbin/nginx"]);
        let err = check_base(bare.path()).unwrap_err().to_string();
        assert!(
            err.contains("supervisord, uwsgi, uWSGI's python3 plugin")
                && err.contains("supervisor uwsgi-core uwsgi-plugin-python3")
                && err.contains("(apt-get install)")
                && !err.contains("nginx"),
            "{err}"
        );
        let no_apt = tree_with(&["usr/bin/python3.11"]);
        let err = check_base(no_apt.path()).unwrap_err().to_string();
        assert!(err.contains("it has no apt"), "{err}");
    }

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
