//! The registry: references, credentials, the v2 HTTP client, and push, pull
//! and tag listing on top of it.
//!
//! Written on reqwest rather than oci-client or ocipkg: oci-client treats a
//! mount's 202 as an error, asks tokens for one scope only and fixes its
//! chunk size; ocipkg has no blob HEAD, chunked upload, mount or credential
//! helpers.

pub mod auth;
pub mod client;
pub mod reference;
pub mod tls;
pub mod transfer;

pub use client::{Client, ClientOptions, Scopes};
pub use reference::{Reference, ReferenceError};

/// Failure talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A bad reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Credentials file or helper.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Bad usage (a CA file that is not PEM...).
    #[error("{0}")]
    Usage(String),
    /// The registry cannot be reached.
    #[error("cannot reach registry {host} ({what}): {detail}{hint}")]
    Unreachable {
        /// Host.
        host: String,
        /// The request.
        what: String,
        /// The transport error.
        detail: String,
        /// What to do.
        hint: String,
    },
    /// TLS verification failed.
    #[error("the TLS certificate of registry {host} was refused: {problem}; {hint}")]
    Tls {
        /// Host.
        host: String,
        /// What was wrong with the certificate.
        problem: String,
        /// What to do, given what was already given for that host.
        hint: String,
    },
    /// The registry refused the TLS handshake for want of a client certificate.
    #[error("registry {host} refused the TLS connection ({detail}): {hint}")]
    ClientCertificate {
        /// Host.
        host: String,
        /// The TLS error.
        detail: String,
        /// What to do.
        hint: String,
    },
    /// A request got no answer, or no more bytes, in time.
    #[error(
        "registry {host} did not answer {what} within {seconds} s (--timeout {seconds}); check \
         that it is up and reachable, or allow more time with --timeout SECONDS"
    )]
    Timeout {
        /// Host.
        host: String,
        /// The request.
        what: String,
        /// The timeout.
        seconds: u64,
    },
    /// Credentials would have gone over plain HTTP to a host off loopback.
    #[error(
        "{asker} asks for credentials, and {host} is reached over plain HTTP: assemble sends \
         credentials over plain HTTP only to loopback; serve it over HTTPS (--insecure-registry \
         {host} also accepts a certificate that cannot be verified)"
    )]
    PlainHttpCredentials {
        /// Where they would have gone.
        host: String,
        /// The registry that asked.
        asker: String,
    },
    /// Authentication failed.
    #[error("registry {host} refused {what}: {}", if *.had_credentials { "the credentials for it were not accepted; check them, or log in again with `assemble login`" } else { "it needs credentials: log in with `assemble login HOST -u USER --password-stdin` or add them to your Docker config" })]
    Unauthorized {
        /// Host.
        host: String,
        /// What was refused.
        what: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// An unexpected HTTP status.
    #[error("{what} failed with HTTP {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Status {
        /// The request.
        what: String,
        /// Status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The registry broke the protocol (wrong digest, bad header...).
    #[error("{0}")]
    Protocol(String),
    /// Local file failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Layout failure.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
}

impl RegistryError {
    /// 2 for bad references and usage, 1 otherwise.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RegistryError::Reference(_)
                | RegistryError::Usage(_)
                | RegistryError::Auth(
                    auth::AuthError::Config { .. }
                        | auth::AuthError::Store { .. }
                        | auth::AuthError::Write(_)
                )
        )
    }
}

/// Remembers that `repo` of `host` holds these blobs, for later mounts.
pub fn remember(
    cache: &crate::cache::Cache,
    host: &str,
    repo: &str,
    digests: &[crate::digest::Digest],
) {
    let key = host.replace([':', '/'], "_");
    let mut known: std::collections::BTreeMap<String, String> =
        cache.get_json("registry", &key).unwrap_or_default();
    for d in digests {
        known.insert(d.to_string(), repo.to_string());
    }
    // Losing a record to a race only costs an upload later.
    let _ = cache.put_json("registry", &key, &known);
}

/// Repositories of `host` known to hold any of these blobs.
pub fn known_sources(
    cache: &crate::cache::Cache,
    host: &str,
    digests: &[crate::digest::Digest],
) -> Vec<String> {
    let key = host.replace([':', '/'], "_");
    let known: std::collections::BTreeMap<String, String> =
        cache.get_json("registry", &key).unwrap_or_default();
    let mut v: Vec<String> = digests
        .iter()
        .filter_map(|d| known.get(&d.to_string()).cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// An error chain without the repetitions reqwest adds at each level.
pub(crate) fn short(s: &str) -> String {
    // Keep the message to the point: reqwest repeats the URL at each level.
    let mut out: Vec<&str> = Vec::new();
    for part in s.split(": ") {
        if !out.contains(&part) {
            out.push(part);
        }
    }
    out.join(": ")
}
