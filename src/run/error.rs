//! What `assemble run` refuses: the options given and the image named,
//! each a bad input (exit 2).

use std::io;

use super::tree::MAX_COPIED_FILES;

/// What the user gave `assemble run`, or the image, cannot be used (all
/// exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A `--volume` of the wrong form.
    #[error("--volume {spec:?} is not HOST:CONTAINER or HOST:CONTAINER:ro")]
    VolumeForm {
        /// What was given.
        spec: String,
    },
    /// A `--volume` whose host path cannot be resolved.
    #[error("--volume {spec:?}: {host} cannot be used")]
    VolumeHost {
        /// What was given.
        spec: String,
        /// The host path.
        host: String,
        #[source]
        source: io::Error,
    },
    /// An `--env` without a key.
    #[error("--env {spec:?} is not KEY=VALUE with a non-empty KEY")]
    Env {
        /// What was given.
        spec: String,
    },
    /// The image's user is not in its passwd.
    #[error("the image's user {0:?} is not in its /etc/passwd")]
    NoUser(String),
    /// The image's group is not in its group file.
    #[error("the image's group {0:?} is not in its /etc/group")]
    NoGroup(String),
    /// A layer's media type cannot be read.
    #[error("layer {digest}")]
    Layer {
        /// The layer.
        digest: crate::digest::Digest,
        #[source]
        source: io::Error,
    },
    /// A mount point with `.` or `..` in it.
    #[error("{dest}: . and .. are not allowed")]
    DotInMount {
        /// The mount point.
        dest: String,
    },
    /// A mount point under something that is not a directory.
    #[error(
        "cannot mount on {dest}: {on} is not a directory in the image (a symlink?); mount at the \
         path it points to"
    )]
    NotADirectory {
        /// The mount point.
        dest: String,
        /// The part of it that is not a directory.
        on: String,
    },
    /// A writable place with too many files to copy.
    #[error(
        "the image's {dest} holds more than {MAX_COPIED_FILES} files, too many to copy into a \
         writable tmpfs; bind a host directory there with -v HOST:{dest}"
    )]
    TooManyFiles {
        /// The place.
        dest: String,
    },
    /// Nothing to run.
    #[error("the image has no entrypoint or command and none was given")]
    NoCommand,
}

impl RunError {
    /// Always: each is about what the user gave or the image they named
    /// (exit 2).
    pub fn is_bad_input(&self) -> bool {
        true
    }
}
