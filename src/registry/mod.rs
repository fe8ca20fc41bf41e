//! Registries, as the distribution spec defines them: references,
//! credentials, TLS per host (certs.d, `--ca-file`), the v2 HTTP client
//! (timeouts, retries, tokens, credentials only to the registry that asked)
//! and [`Repository`], one repository's operations (blob HEAD, mount,
//! upload, manifests read, written and deleted, tags).
//!
//! This module moves bytes and knows no image: what to push or pull, and in
//! what order, is [`crate::image::remote`]'s. It reads no cache and writes
//! only the credentials file (`assemble login`) and the temporary files it
//! is given.
//!
//! Written on reqwest rather than oci-client or ocipkg: oci-client treats a
//! mount's 202 as an error, asks tokens for one scope only and fixes its
//! chunk size; ocipkg has no blob HEAD, chunked upload, mount or credential
//! helpers.

pub mod auth;
pub mod client;
mod error;
mod hosts;
pub mod reference;
pub mod repository;
mod response;
pub mod tls;
mod token;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::Client;
pub use error::{BodyError, RegistryError};
pub use hosts::{error_chain, is_loopback};
pub use reference::{Reference, ReferenceError};
pub use repository::{Deletion, Repository};
pub use response::{backoff, SendError};
pub use token::Scopes;

use crate::sandbox::{HostOnly, Runner};

/// How the client reaches registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Hosts reached over plain HTTP or unverified TLS (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) trusted besides the system's (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Attempts per request before giving up.
    pub attempts: u32,
    /// Connect and idle timeout (`--timeout`); zero means 60 seconds.
    pub timeout: Duration,
    /// certs.d roots searched for a host's directory ([`tls::certs_d_roots`]).
    pub certs_d: Vec<PathBuf>,
    /// Runs credential helpers.
    pub runner: Arc<dyn Runner>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            ca_file: None,
            attempts: 0,
            timeout: Duration::ZERO,
            certs_d: Vec::new(),
            runner: Arc::new(HostOnly),
        }
    }
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
