//! What can go wrong writing a layer.

use std::io;
use std::path::PathBuf;

/// Failure while writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading a source file or writing the blob failed.
    #[error("cannot write layer entry {path}")]
    Io {
        /// The entry (or blob) being written.
        path: String,
        #[source]
        source: io::Error,
    },
    /// A directory or entry of a source tree could not be read.
    #[error("cannot read {path}")]
    Walk {
        /// The directory or entry being read.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry's path is not representable in a layer.
    #[error("path {0:?} cannot be stored in a layer: it must be valid UTF-8 and relative")]
    BadPath(PathBuf),
}
