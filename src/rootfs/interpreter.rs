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
    let names = |dir: &str, prefix: &str| -> Vec<String> {
        let mut found: Vec<String> = inside(tree, dir, true)
            .and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        found.sort();
        found
    };
    let loaders = |dir: &str, prefix: &str| -> Vec<String> {
        names(dir, prefix)
            .into_iter()
            .map(|n| format!("/{dir}/{n}"))
            .collect()
    };
    let musl = loaders("lib", "ld-musl-");
    let glibc = ["lib", "lib64", "usr/lib", "usr/lib64"]
        .iter()
        .any(|d| !names(d, "ld-linux").is_empty() || !names(d, "ld64.so").is_empty());
    if let (Some(loader), false) = (musl.first(), glibc) {
        return Err(RootfsError::MuslBase {
            loader: loader.clone(),
        });
    }
    if python_versions(tree).is_empty() {
        let local = names("usr/local/bin", "python3");
        if !local.is_empty() {
            return Err(RootfsError::LocalPython {
                found: local.join(", "),
            });
        }
    }
    let exists = |rel: &str| inside(tree, rel, false).is_some_and(|p| p.symlink_metadata().is_ok());
    let missing: Vec<_> = RUNTIME
        .iter()
        .filter(|(path, _, _)| !exists(path))
        .collect();
    let user = !has_blue(tree);
    if !missing.is_empty() || user {
        let mut what: Vec<String> = missing
            .iter()
            .map(|(_, what, _)| what.to_string())
            .collect();
        if user {
            what.push("user blue (uid 1000, group www-data)".into());
        }
        return Err(RootfsError::BaseLacks {
            missing: what,
            packages: missing.iter().map(|(_, _, pkg)| pkg.to_string()).collect(),
            apt: exists("usr/bin/apt-get"),
            user,
        });
    }
    Ok(())
}

/// Whether the tree's /etc/passwd has the image's user: blue, uid 1000.
fn has_blue(tree: &Path) -> bool {
    let passwd = inside(tree, "etc/passwd", true)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    passwd.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.len() >= 4 && f[0] == crate::contract::USER && f[2] == "1000"
    })
}

/// `rel` in `tree`, each symlink on the way resolved inside the tree (an
/// absolute target from the tree's root, `..` stopping at it), the last
/// one too with `follow_last`: nothing outside the tree is read. None when
/// a part is missing or the links go round.
fn inside(tree: &Path, rel: &str, follow_last: bool) -> Option<std::path::PathBuf> {
    let split = |s: &str| -> std::collections::VecDeque<String> {
        s.split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    let mut parts = split(rel);
    let mut at: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = parts.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let path = at
            .iter()
            .fold(tree.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        if parts.is_empty() && !follow_last {
            at.push(part);
            break;
        }
        let meta = path.symlink_metadata().ok()?;
        if !meta.file_type().is_symlink() {
            at.push(part);
            continue;
        }
        hops += 1;
        if hops > 40 {
            return None;
        }
        let target = std::fs::read_link(&path).ok()?;
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            at.clear();
        }
        let mut next = split(&target);
        next.extend(parts.drain(..));
        parts = next;
    }
    Some(at.iter().fold(tree.to_path_buf(), |p, c| p.join(c)))
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
        let good = tree_with(&[&debian[..], &["etc/passwd"]].concat());
        std::fs::write(
            good.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nblue:x:1000:33::/home/blue:/bin/bash\n",
        )
        .unwrap();
        assert!(check_base(good.path()).is_ok());
        // Without the user: said, with how to make it.
        std::fs::write(
            good.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        let err = check_base(good.path()).unwrap_err().to_string();
        assert!(
            err.contains("user blue (uid 1000") && err.contains("useradd --uid 1000"),
            "{err}"
        );
        assert!(
            !err.contains("Debian packages"),
            "no package is missing: {err}"
        );
        // Symlinks are resolved inside the tree, never on the host: an
        // absolute lib64 -> /usr/lib64 finds the tree's loader, an absolute
        // usr/local/bin -> /usr/local/bin the tree's (missing) directory.
        let linked = tree_with(&["usr/lib64/ld-linux-x86-64.so.2", "lib/ld-musl-x86_64.so.1"]);
        std::os::unix::fs::symlink("/usr/lib64", linked.path().join("lib64")).unwrap();
        assert!(
            !matches!(check_base(linked.path()), Err(RootfsError::MuslBase { .. })),
            "the glibc loader behind the absolute link is the tree's"
        );
        let escape = tree_with(&["lib64/ld-linux-x86-64.so.2"]);
        std::fs::create_dir_all(escape.path().join("usr/local")).unwrap();
        std::os::unix::fs::symlink("/usr/local/bin", escape.path().join("usr/local/bin")).unwrap();
        std::os::unix::fs::symlink("../../..", escape.path().join("usr/local/up")).unwrap();
        assert_eq!(
            inside(escape.path(), "usr/local/up/etc", false),
            Some(escape.path().join("etc"))
        );
        assert!(
            !matches!(
                check_base(escape.path()),
                Err(RootfsError::LocalPython { .. })
            ),
            "not the host's /usr/local/bin"
        );
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
