//! What can go wrong getting a root filesystem, and which of it is the
//! user's input (exit 2).

use std::io;
use std::path::{Path, PathBuf};

use crate::cache::CacheError;
use crate::digest::Digest;
use crate::image::layer::LayerError;
use crate::image::unpack::UnpackError;
use crate::image::ImageError;
use crate::sandbox::SandboxError;

/// Failure to get a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mmdebstrap is needed and absent.
    #[error(
        "mmdebstrap is not installed, and it is needed to build the {role} rootfs; install it \
         (Debian: apt-get install mmdebstrap uidmap) or pass --base FILE.tar or --base oci:DIR"
    )]
    NoMmdebstrap {
        /// base or compiler.
        role: String,
    },
    /// No way to run mmdebstrap here: no user namespaces, and not root.
    #[error(
        "cannot build the {role} rootfs here: mmdebstrap needs user namespaces (its unshare mode), \
         which this machine or job container refuses, or root (its root mode); run the job as \
         root, or let it find the root filesystems in the build cache: a build where user \
         namespaces work, pushed to the same registry (or with --cache-to), writes them there for \
         the same Debian archive state"
    )]
    NoMmdebstrapMode {
        /// base or compiler.
        role: String,
    },
    /// mmdebstrap ran and failed.
    #[error(
        "mmdebstrap failed to build the {role} rootfs ({status}); as a normal user it needs entries \
         for you in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids \
         100000-165535 $USER); its last lines:\n    {tail}"
    )]
    Mmdebstrap {
        /// base or compiler.
        role: String,
        /// Exit status.
        status: String,
        /// Last lines of its output.
        tail: String,
    },
    /// `ASSEMBLE_DEBIAN_MIRROR` names no suite assemble can check.
    #[error("ASSEMBLE_DEBIAN_MIRROR={mirror:?} cannot be used: {reason}")]
    BadMirror {
        /// The value, credentials masked.
        mirror: String,
        /// Why.
        reason: String,
    },
    /// The archive state could not be learnt, and none is known.
    #[error(
        "cannot read the Debian archive state the {role} rootfs is built from ({reason}), and no \
         earlier state is known on this machine; check the mirror (ASSEMBLE_DEBIAN_MIRROR), the \
         network or the proxy, or pass --base FILE.tar or --base oci:DIR"
    )]
    ArchiveUnreachable {
        /// base or compiler.
        role: String,
        /// The suite and why, credentials masked.
        reason: String,
    },
    /// A suite's `InRelease` is not one.
    #[error("the Debian archive's {url} cannot be used: {reason}")]
    BadRelease {
        /// The InRelease URL, credentials stripped.
        url: String,
        /// Why.
        reason: String,
    },
    /// The archive changed between the check and mmdebstrap's own download.
    #[error(
        "the Debian archive changed while the rootfs was being built ({url} is not the one \
         checked before); nothing was cached: run the build again"
    )]
    ArchiveMoved {
        /// The InRelease URL, credentials stripped.
        url: String,
    },
    /// An installed package is in none of the archive's Packages indexes.
    #[error(
        "mmdebstrap installed {package}, which none of the archive's Packages indexes lists, so \
         its .deb hash cannot be recorded; nothing was cached"
    )]
    UnknownPackage {
        /// name version architecture.
        package: String,
    },
    /// A locked build names packages the archive no longer has.
    #[error(
        "the lock's Debian packages for the {role} rootfs are no longer in the archive: {}; write \
         the lock again from a build without it, or point ASSEMBLE_DEBIAN_MIRROR at a mirror (a \
         snapshot of the archive) that still has them",
        packages.join(", ")
    )]
    LockedPackagesGone {
        /// base or compiler.
        role: String,
        /// Each as `name=version (arch)`.
        packages: Vec<String>,
    },
    /// A given base cannot be used.
    #[error("cannot use base {source_name}: {reason}")]
    BadBase {
        /// What the user named.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A given base whose libc is musl (Alpine): the wheels are glibc's.
    #[error(
        "the base is built on musl (it has {loader}, no glibc loader): the wheels compiled for \
         it would be glibc's and Debian's runtime packages do not exist for it; use a Debian- or \
         Ubuntu-based image, or leave --base unset to build one from layers/base"
    )]
    MuslBase {
        /// The musl loader found.
        loader: String,
    },
    /// A given base without what the image runs.
    #[error("the base lacks what the image runs: {}", lacks_text(.missing, .packages, *.apt, *.user))]
    BaseLacks {
        /// The programs and files missing.
        missing: Vec<String>,
        /// The Debian packages that bring them.
        packages: Vec<String>,
        /// Whether the base has apt-get.
        apt: bool,
        /// Whether the image's user (blue, uid 1000) is missing.
        user: bool,
    },
    /// A mirror of another release than the build's.
    #[error(
        "ASSEMBLE_DEBIAN_MIRROR names suite {suites}, but this build is from Debian {release} \
         (the release of --python, or assemble.toml's debian): give a mirror of {release}, or \
         the Python of the mirror's release"
    )]
    MirrorSuite {
        /// The build's release.
        release: String,
        /// The mirror's other suites.
        suites: String,
    },
    /// A Debian release layers/releases does not know.
    #[error("assemble.toml names Debian release {asked:?}, which assemble does not build from; on offer: {offer}")]
    UnknownRelease {
        /// What was named.
        asked: String,
        /// The releases known, with their Python.
        offer: String,
    },
    /// A Python no known release ships.
    #[error("no Debian release assemble builds from ships Python {python}; on offer: {offer}")]
    NoRelease {
        /// The version asked for.
        python: String,
        /// The releases known, with their Python.
        offer: String,
    },
    /// A release and a Python that do not go together.
    #[error(
        "Debian {release} ships Python {ships}, not {asked}: drop one of assemble.toml's \
         `debian` and `python` (or --python)"
    )]
    ReleasePython {
        /// The release named.
        release: String,
        /// Its Python.
        ships: String,
        /// The Python asked for.
        asked: String,
    },
    /// The interpreter asked for is not in the base.
    #[error("the base has no python{wanted} (it has: {found}); pick one of those with --python, or use a base that has python{wanted}")]
    NoPython {
        /// What was asked for.
        wanted: String,
        /// What there is.
        found: String,
    },
    /// The compiler rootfs lacks the base's interpreter.
    #[error("the compiler rootfs cannot build for the base")]
    CompilerMismatch(#[source] Box<RootfsError>),
    /// apt in the base, making the compiler, failed.
    #[error(
        "cannot {what}: apt-get in it failed ({status}); it runs as root of a user namespace \
         over your subordinate ids, which needs an entry for you (root too) in /etc/subuid and \
         /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER) \
         and the base's apt sources within reach; {instead}. Its last lines:\n    {tail}"
    )]
    Derive {
        /// What was being made.
        what: &'static str,
        /// What to do instead.
        instead: String,
        /// Exit status.
        status: String,
        /// Last lines of its output.
        tail: String,
    },
    /// A compiler without the base's interpreter.
    #[error(
        "the compiler {compiler} has no {python}, the base's interpreter (it has: {found}): \
         wheels compiled there would not install in the base; give a compiler with that \
         interpreter at that path (--compiler)"
    )]
    CompilerPython {
        /// The compiler as named.
        compiler: String,
        /// The base's interpreter (its path).
        python: String,
        /// What the compiler has.
        found: String,
    },
    /// An interpreter that is not Debian's, and no compiler made from the
    /// base nor given.
    #[error(
        "the base's interpreter {python} is not Debian's, so only a compiler made from the base \
         (or given) has it, and none can be made here: {why}; give one with --compiler (an \
         image with the same interpreter at the same path, e.g. the full `python` image of a \
         `-slim` base)"
    )]
    NoCompilerFor {
        /// The interpreter's path.
        python: String,
        /// Why no compiler is made from the base.
        why: String,
    },
    /// A compiler on another C library than the base's, or a newer glibc.
    #[error(
        "the compiler {compiler} is built on {theirs}, the base on {ours}: what it compiles could \
         fail to load in the base; give a compiler of the base's distribution and release \
         (--compiler)"
    )]
    CompilerLibc {
        /// The compiler as named.
        compiler: String,
        /// The compiler's C library.
        theirs: String,
        /// The base's.
        ours: String,
    },
    /// Unpacking a layer failed.
    #[error("cannot unpack a layer of {source_name}")]
    Unpack {
        /// The base named.
        source_name: String,
        #[source]
        source: UnpackError,
    },
    /// A given base's file cannot be read.
    #[error("cannot use base {source_name}: cannot read it")]
    ReadBase {
        /// What the user named.
        source_name: String,
        #[source]
        source: io::Error,
    },
    /// A given base's image cannot be read.
    #[error("cannot use base {source_name}")]
    UnusableBase {
        /// What the user named.
        source_name: String,
        #[source]
        source: ImageError,
    },
    /// A base layer's media type cannot be read.
    #[error("cannot use base {source_name}: its layer {digest} cannot be read")]
    Layer {
        /// What the user named.
        source_name: String,
        /// The layer.
        digest: Digest,
        #[source]
        source: io::Error,
    },
    /// mmdebstrap could not be run.
    #[error(transparent)]
    Run(#[from] SandboxError),
    /// Writing a layer failed.
    #[error(transparent)]
    WriteLayer(#[from] LayerError),
    /// Blob store failure.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Cache failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Other file failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RootfsError {
    /// True when the user's input or machine setup is at fault (exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RootfsError::NoMmdebstrap { .. }
            | RootfsError::NoMmdebstrapMode { .. }
            | RootfsError::BadMirror { .. }
            | RootfsError::LockedPackagesGone { .. }
            | RootfsError::BadBase { .. }
            | RootfsError::NoPython { .. }
            | RootfsError::UnknownRelease { .. }
            | RootfsError::MirrorSuite { .. }
            | RootfsError::NoRelease { .. }
            | RootfsError::ReleasePython { .. }
            | RootfsError::MuslBase { .. }
            | RootfsError::BaseLacks { .. }
            | RootfsError::CompilerMismatch(_)
            | RootfsError::CompilerPython { .. }
            | RootfsError::NoCompilerFor { .. }
            | RootfsError::CompilerLibc { .. }
            | RootfsError::ReadBase { .. }
            | RootfsError::UnusableBase { .. }
            | RootfsError::Layer { .. } => true,
            RootfsError::Unpack { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}

/// A file error naming its path.
pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lacks_text(missing: &[String], packages: &[String], apt: bool, user: bool) -> String {
    let mut text = missing.join(", ");
    if !packages.is_empty() {
        text.push_str(&format!(
            "; its Debian packages are {}: add them to the base{}",
            packages.join(" "),
            if apt {
                " (apt-get install)"
            } else {
                " (it has no apt: is it Debian-based?)"
            }
        ));
    }
    if user {
        text.push_str(
            "; make the user as layers/base/setup.sh does (useradd --uid 1000 --gid 33 \
             --create-home --home-dir /home/blue --shell /bin/bash blue)",
        );
    }
    text.push_str("; or leave --base unset to build the base from layers/base");
    text
}
