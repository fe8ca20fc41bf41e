//! What to build: the requirement, `assemble.toml`, and the pip settings that
//! reach the compile sandbox. Command line beats file beats defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::env;
use crate::output::redact_url;

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

/// `assemble.toml`.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Registry the image is pushed to (`HOST[/PREFIX]`).
    pub registry: Option<String>,
    /// Interpreter version in the base (`3.11`).
    pub python: Option<String>,
    /// Debian packages added to the base and compiler.
    #[serde(default)]
    pub dependencies: Dependencies,
    /// Extra environment of the image.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports exposed, in addition to 8080 and 8081.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Volumes, in addition to /media, /scripts and /config.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Service name to WSGI callable (`module:callable`).
    #[serde(default)]
    pub services: BTreeMap<String, String>,
}

/// `[dependencies]` of `assemble.toml`.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dependencies {
    /// Debian packages needed at run time (base and compiler).
    #[serde(default)]
    pub run: Vec<String>,
    /// Debian packages needed to build wheels (compiler only).
    #[serde(default)]
    pub build: Vec<String>,
}

impl ProjectConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = fs_err::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: ProjectConfig = toml::from_str(&text).map_err(|e| SpecError::Config {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        config.check().map_err(|message| SpecError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        for p in self.dependencies.run.iter().chain(&self.dependencies.build) {
            let ok = !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '.' | '+' | '-' | ':' | '=')
                });
            if !ok {
                return Err(format!("{p:?} is not a Debian package name"));
            }
        }
        for (service, callable) in &self.services {
            if !valid_service(service) {
                return Err(format!(
                    "service name {service:?} may only use letters, digits, - and _"
                ));
            }
            if !callable.contains(':') || callable.contains(char::is_whitespace) {
                return Err(format!(
                    "service {service} maps to {callable:?}; expected MODULE:CALLABLE"
                ));
            }
        }
        for k in self.env.keys() {
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!("environment variable name {k:?} is invalid"));
            }
        }
        if self.ports.contains(&0) {
            return Err("port 0 cannot be exposed: ports are 1 to 65535".into());
        }
        for v in &self.volumes {
            check_volume(v)?;
        }
        if let Some(py) = &self.python {
            check_python(py).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Directories of the base a volume must not hide: an engine mounts an
/// empty directory there, and the image stops working.
const SYSTEM_DIRS: [&str; 17] = [
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var",
];

/// A volume is an absolute, normalised path (no `//`, `.`, `..` or
/// trailing `/`) that hides neither the root, the base's system
/// directories, the image's home nor its own files.
fn check_volume(v: &str) -> Result<(), String> {
    let normalised = v.starts_with('/')
        && v.len() > 1
        && !v.ends_with('/')
        && v[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if v == "/" {
        return Err(
            "volume \"/\" would hide the whole image; name a directory such as /data".into(),
        );
    }
    if !normalised {
        return Err(format!(
            "volume {v:?} is not a normalised absolute path (write it as /dir/sub: no //, . or .., no trailing /)"
        ));
    }
    let hides_image = v == crate::contract::HOME
        || crate::contract::IMAGE_DIRS
            .iter()
            .any(|d| v == *d || v.strip_prefix(d).is_some_and(|r| r.starts_with('/')));
    if SYSTEM_DIRS.contains(&v) || hides_image {
        return Err(format!(
            "volume {v:?} would hide the image's own files there; name a directory of its own, such as /data"
        ));
    }
    Ok(())
}

/// True for a service name the entrypoint accepts.
pub fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks an `X.Y` interpreter version.
pub fn check_python(v: &str) -> Result<(), SpecError> {
    let ok = matches!(v.split_once('.'), Some((a, b)) if !a.is_empty() && !b.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            what: format!("python version {v:?}"),
            why: "expected MAJOR.MINOR, such as 3.11".into(),
        })
    }
}

/// Where pip looks for packages, passed into the compile sandbox and nowhere else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipSettings {
    /// `--index-url`.
    pub index_url: Option<String>,
    /// `--extra-index-url`, in order.
    pub extra_index_urls: Vec<String>,
    /// `--trusted-host`.
    pub trusted_hosts: Vec<String>,
    /// Contents of the constraints file, if any.
    pub constraints: Option<Vec<u8>>,
    /// CA bundle pip verifies the index with (`cert` in pip.conf, `PIP_CERT`).
    pub cert: Option<Vec<u8>>,
    /// Proxy variables of the host (`HTTPS_PROXY`...), passed to pip as they are.
    pub proxies: Vec<(String, String)>,
}

impl PipSettings {
    /// Resolves pip settings: command line, then `PIP_*` variables, then pip.conf.
    pub fn resolve(
        cli_index: Option<&str>,
        cli_extra: &[String],
        pip_conf: Option<&Path>,
        constraint: Option<&Path>,
    ) -> Result<Self, SpecError> {
        let conf = match pip_conf {
            Some(p) => read_pip_conf(p)?,
            None => {
                // As pip does: site-wide files first, the user's over them.
                let mut merged = BTreeMap::new();
                for p in pip_conf_files() {
                    merged.extend(read_pip_conf(&p)?);
                }
                merged
            }
        };
        let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let index_url = cli_index
            .map(str::to_string)
            .or_else(|| env_var(env::PIP_INDEX_URL))
            .or_else(|| conf.get("index-url").cloned());
        let extra_index_urls: Vec<String> = if !cli_extra.is_empty() {
            cli_extra.to_vec()
        } else if let Some(v) = env_var(env::PIP_EXTRA_INDEX_URL) {
            v.split_whitespace().map(str::to_string).collect()
        } else {
            conf.get("extra-index-url")
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let trusted_hosts = env_var(env::PIP_TRUSTED_HOST)
            .or_else(|| conf.get("trusted-host").cloned())
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        for url in index_url.iter().chain(&extra_index_urls) {
            if !(url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("file://"))
            {
                return Err(SpecError::Invalid {
                    what: format!("index URL {}", redact_url(url)),
                    why: "it must start with http://, https:// or file://".into(),
                });
            }
        }
        let constraints = match constraint {
            Some(p) => Some(fs_err::read(p).map_err(|source| SpecError::Read {
                path: p.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let cert = match env_var(env::PIP_CERT).or_else(|| conf.get("cert").cloned()) {
            Some(p) => Some(fs_err::read(&p).map_err(|source| SpecError::Read {
                path: PathBuf::from(p),
                source,
            })?),
            None => None,
        };
        let proxies = env::PROXY_VARIABLES
            .iter()
            .filter_map(|k| env_var(k).map(|v| (k.to_string(), v)))
            .collect();
        Ok(Self {
            index_url,
            extra_index_urls,
            trusted_hosts,
            constraints,
            cert,
            proxies,
        })
    }

    /// Strings that must never be shown: URLs that may carry credentials.
    pub fn secrets(&self) -> Vec<String> {
        self.index_url
            .iter()
            .chain(&self.extra_index_urls)
            .cloned()
            .chain(self.proxies.iter().map(|(_, v)| v.clone()))
            .collect()
    }

    /// Environment variables that give these settings to pip.
    pub fn pip_env(&self) -> Vec<(String, String)> {
        let mut v = self.proxies.clone();
        if let Some(i) = &self.index_url {
            v.push((env::PIP_INDEX_URL.to_string(), i.clone()));
        }
        if !self.extra_index_urls.is_empty() {
            v.push((
                env::PIP_EXTRA_INDEX_URL.to_string(),
                self.extra_index_urls.join(" "),
            ));
        }
        if !self.trusted_hosts.is_empty() {
            v.push((
                env::PIP_TRUSTED_HOST.to_string(),
                self.trusted_hosts.join(" "),
            ));
        }
        v
    }
}

/// pip's configuration files in the order pip reads them; `PIP_CONFIG_FILE`
/// replaces them all (`/dev/null` meaning none).
fn pip_conf_files() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os(env::PIP_CONFIG_FILE) {
        let p = PathBuf::from(p);
        return if p != Path::new("/dev/null") && p.is_file() {
            vec![p]
        } else {
            vec![]
        };
    }
    let mut files = vec![
        PathBuf::from("/etc/xdg/pip/pip.conf"),
        PathBuf::from("/etc/pip.conf"),
    ];
    if let Some(home) = std::env::var_os(env::HOME).map(PathBuf::from) {
        files.push(home.join(".pip/pip.conf"));
        let xdg = std::env::var_os(env::XDG_CONFIG_HOME)
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        files.push(xdg.join("pip/pip.conf"));
    }
    files.into_iter().filter(|p| p.is_file()).collect()
}

/// Reads the `[global]`, `[wheel]` and `[install]` keys of a pip.conf, later
/// sections overriding earlier ones, continuation lines joined.
fn read_pip_conf(path: &Path) -> Result<BTreeMap<String, String>, SpecError> {
    let text = fs_err::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(k) = &last_key {
                let entry = sections
                    .entry(section.clone())
                    .or_default()
                    .entry(k.clone())
                    .or_default();
                entry.push(' ');
                entry.push_str(trimmed);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            last_key = None;
            continue;
        }
        let Some((k, v)) = trimmed.split_once(['=', ':']) else {
            return Err(SpecError::Config {
                path: path.to_path_buf(),
                message: format!("line {trimmed:?} is not KEY = VALUE"),
            });
        };
        let key = k.trim().replace('_', "-");
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.clone(), v.trim().to_string());
        last_key = Some(key);
    }
    let mut merged = BTreeMap::new();
    for s in ["global", "wheel", "install"] {
        if let Some(m) = sections.get(s) {
            merged.extend(m.iter().map(|(k, v)| (k.clone(), v.trim().to_string())));
        }
    }
    Ok(merged)
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

    #[test]
    fn config_refuses_port_0_and_volumes_that_are_the_root_or_not_normalised() {
        // Regression: `ports = [0]` and volumes "/", "/etc" and "/x//y" were accepted.
        let load = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("assemble.toml");
            std::fs::write(&p, text).unwrap();
            ProjectConfig::load(&p).map_err(|e| e.to_string())
        };
        let e = load("ports = [0]\n").unwrap_err();
        assert!(e.contains("port 0"), "{e}");
        for v in [
            "/",
            "/etc",
            "/x//y",
            "/x/",
            "/x/./y",
            "/x/../y",
            "relative",
            "/home/blue",
            "/home/blue/app/lib",
        ] {
            let e = load(&format!("volumes = [{v:?}]\n")).unwrap_err();
            assert!(e.contains(&format!("{v:?}")), "{v}: {e}");
        }
        let ok =
            load("ports = [9000]\nvolumes = [\"/data\", \"/var/lib/app\", \"/home/blue/data\"]\n");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("assemble.toml");
        std::fs::write(&p, "registy = 'x'\n").unwrap();
        let e = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("registy"), "{e}");
    }

    #[test]
    fn config_reads_services_and_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("assemble.toml");
        std::fs::write(&p, "python = '3.11'\n[dependencies]\nrun = ['libpq5']\n[services]\napi = 'milborne.api:app'\n").unwrap();
        let c = ProjectConfig::load(&p).unwrap();
        assert_eq!(c.dependencies.run, ["libpq5"]);
        assert_eq!(c.services["api"], "milborne.api:app");
    }

    #[test]
    fn pip_conf_sections_merge_and_cli_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pip.conf");
        std::fs::write(&p, "[global]\nindex-url = http://127.0.0.1:1/simple\nextra-index-url =\n  http://127.0.0.1:2/a\n  http://127.0.0.1:3/b\n").unwrap();
        let s = PipSettings::resolve(None, &[], Some(&p), None).unwrap();
        assert_eq!(s.index_url.as_deref(), Some("http://127.0.0.1:1/simple"));
        assert_eq!(s.extra_index_urls.len(), 2);
        let s =
            PipSettings::resolve(Some("http://127.0.0.1:9/simple"), &[], Some(&p), None).unwrap();
        assert_eq!(s.index_url.as_deref(), Some("http://127.0.0.1:9/simple"));
    }
}
