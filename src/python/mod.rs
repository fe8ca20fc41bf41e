//! Python stages: compile the wheelhouse in the compiler rootfs
//! ([`compile`](mod@compile)), install it into a venv at `/home/blue/app` inside the base
//! rootfs ([`install`](mod@install)), and split the venv into layers by the
//! distribution that owns each file ([`split`]). [`wheel`] reads the wheels
//! themselves. This module owns what they share: the error, the context of
//! a run, the wheelhouse and the environment of every sandboxed pip run.

use std::path::{Path, PathBuf};

use crate::cache::{Cache, CacheError};
use crate::image::layer::{self, LayerError};
use crate::output::Printer;
use crate::sandbox::{Runner, SandboxError};

pub mod compile;
pub mod index;
pub mod install;
pub mod lock;
pub mod resolve;
pub mod split;
pub mod uv;
pub mod wheel;

pub use compile::{compile, wheelhouse_from_store};
pub use install::{install, VenvLayers};
pub use split::{split_venv, Installed, Split};

/// Failure of a Python stage.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// uv, pip or the venv failed in the sandbox.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The wheelhouse does not hold what was asked for.
    #[error("{0}")]
    Wheelhouse(String),
    /// The resolution cannot be used.
    #[error("{0}")]
    Resolve(String),
    /// A requirements file or the set asked for cannot be used as given
    /// (an include outside its directory, a project not in the set).
    #[error("{0}")]
    Requirements(String),
    /// Files whose sha256 is not the one required, or requirements without one.
    #[error("{source_name}: files on the index do not match the required hashes:\n    {detail}")]
    HashesRefused {
        /// The lock or requirements file the hashes come from.
        source_name: String,
        /// The lines naming each package, its expected and actual hash.
        detail: String,
    },
    /// A lock file cannot be used.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// An index page could not be read.
    #[error(transparent)]
    Index(#[from] index::PageError),
    /// A file is not what its hash says.
    #[error("{what}: expected sha256 {expected}, got {got}")]
    HashMismatch {
        /// The file and where it comes from.
        what: String,
        /// The hash recorded or given.
        expected: String,
        /// The file's.
        got: String,
    },
    /// A wheel in the wheelhouse cannot be read as a zip.
    #[error("{wheel} is not a readable wheel (zip)")]
    UnreadableWheel {
        /// The wheel's file name.
        wheel: String,
        #[source]
        source: wheel::WheelError,
    },
    /// A wheel would write outside the venv.
    #[error("refusing wheel {wheel}: its entry {entry:?} points outside the virtualenv")]
    HostileWheel {
        /// The wheel file.
        wheel: String,
        /// The member or RECORD entry.
        entry: String,
    },
    /// A wheel given as the requirement is not a readable wheel.
    #[error("{path} is not a usable wheel; build it again (or download it again) and retry")]
    BadWheel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: wheel::WheelError,
    },
    /// A tool assemble runs (uv) cannot be had.
    #[error("{0}")]
    Tool(String),
    /// Files could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Cache failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Layer writing failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

impl PythonError {
    /// True when the input is at fault (a damaged or hostile wheel) or the
    /// machine lacks what the sandbox needs: exit 2 rather than 1.
    pub fn is_bad_input(&self) -> bool {
        match self {
            PythonError::HostileWheel { .. }
            | PythonError::BadWheel { .. }
            | PythonError::HashMismatch { .. }
            | PythonError::HashesRefused { .. }
            | PythonError::Requirements(_)
            | PythonError::Lock(_) => true,
            PythonError::Sandbox(e) => e.is_bad_input(),
            PythonError::Wheelhouse(_)
            | PythonError::Resolve(_)
            | PythonError::Index(_)
            | PythonError::UnreadableWheel { .. }
            | PythonError::Tool(_)
            | PythonError::Io { .. }
            | PythonError::Cache(_)
            | PythonError::Layer(_) => false,
        }
    }
}

/// The indexes of `pip`, credentials redacted, as the sandbox plans name
/// them: ` (index URL, URL)` or ` (pip's default index)`.
fn index_label(pip: &crate::spec::PipSettings) -> String {
    let indexes: Vec<String> = pip
        .indexes()
        .map(|u| crate::output::redact_url(u))
        .collect();
    if indexes.is_empty() {
        " (the default index)".into()
    } else {
        format!(" (index {})", indexes.join(", "))
    }
}

/// `s` as one shell word (single-quoted).
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PythonError + '_ {
    move |source| PythonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The project's own wheel in a wheelhouse.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectWheel {
    /// Name as in the wheel's file name.
    pub name: String,
    /// Version.
    pub version: String,
    /// File name in the wheelhouse.
    pub file: String,
}

/// A compiled wheelhouse.
#[derive(Clone, Debug)]
pub struct Wheelhouse {
    /// Cache key.
    pub key: String,
    /// Directory of wheels.
    pub dir: PathBuf,
    /// The project's wheel.
    pub project: ProjectWheel,
    /// How its set was decided and which wheels it holds (None for a
    /// wheelhouse from the offline store).
    pub resolved: Option<ResolvedBuild>,
}

/// The resolved set of a build and the wheel made of each distribution.
#[derive(Clone, Debug)]
pub struct ResolvedBuild {
    /// The set, with the index pages it was read from.
    pub resolution: resolve::Resolution,
    /// How it was decided.
    pub decided: resolve::Decided,
    /// What changed from the recorded set.
    pub changes: Vec<resolve::Change>,
    /// The wheel of each distribution, in the set's order.
    pub wheels: Vec<BuiltWheel>,
}

/// A distribution of the set and the wheel installed for it.
#[derive(Clone, Debug)]
pub struct BuiltWheel {
    /// The distribution.
    pub resolved: resolve::Resolved,
    /// The wheel's file name.
    pub wheel: String,
    /// Its sha256.
    pub wheel_sha256: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its cache key (None for the project's local wheel).
    pub key: Option<String>,
}

impl BuiltWheel {
    /// The wheel at `path` for `resolved`; a wheel taken from an index as it
    /// is must have the sha256 the resolution names.
    pub fn at(
        resolved: &resolve::Resolved,
        path: &Path,
        key: Option<String>,
    ) -> Result<Self, PythonError> {
        let (d, _) = crate::digest::digest_file(path).map_err(io_err(path))?;
        let wheel = path
            .file_name()
            .expect("a wheel has a file name")
            .to_string_lossy()
            .into_owned();
        if resolved.is_wheel() && d.hex() != resolved.sha256 {
            return Err(PythonError::HashMismatch {
                what: format!("{} ({})", resolved.file, resolved.url),
                expected: resolved.sha256.clone(),
                got: d.hex().to_string(),
            });
        }
        Ok(Self {
            resolved: resolved.clone(),
            wheel,
            wheel_sha256: d.hex().to_string(),
            path: path.to_path_buf(),
            key,
        })
    }
}

/// Settings shared by the sandboxed pip runs.
pub struct PythonContext<'a> {
    /// The cache.
    pub cache: &'a Cache,
    /// Sandbox runner.
    pub runner: &'a dyn Runner,
    /// Progress output.
    pub printer: &'a Printer,
    /// `X.Y`.
    pub python: String,
    /// The interpreter's path in the base and the compiler
    /// (`/usr/bin/python3.11`): what every command runs.
    pub interpreter: String,
    /// What the image's runtime adds to the project's requirements: uWSGI
    /// when the interpreter is not Debian's (whose uWSGI plugin serves
    /// Debian's only).
    pub runtime_requirements: Vec<String>,
    /// SOURCE_DATE_EPOCH.
    pub epoch: u64,
    /// Ignore cached wheelhouses and layers.
    pub rebuild: bool,
    /// Compression of the layers built.
    pub compression: layer::Compression,
    /// Without isolation, the key of the machine whose interpreter makes
    /// the venv in the base's stead (its patch version, its files): the
    /// venv's layers are keyed apart from a sandbox's.
    pub unconfined: Option<String>,
}

impl PythonContext<'_> {
    /// The interpreter, for the cache keys of what it makes, when it is
    /// not Debian's `/usr/bin/pythonX.Y` (whose keys name the version
    /// only, as before interpreters had a path).
    pub fn interpreter_key(&self) -> Option<&str> {
        (self.interpreter != format!("/usr/bin/python{}", self.python))
            .then_some(self.interpreter.as_str())
    }
}

fn base_env(ctx: &PythonContext) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("PYTHONHASHSEED", "0"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PIP_CONFIG_FILE", "/dev/null"),
        ("PIP_NO_INPUT", "1"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_PROGRESS_BAR", "off"),
        ("PIP_ROOT_USER_ACTION", "ignore"),
        // No debug information: it embeds pip's random build directory and
        // would make compiled extensions differ from one build to the next.
        ("CFLAGS", "-g0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .map(|(k, v)| match k.as_str() {
        // An interpreter found elsewhere: its directory first, so that a
        // build backend running `python3` or `pythonX.Y-config` by name
        // gets it.
        "PATH" => {
            let dir = ctx.interpreter.rsplit_once('/').map_or("", |(d, _)| d);
            let known = dir.is_empty() || v.split(':').any(|d| d == dir);
            (k, if known { v } else { format!("{dir}:{v}") })
        }
        _ => (k, v),
    })
    .chain([("SOURCE_DATE_EPOCH".to_string(), ctx.epoch.to_string())])
    .collect()
}

/// Reads a whole wheel before it is used (see [`wheel::check`]). A truncated
/// or corrupt file is bad input, found before any work starts rather than by
/// pip halfway through a build.
pub fn check_wheel(path: &Path) -> Result<(), PythonError> {
    let data = fs_err::read(path).map_err(io_err(path))?;
    wheel::check(&data).map_err(|source| PythonError::BadWheel {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wheel::tests::zip_with;

    /// The message and every cause, as the command line prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!("\ncaused by: {s}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn a_complete_wheel_passes_and_a_damaged_one_is_refused() {
        let f = zip_with(&[
            "a/__init__.py",
            "a-1.0.dist-info/WHEEL",
            "a-1.0.dist-info/RECORD",
        ]);
        check_wheel(f.path()).unwrap();
        let good = std::fs::read(f.path()).unwrap();
        let cut = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cut.path(), &good[..good.len() - 30]).unwrap();
        assert!(matches!(
            check_wheel(cut.path()),
            Err(PythonError::BadWheel { .. })
        ));
        // The first member's one stored byte ('x'), flipped.
        let mut bad = good.clone();
        let at = 30 + "a/__init__.py".len();
        assert_eq!(bad[at], b'x');
        bad[at] = b'y';
        std::fs::write(cut.path(), &bad).unwrap();
        let e = chain(&check_wheel(cut.path()).unwrap_err());
        assert!(e.contains("a/__init__.py is corrupt"), "{e}");
        let f = zip_with(&["a/__init__.py"]);
        let e = chain(&check_wheel(f.path()).unwrap_err());
        assert!(e.contains("no .dist-info/WHEEL"), "{e}");
    }
}
