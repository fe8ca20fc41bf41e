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
         `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; in a CI job container, where \
         the job cannot change that, leave --isolation unset (or use proot)"
    )]
    NoUserNamespaces {
        /// What bubblewrap said.
        detail: String,
    },
    /// proot is not installed.
    #[error("proot is not installed; install it (Debian: apt-get install proot)")]
    NoProot,
    /// proot cannot trace a command here (ptrace refused).
    #[error(
        "proot cannot run here ({detail}); it needs ptrace, which the runner's seccomp profile \
         or Yama's ptrace_scope may refuse"
    )]
    ProotRefused {
        /// What proot said.
        detail: String,
    },
    /// chroot cannot be used here.
    #[error(
        "chroot cannot be used here ({detail}); it needs root with CAP_SYS_CHROOT and CAP_MKNOD"
    )]
    ChrootRefused {
        /// Why.
        detail: String,
    },
    /// No isolation works here.
    #[error(
        "no sandbox works here to run commands in a root filesystem:{}\n\
         what the job's owner can change: allow user namespaces (a runner whose seccomp profile \
         lets unshare(CLONE_NEWUSER) through, e.g. Kubernetes' `Unconfined` or a profile that \
         allows it, or a host with user namespaces enabled), run the job as root (chroot, with \
         Docker's default capabilities), or install proot in the job image (Debian: apt-get \
         install proot) and keep ptrace allowed; or, trusting the packages' build code \
         completely and running the job in an image that is the compiler (the base's Python at \
         the same path, its headers, a C compiler), ask for --isolation none",
        tried_text(.tried)
    )]
    NoIsolation {
        /// Each isolation tried and why it failed.
        tried: Vec<(String, String)>,
    },
    /// An interactive run (`assemble run`) under an isolation that cannot
    /// supervise one.
    #[error(
        "`assemble run` needs user namespaces (bubblewrap) or root with CAP_SYS_CHROOT (chroot); \
         {isolation} runs build steps only"
    )]
    Interactive {
        /// The isolation.
        isolation: &'static str,
    },
    /// A command that would run as root under chroot.
    #[error(
        "{what} runs as root, and chroot cannot keep root in: run it where user namespaces \
         work (bubblewrap), or give the image a user (USER)"
    )]
    ChrootAsRoot {
        /// What was to run.
        what: String,
    },
    /// A plan that cannot run without a sandbox (`--isolation none`).
    #[error("{what} cannot run without isolation (--isolation none): {why}")]
    Unconfined {
        /// What was to run.
        what: String,
        /// Why.
        why: String,
    },
    /// The command could not be started.
    #[error("cannot start the sandbox")]
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
    /// Why an isolation could not be used, in a few words (for the list of
    /// those tried).
    pub fn short(&self) -> String {
        match self {
            SandboxError::NoBubblewrap => "bubblewrap (bwrap) is not installed".into(),
            SandboxError::NoUserNamespaces { detail } => {
                format!("user namespaces are refused ({detail})")
            }
            SandboxError::NoProot => "proot is not installed".into(),
            SandboxError::ProotRefused { detail } => {
                format!("proot cannot trace a command ({detail})")
            }
            SandboxError::ChrootRefused { detail } => format!("cannot chroot ({detail})"),
            other => {
                // The error and its causes, as the final error line says them.
                let mut text = other.to_string();
                let mut cause = std::error::Error::source(other);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                text
            }
        }
    }

    /// True when the machine lacks what assemble needs (exit 2), as opposed
    /// to a command that ran and failed.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SandboxError::NoBubblewrap
                | SandboxError::NoUserNamespaces { .. }
                | SandboxError::NoProot
                | SandboxError::ProotRefused { .. }
                | SandboxError::ChrootRefused { .. }
                | SandboxError::NoIsolation { .. }
                | SandboxError::Interactive { .. }
                | SandboxError::ChrootAsRoot { .. }
                | SandboxError::Unconfined { .. }
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

fn tried_text(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(isolation, why)| format!("\n  {isolation}: {why}"))
        .collect()
}
