//! What to build: the requirement, `assemble.toml`, and the pip settings that
//! reach the compile sandbox. Command line beats file beats defaults.
//!
//! This module owns the requirement and the names of distributions;
//! `config` reads `assemble.toml`, `pip` the pip settings.

mod config;
mod pip;

use std::path::{Path, PathBuf};

pub use config::{check_python, valid_service, Dependencies, ProjectConfig};
pub use pip::PipSettings;

/// A requirement, a configuration file or a pip setting is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The requirement is in none of the accepted forms.
    #[error(
        "cannot understand requirement {given:?}: {why}.\nAccepted forms: NAME==VERSION or NAME===VERSION \
         (with optional [EXTRA,...] after NAME), a path to a .whl file (optionally followed by [EXTRA,...]), \
         or a local project directory containing pyproject.toml or setup.py"
    )]
    Requirement {
        /// What the user typed.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// A file named on the command line or in the configuration is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `assemble.toml` is not valid.
    #[error("invalid configuration file {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A setting has a value that cannot work.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The setting.
        what: String,
        /// Why.
        why: String,
    },
}

impl SpecError {
    /// Always: the requirement, configuration and pip settings are the
    /// user's input (exit 2).
    pub fn is_bad_input(&self) -> bool {
        true
    }
}

/// Where the application comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A pinned release from the package index.
    Index {
        /// The version, as written.
        version: String,
        /// `==` or `===`.
        operator: String,
    },
    /// A built wheel on disk.
    Wheel(PathBuf),
    /// A project directory to build a wheel from.
    Directory(PathBuf),
    /// A pip requirements file (`-r FILE`), its project named by `--name` or
    /// by its first named requirement.
    Requirements(PathBuf),
    /// A PEP 751 lock file (`pylock.toml`, `pylock.NAME.toml`) given as the
    /// requirement: built as `--locked FILE`.
    Lock(PathBuf),
}

/// True for the file names PEP 751 gives lock files.
pub fn is_lock_file_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "pylock.toml"
        || (name.starts_with("pylock.") && name.ends_with(".toml") && name.len() > 12)
}

/// The first named requirement of a requirements file: its project. Option
/// lines (`-r`, `--hash`…), comments, URLs and paths are skipped.
pub fn first_requirement_name(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .find_map(|l| {
            let end = l
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                .unwrap_or(l.len());
            let name = &l[..end];
            (valid_name(name) && !l.contains("://")).then(|| name.to_string())
        })
}

impl Requirement {
    /// The requirement of `-r FILE`: the project is `name`, else the file's
    /// first named requirement.
    pub fn from_requirements_file(file: &Path, name: Option<&str>) -> Result<Self, SpecError> {
        let err = |why: String| SpecError::Requirement {
            given: format!("-r {}", file.display()),
            why,
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| err(format!("the file cannot be read ({e})")))?;
        let name = match name {
            Some(n) if valid_name(n) => n.to_string(),
            Some(n) => return Err(err(format!("--name {n:?} is not a valid project name"))),
            None => first_requirement_name(&text).ok_or_else(|| {
                err("it names no requirement to be the project: add one, or pass --name".into())
            })?,
        };
        Ok(Self {
            name: Some(name),
            extras: Vec::new(),
            source: Source::Requirements(file.to_path_buf()),
        })
    }
}

/// A parsed requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Project name as written (None for a directory until it is built).
    pub name: Option<String>,
    /// Extras, sorted and de-duplicated, normalised.
    pub extras: Vec<String>,
    /// Where it comes from.
    pub source: Source,
}

impl Requirement {
    /// Parses what the user typed.
    pub fn parse(given: &str) -> Result<Self, SpecError> {
        let err = |why: &str| SpecError::Requirement {
            given: given.to_string(),
            why: why.to_string(),
        };
        let text = given.trim();
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let (body, extras) = split_extras(text).map_err(|w| err(&w))?;
        let body = body.as_str();
        let path = Path::new(body);
        if body.ends_with(".whl") {
            let meta = std::fs::metadata(path)
                .map_err(|e| err(&format!("wheel file {body} cannot be read ({e})")))?;
            if !meta.is_file() {
                return Err(err(&format!("{body} is not a file")));
            }
            let (name, _version) = wheel_name_version(path).ok_or_else(|| {
                err("the wheel's file name is not NAME-VERSION-PY-ABI-PLATFORM.whl")
            })?;
            return Ok(Self {
                name: Some(name),
                extras,
                source: Source::Wheel(path.to_path_buf()),
            });
        }
        if is_lock_file_name(path) && path.is_file() {
            return Ok(Self {
                name: None,
                extras,
                source: Source::Lock(path.to_path_buf()),
            });
        }
        if path.is_dir() {
            if !path.join("pyproject.toml").is_file() && !path.join("setup.py").is_file() {
                return Err(err(&format!(
                    "directory {body} has neither pyproject.toml nor setup.py"
                )));
            }
            return Ok(Self {
                name: None,
                extras,
                source: Source::Directory(path.to_path_buf()),
            });
        }
        let (name, operator, version) = if let Some((n, v)) = body.split_once("===") {
            (n, "===", v)
        } else if let Some((n, v)) = body.split_once("==") {
            (n, "==", v)
        } else if body.contains(['/', '\\']) || body.starts_with('.') {
            return Err(err(&format!("no file or directory at {body}")));
        } else if body.contains(['<', '>', '~', '!', '=']) {
            return Err(err("only an exact version (== or ===) can name an image"));
        } else {
            return Err(err("it has no version: write NAME==VERSION"));
        };
        let (name, version) = (name.trim(), version.trim());
        if !valid_name(name) {
            return Err(err(&format!("{name:?} is not a valid project name")));
        }
        let version_ok = !version.is_empty()
            && version.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-' | '_' | '*')
            });
        if !version_ok || version.contains('*') {
            return Err(err(&format!("{version:?} is not an exact version")));
        }
        Ok(Self {
            name: Some(name.to_string()),
            extras,
            source: Source::Index {
                version: version.to_string(),
                operator: operator.to_string(),
            },
        })
    }

    /// The `[a,b]` suffix for pip, or an empty string.
    pub fn extras_suffix(&self) -> String {
        if self.extras.is_empty() {
            String::new()
        } else {
            format!("[{}]", self.extras.join(","))
        }
    }
}

fn split_extras(text: &str) -> Result<(String, Vec<String>), String> {
    let Some(open) = text.find('[') else {
        return Ok((text.to_string(), Vec::new()));
    };
    let close = text[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or("an extras list `[` is not closed")?;
    let (before, rest) = (&text[..open], &text[close + 1..]);
    let mut extras = Vec::new();
    for e in text[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if !valid_name(e) {
            return Err(format!("{e:?} is not a valid extra name"));
        }
        extras.push(normalise_name(e));
    }
    extras.sort();
    extras.dedup();
    // Extras stand either at the end (`file.whl[x]`) or before the version (`name[x]==1.0`).
    if rest.is_empty() || (rest.starts_with("==") && !before.is_empty()) {
        Ok((format!("{before}{rest}"), extras))
    } else {
        Err(format!("unexpected text {rest:?} after the extras"))
    }
}

/// True for a PEP 508 project or extra name.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// PEP 503 normalisation: lowercase, runs of `-_.` become `-`.
pub fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

/// Name and version from a wheel's file name (PEP 427).
pub fn wheel_name_version(path: &Path) -> Option<(String, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(5..=6).contains(&parts.len()) || !valid_name(parts[0]) || parts[1].is_empty() {
        return None;
    }
    Some((parts[0].to_string(), parts[1].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_requirement_with_extras_parses() {
        let r = Requirement::parse("Milborne[Fast,cron]==0.4.0").unwrap();
        assert_eq!(r.name.as_deref(), Some("Milborne"));
        assert_eq!(r.extras, ["cron", "fast"]);
        assert_eq!(
            r.source,
            Source::Index {
                version: "0.4.0".into(),
                operator: "==".into()
            }
        );
        assert_eq!(r.extras_suffix(), "[cron,fast]");
    }

    #[test]
    fn arbitrary_equality_is_accepted() {
        let r = Requirement::parse("milborne===0.4.0.dev2015041600283").unwrap();
        assert!(matches!(r.source, Source::Index { ref operator, .. } if operator == "==="));
    }

    #[test]
    fn unpinned_and_ranges_are_refused_with_the_accepted_forms() {
        for bad in [
            "milborne",
            "milborne>=1.0",
            "milborne==",
            "mil borne==1",
            "-x==1",
            "milborne==1.*",
            "a[b==1",
            "x==1;rm -rf",
        ] {
            let e = Requirement::parse(bad).unwrap_err().to_string();
            assert!(e.contains("Accepted forms"), "{bad}: {e}");
        }
    }

    #[test]
    fn wheel_path_with_extras_parses() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir
            .path()
            .join("milborne-0.4.0-cp311-cp311-linux_x86_64.whl");
        std::fs::write(&whl, b"").unwrap();
        let r = Requirement::parse(&format!("{}[extra]", whl.display())).unwrap();
        assert_eq!(r.name.as_deref(), Some("milborne"));
        assert_eq!(r.extras, ["extra"]);
        assert_eq!(r.source, Source::Wheel(whl));
    }

    #[test]
    fn missing_wheel_is_refused() {
        assert!(Requirement::parse("./nope-1.0-py3-none-any.whl").is_err());
    }

    #[test]
    fn normalisation_follows_pep_503() {
        assert_eq!(normalise_name("Foo.Bar__baz"), "foo-bar-baz");
    }
}
