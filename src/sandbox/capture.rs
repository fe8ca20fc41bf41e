//! A sandboxed command's output, captured: the last lines kept for the
//! error (secrets masked), each line echoed when asked.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

use crate::output::{redact_text, Printer};
use crate::sandbox::error::SandboxError;

/// How many of the last lines are kept.
const TAIL: usize = 40;

/// Runs `cmd` to completion with its output captured: its status and its
/// last lines, `secrets` masked; each line goes through `echo` as it comes
/// (labelled `what`) when given.
pub(super) fn capture(
    cmd: Command,
    what: &str,
    secrets: &[String],
    echo: Option<&Printer>,
) -> Result<(ExitStatus, Vec<String>), SandboxError> {
    capture_then(cmd, what, secrets, echo, |_| ())
}

/// [`capture`], calling `ended` with the command's pid once it has exited
/// and before it is reaped (its pid still its own), before the rest of its
/// output is awaited: what it left running may hold its pipes open until
/// `ended` ends it.
pub(super) fn capture_then(
    mut cmd: Command,
    what: &str,
    secrets: &[String],
    echo: Option<&Printer>,
    ended: impl FnOnce(u32),
) -> Result<(ExitStatus, Vec<String>), SandboxError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tail = Mutex::new(VecDeque::with_capacity(TAIL));
    let pid = child.id();
    let status = std::thread::scope(|s| {
        for stream in [
            Box::new(stdout) as Box<dyn io::Read + Send>,
            Box::new(stderr),
        ] {
            let tail = &tail;
            s.spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = redact_text(&line, secrets);
                    if let Some(printer) = echo {
                        printer.output(what, &line);
                    }
                    let mut t = tail.lock().expect("tail lock");
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        // Ended but not reaped yet: while it is a zombie its pid (and the
        // process group it leads) names nothing else.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(2) on our own child, writing into `info`.
        unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        ended(pid);
        child.wait()
    })
    .map_err(SandboxError::Spawn)?;
    Ok((status, tail.into_inner().expect("tail lock").into()))
}

/// A status as a message says it.
pub(super) fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    }
}
