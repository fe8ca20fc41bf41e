//! One repository of a registry, as the operations on it see it: the
//! client, the host, the repository's name and the scopes a token needs.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use crate::digest::{Digest, HashingWriter};
use crate::output::Transfer;
use crate::registry::client::Client;
use crate::registry::error::{BodyError, RegistryError};
use crate::registry::reference::Reference;
use crate::registry::response::{backoff, excerpt, read_bounded, read_json, successful, SendError};
use crate::registry::token::Scopes;
use crate::registry::upload::{absolute, location_of, with_query, Upload};

/// Media types accepted for manifests, most wanted first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// What a cross-repository mount did.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// Not mounted: the registry opened an upload session here instead.
    Upload(String),
    /// Not mounted, nothing opened.
    Declined,
}

/// How an upload ended well.
#[derive(Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// The registry confirmed it.
    Sent,
    /// Its answer was lost, and the blob turned out to be there.
    Confirmed,
}

/// What a manifest delete did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The registry deleted it (and, in CNCF distribution, every tag
    /// pointing to it).
    Deleted,
    /// The registry does not have it (already deleted, by another prune
    /// perhaps).
    Absent,
    /// The registry does not delete manifests: 405, `UNSUPPORTED` in the
    /// distribution spec (CNCF distribution without `storage.delete.enabled`).
    Unsupported,
}

/// A repository of a registry: `(client, host, name, scopes)`, with the
/// operations of the distribution spec as methods.
#[derive(Clone)]
pub struct Repository {
    client: Arc<Client>,
    host: String,
    name: String,
    scopes: Scopes,
}

impl Repository {
    /// The repository a reference names, for operations needing `scopes`.
    pub fn new(client: Arc<Client>, reference: &Reference, scopes: Scopes) -> Self {
        Self {
            client,
            host: reference.api_host().to_string(),
            name: reference.repository.clone(),
            scopes,
        }
    }

    /// For reading.
    pub fn for_pull(client: Arc<Client>, reference: &Reference) -> Self {
        let scopes = Scopes::pull(&reference.repository);
        Self::new(client, reference, scopes)
    }

    /// For pushing, mounting blobs from `sources` of the same registry.
    pub fn for_push(client: Arc<Client>, reference: &Reference, sources: &[String]) -> Self {
        let scopes = Scopes::push(&reference.repository, sources);
        Self::new(client, reference, scopes)
    }

    /// For reading and deleting manifests.
    pub fn for_delete(client: Arc<Client>, reference: &Reference) -> Self {
        let scopes = Scopes::delete(&reference.repository);
        Self::new(client, reference, scopes)
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The registry host (`host[:port]`, Docker Hub's API host for Docker Hub).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository's name (`team/app`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the repository holds the blob, with this size if it says.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, RegistryError> {
        let repo = &self.name;
        let resp = self.client.send(
            &self.host,
            &self.scopes,
            &format!("HEAD of blob {digest}"),
            &|http, base| http.head(format!("{base}/v2/{repo}/blobs/{digest}")),
        )?;
        match resp.status() {
            s if s.is_success() => {
                let len = resp
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                Ok(len.is_none_or(|l| l == size))
            }
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(RegistryError::Status {
                what: format!("HEAD of blob {digest} in {}/{repo}", self.host),
                status: s.as_u16(),
                body: String::new(),
            }),
        }
    }

    /// Asks the registry to mount the blob from another repository.
    pub fn mount_blob(&self, digest: &Digest, source: &str) -> Result<Mount, RegistryError> {
        let repo = &self.name;
        let resp = self.client.send(
            &self.host,
            &self.scopes,
            &format!("mount of {digest} from {source}"),
            &|http, base| {
                http.post(with_query(
                    &with_query(
                        &format!("{base}/v2/{repo}/blobs/uploads/"),
                        "mount",
                        &digest.to_string(),
                    ),
                    "from",
                    source,
                ))
                .header(CONTENT_LENGTH, "0")
            },
        )?;
        Ok(match resp.status() {
            StatusCode::CREATED => Mount::Mounted,
            // A mount answered 202 means "not mounted, upload here instead".
            StatusCode::ACCEPTED => {
                let base = self.client.base_url(&self.host)?;
                Mount::Upload(absolute(&base, &location_of(&resp, "mount")?))
            }
            _ => Mount::Declined,
        })
    }

    /// Opens an upload session; returns its URL.
    fn start_upload(&self, base: &str) -> Result<String, RegistryError> {
        let repo = &self.name;
        let what = format!("upload start in {}/{repo}", self.host);
        let resp = self
            .client
            .send(&self.host, &self.scopes, &what, &|http, base| {
                http.post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .header(CONTENT_LENGTH, "0")
            })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(RegistryError::Status {
                what,
                status: resp.status().as_u16(),
                body: excerpt(resp),
            });
        }
        Ok(absolute(base, &location_of(&resp, &what)?))
    }

    /// Uploads the blob in `path`: in one PUT up to `chunk_size` bytes, else
    /// in resumable chunks, in the session `location` if one is open. A
    /// failed attempt starts a new session, unless the blob turns out to be
    /// there (the answer to the final PUT was lost).
    pub fn upload_blob(
        &self,
        path: &Path,
        digest: &Digest,
        size: u64,
        chunk_size: u64,
        mut location: Option<String>,
        progress: &Transfer,
    ) -> Result<Uploaded, RegistryError> {
        let base = self.client.base_url(&self.host)?;
        let up = Upload {
            client: &self.client,
            host: &self.host,
            scopes: &self.scopes,
            base: &base,
            path: path.to_path_buf(),
            digest,
            size,
            progress,
        };
        let attempts = self.client.attempts();
        for attempt in 1..=attempts {
            let start = match location.take() {
                Some(l) => l,
                None => self.start_upload(&base)?,
            };
            let result = if size <= chunk_size {
                up.whole(&start)
            } else {
                up.chunks(start, chunk_size)
            };
            match result {
                Ok(()) => return Ok(Uploaded::Sent),
                Err(SendError::Retry { wait, error }) => {
                    // The final PUT may have been stored even if its answer was lost.
                    if self.has_blob(digest, size)? {
                        return Ok(Uploaded::Confirmed);
                    }
                    if attempt == attempts {
                        return Err(error);
                    }
                    tracing::debug!(%error, attempt, "upload retry");
                    std::thread::sleep(wait.unwrap_or_else(|| backoff(attempt)));
                }
                Err(SendError::Fatal(e)) => return Err(e),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// A manifest (or index) by tag or digest: its exact bytes and media type.
    pub fn get_manifest(&self, reference: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let repo = &self.name;
        let what = format!("manifest {}/{repo}:{reference}", self.host);
        let resp = self
            .client
            .send(&self.host, &self.scopes, &what, &|http, base| {
                http.get(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })?;
        let resp = successful(resp, what.clone())?;
        let too_large = |what: String| RegistryError::TooLarge {
            what,
            limit: MAX_MANIFEST,
        };
        if resp.content_length().is_some_and(|l| l > MAX_MANIFEST) {
            return Err(too_large(what));
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = read_bounded(resp, MAX_MANIFEST).map_err(|e| match e {
            BodyError::TooLarge(_) => too_large(what.clone()),
            source => RegistryError::Body {
                what: what.clone(),
                source,
            },
        })?;
        Ok((bytes, media_type))
    }

    /// Stores a manifest's exact bytes under `reference` (a tag or its
    /// digest); returns the digest the registry says it stored, if it says.
    pub fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        what: &str,
    ) -> Result<Option<String>, RegistryError> {
        let repo = &self.name;
        let resp = self
            .client
            .send(&self.host, &self.scopes, what, &|http, base| {
                http.put(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(RegistryError::Status {
                what: what.to_string(),
                status: resp.status().as_u16(),
                body: excerpt(resp),
            });
        }
        Ok(resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// Deletes the manifest with this digest (`DELETE
    /// /v2/<name>/manifests/<digest>`): the distribution spec deletes
    /// manifests by digest only, and the registry's garbage collector, not
    /// this, reclaims the blobs. A retried delete whose first answer was
    /// lost finds it [`Deletion::Absent`].
    pub fn delete_manifest(&self, digest: &Digest) -> Result<Deletion, RegistryError> {
        let repo = &self.name;
        let what = format!("DELETE of manifest {digest} in {}/{repo}", self.host);
        let resp = self
            .client
            .send(&self.host, &self.scopes, &what, &|http, base| {
                http.delete(format!("{base}/v2/{repo}/manifests/{digest}"))
            })?;
        match resp.status() {
            s if s.is_success() => Ok(Deletion::Deleted),
            StatusCode::NOT_FOUND => Ok(Deletion::Absent),
            StatusCode::METHOD_NOT_ALLOWED => Ok(Deletion::Unsupported),
            s => Err(RegistryError::Status {
                what,
                status: s.as_u16(),
                body: excerpt(resp),
            }),
        }
    }

    /// Streams a blob into a file made by `create` (anew for each attempt),
    /// checking its size and digest as it comes; a download that breaks is
    /// retried. Returns the complete file, still under its temporary name.
    pub fn pull_blob(
        &self,
        digest: &Digest,
        size: u64,
        create: &dyn Fn() -> Result<tempfile::NamedTempFile, RegistryError>,
    ) -> Result<tempfile::NamedTempFile, RegistryError> {
        let repo = &self.name;
        let what = format!("blob {digest} of {}/{repo}", self.host);
        let attempts = self.client.attempts();
        for attempt in 1..=attempts {
            let mut resp = self
                .client
                .send(&self.host, &self.scopes, &what, &|http, base| {
                    http.get(format!("{base}/v2/{repo}/blobs/{digest}"))
                })?;
            if !resp.status().is_success() {
                return Err(RegistryError::Status {
                    what,
                    status: resp.status().as_u16(),
                    body: String::new(),
                });
            }
            let tmp = create()?;
            let mut w = HashingWriter::new(std::io::BufWriter::new(tmp.as_file()));
            let copied = std::io::copy(&mut (&mut resp).take(size + 1), &mut w);
            let (mut inner, found, n) = w.finish();
            inner.flush().map_err(|source| RegistryError::Io {
                path: tmp.path().to_path_buf(),
                source,
            })?;
            drop(inner);
            match copied {
                Ok(_) if n == size && &found == digest => return Ok(tmp),
                Ok(_) => {
                    return Err(RegistryError::Protocol(format!("{what}: received {n} bytes with digest {found}, expected {size} bytes with digest {digest}")));
                }
                Err(e) if attempt < attempts => {
                    tracing::debug!(error = %e, attempt, "blob download retry");
                    std::thread::sleep(backoff(attempt));
                }
                Err(e) if is_timeout(&e) => {
                    return Err(RegistryError::Timeout {
                        host: self.host.clone(),
                        what: format!("the rest of {what} (it stopped sending)"),
                        seconds: self.client.timeout().as_secs(),
                    })
                }
                Err(source) => return Err(RegistryError::BrokenDownload { what, source }),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// The repository's tags, following `Link` pagination. A repository the
    /// registry does not know is an error (404, `NAME_UNKNOWN`), not an
    /// empty list: a typo must not look like "no tags".
    pub fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let (host, repo) = (&self.host, &self.name);
        let mut path = format!("/v2/{repo}/tags/list?n=100");
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let what = format!("tag list of {host}/{repo}");
            let p = path.clone();
            let resp = self.client.send(host, &self.scopes, &what, &|http, base| {
                http.get(format!("{base}{p}"))
            })?;
            let resp = successful(resp, what.clone())?;
            let link = next_link(&resp);
            #[derive(serde::Deserialize)]
            struct TagList {
                tags: Option<Vec<String>>,
            }
            let list: TagList = read_json(resp, MAX_MANIFEST)
                .map_err(|source| RegistryError::Body { what, source })?;
            all.extend(list.tags.unwrap_or_default());
            match link {
                Some(next) => path = next,
                None => return Ok(all),
            }
        }
        Err(RegistryError::Protocol(format!(
            "the tag list of {host}/{repo} does not end"
        )))
    }
}

/// The path and query of the answer's `Link: <URL>; rel="next"` header.
fn next_link(resp: &reqwest::blocking::Response) -> Option<String> {
    next_page(resp.headers().get("Link")?.to_str().ok()?)
}

/// The path and query of the `rel="next"` link of a `Link` header value
/// (RFC 8288; the distribution spec's tag list sends one link, but a header
/// may hold several, comma-separated). The host of an absolute URL is
/// dropped: the next page is asked of the same registry.
fn next_page(header: &str) -> Option<String> {
    let next = header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel") && v.trim().trim_matches('"') == "next"
            })
            .then(|| target.to_string())
    })?;
    Some(match reqwest::Url::parse(&next) {
        Ok(u) => format!(
            "{}{}",
            u.path(),
            u.query().map(|q| format!("?{q}")).unwrap_or_default()
        ),
        Err(_) => next,
    })
}

/// True for a read that ran out of time (reqwest's idle read timeout).
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(|r| r.is_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_rel_next_link_on_the_same_registry() {
        // CNCF distribution 3's form.
        assert_eq!(
            next_page(r#"</v2/team/cache/tags/list?last=b&n=100>; rel="next""#).as_deref(),
            Some("/v2/team/cache/tags/list?last=b&n=100")
        );
        // An absolute URL keeps its path and query only.
        assert_eq!(
            next_page(r#"<https://127.0.0.2:5000/v2/a/tags/list?n=2&last=x>; rel=next"#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=x")
        );
        // Several links: the one whose rel is next.
        assert_eq!(
            next_page(
                r#"</v2/a/tags/list?n=1>; rel="first", </v2/a/tags/list?n=1&last=c>; rel="next""#
            )
            .as_deref(),
            Some("/v2/a/tags/list?n=1&last=c")
        );
        assert_eq!(next_page(r#"</v2/a/tags/list?n=1>; rel="prev""#), None);
        assert_eq!(next_page("garbage"), None);
    }
}
