//! A base or compiler given by the user or found in a store: a tarball, an
//! OCI layout, an image (from a registry), or layer blobs of an offline
//! store. Their layer blobs are used as they are (never recompressed); only
//! unpacked. `role` (base or compiler) only names it in the progress.

use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder as GzDecoder;

use crate::cache::{Cache, KeyBuilder, Origin};
use crate::digest::{Digest, HashingReader};
use crate::image::layer::{self, LayerBlob};
use crate::image::layout::Layout;
use crate::image::unpack::{self, UnpackError};
use crate::image::{media, BlobStore, Image};
use crate::output::Printer;
use crate::rootfs::error::{io_err, RootfsError};
use crate::rootfs::{commit, load_cached, DebianRecord, Rootfs};

/// Gets a rootfs from a tarball: its bytes become the layer as they are.
pub fn from_tarball(
    cache: &Cache,
    path: &Path,
    role: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let name = path.display().to_string();
    let (digest, size) =
        crate::digest::digest_file(path).map_err(|source| RootfsError::ReadBase {
            source_name: name.clone(),
            source,
        })?;
    let key = KeyBuilder::new("rootfs-tarball-v1")
        .part("digest", digest.to_string().as_bytes())
        .finish();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!("{role} rootfs: cached ({name})"));
        return Ok(r);
    }
    printer.step(&format!("{role} rootfs: unpacking {name}"));
    let mut magic = [0u8; 2];
    let gzip = fs_err::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| magic == [0x1f, 0x8b])
        .unwrap_or(false);
    cache.blobs().import_path(path, &digest)?;
    let work = cache.work_dir("rootfs-tarball")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let file = io::BufReader::new(fs_err::File::open(path).map_err(io_err(path))?);
    let (diff_id, media_type) = if gzip {
        (
            unpack_hashing(GzDecoder::new(file), &tree, &name)?,
            media::LAYER_TAR_GZIP,
        )
    } else {
        (unpack_hashing(file, &tree, &name)?, media::LAYER_TAR)
    };
    let blob = LayerBlob {
        digest,
        diff_id,
        size,
        media_type: media_type.to_string(),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    commit(
        cache,
        work,
        &key,
        vec![blob],
        vec![format!("base tarball {file_name}")],
        None,
    )
}

/// Unpacks a tar stream and returns the digest of the whole stream, trailing
/// padding included (the layer's diff_id).
fn unpack_hashing(reader: impl Read, tree: &Path, name: &str) -> Result<Digest, RootfsError> {
    let mut hashing = HashingReader::new(reader);
    unpack::unpack(&mut hashing, tree).map_err(|source| RootfsError::Unpack {
        source_name: name.to_string(),
        source,
    })?;
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| RootfsError::Unpack {
        source_name: name.to_string(),
        source: UnpackError::Read(e),
    })?;
    Ok(hashing.finish().0)
}

/// Gets a rootfs from an OCI layout: its layer blobs are used as they are.
pub fn from_layout(
    cache: &Cache,
    dir: &Path,
    tag: Option<&str>,
    role: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let name = format!(
        "oci:{}{}",
        dir.display(),
        tag.map(|t| format!(":{t}")).unwrap_or_default()
    );
    let image = Layout::open(dir)
        .and_then(|l| l.image(tag))
        .map_err(|source| RootfsError::UnusableBase {
            source_name: name.clone(),
            source,
        })?;
    from_image(cache, &image, &name, role, printer)
}

/// Gets a rootfs from an image (named `name` in messages and history):
/// its layer blobs are used as they are.
pub fn from_image(
    cache: &Cache,
    image: &Image,
    name: &str,
    role: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let bad = |reason: String| RootfsError::BadBase {
        source_name: name.to_string(),
        reason,
    };
    let key = KeyBuilder::new("rootfs-layout-v1")
        .part("manifest", image.digest().to_string().as_bytes())
        .finish();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!("{role} rootfs: cached ({name})"));
        return Ok(r);
    }
    let config = image.config().map_err(|source| RootfsError::UnusableBase {
        source_name: name.to_string(),
        source,
    })?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != image.layers().len() {
        return Err(bad(format!(
            "its config lists {} diff_ids for {} layers",
            diff_ids.len(),
            image.layers().len()
        )));
    }
    printer.step(&format!(
        "{role} rootfs: unpacking {} layers of {name}",
        image.layers().len()
    ));
    let work = cache.work_dir("rootfs-layout")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let mut layers = Vec::new();
    for (blob, expected_diff) in image.layers().iter().zip(diff_ids) {
        image.source().copy_into(blob, cache.blobs())?;
        let diff_id = unpack_blob(cache, &blob.digest, &blob.media_type, &tree, name)?;
        if diff_id.to_string() != *expected_diff {
            return Err(bad(format!(
                "layer {} unpacks to {diff_id}, but the config says {expected_diff}",
                blob.digest
            )));
        }
        // Docker's layer media type names the same bytes: OCI's name goes in our manifest.
        let media_type = if blob.media_type == media::DOCKER_LAYER_TAR_GZIP {
            media::LAYER_TAR_GZIP.to_string()
        } else {
            blob.media_type.clone()
        };
        layers.push(LayerBlob {
            digest: blob.digest.clone(),
            diff_id,
            size: blob.size,
            media_type,
        });
    }
    let created_by = layers
        .iter()
        .enumerate()
        .map(|(i, _)| format!("base layer {} of {name}", i + 1))
        .collect();
    commit(cache, work, &key, layers, created_by, None)
}

/// Unpacks a layer blob of the cache into `tree`; returns its diff_id.
fn unpack_blob(
    cache: &Cache,
    digest: &Digest,
    media_type: &str,
    tree: &Path,
    name: &str,
) -> Result<Digest, RootfsError> {
    let path = cache.blobs().path(digest);
    let file = io::BufReader::new(fs_err::File::open(&path).map_err(io_err(&path))?);
    let reader = layer::decoder(media_type, file).map_err(|source| RootfsError::Layer {
        source_name: name.to_string(),
        digest: digest.clone(),
        source,
    })?;
    unpack_hashing(reader, tree, name)
}

/// Gets a rootfs from layer blobs known by digest (an offline store): the
/// blobs go into the cache as they are and are unpacked under `key`, the
/// key the online build used, so both builds share one cache entry.
pub fn from_blobs(
    cache: &Cache,
    key: &str,
    layers: &[LayerBlob],
    created_by: &[String],
    source: &BlobStore,
    name: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    if let Some(r) = load_cached(cache, key) {
        printer.step(&format!("{name}: cached ({})", &key[..12.min(key.len())]));
        return Ok(r);
    }
    printer.step(&format!(
        "{name}: unpacking {} layers from the offline store",
        layers.len()
    ));
    unpack_known(cache, key, layers, created_by, None, source, name)
}

/// Unpacks layer blobs of `source` whose diff_ids are known (each checked)
/// into the cache entry `key`.
pub(super) fn unpack_known(
    cache: &Cache,
    key: &str,
    layers: &[LayerBlob],
    created_by: &[String],
    debian: Option<DebianRecord>,
    source: &BlobStore,
    name: &str,
) -> Result<Rootfs, RootfsError> {
    let work = cache.work_dir("rootfs-store")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    for blob in layers {
        cache.blobs().import(source, &blob.digest)?;
        let diff_id = unpack_blob(cache, &blob.digest, &blob.media_type, &tree, name)?;
        if diff_id != blob.diff_id {
            return Err(RootfsError::BadBase {
                source_name: name.to_string(),
                reason: format!(
                    "layer {} unpacks to {diff_id}, not {}",
                    blob.digest, blob.diff_id
                ),
            });
        }
    }
    let r = commit(
        cache,
        work,
        key,
        layers.to_vec(),
        created_by.to_vec(),
        debian,
    )?;
    Ok(Rootfs {
        origin: Origin::Built,
        ..r
    })
}
