//! Reading registry answers: bounded bodies, error messages, when to retry.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::registry::error::{BodyError, RegistryError};

/// Largest error body read for a message.
const MAX_ERROR_BODY: u64 = 4096;

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

/// The wait a `Retry-After` header asks for (seconds, at most a minute).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

/// The start of an error body, for a message: at most 4 KiB are read, so
/// an endless body cannot hold the command.
pub fn excerpt(resp: Response) -> String {
    let mut bytes = Vec::new();
    let _ = resp.take(MAX_ERROR_BODY).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    if let Some(message) = registry_message(&text) {
        return without_controls(&message);
    }
    let text = without_controls(&text);
    let mut t: String = text.trim().chars().take(300).collect();
    if text.trim().chars().count() > 300 || bytes.len() as u64 == MAX_ERROR_BODY {
        t.push('…');
    }
    t
}

/// A registry's words as they may reach a terminal: every control
/// character (an escape sequence, a carriage return), raw or decoded from
/// JSON, a space.
fn without_controls(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The answer itself when its status is a success, else the error naming
/// `what` with the status and the start of the body.
pub fn successful(resp: Response, what: String) -> Result<Response, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(RegistryError::Status {
        what,
        status: resp.status().as_u16(),
        body: excerpt(resp),
    })
}

/// Reads a body of at most `limit` bytes.
pub fn read_bounded(resp: impl Read, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(BodyError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(bytes)
}

/// Reads a JSON body of at most `limit` bytes.
pub fn read_json<T: serde::de::DeserializeOwned>(
    resp: Response,
    limit: u64,
) -> Result<T, BodyError> {
    serde_json::from_slice(&read_bounded(resp, limit)?).map_err(BodyError::Json)
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
    let e = serde_json::from_str::<Errors>(body).ok()?;
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
    (!parts.is_empty()).then(|| parts.join("; ").chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_message_reaches_no_terminal_with_control_characters() {
        let body = r#"{"errors":[{"code":"DENIED","message":"no\u001b[2Jway\r"}]}"#;
        let m = registry_message(body).unwrap();
        assert!(m.contains('\u{1b}'), "the JSON's escape is decoded: {m:?}");
        assert_eq!(without_controls(&m), "DENIED: no [2Jway ");
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
