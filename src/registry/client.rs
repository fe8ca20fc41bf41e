//! The Distribution v2 HTTP client: requests to a registry, authenticated
//! as it asks (anonymous, Basic, Bearer tokens: `token.rs`) over the
//! connection each host needs (`hosts.rs`), with timeouts and retries with
//! backoff.
//!
//! Credentials and tokens go only to the registry that asked for them (the
//! exact origin of its base URL) and to its token realm: a request whose URL
//! is elsewhere (an upload `Location` on another host, a redirect) is sent
//! without them. They never go over plain HTTP to a host that is not on
//! loopback.

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client as Http, Request, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;

use crate::registry::error::RegistryError;
use crate::registry::hosts::{authority, is_tls_or_protocol, HostClient, Hosts, DEFAULT_TIMEOUT};
use crate::registry::response::{backoff, excerpt, retry_after, SendError};
use crate::registry::token::{Authenticator, Scopes};
use crate::registry::ClientOptions;

/// An upload may take, besides the timeout, one second per this many bytes
/// it sends or commits: reqwest's blocking client bounds a request and its
/// body as a whole, and a slow link must not fail a large blob that keeps
/// moving (a stalled one is cut sooner: see `TCP_USER_TIMEOUT` in
/// `hosts.rs`).
const UPLOAD_FLOOR_BYTES_PER_SECOND: u64 = 256 << 10;

/// The registry client, shared by the threads of one push or pull.
pub struct Client {
    hosts: Hosts,
    auth: Authenticator,
    attempts: u32,
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
        Ok(Self {
            hosts: Hosts::new(&options)?,
            auth: Authenticator::new(options.runner.clone()),
            attempts: options.attempts,
        })
    }

    /// The time an upload of `bytes` may take: the timeout, plus a second
    /// per 256 KiB.
    pub fn upload_timeout(&self, bytes: u64) -> Duration {
        self.hosts.timeout() + Duration::from_secs(bytes / UPLOAD_FLOOR_BYTES_PER_SECOND)
    }

    /// `https://host`, or `http://host` for a host that does not speak TLS
    /// and is named by `--insecure-registry` or on loopback.
    pub fn base_url(&self, host: &str) -> Result<String, RegistryError> {
        self.hosts.base_url(host)
    }

    /// The connect and idle timeout.
    pub fn timeout(&self) -> Duration {
        self.hosts.timeout()
    }

    /// Attempts allowed per operation.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether `host` grants these scopes, when that can be told before a
    /// request needs them (a JWT token's `access` claim; None otherwise).
    /// The host must have been asked something before, so that its
    /// authentication is known.
    pub fn grants(&self, host: &str, scopes: &Scopes) -> Result<Option<bool>, RegistryError> {
        self.auth.grants(host, scopes, &self.hosts)
    }

    /// Uses these credentials for a host instead of the stored ones (login).
    pub fn use_credentials(&self, host: &str, username: &str, password: &str) {
        self.auth.use_credentials(host, username, password);
    }

    /// Checks credentials against a registry: `GET /v2/` with them must
    /// succeed (for a token registry, a token must be granted).
    pub fn check_login(
        &self,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        self.use_credentials(host, username, password);
        let resp = self.send(host, &Scopes::default(), "login", &|http, base| {
            http.get(format!("{base}/v2/"))
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(RegistryError::Status {
                what: format!("login to {host}"),
                status: resp.status().as_u16(),
                body: String::new(),
            })
        }
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
        let home = self.hosts.home(host)?;
        let mut request =
            build(&home.http, base)
                .build()
                .map_err(|source| RegistryError::Request {
                    what: what.to_string(),
                    source,
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
            let client = self.hosts.client(&other, self.hosts.insecure(&other))?;
            return Ok(Prepared {
                request,
                sent: None,
                client,
                host: Some(other),
            });
        }
        let sent = self.auth.header(host, scopes, &self.hosts)?;
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
        let base = self.hosts.base_url(host)?;
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
                    self.auth.forget_token(host, scopes, p.sent.as_deref());
                    self.auth.learn_challenge(host, resp.headers())?;
                    attempt -= 1;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(RegistryError::Unauthorized {
                        host: host.to_string(),
                        what: what.to_string(),
                        had_credentials: self.auth.credentials(host, &self.hosts)?.is_some(),
                    });
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    let wait = retry_after(resp.headers());
                    let status = resp.status();
                    if attempt >= self.attempts {
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
                    if attempt >= self.attempts || is_tls_or_protocol(&e) {
                        return Err(self.hosts.transport_error(
                            to.as_deref().unwrap_or(host),
                            what,
                            &e,
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
        let base = self.hosts.base_url(host).map_err(SendError::Fatal)?;
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
                    self.auth.forget_token(host, scopes, p.sent.as_deref());
                    self.auth
                        .learn_challenge(host, resp.headers())
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
                    return Err(SendError::Fatal(self.hosts.transport_error(
                        to.as_deref().unwrap_or(host),
                        what,
                        &e,
                    )))
                }
                Err(e) => {
                    return Err(SendError::Retry {
                        wait: None,
                        error: self
                            .hosts
                            .transport_error(to.as_deref().unwrap_or(host), what, &e),
                    })
                }
            }
        }
        Err(SendError::Fatal(RegistryError::Unauthorized {
            host: host.to_string(),
            what: what.to_string(),
            had_credentials: self
                .auth
                .credentials(host, &self.hosts)
                .map_err(SendError::Fatal)?
                .is_some(),
        }))
    }
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
