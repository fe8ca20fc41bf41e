//! pip's settings: the index URLs, trusted hosts, constraints, CA and
//! proxies, from the command line, then `PIP_*` variables, then pip.conf.
//! They reach the compile sandbox and nowhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::env;
use crate::output::redact_url;
use crate::spec::SpecError;

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

    /// The configured indexes, `--index-url` first (credentials in them).
    pub fn indexes(&self) -> impl Iterator<Item = &String> {
        self.index_url.iter().chain(&self.extra_index_urls)
    }

    /// Strings that must never be shown: URLs that may carry credentials.
    pub fn secrets(&self) -> Vec<String> {
        self.indexes()
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
