//! Images in a registry: a source (an index resolved to this platform, its
//! blobs fetched and checked as they stream in) and a sink (blobs first, in
//! parallel, each skipped, mounted or uploaded; then the manifest's exact
//! bytes).
//!
//! The transport (requests, tokens, retries, resumable uploads) is
//! [`crate::registry`]'s; this module decides what to send and in what order.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::fsutil;
use crate::image::blobs::{descriptor_digest, Blob, BlobSource, BlobStore};
use crate::image::documents::host_architecture;
use crate::image::error::ImageError;
use crate::image::layout::{Layout, StagedLayout};
use crate::image::mutate::{self, ManifestFormat};
use crate::image::{media, parse_index, Image};
use crate::output::Printer;
use crate::registry::repository::{Mount, Repository, Uploaded};
use crate::registry::{Client, Reference, RegistryError};

/// Failure of a push or a pull.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image, or the layout it is read from or written to, failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The target names a digest the pushed image does not have.
    #[error(
        "{target} names manifest {wanted}, but the image pushed is {manifest}: push to a tag, \
         or name the digest of this image"
    )]
    OtherDigest {
        /// The target reference.
        target: String,
        /// The digest it names.
        wanted: Digest,
        /// The digest of what is pushed.
        manifest: Digest,
    },
    /// The registry stored other bytes than those sent.
    #[error("{host} stored the manifest as {stored}, not {manifest}: it changed the bytes")]
    ChangedManifest {
        /// The registry.
        host: String,
        /// The digest it reported.
        stored: String,
        /// The digest sent.
        manifest: Digest,
    },
    /// The registry answered another manifest than the one asked for.
    #[error("{host} answered manifest {found} {asked}")]
    WrongManifest {
        /// The registry.
        host: String,
        /// What it answered.
        found: Digest,
        /// What was asked (`for REF`, `instead of DIGEST`).
        asked: String,
    },
    /// A list of images is not a valid index.
    #[error("the index of {source_ref} is not valid")]
    BadIndex {
        /// The reference pulled.
        source_ref: String,
        #[source]
        source: serde_json::Error,
    },
    /// No image of the list is for this platform.
    #[error("{source_ref} has no linux/{arch} image")]
    NoPlatform {
        /// The reference pulled.
        source_ref: String,
        /// This machine's architecture.
        arch: &'static str,
    },
    /// The manifest answered is not an image manifest.
    #[error("the manifest of {source_ref} ({media_type}) is not valid")]
    BadManifest {
        /// The reference pulled.
        source_ref: String,
        /// The media type the registry gave.
        media_type: String,
        #[source]
        source: ImageError,
    },
}

impl TransferError {
    /// True when the user's input is at fault (exit 2), not the registry.
    pub fn is_bad_input(&self) -> bool {
        match self {
            TransferError::Registry(e) => e.is_bad_input(),
            TransferError::Image(e) => e.is_bad_input(),
            TransferError::OtherDigest { .. } => true,
            _ => false,
        }
    }
}

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

fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// Pushes an image to `target`, blobs first (in parallel), then the
/// manifest's exact bytes.
pub fn push(
    client: Arc<Client>,
    image: &Image,
    target: &Reference,
    options: &PushOptions,
    printer: &Printer,
) -> Result<PushReport, TransferError> {
    // The bytes that will be sent, known before any upload so that a
    // reference naming another digest is refused before the first blob.
    let image = mutate::in_format(image, options.format)?;
    if let Some(wanted) = &target.digest {
        if wanted != image.digest() {
            return Err(TransferError::OtherDigest {
                target: target.to_string(),
                wanted: wanted.clone(),
                manifest: image.digest().clone(),
            });
        }
    }
    let repo = Repository::for_push(client, target, &options.mount_from);
    // Once, before the threads: a registry that cannot be reached fails here.
    repo.client().base_url(repo.host())?;
    let mut blobs = push_blobs(&repo, &image, options, printer)?;
    let manifest = image.digest();
    let stored = repo.put_manifest(
        &target.manifest_ref(),
        image.manifest_bytes(),
        image.media_type(),
        &format!("manifest PUT to {target}"),
    )?;
    if let Some(d) = stored.filter(|d| *d != manifest.to_string()) {
        return Err(TransferError::ChangedManifest {
            host: repo.host().to_string(),
            stored: d,
            manifest: manifest.clone(),
        });
    }
    blobs.sort_by_key(|b| b.digest.clone());
    Ok(PushReport {
        pushed: target.with_digest(manifest),
        digest: manifest.clone(),
        blobs,
    })
}

/// Pushes every blob of the image, `options.parallel` at a time; the first
/// failure stops the others from starting new blobs.
fn push_blobs(
    repo: &Repository,
    image: &Image,
    options: &PushOptions,
    printer: &Printer,
) -> Result<Vec<BlobReport>, TransferError> {
    let blobs: Vec<&Blob> = image.blobs().collect();
    let reports = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<TransferError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..options.parallel.clamp(1, blobs.len().max(1)) {
            s.spawn(|| loop {
                if failure.lock().expect("lock").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(blob) = blobs.get(i) else {
                    return;
                };
                match push_blob(repo, image, blob, options, printer) {
                    Ok(outcome) => reports.lock().expect("lock").push(BlobReport {
                        digest: blob.digest.clone(),
                        size: blob.size,
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
    Ok(reports.into_inner().expect("lock"))
}

/// One blob: skipped when the repository has it, mounted from a known
/// source when the registry agrees, else uploaded from this machine.
fn push_blob(
    repo: &Repository,
    image: &Image,
    blob: &Blob,
    options: &PushOptions,
    printer: &Printer,
) -> Result<Outcome, TransferError> {
    let digest = &blob.digest;
    if repo.has_blob(digest, blob.size)? {
        printer.step(&format!(
            "push: {} skipped (already in {})",
            short(digest),
            repo.name()
        ));
        return Ok(Outcome::Skipped);
    }
    let mut location = None;
    for source in options.mount_from.iter().filter(|s| *s != repo.name()) {
        match repo.mount_blob(digest, source)? {
            Mount::Mounted => {
                printer.step(&format!("push: {} mounted from {source}", short(digest)));
                return Ok(Outcome::Mounted);
            }
            Mount::Upload(l) => {
                location = Some(l);
                break;
            }
            Mount::Declined => {}
        }
    }
    let path = image
        .source()
        .local_path(digest)
        .ok_or_else(|| ImageError::NotLocal {
            origin: image.source().name(),
            digest: digest.clone(),
        })?;
    printer.step(&format!(
        "push: {} uploading {} bytes",
        short(digest),
        blob.size
    ));
    let progress = printer.transfer(&short(digest), blob.size);
    let uploaded = repo.upload_blob(
        &path,
        digest,
        blob.size,
        options.chunk_size,
        location,
        &progress,
    )?;
    progress.finish("uploaded");
    printer.step(&match uploaded {
        Uploaded::Sent => format!("push: {} uploaded", short(digest)),
        Uploaded::Confirmed => format!(
            "push: {} uploaded (confirmed after a lost answer)",
            short(digest)
        ),
    });
    Ok(Outcome::Uploaded)
}

/// The blobs of an image in a registry, fetched on demand.
#[derive(Clone)]
struct RemoteBlobs {
    repo: Repository,
}

impl std::fmt::Debug for RemoteBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteBlobs({}/{})", self.repo.host(), self.repo.name())
    }
}

impl BlobSource for RemoteBlobs {
    fn name(&self) -> String {
        format!("{}/{}", self.repo.host(), self.repo.name())
    }

    fn local_path(&self, _digest: &Digest) -> Option<std::path::PathBuf> {
        None
    }

    fn copy_into(&self, blob: &Blob, store: &BlobStore) -> Result<(), ImageError> {
        let dir = store.dir();
        let tmp = self.repo.pull_blob(&blob.digest, blob.size, &|| {
            fsutil::temp_file(dir, ".pull-").map_err(|source| RegistryError::Io {
                path: dir.to_path_buf(),
                source,
            })
        })?;
        let dest = store.path(&blob.digest);
        tmp.persist(&dest).map_err(|e| ImageError::Io {
            path: dest,
            source: e.error,
        })?;
        Ok(())
    }
}

/// The image `reference` names in its repository: a list of images is
/// resolved to linux and this machine's architecture. Every manifest's
/// digest is checked against what was asked for.
pub fn image(repo: &Repository, reference: &Reference) -> Result<Image, TransferError> {
    resolve(repo, reference).map(|(image, _)| image)
}

/// [`image`], with the digest of what `reference` names: the index's,
/// when it names one (what the base annotations name), else the image's.
pub fn resolve(repo: &Repository, reference: &Reference) -> Result<(Image, Digest), TransferError> {
    let host = repo.host().to_string();
    let (mut bytes, mut media_type) = repo.get_manifest(&reference.manifest_ref())?;
    let mut digest = Digest::of(&bytes);
    let named = digest.clone();
    if let Some(d) = &reference.digest {
        if &digest != d {
            return Err(TransferError::WrongManifest {
                host,
                found: digest,
                asked: format!("for {reference}"),
            });
        }
    }
    if media::is_index(&media_type) {
        let want = platform_manifest(&bytes, reference)?;
        (bytes, media_type) = repo.get_manifest(&want.to_string())?;
        digest = Digest::of(&bytes);
        if digest != want {
            return Err(TransferError::WrongManifest {
                host,
                found: digest,
                asked: format!("instead of {want}"),
            });
        }
    }
    let source = Arc::new(RemoteBlobs { repo: repo.clone() });
    let image =
        Image::from_manifest(bytes, source).map_err(|source| TransferError::BadManifest {
            source_ref: reference.to_string(),
            media_type,
            source,
        })?;
    Ok((image, named))
}

/// The digest of this platform's image in an index.
fn platform_manifest(index: &[u8], reference: &Reference) -> Result<Digest, TransferError> {
    let index = parse_index(index).map_err(|source| TransferError::BadIndex {
        source_ref: reference.to_string(),
        source,
    })?;
    let arch = host_architecture();
    let chosen = index
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == arch
            })
        })
        .ok_or_else(|| TransferError::NoPlatform {
            source_ref: reference.to_string(),
            arch,
        })?;
    Ok(descriptor_digest(chosen)?)
}

/// Pulls an image into the layout at `dest` (made if missing), tagging it
/// `tag`: every blob's digest is checked while it streams in. The manifest
/// is fetched and checked before anything is written, and the blobs go to
/// a staged layout beside `dest` that joins it only when complete: a failed
/// pull leaves `dest` as it was. Returns the manifest digest, and the
/// digest of what `source` names (an index's, when it names one).
pub fn pull(
    client: Arc<Client>,
    source: &Reference,
    dest: &Path,
    tag: &str,
    printer: &Printer,
) -> Result<(Digest, Digest), TransferError> {
    Layout::check_target(dest)?;
    let repo = Repository::for_pull(client, source);
    let (image, named) = resolve(&repo, source)?;
    let existing = Layout::open(dest).ok();
    let staged = StagedLayout::new(dest)?;
    for blob in image.blobs() {
        if existing
            .as_ref()
            .is_some_and(|l| l.blobs().has(&blob.digest))
        {
            continue;
        }
        printer.step(&format!(
            "pull: {} ({} bytes)",
            short(&blob.digest),
            blob.size
        ));
        image.source().copy_into(blob, staged.layout().blobs())?;
    }
    staged.layout().blobs().put_bytes(image.manifest_bytes())?;
    staged.commit(image.digest(), image.manifest_bytes().len() as u64, tag)?;
    Ok((image.digest().clone(), named))
}
