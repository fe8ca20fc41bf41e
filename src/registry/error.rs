//! What can go wrong talking to a registry.

use std::path::PathBuf;

use crate::registry::auth::AuthError;
use crate::registry::reference::ReferenceError;
use crate::registry::tls::TlsError;

/// Failure talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A bad reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Credentials file or helper.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Certificates or keys given for a host cannot be used.
    #[error(transparent)]
    Certificates(#[from] TlsError),
    /// The `--ca-file` cannot be used.
    #[error("--ca-file {path} cannot be used")]
    CaFile {
        /// The file.
        path: PathBuf,
        #[source]
        source: Box<TlsError>,
    },
    /// The HTTP client could not be set up with the TLS configuration.
    #[error("cannot set up TLS for registry {host}")]
    HttpSetup {
        /// The host.
        host: String,
        #[source]
        source: reqwest::Error,
    },
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
    /// A request could not be made (a URL the registry gave is not usable).
    #[error("{what}: cannot make the request")]
    Request {
        /// The request.
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer's body is not what was expected.
    #[error("{what}: the answer cannot be used")]
    Body {
        /// The request.
        what: String,
        #[source]
        source: BodyError,
    },
    /// An answer is larger than assemble accepts.
    #[error("{what} is over {limit} bytes")]
    TooLarge {
        /// The request.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A blob stopped arriving, and retries are spent.
    #[error("{what}: the download broke")]
    BrokenDownload {
        /// The blob.
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Local file failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// True for bad references, credentials files and certificates (exit
    /// 2); a registry that fails or refuses is exit 1.
    pub fn is_bad_input(&self) -> bool {
        match self {
            RegistryError::Reference(_)
            | RegistryError::Certificates(_)
            | RegistryError::CaFile { .. }
            | RegistryError::HttpSetup { .. } => true,
            RegistryError::Auth(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// A body that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading it failed.
    #[error("reading it failed")]
    Io(#[source] std::io::Error),
    /// It is larger than accepted.
    #[error("the answer is over {0} bytes")]
    TooLarge(u64),
    /// It is not the JSON expected.
    #[error("it is not the JSON expected")]
    Json(#[source] serde_json::Error),
}
