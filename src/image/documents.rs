//! The documents of a built image: its configuration and manifest, as
//! canonical JSON.
//!
//! The documents are built with oci-spec's types, whose maps are `HashMap`s;
//! [`canonical_json`] therefore re-serialises every document with its object
//! keys sorted before anything is hashed, so a digest never depends on a
//! hasher's seed.

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, Descriptor, DescriptorBuilder, History, HistoryBuilder,
    ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use crate::digest::Digest;
use crate::image::error::ImageError;
use crate::image::layer::LayerBlob;

/// The manifest annotation naming the base image (image-spec annotations).
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The manifest annotation with the base image's digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The image a given base is: as the image's manifest annotations name it
/// (`org.opencontainers.image.base.*`, what `crane rebase` and update bots
/// read), and the configuration the image keeps of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseImage {
    /// Its reference, fully qualified (`registry/repository:tag`): a
    /// registry's image only (a layout's path is no reference).
    pub name: Option<String>,
    /// The digest of what was named: the index's when the reference names
    /// one (the image spec's rule), else the image's manifest.
    pub digest: Digest,
    /// Its `Config.Env`, kept under the image's own.
    #[serde(default)]
    pub env: Vec<String>,
    /// Its `Config.Labels`, kept where the image's own do not clash.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl BaseImage {
    /// `ours` (`KEY=VALUE`) over its environment: its variables `ours` does
    /// not set stay, first, in their order; its `PATH` directories that
    /// ours lacks go after ours.
    pub fn environment_under(&self, ours: Vec<String>) -> Vec<String> {
        let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
        let mut env: Vec<String> = self
            .env
            .iter()
            .filter(|e| !ours.iter().any(|o| key(o) == key(e)))
            .cloned()
            .collect();
        let base_path = self
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        for e in ours {
            match e.strip_prefix("PATH=") {
                Some(path) => {
                    let mut dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
                    for d in base_path.split(':').filter(|d| !d.is_empty()) {
                        if !dirs.contains(&d) {
                            dirs.push(d);
                        }
                    }
                    env.push(format!("PATH={}", dirs.join(":")));
                }
                None => env.push(e),
            }
        }
        env
    }

    /// `ours` over its labels: its labels stay where ours do not set them.
    pub fn labels_under(&self, ours: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut labels = self.labels.clone();
        labels.extend(ours);
        labels.into_iter().collect()
    }

    /// The manifest annotations that name it.
    pub fn annotations(&self) -> Vec<(String, String)> {
        let mut out = vec![(BASE_DIGEST.to_string(), self.digest.to_string())];
        if let Some(name) = &self.name {
            out.push((BASE_NAME.to_string(), name.clone()));
        }
        out
    }
}

/// Serialises a value as compact JSON with every object's keys sorted.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut items: Vec<_> = map.into_iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(items.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let v = serde_json::to_value(value).expect("OCI documents serialise to JSON");
    serde_json::to_vec(&sort(v)).expect("JSON values serialise")
}

/// What goes into an image configuration besides its layers.
#[derive(Clone, Debug, Default)]
pub struct ImageSettings {
    /// `Config.User`.
    pub user: String,
    /// `Config.Env`, in order.
    pub env: Vec<String>,
    /// `Config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Config.Cmd`.
    pub cmd: Vec<String>,
    /// `Config.WorkingDir`.
    pub working_dir: String,
    /// `Config.ExposedPorts` (`8080/tcp`).
    pub exposed_ports: Vec<String>,
    /// `Config.Volumes`.
    pub volumes: Vec<String>,
    /// `Config.Labels`.
    pub labels: Vec<(String, String)>,
    /// `created`, RFC 3339.
    pub created: String,
    /// OCI architecture name (`amd64`).
    pub architecture: String,
    /// The manifest's annotations (the base image's name and digest).
    pub annotations: Vec<(String, String)>,
}

/// One layer of an image with the history line that describes it.
#[derive(Clone, Debug)]
pub struct ImageLayer {
    /// The blob.
    pub blob: LayerBlob,
    /// `history[].created_by`.
    pub created_by: String,
}

/// The serialised configuration and manifest of an image.
#[derive(Clone, Debug)]
pub struct ImageDocuments {
    /// Canonical JSON of the configuration.
    pub config: Vec<u8>,
    /// Canonical JSON of the manifest.
    pub manifest: Vec<u8>,
}

impl ImageDocuments {
    /// Digest of the manifest.
    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

fn document_err(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> ImageError {
    move |source| ImageError::Document { what, source }
}

/// Builds the configuration and manifest of an image.
pub fn image_documents(
    settings: &ImageSettings,
    layers: &[ImageLayer],
) -> Result<ImageDocuments, ImageError> {
    let config = configuration(settings, layers)?;
    let layer_descs = layers
        .iter()
        .map(|l| {
            descriptor(
                MediaType::from(l.blob.media_type.as_str()),
                &l.blob.digest,
                l.blob.size,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config_desc = descriptor(
        MediaType::ImageConfig,
        &Digest::of(&config),
        config.len() as u64,
    )?;
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs);
    if !settings.annotations.is_empty() {
        manifest = manifest.annotations(
            settings
                .annotations
                .iter()
                .cloned()
                .collect::<HashMap<_, _>>(),
        );
    }
    let manifest = manifest.build().map_err(document_err("manifest"))?;
    Ok(ImageDocuments {
        config,
        manifest: canonical_json(&manifest),
    })
}

/// The canonical JSON of the image configuration.
fn configuration(settings: &ImageSettings, layers: &[ImageLayer]) -> Result<Vec<u8>, ImageError> {
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|l| l.blob.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(document_err("rootfs"))?;
    let history = layers
        .iter()
        .map(|l| {
            HistoryBuilder::default()
                .created(settings.created.clone())
                .created_by(l.created_by.clone())
                .build()
                .map_err(document_err("history"))
        })
        .collect::<Result<Vec<History>, _>>()?;
    let image = ImageConfigurationBuilder::default()
        .created(settings.created.clone())
        .architecture(Arch::from(settings.architecture.as_str()))
        .os(Os::Linux)
        .config(runtime_config(settings)?)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(document_err("configuration"))?;
    Ok(canonical_json(&image))
}

/// `config` of the image configuration: what a runtime starts the image with.
fn runtime_config(settings: &ImageSettings) -> Result<Config, ImageError> {
    let mut config = ConfigBuilder::default()
        .env(settings.env.clone())
        .working_dir(settings.working_dir.clone())
        .labels(settings.labels.iter().cloned().collect::<HashMap<_, _>>());
    if !settings.user.is_empty() {
        config = config.user(settings.user.clone());
    }
    if !settings.entrypoint.is_empty() {
        config = config.entrypoint(settings.entrypoint.clone());
    }
    if !settings.cmd.is_empty() {
        config = config.cmd(settings.cmd.clone());
    }
    if !settings.exposed_ports.is_empty() {
        config = config.exposed_ports(settings.exposed_ports.clone());
    }
    if !settings.volumes.is_empty() {
        config = config.volumes(settings.volumes.clone());
    }
    config.build().map_err(document_err("config"))
}

/// A descriptor of a blob.
pub fn descriptor(
    media_type: MediaType,
    digest: &Digest,
    size: u64,
) -> Result<Descriptor, ImageError> {
    let digest = oci_spec::image::Digest::from_str(&digest.to_string())
        .map_err(document_err("descriptor"))?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(document_err("descriptor"))
}

/// Platform of the running machine, in OCI terms.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_images_environment_and_labels_stay_under_ours() {
        let base = BaseImage {
            name: None,
            digest: Digest::of(b"base"),
            env: vec![
                "PATH=/opt/tools/bin:/usr/local/bin:/usr/bin".into(),
                "LANG=en_US.UTF-8".into(),
                "TEAM_TOKEN_FILE=/run/secrets/t".into(),
            ],
            labels: [
                ("team".to_string(), "blue".to_string()),
                (
                    "org.opencontainers.image.title".to_string(),
                    "base".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let env = base.environment_under(vec![
            "PATH=/home/blue/app/bin:/usr/local/bin:/usr/bin:/bin".into(),
            "LANG=C.UTF-8".into(),
            "HOME=/home/blue".into(),
        ]);
        assert_eq!(
            env,
            [
                "TEAM_TOKEN_FILE=/run/secrets/t",
                "PATH=/home/blue/app/bin:/usr/local/bin:/usr/bin:/bin:/opt/tools/bin",
                "LANG=C.UTF-8",
                "HOME=/home/blue",
            ]
        );
        let labels = base.labels_under(vec![(
            "org.opencontainers.image.title".into(),
            "milborne".into(),
        )]);
        assert_eq!(
            labels,
            [
                (
                    "org.opencontainers.image.title".to_string(),
                    "milborne".to_string()
                ),
                ("team".to_string(), "blue".to_string()),
            ]
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": {"z": 1, "a": 2}, "a": [ {"y": 1, "x": 2} ]});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}"#
        );
    }
}
