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
//! directory of the run. Only where a path starts (after a space, a quote,
//! `=`, `<` or `>`, or at the start) and ends (a `/`, a space, a quote,
//! `;`, `)` or the end): a URL's path is left alone. Host paths are used
//! only when made of plain characters (they go into shell scripts).
//!
//! What it does not isolate: everything. The command sees and may change
//! what the user running assemble may (its files, the cache, the
//! read-only binds, which are not read-only here), has the network, and
//! runs as that user whatever uid the plan names.

use std::path::Path;
use std::process::Command;

use crate::sandbox::capture::{capture, describe_status};
use crate::sandbox::error::SandboxError;
use crate::sandbox::{Mount, Output, Plan, Runner};

/// The runner without isolation.
#[derive(Clone, Debug, Default)]
pub struct Unconfined {
    /// Strings to mask in captured output (index credentials).
    pub secrets: Vec<String>,
}

/// A path inside a plan and where it stands on the host.
type Place = (String, String);

impl Unconfined {
    /// The command for a plan, with the private directory standing for its
    /// `/tmp` (removed when dropped).
    fn command(&self, plan: &Plan) -> Result<(Command, tempfile::TempDir), SandboxError> {
        let scratch = tempfile::Builder::new()
            .prefix("assemble-none-")
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
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, translate(v, &places))))
            .current_dir(translate(&plan.cwd, &places));
        tracing::debug!(what = %plan.what, ?argv, "no sandbox");
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only prctl, async-signal-safe, on plain integers.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
    let refuse = |why: String| SandboxError::Unconfined {
        what: plan.what.clone(),
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
    for m in &plan.mounts {
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
    if plan.writable_root {
        return Err(refuse("it writes to its root filesystem".into()));
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

impl Runner for Unconfined {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        let Output::Capture { echo } = output else {
            return Err(SandboxError::Interactive { isolation: "none" });
        };
        let (cmd, _scratch) = self.command(plan)?;
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

    fn runs_on_host(&self) -> bool {
        true
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
        assert!(e.contains("exit status: 3") && e.contains("broken"), "{e}");
    }
}
