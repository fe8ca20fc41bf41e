//! A package index of a test's own, for tests that publish releases between
//! two builds (issue 13: a dependency release, an application release).
//!
//! `PrivateIndex::start()` copies the run's index files (`data()/index`:
//! the pinned wheels and the fixture's sdist, whose sha256 differs per data
//! dir: read hashes with `sha256()` or from `page()`, never hard-code them)
//! into a temporary directory and serves it with the same pypiserver as
//! `index()`, on its own loopback port, so that what one test publishes is
//! seen by no other test and never by the shared `index()`. The files are
//! copied, not hardlinked: a test may overwrite one in place.
//!
//! Releases are made by `tests/index-tool.py` (run by the data venv's
//! Python, whose setuptools builds the sdists) and appear in the directory
//! complete or not at all; pypiserver lists the directory on every request,
//! so the next page served shows them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{data, free_port, http_get, read, repo, spawn_with_deathsig};

/// Where each request line is logged, before pypiserver answers it: a
/// client that has its answer finds the request in `requests()`.
const REQUEST_MARK: &str = "request ";

/// A pypiserver over a private copy of the test index; stopped and removed
/// when dropped. It is killed too if the thread that started it ends, so
/// keep it in the test that uses it (not in a static).
pub struct PrivateIndex {
    root: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl PrivateIndex {
    /// Copies `data()/index` and serves the copy on a free loopback port.
    pub fn start() -> PrivateIndex {
        let root = tempfile::Builder::new()
            .prefix("private-index-")
            .tempdir()
            .unwrap();
        let index = root.path().join("index");
        std::fs::create_dir(&index).unwrap();
        for entry in std::fs::read_dir(data().join("index")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            // `.complete` is prepare.sh's stamp; pypiserver lists no dot file.
            if !name.to_string_lossy().starts_with('.') && entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), index.join(&name)).unwrap();
            }
        }
        // The port is free when chosen but another process may take it
        // before pypiserver binds: then pypiserver exits and another port is
        // tried. Its health endpoint is named after its directory, so that
        // another pypiserver on the port is never taken for this one.
        let health = format!("/{}", root.path().file_name().unwrap().to_string_lossy());
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn(root.path(), &index, port, &health);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
                if let Some((200, _)) = http_get(port, &health) {
                    return PrivateIndex { root, port, child };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "pypiserver did not start on a private index:\n{}",
            read(&root.path().join("pypiserver.err"))
        );
    }

    /// The PEP 503 simple index URL, `http://127.0.0.1:PORT/simple/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }

    /// The port pypiserver listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory served: the index's files, nothing else.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("index")
    }

    /// The file names in the index, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// The request lines served so far, in order: `GET /simple/django/`,
    /// `GET /packages/django-4.2.30-py3-none-any.whl` (no query string, no
    /// HTTP version). `page()` and the start-up checks (`GET /private-index-…`) are
    /// requests too.
    pub fn requests(&self) -> Vec<String> {
        read(&self.root.path().join("pypiserver.log"))
            .lines()
            .filter_map(|l| l.strip_prefix(REQUEST_MARK))
            .map(str::to_string)
            .collect()
    }

    /// The body of `/simple/PROJECT/` (PROJECT normalized as PEP 503 says);
    /// panics unless pypiserver answers 200.
    pub fn page(&self, project: &str) -> String {
        let path = format!("/simple/{}/", normalize(project));
        match http_get(self.port, &path) {
            Some((200, body)) => body,
            other => panic!("GET {path} on the private index: {other:?}"),
        }
    }

    /// The sha256 (hex) of one file of the index.
    pub fn sha256(&self, file_name: &str) -> String {
        let bytes = std::fs::read(self.file(file_name)).unwrap();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Publishes the next patch release of PROJECT's newest wheel
    /// (4.2.30 → 4.2.31), beside the old one: the wheel rewritten with its
    /// new file name, `.dist-info` name, METADATA `Version:` and RECORD.
    /// Returns (old, new) versions.
    pub fn bump_wheel(&self, project: &str) -> (String, String) {
        let out = self.tool(&[
            "bump-wheel".as_ref(),
            self.dir().as_os_str(),
            project.as_ref(),
        ]);
        // "OLD NEW FILE"
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words.len(), 3, "unexpected bump-wheel output: {out:?}");
        (words[0].to_string(), words[1].to_string())
    }

    /// Publishes the fixture project (tests/fixtures/milborne) at `version`
    /// as an sdist, built from a copy whose pyproject.toml declares that
    /// version; returns the sdist's file name.
    pub fn release_app(&self, version: &str) -> String {
        let src = repo().join("tests/fixtures/milborne");
        let out = self.tool(&[
            "release-sdist".as_ref(),
            src.as_os_str(),
            self.dir().as_os_str(),
            version.as_ref(),
        ]);
        out.trim().to_string()
    }

    /// Removes one file from the index (as an index that deletes a release).
    pub fn remove(&self, file_name: &str) {
        std::fs::remove_file(self.file(file_name)).unwrap();
    }

    /// The path of one file of the index; `file_name` is a bare name.
    fn file(&self, file_name: &str) -> PathBuf {
        assert!(
            !file_name.is_empty() && !file_name.contains('/') && !file_name.starts_with('.'),
            "not a file name of the index: {file_name:?}"
        );
        self.dir().join(file_name)
    }

    /// Runs tests/index-tool.py with the data venv's Python: its stdout.
    fn tool(&self, args: &[&std::ffi::OsStr]) -> String {
        let out = Command::new(data().join("venv/bin/python"))
            .arg(repo().join("tests/index-tool.py"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/index-tool.py {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pypiserver as `index()` runs it, plus a request log in `root`.
fn spawn(root: &Path, index: &Path, port: u16, health: &str) -> Child {
    spawn_with_deathsig(
        Command::new(data().join("venv/bin/pypi-server"))
            .args(["run", "-i", "127.0.0.1", "-p", &port.to_string()])
            .arg("--disable-fallback")
            .args(["--health-endpoint", health])
            // Without watchdog, "auto" is this backend already; said
            // explicitly because the caching one would notice a release
            // only when inotify has told it, after the release returned.
            .args(["--backend", "simple-dir"])
            // -v: requests are logged at INFO; one line each, as REQUEST_MARK
            // METHOD PATH, written by a before_request hook.
            .arg("-v")
            .arg("--log-file")
            .arg(root.join("pypiserver.log"))
            .args(["--log-stream", "none", "--log-frmt", "%(message)s"])
            .arg("--log-req-frmt")
            .arg(format!("{REQUEST_MARK}%(REQUEST_METHOD)s %(PATH_INFO)s"))
            .arg(index)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("pypiserver.err")).unwrap()),
    )
}

/// A PEP 503 normalized project name: `Django` → `django`, `a_b.c` → `a-b-c`.
pub fn normalize(project: &str) -> String {
    let mut out = String::new();
    for c in project.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}
