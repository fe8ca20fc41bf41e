//! One blob upload of the distribution spec: the whole blob in one PUT, or
//! PATCH chunks that resume from the registry's offset after a failure,
//! then the final PUT.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reqwest::blocking::{Body, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;

use crate::digest::Digest;
use crate::output::Transfer;
use crate::registry::client::Client;
use crate::registry::error::RegistryError;
use crate::registry::response::{backoff, excerpt, SendError};
use crate::registry::token::Scopes;

/// The URL a `Location` names: relative to the registry, or absolute, on
/// whatever host it names (the client sends credentials only to the
/// registry's own origin).
pub(super) fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

/// `url` with one more query parameter, its value percent-encoded.
pub(super) fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let value: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{url}{sep}{key}={value}")
}

/// The `Location` of an answer, which the protocol requires.
pub(super) fn location_of(resp: &Response, what: &str) -> Result<String, RegistryError> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            RegistryError::Protocol(format!(
                "{what}: the registry answered {} without a Location header",
                resp.status()
            ))
        })
}

/// `len` bytes of the file from `offset`, counted into `progress` as they go.
fn file_part(
    path: &Path,
    offset: u64,
    len: u64,
    progress: &Transfer,
) -> Result<Body, RegistryError> {
    let io_err = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    progress.restart_at(offset);
    Ok(Body::sized(
        Counted {
            inner: f.take(len),
            progress: progress.clone(),
        },
        len,
    ))
}

/// A reader that reports what it reads to a progress bar.
struct Counted<R> {
    inner: R,
    progress: Transfer,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// The final status of an upload: done, or a session to start again.
fn finish_status(resp: Response, what: &str) -> Result<(), SendError> {
    match resp.status() {
        StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
        // The session is gone (a lost answer to an earlier PUT): start again,
        // unless the blob is there, which the caller checks.
        StatusCode::NOT_FOUND => Err(SendError::Retry {
            wait: None,
            error: RegistryError::Status {
                what: what.to_string(),
                status: 404,
                body: String::new(),
            },
        }),
        s => Err(SendError::Fatal(RegistryError::Status {
            what: what.to_string(),
            status: s.as_u16(),
            body: excerpt(resp),
        })),
    }
}

/// The next byte the registry expects, from its `Range: 0-N` answer.
fn next_offset(resp: &Response) -> Option<u64> {
    let r = resp.headers().get(RANGE)?.to_str().ok()?;
    let end = r
        .trim()
        .trim_start_matches("bytes=")
        .split_once('-')?
        .1
        .parse::<u64>()
        .ok()?;
    Some(end + 1)
}

/// One blob being uploaded.
pub(super) struct Upload<'a> {
    pub(super) client: &'a Client,
    pub(super) host: &'a str,
    pub(super) scopes: &'a Scopes,
    pub(super) base: &'a str,
    pub(super) path: PathBuf,
    pub(super) digest: &'a Digest,
    pub(super) size: u64,
    pub(super) progress: &'a Transfer,
}

impl Upload<'_> {
    /// Sends a request with a part of the file as its body; a file that
    /// cannot be read is a fatal error, never a retry.
    fn send_part(
        &self,
        what: &str,
        offset: u64,
        len: u64,
        request: &dyn Fn(&reqwest::blocking::Client, Body) -> reqwest::blocking::RequestBuilder,
    ) -> Result<Response, SendError> {
        let body_error: Mutex<Option<RegistryError>> = Mutex::new(None);
        let result = self
            .client
            .send_once(self.host, self.scopes, what, &|http, _| {
                let body = file_part(&self.path, offset, len, self.progress).unwrap_or_else(|e| {
                    *body_error.lock().expect("lock") = Some(e);
                    Body::from(Vec::new())
                });
                request(http, body)
            });
        if let Some(e) = body_error.into_inner().expect("lock") {
            return Err(SendError::Fatal(e));
        }
        result
    }

    /// The whole blob in one PUT.
    pub(super) fn whole(&self, location: &str) -> Result<(), SendError> {
        let url = with_query(location, "digest", &self.digest.to_string());
        let what = format!("upload of {}", self.digest);
        let resp = self.send_part(&what, 0, self.size, &|http, body| {
            http.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, self.size)
                .timeout(self.client.upload_timeout(self.size))
                .body(body)
        })?;
        finish_status(resp, &what)
    }

    /// PATCH chunks, resuming from the registry's offset after a failure,
    /// then the final PUT.
    pub(super) fn chunks(&self, mut location: String, chunk: u64) -> Result<(), SendError> {
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < self.size {
            let len = chunk.min(self.size - offset);
            let what = format!("chunk {offset}-{} of {}", offset + len - 1, self.digest);
            let result = self.send_part(&what, offset, len, &|http, body| {
                http.patch(&location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .timeout(self.client.upload_timeout(len))
                    .body(body)
            });
            match result {
                Ok(resp)
                    if resp.status() == StatusCode::ACCEPTED
                        || resp.status() == StatusCode::NO_CONTENT =>
                {
                    if let Ok(l) = location_of(&resp, &what) {
                        location = absolute(self.base, &l);
                    }
                    offset = next_offset(&resp).unwrap_or(offset + len);
                    failures = 0;
                }
                Ok(resp) => return Err(chunk_refused(resp, what)),
                Err(SendError::Retry { wait, error }) => {
                    failures += 1;
                    if failures >= self.client.attempts() {
                        return Err(SendError::Fatal(error));
                    }
                    std::thread::sleep(wait.unwrap_or_else(|| backoff(failures)));
                    if let Some(resumed) = self.resume(&mut location, error)? {
                        offset = resumed;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.commit(&location)
    }

    /// Asks where the upload stands after a failed chunk: the offset to
    /// resume from (None when the question itself failed and may be asked
    /// again after the next chunk), or a new session when it is gone.
    fn resume(
        &self,
        location: &mut String,
        error: RegistryError,
    ) -> Result<Option<u64>, SendError> {
        // Resume where the registry says it is, not from zero.
        match self
            .client
            .send_once(self.host, self.scopes, "upload status", &|http, _| {
                http.get(location.as_str())
            }) {
            Ok(resp) if resp.status() == StatusCode::NO_CONTENT || resp.status().is_success() => {
                let offset = next_offset(&resp).unwrap_or(0);
                if let Ok(l) = location_of(&resp, "upload status") {
                    *location = absolute(self.base, &l);
                }
                Ok(Some(offset))
            }
            Ok(_) => Err(SendError::Retry { wait: None, error }),
            Err(SendError::Fatal(e)) => Err(SendError::Fatal(e)),
            Err(SendError::Retry { .. }) => Ok(None),
        }
    }

    /// The final PUT of a chunked upload.
    fn commit(&self, location: &str) -> Result<(), SendError> {
        let url = with_query(location, "digest", &self.digest.to_string());
        let what = format!("upload of {}", self.digest);
        let resp = self
            .client
            .send_once(self.host, self.scopes, &what, &|http, _| {
                // The registry may check and move the whole blob before it answers.
                http.put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, "0")
                    .timeout(self.client.upload_timeout(self.size))
            })?;
        finish_status(resp, &what)
    }
}

/// A chunk answered with anything but 202 or 204: a session to start again
/// (416, 404) or a refusal.
fn chunk_refused(resp: Response, what: String) -> SendError {
    let status = resp.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE || status == StatusCode::NOT_FOUND {
        return SendError::Retry {
            wait: None,
            error: RegistryError::Status {
                what,
                status: status.as_u16(),
                body: String::new(),
            },
        };
    }
    SendError::Fatal(RegistryError::Status {
        what,
        status: status.as_u16(),
        body: excerpt(resp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_made_absolute_and_queries_appended() {
        assert_eq!(
            absolute("http://h:1", "/v2/x/blobs/uploads/u?_state=a"),
            "http://h:1/v2/x/blobs/uploads/u?_state=a"
        );
        assert_eq!(absolute("http://h:1", "http://other/u"), "http://other/u");
        assert_eq!(
            with_query("http://h/u?_state=a", "digest", "sha256:ab"),
            "http://h/u?_state=a&digest=sha256%3Aab"
        );
        assert_eq!(
            with_query("http://h/u", "digest", "sha256:ab"),
            "http://h/u?digest=sha256%3Aab"
        );
    }
}
