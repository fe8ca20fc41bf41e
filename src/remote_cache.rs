//! The registry as the build cache of a fleet of runners, in a repository
//! of a registry, as OCI artifacts:
//!
//! - a build's record (what it was made of and the descriptors of every
//!   layer), tagged by the key of the build's inputs, so that another
//!   runner with the same inputs and an empty cache writes the image from
//!   the record instead of building it ([`fetch`], [`entry_image`]);
//! - stage entries (`rootfs-`, `wheel-`, `layer-`), tagged by the local
//!   cache's keys, read and offered by the stages through the tier behind
//!   the local cache ([`Tier`], `cache::RemoteTier`).
//!
//! An entry is an OCI image manifest whose config says what it is
//! ([`CONFIG_TYPE`] or [`STAGE_CONFIG_TYPE`], canonical JSON) and whose
//! layers are its blobs: the registry keeps the blobs alive with the entry,
//! and a push to the same registry mounts them from the cache repository
//! instead of uploading. What is read is checked: the manifest by its
//! digest (the registry client), the config by its digest, its format, key
//! and assemble version, its blobs against the manifest's (another key's
//! entry under this tag is ignored with a warning). A registry that cannot
//! be reached, or refuses, is a warning, never a failed build.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::cache::{Cache, RemoteTier};
// The manifest annotation that says when an entry was written, which
// `assemble cache prune` reads.
use crate::digest::Digest;
use crate::housekeeping::prune::CREATED;
use crate::image::layer::LayerBlob;
use crate::image::remote;
use crate::image::{Blob, Image};
use crate::output::Printer;
use crate::python::resolve::Resolution;
use crate::python::Installed;
use crate::registry::error_chain;
use crate::registry::{Client, Reference, RegistryError, Repository};
use crate::rootfs::DebianRecord;

/// The media type of a record (the entry's config).
pub const CONFIG_TYPE: &str = "application/vnd.assemble.build-record.v1+json";
/// The entry's artifact type.
pub const ARTIFACT_TYPE: &str = "application/vnd.assemble.build-record.v1";
/// The record format this assemble writes and reads.
pub const FORMAT: u32 = 2;
/// The largest record read (the fixture's is about 50 KB).
const MAX_RECORD: u64 = 16 << 20;

/// Where the build cache is read and written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repos {
    /// Repositories read, in order.
    pub from: Vec<Reference>,
    /// The repository written, if any.
    pub to: Option<Reference>,
}

impl Repos {
    /// True when the build cache is neither read nor written.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty() && self.to.is_none()
    }
}

/// A root filesystem as the record keeps it: its layers, not its tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedRootfs {
    /// Its cache key.
    pub key: String,
    /// Its layer blobs.
    pub layers: Vec<LayerBlob>,
    /// Their history lines.
    pub created_by: Vec<String>,
    /// What Debian archive state it was built from.
    pub debian: Option<DebianRecord>,
}

/// What a build was made of and what it made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The key of the inputs (the entry's tag is made from it).
    pub key: String,
    /// The assemble version that built it.
    pub assemble: String,
    /// Project name and version.
    pub name: String,
    /// The version.
    pub version: String,
    /// The interpreter (`X.Y`).
    pub python: String,
    /// The base.
    pub base: RecordedRootfs,
    /// The compiler's Debian archive state.
    pub compiler_debian: Option<DebianRecord>,
    /// The resolved set, with the index pages it was read from.
    pub resolution: Resolution,
    /// The venv's two layers.
    pub dependencies: LayerBlob,
    /// The application's layer.
    pub application: LayerBlob,
    /// What the install found.
    pub installed: Installed,
    /// The runtime layer.
    pub runtime: LayerBlob,
}

impl Record {
    /// Every layer blob the record names: base, then the venv's and runtime.
    pub fn blobs(&self) -> Vec<&LayerBlob> {
        let mut v: Vec<&LayerBlob> = self.base.layers.iter().collect();
        v.extend([&self.dependencies, &self.runtime, &self.application]);
        v
    }
}

/// The tag of the record of `key`.
pub fn tag(key: &str) -> String {
    format!("build-{}", &key[..key.len().min(40)])
}

/// The media type of a stage entry's config ([`StageEntry`]).
pub const STAGE_CONFIG_TYPE: &str = "application/vnd.assemble.cache-entry.v1+json";
/// A stage entry's artifact type.
pub const STAGE_TYPE: &str = "application/vnd.assemble.cache-entry.v1";

/// An entry in use is written again (its date only: the blobs are there)
/// when its date is older than this, so that `assemble cache prune
/// --keep-days N` removes what no build used for N days.
pub const REFRESH_AFTER: u64 = 24 * 3600;

/// The tag of the stage entry `kind`/`key` (`rootfs-…`, `wheel-…`,
/// `layer-…`): the key with the assemble version and entry format hashed
/// in, so that runners of two versions each find their own entries
/// instead of refusing each other's.
pub fn stage_tag(kind: &str, key: &str) -> String {
    let tag = crate::cache::KeyBuilder::new("stage-tag-v1")
        .part("key", key.as_bytes())
        .part("assemble", env!("CARGO_PKG_VERSION").as_bytes())
        .part("format", FORMAT.to_string().as_bytes())
        .finish();
    format!("{kind}-{tag}")
}

/// One stage's entry (the config of its manifest): what the local cache
/// keeps under the same kind and key, and the blobs it names, which are the
/// manifest's layers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StageEntry {
    format: u32,
    kind: String,
    key: String,
    assemble: String,
    value: serde_json::Value,
    blobs: Vec<Blob>,
}

/// An entry's manifest (canonical JSON): `config` as its config, `blobs`
/// as its layers, and when it was written.
fn entry_manifest(
    artifact_type: &str,
    config_type: &str,
    config: &[u8],
    blobs: &[Blob],
    created: &str,
) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|b| {
            serde_json::json!({
                "mediaType": b.media_type,
                "digest": b.digest.to_string(),
                "size": b.size,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {
            "mediaType": config_type,
            "digest": Digest::of(config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
        "annotations": { CREATED: created },
    });
    // serde_json's maps are sorted: this is canonical JSON.
    serde_json::to_vec(&manifest).expect("a manifest serialises")
}

/// Now, as the entries' annotation says it.
fn now() -> String {
    crate::epoch::rfc3339(crate::epoch::now())
}

/// How long ago an entry's manifest says it was written; None when it
/// does not say (an entry of an older assemble: as old as can be).
pub fn age(manifest: &[u8]) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let created = crate::epoch::from_rfc3339(doc["annotations"][CREATED].as_str()?)?;
    Some(crate::epoch::now().saturating_sub(created))
}

/// The entry's manifest for `record` (canonical JSON) and the record's
/// bytes (its config).
fn entry_documents(record: &Record, created: &str) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(record).expect("a record serialises");
    let blobs: Vec<Blob> = record.blobs().into_iter().map(LayerBlob::blob).collect();
    let manifest = entry_manifest(ARTIFACT_TYPE, CONFIG_TYPE, &config, &blobs, created);
    (manifest, config)
}

/// Why an entry was not used.
#[derive(Debug)]
pub enum Miss {
    /// No entry under the tag.
    Absent,
    /// The registry could not be asked (down, refused, timed out).
    Unreachable(String),
    /// An entry that is not a usable record of this key.
    Refused(String),
}

/// The entry under `reference`: its manifest (checked by its digest by the
/// registry client) as an image, and its config, of `config_type`, read
/// into `store` and checked by its digest.
fn read_entry(
    client: Arc<Client>,
    reference: &Reference,
    config_type: &str,
    store: &crate::image::BlobStore,
) -> Result<(Image, Vec<u8>), Miss> {
    let repository = Repository::for_pull(client, reference);
    let image = match remote::image(&repository, reference) {
        Ok(i) => i,
        Err(remote::TransferError::Registry(RegistryError::Status { status: 404, .. })) => {
            return Err(Miss::Absent)
        }
        Err(e) => return Err(Miss::Unreachable(error_chain(&e))),
    };
    let config = image.config_blob();
    if config.media_type != config_type {
        return Err(Miss::Refused(format!(
            "its config is {:?}, not {config_type}",
            config.media_type.chars().take(80).collect::<String>()
        )));
    }
    if config.size > MAX_RECORD {
        return Err(Miss::Refused(format!(
            "its record is {} bytes, more than a record can be",
            config.size
        )));
    }
    // Downloaded into the cache's store, its digest checked as it comes.
    image
        .source()
        .copy_into(config, store)
        .map_err(|e| Miss::Unreachable(error_chain(&e)))?;
    let bytes = store
        .read_verified(&config.digest)
        .map_err(|e| Miss::Refused(error_chain(&e)))?;
    Ok((image, bytes))
}

/// Whether the manifest's layers are exactly the blobs its config names.
fn same_blobs(image: &Image, named: impl IntoIterator<Item = Blob>) -> bool {
    image.layers().iter().cloned().eq(named)
}

/// The record of `key` in `repo`, checked: the manifest's digest (the
/// client), the record's (its config descriptor), its format, its key, the
/// assemble version that wrote it and its layers; with the entry as an
/// image whose blobs stay in the registry.
pub fn fetch(
    client: Arc<Client>,
    repo: &Reference,
    key: &str,
    store: &crate::image::BlobStore,
) -> Result<(Record, Image), Miss> {
    let (image, bytes) = read_entry(client, &entry_reference(repo, key), CONFIG_TYPE, store)?;
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| Miss::Refused(format!("its record does not read: {e}")))?;
    check_header(record.format, &record.key, key, &record.assemble)?;
    let named = record.blobs().into_iter().map(LayerBlob::blob);
    if !same_blobs(&image, named) {
        return Err(Miss::Refused(
            "its layers are not the ones its record names".into(),
        ));
    }
    Ok((record, image))
}

/// The checks every entry passes: the format this assemble reads, the key
/// asked for (an entry under another key's tag is not used), and the same
/// assemble version.
fn check_header(format: u32, found: &str, key: &str, assemble: &str) -> Result<(), Miss> {
    if format != FORMAT {
        return Err(Miss::Refused(format!(
            "record format {format}, this assemble reads {FORMAT}"
        )));
    }
    if found != key {
        let short: String = found.chars().take(12).collect();
        return Err(Miss::Refused(format!(
            "it records the inputs {short:?} under the tag of {:?}",
            &key[..key.len().min(12)]
        )));
    }
    if assemble != env!("CARGO_PKG_VERSION") {
        let short: String = assemble.chars().take(32).collect();
        return Err(Miss::Refused(format!("written by assemble {short:?}")));
    }
    Ok(())
}

/// The entry of `record` as an image whose blobs are in `blobs` (the
/// record is put there, for the push to read).
pub fn entry_image(
    record: &Record,
    blobs: &crate::image::BlobStore,
) -> Result<Image, crate::image::ImageError> {
    let (manifest, config) = entry_documents(record, &now());
    blobs.put_bytes(&config)?;
    Image::built(manifest, config, Arc::new(blobs.clone()))
}

/// The entry's reference in `repo`.
pub fn entry_reference(repo: &Reference, key: &str) -> Reference {
    repo.with_tag(Some(tag(key)))
}

/// The build cache as the tier behind the local cache: stage entries
/// (`rootfs`, `wheel`, `layer`) read from the repositories of
/// [`Repos::from`], in order, and the ones this build made offered, to be
/// written to [`Repos::to`] when it ends ([`Tier::take_offered`]). A
/// repository that could not be read is not asked again, nor written.
/// The entries of a build's inputs (`rootfs`, `wheel`) may be written while
/// the build goes on ([`Tier::next_inputs`]).
pub struct Tier {
    client: Arc<Client>,
    repos: Repos,
    unreachable: Mutex<Vec<Reference>>,
    offered: Mutex<Offered>,
    more: Condvar,
    writable: std::sync::OnceLock<bool>,
    refused: AtomicBool,
}

/// The entries offered and not taken yet.
#[derive(Default)]
struct Offered {
    entries: Vec<StageEntry>,
    /// The kind and key of every entry offered, taken or not.
    seen: std::collections::HashSet<(String, String)>,
    /// No more are waited for by [`Tier::next_inputs`].
    closed: bool,
}

/// The kinds of entries made from a build's inputs, none of them the
/// image's layers but the base rootfs's: written while the build goes on.
/// The image's own layers (`layer`) are written after its push, which has
/// put their blobs in the registry to be mounted.
const INPUT_KINDS: [&str; 2] = ["rootfs", "wheel"];

impl Tier {
    /// The tier over `repos`.
    pub fn new(client: Arc<Client>, repos: Repos) -> Self {
        Self {
            client,
            repos,
            unreachable: Mutex::new(Vec::new()),
            offered: Mutex::new(Offered::default()),
            more: Condvar::new(),
            writable: std::sync::OnceLock::new(),
            refused: AtomicBool::new(false),
        }
    }

    /// The registry client.
    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// Where the build cache is read and written.
    pub fn repos(&self) -> &Repos {
        &self.repos
    }

    /// Whether `repo` could not be read in this build.
    pub fn is_unreachable(&self, repo: &Reference) -> bool {
        self.unreachable
            .lock()
            .expect("not poisoned")
            .contains(repo)
    }

    /// Notes that `repo` could not be read: it is not asked again, nor
    /// written.
    pub fn mark_unreachable(&self, repo: &Reference) {
        self.unreachable
            .lock()
            .expect("not poisoned")
            .push(repo.clone());
    }

    /// Whether the repository written may be written: not when it could
    /// not be read, nor when the registry's token for it grants no push (a
    /// pull-only token: said once, nothing tried). Where that cannot be
    /// told before (Basic authentication, an opaque token), the write is
    /// tried and a refusal is a warning. Decided once per build.
    pub fn may_write(&self, printer: &Printer) -> bool {
        if self.refused.load(Ordering::Relaxed) {
            return false;
        }
        *self.writable.get_or_init(|| {
            let Some(to) = &self.repos.to else {
                return false;
            };
            if self.is_unreachable(to) {
                // Said once, when it was read.
                return false;
            }
            // One request first, so that the registry's authentication is
            // known (a build that only writes there has asked nothing yet).
            let probe = to.with_tag(Some(tag("0")));
            let asked = self.entry_age(&probe).and_then(|_| {
                self.client.grants(
                    to.api_host(),
                    &crate::registry::Scopes::push(&to.repository, &[]),
                )
            });
            match asked {
                Ok(Some(false)) => {
                    printer.step(&format!(
                        "remote cache: the registry grants these credentials no push to {to}: read only, not written"
                    ));
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    printer.warn(&format!(
                        "cannot write to the build cache {to}: {}",
                        error_chain(&e)
                    ));
                    false
                }
            }
        })
    }

    /// Notes that a write to the repository written was refused: nothing
    /// more is written in this build (the refusal was said once).
    pub fn stop_writing(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// The entries offered in this build, as images whose blobs are in
    /// `store` with the reference each goes to; none when no repository is
    /// written or it could not be read.
    pub fn take_offered(
        &self,
        store: &crate::image::BlobStore,
    ) -> Result<Vec<(Image, Reference)>, crate::image::ImageError> {
        let offered = std::mem::take(&mut self.offered.lock().expect("not poisoned").entries);
        self.entry_images(offered, store)
    }

    /// The entries of the build's inputs offered since the last call, as
    /// [`Tier::take_offered`]; waits for one until [`Tier::close_inputs`].
    /// None once closed and all taken.
    pub fn next_inputs(
        &self,
        store: &crate::image::BlobStore,
    ) -> Result<Option<Vec<(Image, Reference)>>, crate::image::ImageError> {
        let is_input = |e: &StageEntry| INPUT_KINDS.contains(&e.kind.as_str());
        let mut offered = self.offered.lock().expect("not poisoned");
        while !offered.closed && !offered.entries.iter().any(is_input) {
            offered = self.more.wait(offered).expect("not poisoned");
        }
        let (inputs, rest) = std::mem::take(&mut offered.entries)
            .into_iter()
            .partition::<Vec<_>, _>(is_input);
        offered.entries = rest;
        drop(offered);
        if inputs.is_empty() {
            return Ok(None);
        }
        self.entry_images(inputs, store).map(Some)
    }

    /// Ends [`Tier::next_inputs`]'s waiting: what was offered before is
    /// still taken, what is offered after is left to
    /// [`Tier::take_offered`]. With `drop`, the entries not taken yet are
    /// forgotten (a failed build does not wait for them).
    pub fn close_inputs(&self, drop: bool) {
        let mut offered = self.offered.lock().expect("not poisoned");
        offered.closed = true;
        if drop {
            offered.entries.clear();
        }
        self.more.notify_all();
    }

    /// `entries` as images whose blobs are in `store`, with the reference
    /// each goes to; none when no repository is written or it could not be
    /// read.
    fn entry_images(
        &self,
        offered: Vec<StageEntry>,
        store: &crate::image::BlobStore,
    ) -> Result<Vec<(Image, Reference)>, crate::image::ImageError> {
        let Some(to) = self.repos.to.as_ref().filter(|to| !self.is_unreachable(to)) else {
            return Ok(Vec::new());
        };
        let created = now();
        let mut out = Vec::new();
        for entry in offered {
            let config = serde_json::to_vec(&entry).expect("an entry serialises");
            let manifest = entry_manifest(
                STAGE_TYPE,
                STAGE_CONFIG_TYPE,
                &config,
                &entry.blobs,
                &created,
            );
            store.put_bytes(&config)?;
            let reference = to.with_tag(Some(stage_tag(&entry.kind, &entry.key)));
            out.push((
                Image::built(manifest, config, Arc::new(store.clone()))?,
                reference,
            ));
        }
        Ok(out)
    }

    /// The age of the entry under `reference` ([`age`]; `u64::MAX` when it
    /// has no date), None when there is none.
    pub fn entry_age(&self, reference: &Reference) -> Result<Option<u64>, RegistryError> {
        let repository = Repository::for_pull(self.client.clone(), reference);
        match repository.get_manifest(reference.tag.as_deref().unwrap_or_default()) {
            Ok((bytes, _)) => Ok(Some(age(&bytes).unwrap_or(u64::MAX))),
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `entry` to the entries to write, once per kind and key.
    fn push_offer(&self, entry: StageEntry) {
        let mut offered = self.offered.lock().expect("not poisoned");
        if !offered.seen.insert((entry.kind.clone(), entry.key.clone())) {
            return;
        }
        offered.entries.push(entry);
        self.more.notify_all();
    }

    /// The stage entry `kind`/`key` of `repo`, checked, its blobs fetched
    /// into the cache's store.
    fn fetch_from(
        &self,
        cache: &Cache,
        repo: &Reference,
        kind: &str,
        key: &str,
        check: &dyn Fn(&serde_json::Value) -> Result<(), String>,
    ) -> Result<serde_json::Value, Miss> {
        let reference = repo.with_tag(Some(stage_tag(kind, key)));
        let (image, bytes) = read_entry(
            self.client.clone(),
            &reference,
            STAGE_CONFIG_TYPE,
            cache.blobs(),
        )?;
        let entry: StageEntry = serde_json::from_slice(&bytes)
            .map_err(|e| Miss::Refused(format!("its entry does not read: {e}")))?;
        check_header(entry.format, &entry.key, key, &entry.assemble)?;
        if entry.kind != kind {
            return Err(Miss::Refused(format!(
                "it is a {:?} entry under the tag of a {kind} entry",
                entry.kind.chars().take(16).collect::<String>()
            )));
        }
        if !same_blobs(&image, entry.blobs.iter().cloned()) {
            return Err(Miss::Refused(
                "its blobs are not the ones its entry names".into(),
            ));
        }
        check(&entry.value).map_err(Miss::Refused)?;
        for blob in image.layers() {
            if !cache.blobs().has(&blob.digest) {
                image
                    .source()
                    .copy_into(blob, cache.blobs())
                    .map_err(|e| match &e {
                        // Bytes that are not the blob named: the entry is
                        // refused, the registry is not called down.
                        crate::image::ImageError::Registry(r)
                            if !matches!(**r, RegistryError::Protocol(_)) =>
                        {
                            Miss::Unreachable(error_chain(&e))
                        }
                        _ => Miss::Refused(error_chain(&e)),
                    })?;
            }
        }
        let digests: Vec<Digest> = image.layers().iter().map(|b| b.digest.clone()).collect();
        cache.remember_blobs(repo.api_host(), &repo.repository, &digests);
        // In use: dated again in the repository written, when it is old
        // there (what `assemble cache prune` goes by).
        let stale = age(image.manifest_bytes()).is_none_or(|a| a >= REFRESH_AFTER);
        if stale && self.repos.to.as_ref() == Some(repo) {
            self.push_offer(entry.clone());
        }
        Ok(entry.value)
    }
}

impl RemoteTier for Tier {
    fn fetch(
        &self,
        cache: &Cache,
        kind: &str,
        key: &str,
        check: &dyn Fn(&serde_json::Value) -> Result<(), String>,
        printer: &Printer,
    ) -> Option<serde_json::Value> {
        for repo in &self.repos.from {
            if self.is_unreachable(repo) {
                continue;
            }
            match self.fetch_from(cache, repo, kind, key, check) {
                Ok(value) => {
                    printer.step(&format!(
                        "remote cache: {kind} {} from {repo}",
                        &key[..key.len().min(12)]
                    ));
                    return Some(value);
                }
                Err(miss) => {
                    if matches!(miss, Miss::Unreachable(_)) {
                        self.mark_unreachable(repo);
                    }
                    miss.say(printer, repo, kind);
                }
            }
        }
        None
    }

    fn writes(&self) -> bool {
        self.repos.to.is_some()
    }

    fn offer(&self, kind: &str, key: &str, value: serde_json::Value, blobs: Vec<Blob>) {
        if self.repos.to.is_none() {
            return;
        }
        self.push_offer(StageEntry {
            format: FORMAT,
            kind: kind.into(),
            key: key.into(),
            assemble: env!("CARGO_PKG_VERSION").into(),
            value,
            blobs,
        });
    }
}

impl Miss {
    /// Says why `what` (`record`, or a stage's kind) of `repo` was not
    /// used: a progress line when there is none, else one warning.
    pub fn say(&self, printer: &Printer, repo: &Reference, what: &str) {
        match self {
            Miss::Absent if what == "record" => printer.step(&format!(
                "remote cache: nothing recorded for these inputs in {repo}"
            )),
            Miss::Absent => {}
            Miss::Unreachable(why) => printer.warn(&format!(
                "cannot read the build cache {repo} ({why}); building here"
            )),
            Miss::Refused(why) => printer.warn(&format!(
                "ignoring the build cache's {what} entry in {repo}: {why}; building here"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8) -> LayerBlob {
        LayerBlob {
            digest: Digest::of(&[n]),
            diff_id: Digest::of(&[n, n]),
            size: u64::from(n),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    fn record() -> Record {
        Record {
            format: FORMAT,
            key: "ab".repeat(32),
            assemble: env!("CARGO_PKG_VERSION").into(),
            name: "milborne".into(),
            version: "0.4.0".into(),
            python: "3.11".into(),
            base: RecordedRootfs {
                key: "k".into(),
                layers: vec![blob(1)],
                created_by: vec!["mmdebstrap".into()],
                debian: None,
            },
            compiler_debian: None,
            resolution: Resolution {
                packages: vec![],
                pages: vec![],
            },
            dependencies: blob(2),
            application: blob(4),
            installed: Installed::default(),
            runtime: blob(3),
        }
    }

    #[test]
    fn an_entry_names_the_record_as_config_and_every_layer_bottom_first() {
        let r = record();
        let (manifest, config) = entry_documents(&r, "2026-01-01T00:00:00Z");
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["artifactType"], ARTIFACT_TYPE);
        assert_eq!(m["config"]["mediaType"], CONFIG_TYPE);
        assert_eq!(m["config"]["digest"], Digest::of(&config).to_string());
        let layers: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        let want: Vec<String> = [1u8, 2, 3, 4]
            .iter()
            .map(|n| Digest::of(&[*n]).to_string())
            .collect();
        assert_eq!(layers, want);
        let back: Record = serde_json::from_slice(&config).unwrap();
        assert_eq!(back, r);
        assert_eq!(tag(&r.key), format!("build-{}", &r.key[..40]));
    }
}
