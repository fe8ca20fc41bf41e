//! Authentication towards registries: what each host asked for (Basic or
//! Bearer), the credentials for it, and Bearer tokens with every scope an
//! operation needs, reused until they expire.
//!
//! Credentials go only to the registry that asked for them and to its token
//! realm, and never over plain HTTP to a host off loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use crate::registry::auth::{self, Credentials};
use crate::registry::error::RegistryError;
use crate::registry::hosts::{is_loopback, Hosts};
use crate::registry::response::{excerpt, read_json};
use crate::sandbox::Runner;

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

    /// Pull and delete access to one repository: `delete` is the action
    /// CNCF distribution (2.7 and later) checks for `DELETE` requests, and
    /// the one its token scope documentation lists beside `pull`, `push`
    /// and `*`.
    pub fn delete(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull,delete")])
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// A bearer token and when it stops being usable.
#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
    /// What a JWT token says it grants (its `access` claim), when it is
    /// one; None for an opaque token.
    granted: Option<Vec<Access>>,
}

/// One entry of a token's `access` claim (the distribution token spec).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

/// The `access` claim of a JWT, read without checking its signature (the
/// registry checks it; this only decides whether to try a write). None
/// when the token is not a JWT or has no such claim.
fn granted(token: &str) -> Option<Vec<Access>> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        access: Option<Vec<Access>>,
    }
    serde_json::from_slice::<Claims>(&bytes).ok()?.access
}

/// Whether `granted` holds every action of every `repository:NAME:ACTIONS`
/// scope.
fn grants_all(granted: &[Access], scopes: &Scopes) -> bool {
    scopes.0.iter().all(|scope| {
        let mut it = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) = (it.next(), it.next(), it.next())
        else {
            return false;
        };
        actions.split(',').all(|action| {
            granted.iter().any(|a| {
                a.kind == "repository"
                    && a.name == name
                    && a.actions.iter().any(|g| g == action || g == "*")
            })
        })
    })
}

/// What the registry asked for last time, per host.
#[derive(Clone)]
enum AuthMode {
    Basic,
    Bearer { realm: String, service: String },
}

/// Credentials and tokens of the hosts met so far.
pub(super) struct Authenticator {
    modes: Mutex<HashMap<String, AuthMode>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Held while a token is fetched, so parallel requests wait for it
    /// instead of each asking for one.
    token_fetch: Mutex<()>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    /// Runs credential helpers.
    runner: Arc<dyn Runner>,
}

impl Authenticator {
    /// No host met yet; credential helpers run through `runner`.
    pub(super) fn new(runner: Arc<dyn Runner>) -> Self {
        Self {
            modes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: Mutex::new(()),
            credentials: Mutex::new(HashMap::new()),
            runner,
        }
    }

    /// Forgets the cached token for these scopes, but only if it is the one
    /// that was refused: a request sent before any token existed must not
    /// throw away the token another thread has just fetched.
    pub(super) fn forget_token(&self, host: &str, scopes: &Scopes, sent: Option<&str>) {
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
    pub(super) fn use_credentials(&self, host: &str, username: &str, password: &str) {
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
    pub(super) fn credentials(
        &self,
        host: &str,
        hosts: &Hosts,
    ) -> Result<Option<Credentials>, RegistryError> {
        let cached = self.credentials.lock().expect("lock").get(host).cloned();
        let c = match cached {
            Some(c) => c,
            None => {
                let c = auth::lookup(host, self.runner.as_ref())?;
                self.credentials
                    .lock()
                    .expect("lock")
                    .insert(host.to_string(), c.clone());
                c
            }
        };
        if c.is_some() && !hosts.may_send_credentials(host) {
            return Err(RegistryError::PlainHttpCredentials {
                host: host.to_string(),
                asker: host.to_string(),
            });
        }
        Ok(c)
    }

    /// Records what a 401's `WWW-Authenticate` asks for.
    pub(super) fn learn_challenge(
        &self,
        host: &str,
        headers: &HeaderMap,
    ) -> Result<(), RegistryError> {
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

    /// The `Authorization` value for a request to `host` with these scopes,
    /// as the host last asked (none before it asked).
    pub(super) fn header(
        &self,
        host: &str,
        scopes: &Scopes,
        hosts: &Hosts,
    ) -> Result<Option<String>, RegistryError> {
        let mode = self.modes.lock().expect("lock").get(host).cloned();
        match mode {
            None => Ok(None),
            Some(AuthMode::Basic) => {
                let c =
                    self.credentials(host, hosts)?
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
                let token = self.fetch_token(host, &realm, &service, scopes, hosts)?;
                let header = format!("Bearer {}", token.value);
                self.tokens.lock().expect("lock").insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Whether `host` grants these scopes, when it can be told before any
    /// request needs them: the `access` claim of the token it gives for
    /// them (None: Basic or no authentication, or an opaque token; a token
    /// refused for them is `Some(false)`).
    pub(super) fn grants(
        &self,
        host: &str,
        scopes: &Scopes,
        hosts: &Hosts,
    ) -> Result<Option<bool>, RegistryError> {
        if !matches!(
            self.modes.lock().expect("lock").get(host),
            Some(AuthMode::Bearer { .. })
        ) {
            return Ok(None);
        }
        match self.header(host, scopes, hosts) {
            Ok(_) => {}
            Err(RegistryError::Unauthorized { .. }) => return Ok(Some(false)),
            Err(e) => return Err(e),
        }
        let key = (host.to_string(), scopes.key());
        let tokens = self.tokens.lock().expect("lock");
        Ok(tokens
            .get(&key)
            .and_then(|t| t.granted.as_ref())
            .map(|g| grants_all(g, scopes)))
    }

    /// Asks the realm for a token: with the refresh token of an identity
    /// token (OAuth2 POST), else with Basic credentials or anonymously (GET).
    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: &str,
        scopes: &Scopes,
        hosts: &Hosts,
    ) -> Result<Token, RegistryError> {
        let realm_url = reqwest::Url::parse(realm).map_err(|_| {
            RegistryError::Protocol(format!("{host}'s token realm {realm:?} is not a URL"))
        })?;
        let realm_host = realm_url.host_str().unwrap_or("").to_string()
            + &realm_url
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
        let realm_client = hosts.client(
            &realm_host,
            hosts.insecure(host) || hosts.insecure(&realm_host),
        )?;
        let http = &realm_client.http;
        let creds = self.credentials(host, hosts)?;
        if creds.is_some() && realm_url.scheme() == "http" && !is_loopback(&realm_host) {
            return Err(RegistryError::PlainHttpCredentials {
                host: realm_host,
                asker: host.to_string(),
            });
        }
        let resp = match &creds {
            Some(c) if c.identity_token => {
                let form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", c.secret.clone()),
                    ("service", service.to_string()),
                    ("client_id", "assemble".to_string()),
                    ("scope", scopes.0.join(" ")),
                ];
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
        .map_err(|e| hosts.transport_error(&realm_host, "token request", &e))?;
        read_token(resp, host, &realm_host, scopes, creds.is_some())
    }
}

/// The token in a token server's answer.
fn read_token(
    resp: Response,
    host: &str,
    realm_host: &str,
    scopes: &Scopes,
    had_credentials: bool,
) -> Result<Token, RegistryError> {
    if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            host: host.to_string(),
            what: format!("a token for {}", scopes.0.join(" ")),
            had_credentials,
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
        granted: granted(&value),
        value,
        expires: Instant::now() + Duration::from_secs(life.saturating_sub(5)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        use base64::Engine as _;
        let e = |b: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!("{}.{}.{}", e(r#"{"alg":"RS256"}"#), e(claims), e("sig"))
    }

    #[test]
    fn a_jwt_tells_what_it_grants_and_an_opaque_token_does_not() {
        let pull_only =
            jwt(r#"{"access":[{"type":"repository","name":"team/cache","actions":["pull"]}]}"#);
        let g = granted(&pull_only).unwrap();
        assert!(grants_all(&g, &Scopes::pull("team/cache")));
        assert!(!grants_all(&g, &Scopes::push("team/cache", &[])));
        assert!(!grants_all(&g, &Scopes::pull("team/other")));
        let star = jwt(r#"{"access":[{"type":"repository","name":"team/cache","actions":["*"]}]}"#);
        assert!(grants_all(
            &granted(&star).unwrap(),
            &Scopes::push("team/cache", &[])
        ));
        assert_eq!(granted("an-opaque-token"), None);
        assert_eq!(granted(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(granted("a.b.c.d"), None);
    }

    #[test]
    fn delete_scopes_ask_for_pull_and_delete_only() {
        assert_eq!(
            Scopes::delete("team/app/cache").0,
            ["repository:team/app/cache:pull,delete"]
        );
    }

    #[test]
    fn push_scopes_include_pull_on_mount_sources() {
        let s = Scopes::push("team/app", &["team/base".into(), "team/app".into()]);
        assert_eq!(
            s.0,
            ["repository:team/app:pull,push", "repository:team/base:pull"]
        );
    }
}
