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
#![allow(dead_code)]

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

/// An exclusive lock on `shared()/NAME.lock`, held until dropped.
pub struct Lock(File);

pub fn lock(name: &str) -> Lock {
    let f = File::create(shared().join(format!("{name}.lock"))).unwrap();
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
    /// Starts one; `extra` is YAML appended to the configuration (auth, tls).
    pub fn start(extra: &str, http_extra: &str) -> Registry {
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
