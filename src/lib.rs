//! `assemble`: builds OCI images of Python web applications without a
//! container engine and without root.
//!
//! One module per pipeline stage (the map, with the data between the
//! stages and the invariants, is `ARCHITECTURE.md` at the top level):
//!
//! - [`spec`]: what to build: the requirement, `assemble.toml`, pip settings.
//! - [`rootfs`]: the base and compiler root filesystems (mmdebstrap, tarball,
//!   OCI layout, registry image, offline store), cached by what defines them.
//! - [`sandbox`]: every external process: commands in a rootfs as an
//!   unprivileged user (bubblewrap) and commands on the host (mmdebstrap,
//!   credential helpers), behind one trait so their plans are tested without
//!   privileges.
//! - [`python`]: the Python stages: [`python::compile`](mod@python::compile) (`pip wheel` in the
//!   compiler), [`python::install`](mod@python::install) (the venv in the base), [`python::split`]
//!   (the venv into layers by RECORD) and [`python::wheel`] (the zip
//!   directory and RECORD reader, fuzzed).
//! - [`runtime`]: the entrypoint, templates and settings layer.
//! - [`image`]: the image as a value (config, manifest, layer descriptors
//!   and their blob source), read from and written to OCI layouts, archives
//!   ([`image::archive`]) and registries ([`image::remote`]); under it
//!   [`image::layer`] (deterministic tar, compressed and hashed in one pass)
//!   and [`image::unpack`] (safe extraction of untrusted tarballs).
//! - [`contract`]: the image contract (user, ids, paths, ports, volumes).
//! - [`cache`]: the content-addressed cache.
//! - [`build`]: the pipeline, from options to layout and push; also the
//!   steps `base`, `vendor` and `push` share with it.
//! - [`registry`]: references, credentials, TLS per host (certs.d, --ca-file)
//!   and the v2 client (timeouts, credentials only to the registry that asked):
//!   push, pull, tags.
//! - [`remote_cache`]: a registry repository as the build cache of many
//!   runners: a build's record, stored as an OCI artifact, read back checked.
//! - [`run`]: `assemble run`, an image run rootless for smoke tests.
//! - [`vendor`]: the offline store and its one-file bundle.
//! - [`housekeeping`]: `clean` and `purge`, which remove only what assemble wrote,
//!   and `cache prune`, which deletes old build cache entries from a registry.
//! - [`cli`]: the command line (clap derive) and its help.
//! - [`settings`]: the command line turned into validated settings before any
//!   work; [`commands`]: one function per subcommand, running those settings.
//! - [`output`]: the one printer; [`digest`]: sha256 helpers; [`env`](mod@env): variable names;
//!   [`fsutil`]: files written whole or not at all; [`epoch`]: `SOURCE_DATE_EPOCH` and dates.

pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
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
pub mod remote_cache;
pub mod rootfs;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod settings;
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
    /// The offline store and its bundle.
    #[error(transparent)]
    Vendor(#[from] vendor::VendorError),
    /// `assemble run`'s options or image.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// `clean` and `purge`.
    #[error(transparent)]
    Clean(#[from] housekeeping::CleanError),
    /// `cache prune`.
    #[error(transparent)]
    Prune(#[from] housekeeping::prune::PruneError),
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
    /// Each module's error says which of its failures are bad input; no
    /// catch-all, so a new variant must be placed here.
    pub fn exit_code(&self) -> i32 {
        let bad_input = match self {
            Error::Usage(_) => true,
            Error::Spec(e) => e.is_bad_input(),
            Error::Epoch(e) => e.is_bad_input(),
            Error::Rootfs(e) => e.is_bad_input(),
            Error::Unpack(e) => e.is_bad_input(),
            Error::Python(e) => e.is_bad_input(),
            Error::Sandbox(e) => e.is_bad_input(),
            Error::Image(e) => e.is_bad_input(),
            Error::Transfer(e) => e.is_bad_input(),
            Error::Registry(e) => e.is_bad_input(),
            Error::Clean(e) => e.is_bad_input(),
            Error::Prune(e) => e.is_bad_input(),
            Error::Vendor(e) => e.is_bad_input(),
            Error::Run(e) => e.is_bad_input(),
            Error::Cache(e) => e.is_bad_input(),
            // A file that cannot be written or read is the machine's failure.
            Error::Layer(_) | Error::Write(_) | Error::Io { .. } => false,
        };
        if bad_input {
            2
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_modules() {
        let code = |e: Error| e.exit_code();
        assert_eq!(code(run::RunError::NoCommand.into()), 2);
        assert_eq!(code(cache::CacheError::EmptyVariable.into()), 2);
        assert_eq!(code(cache::CacheError::NoHome.into()), 1);
        assert_eq!(
            code(
                vendor::VendorError::LockFormat {
                    path: "vendor/pylock.toml".into(),
                    format: 9
                }
                .into()
            ),
            2
        );
        let no_python = rootfs::RootfsError::NoPython {
            wanted: "3.11".into(),
            found: "python3.12".into(),
        };
        assert_eq!(
            code(rootfs::RootfsError::CompilerMismatch(Box::new(no_python)).into()),
            2
        );
        assert_eq!(code(sandbox::SandboxError::NoBubblewrap.into()), 2);
        let disabled = housekeeping::prune::PruneError::DeletesDisabled {
            host: "127.0.0.1:5000".into(),
            repository: "127.0.0.1:5000/team/cache".into(),
            digest: digest::Digest::of(b"x"),
            deleted: 0,
        };
        assert_eq!(
            code(disabled.into()),
            1,
            "a registry's refusal, as any other"
        );
        assert_eq!(
            code(
                sandbox::SandboxError::NoSandbox {
                    what: "pip wheel".into()
                }
                .into()
            ),
            1
        );
    }
}
