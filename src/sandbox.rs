//! Runs one command inside a root filesystem as an unprivileged user, with
//! Linux user namespaces through bubblewrap.
//!
//! The [`Plan`] says exactly what the command can see: the root (read-only),
//! the paths bound in, a private `/tmp`, `/dev` and `/proc`, and an
//! environment built from nothing. The host's home, SSH keys and registry
//! credentials are never bound. [`Runner`] executes a plan; [`Bubblewrap`] is
//! the real one and [`Recorder`] the test double that keeps the plans it is
//! given, so that the stages' mount plans are tested without privileges.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::output::Printer;

/// Failure to run a sandboxed command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// bubblewrap is not installed.
    #[error(
        "bubblewrap (bwrap) is not installed; install it (Debian: apt-get install bubblewrap)"
    )]
    NoBubblewrap,
    /// The kernel or policy refuses user namespaces.
    #[error(
        "cannot create a user namespace ({detail}); assemble needs unprivileged user namespaces: \
         enable them with `sysctl -w kernel.unprivileged_userns_clone=1` (Debian kernels) and \
         `sysctl -w user.max_user_namespaces=15000`, or on Ubuntu 24.04 and later allow them with \
         `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
    )]
    NoUserNamespaces {
        /// What bubblewrap said.
        detail: String,
    },
    /// The command could not be started.
    #[error("cannot start bubblewrap")]
    Spawn(#[source] io::Error),
    /// The command ran and failed.
    #[error("{what} failed with {status}{}", tail_text(.tail))]
    Failed {
        /// What was run, for the message.
        what: String,
        /// The exit status.
        status: String,
        /// Its last output lines.
        tail: Vec<String>,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its last output lines:\n    {}", tail.join("\n    "))
    }
}

/// One path made visible inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// Host path, read-write, at the given path inside.
    Bind(PathBuf, String),
    /// Host path, read-only, at the given path inside.
    ReadOnly(PathBuf, String),
    /// An empty tmpfs.
    Tmpfs(String),
    /// A tmpfs with this mode.
    TmpfsMode(String, u32),
    /// A directory made at the path (in a tmpfs), with this mode.
    Dir(String, u32),
    /// A file made at the path with this mode, its bytes copied by bwrap
    /// from a descriptor the caller keeps open and lets bwrap inherit.
    File {
        /// The descriptor to copy from.
        fd: i32,
        /// The path inside.
        dest: String,
        /// Its mode.
        mode: u32,
    },
    /// A symlink: (target, path inside).
    Symlink(String, String),
}

impl Mount {
    /// The path inside the sandbox.
    pub fn dest(&self) -> &str {
        match self {
            Mount::Bind(_, d) | Mount::ReadOnly(_, d) | Mount::Tmpfs(d) => d,
            Mount::TmpfsMode(d, _) | Mount::Dir(d, _) | Mount::Symlink(_, d) => d,
            Mount::File { dest, .. } => dest,
        }
    }
}

/// What to run and what it may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Short description for messages (`pip wheel`).
    pub what: String,
    /// Root filesystem, bound read-only at `/` unless `writable_root`.
    pub root: PathBuf,
    /// Bind the root read-write (for `assemble run` on a private copy).
    pub writable_root: bool,
    /// Extra mounts, applied in order after the root.
    pub mounts: Vec<Mount>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// uid and gid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// Working directory inside.
    pub cwd: String,
    /// Keep the host's network (pip needs the index; `run` serves ports).
    pub share_net: bool,
    /// The command.
    pub argv: Vec<String>,
}

/// How the command's output is handled.
#[derive(Clone, Copy, Debug)]
pub enum Output<'a> {
    /// Pass stdio through (interactive `assemble run`).
    Inherit,
    /// Capture, keeping the tail for errors; with `echo` (`--verbose`), each
    /// line also goes through the printer as it comes (a JSON event under
    /// `--json`, a line above the progress bars on a terminal).
    Capture {
        /// The printer that shows the lines, when they are shown.
        echo: Option<&'a Printer>,
    },
}

/// Executes sandbox plans.
pub trait Runner: Send + Sync {
    /// Runs the plan to completion, returning the exit code on success paths.
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError>;
}

/// The real runner: bubblewrap.
#[derive(Clone, Debug)]
pub struct Bubblewrap {
    /// Path to the bwrap binary.
    pub program: PathBuf,
    /// Strings to mask in captured output (index credentials).
    pub secrets: Vec<String>,
}

impl Bubblewrap {
    /// Finds bwrap on PATH and checks that it can create a user namespace.
    pub fn probe() -> Result<Self, SandboxError> {
        let program = find_on_path("bwrap").ok_or(SandboxError::NoBubblewrap)?;
        let out = Command::new(&program)
            .args(["--unshare-user", "--ro-bind", "/", "/", "--", "/bin/true"])
            .stdin(Stdio::null())
            .output()
            .map_err(SandboxError::Spawn)?;
        if !out.status.success() {
            return Err(SandboxError::NoUserNamespaces {
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Self {
            program,
            secrets: Vec::new(),
        })
    }
}

/// Finds an executable on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(crate::env::PATH)?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The host's resolver configuration, bound into sandboxes on the host's
/// network.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The bubblewrap arguments for a plan.
pub fn bwrap_args(plan: &Plan) -> Vec<OsString> {
    let resolv = Path::new(HOST_RESOLV_CONF);
    args_for(plan, resolv.exists().then_some(resolv))
}

/// The bubblewrap arguments for a plan, given the host's resolv.conf if it
/// has one.
fn args_for(plan: &Plan, resolv_conf: Option<&Path>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        for i in items {
            a.push(i.as_ref().to_os_string());
        }
    };
    push(&[
        &"--unshare-user",
        &"--unshare-pid",
        &"--unshare-ipc",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
    ]);
    if !plan.share_net {
        push(&[&"--unshare-net"]);
    }
    let uid = plan.uid.to_string();
    let gid = plan.gid.to_string();
    push(&[
        &"--uid",
        &uid,
        &"--gid",
        &gid,
        &"--hostname",
        &"assemble",
        &"--die-with-parent",
    ]);
    let root_flag = if plan.writable_root {
        "--bind"
    } else {
        "--ro-bind"
    };
    push(&[&root_flag, &plan.root, &"/"]);
    push(&[&"--dev", &"/dev", &"--proc", &"/proc", &"--tmpfs", &"/tmp"]);
    if let (true, Some(resolv)) = (plan.share_net, resolv_conf) {
        push(&[&"--ro-bind", &resolv, &"/etc/resolv.conf"]);
    }
    for m in &plan.mounts {
        match m {
            Mount::Bind(src, dest) => push(&[&"--bind", src, dest]),
            Mount::ReadOnly(src, dest) => push(&[&"--ro-bind", src, dest]),
            Mount::Tmpfs(dest) => push(&[&"--tmpfs", dest]),
            Mount::TmpfsMode(dest, mode) => {
                push(&[&"--perms", &format!("{mode:04o}"), &"--tmpfs", dest])
            }
            Mount::Dir(dest, mode) => push(&[&"--perms", &format!("{mode:04o}"), &"--dir", dest]),
            Mount::File { fd, dest, mode } => push(&[
                &"--perms",
                &format!("{mode:04o}"),
                &"--file",
                &fd.to_string(),
                dest,
            ]),
            Mount::Symlink(target, dest) => push(&[&"--symlink", target, dest]),
        }
    }
    push(&[&"--clearenv"]);
    for (k, v) in &plan.env {
        push(&[&"--setenv", k, v]);
    }
    push(&[&"--chdir", &plan.cwd, &"--"]);
    for arg in &plan.argv {
        push(&[arg]);
    }
    a
}

impl Runner for Bubblewrap {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(bwrap_args(plan));
        tracing::debug!(what = %plan.what, argv = ?plan.argv, "sandbox");
        // If assemble dies, its sandboxed children die with it.
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes one prctl system
        // call, allocates nothing and takes no lock.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match output {
            Output::Inherit => {
                let status = cmd.status().map_err(SandboxError::Spawn)?;
                Ok(exit_code(&status))
            }
            Output::Capture { echo } => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
                let stdout = child.stdout.take().expect("piped");
                let stderr = child.stderr.take().expect("piped");
                let tail = Mutex::new(std::collections::VecDeque::with_capacity(40));
                let secrets = &self.secrets;
                std::thread::scope(|s| {
                    for stream in [
                        Box::new(stdout) as Box<dyn io::Read + Send>,
                        Box::new(stderr),
                    ] {
                        let tail = &tail;
                        s.spawn(move || {
                            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                                let line = crate::spec::redact_text(&line, secrets);
                                if let Some(printer) = echo {
                                    printer.output(&plan.what, &line);
                                }
                                let mut t = tail.lock().expect("tail lock");
                                if t.len() == 40 {
                                    t.pop_front();
                                }
                                t.push_back(line);
                            }
                        });
                    }
                });
                let status = child.wait().map_err(SandboxError::Spawn)?;
                let tail: Vec<String> = tail.into_inner().expect("tail lock").into();
                if status.success() {
                    return Ok(0);
                }
                if tail.iter().any(|l| {
                    l.contains("bwrap: No permissions to create")
                        || l.contains("setting up uid map")
                }) {
                    return Err(SandboxError::NoUserNamespaces {
                        detail: tail.join(" "),
                    });
                }
                Err(SandboxError::Failed {
                    what: plan.what.clone(),
                    status: describe_status(&status),
                    tail,
                })
            }
        }
    }
}

/// The exit code a shell would report for a status.
pub fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    }
}

/// Test double: records plans and reports success (or a chosen exit code).
#[derive(Default)]
pub struct Recorder {
    /// The plans run so far.
    pub plans: Mutex<Vec<Plan>>,
}

impl Runner for Recorder {
    fn run(&self, plan: &Plan, _output: Output<'_>) -> Result<i32, SandboxError> {
        self.plans.lock().expect("recorder lock").push(plan.clone());
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            what: "t".into(),
            root: "/r".into(),
            writable_root: false,
            mounts: vec![Mount::Bind("/w".into(), "/assemble/wheelhouse".into())],
            env: vec![("A".into(), "1".into())],
            uid: 1000,
            gid: 33,
            cwd: "/tmp".into(),
            share_net: false,
            argv: vec!["true".into()],
        }
    }

    #[test]
    fn root_is_read_only_and_environment_is_cleared() {
        let args: Vec<String> = bwrap_args(&plan())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /r /"), "{joined}");
        assert!(joined.contains("--unshare-net"));
        assert!(joined.contains("--uid 1000 --gid 33"));
        let clear = args.iter().position(|a| a == "--clearenv").unwrap();
        let setenv = args.iter().position(|a| a == "--setenv").unwrap();
        assert!(clear < setenv, "environment is cleared before it is set");
        assert_eq!(args.last().unwrap(), "true");
    }

    fn args(plan: &Plan, resolv: Option<&str>) -> Vec<String> {
        args_for(plan, resolv.map(Path::new))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn binds_resolv_conf(args: &[String]) -> bool {
        args.windows(3)
            .any(|w| w == ["--ro-bind", "/host/resolv.conf", "/etc/resolv.conf"])
    }

    #[test]
    fn shared_network_binds_resolv_conf_only_then() {
        let mut p = plan();
        p.share_net = true;
        let shared = args(&p, Some("/host/resolv.conf"));
        assert!(!shared.contains(&"--unshare-net".to_string()));
        assert!(binds_resolv_conf(&shared), "{shared:?}");
        assert!(
            !args(&p, None).iter().any(|a| a.contains("resolv.conf")),
            "a host without one binds none"
        );
        p.share_net = false;
        let private = args(&p, Some("/host/resolv.conf"));
        assert!(private.contains(&"--unshare-net".to_string()));
        assert!(
            !private.iter().any(|a| a.contains("resolv.conf")),
            "{private:?}"
        );
    }
}
