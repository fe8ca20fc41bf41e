//! What can go wrong running a command, sandboxed or on the host.

use std::io;

/// Failure to run a command.
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
    /// A plan was given to a runner that has no sandbox.
    #[error("{what} needs a sandbox, and this command set none up")]
    NoSandbox {
        /// What was to run.
        what: String,
    },
    /// A host command could not be run.
    #[error("cannot run {program}")]
    HostSpawn {
        /// The program.
        program: String,
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    /// True when the machine lacks what assemble needs (exit 2), as opposed
    /// to a command that ran and failed.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SandboxError::NoBubblewrap | SandboxError::NoUserNamespaces { .. }
        )
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its last output lines:\n    {}", tail.join("\n    "))
    }
}
