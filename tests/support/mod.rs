//! Shared fixtures of the integration tests: real parts started on loopback.
//!
//! - `shared()`: a directory for one test run (`$ASSEMBLE_TEST_SHARED`, else
//!   `target/test-shared`; `.ci/run` makes a fresh one per run). It holds the
//!   prepared test data and the cache with the mmdebstrap base, built once
//!   per run under a file lock, so test binaries and threads share it.
//! - `index()`: pypiserver serving `tests/index-requirements.txt` and the
//!   fixture's sdist, on a free loopback port, fallback to PyPI disabled.
//! - `image()`: an image built once per run and shared by the tests that
//!   only read it.
//! - `Registry`: a real registry on loopback, and `Api`: one of its
//!   repositories through the HTTP API, to fill or tamper with by hand.
//! - `private_index::PrivateIndex`: an index of a test's own, to publish
//!   releases into.
//! - `debian_mirror`: a partial Debian mirror the tests control, served on
//!   loopback, and a network namespace with only loopback to build in.
#![allow(dead_code)]

pub mod debian_mirror;
pub mod private_index;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_assemble"))
}

/// The per-run shared directory.
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("ASSEMBLE_TEST_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-shared"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An exclusive lock, held until dropped.
pub struct Lock(File);

/// Takes the lock `shared()/NAME.lock`. Ports are the machine's, not the run's: `port-*` locks live in the
/// system's temporary directory, so that two test runs on one machine (two
/// checkouts) take turns on 8080 and 8081 instead of answering each other.
pub fn lock(name: &str) -> Lock {
    let path = if name.starts_with("port-") {
        std::env::temp_dir().join(format!("assemble-tests-{name}.lock"))
    } else {
        shared().join(format!("{name}.lock"))
    };
    let f = File::create(path).unwrap();
    // SAFETY: flock on a descriptor owned by `f`, which outlives the call;
    // it touches no memory of ours.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {name}");
    Lock(f)
}

/// Test data from tests/prepare.sh (venv with pypiserver, index files, wheel).
pub fn data() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let _l = lock("prepare");
        let out = shared().join("data");
        let st = Command::new("bash")
            .arg(repo().join("tests/prepare.sh"))
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success(), "tests/prepare.sh failed");
        out
    })
    .clone()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on the port.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The pypiserver of this test process: its simple index URL.
pub fn index() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let data = data();
        let port = free_port();
        // The child is spawned from a thread that never ends: PDEATHSIG fires
        // when the spawning *thread* exits, and test threads end early.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = spawn_with_deathsig(
                Command::new(data.join("venv/bin/pypi-server"))
                    .args([
                        "run",
                        "-i",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "--disable-fallback",
                    ])
                    .arg(data.join("index"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            tx.send(()).unwrap();
            let _keep = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap();
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "pypiserver did not start"
        );
        format!("http://127.0.0.1:{port}/simple/")
    })
    .clone()
}

/// Spawns a command that is killed when this process's spawning thread dies.
pub fn spawn_with_deathsig(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec: one prctl
    // system call, no allocation, no lock.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// The run's shared cache, with the base and compiler rootfs built.
pub fn cache() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let _l = lock("base");
        let cache = shared().join("cache");
        let out = assemble()
            .arg("base")
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "assemble base failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cache
    })
    .clone()
}

/// The binary with a clean environment for builds.
pub fn assemble() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("ASSEMBLE_CACHE_DIR")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("ASSEMBLE_CACHE_REPO")
        .env_remove("DOCKER_CONFIG")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null());
    c
}

/// `assemble REQUIREMENT` against the test index and the run's cache, into `output`.
pub fn build_cmd(requirement: impl AsRef<std::ffi::OsStr>, output: &Path) -> Command {
    let mut c = assemble();
    c.arg(requirement)
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(output);
    c
}

/// Runs and returns the output, printing stderr on failure for the test log.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "command failed: {cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The result line of a build: `oci:DIR:TAG sha256:...`.
pub fn digest_of(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    line.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// A team's base as `debian:bookworm` plus the runtime packages would be:
/// mmdebstrap's apt variant (apt and its sources kept) with the runtime
/// packages, pip and Python's headers (as the `python` images have them),
/// and user blue, made once per run (from ASSEMBLE_DEBIAN_MIRROR
/// when set, else mmdebstrap's default mirrors): its tarball, readable by
/// every user.
pub fn team_base() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        mmdebstrap_base(
            "team-base",
            "python3,python3-venv,nginx-light,supervisor,uwsgi-core,uwsgi-plugin-python3,\
             ca-certificates,passwd,procps,python3-pip,python3-dev",
            true,
        )
    })
    .clone()
}

/// A base as `debian:bookworm` plus Debian's Python and uWSGI would be:
/// mmdebstrap's apt variant with python3 and uWSGI's plugin only, no nginx,
/// no supervisor, no user blue. Made once per run.
pub fn plain_base() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        mmdebstrap_base(
            "plain-base",
            "python3,python3-venv,uwsgi-core,uwsgi-plugin-python3",
            false,
        )
    })
    .clone()
}

/// `NAME.tar` in the shared directory: mmdebstrap's apt variant of
/// bookworm with `include`, and user blue when `blue` (from
/// ASSEMBLE_DEBIAN_MIRROR when set, else mmdebstrap's default mirrors),
/// readable by every user.
fn mmdebstrap_base(name: &str, include: &str, blue: bool) -> PathBuf {
    let _l = lock(name);
    let tarball = shared().join(format!("{name}.tar"));
    if !tarball.exists() {
        need("mmdebstrap");
        let partial = shared().join(format!("{name}.tar.part"));
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(["--quiet", "--variant=apt"])
            .arg(format!("--include={include}"));
        if blue {
            cmd.arg(
                "--customize-hook=chroot \"$1\" useradd --uid 1000 --gid 33 --create-home \
                 --home-dir /home/blue --shell /bin/bash blue",
            );
        }
        cmd.args(["--format=tar", "bookworm"]).arg(&partial);
        if let Ok(mirror) = std::env::var("ASSEMBLE_DEBIAN_MIRROR") {
            cmd.arg(mirror);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "mmdebstrap made no {name}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&partial, &tarball).unwrap();
    }
    tarball
}

/// A base whose only interpreter is under /usr/local, as the `python`
/// images have theirs: the team base with Debian's python3.11 moved there
/// (its program, standard library, site packages and headers, its
/// sysconfig data and the scripts of /usr/bin naming it there, as pip
/// would have installed supervisor), Debian's uWSGI removed. An OCI layout
/// (tag `base`) whose configuration sets its own PATH and TEAM_SETTING,
/// made once per run.
pub fn local_python_base() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let _l = lock("local-python-base");
        let dir = shared().join("local-python-base");
        let layout = dir.join("oci");
        if !dir.join("done").exists() {
            need("umoci");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let tarball = dir.join("rootfs.tar");
            python_moved_to_usr_local(&team_base(), &tarball);
            let image = format!("{}:base", layout.display());
            for args in [
                vec![
                    "init".to_string(),
                    "--layout".into(),
                    layout.display().to_string(),
                ],
                vec!["new".into(), "--image".into(), image.clone()],
                vec![
                    "raw".into(),
                    "add-layer".into(),
                    "--image".into(),
                    image.clone(),
                    tarball.display().to_string(),
                ],
                vec![
                    "config".into(),
                    "--image".into(),
                    image.clone(),
                    "--config.env".into(),
                    "PATH=/opt/team/bin:/usr/local/bin:/usr/bin:/bin".into(),
                    "--config.env".into(),
                    "TEAM_SETTING=kept".into(),
                ],
            ] {
                let out = run(Command::new("umoci").args(&args));
                assert!(out.status.success(), "umoci {args:?}");
            }
            std::fs::remove_file(&tarball).unwrap();
            std::fs::write(dir.join("done"), "").unwrap();
        }
        layout
    })
    .clone()
}

/// Rewrites the rootfs tarball `from` into `to` with Debian's python3.11
/// under /usr/local and no uWSGI (see [`local_python_base`]).
fn python_moved_to_usr_local(from: &Path, to: &Path) {
    const MOVED: [(&str, &str); 4] = [
        ("usr/bin/python3.11", "usr/local/bin/python3.11"),
        ("usr/lib/python3.11", "usr/local/lib/python3.11"),
        ("usr/lib/python3", "usr/local/lib/python3"),
        ("usr/include/python3.11", "usr/local/include/python3.11"),
    ];
    const DROPPED: [&str; 8] = [
        "usr/bin/python3",
        "usr/bin/python3-config",
        "usr/bin/python3.11-config",
        "usr/bin/uwsgi",
        "usr/bin/uwsgi-core",
        "usr/bin/uwsgi_python3",
        "usr/bin/uwsgi_python311",
        "usr/lib/uwsgi",
    ];
    let under = |p: &str, dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
    let moved = |p: &str| -> String {
        for (a, b) in MOVED {
            if under(p, a) {
                return format!("{b}{}", &p[a.len()..]);
            }
        }
        p.to_string()
    };
    let mut input = tar::Archive::new(File::open(from).unwrap());
    let mut out = tar::Builder::new(File::create(to).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let rel = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if rel.is_empty() || DROPPED.iter().any(|d| under(&rel, d)) {
            continue;
        }
        let mut header = entry.header().clone();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let kind = header.entry_type();
        if kind.is_file() {
            let text_of = |d: &[u8]| String::from_utf8(d.to_vec()).ok();
            let name = rel.rsplit('/').next().unwrap();
            if rel.starts_with("usr/lib/python3.11/")
                && name.starts_with("_sysconfigdata_")
                && name.ends_with(".py")
            {
                let text = text_of(&data)
                    .unwrap()
                    .replace("/usr/include/python3.11", "/usr/local/include/python3.11")
                    .replace("/usr/lib/python3.11", "/usr/local/lib/python3.11");
                data = text.into_bytes();
            } else if rel.starts_with("usr/bin/") && data.starts_with(b"#!/usr/bin/python3") {
                data = [
                    b"#!/usr/local/bin/python3",
                    &data[b"#!/usr/bin/python3".len()..],
                ]
                .concat();
            }
            header.set_size(data.len() as u64);
        }
        if let Some(target) = link.filter(|_| kind.is_hard_link() || kind.is_symlink()) {
            // A hard link names a member (moved with it); a symlink's
            // target is kept as it is.
            let target = if kind.is_hard_link() {
                moved(target.trim_start_matches("./"))
            } else {
                target
            };
            out.append_link(&mut header, moved(&rel), target).unwrap();
            continue;
        }
        out.append_data(&mut header, moved(&rel), data.as_slice())
            .unwrap();
    }
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_size(0);
    out.append_link(&mut link, "usr/local/bin/python3", "python3.11")
        .unwrap();
    out.finish().unwrap();
}

/// An image built once per run from the index (`milborne==0.4.0`): its layout dir.
pub fn image() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let _l = lock("image");
        let dir = shared().join("image");
        let marker = dir.join("digest");
        if !marker.exists() {
            let out = run(&mut build_cmd("milborne==0.4.0", &dir.join("oci")));
            assert!(out.status.success());
            std::fs::write(&marker, digest_of(&out)).unwrap();
        }
        dir.join("oci")
    })
    .clone()
}

/// A plain HTTP GET on 127.0.0.1: the whole response, headers included.
pub fn http_raw(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

/// A plain HTTP GET on 127.0.0.1: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let buf = http_raw(port, path)?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls an HTTP endpoint until it answers 200.
pub fn wait_http(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some((200, body)) = http_get(port, path) {
            return Some(body);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

/// A running `assemble run`, killed (with its sandbox) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped (the
        // Child is still held), so the pid names no other process.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that a tool is installed, else fails with how to get it: tests
/// never pass silently for lack of a tool.
pub fn need(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: run .ci/setup (it installs the test tools)")
        })
}

/// Reads a file to a string, empty when missing.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A real CNCF distribution registry (Debian's docker-registry) on a free
/// loopback port, with its own storage; killed when dropped.
pub struct Registry {
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// Starts one, with deletes enabled; `extra` is YAML appended to the
    /// configuration (auth, tls).
    pub fn start(extra: &str, http_extra: &str) -> Registry {
        Registry::start_with_env(extra, http_extra, &[])
    }

    /// Starts one with `env` in its environment, which overrides its
    /// configuration (`REGISTRY_STORAGE_DELETE_ENABLED=false`: deletes
    /// answered 405 UNSUPPORTED).
    pub fn start_with_env(extra: &str, http_extra: &str, env: &[(&str, &str)]) -> Registry {
        need("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-only-secret\n{http_extra}{extra}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = File::create(dir.path().join("registry.log")).unwrap();
        let child = spawn_with_deathsig(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .envs(env.iter().copied())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "docker-registry did not start"
        );
        Registry {
            host: format!("127.0.0.1:{port}"),
            dir,
            child,
        }
    }

    /// The registry's log (access lines included).
    pub fn log(&self) -> String {
        read(&self.dir.path().join("registry.log"))
    }

    /// How many access-log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Basic credentials as an `Authorization` header or a Docker config
/// carries them: base64 of `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// The time `days` days ago, as RFC 3339 (`2026-11-30T20:15:00Z`); made by
/// date(1), not by the code under test.
pub fn days_ago(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = run(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{}", now - days * 86_400),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One repository of a test registry through its HTTP API, for a test to
/// fill it or tamper with it by hand.
pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
}

impl Api {
    /// The API without credentials.
    pub fn new(reg: &Registry, repository: &str) -> Api {
        Api::with_authorization(reg, repository, None)
    }

    /// The API with Basic credentials on every request.
    pub fn with_login(reg: &Registry, repository: &str, user: &str, password: &str) -> Api {
        let authorization = format!("Basic {}", basic(user, password));
        Api::with_authorization(reg, repository, Some(authorization))
    }

    /// The API with a bearer token to pull and push the repository, asked
    /// with Basic credentials of the token server the registry's challenge
    /// names (`auth: token` mode).
    pub fn with_token(reg: &Registry, repository: &str, user: &str, password: &str) -> Api {
        let http = reqwest::blocking::Client::new();
        let probe = http.get(format!("http://{}/v2/", reg.host)).send().unwrap();
        assert_eq!(probe.status(), 401, "the registry asks for a token");
        let challenge = probe.headers()["WWW-Authenticate"].to_str().unwrap();
        let fields: std::collections::HashMap<&str, &str> = challenge
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer challenge: {challenge}"))
            .split(',')
            .filter_map(|field| field.split_once('='))
            .map(|(key, value)| (key, value.trim_matches('"')))
            .collect();
        let scope = format!("repository:{repository}:pull,push");
        let answer: serde_json::Value = http
            .get(fields["realm"])
            .query(&[("service", fields["service"]), ("scope", &scope)])
            .header("Authorization", format!("Basic {}", basic(user, password)))
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
        let token = answer["token"].as_str().unwrap();
        Api::with_authorization(reg, repository, Some(format!("Bearer {token}")))
    }

    /// The API with `authorization` as the `Authorization` header of every
    /// request.
    fn with_authorization(reg: &Registry, repository: &str, authorization: Option<String>) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert("Authorization", value.parse().unwrap());
        }
        Api {
            base: format!("http://{}/v2/{repository}", reg.host),
            http: reqwest::blocking::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    /// The repository's tags, in the registry's order (one page: CNCF
    /// distribution 2.8 sends them all).
    pub fn tags(&self) -> Vec<String> {
        let resp = self
            .http
            .get(format!("{}/tags/list", self.base))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "tags/list");
        let list: serde_json::Value = resp.json().unwrap();
        list["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The OCI manifest under a tag or digest.
    pub fn manifest(&self, reference: &str) -> serde_json::Value {
        let resp = self
            .http
            .get(format!("{}/manifests/{reference}", self.base))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "manifest {reference}");
        resp.json().unwrap()
    }

    /// Stores a manifest under `tag`; returns its digest.
    pub fn put_manifest(&self, tag: &str, manifest: &serde_json::Value) -> String {
        let resp = self
            .http
            .put(format!("{}/manifests/{tag}", self.base))
            .header("Content-Type", OCI_MANIFEST)
            .body(serde_json::to_vec(manifest).unwrap())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201, "{tag}: {:?}", resp.text());
        resp.headers()["Docker-Content-Digest"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Stores an OCI image index under `tag`; returns its digest.
    pub fn put_index(&self, tag: &str, index: &serde_json::Value) -> String {
        let resp = self
            .http
            .put(format!("{}/manifests/{tag}", self.base))
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(serde_json::to_vec(index).unwrap())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201, "{tag}: {:?}", resp.text());
        resp.headers()["Docker-Content-Digest"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The bytes of a blob.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let resp = self
            .http
            .get(format!("{}/blobs/{digest}", self.base))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "blob {digest}");
        resp.bytes().unwrap().to_vec()
    }

    /// Uploads a blob in one PUT; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let start = self
            .http
            .post(format!("{}/blobs/uploads/", self.base))
            .send()
            .unwrap();
        assert_eq!(start.status(), 202);
        let location = start.headers()["Location"].to_str().unwrap().to_string();
        let url = match location.starts_with('/') {
            true => format!("{}{location}", self.base.split("/v2/").next().unwrap()),
            false => location,
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(put.status(), 201, "{:?}", put.text());
        digest
    }

    /// The status of a GET of a manifest by tag or digest.
    pub fn status(&self, reference: &str) -> u16 {
        self.http
            .get(format!("{}/manifests/{reference}", self.base))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The shared image's manifest digest.
pub fn image_digest() -> String {
    let _ = image();
    read(&shared().join("image/digest"))
}

/// `skopeo inspect` of a registry image: the JSON.
pub fn skopeo_inspect(reference: &str, tls_verify: bool) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("--tls-verify={tls_verify}"))
        .arg(format!("docker://{reference}")));
    assert!(out.status.success(), "skopeo inspect {reference}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The registry in `auth: token` mode with the token server of
/// tests/token_server.py on loopback: `writer` gets every action it asks
/// for, `reader` (a pull-only CI token) pull only; each has a Docker
/// config directory (`DOCKER_CONFIG`) of its own. Every token granted is
/// logged to `log`.
#[allow(dead_code)]
pub struct TokenRegistry {
    pub reg: Registry,
    pub writer: PathBuf,
    pub reader: PathBuf,
    pub log: PathBuf,
    _server: Running,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl TokenRegistry {
    pub const USER: &'static str = "tokenuser";
    pub const PASSWORD: &'static str = "t0ken-Pa55";
    pub const READER: &'static str = "readonly";
    pub const READER_PASSWORD: &'static str = "r3ad-0nly";
    pub const REFRESH_TOKEN: &'static str = "refresh-t0ken";

    pub fn start() -> TokenRegistry {
        need("openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=assemble test token issuer", "-keyout"])
            .arg(d.join("token.key"))
            .arg("-out")
            .arg(d.join("token.pem")));
        assert!(out.status.success());
        let tport = free_port();
        let log = d.join("tokens.log");
        let server = Running(spawn_with_deathsig(
            Command::new(data().join("venv/bin/python"))
                .arg(repo().join("tests/token_server.py"))
                .args(["--port", &tport.to_string()])
                .args(["--service", "assemble-test-registry"])
                .args(["--issuer", "assemble-test-issuer"])
                .args(["--user", Self::USER, "--password", Self::PASSWORD])
                .args(["--refresh-token", Self::REFRESH_TOKEN])
                .arg("--reader")
                .arg(format!("{}:{}", Self::READER, Self::READER_PASSWORD))
                .arg("--key")
                .arg(d.join("token.key"))
                .arg("--cert")
                .arg(d.join("token.pem"))
                .arg("--log")
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ));
        assert!(
            wait_port(tport, Duration::from_secs(20)),
            "token server did not start"
        );
        let reg = Registry::start(
            &format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: assemble-test-registry\n    issuer: assemble-test-issuer\n    rootcertbundle: {}\n",
                d.join("token.pem").display()
            ),
            "",
        );
        let config = |name: &str, user: &str, password: &str| {
            let dir = d.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let auth = basic(user, password);
            std::fs::write(
                dir.join("config.json"),
                format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host),
            )
            .unwrap();
            dir
        };
        let writer = config("writer", Self::USER, Self::PASSWORD);
        let reader = config("reader", Self::READER, Self::READER_PASSWORD);
        TokenRegistry {
            reg,
            writer,
            reader,
            log,
            _server: server,
            _dir: dir,
        }
    }
}

/// Who runs a command in the emulated job container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobUser {
    /// Root of the host without `CAP_SYS_ADMIN` (a job image's default user).
    Root,
    /// uid and gid 1000, no capabilities (Docker's `--user 1000:1000`).
    Uid1000,
}

/// True when this host can emulate a CI job container (tests/jobcontainer.sh
/// needs root: it makes mount and pid namespaces, as dockerd does); else
/// prints why the calling test is skipped.
pub fn job_container_available(test: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: emulating a CI job container needs root (tests/jobcontainer.sh); CI runs the tests as root"
    );
    false
}

/// A command prefix that runs what is appended to it inside an emulated
/// unprivileged CI job container (tests/jobcontainer.sh): Docker's default
/// capabilities without `CAP_SYS_ADMIN`, a seccomp filter refusing user
/// namespaces and mounts, everything read-only but `rw` and a private /tmp.
pub fn job_container(user: JobUser, rw: &[&Path]) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("tests/jobcontainer.sh"));
    if user == JobUser::Uid1000 {
        c.args(["--user", "1000:1000"]);
    }
    for dir in rw {
        c.arg("--rw").arg(dir);
    }
    c.arg("--").stdin(Stdio::null());
    c
}

/// Runs a shell script in the emulated job container: its output.
pub fn in_job_container(user: JobUser, rw: &[&Path], script: &str) -> Output {
    let out = job_container(user, rw)
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    eprintln!(
        "job container ({user:?}) ran:\n{script}\nstdout:\n{}stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
