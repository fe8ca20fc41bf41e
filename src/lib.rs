//! `assemble`: builds OCI images of Python web applications without a
//! container engine and without root.
//!
//! One module per pipeline stage (see DESIGN.md):
//!
//! - [`spec`]: what to build: the requirement, `assemble.toml`, pip settings.
//! - [`rootfs`]: the base and compiler root filesystems (mmdebstrap, tarball,
//!   OCI layout), cached by what defines them.
//! - [`sandbox`]: runs one command in a rootfs as an unprivileged user
//!   (bubblewrap), behind a trait so mount plans are tested without privileges.
//! - [`python`]: `pip wheel` in the compiler, the venv in the base, and the
//!   split of the venv into per-distribution layers.
//! - [`runtime`]: the entrypoint, templates and settings layer.
//! - [`layer`]: deterministic tar, compressed and hashed in one pass, host
//!   trees walked in tar order as they are written;
//!   [`compress`]: gzip members or zstd frames on every core, deterministically.
//! - [`unpack`]: safe extraction of untrusted tarballs.
//! - [`oci`]: image config, manifest, index and the OCI layout.
//! - [`cache`]: the content-addressed cache.
//! - [`build`]: the pipeline, from options to layout.
//! - [`registry`]: references, credentials, TLS per host (certs.d, --ca-file)
//!   and the v2 client (timeouts, credentials only to the registry that asked):
//!   push, pull, tags.
//! - [`run`]: `assemble run`, an image run rootless for smoke tests.
//! - [`archive`]: oci-archive and docker-archive files.
//! - [`vendor`]: the offline store and its one-file bundle.
//! - [`housekeeping`]: `clean` and `purge`, which remove only what assemble wrote.
//! - [`output`]: the one printer; [`digest`]: sha256 helpers; [`env`](mod@env): variable names;
//!   [`fsutil`]: files written whole or not at all; [`epoch`]: `SOURCE_DATE_EPOCH` and dates.

pub mod build;
pub mod cache;
pub mod cli;
pub mod contract;
pub mod digest;
pub mod env;
pub mod epoch;
pub mod fsutil;
pub mod housekeeping;
pub mod image;
pub mod output;
pub mod python;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod spec;
pub mod vendor;

/// Any failure of a command, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage or input that the parser could not catch.
    #[error("{0}")]
    Usage(String),
    /// Requirement, configuration or pip settings.
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    /// Base or compiler rootfs.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// Sandbox.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// Python stages.
    #[error(transparent)]
    Python(#[from] python::PythonError),
    /// Layer writing.
    #[error(transparent)]
    Layer(#[from] image::layer::LayerError),
    /// Images, their blobs, layouts and archives.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// Pushes and pulls.
    #[error(transparent)]
    Transfer(#[from] image::remote::TransferError),
    /// Cache.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// Unpacking.
    #[error(transparent)]
    Unpack(#[from] image::unpack::UnpackError),
    /// Registry.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// `clean` and `purge`.
    #[error(transparent)]
    Clean(#[from] housekeeping::CleanError),
    /// `SOURCE_DATE_EPOCH` cannot be used.
    #[error(transparent)]
    Epoch(#[from] epoch::EpochError),
    /// A file could not be written into place.
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
    /// Other file access.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for bad usage or input (and a machine that lacks what is needed), 1 for a failed build.
    pub fn exit_code(&self) -> i32 {
        use sandbox::SandboxError as S;
        let bad_input = match self {
            Error::Usage(_) | Error::Spec(_) | Error::Epoch(_) => true,
            Error::Rootfs(e) => e.is_bad_input(),
            Error::Unpack(e) => e.is_bad_input(),
            Error::Python(e) => e.is_bad_input(),
            Error::Sandbox(e) => matches!(e, S::NoBubblewrap | S::NoUserNamespaces { .. }),
            Error::Image(e) => e.is_bad_input(),
            Error::Transfer(e) => e.is_bad_input(),
            Error::Registry(e) => e.is_bad_input(),
            Error::Clean(e) => e.is_bad_input(),
            Error::Cache(cache::CacheError::EmptyVariable) => true,
            _ => false,
        };
        if bad_input {
            2
        } else {
            1
        }
    }
}
