//! Reaching registry hosts: one HTTP client per host with its TLS
//! configuration (system roots, `--ca-file`, certs.d), the scheme each host
//! speaks (HTTPS, or plain HTTP where allowed), and errors that say what was
//! wrong with a connection and what to do about it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::blocking::Client as Http;
use rustls::pki_types::CertificateDer;

use crate::registry::error::RegistryError;
use crate::registry::tls::{self, HostCerts};
use crate::registry::{short, ClientOptions};

/// How long a connection may take to open, and a request may wait for an
/// answer or for the next bytes of a body, unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client of one host (its TLS settings), with what the messages
/// about it need.
pub(super) struct HostClient {
    /// The client.
    pub(super) http: Http,
    certs: HostCerts,
    /// The reason the verifier last refused a certificate of this host.
    problem: tls::Problem,
}

/// The HTTP clients of the hosts met so far, and the scheme each speaks.
pub(super) struct Hosts {
    insecure: Vec<String>,
    ca_file: Option<PathBuf>,
    ca_certs: Vec<CertificateDer<'static>>,
    certs_d: Vec<PathBuf>,
    timeout: Duration,
    provider: Arc<rustls::crypto::CryptoProvider>,
    system_roots: OnceLock<Vec<CertificateDer<'static>>>,
    /// One HTTP client per (host, insecure): certs.d is per host.
    clients: Mutex<HashMap<(String, bool), Arc<HostClient>>>,
    schemes: Mutex<HashMap<String, &'static str>>,
    /// Held while a scheme is probed, so that parallel requests wait for the
    /// probe's result instead of each probing (and each racing for the
    /// reason a certificate was refused).
    probing: Mutex<()>,
}

impl Hosts {
    /// Reads the CA file now, so a bad one fails before any request.
    pub(super) fn new(options: &ClientOptions) -> Result<Self, RegistryError> {
        let ca_certs = match &options.ca_file {
            Some(ca) => tls::read_pem_certificates(ca).map_err(|e| RegistryError::CaFile {
                path: ca.clone(),
                source: Box::new(e),
            })?,
            None => Vec::new(),
        };
        Ok(Self {
            insecure: options.insecure.clone(),
            ca_file: options.ca_file.clone(),
            ca_certs,
            certs_d: options.certs_d.clone(),
            timeout: options.timeout,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            system_roots: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            probing: Mutex::new(()),
        })
    }

    /// True for a host named by `--insecure-registry`.
    pub(super) fn insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// The connect and idle timeout.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client for a host, built on first use: its TLS trusts the system's
    /// roots, `--ca-file` and the host's certs.d directory, and presents the
    /// client certificate found there. Every request gets the connect
    /// timeout, a timeout for its answer and for each read of its body (an
    /// idle timeout: a body keeps streaming while bytes come), and
    /// `TCP_USER_TIMEOUT`, which cuts a connection whose sent data stays
    /// unacknowledged, or unsendable because the peer stopped reading, for as
    /// long.
    pub(super) fn client(
        &self,
        host: &str,
        insecure: bool,
    ) -> Result<Arc<HostClient>, RegistryError> {
        let key = (host.to_string(), insecure);
        if let Some(c) = self.clients.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let mut certs = tls::read_certs_d(&self.certs_d, host)?;
        if let Some(ca) = &self.ca_file {
            certs.trusted.splice(0..0, self.ca_certs.iter().cloned());
            certs.sources.insert(0, ca.clone());
        }
        let roots = self.system_roots.get_or_init(tls::system_roots);
        let (config, problem) = tls::client_config(&self.provider, roots, &certs, insecure)?;
        let t = self.timeout;
        let http = Http::builder()
            .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(config)
            .connect_timeout(t)
            .timeout(t)
            .tcp_user_timeout(t)
            .build()
            .map_err(|source| RegistryError::HttpSetup {
                host: host.to_string(),
                source,
            })?;
        let client = Arc::new(HostClient {
            http,
            certs,
            problem,
        });
        self.clients
            .lock()
            .expect("lock")
            .insert(key, client.clone());
        Ok(client)
    }

    /// The client of a registry host, with its own `--insecure-registry` setting.
    pub(super) fn home(&self, host: &str) -> Result<Arc<HostClient>, RegistryError> {
        self.client(host, self.insecure(host))
    }

    /// `https://host`, or `http://host` for a host that does not speak TLS
    /// and is named by `--insecure-registry` or on loopback (as docker and
    /// go-containerregistry do): those are tried over HTTPS first.
    pub(super) fn base_url(&self, host: &str) -> Result<String, RegistryError> {
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
    pub(super) fn may_send_credentials(&self, host: &str) -> bool {
        let plain = self.schemes.lock().expect("lock").get(host) == Some(&"http");
        !plain || is_loopback(host)
    }

    /// Turns a transport error into a message that says what was wrong and
    /// what to do.
    pub fn transport_error(&self, host: &str, what: &str, e: &reqwest::Error) -> RegistryError {
        let detail = error_chain(e);
        let insecure = self.insecure(host);
        let host_client = self
            .clients
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
                seconds: self.timeout.as_secs(),
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
        if refuses_client_certificate(&detail) {
            return self.client_certificate_error(host, &detail, &certs);
        }
        if detail.contains("certificate") || detail.contains("UnknownIssuer") {
            return RegistryError::Tls {
                host: host.to_string(),
                problem: short(&detail),
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
            detail: short(&detail),
            hint,
        }
    }

    /// Where certs.d files for `host` go: its directory if one was read,
    /// else under the first root.
    fn certs_d_dir(&self, host: &str, certs: &HostCerts) -> PathBuf {
        certs.dir.clone().unwrap_or_else(|| {
            self.certs_d
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from(tls::DEFAULT_CERTS_D[0]))
                .join(host)
        })
    }

    /// What to do about a refused server certificate, given what was
    /// already given for the host.
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

    /// The error for a handshake the registry ended over the client
    /// certificate: none was given, or it was refused.
    fn client_certificate_error(
        &self,
        host: &str,
        detail: &str,
        certs: &HostCerts,
    ) -> RegistryError {
        let hint = match &certs.identity {
            Some(id) => format!(
                "it refused the client certificate {}: check that the registry's clientcas include the CA that signed it",
                id.cert_path.display()
            ),
            None => format!(
                "it asks for a client certificate: put client.cert and client.key in {}",
                self.certs_d_dir(host, certs).display()
            ),
        };
        let detail = match detail.find("received fatal alert") {
            Some(i) => detail[i..].to_string(),
            None => short(detail),
        };
        RegistryError::ClientCertificate {
            host: host.to_string(),
            detail,
            hint,
        }
    }
}

/// True when a handshake failed over the client certificate: the registry
/// asked for one, or refused the one given.
fn refuses_client_certificate(detail: &str) -> bool {
    detail.contains("CertificateRequired")
        || (detail.contains("alert")
            && [
                "BadCertificate",
                "UnknownCA",
                "CertificateUnknown",
                "AccessDenied",
            ]
            .iter()
            .any(|a| detail.contains(a)))
}

/// `host[:port]` of a URL, as a registry host is written.
pub(super) fn authority(url: &reqwest::Url) -> String {
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

/// True for errors a retry cannot mend: TLS and protocol failures.
pub(super) fn is_tls_or_protocol(e: &reqwest::Error) -> bool {
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
}
