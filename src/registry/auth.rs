//! Registry credentials and authentication challenges.
//!
//! Credentials come from `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`: `credHelpers` for the host, else `auths`,
//! else `credsStore`, as docker does. They never reach a message: their
//! `Debug` output is redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::sandbox::{HostCommand, Runner, SandboxError};

/// Failure to read or write credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file is unreadable or malformed.
    #[error("cannot use credentials file {path}: {why}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the credentials).
        why: String,
    },
    /// The credentials file's directory cannot be made.
    #[error("cannot store credentials in {path}")]
    Store {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The credentials file cannot be written.
    #[error(transparent)]
    Write(#[from] crate::fsutil::WriteError),
    /// A credential helper could not be run.
    #[error(
        "credential helper docker-credential-{helper} failed for {host}: install it or remove \
         it from the credentials file"
    )]
    HelperStart {
        /// Helper name.
        helper: String,
        /// Registry host.
        host: String,
        /// Boxed: a sandbox error is large and this one is rare.
        #[source]
        source: Box<SandboxError>,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {host}: {why}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry host.
        host: String,
        /// What it said on failure: its stdout (where the helper protocol
        /// puts errors, such as "credentials not found in native keychain"),
        /// then its stderr. A helper that fails has no secret to print.
        why: String,
    },
}

impl AuthError {
    /// True for a credentials file that cannot be used or written (exit 2);
    /// a failing helper is exit 1.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AuthError::Config { .. } | AuthError::Store { .. } | AuthError::Write(_)
        )
    }
}

/// A user name and a secret (password or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (`<token>` for an identity token).
    pub username: String,
    /// Password or token.
    pub secret: String,
    /// True when `secret` is an OAuth2 refresh (identity) token.
    pub identity_token: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, secret: *** }}",
            self.username
        )
    }
}

#[derive(Default, serde::Deserialize, serde::Serialize)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(
        default,
        rename = "credHelpers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    cred_helpers: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "credsStore",
        skip_serializing_if = "Option::is_none"
    )]
    creds_store: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Default, Clone, serde::Deserialize, serde::Serialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identitytoken: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The credentials file in use.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(crate::env::REGISTRY_AUTH_FILE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os(crate::env::DOCKER_CONFIG).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os(crate::env::HOME).map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

fn read_config(path: &Path) -> Result<ConfigFile, AuthError> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(AuthError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Config {
            path: path.to_path_buf(),
            // serde's message names the line and column, not the content.
            why: format!("not valid JSON ({})", e.classify_message()),
        }),
    }
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

/// The `auths` key for a host: docker writes `https://index.docker.io/v1/` for Docker Hub.
fn matches_host(key: &str, host: &str) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    k == host
        || (host == super::reference::DOCKER_HUB
            && (k == "index.docker.io" || k == "registry-1.docker.io"))
}

/// Looks up the credentials for a registry host (`host[:port]`).
pub fn lookup(host: &str, runner: &dyn Runner) -> Result<Option<Credentials>, AuthError> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let config = read_config(&path)?;
    if let Some(helper) = config
        .cred_helpers
        .iter()
        .find(|(k, _)| matches_host(k, host))
        .map(|(_, v)| v.clone())
    {
        return helper_get(&helper, host, runner);
    }
    if let Some((_, entry)) = config.auths.iter().find(|(k, _)| matches_host(k, host)) {
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                username: "<token>".into(),
                secret: token.clone(),
                identity_token: true,
            }));
        }
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| AuthError::Config {
                    path: path.clone(),
                    why: format!("the auth value for {host} is not base64"),
                })?;
            let text = String::from_utf8(decoded).map_err(|_| AuthError::Config {
                path: path.clone(),
                why: format!("the auth value for {host} is not UTF-8"),
            })?;
            let (u, p) = text.split_once(':').ok_or_else(|| AuthError::Config {
                path: path.clone(),
                why: format!("the auth value for {host} is not USER:PASSWORD"),
            })?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                secret: p.to_string(),
                identity_token: false,
            }));
        }
    }
    if let Some(store) = &config.creds_store {
        return helper_get(store, host, runner);
    }
    Ok(None)
}

/// The credential helper's `get` for a host: the host on its standard
/// input, `{"Username","Secret"}` on its standard output.
pub fn helper_command(helper: &str, host: &str) -> HostCommand {
    HostCommand {
        what: format!("credential helper docker-credential-{helper}"),
        program: PathBuf::from(format!("docker-credential-{helper}")),
        args: vec!["get".into()],
        env: Vec::new(),
        stdin: Some(host.as_bytes().to_vec()),
    }
}

fn helper_get(
    helper: &str,
    host: &str,
    runner: &dyn Runner,
) -> Result<Option<Credentials>, AuthError> {
    let fail = |why: String| AuthError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        why,
    };
    let out = runner
        .run_host(&helper_command(helper, host))
        .map_err(|source| AuthError::HelperStart {
            helper: helper.to_string(),
            host: host.to_string(),
            source: Box::new(source),
        })?;
    if !out.success {
        let said = helper_message(&out.stdout, &out.stderr);
        // The helpers' protocol: this message means "nothing stored for that host".
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(said));
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|_| fail("its answer is not {\"Username\",\"Secret\"} JSON".into()))?;
    Ok(Some(Credentials {
        identity_token: a.username == "<token>",
        username: a.username,
        secret: a.secret,
    }))
}

/// A failed helper's message: its stdout, then its stderr, each trimmed.
fn helper_message(stdout: &[u8], stderr: &[u8]) -> String {
    [stdout, stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Stores credentials for a host in the credentials file (mode 0600),
/// keeping everything else the file holds.
pub fn store(host: &str, username: &str, password: &str) -> Result<PathBuf, AuthError> {
    let path = config_path().ok_or_else(|| AuthError::Config {
        path: PathBuf::from("~/.docker/config.json"),
        why: "no HOME, DOCKER_CONFIG or REGISTRY_AUTH_FILE".into(),
    })?;
    let mut config = read_config(&path)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    config.auths.retain(|k, _| !matches_host(k, host));
    config.auths.insert(
        host.to_string(),
        AuthEntry {
            auth: Some(auth),
            ..Default::default()
        },
    );
    let bytes = serde_json::to_vec_pretty(&config).expect("config serialises");
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| AuthError::Store {
        path: path.clone(),
        source,
    })?;
    crate::fsutil::write_with(&path, ".config-", 0o600, |out| {
        out.write_all(&bytes)
            .map_err(|source| crate::fsutil::WriteError {
                path: path.clone(),
                source,
            })
            .map_err(AuthError::from)
    })?;
    Ok(path)
}

/// One `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`), names lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value (RFC 7235): a scheme followed by
/// `name=value` or `name="quoted \"value\""` pairs separated by commas.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(name.to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{HostOutput, Recorder};

    #[test]
    fn a_credential_helper_gets_the_host_on_stdin_and_answers_json() {
        let recorder = Recorder::answering(HostOutput::succeeded(
            br#"{"Username":"u","Secret":"s3cret"}"#,
        ));
        let c = helper_get("pass", "127.0.0.1:5000", &recorder)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str(), c.identity_token),
            ("u", "s3cret", false)
        );
        let cmds = recorder.host_commands.lock().unwrap();
        assert_eq!(cmds.len(), 1, "one helper run");
        assert_eq!(cmds[0].program, Path::new("docker-credential-pass"));
        assert_eq!(cmds[0].args, ["get"]);
        assert_eq!(cmds[0].stdin.as_deref(), Some(&b"127.0.0.1:5000"[..]));
        assert!(
            cmds[0].env.is_empty(),
            "the helper gets assemble's environment only"
        );
    }

    #[test]
    fn a_helper_with_nothing_stored_means_no_credentials_and_other_failures_say_why() {
        let answer = |stdout: &[u8]| HostOutput {
            success: false,
            status: "exit status: 1".into(),
            stdout: stdout.to_vec(),
            stderr: b"exit 1\n".to_vec(),
        };
        let recorder = Recorder::answering(answer(b"credentials not found in native keychain\n"));
        assert!(helper_get("pass", "h", &recorder).unwrap().is_none());
        let recorder = Recorder::answering(answer(b"gpg: decryption failed\n"));
        let e = helper_get("pass", "h", &recorder).unwrap_err().to_string();
        assert!(e.contains("gpg: decryption failed; exit 1"), "{e}");
    }

    #[test]
    fn a_failed_helpers_message_is_its_stdout_then_its_stderr() {
        assert_eq!(
            helper_message(b"credentials not found\n", b"  exit 1\n"),
            "credentials not found; exit 1"
        );
        assert_eq!(helper_message(b"", b"only stderr\n"), "only stderr");
        assert_eq!(helper_message(b"only stdout", b""), "only stdout");
    }

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
    }

    #[test]
    fn basic_challenge_and_escapes() {
        let c = parse_challenge(r#"Basic realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], r#"a "quoted" realm"#);
    }

    #[test]
    fn malformed_challenges_are_refused() {
        for bad in ["", "Bearer realm=\"open", "Bearer =x", "B@d realm=x"] {
            assert!(parse_challenge(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials {
            username: "u".into(),
            secret: "s3cret".into(),
            identity_token: false,
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn docker_hub_auth_keys_match() {
        assert!(matches_host("https://index.docker.io/v1/", "docker.io"));
        assert!(matches_host("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!matches_host("127.0.0.1:5001", "127.0.0.1:5000"));
    }
}
