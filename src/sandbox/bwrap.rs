//! The real sandbox: bubblewrap, with a user namespace of its own, the
//! plan's root and mounts, and its processes killed when assemble dies.

use std::ffi::OsString;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::output::Printer;
use crate::sandbox::capture::{capture, describe_status};
use crate::sandbox::error::SandboxError;
use crate::sandbox::supervise::{supervise, Signals, Started};
use crate::sandbox::{exit_code, find_on_path, Mount, Output, Plan, Runner};

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

/// The host's resolver configuration, bound into sandboxes on the host's
/// network.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The bubblewrap arguments for a plan, whose environment bwrap reads
/// from the descriptor `env_fd` (see [`env_options`]).
pub fn bwrap_args(plan: &Plan, env_fd: i32) -> Vec<OsString> {
    let resolv = Path::new(HOST_RESOLV_CONF);
    args_for(plan, resolv.exists().then_some(resolv), env_fd)
}

/// The environment of a plan as bwrap options (`--clearenv`, then a
/// `--setenv` for each variable), NUL-separated as `--args FD` reads them.
/// The environment is never on bwrap's command line: pip's index
/// credentials are in it, and every local user can read a command line in
/// `/proc/PID/cmdline`, while a descriptor is the process's own.
pub fn env_options(plan: &Plan) -> Vec<u8> {
    let mut bytes = b"--clearenv\0".to_vec();
    for (k, v) in &plan.env {
        for part in [b"--setenv".as_slice(), k.as_bytes(), v.as_bytes()] {
            bytes.extend_from_slice(part);
            bytes.push(0);
        }
    }
    bytes
}

/// The bubblewrap arguments for a plan, given the host's resolv.conf if it
/// has one.
fn args_for(plan: &Plan, resolv_conf: Option<&Path>, env_fd: i32) -> Vec<OsString> {
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
    push(&[&"--args", &env_fd.to_string()]);
    push(&[&"--chdir", &plan.cwd, &"--"]);
    for arg in &plan.argv {
        push(&[arg]);
    }
    a
}

impl Bubblewrap {
    /// The bwrap command for a plan. It is the one place bwrap starts: if
    /// assemble dies, the sandbox dies with it (`PR_SET_PDEATHSIG`), and the
    /// descriptors of the plan's [`Mount::File`]s are inherited, with the
    /// one bwrap reads the environment from (returned with the command: it
    /// must stay open until the command is spawned).
    fn command(&self, plan: &Plan) -> Result<(Command, std::fs::File), SandboxError> {
        let mut env = tempfile::tempfile().map_err(SandboxError::Spawn)?;
        env.write_all(&env_options(plan))
            .and_then(|()| env.seek(SeekFrom::Start(0)))
            .map_err(SandboxError::Spawn)?;
        let env_fd = env.as_raw_fd();
        let mut cmd = Command::new(&self.program);
        cmd.args(bwrap_args(plan, env_fd));
        tracing::debug!(what = %plan.what, argv = ?plan.argv, "sandbox");
        let inherited: Vec<i32> = plan
            .mounts
            .iter()
            .filter_map(|m| match m {
                Mount::File { fd, .. } => Some(*fd),
                _ => None,
            })
            .chain([env_fd])
            .collect();
        // SAFETY: the closure runs in the child between fork and exec, and
        // calls only async-signal-safe functions (prctl, fcntl) on plain
        // integers; it allocates nothing and takes no lock.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                for fd in &inherited {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok((cmd, env))
    }

    /// Runs a plan with its output captured: the last lines are kept for
    /// the error, secrets masked, and each line echoed when asked.
    fn capture(&self, plan: &Plan, echo: Option<&Printer>) -> Result<i32, SandboxError> {
        let (cmd, _env) = self.command(plan)?;
        let (status, tail) = capture(cmd, &plan.what, &self.secrets, echo)?;
        if status.success() {
            return Ok(0);
        }
        if tail.iter().any(|l| {
            l.contains("bwrap: No permissions to create") || l.contains("setting up uid map")
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

impl Runner for Bubblewrap {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        match output {
            Output::Capture { echo } => self.capture(plan, echo),
            Output::Interactive {
                stop_timeout,
                printer,
            } => {
                // Installed before the "run:" line and the sandbox's start,
                // so that no signal is lost between them and the moment its
                // pid is known (whoever reads the line may signal at once).
                let signals = Signals::install().map_err(SandboxError::Spawn)?;
                printer.step(&format!(
                    "run: {} as {}:{}",
                    plan.argv.join(" "),
                    plan.uid,
                    plan.gid
                ));
                let (mut cmd, _env) = self.command(plan)?;
                let child = cmd.spawn().map_err(SandboxError::Spawn)?;
                let started = Started::Bwrap(child.id() as i32);
                let status = supervise(child, started, &signals, stop_timeout, printer)?;
                Ok(exit_code(&status))
            }
        }
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
        let args: Vec<String> = bwrap_args(&plan(), 7)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /r /"), "{joined}");
        assert!(joined.contains("--unshare-net"));
        assert!(joined.contains("--uid 1000 --gid 33"));
        assert!(joined.contains("--args 7 --chdir /tmp -- true"), "{joined}");
        assert_eq!(args.last().unwrap(), "true");
        let options = env_options(&plan());
        let fields: Vec<&[u8]> = options.split(|b| *b == 0).collect();
        assert_eq!(
            fields,
            [b"--clearenv".as_slice(), b"--setenv", b"A", b"1", b""]
        );
    }

    /// Regression: pip's index credentials were passed as `--setenv` on
    /// bwrap's command line, which every local user can read in /proc.
    #[test]
    fn the_environment_is_not_on_the_command_line() {
        let mut p = plan();
        p.env = vec![(
            "PIP_INDEX_URL".into(),
            "https://u:s3cret@index/simple".into(),
        )];
        let args = bwrap_args(&p, 7);
        assert!(
            !args.iter().any(|a| a.to_string_lossy().contains("s3cret")),
            "{args:?}"
        );
        let options = env_options(&p);
        let fields: Vec<&[u8]> = options.split(|b| *b == 0).collect();
        assert_eq!(
            fields,
            [
                b"--clearenv".as_slice(),
                b"--setenv",
                b"PIP_INDEX_URL",
                b"https://u:s3cret@index/simple",
                b"",
            ]
        );
    }

    fn args(plan: &Plan, resolv: Option<&str>) -> Vec<String> {
        args_for(plan, resolv.map(Path::new), 7)
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
