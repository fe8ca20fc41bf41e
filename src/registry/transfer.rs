//! Push, pull and tag listing.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use reqwest::blocking::Body;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;

use super::client::{backoff, excerpt, read_json, SendError};
use super::{Client, Reference, RegistryError, Scopes};
use crate::digest::{Digest, HashingWriter};
use crate::oci::{self, BlobStore, Layout};
use crate::output::{Printer, Transfer};

/// Media types accepted for manifests, most wanted first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted (the distribution spec suggests 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// What happened to one blob of a push.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Sent.
    Uploaded,
    /// Already there.
    Skipped,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// One blob of a push.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlobReport {
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// The result of a push.
#[derive(Clone, Debug)]
pub struct PushReport {
    /// `REF@sha256:…`.
    pub pushed: Reference,
    /// Manifest digest.
    pub digest: Digest,
    /// Each blob.
    pub blobs: Vec<BlobReport>,
}

/// Push settings.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Blobs larger than this go in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Blobs sent at once.
    pub parallel: usize,
    /// Repositories of the same registry that may hold the blobs (mount sources).
    pub mount_from: Vec<String>,
    /// Manifest format sent to the registry.
    pub format: ManifestFormat,
}

/// The manifest format of a push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// OCI image manifest, as written in the layout.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for registries that refuse OCI media types.
    Docker,
}

/// Rewrites an OCI image manifest as a Docker schema 2 manifest: same
/// blobs, Docker media types (the digest changes with the bytes).
pub fn to_docker_manifest(oci_manifest: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let mut v: serde_json::Value = serde_json::from_slice(oci_manifest)
        .map_err(|e| RegistryError::Protocol(format!("manifest is not JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| RegistryError::Protocol("manifest is not a JSON object".into()))?;
    obj.insert(
        "mediaType".into(),
        "application/vnd.docker.distribution.manifest.v2+json".into(),
    );
    for k in ["annotations", "artifactType", "subject"] {
        obj.remove(k);
    }
    if let Some(c) = obj.get_mut("config").and_then(|c| c.as_object_mut()) {
        c.insert(
            "mediaType".into(),
            "application/vnd.docker.container.image.v1+json".into(),
        );
        c.remove("annotations");
    }
    for l in obj
        .get_mut("layers")
        .and_then(|l| l.as_array_mut())
        .into_iter()
        .flatten()
    {
        let l = l
            .as_object_mut()
            .ok_or_else(|| RegistryError::Protocol("a layer descriptor is not an object".into()))?;
        let media = l
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        let docker = match media.as_str() {
            crate::layer::MEDIA_TYPE_TAR_GZIP
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            crate::layer::MEDIA_TYPE_TAR | "application/vnd.docker.image.rootfs.diff.tar" => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            other => {
                return Err(RegistryError::Usage(format!(
                    "--format docker cannot carry a layer of media type {other}"
                )))
            }
        };
        l.insert("mediaType".into(), docker.into());
        l.remove("annotations");
    }
    Ok(oci::canonical_json(&v))
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            chunk_size: 128 << 20,
            parallel: 4,
            mount_from: Vec::new(),
            format: ManifestFormat::Oci,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The URL a `Location` names: relative to the registry, or absolute, on
/// whatever host it names (the client sends credentials only to the
/// registry's own origin).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

fn with_query(url: &str, key: &str, value: &str) -> String {
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

fn location_of(resp: &reqwest::blocking::Response, what: &str) -> Result<String, RegistryError> {
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

/// Pushes the image `manifest` of a layout to `target`, blobs first (in
/// parallel), then the manifest's exact bytes.
pub fn push(
    client: &Client,
    layout: &Layout,
    manifest: &Digest,
    target: &Reference,
    options: &PushOptions,
    printer: &Printer,
) -> Result<PushReport, RegistryError> {
    let manifest_bytes = layout.blobs().read_verified(manifest)?;
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| {
            RegistryError::Protocol(format!("manifest {manifest} is not an image manifest: {e}"))
        })?;
    // The bytes that will be sent, known before any upload so that a
    // reference naming another digest is refused before the first blob.
    let (manifest_bytes, manifest, media_type) = match options.format {
        ManifestFormat::Oci => (
            manifest_bytes,
            manifest.clone(),
            parsed
                .media_type()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
        ),
        ManifestFormat::Docker => {
            let bytes = to_docker_manifest(&manifest_bytes)?;
            let digest = Digest::of(&bytes);
            (
                bytes,
                digest,
                "application/vnd.docker.distribution.manifest.v2+json".to_string(),
            )
        }
    };
    if let Some(wanted) = &target.digest {
        if *wanted != manifest {
            return Err(RegistryError::Usage(format!(
                "{target} names manifest {wanted}, but the image pushed is {manifest}: \
                 push to a tag, or name the digest of this image"
            )));
        }
    }
    let mut blobs: Vec<(Digest, u64)> = vec![(
        oci::descriptor_digest(parsed.config())?,
        parsed.config().size(),
    )];
    for l in parsed.layers() {
        blobs.push((oci::descriptor_digest(l)?, l.size()));
    }
    let host = target.api_host().to_string();
    let repo = target.repository.clone();
    let scopes = Scopes::push(&repo, &options.mount_from);
    // Once, before the threads: a registry that cannot be reached fails here.
    client.base_url(&host)?;
    let reports = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<RegistryError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..options.parallel.clamp(1, blobs.len().max(1)) {
            s.spawn(|| loop {
                if failure.lock().expect("lock").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((digest, size)) = blobs.get(i) else {
                    return;
                };
                match push_blob(
                    client,
                    &host,
                    &repo,
                    &scopes,
                    layout.blobs(),
                    digest,
                    *size,
                    options,
                    printer,
                ) {
                    Ok(outcome) => reports.lock().expect("lock").push(BlobReport {
                        digest: digest.clone(),
                        size: *size,
                        outcome,
                    }),
                    Err(e) => {
                        failure.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    let manifest = &manifest;
    let reference = target.manifest_ref();
    let what = format!("manifest PUT to {target}");
    let resp = client.send(&host, &scopes, &what, &|http, base| {
        http.put(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header(CONTENT_TYPE, media_type.as_str())
            .body(manifest_bytes.clone())
    })?;
    if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
        return Err(RegistryError::Status {
            what,
            status: resp.status().as_u16(),
            body: excerpt(resp),
        });
    }
    if let Some(d) = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
    {
        if d != manifest.to_string() {
            return Err(RegistryError::Protocol(format!(
                "{host} stored the manifest as {d}, not {manifest}: it changed the bytes"
            )));
        }
    }
    let mut blobs = reports.into_inner().expect("lock");
    blobs.sort_by_key(|b| b.digest.clone());
    Ok(PushReport {
        pushed: target.with_digest(manifest),
        digest: manifest.clone(),
        blobs,
    })
}

fn blob_exists(
    client: &Client,
    host: &str,
    repo: &str,
    scopes: &Scopes,
    digest: &Digest,
    size: u64,
) -> Result<bool, RegistryError> {
    let resp = client.send(
        host,
        scopes,
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
            what: format!("HEAD of blob {digest} in {host}/{repo}"),
            status: s.as_u16(),
            body: String::new(),
        }),
    }
}

// The push's shared context, spelled out: a struct for it would only be
// built here and taken apart in the next line.
#[allow(clippy::too_many_arguments)]
fn push_blob(
    client: &Client,
    host: &str,
    repo: &str,
    scopes: &Scopes,
    store: &BlobStore,
    digest: &Digest,
    size: u64,
    options: &PushOptions,
    printer: &Printer,
) -> Result<Outcome, RegistryError> {
    if blob_exists(client, host, repo, scopes, digest, size)? {
        printer.step(&format!(
            "push: {} skipped (already in {repo})",
            short(digest)
        ));
        return Ok(Outcome::Skipped);
    }
    let base = client.base_url(host)?;
    // A mount answered 202 means "not mounted, upload here instead".
    let mut location = None;
    for source in options.mount_from.iter().filter(|s| *s != repo) {
        let resp = client.send(
            host,
            scopes,
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
        match resp.status() {
            StatusCode::CREATED => {
                printer.step(&format!("push: {} mounted from {source}", short(digest)));
                return Ok(Outcome::Mounted);
            }
            StatusCode::ACCEPTED => {
                location = Some(absolute(&base, &location_of(&resp, "mount")?));
                break;
            }
            _ => {}
        }
    }
    printer.step(&format!("push: {} uploading {} bytes", short(digest), size));
    let up = Upload {
        client,
        host,
        scopes,
        base: &base,
        path: store.path(digest),
        digest,
        size,
        progress: printer.transfer(&short(digest), size),
    };
    for attempt in 1..=client.attempts() {
        let start = match location.take() {
            Some(l) => l,
            None => start_upload(client, host, repo, scopes, &base)?,
        };
        let result = if size <= options.chunk_size {
            up.whole(&start)
        } else {
            up.chunks(start, options.chunk_size)
        };
        match result {
            Ok(()) => {
                up.progress.finish("uploaded");
                printer.step(&format!("push: {} uploaded", short(digest)));
                return Ok(Outcome::Uploaded);
            }
            Err(SendError::Retry { wait, error }) => {
                // The final PUT may have been stored even if its answer was lost.
                if blob_exists(client, host, repo, scopes, digest, size)? {
                    up.progress.finish("uploaded");
                    printer.step(&format!(
                        "push: {} uploaded (confirmed after a lost answer)",
                        short(digest)
                    ));
                    return Ok(Outcome::Uploaded);
                }
                if attempt == client.attempts() {
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

fn start_upload(
    client: &Client,
    host: &str,
    repo: &str,
    scopes: &Scopes,
    base: &str,
) -> Result<String, RegistryError> {
    let what = format!("upload start in {host}/{repo}");
    let resp = client.send(host, scopes, &what, &|http, base| {
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

fn file_part(
    path: &Path,
    offset: u64,
    len: u64,
    progress: &Transfer,
) -> Result<Body, RegistryError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
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

/// One blob being uploaded.
struct Upload<'a> {
    client: &'a Client,
    host: &'a str,
    scopes: &'a Scopes,
    base: &'a str,
    path: std::path::PathBuf,
    digest: &'a Digest,
    size: u64,
    progress: Transfer,
}

impl Upload<'_> {
    /// The whole blob in one PUT.
    fn whole(&self, location: &str) -> Result<(), SendError> {
        let Upload {
            client,
            host,
            scopes,
            path,
            digest,
            size,
            ..
        } = self;
        let (host, size, path) = (*host, *size, path.as_path());
        let url = with_query(location, "digest", &digest.to_string());
        let what = format!("upload of {digest}");
        let body_error: Mutex<Option<RegistryError>> = Mutex::new(None);
        let resp = client.send_once(host, scopes, &what, &|http, _| {
            let body = file_part(path, 0, size, &self.progress).unwrap_or_else(|e| {
                *body_error.lock().expect("lock") = Some(e);
                Body::from(Vec::new())
            });
            http.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .timeout(client.upload_timeout(size))
                .body(body)
        })?;
        if let Some(e) = body_error.into_inner().expect("lock") {
            return Err(SendError::Fatal(e));
        }
        finish_status(resp, &what)
    }
}

fn finish_status(resp: reqwest::blocking::Response, what: &str) -> Result<(), SendError> {
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
fn next_offset(resp: &reqwest::blocking::Response) -> Option<u64> {
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

impl Upload<'_> {
    /// PATCH chunks, resuming from the registry's offset after a failure,
    /// then the final PUT.
    fn chunks(&self, mut location: String, chunk: u64) -> Result<(), SendError> {
        let Upload {
            client,
            host,
            scopes,
            base,
            path,
            digest,
            size,
            ..
        } = self;
        let (host, base, size, path) = (*host, *base, *size, path.as_path());
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let what = format!("chunk {offset}-{} of {digest}", offset + len - 1);
            let body_error: Mutex<Option<RegistryError>> = Mutex::new(None);
            let result = client.send_once(host, scopes, &what, &|http, _| {
                let body = file_part(path, offset, len, &self.progress).unwrap_or_else(|e| {
                    *body_error.lock().expect("lock") = Some(e);
                    Body::from(Vec::new())
                });
                http.patch(&location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .timeout(client.upload_timeout(len))
                    .body(body)
            });
            if let Some(e) = body_error.into_inner().expect("lock") {
                return Err(SendError::Fatal(e));
            }
            match result {
                Ok(resp)
                    if resp.status() == StatusCode::ACCEPTED
                        || resp.status() == StatusCode::NO_CONTENT =>
                {
                    if let Ok(l) = location_of(&resp, &what) {
                        location = absolute(base, &l);
                    }
                    offset = next_offset(&resp).unwrap_or(offset + len);
                    failures = 0;
                }
                Ok(resp)
                    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || resp.status() == StatusCode::NOT_FOUND =>
                {
                    return Err(SendError::Retry {
                        wait: None,
                        error: RegistryError::Status {
                            what,
                            status: resp.status().as_u16(),
                            body: String::new(),
                        },
                    })
                }
                Ok(resp) => {
                    return Err(SendError::Fatal(RegistryError::Status {
                        what,
                        status: resp.status().as_u16(),
                        body: excerpt(resp),
                    }))
                }
                Err(SendError::Retry { wait, error }) => {
                    failures += 1;
                    if failures >= client.attempts() {
                        return Err(SendError::Fatal(error));
                    }
                    std::thread::sleep(wait.unwrap_or_else(|| backoff(failures)));
                    // Resume where the registry says it is, not from zero.
                    match client.send_once(host, scopes, "upload status", &|http, _| {
                        http.get(&location)
                    }) {
                        Ok(resp)
                            if resp.status() == StatusCode::NO_CONTENT
                                || resp.status().is_success() =>
                        {
                            offset = next_offset(&resp).unwrap_or(0);
                            if let Ok(l) = location_of(&resp, "upload status") {
                                location = absolute(base, &l);
                            }
                        }
                        Ok(_) => return Err(SendError::Retry { wait: None, error }),
                        Err(SendError::Fatal(e)) => return Err(SendError::Fatal(e)),
                        Err(SendError::Retry { .. }) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let url = with_query(&location, "digest", &digest.to_string());
        let what = format!("upload of {digest}");
        let resp = client.send_once(host, scopes, &what, &|http, _| {
            // The registry may check and move the whole blob before it answers.
            http.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, "0")
                .timeout(client.upload_timeout(size))
        })?;
        finish_status(resp, &what)
    }
}

/// True for a read that ran out of time (reqwest's idle read timeout).
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(|r| r.is_timeout())
}

fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// Pulls an image into the layout at `dest` (made if missing), tagging it
/// `tag`: every blob's digest is checked while it streams in; an index
/// resolves to linux and this machine's architecture. The manifest is
/// fetched and checked before anything is written, and the blobs go to a
/// staged layout beside `dest` that joins it only when complete: a failed
/// pull leaves `dest` as it was. Returns the manifest digest.
pub fn pull(
    client: &Client,
    source: &Reference,
    dest: &Path,
    tag: &str,
    printer: &Printer,
) -> Result<Digest, RegistryError> {
    Layout::check_target(dest)?;
    let host = source.api_host().to_string();
    let repo = source.repository.clone();
    let scopes = Scopes::pull(&repo);
    let (mut bytes, mut media_type) =
        get_manifest(client, &host, &repo, &scopes, &source.manifest_ref())?;
    let mut digest = Digest::of(&bytes);
    if let Some(d) = &source.digest {
        if &digest != d {
            return Err(RegistryError::Protocol(format!(
                "{host} answered manifest {digest} for {source}"
            )));
        }
    }
    if media_type.contains("index") || media_type.contains("manifest.list") {
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Protocol(format!("the index of {source} is not valid: {e}"))
        })?;
        let arch = oci::host_architecture();
        let chosen = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == arch
                })
            })
            .ok_or_else(|| {
                RegistryError::Protocol(format!("{source} has no linux/{arch} image"))
            })?;
        let want = oci::descriptor_digest(chosen)?;
        (bytes, media_type) = get_manifest(client, &host, &repo, &scopes, &want.to_string())?;
        digest = Digest::of(&bytes);
        if digest != want {
            return Err(RegistryError::Protocol(format!(
                "{host} answered manifest {digest} instead of {want}"
            )));
        }
    }
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
        RegistryError::Protocol(format!(
            "the manifest of {source} ({media_type}) is not valid: {e}"
        ))
    })?;
    let mut wanted = vec![(
        oci::descriptor_digest(manifest.config())?,
        manifest.config().size(),
    )];
    for l in manifest.layers() {
        wanted.push((oci::descriptor_digest(l)?, l.size()));
    }
    let existing = Layout::open(dest).ok();
    let staged = crate::oci::StagedLayout::new(dest)?;
    for (d, size) in &wanted {
        if existing.as_ref().is_some_and(|l| l.blobs().has(d)) {
            continue;
        }
        printer.step(&format!("pull: {} ({size} bytes)", short(d)));
        pull_blob(
            client,
            &host,
            &repo,
            &scopes,
            staged.layout().blobs(),
            d,
            *size,
        )?;
    }
    staged.layout().blobs().put_bytes(&bytes)?;
    staged.commit(&digest, bytes.len() as u64, tag)?;
    Ok(digest)
}

fn get_manifest(
    client: &Client,
    host: &str,
    repo: &str,
    scopes: &Scopes,
    reference: &str,
) -> Result<(Vec<u8>, String), RegistryError> {
    let what = format!("manifest {host}/{repo}:{reference}");
    let resp = client.send(host, scopes, &what, &|http, base| {
        http.get(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header(ACCEPT, MANIFEST_ACCEPT)
    })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        return Err(RegistryError::Status {
            what,
            status,
            body: excerpt(resp),
        });
    }
    if resp.content_length().is_some_and(|l| l > MAX_MANIFEST) {
        return Err(RegistryError::Protocol(format!(
            "{what} is over {MAX_MANIFEST} bytes"
        )));
    }
    let media_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut bytes = Vec::new();
    resp.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Protocol(format!("{what}: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(RegistryError::Protocol(format!(
            "{what} is over {MAX_MANIFEST} bytes"
        )));
    }
    Ok((bytes, media_type))
}

fn pull_blob(
    client: &Client,
    host: &str,
    repo: &str,
    scopes: &Scopes,
    store: &BlobStore,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    let what = format!("blob {digest} of {host}/{repo}");
    for attempt in 1..=client.attempts() {
        let mut resp = client.send(host, scopes, &what, &|http, base| {
            http.get(format!("{base}/v2/{repo}/blobs/{digest}"))
        })?;
        if !resp.status().is_success() {
            return Err(RegistryError::Status {
                what,
                status: resp.status().as_u16(),
                body: String::new(),
            });
        }
        let tmp = crate::fsutil::temp_file(store.dir(), ".pull-").map_err(io_err(store.dir()))?;
        let mut w = HashingWriter::new(std::io::BufWriter::new(tmp.as_file()));
        let copied = std::io::copy(&mut (&mut resp).take(size + 1), &mut w);
        let (mut inner, found, n) = w.finish();
        inner.flush().map_err(io_err(store.dir()))?;
        drop(inner);
        match copied {
            Ok(_) if n == size && &found == digest => {
                tmp.persist(store.path(digest))
                    .map_err(|e| RegistryError::Io {
                        path: store.path(digest),
                        source: e.error,
                    })?;
                return Ok(());
            }
            Ok(_) => {
                return Err(RegistryError::Protocol(format!("{what}: received {n} bytes with digest {found}, expected {size} bytes with digest {digest}")));
            }
            Err(e) if attempt < client.attempts() => {
                tracing::debug!(error = %e, attempt, "blob download retry");
                std::thread::sleep(backoff(attempt));
            }
            Err(e) if is_timeout(&e) => {
                return Err(RegistryError::Timeout {
                    host: host.to_string(),
                    what: format!("the rest of {what} (it stopped sending)"),
                    seconds: client.timeout().as_secs(),
                })
            }
            Err(e) => {
                return Err(RegistryError::Protocol(format!(
                    "{what}: the download broke: {e}"
                )))
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Checks credentials against a registry: `GET /v2/` with them must succeed
/// (for a token registry, a token must be granted).
pub fn check_login(
    client: &Client,
    host: &str,
    username: &str,
    password: &str,
) -> Result<(), RegistryError> {
    client.use_credentials(host, username, password);
    let resp = client.send(host, &Scopes::default(), "login", &|http, base| {
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

/// Lists a repository's tags, following `Link` pagination.
pub fn tags(client: &Client, repository: &Reference) -> Result<Vec<String>, RegistryError> {
    let host = repository.api_host().to_string();
    let repo = repository.repository.clone();
    let scopes = Scopes::pull(&repo);
    let mut path = format!("/v2/{repo}/tags/list?n=100");
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let what = format!("tag list of {host}/{repo}");
        let p = path.clone();
        let resp = client.send(&host, &scopes, &what, &|http, base| {
            http.get(format!("{base}{p}"))
        })?;
        if !resp.status().is_success() {
            // A repository the registry does not know is a 404
            // (NAME_UNKNOWN), not an empty list: a typo must not look like
            // "no tags". An empty repository answers 200 with no tags.
            let status = resp.status().as_u16();
            return Err(RegistryError::Status {
                what,
                status,
                body: excerpt(resp),
            });
        }
        let link = resp
            .headers()
            .get("Link")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| u.to_string());
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList = read_json(resp, MAX_MANIFEST)
            .map_err(|e| RegistryError::Protocol(format!("{what}: {e}")))?;
        all.extend(list.tags.unwrap_or_default());
        match link {
            Some(next) => {
                path = match reqwest::Url::parse(&next) {
                    Ok(u) => format!(
                        "{}{}",
                        u.path(),
                        u.query().map(|q| format!("?{q}")).unwrap_or_default()
                    ),
                    Err(_) => next,
                }
            }
            None => return Ok(all),
        }
    }
    Err(RegistryError::Protocol(format!(
        "the tag list of {host}/{repo} does not end"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_manifests_keep_the_blobs_and_change_the_media_types() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":2}],"annotations":{"a":"b"}}"#;
        let d: serde_json::Value =
            serde_json::from_slice(&to_docker_manifest(oci).unwrap()).unwrap();
        assert_eq!(
            d["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            d["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            d["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(d["layers"][0]["digest"], "sha256:bb");
        assert!(d.get("annotations").is_none());
    }

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
