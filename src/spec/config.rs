//! `assemble.toml`: the project's configuration (registry, Python,
//! Debian packages, services, ports, volumes), checked when read.

use std::collections::BTreeMap;
use std::path::Path;

use crate::spec::SpecError;

/// `assemble.toml`.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Registry the image is pushed to (`HOST[/PREFIX]`).
    pub registry: Option<String>,
    /// The build cache repository (`HOST/REPO`), like `--cache-repo`.
    #[serde(default, rename = "cache-repo")]
    pub cache_repo: Option<String>,
    /// Interpreter version in the base (`3.11`).
    pub python: Option<String>,
    /// The Debian release the base and the compiler are built from
    /// (`trixie`, one of layers/releases); unset: the one shipping
    /// `python`, else the default. For a build on the built base (and for
    /// `assemble base`) the settings set it to the release chosen; with a
    /// given base the build sets the compiler's from the base's Python.
    pub debian: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
