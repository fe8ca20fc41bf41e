//! Images as values, read from anywhere and written anywhere
//! (go-containerregistry's `v1` with its `layout`, `remote`, `tarball` and
//! `mutate` packages).
//!
//! An [`Image`] is a manifest (its exact bytes, parsed once, here), the
//! blobs it names, and a [`BlobSource`] to read them from. Sources: the
//! pipeline's documents over the cache's blob store ([`Image::built`]), an
//! OCI layout ([`layout::Layout::image`]), an oci-archive
//! ([`archive::open_oci_archive`]) and a registry ([`remote::image`]).
//! Sinks: an OCI layout ([`layout::Layout::write_image`]), an oci-archive or
//! docker-archive ([`archive::write`]) and a registry ([`remote::push`]).
//! [`mutate`] changes an image (the Docker schema 2 conversion).
//!
//! Under it: [`layer`] writes layers (deterministic tar, tree walk,
//! compression) and [`unpack`] extracts untrusted ones. This module never
//! reads the cache or the command line, and knows nothing of Python.

pub mod archive;
pub mod blobs;
pub mod documents;
mod error;
pub mod layer;
pub mod layout;
pub mod media;
pub mod mutate;
pub mod remote;
pub mod unpack;

use std::sync::{Arc, OnceLock};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

pub use blobs::{Blob, BlobSource, BlobStore};
pub use documents::BaseImage;
pub use error::ImageError;

use crate::digest::Digest;

/// An image: its manifest, the blobs it names and where to read them.
#[derive(Clone, Debug)]
pub struct Image {
    digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: ImageManifest,
    media_type: String,
    config: Blob,
    layers: Vec<Blob>,
    config_bytes: OnceLock<Vec<u8>>,
    source: Arc<dyn BlobSource>,
}

impl Image {
    /// The image whose manifest is `bytes`, its blobs in `source`. This is
    /// where every manifest assemble reads is parsed.
    pub fn from_manifest(bytes: Vec<u8>, source: Arc<dyn BlobSource>) -> Result<Self, ImageError> {
        let digest = Digest::of(&bytes);
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Manifest {
                origin: source.name(),
                digest: digest.clone(),
                source: e,
            })?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| media::OCI_MANIFEST.into());
        let config = Blob::from_descriptor(manifest.config())?;
        let layers = manifest
            .layers()
            .iter()
            .map(Blob::from_descriptor)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            digest,
            manifest_bytes: bytes,
            manifest,
            media_type,
            config,
            layers,
            config_bytes: OnceLock::new(),
            source,
        })
    }

    /// An image the pipeline built: its documents, its layers in `source`
    /// (the cache's blob store; the configuration is held in memory).
    pub fn built(
        manifest: Vec<u8>,
        config: Vec<u8>,
        source: Arc<dyn BlobSource>,
    ) -> Result<Self, ImageError> {
        let image = Self::from_manifest(manifest, source)?;
        let _ = image.config_bytes.set(config);
        Ok(image)
    }

    /// The manifest's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The manifest's exact bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    /// The manifest's media type (OCI's when the manifest names none).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The configuration blob.
    pub fn config_blob(&self) -> &Blob {
        &self.config
    }

    /// The layer blobs, bottom first.
    pub fn layers(&self) -> &[Blob] {
        &self.layers
    }

    /// Every blob: the configuration, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Where the blobs are read from.
    pub fn source(&self) -> &dyn BlobSource {
        self.source.as_ref()
    }

    /// The configuration's exact bytes, read (and checked) once.
    pub fn config_bytes(&self) -> Result<&[u8], ImageError> {
        if let Some(b) = self.config_bytes.get() {
            return Ok(b);
        }
        let bytes = self.source.read_verified(&self.config.digest)?;
        Ok(self.config_bytes.get_or_init(|| bytes))
    }

    /// The parsed configuration.
    pub fn config(&self) -> Result<ImageConfiguration, ImageError> {
        serde_json::from_slice(self.config_bytes()?).map_err(|source| ImageError::Config {
            origin: self.source.name(),
            digest: self.config.digest.clone(),
            source,
        })
    }

    /// The same blobs under another manifest (see [`mutate`]).
    fn with_manifest(&self, bytes: Vec<u8>, media_type: &str) -> Result<Self, ImageError> {
        let mut image = Self::from_manifest(bytes, self.source.clone())?;
        image.media_type = media_type.to_string();
        image.config_bytes = self.config_bytes.clone();
        Ok(image)
    }
}

/// Parses an image index (a layout's `index.json`, a registry's list of
/// per-platform images).
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, serde_json::Error> {
    serde_json::from_slice(bytes)
}
