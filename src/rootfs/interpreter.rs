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
    let names = |dir: &str, prefix: &str| names_in(tree, dir, prefix);
    if let Libc::Musl(loader) = libc_of(tree) {
        return Err(RootfsError::MuslBase { loader });
    }
    if python_versions(tree).is_empty() {
        let local = names("usr/local/bin", "python3");
        if !local.is_empty() {
            return Err(RootfsError::LocalPython {
                found: local.join(", "),
            });
        }
    }
    let exists = |rel: &str| exists_inside(tree, rel);
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

/// The names in the tree's directory `dir` that start with `prefix`,
/// sorted; none when it is missing.
pub(super) fn names_in(tree: &Path, dir: &str, prefix: &str) -> Vec<String> {
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
}

/// Whether `rel` exists in the tree (a symlink at its end not followed).
pub(super) fn exists_inside(tree: &Path, rel: &str) -> bool {
    inside(tree, rel, false).is_some_and(|p| p.symlink_metadata().is_ok())
}

/// The text of the tree's file `rel`, its symlinks resolved in the tree.
pub(super) fn read_inside(tree: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(inside(tree, rel, true)?).ok()
}

/// The C library a tree is built on: what its compiled code links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libc {
    /// glibc, with its (major, minor) version when its libc.so.6 says it.
    Glibc(Option<(u32, u32)>),
    /// musl, with its loader (`/lib/ld-musl-x86_64.so.1`).
    Musl(String),
    /// No loader of either found.
    Unknown,
}

impl std::fmt::Display for Libc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Libc::Glibc(Some((a, b))) => write!(f, "glibc {a}.{b}"),
            Libc::Glibc(None) => write!(f, "glibc (of a version its libc.so.6 does not say)"),
            Libc::Musl(loader) => write!(f, "musl ({loader})"),
            Libc::Unknown => write!(f, "no C library assemble knows (no glibc or musl loader)"),
        }
    }
}

/// Which C library the tree has: glibc when a glibc loader is there
/// (its version read from libc.so.6's banner, "release version 2.36"),
/// else musl when its loader is.
pub fn libc_of(tree: &Path) -> Libc {
    let glibc = ["lib", "lib64", "usr/lib", "usr/lib64"].iter().any(|d| {
        !names_in(tree, d, "ld-linux").is_empty() || !names_in(tree, d, "ld64.so").is_empty()
    });
    let musl = names_in(tree, "lib", "ld-musl-").first().cloned();
    match (glibc, glibc_version(tree), musl) {
        (true, Some(version), _) => Libc::Glibc(Some(version)),
        // Alpine's gcompat ships a glibc-named loader over musl: no glibc
        // says its version there.
        (_, None, Some(loader)) => Libc::Musl(format!("/lib/{loader}")),
        (true, None, None) => Libc::Glibc(None),
        (false, _, None) => Libc::Unknown,
        (false, Some(_), Some(loader)) => Libc::Musl(format!("/lib/{loader}")),
    }
}

/// The version glibc's libc.so.6 prints ("... release version 2.36."),
/// from the multiarch directories (`lib/x86_64-linux-gnu`) or lib64.
fn glibc_version(tree: &Path) -> Option<(u32, u32)> {
    let mut dirs: Vec<String> = Vec::new();
    for top in ["lib", "usr/lib"] {
        for n in names_in(tree, top, "") {
            if n.contains("-linux-gnu") {
                dirs.push(format!("{top}/{n}"));
            }
        }
    }
    dirs.extend(["lib64", "usr/lib64", "lib", "usr/lib"].map(String::from));
    dirs.iter().find_map(|d| {
        let file = inside(tree, &format!("{d}/libc.so.6"), true)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(file).ok()?, 64 << 20),
            &mut bytes,
        )
        .ok()?;
        banner_version(&bytes)
    })
}

/// "release version 2.36" in glibc's banner, as (2, 36).
fn banner_version(bytes: &[u8]) -> Option<(u32, u32)> {
    const NEEDLE: &[u8] = b"release version ";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let text: String = bytes[at..]
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    let mut parts = text.split('.').filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Checks, before anything is compiled, that the compiler (`name` in the
/// message) builds for the base: it has the base's interpreter `python`,
/// and its C library is the base's kind and no newer (code linked against a
/// newer glibc may not load in an older one). Each refusal names both.
pub fn check_compiler(
    base: &Path,
    compiler: &Path,
    name: &str,
    python: &str,
) -> Result<(), RootfsError> {
    let found = python_versions(compiler);
    if !found.iter().any(|v| v == python) {
        return Err(RootfsError::CompilerPython {
            compiler: name.to_string(),
            python: python.to_string(),
            found: python_list(&found, "no python in /usr/bin"),
        });
    }
    let (theirs, ours) = (libc_of(compiler), libc_of(base));
    let fits = match (&theirs, &ours) {
        (Libc::Glibc(Some(c)), Libc::Glibc(Some(b))) => c <= b,
        (Libc::Glibc(_), Libc::Glibc(_)) => true,
        (Libc::Musl(_), Libc::Musl(_)) => true,
        (_, Libc::Unknown) => true,
        _ => false,
    };
    if !fits {
        return Err(RootfsError::CompilerLibc {
            compiler: name.to_string(),
            theirs: theirs.to_string(),
            ours: ours.to_string(),
        });
    }
    Ok(())
}

/// Whether the tree's /etc/passwd has the image's user: blue, uid 1000.
fn has_blue(tree: &Path) -> bool {
    let passwd = read_inside(tree, "etc/passwd").unwrap_or_default();
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

/// `found` as messages name it (`python3.11, python3.12`), else `none`.
fn python_list(found: &[String], none: &str) -> String {
    if found.is_empty() {
        return none.to_string();
    }
    found
        .iter()
        .map(|v| format!("python{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the interpreter: the one asked for, else what `python3` points at.
pub fn choose_python(tree: &Path, wanted: Option<&str>) -> Result<String, RootfsError> {
    let found = python_versions(tree);
    let list = || python_list(&found, "no python at all");
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
        std::fs::write(
            linked.path().join("usr/lib64/libc.so.6"),
            "GNU C Library stable release version 2.36.",
        )
        .unwrap();
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

    /// A glibc tree: its loader, python3.11 and a libc.so.6 whose banner
    /// says `version` (as Debian's does).
    fn glibc_tree(version: &str, python: &str) -> tempfile::TempDir {
        let t = tree_with(&[
            "lib64/ld-linux-x86-64.so.2",
            &format!("usr/bin/python{python}"),
        ]);
        let dir = t.path().join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&dir).unwrap();
        let mut libc = vec![0u8; 4096];
        libc.extend(
            format!("GNU C Library (Debian GLIBC {version}-9) stable release version {version}.\n")
                .bytes(),
        );
        std::fs::write(dir.join("libc.so.6"), libc).unwrap();
        // Merged /usr, as Debian has it: lib -> usr/lib.
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        t
    }

    #[test]
    fn the_c_library_is_read_from_the_loaders_and_glibcs_banner() {
        assert_eq!(
            libc_of(glibc_tree("2.36", "3.11").path()),
            Libc::Glibc(Some((2, 36)))
        );
        let unsaid = tree_with(&["lib64/ld-linux-x86-64.so.2"]);
        assert_eq!(libc_of(unsaid.path()), Libc::Glibc(None));
        let musl = tree_with(&["lib/ld-musl-x86_64.so.1"]);
        assert_eq!(
            libc_of(musl.path()),
            Libc::Musl("/lib/ld-musl-x86_64.so.1".into())
        );
        assert_eq!(libc_of(tree_with(&[]).path()), Libc::Unknown);
        // gcompat: a glibc-named loader over musl, no glibc banner.
        let gcompat = tree_with(&["lib/ld-musl-x86_64.so.1", "lib/ld-linux-x86-64.so.2"]);
        assert_eq!(
            libc_of(gcompat.path()),
            Libc::Musl("/lib/ld-musl-x86_64.so.1".into())
        );
        assert_eq!(banner_version(b"release version 2.9."), Some((2, 9)));
        assert_eq!(banner_version(b"release version 2"), None);
        assert_eq!(banner_version(b"no banner"), None);
    }

    #[test]
    fn a_compiler_that_cannot_build_for_the_base_is_refused_naming_both() {
        let base = glibc_tree("2.36", "3.11");
        // The same release, or an older glibc: fine.
        assert!(
            check_compiler(base.path(), glibc_tree("2.36", "3.11").path(), "c", "3.11").is_ok()
        );
        assert!(
            check_compiler(base.path(), glibc_tree("2.31", "3.11").path(), "c", "3.11").is_ok()
        );
        let err = check_compiler(
            base.path(),
            glibc_tree("2.36", "3.13").path(),
            "c.tar",
            "3.11",
        )
        .unwrap_err();
        assert!(matches!(err, RootfsError::CompilerPython { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("compiler c.tar has no python3.11")
                && text.contains("it has: python3.13"),
            "{text}"
        );
        let err = check_compiler(
            base.path(),
            glibc_tree("2.41", "3.11").path(),
            "c.tar",
            "3.11",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("built on glibc 2.41, the base on glibc 2.36"),
            "{err}"
        );
        let musl = tree_with(&["lib/ld-musl-x86_64.so.1", "usr/bin/python3.11"]);
        let err = check_compiler(base.path(), musl.path(), "c.tar", "3.11")
            .unwrap_err()
            .to_string();
        assert!(err.contains("built on musl"), "{err}");
        assert!(err.is_ascii());
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
