//! Changes of an image: new images over the same blobs.

use crate::image::documents::canonical_json;
use crate::image::error::ImageError;
use crate::image::{media, Image};

/// The manifest format of a push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// OCI image manifest, as written in the layout.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for registries that refuse OCI media types.
    Docker,
}

/// The image in the given manifest format: itself for OCI, else
/// [`docker_schema2`].
pub fn in_format(image: &Image, format: ManifestFormat) -> Result<Image, ImageError> {
    match format {
        ManifestFormat::Oci => Ok(image.clone()),
        ManifestFormat::Docker => docker_schema2(image),
    }
}

/// The image with a Docker schema 2 manifest: same blobs, Docker media
/// types (the manifest's digest changes with its bytes).
pub fn docker_schema2(image: &Image) -> Result<Image, ImageError> {
    let bytes = to_docker_manifest(image.manifest_bytes()).map_err(|e| match e {
        Conversion::Layer(media_type) => ImageError::NoDockerMediaType { media_type },
        Conversion::Shape(reason) => ImageError::Convert {
            digest: image.digest().clone(),
            reason,
        },
    })?;
    image.with_manifest(bytes, media::DOCKER_MANIFEST)
}

/// Why a manifest has no Docker schema 2 form.
#[derive(Debug)]
enum Conversion {
    /// A layer of this media type has no Docker equivalent.
    Layer(String),
    /// The manifest is not shaped as one.
    Shape(&'static str),
}

/// Rewrites an OCI image manifest as a Docker schema 2 manifest: same
/// blobs, Docker media types.
fn to_docker_manifest(oci_manifest: &[u8]) -> Result<Vec<u8>, Conversion> {
    let mut v: serde_json::Value =
        serde_json::from_slice(oci_manifest).map_err(|_| Conversion::Shape("it is not JSON"))?;
    let obj = v
        .as_object_mut()
        .ok_or(Conversion::Shape("it is not a JSON object"))?;
    obj.insert("mediaType".into(), media::DOCKER_MANIFEST.into());
    for k in ["annotations", "artifactType", "subject"] {
        obj.remove(k);
    }
    if let Some(c) = obj.get_mut("config").and_then(|c| c.as_object_mut()) {
        c.insert("mediaType".into(), media::DOCKER_CONFIG.into());
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
            .ok_or(Conversion::Shape("a layer descriptor is not an object"))?;
        let media_type = l
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        let docker = match media_type.as_str() {
            media::LAYER_TAR_GZIP | media::DOCKER_LAYER_TAR_GZIP => media::DOCKER_LAYER_TAR_GZIP,
            media::LAYER_TAR | media::DOCKER_LAYER_TAR => media::DOCKER_LAYER_TAR,
            _ => return Err(Conversion::Layer(media_type)),
        };
        l.insert("mediaType".into(), docker.into());
        l.remove("annotations");
    }
    Ok(canonical_json(&v))
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
}
