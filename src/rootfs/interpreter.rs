//! Which Python a rootfs has, and which one a build uses.

use std::path::Path;

use crate::rootfs::error::RootfsError;

/// The directories a process looks for programs in when the image's
/// configuration sets no `PATH` (Debian's and Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One interpreter of a tree: its version (`3.11`) and where it is
/// (`/usr/local/bin/python3.11`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// `X.Y`.
    pub version: String,
    /// Its absolute path in the tree.
    pub path: String,
}

impl Interpreter {
    /// Debian's own interpreter, in /usr/bin: the one Debian's uWSGI plugin
    /// is built for. Any other (python.org's under /usr/local, as in the
    /// `python` images) runs uWSGI from the venv.
    pub fn debian(&self) -> bool {
        self.path == format!("/usr/bin/python{}", self.version)
    }

    /// The interpreter at /usr/bin (a built base's, and what offline
    /// stores and records of builds before interpreters had a path meant).
    pub fn in_usr_bin(version: &str) -> Self {
        Interpreter {
            version: version.to_string(),
            path: format!("/usr/bin/python{version}"),
        }
    }

    /// What the program running the image's scripts (the entrypoint, the
    /// supervisord listener) is called on their first line: Debian's
    /// `python3`, or this interpreter.
    pub fn shebang(&self) -> String {
        if self.debian() {
            "#!/usr/bin/python3".into()
        } else {
            format!("#!{}", self.path)
        }
    }
}

/// The interpreters (`pythonX.Y`) on `path` (a `PATH`: directories in the
/// tree, searched in order), one per version: the first found that is a
/// program (a regular file once its symlinks are resolved in the tree).
/// One that is, or links to, `/usr/bin/pythonX.Y` (a venv's, usr-merged
/// `/bin`'s) is Debian's, and named so.
pub fn interpreters(tree: &Path, path: &str) -> Vec<Interpreter> {
    let mut found: Vec<Interpreter> = Vec::new();
    for dir in path_dirs(path) {
        let mut here: Vec<String> = names_in(tree, &dir, "python")
            .into_iter()
            .filter_map(|n| Some(n.strip_prefix("python")?.to_string()))
            .filter(|v| version_like(v))
            .collect();
        here.sort_by_key(|v| version_key(v));
        for v in here {
            if found.iter().any(|i| i.version == v) {
                continue;
            }
            let candidate = format!("{}/python{v}", dir.trim_end_matches('/'));
            let Some(program) = inside(tree, &candidate, true).filter(|p| p.is_file()) else {
                continue;
            };
            let debian = inside(tree, &format!("usr/bin/python{v}"), false)
                .is_some_and(|own| own == program);
            found.push(if debian {
                Interpreter::in_usr_bin(&v)
            } else {
                Interpreter {
                    path: candidate,
                    version: v,
                }
            });
        }
    }
    found
}

/// The directories of a `PATH` looked in, in order: absolute ones,
/// normalised (`.`, `..` and repeated slashes resolved as text), of plain
/// characters only and not too long (a path found there goes into scripts
/// and a shebang line).
fn path_dirs(path: &str) -> Vec<String> {
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| {
            let mut parts: Vec<&str> = Vec::new();
            for p in d.split('/') {
                match p {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    p => parts.push(p),
                }
            }
            format!("/{}", parts.join("/"))
        })
        .filter(|d| {
            d.len() <= 200
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+@/-".contains(c))
        })
        .collect()
}

/// `3.11`: digits, a dot, digits.
fn version_like(v: &str) -> bool {
    v.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit())
    })
}

/// `3.9` before `3.10`.
fn version_key(v: &str) -> (u32, u32) {
    let (a, b) = v.split_once('.').unwrap_or((v, ""));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

/// What the image runs from its base besides Python: (path in the tree,
/// what to call it, the Debian package that brings it, whether only
/// Debian's interpreter needs it).
const RUNTIME: [(&str, &str, &str, bool); 3] = [
    ("usr/sbin/nginx", "nginx", "nginx-light", false),
    ("usr/bin/uwsgi", "uwsgi", "uwsgi-core", true),
    (
        "usr/lib/uwsgi/plugins/python3_plugin.so",
        "uWSGI's python3 plugin",
        "uwsgi-plugin-python3",
        true,
    ),
];

/// Refuses a base built on musl: the wheels and Debian's packages are
/// glibc's.
pub fn check_libc(tree: &Path) -> Result<(), RootfsError> {
    match libc_of(tree) {
        Libc::Musl(loader) => Err(RootfsError::MuslBase { loader }),
        _ => Ok(()),
    }
}

/// Checks, before any work on it, that a given base can carry the image
/// with `python` (its interpreter, found on the image's `path`): glibc (not
/// musl), nginx, supervisord on `path`, the user blue, and for Debian's
/// interpreter uWSGI and its python3 plugin (any other runs uWSGI from the
/// venv, compiled like any wheel). Each refusal names what is missing and
/// what to do instead.
pub fn check_base(tree: &Path, python: &Interpreter, path: &str) -> Result<(), RootfsError> {
    check_libc(tree)?;
    let exists = |rel: &str| exists_inside(tree, rel);
    let mut missing: Vec<(&str, &str)> = RUNTIME
        .iter()
        .filter(|(path, _, _, debian_only)| (python.debian() || !debian_only) && !exists(path))
        .map(|(_, what, pkg, _)| (*what, *pkg))
        .collect();
    if !path_dirs(path)
        .iter()
        .any(|d| exists(&format!("{d}/supervisord")))
    {
        // Listed after nginx, as the image starts them.
        let at = missing
            .iter()
            .take_while(|(what, _)| *what == "nginx")
            .count();
        missing.insert(at, ("supervisord", "supervisor"));
    }
    let user = !has_blue(tree);
    if !missing.is_empty() || user {
        let mut what: Vec<String> = missing.iter().map(|(what, _)| what.to_string()).collect();
        if user {
            what.push("user blue (uid 1000, group www-data)".into());
        }
        return Err(RootfsError::BaseLacks {
            missing: what,
            packages: missing.iter().map(|(_, pkg)| pkg.to_string()).collect(),
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
pub fn exists_inside(tree: &Path, rel: &str) -> bool {
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
    python: &Interpreter,
) -> Result<(), RootfsError> {
    if !exists_inside(compiler, &python.path) {
        let found: Vec<String> = interpreters(compiler, DEFAULT_PATH)
            .into_iter()
            .map(|i| i.path)
            .collect();
        return Err(RootfsError::CompilerPython {
            compiler: name.to_string(),
            python: python.path.clone(),
            found: if found.is_empty() {
                "no python on the default PATH".into()
            } else {
                found.join(", ")
            },
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

/// Picks the interpreter on the image's `path`: the version asked for,
/// else what the first `python3` on `path` points at, else the only
/// version there is.
pub fn choose_python(
    tree: &Path,
    wanted: Option<&str>,
    path: &str,
) -> Result<Interpreter, RootfsError> {
    let found = interpreters(tree, path);
    let list = || {
        let versions: Vec<String> = found.iter().map(|i| i.version.clone()).collect();
        python_list(&versions, "no python at all")
    };
    if let Some(w) = wanted {
        return found
            .iter()
            .find(|i| i.version == w)
            .cloned()
            .ok_or_else(|| RootfsError::NoPython {
                wanted: w.to_string(),
                found: list(),
            });
    }
    let python3 = path_dirs(path).into_iter().find_map(|d| {
        let link = inside(tree, &format!("{d}/python3"), false)?;
        let target = std::fs::read_link(link).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        Some(name.strip_prefix("python")?.to_string())
    });
    if let Some(i) = python3.and_then(|v| found.iter().find(|i| i.version == v)) {
        return Ok(i.clone());
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

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nblue:x:1000:33::/home/blue:/bin/bash\n";

    #[test]
    fn a_base_that_cannot_carry_the_image_is_refused_saying_why() {
        let debian = Interpreter::in_usr_bin("3.11");
        let runtime = [
            "usr/sbin/nginx",
            "usr/bin/supervisord",
            "usr/bin/uwsgi",
            "usr/lib/uwsgi/plugins/python3_plugin.so",
        ];
        let files = [
            &["usr/bin/python3.11", "lib64/ld-linux-x86-64.so.2"][..],
            &runtime,
        ]
        .concat();
        let good = tree_with(&[&files[..], &["etc/passwd"]].concat());
        std::fs::write(good.path().join("etc/passwd"), PASSWD).unwrap();
        assert!(check_base(good.path(), &debian, DEFAULT_PATH).is_ok());
        // Without the user: said, with how to make it.
        std::fs::write(
            good.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        let err = check_base(good.path(), &debian, DEFAULT_PATH)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user blue (uid 1000") && err.contains("useradd --uid 1000"),
            "{err}"
        );
        assert!(
            !err.contains("Debian packages"),
            "no package is missing: {err}"
        );
        // Symlinks are resolved inside the tree, never on the host: an
        // absolute lib64 -> /usr/lib64 finds the tree's loader.
        let linked = tree_with(&["usr/lib64/ld-linux-x86-64.so.2", "lib/ld-musl-x86_64.so.1"]);
        std::fs::write(
            linked.path().join("usr/lib64/libc.so.6"),
            "GNU C Library stable release version 2.36.",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/lib64", linked.path().join("lib64")).unwrap();
        assert!(
            !matches!(
                check_base(linked.path(), &debian, DEFAULT_PATH),
                Err(RootfsError::MuslBase { .. })
            ),
            "the glibc loader behind the absolute link is the tree's"
        );
        let escape = tree_with(&["lib64/ld-linux-x86-64.so.2"]);
        std::fs::create_dir_all(escape.path().join("usr/local")).unwrap();
        std::os::unix::fs::symlink("../../..", escape.path().join("usr/local/up")).unwrap();
        assert_eq!(
            inside(escape.path(), "usr/local/up/etc", false),
            Some(escape.path().join("etc"))
        );
        let alpine = tree_with(&["lib/ld-musl-x86_64.so.1", "usr/bin/python3.12"]);
        let err = check_base(
            alpine.path(),
            &Interpreter::in_usr_bin("3.12"),
            DEFAULT_PATH,
        )
        .unwrap_err();
        assert!(matches!(err, RootfsError::MuslBase { .. }), "{err}");
        assert!(
            err.to_string().contains("/lib/ld-musl-x86_64.so.1"),
            "{err}"
        );
        let bare = tree_with(&["usr/bin/python3.11", "usr/bin/apt-get", "usr/sbin/nginx"]);
        let err = check_base(bare.path(), &debian, DEFAULT_PATH)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("supervisord, uwsgi, uWSGI's python3 plugin")
                && err.contains("supervisor uwsgi-core uwsgi-plugin-python3")
                && err.contains("(apt-get install)")
                && !err.contains("nginx"),
            "{err}"
        );
        let no_apt = tree_with(&["usr/bin/python3.11"]);
        let err = check_base(no_apt.path(), &debian, DEFAULT_PATH)
            .unwrap_err()
            .to_string();
        assert!(err.contains("it has no apt"), "{err}");
    }

    #[test]
    fn an_interpreter_under_usr_local_is_found_on_the_images_path_and_needs_no_debian_uwsgi() {
        // As the `python` images have it: python.org's build in
        // /usr/local/bin, supervisord installed there by pip, no uWSGI.
        let slim = tree_with(&[
            "usr/local/bin/python3.12",
            "usr/local/bin/supervisord",
            "usr/sbin/nginx",
            "lib64/ld-linux-x86-64.so.2",
            "etc/passwd",
        ]);
        std::fs::write(slim.path().join("etc/passwd"), PASSWD).unwrap();
        std::os::unix::fs::symlink("python3.12", slim.path().join("usr/local/bin/python3"))
            .unwrap();
        let python = choose_python(slim.path(), None, DEFAULT_PATH).unwrap();
        assert_eq!(python.path, "/usr/local/bin/python3.12");
        assert!(!python.debian());
        assert_eq!(python.shebang(), "#!/usr/local/bin/python3.12");
        assert!(check_base(slim.path(), &python, DEFAULT_PATH).is_ok());
        // supervisord is looked for on the image's PATH only.
        let err = check_base(slim.path(), &python, "/usr/bin:/bin")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("supervisord") && !err.contains("uwsgi"),
            "{err}"
        );
        // Debian's interpreter beside it (supervisor's apt package brings
        // one): the PATH's order decides, as in the image.
        std::fs::create_dir_all(slim.path().join("usr/bin")).unwrap();
        for f in ["usr/bin/python3.11", "usr/bin/python3.12"] {
            std::fs::write(slim.path().join(f), "").unwrap();
        }
        std::os::unix::fs::symlink("python3.11", slim.path().join("usr/bin/python3")).unwrap();
        let found = interpreters(slim.path(), DEFAULT_PATH);
        assert_eq!(
            found.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
            ["/usr/local/bin/python3.12", "/usr/bin/python3.11"]
        );
        assert_eq!(
            choose_python(slim.path(), None, DEFAULT_PATH).unwrap().path,
            "/usr/local/bin/python3.12"
        );
        let debian = choose_python(slim.path(), None, "/usr/bin:/usr/local/bin").unwrap();
        assert!(debian.debian(), "{debian:?}");
        assert_eq!(debian.shebang(), "#!/usr/bin/python3");
        assert_eq!(
            choose_python(slim.path(), Some("3.11"), DEFAULT_PATH)
                .unwrap()
                .path,
            "/usr/bin/python3.11"
        );
        // A relative or empty PATH entry is not looked in, nor one with
        // characters a script or a shebang line would split or run.
        assert!(interpreters(slim.path(), "usr/local/bin::").is_empty());
        std::fs::create_dir_all(slim.path().join("opt/a b")).unwrap();
        std::fs::write(slim.path().join("opt/a b/python3.9"), "").unwrap();
        assert!(interpreters(slim.path(), "/opt/a b").is_empty());
        // Written oddly, the same directory.
        assert_eq!(
            interpreters(slim.path(), "//usr/local/./bin/../bin")[0].path,
            "/usr/local/bin/python3.12"
        );
        // A venv on PATH, or a link to /usr/bin's program: Debian's, named
        // so; a dangling link is no interpreter.
        let venv = slim.path().join("opt/venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3.11", venv.join("python3.11")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3.10", venv.join("python3.10")).unwrap();
        let found = interpreters(slim.path(), "/opt/venv/bin");
        assert_eq!(found, [Interpreter::in_usr_bin("3.11")]);
        assert!(found[0].debian());
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
        let py = Interpreter::in_usr_bin("3.11");
        // The same release, or an older glibc: fine.
        assert!(check_compiler(base.path(), glibc_tree("2.36", "3.11").path(), "c", &py).is_ok());
        assert!(check_compiler(base.path(), glibc_tree("2.31", "3.11").path(), "c", &py).is_ok());
        let err = check_compiler(base.path(), glibc_tree("2.36", "3.13").path(), "c.tar", &py)
            .unwrap_err();
        assert!(matches!(err, RootfsError::CompilerPython { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("compiler c.tar has no /usr/bin/python3.11")
                && text.contains("it has: /usr/bin/python3.13"),
            "{text}"
        );
        let err = check_compiler(base.path(), glibc_tree("2.41", "3.11").path(), "c.tar", &py)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built on glibc 2.41, the base on glibc 2.36"),
            "{err}"
        );
        let musl = tree_with(&["lib/ld-musl-x86_64.so.1", "usr/bin/python3.11"]);
        let err = check_compiler(base.path(), musl.path(), "c.tar", &py)
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
        let choose = |wanted| choose_python(t.path(), wanted, DEFAULT_PATH).map(|i| i.version);
        assert_eq!(choose(None).unwrap(), "3.12");
        assert_eq!(choose(Some("3.11")).unwrap(), "3.11");
        let e = choose(Some("2.7")).unwrap_err().to_string();
        assert!(e.contains("python3.11, python3.12"), "{e}");
    }
}
