//! What can go wrong reading or writing an image, wherever it lives.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, InvalidDigest};
use crate::fsutil::WriteError;
use crate::image::layer::LayerError;
use crate::image::unpack::UnpackError;
use crate::registry::RegistryError;

/// Failure while reading or writing images, their blobs and layouts.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be written into place.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// oci-spec refused to build a document.
    #[error("invalid OCI document: cannot build its {what}")]
    Document {
        /// The part being built.
        what: &'static str,
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A descriptor's digest is not one assemble reads.
    #[error("invalid OCI document: a descriptor's digest cannot be used")]
    Descriptor(#[source] InvalidDigest),
    /// A blob's content does not match its digest.
    #[error("blob {path} does not match its digest {expected} (found {found}); delete it and build again")]
    DigestMismatch {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        found: Digest,
    },
    /// The directory is not an OCI layout or lacks the requested image.
    #[error("{path} is not a usable OCI layout: {reason}")]
    BadLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `index.json` is not an OCI index.
    #[error(
        "{path} is not a usable OCI layout: index.json is not an OCI index; choose another \
         directory, or move that file away"
    )]
    BadIndex {
        /// The layout directory.
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest is not an OCI image manifest.
    #[error("manifest {digest} of {origin} is not an OCI image manifest")]
    Manifest {
        /// Where it comes from.
        origin: String,
        /// Its digest.
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    /// An image configuration is not one.
    #[error("image configuration {digest} of {origin} is not valid")]
    Config {
        /// Where it comes from.
        origin: String,
        /// Its digest.
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    /// A blob is needed on this machine and is only elsewhere.
    #[error("blob {digest} of {origin} is not on this machine")]
    NotLocal {
        /// Where it lives.
        origin: String,
        /// The blob.
        digest: Digest,
    },
    /// A layer's media type has no Docker equivalent.
    #[error("--format docker cannot carry a layer of media type {media_type}")]
    NoDockerMediaType {
        /// The layer's media type.
        media_type: String,
    },
    /// A manifest being converted is not a JSON object with layer objects.
    #[error("manifest {digest} cannot be converted: {reason}")]
    Convert {
        /// The manifest.
        digest: Digest,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Writing an archive's tar failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Unpacking an archive failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// Fetching a blob from a registry failed.
    #[error(transparent)]
    Registry(Box<RegistryError>),
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> Self {
        ImageError::Registry(Box::new(e))
    }
}

impl ImageError {
    /// True when the image given is at fault (exit 2), not the machine.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ImageError::BadLayout { .. }
            | ImageError::BadIndex { .. }
            | ImageError::Manifest { .. }
            | ImageError::NoDockerMediaType { .. } => true,
            ImageError::Unpack(e) => e.is_bad_input(),
            ImageError::Registry(e) => e.is_bad_input(),
            _ => false,
        }
    }
}
