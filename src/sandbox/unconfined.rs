//! No isolation (`--isolation none`, only when asked): a plan's command
//! runs on the host, in the job's own filesystem, as the user running
//! assemble. For a job whose image is itself the compiler (the base's
//! interpreter at the same path, the headers, a C compiler) where no
//! sandbox works: a plain user, no user namespaces, no proot.
//!
//! Nothing is moved: the paths a plan binds are where they are on the
//! host. The plan's paths inside (`/assemble/...`, the venv's, `/tmp`) are
//! put, in its arguments, environment and working directory, where they
//! stand on the host: each bind's host path, and for `/tmp` a private
//! directory of the run (also its `TMPDIR`). In arguments, only where a
//! path starts (after a space, a quote, `=`, `<` or `>`, or at the start)
//! and ends (a `/`, a space, a quote, `;`, `)` or the end): a URL's path
//! is left alone; in variables, only a value, or a `:`-separated part of
//! it, that is such a path; in files a plan's command reads, where the
//! step that writes them asks ([`Runner::seen_as`]). Host paths are used
//! only when made of plain characters (they go into shell scripts). What
//! the command leaves running in its process group is killed when it
//! ends.
//!
//! What it does not isolate: everything. The command sees and may change
//! what the user running assemble may (its files, the cache, the
//! read-only binds, which are not read-only here), has the network, and
//! runs as that user whatever uid the plan names.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::sandbox::capture::{capture_then, describe_status};
use crate::sandbox::error::SandboxError;
use crate::sandbox::{Mount, Output, Plan, Runner};

/// The runner without isolation.
#[derive(Clone, Debug, Default)]
pub struct Unconfined {
    /// Strings to mask in captured output (index credentials).
    pub secrets: Vec<String>,
}

/// The shell a command runs under: it waits for the command, and on
/// SIGTERM (its death signal when assemble dies), SIGINT or SIGHUP kills
/// its whole process group, the command's descendants included.
const REAPER: &str = "trap 'kill -KILL 0' HUP INT TERM; \"$@\" & wait $!";

/// A path inside a plan and where it stands on the host.
type Place = (String, String);

impl Unconfined {
    /// The command for a plan, with the private directory standing for its
    /// `/tmp` (removed when dropped).
    fn command(&self, plan: &Plan) -> Result<(Command, tempfile::TempDir), SandboxError> {
        let scratch = tempfile::Builder::new()
            .prefix("assemble-none-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(SandboxError::Spawn)?;
        let tmp = scratch.path().join("tmp");
        std::fs::create_dir(&tmp).map_err(SandboxError::Spawn)?;
        let places = places(plan, &tmp)?;
        let argv: Vec<String> = plan.argv.iter().map(|a| translate(a, &places)).collect();
        let Some((program, args)) = argv.split_first() else {
            return Err(SandboxError::Unconfined {
                what: plan.what.clone(),
                why: "it names no command".into(),
            });
        };
        let mut env: Vec<(String, String)> = plan
            .env
            .iter()
            .map(|(k, v)| (k.clone(), translate_value(v, &places)))
            .collect();
        // Temporary files in the private /tmp too, not the host's.
        if !env.iter().any(|(k, _)| k == "TMPDIR") {
            env.push(("TMPDIR".into(), translate("/tmp", &places)));
        }
        // The command leads a session of its own (no terminal: a prompt
        // fails rather than stops), under a shell that kills the session's
        // process group when assemble dies (its death signal, SIGTERM).
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", REAPER, "sh", program])
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(translate(&plan.cwd, &places));
        tracing::debug!(what = %plan.what, ?argv, "no sandbox");
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only setsid and prctl, async-signal-safe, on plain integers.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setsid();
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        Ok((cmd, scratch))
    }
}

/// Where each of the plan's paths inside stands on the host, longest
/// first: its binds, and `/tmp` at `tmp`. Any other mount (a tmpfs, a file
/// made for it) cannot be made without a sandbox.
fn places(plan: &Plan, tmp: &Path) -> Result<Vec<Place>, SandboxError> {
    if plan.writable_root {
        return Err(SandboxError::Unconfined {
            what: plan.what.clone(),
            why: "it writes to its root filesystem".into(),
        });
    }
    mount_places(&plan.what, &plan.mounts, tmp)
}

/// [`places`] of these mounts.
fn mount_places(what: &str, mounts: &[Mount], tmp: &Path) -> Result<Vec<Place>, SandboxError> {
    let refuse = |why: String| SandboxError::Unconfined {
        what: what.to_string(),
        why,
    };
    let plain = |p: &Path| -> Result<String, SandboxError> {
        let text = p.to_str().filter(|t| {
            t.starts_with('/')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-+@,".contains(&b))
        });
        text.map(str::to_string).ok_or_else(|| {
            refuse(format!(
                "its host path {} is not made of plain characters (letters, digits, \
                 `/._-+@,`): set --cache-dir or TMPDIR to one that is",
                p.display()
            ))
        })
    };
    let mut places = vec![("/tmp".to_string(), plain(tmp)?)];
    for m in mounts {
        match m {
            Mount::Bind(host, inside) | Mount::ReadOnly(host, inside) => {
                places.push((inside.trim_end_matches('/').to_string(), plain(host)?));
            }
            other => {
                return Err(refuse(format!(
                    "it needs {} made at {}, which only a sandbox can do",
                    match other {
                        Mount::Tmpfs(_) | Mount::TmpfsMode(..) => "a tmpfs",
                        Mount::Dir(..) => "a directory",
                        Mount::File { .. } => "a file",
                        _ => "a symlink",
                    },
                    other.dest()
                )))
            }
        }
    }
    places.sort_by_key(|(inside, _)| std::cmp::Reverse(inside.len()));
    Ok(places)
}

/// `text` with each path inside that starts one of `places` put where it
/// stands on the host (see the module's note for where a path starts and
/// ends).
fn translate(text: &str, places: &[Place]) -> String {
    let starts = |c: Option<char>| c.is_none_or(|c| c.is_whitespace() || "'\"=<>".contains(c));
    let ends = |c: Option<char>| c.is_none_or(|c| c.is_whitespace() || "/'\";)".contains(c));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let before = out.chars().last();
        let found = places.iter().find(|(inside, _)| {
            rest.starts_with(inside.as_str())
                && starts(before)
                && ends(rest[inside.len()..].chars().next())
        });
        match found {
            Some((inside, host)) => {
                out.push_str(host);
                rest = &rest[inside.len()..];
            }
            None => {
                let c = rest.chars().next().expect("not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// A variable's value with each of its `:`-separated parts that is a
/// path inside (one of `places`, or below one) put where it stands on the
/// host; anything else (a URL, a list of URLs, a word) as it was.
fn translate_value(value: &str, places: &[Place]) -> String {
    value
        .split(':')
        .map(|part| {
            let inside = places.iter().find(|(inside, _)| {
                part == inside
                    || part
                        .strip_prefix(inside.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            match inside {
                Some((inside, host)) => format!("{host}{}", &part[inside.len()..]),
                None => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

impl Runner for Unconfined {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        let Output::Capture { echo } = output else {
            return Err(SandboxError::Interactive { isolation: "none" });
        };
        let (cmd, _scratch) = self.command(plan)?;
        // What the command left running in its process group is ended
        // with it (one that left the group is not: nothing is isolated).
        let (status, tail) = capture_then(cmd, &plan.what, &self.secrets, echo, |pid| {
            // SAFETY: kill(2) on the process group the child made and
            // leads; it is not reaped yet, so the id names that group.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        })?;
        if status.success() {
            return Ok(0);
        }
        Err(SandboxError::Failed {
            what: plan.what.clone(),
            status: describe_status(&status),
            tail,
        })
    }

    fn runs_on_host(&self) -> bool {
        true
    }

    fn seen_as(&self, mounts: &[Mount], text: &str) -> String {
        match mount_places("", mounts, Path::new("/tmp")) {
            Ok(places) => translate(text, &places),
            Err(_) => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mounts: Vec<Mount>, argv: &[&str]) -> Plan {
        Plan {
            what: "t".into(),
            root: "/r".into(),
            writable_root: false,
            mounts,
            env: vec![("HOME".into(), "/tmp".into())],
            uid: 1000,
            gid: 33,
            cwd: "/tmp".into(),
            share_net: false,
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn paths_inside_are_put_where_they_stand_on_the_host() {
        let p = plan(
            vec![
                Mount::Bind("/c/wheels".into(), "/assemble/wheelhouse".into()),
                Mount::ReadOnly("/c/uv".into(), "/assemble/uv".into()),
                Mount::Bind("/tmp/asmXYZ".into(), "/home/blue/app".into()),
            ],
            &[],
        );
        let places = places(&p, Path::new("/s/tmp")).unwrap();
        let t = |s: &str| translate(s, &places);
        assert_eq!(
            t("/assemble/uv/uv build --out-dir /assemble/wheelhouse 2>/tmp/log"),
            "/c/uv/uv build --out-dir /c/wheels 2>/s/tmp/log"
        );
        assert_eq!(
            t("-m venv /home/blue/app\n'/home/blue/app/bin/python' x"),
            "-m venv /tmp/asmXYZ\n'/tmp/asmXYZ/bin/python' x"
        );
        assert_eq!(
            t("UV_CACHE_DIR=/tmp/uv-cache-1 x"),
            "UV_CACHE_DIR=/s/tmp/uv-cache-1 x"
        );
        assert_eq!(t("/tmp"), "/s/tmp");
        // Not a path of the plan's: a URL's, a longer name, another prefix.
        for same in [
            "https://index.example/tmp/simple",
            "http://host/assemble/uv/x",
            "/assemble/uvx",
            "/tmpfile",
            "x/tmp",
        ] {
            assert_eq!(t(same), same);
        }
    }

    #[test]
    fn variables_are_translated_only_where_a_value_is_a_path() {
        let p = plan(
            vec![Mount::ReadOnly("/c/tools".into(), "/assemble/tools".into())],
            &[],
        );
        let places = places(&p, Path::new("/s/tmp")).unwrap();
        let v = |s: &str| translate_value(s, &places);
        assert_eq!(v("/assemble/tools/cert.pem"), "/c/tools/cert.pem");
        assert_eq!(v("/tmp"), "/s/tmp");
        assert_eq!(v("/usr/bin:/assemble/tools/bin"), "/usr/bin:/c/tools/bin");
        for same in [
            "https://h/simple?next=/tmp/x",
            "http://h:8080/tmp/simple http://g/assemble/tools",
            "/tmpfile",
            "C.UTF-8",
        ] {
            assert_eq!(v(same), same);
        }
    }

    #[test]
    fn what_the_command_leaves_running_is_killed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            vec![Mount::Bind(dir.path().into(), "/assemble/out".into())],
            &["/bin/sh", "-c", "sleep 1000 & echo $! > /assemble/out/pid"],
        );
        // It holds the output pipes: were it not killed, the run would not
        // end (the watchdog is far beyond what the run takes).
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = Unconfined::default().run(&p, Output::Capture { echo: None });
            done.send(r.map_err(|e| e.to_string())).unwrap();
        });
        ended
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the run ends")
            .unwrap();
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed: gone, or a zombie until its new parent reaps it.
        let alive = (0..50).all(|_| {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            let running = state
                .rsplit(") ")
                .next()
                .is_some_and(|s| !s.is_empty() && !s.starts_with('Z'));
            if running {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            running
        });
        assert!(!alive, "{stat} still runs");
    }

    #[test]
    fn what_needs_a_sandbox_or_an_odd_path_is_refused() {
        let tmpfs = plan(vec![Mount::Tmpfs("/run".into())], &["true"]);
        let e = places(&tmpfs, Path::new("/s/tmp")).unwrap_err().to_string();
        assert!(e.contains("a tmpfs made at /run"), "{e}");
        let odd = plan(
            vec![Mount::Bind(
                "/c/my wheels".into(),
                "/assemble/wheelhouse".into(),
            )],
            &["true"],
        );
        let e = places(&odd, Path::new("/s/tmp")).unwrap_err().to_string();
        assert!(e.contains("not made of plain characters"), "{e}");
    }

    #[test]
    fn a_command_runs_on_the_host_with_its_paths_there() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let p = plan(
            vec![Mount::Bind(out.clone(), "/assemble/out".into())],
            &[
                "/bin/sh",
                "-c",
                "echo \"$HOME\" > /assemble/out/home; pwd > /assemble/out/cwd; id -u > /assemble/out/uid",
            ],
        );
        Unconfined::default()
            .run(&p, Output::Capture { echo: None })
            .unwrap();
        let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
        assert!(read("home").trim().ends_with("/tmp"), "{}", read("home"));
        assert_ne!(read("home").trim(), "/tmp", "a private /tmp");
        assert_eq!(read("home"), read("cwd"));
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        assert_eq!(read("uid").trim(), unsafe { libc::getuid() }.to_string());
        let failing = plan(vec![], &["/bin/sh", "-c", "echo broken >&2; exit 3"]);
        let e = Unconfined::default()
            .run(&failing, Output::Capture { echo: None })
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit code 3") && e.contains("broken"), "{e}");
    }
}
