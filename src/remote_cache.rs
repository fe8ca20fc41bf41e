//! The registry as the build cache of a fleet of runners: a build's record
//! (what it was made of and the descriptors of every layer) stored as an
//! OCI artifact in a repository of a registry, tagged by the key of the
//! build's inputs, so that another runner with the same inputs and an empty
//! cache writes the image from the record instead of building it.
//!
//! An entry is an OCI image manifest whose config is the record
//! ([`CONFIG_TYPE`], canonical JSON) and whose layers are the image's
//! layers: the registry keeps the blobs alive with the entry, and a push to
//! the same registry mounts them from the cache repository instead of
//! uploading. What is read is checked: the manifest by its digest (the
//! registry client), the record by its digest and by the key it names
//! (another key's record under this tag is ignored with a warning). A
//! registry that cannot be reached, or refuses, is a warning, never a
//! failed build.

use std::sync::Arc;

use crate::digest::Digest;
use crate::image::layer::LayerBlob;
use crate::image::remote;
use crate::image::Image;
use crate::output::Printer;
use crate::python::resolve::Resolution;
use crate::python::Installed;
use crate::registry::{Client, Reference, RegistryError, Repository};
use crate::rootfs::DebianRecord;

/// The media type of a record (the entry's config).
pub const CONFIG_TYPE: &str = "application/vnd.assemble.build-record.v1+json";
/// The entry's artifact type.
pub const ARTIFACT_TYPE: &str = "application/vnd.assemble.build-record.v1";
/// The record format this assemble writes and reads.
pub const FORMAT: u32 = 1;
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

/// The tag of the entry for `key`.
pub fn tag(key: &str) -> String {
    format!("build-{}", &key[..key.len().min(40)])
}

/// The entry's manifest for `record` (canonical JSON) and the record's
/// bytes (its config).
fn entry_documents(record: &Record) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(record).expect("a record serialises");
    let layers: Vec<serde_json::Value> = record
        .blobs()
        .into_iter()
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
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    // serde_json's maps are sorted: this is canonical JSON.
    let manifest = serde_json::to_vec(&manifest).expect("a manifest serialises");
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

/// The record of `key` in `repo`, checked: the manifest's digest (the
/// client), the record's (its config descriptor), its format, its key and
/// the assemble version that wrote it.
pub fn fetch(
    client: Arc<Client>,
    repo: &Reference,
    key: &str,
    store: &crate::image::BlobStore,
) -> Result<Record, Miss> {
    let reference = Reference {
        tag: Some(tag(key)),
        digest: None,
        ..repo.clone()
    };
    let repository = Repository::for_pull(client, &reference);
    let image = match remote::image(&repository, &reference) {
        Ok(i) => i,
        Err(remote::TransferError::Registry(RegistryError::Status { status: 404, .. })) => {
            return Err(Miss::Absent)
        }
        Err(e) => return Err(Miss::Unreachable(chain(&e))),
    };
    let config = image.config_blob();
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
        .map_err(|e| Miss::Unreachable(chain(&e)))?;
    let bytes = store
        .read_verified(&config.digest)
        .map_err(|e| Miss::Refused(chain(&e)))?;
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| Miss::Refused(format!("its record does not read: {e}")))?;
    if record.format != FORMAT {
        return Err(Miss::Refused(format!(
            "record format {}, this assemble reads {FORMAT}",
            record.format
        )));
    }
    if record.key != key {
        let short: String = record.key.chars().take(12).collect();
        return Err(Miss::Refused(format!(
            "it records the inputs {short:?} under the tag of {:?}",
            &key[..key.len().min(12)]
        )));
    }
    if record.assemble != env!("CARGO_PKG_VERSION") {
        let short: String = record.assemble.chars().take(32).collect();
        return Err(Miss::Refused(format!("written by assemble {short:?}")));
    }
    let named: Vec<(&Digest, u64, &str)> = image
        .layers()
        .iter()
        .map(|b| (&b.digest, b.size, b.media_type.as_str()))
        .collect();
    let recorded: Vec<(&Digest, u64, &str)> = record
        .blobs()
        .into_iter()
        .map(|b| (&b.digest, b.size, b.media_type.as_str()))
        .collect();
    if named != recorded {
        return Err(Miss::Refused(
            "its layers are not the ones its record names".into(),
        ));
    }
    Ok(record)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The entry of `record` as an image whose blobs are in `blobs` (the
/// record is put there, for the push to read).
pub fn entry_image(
    record: &Record,
    blobs: &crate::image::BlobStore,
) -> Result<Image, crate::image::ImageError> {
    let (manifest, config) = entry_documents(record);
    blobs.put_bytes(&config)?;
    Image::built(manifest, config, Arc::new(blobs.clone()))
}

/// The entry's reference in `repo`.
pub fn entry_reference(repo: &Reference, key: &str) -> Reference {
    Reference {
        tag: Some(tag(key)),
        digest: None,
        ..repo.clone()
    }
}

/// One warning line for a miss that is worth one.
pub fn warn_miss(printer: &Printer, repo: &Reference, miss: &Miss) {
    match miss {
        Miss::Absent => printer.step(&format!(
            "remote cache: nothing recorded for these inputs in {repo}"
        )),
        Miss::Unreachable(why) => printer.warn(&format!(
            "cannot read the build cache {repo} ({why}); building here"
        )),
        Miss::Refused(why) => printer.warn(&format!(
            "ignoring the build cache entry in {repo}: {why}; building here"
        )),
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
        let (manifest, config) = entry_documents(&r);
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
