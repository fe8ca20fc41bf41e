//! A Debian mirror the tests control, and a network namespace to use it in.
//!
//! - `mirror_dir()`: the run's partial bookworm mirror (`tests/debian-mirror.sh
//!   create`), made once per run under a lock: the first call downloads the
//!   .debs of the base and the compiler (about 75 MB), later calls and later
//!   test binaries reuse them. Never bump it: other tests read it.
//! - `mirror_copy(DIR)`: a private copy to bump (the pool is hardlinked).
//! - `DebianMirror::serve(DIR)`: that directory over HTTP on 127.0.0.1
//!   (Python's http.server: GET, HEAD, If-Modified-Since; no ETag), with
//!   `line()` the value of `ASSEMBLE_DEBIAN_MIRROR` that uses it.
//! - `LoopbackNet::new()`: a network namespace with only `lo`, for builds
//!   that must prove they use nothing but the local mirror.
//! - `unreachable_mirror_line()`: a mirror line on a port nobody listens on.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use super::{lock, repo, shared, spawn_with_deathsig};

/// The suite the mirror holds (the one `assemble` builds from).
pub const SUITE: &str = "bookworm";

/// The run's mirror directory, created once per run (see the module docs).
pub fn mirror_dir() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let _l = lock("debian-mirror");
        let dir = shared().join("debian-mirror");
        script(&["create".as_ref(), dir.as_os_str()]);
        dir
    })
    .clone()
}

/// A copy of the run's mirror at `dest`, to change without touching the
/// run's mirror; `dest` is replaced if it exists.
pub fn mirror_copy(dest: &Path) -> PathBuf {
    let src = mirror_dir();
    script(&["copy".as_ref(), src.as_os_str(), dest.as_os_str()]);
    dest.to_path_buf()
}

/// Runs tests/debian-mirror.sh and returns its stdout; panics with its
/// stderr when it fails.
fn script(args: &[&OsStr]) -> String {
    let out = Command::new("bash")
        .arg(repo().join("tests/debian-mirror.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/debian-mirror.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mirror directory served over HTTP on 127.0.0.1; stopped when dropped.
pub struct DebianMirror {
    /// The mirror's directory (`key.gpg`, `archive/`).
    pub dir: PathBuf,
    /// The port it listens on (in its network namespace).
    pub port: u16,
    child: Child,
    // Held open: the server writes its banner there.
    _stdout: ChildStdout,
    log: tempfile::NamedTempFile,
}

impl DebianMirror {
    /// Serves `dir` in this process's network namespace.
    pub fn serve(dir: &Path) -> DebianMirror {
        Self::start(dir, super::free_port(), None)
    }

    /// Serves `dir` inside `net` (on a port free here, so that two servers
    /// in one namespace do not collide).
    pub fn serve_in(dir: &Path, net: &LoopbackNet) -> DebianMirror {
        Self::start(dir, super::free_port(), Some(net))
    }

    fn start(dir: &Path, port: u16, net: Option<&LoopbackNet>) -> DebianMirror {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut server = Command::new("/usr/bin/python3");
        // -u: the banner line, read below, must not sit in a buffer.
        server
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.join("archive"))
            .arg(port.to_string());
        let mut cmd = match net {
            Some(net) => net.wrap(&server),
            None => server,
        };
        let mut child = spawn_with_deathsig(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log.reopen().unwrap()),
        );
        // http.server prints "Serving HTTP on ..." once it listens.
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut banner = String::new();
        reader.read_line(&mut banner).unwrap();
        assert!(
            banner.starts_with("Serving HTTP"),
            "the Debian mirror's HTTP server did not start: {banner:?}\n{}",
            super::read(log.path())
        );
        DebianMirror {
            dir: dir.to_path_buf(),
            port,
            child,
            _stdout: reader.into_inner(),
            log,
        }
    }

    /// Its base URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The public key that signs it.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.gpg")
    }

    /// The value of `ASSEMBLE_DEBIAN_MIRROR` (mmdebstrap's MIRROR argument)
    /// that builds from this mirror alone, with its signature checked.
    pub fn line(&self) -> String {
        let key = self.key();
        readable_by_everyone(&key);
        format!(
            "deb [signed-by={}] {} {SUITE} main",
            key.display(),
            self.url()
        )
    }

    /// The mirror's `InRelease` as it is now.
    pub fn in_release(&self) -> String {
        super::read(&self.dir.join(format!("archive/dists/{SUITE}/InRelease")))
    }

    /// Rebuilds `package` with `+assembleN` appended to its version and
    /// re-signs the mirror with a newer `Date:`; returns (old, new) versions.
    pub fn bump(&self, package: &str) -> (String, String) {
        let out = script(&["bump".as_ref(), self.dir.as_os_str(), package.as_ref()]);
        // "PACKAGE OLD -> NEW"
        let mut words = out.split_whitespace().skip(1);
        let old = words.next().unwrap_or_default().to_string();
        let new = words.nth(1).unwrap_or_default().to_string();
        assert!(!new.is_empty(), "unexpected bump output: {out:?}");
        (old, new)
    }

    /// The request lines served so far (`GET /dists/bookworm/InRelease`).
    pub fn requests(&self) -> Vec<String> {
        super::read(self.log.path())
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .map(|r| {
                r.trim_end_matches(" HTTP/1.1")
                    .trim_end_matches(" HTTP/1.0")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for DebianMirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets every user read `file` and pass through each directory above it up
/// to the run's shared directory (made 0700 by `.ci/run`'s mktemp): run as
/// root, mmdebstrap's unshare mode runs apt as a subordinate uid, which must
/// read the mirror's key (else apt says NO_PUBKEY).
fn readable_by_everyone(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let stop = shared();
    let add = |p: &Path, bits: u32| {
        if let Ok(m) = std::fs::metadata(p) {
            let mode = m.permissions().mode() | bits;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    };
    add(file, 0o444);
    let mut dir = file.parent();
    while let Some(d) = dir {
        if !d.starts_with(&stop) {
            break;
        }
        add(d, 0o555);
        if d == stop {
            break;
        }
        dir = d.parent();
    }
}

/// A mirror line on a loopback port nobody listens on: mmdebstrap given it
/// fails at once, so a build that succeeds with it never ran mmdebstrap.
pub fn unreachable_mirror_line() -> String {
    let key = mirror_dir().join("key.gpg");
    readable_by_everyone(&key);
    format!(
        "deb [signed-by={}] http://127.0.0.1:{}/ {SUITE} main",
        key.display(),
        super::free_port()
    )
}

/// A network namespace with only the loopback interface, up: what runs in it
/// reaches its own 127.0.0.1 and nothing else. As root it is a plain network
/// namespace; as a normal user it sits in a user namespace where the user is
/// root and the user's subordinate ids (/etc/subuid, /etc/subgid, which
/// mmdebstrap needs anyway) are mapped from 1, so mmdebstrap's unshare mode
/// still works inside. Removed when dropped.
pub struct LoopbackNet {
    holder: Child,
    user_namespace: bool,
}

impl LoopbackNet {
    /// Makes one; panics saying what is missing when the kernel or the
    /// machine's configuration refuses.
    pub fn new() -> LoopbackNet {
        super::need("unshare");
        super::need("nsenter");
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = Command::new("unshare");
        if !root {
            let (uid, gid) = (subordinate("/etc/subuid"), subordinate("/etc/subgid"));
            cmd.args(["--user", "--map-root-user"])
                .arg(format!("--map-users={},1,{}", uid.0, uid.1))
                .arg(format!("--map-groups={},1,{}", gid.0, gid.1));
        }
        cmd.args(["--net", "--", "sh", "-c"])
            .arg("PATH=$PATH:/usr/sbin:/sbin; ip link set lo up && echo up && exec sleep infinity");
        let mut holder = spawn_with_deathsig(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "up" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "cannot make a network namespace with only loopback (unshare --net; as a \
                 normal user it needs user namespaces and entries in /etc/subuid and \
                 /etc/subgid, see .ci/setup): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        LoopbackNet {
            holder,
            user_namespace: !root,
        }
    }

    /// The same command, run inside the namespace: program, arguments,
    /// environment changes and working directory are carried over.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.holder.id()));
        if self.user_namespace {
            // Without --preserve-credentials nsenter becomes root of the
            // user namespace, whose mapping mmdebstrap's unshare mode uses.
            c.arg("--user");
        }
        c.arg("--net")
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => c.env(key, v),
                None => c.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }
}

impl Drop for LoopbackNet {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The first range of subordinate ids of the current user in `file`.
fn subordinate(file: &str) -> (u64, u64) {
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    super::read(Path::new(file))
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            (who == name || who == uid.to_string())
                .then(|| Some((start.parse().ok()?, count.parse().ok()?)))
                .flatten()
        })
        .next()
        .unwrap_or_else(|| {
            panic!(
                "{file} has no range for uid {uid}: a network namespace where mmdebstrap \
                 works needs one (run .ci/setup)"
            )
        })
}
