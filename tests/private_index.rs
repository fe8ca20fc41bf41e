//! The private package index of issue 13's tests (tests/support/private_index.rs):
//! what it publishes is a real release (pip installs it, wheel's own RECORD
//! check passes, the page's `#sha256=` is the file's), and reaches no other
//! index. No assemble build: these run in seconds.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use support::private_index::PrivateIndex;
use support::{data, http_get, index, repo, run};

/// The data venv's pip, configured by nothing of the host's, without cache
/// (a cached build of another run's sdist must not stand in for this one).
fn pip() -> Command {
    let mut c = Command::new(data().join("venv/bin/pip"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PIP_") {
            c.env_remove(k);
        }
    }
    c.env("PIP_CONFIG_FILE", "/dev/null")
        .args([
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-input",
        ])
        .stdin(Stdio::null());
    c
}

/// An empty venv of the data venv's Python at `dir`: its python. Nothing is
/// installed in it, so what a test finds there is what pip put there.
fn venv(dir: &Path) -> PathBuf {
    let out = run(Command::new(data().join("venv/bin/python"))
        .args(["-m", "venv", "--without-pip"])
        .arg(dir));
    assert!(out.status.success(), "python -m venv {dir:?}");
    dir.join("bin/python")
}

/// `importlib.metadata.version(project)` in the environment of `python`.
fn installed_version(python: &Path, project: &str) -> String {
    let out = run(Command::new(python).args([
        "-c",
        "import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))",
        project,
    ]));
    assert!(out.status.success(), "no {project} in {python:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `#sha256=` fragment of FILE's link on a simple page, if listed.
fn listed_sha256(page: &str, file: &str) -> Option<String> {
    let link = format!("href=\"/packages/{file}#sha256=");
    let rest = &page[page.find(&link)? + link.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Every file of a directory with its sha256.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                hex::encode(Sha256::digest(&bytes)),
            )
        })
        .collect()
}

/// tests/index-tool.py with the data venv's Python.
fn index_tool(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(data().join("venv/bin/python"))
        .arg(repo().join("tests/index-tool.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bumped_wheel_is_listed_with_its_hash_beside_the_old_one_and_pip_installs_it() {
    let idx = PrivateIndex::start();
    let old = "sqlparse-0.5.3-py3-none-any.whl";
    let new = "sqlparse-0.5.4-py3-none-any.whl";
    let before = idx.files();
    assert!(before.iter().any(|f| f == old), "{before:?}");

    assert_eq!(
        idx.bump_wheel("sqlparse"),
        ("0.5.3".to_string(), "0.5.4".to_string())
    );
    let mut expected = before.clone();
    expected.push(new.to_string());
    expected.sort();
    assert_eq!(idx.files(), expected, "one file added, none changed");

    let page = idx.page("sqlparse");
    for file in [old, new] {
        assert_eq!(
            listed_sha256(&page, file),
            Some(idx.sha256(file)),
            "{file} on the page:\n{page}"
        );
    }
    assert_ne!(idx.sha256(old), idx.sha256(new));

    // wheel's own reader checks each file against RECORD (hash and size)
    // and refuses a file RECORD does not list.
    let unpacked = tempfile::tempdir().unwrap();
    let out = run(Command::new(data().join("venv/bin/wheel"))
        .arg("unpack")
        .arg("-d")
        .arg(unpacked.path())
        .arg(idx.dir().join(new)));
    assert!(out.status.success(), "wheel unpack {new}");
    let metadata = support::read(
        &unpacked
            .path()
            .join("sqlparse-0.5.4/sqlparse-0.5.4.dist-info/METADATA"),
    );
    assert!(metadata.contains("\nVersion: 0.5.4\n"), "{metadata}");

    // pip from the served index: picks the newest, checks the page's
    // fragment against the file it downloads, installs.
    let env = tempfile::tempdir().unwrap();
    let python = venv(env.path());
    let out = run(pip().arg("--python").arg(&python).args([
        "install",
        "--index-url",
        &idx.url(),
        "sqlparse",
    ]));
    assert!(out.status.success(), "pip install sqlparse");
    assert_eq!(installed_version(&python, "sqlparse"), "0.5.4");

    let requests = idx.requests();
    assert!(
        requests.iter().any(|r| r == "GET /simple/sqlparse/"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == &format!("GET /packages/{new}")),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET /packages/sqlparse-0.5.3")),
        "the old release was not downloaded: {requests:?}"
    );
}

#[test]
fn bump_wheel_releases_after_the_newest_wheel_of_the_project() {
    let idx = PrivateIndex::start();
    assert_eq!(idx.bump_wheel("sqlparse").1, "0.5.4");
    assert_eq!(
        idx.bump_wheel("sqlparse"),
        ("0.5.4".to_string(), "0.5.5".to_string())
    );
    // A name given unnormalized, a wheel with two Python tags.
    assert_eq!(
        idx.bump_wheel("Six"),
        ("1.16.0".to_string(), "1.16.1".to_string())
    );
    let page = idx.page("six");
    let file = "six-1.16.1-py2.py3-none-any.whl";
    assert_eq!(listed_sha256(&page, file), Some(idx.sha256(file)), "{page}");
    let page = idx.page("sqlparse");
    for v in ["0.5.3", "0.5.4", "0.5.5"] {
        assert!(
            page.contains(&format!(">sqlparse-{v}-py3-none-any.whl<")),
            "{page}"
        );
    }
}

#[test]
fn released_app_sdist_is_listed_with_its_hash_and_builds_and_installs_at_its_version() {
    let idx = PrivateIndex::start();
    let file = idx.release_app("0.4.1");
    assert_eq!(file, "milborne-0.4.1.tar.gz");
    let page = idx.page("milborne");
    for f in ["milborne-0.4.0.tar.gz", &file] {
        assert_eq!(listed_sha256(&page, f), Some(idx.sha256(f)), "{f}:\n{page}");
    }

    // Built by the data venv's setuptools from the index directory alone
    // (no index, no build isolation: nothing fetched), then installed.
    let wheels = tempfile::tempdir().unwrap();
    let out = run(pip()
        .args(["wheel", "--no-build-isolation", "--no-deps", "--no-index"])
        .arg("--find-links")
        .arg(idx.dir())
        .arg("--wheel-dir")
        .arg(wheels.path())
        .arg("milborne==0.4.1"));
    assert!(out.status.success(), "pip wheel milborne==0.4.1");
    let env = tempfile::tempdir().unwrap();
    let python = venv(env.path());
    let out = run(pip()
        .arg("--python")
        .arg(&python)
        .args(["install", "--no-deps", "--no-index"])
        .arg("--find-links")
        .arg(wheels.path())
        .arg("milborne==0.4.1"));
    assert!(out.status.success(), "pip install milborne==0.4.1");
    assert_eq!(installed_version(&python, "milborne"), "0.4.1");
    // The C extension was compiled into it.
    let out = run(Command::new(&python).args(["-c", "import milborne._speedups"]));
    assert!(out.status.success(), "import milborne._speedups");
}

#[test]
fn two_private_indexes_and_the_shared_index_do_not_see_each_others_releases() {
    let shared_files = hashes(&data().join("index"));
    let shared_port: u16 = index()
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/simple/")
        .parse()
        .unwrap();
    let shared_page = http_get(shared_port, "/simple/sqlparse/").unwrap();

    let a = PrivateIndex::start();
    let b = PrivateIndex::start();
    assert_ne!(a.url(), b.url());
    a.bump_wheel("sqlparse");
    b.remove("six-1.16.0-py2.py3-none-any.whl");

    assert!(a
        .page("sqlparse")
        .contains("sqlparse-0.5.4-py3-none-any.whl"));
    assert!(!b.page("sqlparse").contains("sqlparse-0.5.4"));
    assert!(!b.dir().join("sqlparse-0.5.4-py3-none-any.whl").exists());
    assert_eq!(http_get(b.port(), "/simple/six/").unwrap().0, 404);
    assert!(a.page("six").contains("six-1.16.0-py2.py3-none-any.whl"));

    assert_eq!(
        http_get(shared_port, "/simple/sqlparse/").unwrap(),
        shared_page
    );
    assert_eq!(http_get(shared_port, "/simple/six/").unwrap().0, 200);
    assert_eq!(hashes(&data().join("index")), shared_files);
}

#[test]
fn index_tool_refuses_bad_releases_with_exit_2_and_adds_nothing() {
    let idx = PrivateIndex::start();
    let before = hashes(&idx.dir());

    let out = index_tool(&[
        "bump-wheel".as_ref(),
        idx.dir().as_os_str(),
        "milborne".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no wheel of milborne"), "{stderr}");

    let src = repo().join("tests/fixtures/milborne");
    let out = index_tool(&[
        "release-sdist".as_ref(),
        src.as_os_str(),
        idx.dir().as_os_str(),
        "0.4.0".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("milborne-0.4.0.tar.gz already exists"),
        "{stderr}"
    );

    assert_eq!(hashes(&idx.dir()), before);
}
