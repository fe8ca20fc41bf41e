//! Lock files: what a build resolved, written as a PEP 751 `pylock.toml`
//! (`--lock FILE`), and read back to build exactly that set (`--locked
//! FILE`) with every file's sha256 required. What PEP 751 has no place for
//! (the requirement, the interpreter, the wheels compiled from sdists) is
//! in the `[tool.assemble]` table, which other readers keep and ignore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::resolve::{Resolution, Resolved};
use super::ResolvedBuild;
use crate::spec::{normalise_name, valid_name};

/// The lock format this version writes (`lock-version`).
const LOCK_VERSION: &str = "1.0";
/// The version of the `[tool.assemble]` table.
const TOOL_FORMAT: u32 = 1;

/// A lock file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file cannot be read.
    #[error("cannot read the lock file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, or not a PEP 751 lock.
    #[error("{path} is not a usable pylock.toml: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the package or key.
        why: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PyLock {
    lock_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requires_python: Option<String>,
    created_by: String,
    #[serde(default)]
    packages: Vec<Package>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool: Option<Tool>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    marker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vcs: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    directory: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sdist: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    wheels: Vec<FileRef>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct FileRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Tool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assemble: Option<AssembleTable>,
}

/// `[tool.assemble]`.
#[derive(serde::Serialize, serde::Deserialize)]
struct AssembleTable {
    format: u32,
    /// The requirement as given.
    requirement: String,
    /// The project (the requested distribution).
    project: String,
    /// `X.Y`.
    python: String,
    /// The wheel installed for each distribution (compiled for sdists).
    #[serde(default)]
    wheels: Vec<InstalledWheel>,
    /// The Debian side, as the build recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    debian: Option<LockedDebian>,
    /// An offline store's own record (`assemble vendor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<toml::Value>,
}

/// `[tool.assemble.debian]`: what the base and the compiler were built
/// from (each suite's `InRelease`, the epoch, every package with its
/// version and the sha256 of its .deb), for a `--locked` build to rebuild
/// them at exactly those versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedDebian {
    /// The base's record (none for a given base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::rootfs::DebianRecord>,
    /// The compiler's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler: Option<crate::rootfs::DebianRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct InstalledWheel {
    name: String,
    version: String,
    /// sha256 of the file resolved (the sdist or wheel from the index).
    input: String,
    /// The wheel installed.
    wheel: String,
    /// Its sha256.
    sha256: String,
}

/// What a lock file says to build.
#[derive(Clone, Debug)]
pub struct Locked {
    /// The lock file.
    pub path: PathBuf,
    /// The set, its project marked requested.
    pub resolution: Resolution,
    /// The project's name (normalised).
    pub project: String,
    /// The interpreter it was resolved for, when the lock says.
    pub python: Option<String>,
    /// The project is locked as its directory: its wheel is built from it.
    pub local_project: bool,
    /// The Debian side, when the lock has it (one of ours).
    pub debian: Option<LockedDebian>,
}

/// The `platform_machine` of this host, as Python names it.
fn platform_machine() -> &'static str {
    std::env::consts::ARCH
}

/// The lock of a build: the resolved set as `[[packages]]` (the file each
/// came from, with its sha256), the rest in `[tool.assemble]`. `debian` is
/// the Debian side's record, when the build has one.
pub fn render(
    requirement: &str,
    python: &str,
    build: &ResolvedBuild,
    debian: Option<&LockedDebian>,
) -> String {
    let project = build
        .resolution
        .project()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let packages = build
        .wheels
        .iter()
        .map(|w| {
            let p = &w.resolved;
            let file = FileRef {
                name: Some(p.file.clone()),
                url: (!p.url.starts_with("file:")).then(|| p.url.clone()),
                path: p
                    .url
                    .starts_with("file:")
                    .then(|| w.path.display().to_string()),
                hashes: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
            };
            let (sdist, wheels) = if p.is_wheel() {
                (None, vec![file])
            } else {
                (Some(file), Vec::new())
            };
            Package {
                name: p.name.clone(),
                version: Some(p.version.clone()),
                marker: None,
                vcs: None,
                directory: None,
                archive: None,
                sdist,
                wheels,
            }
        })
        .collect();
    let table = AssembleTable {
        format: TOOL_FORMAT,
        requirement: requirement.to_string(),
        project,
        python: python.to_string(),
        wheels: build
            .wheels
            .iter()
            .map(|w| InstalledWheel {
                name: w.resolved.name.clone(),
                version: w.resolved.version.clone(),
                input: w.resolved.sha256.clone(),
                wheel: w.wheel.clone(),
                sha256: w.wheel_sha256.clone(),
            })
            .collect(),
        debian: debian
            .filter(|d| d.base.is_some() || d.compiler.is_some())
            .cloned(),
        store: None,
    };
    document(
        "# Written by assemble (--lock): the exact set of this build, PEP 751.\n\
         # Build it again with `assemble --locked THIS_FILE`.\n",
        python,
        packages,
        table,
    )
}

/// The lock of an offline store (`assemble vendor`): a PEP 751 lock whose
/// packages are the store's wheels (`path = "wheels/FILE"`, relative to
/// the store), so that `--locked STORE/pylock.toml` builds them online too,
/// and the store's own record in `[tool.assemble.store]`.
pub fn render_store<T: serde::Serialize>(
    requirement: &str,
    python: &str,
    project: &str,
    wheels: &BTreeMap<String, String>,
    store: &T,
) -> String {
    let packages = wheels
        .iter()
        .filter_map(|(file, sha)| {
            let (name, version) = crate::spec::wheel_name_version(Path::new(file))?;
            Some(Package {
                name: normalise_name(&name),
                version: Some(version),
                marker: None,
                vcs: None,
                directory: None,
                archive: None,
                sdist: None,
                wheels: vec![FileRef {
                    name: Some(file.clone()),
                    url: None,
                    path: Some(format!("wheels/{file}")),
                    hashes: BTreeMap::from([("sha256".to_string(), sha.clone())]),
                }],
            })
        })
        .collect();
    let table = AssembleTable {
        format: TOOL_FORMAT,
        requirement: requirement.to_string(),
        project: normalise_name(project),
        python: python.to_string(),
        wheels: Vec::new(),
        debian: None,
        store: Some(toml::Value::try_from(store).expect("the store's record serialises")),
    };
    document(
        "# Written by `assemble vendor`: the offline store's wheels, PEP 751, and\n\
         # the store's record. `assemble --offline` builds from it; so does\n\
         # `assemble --locked THIS_FILE` with the network.\n",
        python,
        packages,
        table,
    )
}

/// A lock's text: the comment `header`, then the PEP 751 document for
/// Linux on this machine and `python`, with `table` as `[tool.assemble]`.
fn document(header: &str, python: &str, packages: Vec<Package>, table: AssembleTable) -> String {
    let lock = PyLock {
        lock_version: LOCK_VERSION.into(),
        environments: vec![format!(
            "sys_platform == 'linux' and platform_machine == '{}' and python_version == '{python}'",
            platform_machine()
        )],
        requires_python: Some(format!("=={python}.*")),
        created_by: "assemble".into(),
        packages,
        tool: Some(Tool {
            assemble: Some(table),
        }),
    };
    let mut text = header.to_string();
    text.push_str(&toml::to_string(&lock).expect("a lock serialises"));
    text
}

/// The store's record in the lock of an offline store.
pub fn read_store<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let lock: PyLock = toml::from_str(text).map_err(|e| e.message().to_string())?;
    lock.tool
        .and_then(|t| t.assemble)
        .and_then(|a| a.store)
        .ok_or_else(|| "it has no [tool.assemble.store] table".to_string())?
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// Reads a PEP 751 lock to build from: one file per package (a wheel for
/// this platform and interpreter when the lock offers one, else the sdist),
/// each with its sha256. `project` names the requested distribution when
/// the lock's `[tool.assemble]` does not.
pub fn read(path: &Path, project: Option<&str>, python: Option<&str>) -> Result<Locked, LockError> {
    let text = fs_err::read_to_string(path).map_err(|source| LockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |why: String| LockError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    let lock: PyLock = toml::from_str(&text).map_err(|e| invalid(e.message().to_string()))?;
    if !lock.lock_version.starts_with("1.") && lock.lock_version != "1" {
        return Err(invalid(format!(
            "lock-version {} (this assemble reads 1.x)",
            lock.lock_version
        )));
    }
    let table = lock.tool.as_ref().and_then(|t| t.assemble.as_ref());
    if let Some(t) = table {
        if t.format > TOOL_FORMAT {
            return Err(invalid(format!(
                "[tool.assemble] format {} is newer than this assemble's ({TOOL_FORMAT})",
                t.format
            )));
        }
    }
    // pip lock . writes the project as the package whose directory is ".".
    let here = lock
        .packages
        .iter()
        .filter(|p| {
            p.directory
                .as_ref()
                .and_then(|d| d.get("path"))
                .and_then(|v| v.as_str())
                .is_some_and(|d| d == "." || d == "./")
        })
        .map(|p| normalise_name(&p.name))
        .next();
    let project = table
        .map(|t| t.project.clone())
        .or_else(|| project.map(normalise_name))
        .or(here)
        .ok_or_else(|| {
            invalid("it does not say which package is the project: name it on the command line (NAME==VERSION)".into())
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut packages = Vec::new();
    let mut local_project = false;
    for (i, p) in lock.packages.iter().enumerate() {
        let at = format!("packages[{i}] ({})", p.name);
        if !valid_name(&p.name) || normalise_name(&p.name) != p.name {
            return Err(invalid(format!(
                "{at}: the name must be normalised (PEP 503)"
            )));
        }
        if p.directory.is_some() && normalise_name(&p.name) == project {
            // The project itself, locked from its directory (`pip lock .`):
            // the build makes its wheel from the directory.
            local_project = true;
            continue;
        }
        // An archive that is a wheel or sdist file (uv locks a wheel given
        // by its path so) stands for the package's one file.
        let archive: Option<FileRef> = p
            .archive
            .clone()
            .and_then(|a| a.try_into::<FileRef>().ok())
            .filter(|f| {
                let name = f
                    .url
                    .as_deref()
                    .or(f.path.as_deref())
                    .map(last_segment)
                    .unwrap_or_default();
                name.ends_with(".whl") || super::resolve::is_sdist(&name)
            });
        if p.vcs.is_some() || p.directory.is_some() || (p.archive.is_some() && archive.is_none()) {
            return Err(invalid(format!(
                "{at}: VCS, directory and archive packages cannot be built from a lock by assemble; lock them as wheels or sdists"
            )));
        }
        let version = p
            .version
            .clone()
            .ok_or_else(|| invalid(format!("{at}: no version")))?;
        let file = archive
            .as_ref()
            .or_else(|| choose_file(p, python))
            .ok_or_else(|| {
                invalid(format!(
                    "{at}: no wheel for Linux and Python {}, and no sdist",
                    python.unwrap_or("3")
                ))
            })?;
        let sha256 = file
            .hashes
            .get("sha256")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| invalid(format!("{at}: no sha256 among its hashes")))?
            .to_ascii_lowercase();
        let (url, name) = match (&file.url, &file.path) {
            (Some(u), _) => (
                crate::output::strip_credentials(u),
                file.name.clone().unwrap_or_else(|| last_segment(u)),
            ),
            (None, Some(local)) => {
                let full = base.join(local);
                (
                    format!("file://{}", full.display()),
                    file.name.clone().unwrap_or_else(|| last_segment(local)),
                )
            }
            (None, None) => return Err(invalid(format!("{at}: its file has no url and no path"))),
        };
        packages.push(Resolved {
            requested: p.name == project,
            name: p.name.clone(),
            version,
            file: name,
            url,
            sha256,
        });
    }
    if !local_project && !packages.iter().any(|p| p.requested) {
        return Err(invalid(format!(
            "the project {project} is not among its packages"
        )));
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Locked {
        path: path.to_path_buf(),
        resolution: Resolution {
            packages,
            pages: Vec::new(),
        },
        project,
        python: table.map(|t| t.python.clone()),
        local_project,
        debian: table.and_then(|t| t.debian.clone()),
    })
}

fn last_segment(s: &str) -> String {
    s.split(['#', '?'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
}

/// A file's name: its `name`, else the last segment of its URL or path.
fn file_name(w: &FileRef) -> String {
    w.name
        .clone()
        .or_else(|| w.url.as_deref().map(last_segment))
        .or_else(|| w.path.as_deref().map(last_segment))
        .unwrap_or_default()
}

/// The package's file for Linux on this machine and `python` (`X.Y`; None:
/// any CPython 3): a pure or matching wheel, else the sdist.
fn choose_file<'a>(p: &'a Package, python: Option<&str>) -> Option<&'a FileRef> {
    let minor = |t: &str| t.strip_prefix("cp3").and_then(|m| m.parse::<u32>().ok());
    let wanted = python
        .and_then(|v| v.strip_prefix("3."))
        .and_then(|m| m.parse::<u32>().ok());
    let cp_ok = |t: &str| match (minor(t), wanted) {
        (Some(m), Some(w)) => m == w,
        (Some(_), None) => true,
        (None, _) => false,
    };
    // An abi3 wheel tagged cp3X serves every CPython 3.Y with Y >= X.
    let abi3_ok = |t: &str| match (minor(t), wanted) {
        (Some(m), Some(w)) => m <= w,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let machine = platform_machine();
    // Among the wheels that fit, the most specific, as pip ranks them: the
    // interpreter's own ABI before abi3 before none, a Linux build before
    // `any`; the first listed among equals.
    let rank = |w: &FileRef| -> (u8, u8) {
        let name = file_name(w);
        let stem = name.strip_suffix(".whl").unwrap_or_default();
        let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
        let (platform, abi) = (
            parts.first().copied().unwrap_or(""),
            parts.get(1).copied().unwrap_or(""),
        );
        let abi_rank = match abi {
            "none" => 0,
            "abi3" => 1,
            _ => 2,
        };
        (abi_rank, u8::from(platform != "any"))
    };
    let fits: Vec<&FileRef> = p
        .wheels
        .iter()
        .filter(|w| {
            let name = file_name(w);
            let Some(stem) = name.strip_suffix(".whl") else {
                return false;
            };
            let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
            let [platform, abi, py, ..] = parts[..] else {
                return false;
            };
            let py_ok = py
                .split('.')
                .any(|t| t == "py3" || cp_ok(t) || (abi == "abi3" && abi3_ok(t)));
            let abi_ok = abi == "none" || abi == "abi3" || abi.split('.').any(cp_ok);
            let platform_ok = platform == "any"
                || platform.split('.').any(|t| {
                    (t.contains("linux") && !t.starts_with("musl")) && t.ends_with(machine)
                });
            py_ok && abi_ok && platform_ok
        })
        .collect();
    let best = fits.iter().map(|w| rank(w)).max();
    fits.into_iter()
        .find(|w| Some(rank(w)) == best)
        .or(p.sdist.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::{resolve, BuiltWheel};

    fn built() -> ResolvedBuild {
        let p = |name: &str, version: &str, file: &str, requested| resolve::Resolved {
            name: name.into(),
            version: version.into(),
            file: file.into(),
            url: format!("http://127.0.0.1:1/packages/{file}"),
            sha256: format!("{:0>64}", name.len()),
            requested,
        };
        let django = p("django", "4.2.30", "django-4.2.30-py3-none-any.whl", false);
        let app = p("milborne", "0.4.0", "milborne-0.4.0.tar.gz", true);
        let wheel = |r: &resolve::Resolved, file: &str| BuiltWheel {
            resolved: r.clone(),
            wheel: file.into(),
            wheel_sha256: "c".repeat(64),
            path: PathBuf::from("/cache").join(file),
            key: None,
        };
        ResolvedBuild {
            resolution: resolve::Resolution {
                packages: vec![django.clone(), app.clone()],
                pages: Vec::new(),
            },
            decided: resolve::Decided::Resolved,
            changes: Vec::new(),
            wheels: vec![
                wheel(&django, "django-4.2.30-py3-none-any.whl"),
                wheel(&app, "milborne-0.4.0-cp311-cp311-linux_x86_64.whl"),
            ],
        }
    }

    #[test]
    fn a_written_lock_reads_back_as_the_same_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pylock.toml");
        let b = built();
        std::fs::write(&path, render("milborne==0.4.0", "3.11", &b, None)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("lock-version = \"1.0\""), "{text}");
        assert!(text.contains("created-by = \"assemble\""), "{text}");
        let locked = read(&path, None, Some("3.11")).unwrap();
        assert_eq!(locked.project, "milborne");
        assert_eq!(locked.python.as_deref(), Some("3.11"));
        assert_eq!(locked.resolution.packages, b.resolution.packages);
    }

    #[test]
    fn a_lock_without_hashes_or_with_a_vcs_package_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pylock.toml");
        let head = "lock-version = \"1.0\"\ncreated-by = \"x\"\n";
        std::fs::write(
            &path,
            format!("{head}[[packages]]\nname = \"six\"\nversion = \"1.16.0\"\nwheels = [{{ url = \"http://127.0.0.1:1/six-1.16.0-py2.py3-none-any.whl\", hashes = {{ md5 = \"00\" }} }}]\n"),
        )
        .unwrap();
        let err = read(&path, Some("six"), Some("3.11"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("packages[0] (six): no sha256"), "{err}");
        std::fs::write(
            &path,
            format!("{head}[[packages]]\nname = \"six\"\nvcs = {{ type = \"git\", url = \"x\", commit-id = \"0\" }}\n"),
        )
        .unwrap();
        let err = read(&path, Some("six"), Some("3.11"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("VCS, directory and archive"), "{err}");
        std::fs::write(&path, "lock-version = \"2.0\"\ncreated-by = \"x\"\n").unwrap();
        let err = read(&path, Some("six"), Some("3.11"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lock-version 2.0"), "{err}");
    }

    #[test]
    fn the_wheel_for_this_platform_is_chosen_else_the_sdist() {
        let f = |name: &str| FileRef {
            name: Some(name.into()),
            url: Some(format!("http://x/{name}")),
            path: None,
            hashes: BTreeMap::new(),
        };
        let machine = platform_machine();
        let p = Package {
            name: "x".into(),
            version: Some("1".into()),
            marker: None,
            vcs: None,
            directory: None,
            archive: None,
            sdist: Some(f("x-1.tar.gz")),
            wheels: vec![
                f("x-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
                f("x-1-cp311-cp311-win_amd64.whl"),
                f(&format!("x-1-cp311-cp311-manylinux_2_17_{machine}.whl")),
            ],
        };
        assert_eq!(
            choose_file(&p, Some("3.11")).unwrap().name.as_deref(),
            Some(format!("x-1-cp311-cp311-manylinux_2_17_{machine}.whl").as_str())
        );
        assert_eq!(
            choose_file(&p, Some("3.13")).unwrap().name.as_deref(),
            Some("x-1.tar.gz")
        );
        let abi3 = Package {
            sdist: None,
            wheels: vec![f(&format!("x-1-cp39-abi3-manylinux_2_28_{machine}.whl"))],
            ..p
        };
        assert!(
            choose_file(&abi3, Some("3.11")).is_some(),
            "abi3 cp39 serves 3.11"
        );
        assert!(choose_file(&abi3, Some("3.8")).is_none(), "but not 3.8");
        // uv lists every wheel by name: the interpreter's own ABI wins over
        // abi3, which wins over a pure wheel.
        let many = Package {
            wheels: vec![
                f(&format!("x-1-cp310-abi3-manylinux_2_17_{machine}.whl")),
                f("x-1-py3-none-any.whl"),
                f(&format!("x-1-cp311-cp311-manylinux_2_17_{machine}.whl")),
            ],
            ..abi3
        };
        assert_eq!(
            choose_file(&many, Some("3.11")).unwrap().name.as_deref(),
            Some(format!("x-1-cp311-cp311-manylinux_2_17_{machine}.whl").as_str())
        );
        assert_eq!(
            choose_file(&many, Some("3.13")).unwrap().name.as_deref(),
            Some(format!("x-1-cp310-abi3-manylinux_2_17_{machine}.whl").as_str())
        );
    }
}
