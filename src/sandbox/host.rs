//! Commands run on the host, outside any sandbox: mmdebstrap (which makes
//! its own namespaces) and Docker credential helpers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::sandbox::error::SandboxError;

/// A command run on the host, its output captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCommand {
    /// Short description for messages (`mmdebstrap`).
    pub what: String,
    /// The program: a path, or a name looked up on `PATH`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the environment assemble runs in.
    pub env: Vec<(String, String)>,
    /// Bytes written to its standard input (none: `/dev/null`).
    pub stdin: Option<Vec<u8>>,
}

/// What a host command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOutput {
    /// It exited with 0.
    pub success: bool,
    /// Its exit status, for messages (`exit status: 1`).
    pub status: String,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl HostOutput {
    /// A command that succeeded and printed `stdout`.
    pub fn succeeded(stdout: &[u8]) -> Self {
        Self {
            success: true,
            status: "exit status: 0".into(),
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
        }
    }
}

/// Runs a host command to completion.
pub fn run(cmd: &HostCommand) -> Result<HostOutput, SandboxError> {
    let program = cmd.program.display().to_string();
    let spawn_err = |source| SandboxError::HostSpawn {
        program: program.clone(),
        source,
    };
    tracing::debug!(what = %cmd.what, program, args = ?cmd.args, "host command");
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(input) = &cmd.stdin {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(input).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(HostOutput {
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}
