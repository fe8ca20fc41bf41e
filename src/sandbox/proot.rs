//! The sandbox where user namespaces are refused (a CI job container):
//! proot, which moves the root and binds paths by tracing the command's
//! system calls (ptrace), with no privilege and no namespace.
//!
//! What it does not isolate, unlike bubblewrap: the network (a plan's
//! private network is the host's), the host's processes, and the root
//! filesystem's files, which the command may change where the user running
//! assemble may (the cached root filesystem of a plain user is its own).
//! The plan's uid and gid are shown to the command (`-i`), not taken. And
//! when assemble is killed, proot dies with it but a command it was
//! running does not: it goes on, no longer traced (seeing the host's
//! paths), until it ends or the job container is removed.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sandbox::capture::{capture, describe_status};
use crate::sandbox::error::SandboxError;
use crate::sandbox::{find_on_path, Mount, Output, Plan, Runner};

/// The host's resolver configuration, bound in when the plan keeps the
/// network.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The proot runner.
#[derive(Clone, Debug)]
pub struct Proot {
    /// Path to the proot binary.
    pub program: PathBuf,
    /// Strings to mask in captured output (index credentials).
    pub secrets: Vec<String>,
}

impl Proot {
    /// Finds proot on PATH and checks that it can trace a command here
    /// (a seccomp profile may refuse ptrace).
    pub fn probe() -> Result<Self, SandboxError> {
        let program = find_on_path("proot").ok_or(SandboxError::NoProot)?;
        let probe = find_on_path("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
        let out = Command::new(&program)
            .arg(&probe)
            .stdin(Stdio::null())
            .output()
            .map_err(SandboxError::Spawn)?;
        if !out.status.success() {
            return Err(SandboxError::ProotRefused {
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Self {
            program,
            secrets: Vec::new(),
        })
    }

    /// The proot command for a plan, with the directory holding what its
    /// tmpfs, directory and file mounts stand for (removed when dropped).
    fn command(&self, plan: &Plan) -> Result<(Command, tempfile::TempDir), SandboxError> {
        let staging = tempfile::Builder::new()
            .prefix("assemble-proot-")
            .tempdir()
            .map_err(SandboxError::Spawn)?;
        let binds = stage(plan, staging.path()).map_err(SandboxError::Spawn)?;
        let resolv = Path::new(HOST_RESOLV_CONF);
        // SAFETY: getuid(2) and getgid(2) have no preconditions and cannot fail.
        let me = unsafe { (libc::getuid(), libc::getgid()) };
        let mut cmd = Command::new(&self.program);
        cmd.args(proot_args(
            plan,
            &binds,
            (plan.share_net && resolv.exists()).then_some(resolv),
            me,
        ));
        // proot's own settings (PROOT_TMP_DIR, PROOT_NO_SECCOMP), which a job
        // may need, as the probe had them; the guest sees them too.
        let proot_settings =
            std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("PROOT_"));
        cmd.env_clear()
            .envs(proot_settings)
            .envs(plan.env.iter().map(|(k, v)| (k, v)));
        tracing::debug!(what = %plan.what, argv = ?plan.argv, "sandbox (proot)");
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only prctl, async-signal-safe, on plain integers.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok((cmd, staging))
    }
}

/// proot's arguments for a plan: its root, `/dev`, `/proc`, a private
/// `/tmp` and `binds` (host path, path inside; proot resolves a path by the
/// longest bind that holds it), the plan's ids shown when they are not
/// `me`'s.
fn proot_args(
    plan: &Plan,
    binds: &[(PathBuf, String)],
    resolv_conf: Option<&Path>,
    me: (u32, u32),
) -> Vec<std::ffi::OsString> {
    // Debian's proot 5.1 has no --kill-on-exit, and what it traces outlives
    // it: proot dies with assemble (PR_SET_PDEATHSIG), a command it was
    // running goes on untraced until it ends (see the module's note).
    let mut a: Vec<std::ffi::OsString> = vec!["-r".into()];
    a.push(plan.root.clone().into());
    if (plan.uid, plan.gid) != me {
        a.push("-i".into());
        a.push(format!("{}:{}", plan.uid, plan.gid).into());
    }
    a.push("-w".into());
    a.push(plan.cwd.clone().into());
    let mut bind = |host: &Path, inside: &str| {
        let mut b = host.as_os_str().to_os_string();
        b.push(":");
        b.push(inside);
        a.push("-b".into());
        a.push(b);
    };
    bind(Path::new("/dev"), "/dev");
    bind(Path::new("/proc"), "/proc");
    if let Some(resolv) = resolv_conf {
        bind(resolv, "/etc/resolv.conf");
    }
    for (host, inside) in binds {
        bind(host, inside);
    }
    a.extend(plan.argv.iter().map(Into::into));
    a
}

/// Makes under `staging` what the plan's mounts that are not binds stand
/// for (tmpfs, directories, files, symlinks; `/tmp` first) and returns
/// every bind in order: a mount inside a directory made here is made in
/// it, not bound.
fn stage(plan: &Plan, staging: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut binds: Vec<(PathBuf, String)> = Vec::new();
    // Where each path inside comes from, latest last: (inside, host, made here).
    let mut placed: Vec<(String, PathBuf, bool)> = Vec::new();
    let fresh = |binds: &mut Vec<(PathBuf, String)>,
                 placed: &mut Vec<(String, PathBuf, bool)>,
                 inside: &str| {
        let host = staging.join(binds.len().to_string());
        binds.push((host.clone(), inside.to_string()));
        placed.push((inside.to_string(), host.clone(), true));
        host
    };
    let tmp = fresh(&mut binds, &mut placed, "/tmp");
    make_dir(&tmp, 0o1777)?;
    for m in &plan.mounts {
        match m {
            Mount::Bind(src, dest) | Mount::ReadOnly(src, dest) => {
                binds.push((src.clone(), dest.clone()));
                placed.push((dest.clone(), src.clone(), false));
            }
            _ => {
                let dest = m.dest();
                // Inside a directory made here: made in it; else its own.
                let host = match placed.iter().rev().find(|(p, _, _)| covers(p, dest)) {
                    Some((p, host, true)) if p.trim_end_matches('/') != dest => {
                        let inner = host
                            .join(dest[p.trim_end_matches('/').len()..].trim_start_matches('/'));
                        if let Some(parent) = inner.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        inner
                    }
                    _ => fresh(&mut binds, &mut placed, dest),
                };
                match m {
                    Mount::Tmpfs(_) => make_dir(&host, 0o755)?,
                    Mount::TmpfsMode(_, mode) | Mount::Dir(_, mode) => make_dir(&host, *mode)?,
                    Mount::File { fd, mode, .. } => copy_fd(*fd, &host, *mode)?,
                    Mount::Symlink(target, _) => std::os::unix::fs::symlink(target, &host)?,
                    Mount::Bind(..) | Mount::ReadOnly(..) => unreachable!("matched above"),
                }
            }
        }
    }
    Ok(binds)
}

/// True when `dest` is `path` or below it.
fn covers(path: &str, dest: &str) -> bool {
    let path = path.trim_end_matches('/');
    dest == path || dest.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
}

/// A directory with exactly `mode`.
fn make_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A file at `path` with the bytes of the open file `fd` (from its start;
/// the descriptor stays the caller's) and `mode`.
fn copy_fd(fd: i32, path: &Path, mode: u32) -> std::io::Result<()> {
    // SAFETY: the caller keeps `fd` open for the plan's run; ManuallyDrop
    // never closes it, and reads at an offset leave its position alone.
    let src = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let mut out = File::create(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = src.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Runner for Proot {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        let Output::Capture { echo } = output else {
            return Err(SandboxError::Interactive { isolation: "proot" });
        };
        let (cmd, _staging) = self.command(plan)?;
        let (status, tail) = capture(cmd, &plan.what, &self.secrets, echo)?;
        if status.success() {
            return Ok(0);
        }
        Err(SandboxError::Failed {
            what: plan.what.clone(),
            status: describe_status(&status),
            tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mounts: Vec<Mount>) -> Plan {
        Plan {
            what: "t".into(),
            root: "/r".into(),
            writable_root: false,
            mounts,
            env: vec![("SECRET".into(), "s3cret".into())],
            uid: 1000,
            gid: 1000,
            cwd: "/home/blue".into(),
            share_net: true,
            argv: vec!["python3".into(), "-V".into()],
        }
    }

    fn text(args: Vec<std::ffi::OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_root_binds_and_ids_are_on_the_command_line_and_the_environment_is_not() {
        let p = plan(vec![]);
        let binds = vec![
            (PathBuf::from("/s/0"), "/tmp".to_string()),
            (PathBuf::from("/w"), "/assemble/wheelhouse".to_string()),
        ];
        let args = text(proot_args(
            &p,
            &binds,
            Some(Path::new("/etc/resolv.conf")),
            (0, 0),
        ));
        let joined = args.join(" ");
        assert!(
            joined.starts_with("-r /r -i 1000:1000 -w /home/blue"),
            "{joined}"
        );
        for b in [
            "/dev:/dev",
            "/proc:/proc",
            "/etc/resolv.conf:/etc/resolv.conf",
            "/s/0:/tmp",
            "/w:/assemble/wheelhouse",
        ] {
            assert!(args.windows(2).any(|w| w == ["-b", b]), "{b}: {joined}");
        }
        assert!(joined.ends_with("python3 -V"), "{joined}");
        assert!(!joined.contains("s3cret"));
        // The user the plan asks for: no id shown.
        let args = text(proot_args(&p, &binds, None, (1000, 1000)));
        assert!(!args.contains(&"-i".to_string()));
        assert!(!args.iter().any(|a| a.contains("resolv.conf")));
    }

    #[test]
    fn mounts_that_are_not_binds_are_made_in_a_staging_directory() {
        let staging = tempfile::tempdir().unwrap();
        let mut content = tempfile::tempfile().unwrap();
        content.write_all(b"[app]\n").unwrap();
        use std::os::fd::AsRawFd;
        let p = plan(vec![
            Mount::Bind("/host/out".into(), "/out".into()),
            Mount::TmpfsMode("/home/blue/config".into(), 0o750),
            Mount::Dir("/home/blue/config/sub".into(), 0o700),
            Mount::File {
                fd: content.as_raw_fd(),
                dest: "/home/blue/config/sub/a.ini".into(),
                mode: 0o640,
            },
            Mount::Symlink("sub/a.ini".into(), "/home/blue/config/link.ini".into()),
            Mount::Tmpfs("/out/scratch".into()),
        ]);
        let binds = stage(&p, staging.path()).unwrap();
        let inside: Vec<&str> = binds.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(
            inside,
            ["/tmp", "/out", "/home/blue/config", "/out/scratch"]
        );
        let config = &binds[2].0;
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&binds[0].0), 0o1777);
        assert_eq!(mode(config), 0o750);
        assert_eq!(mode(&config.join("sub")), 0o700);
        assert_eq!(std::fs::read(config.join("sub/a.ini")).unwrap(), b"[app]\n");
        assert_eq!(mode(&config.join("sub/a.ini")), 0o640);
        assert_eq!(
            std::fs::read_link(config.join("link.ini")).unwrap(),
            Path::new("sub/a.ini")
        );
        // Under a bind, never in the host's directory: a staging one of its own.
        assert!(binds[3].0.starts_with(staging.path()));
    }
}
