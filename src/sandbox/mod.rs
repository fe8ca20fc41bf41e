//! Every external process assemble starts goes through here: commands run
//! in a root filesystem as an unprivileged user with Linux user namespaces
//! (bubblewrap: `pip wheel`, the venv install, `assemble run`), and
//! commands run on the host (mmdebstrap, Docker credential helpers).
//!
//! A [`Plan`] says exactly what a sandboxed command can see: the root
//! (read-only), the paths bound in, a private `/tmp`, `/dev` and `/proc`,
//! and an environment built from nothing. The host's home, SSH keys and
//! registry credentials are never bound. A [`HostCommand`] says what runs on
//! the host: program, arguments, added environment, standard input.
//! [`Runner`] executes both; [`Bubblewrap`] is the real one, [`HostOnly`]
//! the real one for commands that run no sandbox, and [`Recorder`] the test
//! double that keeps what it is given, so that plans are tested without
//! privileges. This module decides how a command runs, never what it does.

mod bwrap;
mod capture;
mod chroot;
mod error;
mod host;
mod proot;
mod supervise;
mod unconfined;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub use bwrap::{bwrap_args, Bubblewrap};
pub use chroot::Chroot;
pub use error::SandboxError;
pub use host::{HostCommand, HostOutput};
pub use proot::Proot;
pub use unconfined::Unconfined;

use crate::output::Printer;

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
    /// from a descriptor the caller keeps open until the command has
    /// started; the runner lets bwrap inherit it.
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

/// How a sandboxed command's output is handled.
#[derive(Clone, Copy, Debug)]
pub enum Output<'a> {
    /// Capture, keeping the tail for errors; with `echo` (`--verbose`), each
    /// line also goes through the printer as it comes (a JSON event under
    /// `--json`, a line above the progress bars on a terminal).
    Capture {
        /// The printer that shows the lines, when they are shown.
        echo: Option<&'a Printer>,
    },
    /// The terminal's stdio (`assemble run`): SIGTERM, SIGINT and SIGHUP are
    /// forwarded to the command, and everything is killed `stop_timeout`
    /// later or at a second signal, as an engine's stop does.
    Interactive {
        /// How long a stop waits for the command.
        stop_timeout: Duration,
        /// Where the start ("run: …", printed once the signal handlers are
        /// in place) and the stop are reported.
        printer: &'a Printer,
    },
}

/// Executes sandbox plans and host commands.
pub trait Runner: std::fmt::Debug + Send + Sync {
    /// Runs the plan to completion, returning the exit code on success paths.
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError>;

    /// Runs a command on the host to completion, capturing its output.
    fn run_host(&self, cmd: &HostCommand) -> Result<HostOutput, SandboxError> {
        host::run(cmd)
    }

    /// The path of a program on the host's `PATH`, if it has one.
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        find_on_path(name)
    }

    /// Whether host commands may make user namespaces
    /// ([`user_namespaces_work`]).
    fn user_namespaces(&self) -> bool {
        user_namespaces_work()
    }

    /// Whether plans run on the host itself (`--isolation none`): the
    /// job's own filesystem stands for every root, and a plan's paths
    /// inside are where its binds stand on the host.
    fn runs_on_host(&self) -> bool {
        false
    }

    /// `text`, a file a plan's command reads that names paths inside (a
    /// requirements file), as that command sees it with these mounts:
    /// itself, but for [`Unconfined`], where the paths are the host's.
    fn seen_as(&self, _mounts: &[Mount], text: &str) -> String {
        text.to_string()
    }
}

/// A runner borrowed (tests keep their [`Recorder`] to look at it).
impl<T: Runner + ?Sized> Runner for &T {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        (**self).run(plan, output)
    }

    fn run_host(&self, cmd: &HostCommand) -> Result<HostOutput, SandboxError> {
        (**self).run_host(cmd)
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        (**self).find_program(name)
    }

    fn user_namespaces(&self) -> bool {
        (**self).user_namespaces()
    }

    fn runs_on_host(&self) -> bool {
        (**self).runs_on_host()
    }

    fn seen_as(&self, mounts: &[Mount], text: &str) -> String {
        (**self).seen_as(mounts, text)
    }
}

/// How the build's commands are kept from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// bubblewrap in a user namespace of its own: a read-only root, a
    /// private network, pid and IPC namespaces.
    Userns,
    /// chroot into a private copy of the root, as uid 1000: for root where
    /// user namespaces are refused (a CI job container); the network and
    /// the host's processes are not kept apart.
    Chroot,
    /// proot (ptrace): the root moved and paths bound, nothing else kept
    /// apart (the network, the host's processes); where user namespaces
    /// are refused.
    Proot,
    /// None, only when asked: the commands run on the host, in the job's
    /// own filesystem (which must be the compiler: the base's interpreter
    /// at the same path, its headers, a C compiler), as the user running
    /// assemble; the package's build code is trusted completely.
    None,
}

impl Isolation {
    /// Its name, as `--isolation` and the result file say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Userns => "userns",
            Isolation::Chroot => "chroot",
            Isolation::Proot => "proot",
            Isolation::None => "none",
        }
    }
}

/// The sandbox a build runs its commands in.
#[derive(Clone, Debug)]
pub enum Sandbox {
    /// [`Isolation::Userns`].
    Userns(Bubblewrap),
    /// [`Isolation::Chroot`].
    Chroot(Chroot),
    /// [`Isolation::Proot`].
    Proot(Proot),
    /// [`Isolation::None`].
    None(Unconfined),
}

impl Sandbox {
    /// The isolation asked for, or the first that works here (user
    /// namespaces, chroot, proot); when none does, why each failed and what
    /// can be changed.
    pub fn choose(asked: Option<Isolation>) -> Result<Self, SandboxError> {
        Self::choose_among(
            asked,
            &[Isolation::Userns, Isolation::Chroot, Isolation::Proot],
        )
    }

    /// [`Sandbox::choose`] for `assemble run`, which proot cannot
    /// supervise: user namespaces, else chroot.
    pub fn choose_for_run(asked: Option<Isolation>) -> Result<Self, SandboxError> {
        if let Some(i @ (Isolation::Proot | Isolation::None)) = asked {
            return Err(SandboxError::Interactive {
                isolation: i.as_str(),
            });
        }
        Self::choose_among(asked, &[Isolation::Userns, Isolation::Chroot])
    }

    fn choose_among(asked: Option<Isolation>, order: &[Isolation]) -> Result<Self, SandboxError> {
        let probe = |isolation| match isolation {
            Isolation::Userns => Bubblewrap::probe().map(Sandbox::Userns),
            Isolation::Chroot => Chroot::probe().map(Sandbox::Chroot),
            Isolation::Proot => Proot::probe().map(Sandbox::Proot),
            Isolation::None => Ok(Sandbox::None(Unconfined::default())),
        };
        if let Some(asked) = asked {
            return probe(asked);
        }
        let mut tried = Vec::new();
        for &isolation in order {
            match probe(isolation) {
                Ok(sandbox) => return Ok(sandbox),
                Err(e) => tried.push((isolation.as_str().to_string(), e.short())),
            }
        }
        Err(SandboxError::NoIsolation { tried })
    }

    /// Its isolation.
    pub fn isolation(&self) -> Isolation {
        match self {
            Sandbox::Userns(_) => Isolation::Userns,
            Sandbox::Chroot(_) => Isolation::Chroot,
            Sandbox::Proot(_) => Isolation::Proot,
            Sandbox::None(_) => Isolation::None,
        }
    }

    /// Masks `secrets` in the output it captures.
    pub fn mask(&mut self, secrets: Vec<String>) {
        match self {
            Sandbox::Userns(b) => b.secrets = secrets,
            Sandbox::Chroot(c) => c.secrets = secrets,
            Sandbox::Proot(p) => p.secrets = secrets,
            Sandbox::None(u) => u.secrets = secrets,
        }
    }
}

impl Runner for Sandbox {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        match self {
            Sandbox::Userns(b) => b.run(plan, output),
            Sandbox::Chroot(c) => c.run(plan, output),
            Sandbox::Proot(p) => p.run(plan, output),
            Sandbox::None(u) => u.run(plan, output),
        }
    }

    fn runs_on_host(&self) -> bool {
        matches!(self, Sandbox::None(_))
    }

    fn seen_as(&self, mounts: &[Mount], text: &str) -> String {
        match self {
            Sandbox::None(u) => u.seen_as(mounts, text),
            _ => text.to_string(),
        }
    }
}

/// The real runner of commands that set up no sandbox (`push`, `pull`,
/// `login`): host commands only.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostOnly;

impl Runner for HostOnly {
    fn run(&self, plan: &Plan, _output: Output<'_>) -> Result<i32, SandboxError> {
        Err(SandboxError::NoSandbox {
            what: plan.what.clone(),
        })
    }
}

/// Whether this process may make a user namespace and map itself in it
/// (what mmdebstrap's unshare mode and bubblewrap need): a CI job
/// container's seccomp profile refuses the namespace, Ubuntu's AppArmor
/// restriction the mapping. Asked once, by a child that tries both.
pub fn user_namespaces_work() -> bool {
    static WORK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORK.get_or_init(|| {
        let program = find_on_path("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let map = format!("0 {} 1\n", unsafe { libc::getuid() });
        let mut probe = std::process::Command::new(program);
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (unshare, open, write,
        // close) on memory made before the fork; it allocates nothing.
        unsafe {
            use std::os::unix::process::CommandExt;
            probe.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::open(c"/proc/self/uid_map".as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, map.as_ptr().cast(), map.len());
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != map.len() as isize {
                    return Err(error);
                }
                Ok(())
            });
        }
        probe
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Finds an executable on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(crate::env::PATH)?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The exit code a shell would report for a status.
pub fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Test double: records plans and host commands, reports success for
/// plans and `host_answer` for host commands, and pretends every program
/// is installed.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The plans run so far.
    pub plans: Mutex<Vec<Plan>>,
    /// The host commands run so far.
    pub host_commands: Mutex<Vec<HostCommand>>,
    /// What every host command answers.
    pub host_answer: HostOutput,
}

impl Recorder {
    /// A recorder whose host commands all answer `answer`.
    pub fn answering(answer: HostOutput) -> Self {
        Self {
            host_answer: answer,
            ..Self::default()
        }
    }
}

impl Runner for Recorder {
    fn run(&self, plan: &Plan, _output: Output<'_>) -> Result<i32, SandboxError> {
        self.plans.lock().expect("recorder lock").push(plan.clone());
        Ok(0)
    }

    fn run_host(&self, cmd: &HostCommand) -> Result<HostOutput, SandboxError> {
        self.host_commands
            .lock()
            .expect("recorder lock")
            .push(cmd.clone());
        Ok(self.host_answer.clone())
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        Some(PathBuf::from(name))
    }

    fn user_namespaces(&self) -> bool {
        true
    }
}
