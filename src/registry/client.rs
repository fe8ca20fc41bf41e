//! The Distribution v2 HTTP client: scheme choice, TLS, authentication
//! (anonymous, Basic, Bearer tokens with every scope an operation needs,
//! reused until they expire) and retries with backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::auth::{self, AuthError, Credentials};
use super::RegistryError;

/// How the client reaches registries.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Hosts reached over plain HTTP or unverified TLS (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) trusted besides the system's (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Attempts per request before giving up.
    pub attempts: u32,
}

/// A bearer token and when it stops being usable.
#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// What the registry asked for last time, per host.
#[derive(Clone)]
enum AuthMode {
    Basic,
    Bearer { realm: String, service: String },
}

/// The registry client, shared by the threads of one push or pull.
pub struct Client {
    verified: Http,
    unverified: Http,
    options: ClientOptions,
    schemes: Mutex<HashMap<String, &'static str>>,
    modes: Mutex<HashMap<String, AuthMode>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Held while a token is fetched, so parallel requests wait for it
    /// instead of each asking for one.
    token_fetch: Mutex<()>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
}

/// The access an operation needs: `repository:NAME:pull,push` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(pub Vec<String>);

impl Scopes {
    /// Pull access to one repository.
    pub fn pull(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }

    /// Pull and push access to one repository, plus pull on mount sources.
    pub fn push(repo: &str, sources: &[String]) -> Self {
        let mut v = vec![format!("repository:{repo}:pull,push")];
        v.extend(
            sources
                .iter()
                .filter(|s| *s != repo)
                .map(|s| format!("repository:{s}:pull")),
        );
        v.sort();
        v.dedup();
        Self(v)
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

impl Client {
    /// Builds the client; the CA file is read now so a bad one fails early.
    pub fn new(mut options: ClientOptions) -> Result<Self, RegistryError> {
        if options.attempts == 0 {
            options.attempts = 6;
        }
        let mut builder = Http::builder()
            .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(None::<Duration>);
        if let Some(ca) = &options.ca_file {
            let pem = fs_err::read(ca)
                .map_err(|e| RegistryError::Usage(format!("cannot read --ca-file: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Usage(format!(
                    "--ca-file {} holds no PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(RegistryError::Usage(format!(
                    "--ca-file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let verified = builder
            .build()
            .map_err(|e| RegistryError::Usage(format!("cannot set up TLS: {e}")))?;
        let unverified = Http::builder()
            .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(None::<Duration>)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| RegistryError::Usage(format!("cannot set up TLS: {e}")))?;
        Ok(Self {
            verified,
            unverified,
            options,
            schemes: Mutex::new(HashMap::new()),
            modes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: Mutex::new(()),
            credentials: Mutex::new(HashMap::new()),
        })
    }

    fn insecure(&self, host: &str) -> bool {
        self.options.insecure.iter().any(|h| h == host)
    }

    fn http(&self, host: &str) -> &Http {
        if self.insecure(host) {
            &self.unverified
        } else {
            &self.verified
        }
    }

    /// `https://host` or, for an insecure host that does not speak TLS, `http://host`.
    pub fn base_url(&self, host: &str) -> Result<String, RegistryError> {
        if let Some(s) = self.schemes.lock().expect("lock").get(host) {
            return Ok(format!("{s}://{host}"));
        }
        let scheme = if self.insecure(host) {
            match self.unverified.get(format!("https://{host}/v2/")).send() {
                Ok(_) => "https",
                Err(_) => "http",
            }
        } else {
            "https"
        };
        self.schemes
            .lock()
            .expect("lock")
            .insert(host.to_string(), scheme);
        Ok(format!("{scheme}://{host}"))
    }

    /// Forgets the cached token for these scopes, but only if it is the one
    /// that was refused: a request sent before any token existed must not
    /// throw away the token another thread has just fetched.
    fn forget_token(&self, host: &str, scopes: &Scopes, sent: Option<&str>) {
        let Some(sent) = sent else { return };
        let mut tokens = self.tokens.lock().expect("lock");
        let key = (host.to_string(), scopes.key());
        if tokens
            .get(&key)
            .is_some_and(|t| sent == format!("Bearer {}", t.value))
        {
            tokens.remove(&key);
        }
    }

    /// Uses these credentials for a host instead of the stored ones (login).
    pub fn use_credentials(&self, host: &str, username: &str, password: &str) {
        self.credentials.lock().expect("lock").insert(
            host.to_string(),
            Some(Credentials {
                username: username.to_string(),
                secret: password.to_string(),
                identity_token: false,
            }),
        );
    }

    fn credentials(&self, host: &str) -> Result<Option<Credentials>, AuthError> {
        if let Some(c) = self.credentials.lock().expect("lock").get(host) {
            return Ok(c.clone());
        }
        let c = auth::lookup(host)?;
        self.credentials
            .lock()
            .expect("lock")
            .insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// Sends a request built by `build` (called again for each attempt, so a
    /// body is made anew), authenticating as the registry asks and retrying
    /// connection failures, 5xx and 429 answers with backoff.
    pub fn send(
        &self,
        host: &str,
        scopes: &Scopes,
        what: &str,
        build: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let base = self.base_url(host)?;
        let mut attempt = 0;
        let mut authenticated_once = false;
        loop {
            attempt += 1;
            let mut req = build(self.http(host), &base);
            let sent = self.auth_header(host, scopes)?;
            if let Some(h) = &sent {
                req = req.header(AUTHORIZATION, h);
            }
            let result = req.send();
            let retry_after = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated_once => {
                    authenticated_once = true;
                    // The token we sent, if any, is not enough: forget it.
                    tracing::debug!(host, what, sent_token = sent.is_some(), "401");
                    self.forget_token(host, scopes, sent.as_deref());
                    self.learn_challenge(host, resp.headers())?;
                    attempt -= 1;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(RegistryError::Unauthorized {
                        host: host.to_string(),
                        what: what.to_string(),
                        had_credentials: self.credentials(host)?.is_some(),
                    });
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    let wait = retry_after(resp.headers());
                    let status = resp.status();
                    if attempt >= self.options.attempts {
                        return Err(RegistryError::Status {
                            what: what.to_string(),
                            status: status.as_u16(),
                            body: excerpt(resp),
                        });
                    }
                    tracing::debug!(%status, attempt, what, "retrying");
                    wait
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    if attempt >= self.options.attempts || is_tls_or_protocol(&e) {
                        return Err(RegistryError::from_transport(
                            host,
                            what,
                            &e,
                            self.insecure(host),
                        ));
                    }
                    tracing::debug!(error = %e, attempt, what, "retrying");
                    None
                }
            };
            std::thread::sleep(retry_after.unwrap_or_else(|| backoff(attempt)));
        }
    }

    /// Like `send`, without retries: for requests whose failure the caller
    /// handles itself (resumable uploads).
    pub fn send_once(
        &self,
        host: &str,
        scopes: &Scopes,
        what: &str,
        build: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Response, SendError> {
        let base = self.base_url(host).map_err(SendError::Fatal)?;
        for _ in 0..2 {
            let mut req = build(self.http(host), &base);
            let sent = self.auth_header(host, scopes).map_err(SendError::Fatal)?;
            if let Some(h) = &sent {
                req = req.header(AUTHORIZATION, h);
            }
            match req.send() {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    tracing::debug!(host, what, sent_token = sent.is_some(), "401");
                    self.forget_token(host, scopes, sent.as_deref());
                    self.learn_challenge(host, resp.headers())
                        .map_err(SendError::Fatal)?;
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    let wait = retry_after(resp.headers());
                    return Err(SendError::Retry {
                        wait,
                        error: RegistryError::Status {
                            what: what.to_string(),
                            status: resp.status().as_u16(),
                            body: excerpt(resp),
                        },
                    });
                }
                Ok(resp) => return Ok(resp),
                Err(e) if is_tls_or_protocol(&e) => {
                    return Err(SendError::Fatal(RegistryError::from_transport(
                        host,
                        what,
                        &e,
                        self.insecure(host),
                    )))
                }
                Err(e) => {
                    return Err(SendError::Retry {
                        wait: None,
                        error: RegistryError::from_transport(host, what, &e, self.insecure(host)),
                    })
                }
            }
        }
        Err(SendError::Fatal(RegistryError::Unauthorized {
            host: host.to_string(),
            what: what.to_string(),
            had_credentials: self
                .credentials(host)
                .map_err(|e| SendError::Fatal(e.into()))?
                .is_some(),
        }))
    }

    /// Attempts allowed per operation.
    pub fn attempts(&self) -> u32 {
        self.options.attempts
    }

    fn learn_challenge(&self, host: &str, headers: &HeaderMap) -> Result<(), RegistryError> {
        let header = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let challenge = auth::parse_challenge(header).ok_or_else(|| {
            RegistryError::Protocol(format!(
                "{host} answered 401 with an unusable WWW-Authenticate header {header:?}"
            ))
        })?;
        let mode = match challenge.scheme.as_str() {
            "basic" => AuthMode::Basic,
            "bearer" => AuthMode::Bearer {
                realm: challenge.params.get("realm").cloned().ok_or_else(|| {
                    RegistryError::Protocol(format!("{host}'s Bearer challenge has no realm"))
                })?,
                service: challenge.params.get("service").cloned().unwrap_or_default(),
            },
            other => {
                return Err(RegistryError::Protocol(format!(
                    "{host} asks for {other} authentication, which assemble does not speak"
                )))
            }
        };
        self.modes
            .lock()
            .expect("lock")
            .insert(host.to_string(), mode);
        Ok(())
    }

    fn auth_header(&self, host: &str, scopes: &Scopes) -> Result<Option<String>, RegistryError> {
        let mode = self.modes.lock().expect("lock").get(host).cloned();
        match mode {
            None => Ok(None),
            Some(AuthMode::Basic) => {
                let c = self
                    .credentials(host)?
                    .ok_or_else(|| RegistryError::Unauthorized {
                        host: host.to_string(),
                        what: "authentication".into(),
                        had_credentials: false,
                    })?;
                use base64::Engine as _;
                Ok(Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.secret))
                )))
            }
            Some(AuthMode::Bearer { realm, service }) => {
                let key = (host.to_string(), scopes.key());
                let cached = |tokens: &HashMap<(String, String), Token>| {
                    tokens
                        .get(&key)
                        .filter(|t| t.expires > Instant::now())
                        .map(|t| format!("Bearer {}", t.value))
                };
                if let Some(h) = cached(&self.tokens.lock().expect("lock")) {
                    return Ok(Some(h));
                }
                let _fetching = self.token_fetch.lock().expect("lock");
                if let Some(h) = cached(&self.tokens.lock().expect("lock")) {
                    return Ok(Some(h));
                }
                tracing::debug!(host, scopes = %scopes.key(), "fetching a token");
                let token = self.fetch_token(host, &realm, &service, scopes)?;
                let header = format!("Bearer {}", token.value);
                self.tokens.lock().expect("lock").insert(key, token);
                Ok(Some(header))
            }
        }
    }

    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: &str,
        scopes: &Scopes,
    ) -> Result<Token, RegistryError> {
        let realm_url = reqwest::Url::parse(realm).map_err(|_| {
            RegistryError::Protocol(format!("{host}'s token realm {realm:?} is not a URL"))
        })?;
        let realm_host = realm_url.host_str().unwrap_or("").to_string()
            + &realm_url
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
        let http = if self.insecure(host) || self.insecure(&realm_host) {
            &self.unverified
        } else {
            &self.verified
        };
        let creds = self.credentials(host)?;
        let resp = match &creds {
            Some(c) if c.identity_token => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", c.secret.clone()),
                    ("service", service.to_string()),
                    ("client_id", "assemble".to_string()),
                ];
                form.push(("scope", scopes.0.join(" ")));
                http.post(realm_url.clone()).form(&form).send()
            }
            _ => {
                let mut url = realm_url.clone();
                {
                    let mut q = url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in &scopes.0 {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = http.get(url);
                if let Some(c) = &creds {
                    req = req.basic_auth(&c.username, Some(&c.secret));
                }
                req.send()
            }
        }
        .map_err(|e| {
            RegistryError::from_transport(&realm_host, "token request", &e, self.insecure(host))
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: host.to_string(),
                what: format!("a token for {}", scopes.0.join(" ")),
                had_credentials: creds.is_some(),
            });
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Status {
                what: format!("token request to {realm_host}"),
                status: resp.status().as_u16(),
                body: excerpt(resp),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = resp.json().map_err(|_| {
            RegistryError::Protocol(format!("the token server of {host} did not answer JSON"))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RegistryError::Protocol(format!("the token server of {host} gave no token"))
            })?;
        // Tokens live 60 s unless said otherwise; renew a little early.
        let life = answer.expires_in.unwrap_or(60).max(10);
        Ok(Token {
            value,
            expires: Instant::now() + Duration::from_secs(life.saturating_sub(5)),
        })
    }
}

/// A failed single attempt: worth retrying (after `wait`, if the registry
/// said) or not.
#[derive(Debug)]
pub enum SendError {
    /// Retry later.
    Retry {
        /// Retry-After, when given.
        wait: Option<Duration>,
        /// What went wrong.
        error: RegistryError,
    },
    /// Do not retry.
    Fatal(RegistryError),
}

impl SendError {
    /// The error inside.
    pub fn into_error(self) -> RegistryError {
        match self {
            SendError::Retry { error, .. } | SendError::Fatal(error) => error,
        }
    }
}

/// Exponential backoff: 0.5 s, 1 s, 2 s, ... capped at 8 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((500u64 << attempt.saturating_sub(1).min(4)).min(8_000))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

fn excerpt(resp: Response) -> String {
    let text = resp.text().unwrap_or_default();
    let mut t: String = text.chars().take(300).collect();
    if text.len() > t.len() {
        t.push('…');
    }
    t.trim().to_string()
}

fn is_tls_or_protocol(e: &reqwest::Error) -> bool {
    let chain = error_chain(e);
    chain.contains("certificate")
        || chain.contains("InvalidContentType")
        || chain.contains("tls")
        || chain.contains("TLS")
}

/// The whole source chain of an error, for matching and messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_scopes_include_pull_on_mount_sources() {
        let s = Scopes::push("team/app", &["team/base".into(), "team/app".into()]);
        assert_eq!(
            s.0,
            ["repository:team/app:pull,push", "repository:team/base:pull"]
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(20), Duration::from_secs(8));
    }
}
