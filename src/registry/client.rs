//! The Distribution v2 HTTP client: scheme choice, TLS, authentication
//! (anonymous, Basic, Bearer tokens with every scope an operation needs,
//! reused until they expire), timeouts and retries with backoff.
//!
//! Credentials and tokens go only to the registry that asked for them (the
//! exact origin of its base URL) and to its token realm: a request whose URL
//! is elsewhere (an upload `Location` on another host, a redirect) is sent
//! without them. They never go over plain HTTP to a host that is not on
//! loopback.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as Http, Request, RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;

use super::auth::{self, Credentials};
use super::tls::{self, HostCerts};
use super::RegistryError;

/// How long a connection may take to open, and a request may wait for an
/// answer or for the next bytes of a body, unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// An upload may take, besides the timeout, one second per this many bytes
/// it sends or commits: reqwest's blocking client bounds a request and its
/// body as a whole, and a slow link must not fail a large blob that keeps
/// moving (a stalled one is cut sooner: see `TCP_USER_TIMEOUT` in
/// [`Client::new`]).
const UPLOAD_FLOOR_BYTES_PER_SECOND: u64 = 256 << 10;

/// Largest error body read for a message.
const MAX_ERROR_BODY: u64 = 4096;

/// How the client reaches registries.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Hosts reached over plain HTTP or unverified TLS (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) trusted besides the system's (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Attempts per request before giving up.
    pub attempts: u32,
    /// Connect and idle timeout (`--timeout`); zero means [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// certs.d roots searched for a host's directory ([`tls::certs_d_roots`]).
    pub certs_d: Vec<PathBuf>,
}

/// The HTTP client of one host (its TLS settings), with what the messages
/// about it need.
struct HostClient {
    http: Http,
    certs: HostCerts,
    /// The reason the verifier last refused a certificate of this host.
    problem: tls::Problem,
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
    options: ClientOptions,
    ca_certs: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    system_roots: OnceLock<Vec<CertificateDer<'static>>>,
    /// One HTTP client per (host, insecure): certs.d is per host.
    hosts: Mutex<HashMap<(String, bool), Arc<HostClient>>>,
    schemes: Mutex<HashMap<String, &'static str>>,
    /// Held while a scheme is probed, so that parallel requests wait for the
    /// probe's result instead of each probing (and each racing for the
    /// reason a certificate was refused).
    probing: Mutex<()>,
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
        if options.timeout.is_zero() {
            options.timeout = DEFAULT_TIMEOUT;
        }
        let ca_certs = match &options.ca_file {
            Some(ca) => tls::read_pem_certificates(ca)
                .map_err(|e| RegistryError::Usage(format!("--ca-file {}: {e}", ca.display())))?,
            None => Vec::new(),
        };
        Ok(Self {
            options,
            ca_certs,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            system_roots: OnceLock::new(),
            hosts: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            probing: Mutex::new(()),
            modes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: Mutex::new(()),
            credentials: Mutex::new(HashMap::new()),
        })
    }

    fn insecure(&self, host: &str) -> bool {
        self.options.insecure.iter().any(|h| h == host)
    }

    /// The client for a host, built on first use: its TLS trusts the system's
    /// roots, `--ca-file` and the host's certs.d directory, and presents the
    /// client certificate found there. Every request gets the connect
    /// timeout, a timeout for its answer and for each read of its body (an
    /// idle timeout: a body keeps streaming while bytes come), and
    /// `TCP_USER_TIMEOUT`, which cuts a connection whose sent data stays
    /// unacknowledged, or unsendable because the peer stopped reading, for as
    /// long.
    fn host_client(&self, host: &str, insecure: bool) -> Result<Arc<HostClient>, RegistryError> {
        let key = (host.to_string(), insecure);
        if let Some(c) = self.hosts.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let mut certs = tls::read_certs_d(&self.options.certs_d, host)?;
        if let Some(ca) = &self.options.ca_file {
            certs.trusted.splice(0..0, self.ca_certs.iter().cloned());
            certs.sources.insert(0, ca.clone());
        }
        let roots = self.system_roots.get_or_init(tls::system_roots);
        let (config, problem) = tls::client_config(&self.provider, roots, &certs, insecure)?;
        let t = self.options.timeout;
        let http = Http::builder()
            .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(config)
            .connect_timeout(t)
            .timeout(t)
            .tcp_user_timeout(t)
            .build()
            .map_err(|e| RegistryError::Usage(format!("cannot set up TLS: {e}")))?;
        let client = Arc::new(HostClient {
            http,
            certs,
            problem,
        });
        self.hosts.lock().expect("lock").insert(key, client.clone());
        Ok(client)
    }

    fn home(&self, host: &str) -> Result<Arc<HostClient>, RegistryError> {
        self.host_client(host, self.insecure(host))
    }

    /// The time an upload of `bytes` may take: the timeout, plus a second
    /// per 256 KiB.
    pub fn upload_timeout(&self, bytes: u64) -> Duration {
        self.options.timeout + Duration::from_secs(bytes / UPLOAD_FLOOR_BYTES_PER_SECOND)
    }

    /// `https://host`, or `http://host` for a host that does not speak TLS
    /// and is named by `--insecure-registry` or on loopback (as docker and
    /// go-containerregistry do): those are tried over HTTPS first.
    pub fn base_url(&self, host: &str) -> Result<String, RegistryError> {
        if let Some(s) = self.schemes.lock().expect("lock").get(host) {
            return Ok(format!("{s}://{host}"));
        }
        let _probing = self.probing.lock().expect("lock");
        if let Some(s) = self.schemes.lock().expect("lock").get(host) {
            return Ok(format!("{s}://{host}"));
        }
        let insecure = self.insecure(host);
        let scheme = if insecure || is_loopback(host) {
            let home = self.home(host)?;
            match home.http.get(format!("https://{host}/v2/")).send() {
                Ok(_) => "https",
                Err(_) if insecure => "http",
                Err(e) if speaks_tls(&e) || refused(&e) => {
                    return Err(self.transport_error(host, "GET /v2/", &e))
                }
                Err(e) => {
                    tracing::debug!(host, error = %error_chain(&e), "no TLS on loopback: plain HTTP");
                    "http"
                }
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

    /// Whether credentials may go to `host`: over TLS, or over plain HTTP
    /// to loopback only.
    fn may_send_credentials(&self, host: &str) -> bool {
        let plain = self.schemes.lock().expect("lock").get(host) == Some(&"http");
        !plain || is_loopback(host)
    }

    /// Turns a transport error into a message that says what was wrong and
    /// what to do.
    pub fn transport_error(&self, host: &str, what: &str, e: &reqwest::Error) -> RegistryError {
        let detail = error_chain(e);
        let insecure = self.insecure(host);
        let host_client = self
            .hosts
            .lock()
            .expect("lock")
            .get(&(host.to_string(), insecure))
            .cloned();
        let certs = host_client
            .as_ref()
            .map(|c| c.certs.clone())
            .unwrap_or_default();
        if e.is_timeout() || detail.contains("timed out") {
            return RegistryError::Timeout {
                host: host.to_string(),
                what: what.to_string(),
                seconds: self.options.timeout.as_secs(),
            };
        }
        let problem = host_client.and_then(|c| c.problem.lock().expect("lock").take());
        if let Some(problem) = problem {
            return RegistryError::Tls {
                host: host.to_string(),
                problem,
                hint: self.tls_hint(host, &certs),
            };
        }
        if detail.contains("CertificateRequired")
            || (detail.contains("alert")
                && [
                    "BadCertificate",
                    "UnknownCA",
                    "CertificateUnknown",
                    "AccessDenied",
                ]
                .iter()
                .any(|a| detail.contains(a)))
        {
            let hint = match &certs.identity {
                Some(id) => format!(
                    "it refused the client certificate {}: check that the registry's clientcas include the CA that signed it",
                    id.cert_path.display()
                ),
                None => format!(
                    "it asks for a client certificate: put client.cert and client.key in {}",
                    self.certs_d_dir(host, &certs).display()
                ),
            };
            let detail = match detail.find("received fatal alert") {
                Some(i) => detail[i..].to_string(),
                None => super::short(&detail),
            };
            return RegistryError::ClientCertificate {
                host: host.to_string(),
                detail,
                hint,
            };
        }
        if detail.contains("certificate") || detail.contains("UnknownIssuer") {
            return RegistryError::Tls {
                host: host.to_string(),
                problem: super::short(&detail),
                hint: self.tls_hint(host, &certs),
            };
        }
        let hint = if !insecure
            && (detail.contains("InvalidContentType")
                || detail.contains("corrupt message")
                || detail.contains("wrong version number"))
        {
            format!("; if it serves plain HTTP, pass --insecure-registry {host}")
        } else if e.is_connect() {
            "; check that it runs and the host and port are right".to_string()
        } else {
            String::new()
        };
        RegistryError::Unreachable {
            host: host.to_string(),
            what: what.to_string(),
            detail: super::short(&detail),
            hint,
        }
    }

    /// Where certs.d files for `host` go: its directory if one was read,
    /// else under the first root.
    fn certs_d_dir(&self, host: &str, certs: &HostCerts) -> PathBuf {
        certs.dir.clone().unwrap_or_else(|| {
            self.options
                .certs_d
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from(tls::DEFAULT_CERTS_D[0]))
                .join(host)
        })
    }

    fn tls_hint(&self, host: &str, certs: &HostCerts) -> String {
        let skip = format!("--insecure-registry {host} skips verification for that host only");
        if certs.sources.is_empty() {
            format!(
                "pass --ca-file FILE with the CA that signed it (or the certificate itself), or put \
                 it in {}/ca.crt; {skip}",
                self.certs_d_dir(host, certs).display()
            )
        } else {
            let given: Vec<String> = certs
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "it was checked against the system's roots and {}; {skip}",
                given.join(", ")
            )
        }
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

    /// The stored credentials for a host; an error when there are some and
    /// the host is reached over plain HTTP off loopback.
    fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        let cached = self.credentials.lock().expect("lock").get(host).cloned();
        let c = match cached {
            Some(c) => c,
            None => {
                let c = auth::lookup(host)?;
                self.credentials
                    .lock()
                    .expect("lock")
                    .insert(host.to_string(), c.clone());
                c
            }
        };
        if c.is_some() && !self.may_send_credentials(host) {
            return Err(RegistryError::PlainHttpCredentials {
                host: host.to_string(),
                asker: host.to_string(),
            });
        }
        Ok(c)
    }

    /// Builds a request and gives it the registry's Authorization only when
    /// its URL is the registry's own origin; returns it with the client that
    /// sends it (the other host's, for a URL elsewhere) and that host.
    fn prepare(
        &self,
        host: &str,
        scopes: &Scopes,
        what: &str,
        base: &str,
        build: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Prepared, RegistryError> {
        let home = self.home(host)?;
        let mut request = build(&home.http, base).build().map_err(|e| {
            RegistryError::Protocol(format!("{what}: cannot make the request: {e}"))
        })?;
        let own = reqwest::Url::parse(base)
            .map(|b| b.origin() == request.url().origin())
            .unwrap_or(false);
        if !own {
            let other = authority(request.url());
            tracing::debug!(
                host,
                other,
                what,
                "a URL on another host: sent without credentials"
            );
            let client = self.host_client(&other, self.insecure(&other))?;
            return Ok(Prepared {
                request,
                sent: None,
                client,
                host: Some(other),
            });
        }
        let sent = self.auth_header(host, scopes)?;
        if let Some(h) = &sent {
            let mut value = HeaderValue::from_str(h).map_err(|_| {
                RegistryError::Protocol(format!("{host}: a credential is not a valid header value"))
            })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Ok(Prepared {
            request,
            sent,
            client: home,
            host: None,
        })
    }

    /// Sends a request built by `build` (called again for each attempt, so a
    /// body is made anew), authenticating as the registry asks and retrying
    /// connection failures, timeouts, 5xx and 429 answers with backoff.
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
            let p = self.prepare(host, scopes, what, &base, build)?;
            let to = p.host.clone();
            let result = p.client.http.execute(p.request);
            let retry_after = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && to.is_some() => {
                    return Err(foreign_refusal(host, to.as_deref(), what));
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated_once => {
                    authenticated_once = true;
                    // The token we sent, if any, is not enough: forget it.
                    tracing::debug!(host, what, sent_token = p.sent.is_some(), "401");
                    self.forget_token(host, scopes, p.sent.as_deref());
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
                        return Err(self.transport_error(to.as_deref().unwrap_or(host), what, &e));
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
            let p = self
                .prepare(host, scopes, what, &base, build)
                .map_err(SendError::Fatal)?;
            let to = p.host.clone();
            match p.client.http.execute(p.request) {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && to.is_some() => {
                    return Err(SendError::Fatal(foreign_refusal(host, to.as_deref(), what)));
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    tracing::debug!(host, what, sent_token = p.sent.is_some(), "401");
                    self.forget_token(host, scopes, p.sent.as_deref());
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
                    return Err(SendError::Fatal(self.transport_error(
                        to.as_deref().unwrap_or(host),
                        what,
                        &e,
                    )))
                }
                Err(e) => {
                    return Err(SendError::Retry {
                        wait: None,
                        error: self.transport_error(to.as_deref().unwrap_or(host), what, &e),
                    })
                }
            }
        }
        Err(SendError::Fatal(RegistryError::Unauthorized {
            host: host.to_string(),
            what: what.to_string(),
            had_credentials: self.credentials(host).map_err(SendError::Fatal)?.is_some(),
        }))
    }

    /// The connect and idle timeout.
    pub fn timeout(&self) -> Duration {
        self.options.timeout
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
        let realm_client = self.host_client(
            &realm_host,
            self.insecure(host) || self.insecure(&realm_host),
        )?;
        let http = &realm_client.http;
        let creds = self.credentials(host)?;
        if creds.is_some() && realm_url.scheme() == "http" && !is_loopback(&realm_host) {
            return Err(RegistryError::PlainHttpCredentials {
                host: realm_host,
                asker: host.to_string(),
            });
        }
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
        .map_err(|e| self.transport_error(&realm_host, "token request", &e))?;
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
        let answer: TokenAnswer = read_json(resp, 1 << 20).map_err(|_| {
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

/// The start of an error body, for a message: at most 4 KiB are read, so
/// an endless body cannot hold the command.
pub fn excerpt(resp: Response) -> String {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let _ = resp.take(MAX_ERROR_BODY).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    if let Some(message) = registry_message(&text) {
        return message;
    }
    let mut t: String = text.trim().chars().take(300).collect();
    if text.trim().chars().count() > 300 || bytes.len() as u64 == MAX_ERROR_BODY {
        t.push('…');
    }
    t
}

/// Reads a JSON body of at most `limit` bytes.
pub fn read_json<T: serde::de::DeserializeOwned>(resp: Response, limit: u64) -> Result<T, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("the answer is over {limit} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// A request ready to go: the client that sends it, and the other host it
/// goes to when it is not the registry's own origin.
struct Prepared {
    request: Request,
    sent: Option<String>,
    client: Arc<HostClient>,
    host: Option<String>,
}

/// The error for a URL on another host that asks for credentials.
fn foreign_refusal(host: &str, other: Option<&str>, what: &str) -> RegistryError {
    RegistryError::Protocol(format!(
        "{what}: {host} sent it to {}, which asks for credentials; assemble sends credentials \
         only to the registry that asked for them ({host}) and its token realm",
        other.unwrap_or("another host")
    ))
}

/// `host[:port]` of a URL, as a registry host is written.
fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map(|(n, _)| n).unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if !n.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// True when a failed HTTPS attempt shows the server speaks TLS (it sent
/// a certificate or an alert), so plain HTTP is not the answer.
fn speaks_tls(e: &reqwest::Error) -> bool {
    let chain = error_chain(e);
    chain.contains("certificate") || chain.contains("alert") || chain.contains("UnknownIssuer")
}

/// True when nothing listens there.
fn refused(e: &reqwest::Error) -> bool {
    e.is_connect() && !e.is_timeout() && error_chain(e).contains("refused")
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

/// The message of a registry error body (`{"errors":[{"code","message"}]}`,
/// as the distribution spec defines it), or None when the body is not one.
fn registry_message(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|x| {
                [x.code.as_deref(), x.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return Some(parts.join("; ").chars().take(300).collect());
        }
    }
    None
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
    fn loopback_is_localhost_127_8_and_ipv6_one_with_or_without_a_port() {
        for h in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.1.2.3:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "192.0.2.1:5000",
            "localhost.example:5000",
            "128.0.0.1",
            "[::2]:5000",
            "registry.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn a_url_is_named_by_its_host_and_explicit_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            authority(&u("http://127.0.0.2:5001/v2/x")),
            "127.0.0.2:5001"
        );
        assert_eq!(authority(&u("https://blobs.example/x?y")), "blobs.example");
        assert_eq!(authority(&u("http://[::1]:5000/")), "[::1]:5000");
    }

    #[test]
    fn registry_error_bodies_give_their_code_and_message() {
        let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        assert_eq!(
            registry_message(body).as_deref(),
            Some("NAME_UNKNOWN: repository name not known to registry")
        );
        assert_eq!(registry_message("  plain text "), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(20), Duration::from_secs(8));
    }
}
