//! Deterministic layer tarballs, compressed and hashed in one streaming pass.
//!
//! Everything that reaches a digest is set explicitly: entry order (sorted by
//! path bytes), mtime (`SOURCE_DATE_EPOCH` or 0), owners, modes, the gzip
//! header (no name, mtime 0, OS "unknown"), the compression level and the
//! gzip member size (see [`crate::compress`]). Long
//! names and link targets use PAX records. Memory stays flat: file contents
//! are streamed from disk.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::compress::Encoder;
use crate::digest::{Digest, HashingWriter};

/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an uncompressed OCI layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Failure while writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading a source file or writing the blob failed.
    #[error("cannot write layer entry {path}")]
    Io {
        /// The entry (or blob) being written.
        path: String,
        #[source]
        source: io::Error,
    },
    /// A source tree could not be walked.
    #[error("cannot read tree {path}")]
    Walk {
        /// The tree being walked.
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    /// An entry's path is not representable in a layer.
    #[error("path {0:?} cannot be stored in a layer: it must be valid UTF-8 and relative")]
    BadPath(PathBuf),
}

/// Owner of an entry in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    /// Numeric user id.
    pub uid: u64,
    /// Numeric group id.
    pub gid: u64,
}

impl Owner {
    /// uid 0, gid 0.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// Where a regular file's bytes come from.
#[derive(Clone, Debug)]
pub enum Content {
    /// Streamed from a file on the host.
    File(PathBuf),
    /// Held in memory (small generated files).
    Bytes(Vec<u8>),
}

/// What an entry is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and where its bytes come from.
    File(Content),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A hard link to an earlier entry of the same layer (path without leading slash).
    Hardlink(String),
}

/// One entry of a layer: a path relative to the image root, without leading slash.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path in the image, relative (`home/blue/app/bin/python`).
    pub path: String,
    /// What the entry is.
    pub kind: Kind,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner in the image.
    pub owner: Owner,
    /// Extended attributes, written as PAX `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A directory entry.
    pub fn dir(path: impl Into<String>, mode: u32, owner: Owner) -> Self {
        Self {
            path: path.into(),
            kind: Kind::Dir,
            mode,
            owner,
            xattrs: Vec::new(),
        }
    }

    /// A regular file held in memory.
    pub fn bytes(
        path: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
        mode: u32,
        owner: Owner,
    ) -> Self {
        Self {
            path: path.into(),
            kind: Kind::File(Content::Bytes(bytes.into())),
            mode,
            owner,
            xattrs: Vec::new(),
        }
    }
}

/// Media type of a zstd-compressed OCI layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub use crate::compress::Compression;

/// A reader of a layer blob's tar stream, whatever its media type.
pub fn decoder<'a>(
    media_type: &str,
    blob: impl io::Read + 'a,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match media_type {
        MEDIA_TYPE_TAR_GZIP | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Box::new(flate2::read::MultiGzDecoder::new(blob))
        }
        MEDIA_TYPE_TAR_ZSTD => Box::new(zstd::stream::read::Decoder::new(blob)?),
        MEDIA_TYPE_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Box::new(blob),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                "layer media type {other} is not one assemble can read (tar, tar+gzip, tar+zstd)"
            ),
            ))
        }
    })
}

/// A layer blob written to disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// OCI media type.
    pub media_type: String,
}

/// The set of entries of one layer, kept sorted and unique by path.
#[derive(Default, Debug)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry, replacing one at the same path, and adds the missing
    /// parent directories with `dir_owner` and mode 0755.
    pub fn add(&mut self, entry: Entry, dir_owner: Owner) {
        let mut parent = Path::new(&entry.path).parent();
        while let Some(p) = parent {
            let s = p.to_str().unwrap_or_default();
            // A parent already present has its own parents too.
            if s.is_empty() || self.entries.contains_key(s) {
                break;
            }
            self.entries
                .insert(s.to_string(), Entry::dir(s, 0o755, dir_owner));
            parent = p.parent();
        }
        self.entries.insert(entry.path.clone(), entry);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the layer has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in the order they will be written.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Writes the layer as a tar stream to `out`, returns the stream's digest.
    pub fn write_tar<W: Write>(&self, out: W, mtime: u64) -> Result<(W, Digest, u64), LayerError> {
        Ok(self.write_entries(HashingWriter::new(out), mtime)?.finish())
    }

    /// Writes the layer as a tar stream to `out` and returns `out`.
    fn write_entries<W: Write>(&self, out: W, mtime: u64) -> Result<W, LayerError> {
        let mut builder = tar::Builder::new(out);
        let mut scratch = Vec::new();
        for entry in self.entries.values() {
            append_entry(&mut builder, entry, mtime, &mut scratch)?;
        }
        builder.into_inner().map_err(|source| LayerError::Io {
            path: "<end of archive>".into(),
            source,
        })
    }

    /// Writes the layer compressed into `dir` under a temporary name and
    /// renames it to its digest once complete. Returns the blob's description.
    pub fn write_blob(
        &self,
        dir: &Path,
        compression: Compression,
        mtime: u64,
    ) -> Result<LayerBlob, LayerError> {
        let io_err = |source| LayerError::Io {
            path: dir.display().to_string(),
            source,
        };
        let tmp = crate::oci::temp_file(dir, ".layer-").map_err(io_err)?;
        let file =
            io::BufWriter::with_capacity(1 << 16, tmp.as_file().try_clone().map_err(io_err)?);
        let encoder = Encoder::new(file, compression).map_err(io_err)?;
        let encoded = self
            .write_entries(encoder, mtime)?
            .finish()
            .map_err(io_err)?;
        let (diff_id, _) = encoded.plain;
        let (digest, size) = encoded.blob;
        let dest = dir.join(digest.hex());
        tmp.persist(&dest).map_err(|e| io_err(e.error))?;
        Ok(LayerBlob {
            digest,
            diff_id,
            size,
            media_type: compression.media_type().to_string(),
        })
    }
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    mtime: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), LayerError> {
    let io_err = |source| LayerError::Io {
        path: entry.path.clone(),
        source,
    };
    let mut header = tar::Header::new_ustar();
    header.set_mtime(mtime);
    header.set_uid(entry.owner.uid);
    header.set_gid(entry.owner.gid);
    header.set_mode(entry.mode & 0o7777);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut xattrs = entry.xattrs.clone();
    xattrs.sort();
    for (name, value) in xattrs {
        pax.push((format!("SCHILY.xattr.{name}"), value));
    }
    let name = match entry.kind {
        Kind::Dir => format!("{}/", entry.path),
        _ => entry.path.clone(),
    };
    if header.set_path(&name).is_err() {
        pax.push(("path".into(), name.clone().into_bytes()));
        header.set_path(truncate_name(&name)).map_err(io_err)?;
    }
    let link = match &entry.kind {
        Kind::Symlink(t) | Kind::Hardlink(t) => Some(t.as_str()),
        _ => None,
    };
    if let Some(target) = link {
        if header.set_link_name(target).is_err() {
            pax.push(("linkpath".into(), target.as_bytes().to_vec()));
            header
                .set_link_name(truncate_name(target))
                .map_err(io_err)?;
        }
    }
    if !pax.is_empty() {
        builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(io_err)?;
    }
    match &entry.kind {
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, io::empty()).map_err(io_err)
        }
        Kind::Symlink(_) | Kind::Hardlink(_) => {
            let t = if matches!(entry.kind, Kind::Symlink(_)) {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            };
            header.set_entry_type(t);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, io::empty()).map_err(io_err)
        }
        Kind::File(Content::Bytes(bytes)) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).map_err(io_err)
        }
        Kind::File(Content::File(src)) => {
            let mut file = fs_err::File::open(src).map_err(io_err)?;
            let len = file.metadata().map_err(io_err)?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(len);
            header.set_cksum();
            // What tar::Builder::append does, with reads of up to 1 MiB
            // (one read for most files) instead of io::copy's 8 KiB.
            let out = builder.get_mut();
            out.write_all(header.as_bytes()).map_err(io_err)?;
            copy_exactly(&mut file, len, out, scratch).map_err(|e| match e.kind() {
                // A file that shrinks while being read would corrupt the archive.
                io::ErrorKind::UnexpectedEof => io_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} changed size while being archived", src.display()),
                )),
                _ => io_err(e),
            })?;
            let padding = (512 - len % 512) % 512;
            out.write_all(&[0; 512][..padding as usize]).map_err(io_err)
        }
    }
}

/// Copies exactly `len` bytes of `from` to `to` through `scratch`.
fn copy_exactly(
    from: &mut impl Read,
    len: u64,
    to: &mut impl Write,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    const MAX: u64 = 1 << 20;
    if scratch.len() < MAX as usize {
        scratch.resize(MAX as usize, 0);
    }
    let mut left = len;
    while left > 0 {
        let want = left.min(scratch.len() as u64) as usize;
        let n = match from.read(&mut scratch[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&scratch[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// A ustar-safe stand-in name for an entry whose real name is in a PAX record.
fn truncate_name(name: &str) -> String {
    let mut cut = name.len().min(99);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name[..cut].to_string()
}

/// Adds every file under `root` to `layer` at `prefix` (a path in the image),
/// owned by `owner`, keeping permission bits; `keep` selects which paths
/// (relative to `root`) go in. Files sharing an inode become hard links to
/// the first of them in sorted order.
pub fn add_tree(
    layer: &mut Layer,
    root: &Path,
    prefix: &str,
    owner: Owner,
    mut keep: impl FnMut(&Path) -> bool,
) -> Result<(), LayerError> {
    let walker = walkdir::WalkDir::new(root).follow_links(false);
    let mut found = Vec::new();
    for item in walker {
        let item = item.map_err(|source| LayerError::Walk {
            path: root.to_path_buf(),
            source,
        })?;
        let rel = item
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        if rel.as_os_str().is_empty() || !keep(rel) {
            continue;
        }
        let rel_str = rel
            .to_str()
            .ok_or_else(|| LayerError::BadPath(rel.to_path_buf()))?;
        let meta = item.metadata().map_err(|source| LayerError::Walk {
            path: item.path().to_path_buf(),
            source,
        })?;
        found.push((join_image_path(prefix, rel_str), item.into_path(), meta));
    }
    // Sorted as the tar will be, so that a hard link always follows its target.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen_inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (path, src, meta) in found {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&src).map_err(|source| LayerError::Io {
                path: path.clone(),
                source,
            })?;
            let target = target
                .to_str()
                .ok_or_else(|| LayerError::BadPath(target.clone()))?
                .to_string();
            Kind::Symlink(target)
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match seen_inodes.get(&key) {
                Some(first) if meta.nlink() > 1 => Kind::Hardlink(first.clone()),
                _ => {
                    if meta.nlink() > 1 {
                        seen_inodes.insert(key, path.clone());
                    }
                    Kind::File(Content::File(src))
                }
            }
        } else {
            // Sockets, fifos and devices have no place in an application layer.
            tracing::debug!(path = %src.display(), "skipping special file");
            continue;
        };
        let mode = if matches!(kind, Kind::Symlink(_)) {
            0o777
        } else {
            meta.mode() & 0o7777
        };
        // Host xattrs are left out on purpose: labels such as
        // security.selinux describe the build machine, not the image.
        layer.add(
            Entry {
                path,
                kind,
                mode,
                owner,
                xattrs: Vec::new(),
            },
            owner,
        );
    }
    Ok(())
}

/// Joins an image path prefix (`home/blue/app`) and a relative path.
pub fn join_image_path(prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// Compresses an existing tar stream into a gzip blob in `dir`, computing the
/// diff_id and digest in the same pass.
pub fn compress_tar_blob(mut tar: impl Read, dir: &Path) -> Result<LayerBlob, LayerError> {
    let io_err = |source| LayerError::Io {
        path: dir.display().to_string(),
        source,
    };
    let tmp = crate::oci::temp_file(dir, ".layer-").map_err(io_err)?;
    let file = io::BufWriter::with_capacity(1 << 16, tmp.as_file().try_clone().map_err(io_err)?);
    let mut encoder = Encoder::new(file, Compression::Gzip).map_err(io_err)?;
    io::copy(&mut tar, &mut encoder).map_err(io_err)?;
    let encoded = encoder.finish().map_err(io_err)?;
    let (diff_id, _) = encoded.plain;
    let (digest, size) = encoded.blob;
    tmp.persist(dir.join(digest.hex()))
        .map_err(|e| io_err(e.error))?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        media_type: MEDIA_TYPE_TAR_GZIP.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, u64, u64, u32, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let blue = Owner { uid: 1000, gid: 33 };
        let mut layer = Layer::new();
        layer.add(Entry::bytes("home/blue/z", "z", 0o644, blue), blue);
        layer.add(Entry::bytes("home/blue/a", "a", 0o4755, blue), blue);
        let (bytes, _, _) = layer.write_tar(Vec::new(), 42).unwrap();
        let got = names(&bytes);
        let paths: Vec<_> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(paths, ["home/", "home/blue/", "home/blue/a", "home/blue/z"]);
        assert!(got.iter().all(|g| g.1 == 1000 && g.2 == 33 && g.4 == 42));
        assert_eq!(got[2].3, 0o4755, "setuid bit kept");
    }

    #[test]
    fn long_names_use_pax_records() {
        let long = format!("d/{}", "x".repeat(300));
        let mut layer = Layer::new();
        layer.add(
            Entry::bytes(long.clone(), "x", 0o644, Owner::ROOT),
            Owner::ROOT,
        );
        let (bytes, _, _) = layer.write_tar(Vec::new(), 0).unwrap();
        let got = names(&bytes);
        assert_eq!(got.last().unwrap().0, long);
        assert!(
            bytes.windows(7).any(|w| w == b"path=d/"),
            "PAX path record present"
        );
    }

    #[test]
    fn xattrs_are_written_as_pax_records() {
        let mut layer = Layer::new();
        let mut e = Entry::bytes("usr/bin/ping", "x", 0o755, Owner::ROOT);
        e.xattrs
            .push(("security.capability".into(), vec![1, 0, 0, 2]));
        layer.add(e, Owner::ROOT);
        let (bytes, _, _) = layer.write_tar(Vec::new(), 0).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut found = None;
        for e in entries.by_ref() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("usr/bin/ping") {
                found = e
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .flatten()
                    .find(|x| x.key() == Ok("SCHILY.xattr.security.capability"))
                    .map(|x| x.value_bytes().to_vec());
            }
        }
        assert_eq!(found, Some(vec![1, 0, 0, 2]));
    }

    #[test]
    fn same_entries_give_the_same_blob_digest() {
        let dir = tempfile::tempdir().unwrap();
        let build = || {
            let mut layer = Layer::new();
            layer.add(
                Entry::bytes("etc/x", "hello", 0o600, Owner::ROOT),
                Owner::ROOT,
            );
            layer.write_blob(dir.path(), Compression::Gzip, 0).unwrap()
        };
        let a = build();
        let b = build();
        assert_eq!(a, b);
        let (on_disk, size) = crate::digest::digest_file(&dir.path().join(a.digest.hex())).unwrap();
        assert_eq!(on_disk, a.digest);
        assert_eq!(size, a.size);
    }

    #[test]
    fn compressed_bytes_are_pinned_for_a_fixed_layer() {
        // Every layer digest depends on the compressors' exact output. When
        // this fails after a dependency update, the new bytes are valid but
        // different: rename the key in Compression::name (so caches do not
        // mix the two) and update the digests here, in one commit.
        let dir = tempfile::tempdir().unwrap();
        let mut layer = Layer::new();
        // Three gzip members and two zstd frames of text-like bytes: words
        // of a small vocabulary in a pseudo-random order, so that matches of
        // every length and distance occur and each compressor setting shows.
        let words = [
            "import ", "def ", "self", ".", "(", ")", ":\n", "    ", "return ", "x", "_", "value",
            "0x1f", ", ",
        ];
        let mut x: u32 = 1;
        let mut body = Vec::with_capacity(5 << 20);
        while body.len() < 5 << 20 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            body.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
            if x % 7 == 0 {
                body.extend_from_slice(&x.to_le_bytes());
            }
        }
        layer.add(
            Entry::bytes("data/a", body, 0o644, Owner::ROOT),
            Owner::ROOT,
        );
        let digest = |c| {
            layer
                .write_blob(dir.path(), c, 0)
                .unwrap()
                .digest
                .to_string()
        };
        assert_eq!(
            digest(Compression::Gzip),
            "sha256:b9dcafcab82d0e0ddb536a881cad33cf7574461f201e7d4f9cabef8c8592a1d8"
        );
        assert_eq!(
            digest(Compression::Zstd),
            "sha256:b9f53b8aee6de869f5b5756d4498a989ffc2dc0cd52ed6f9a346b58b8d6774fd"
        );
    }

    #[test]
    fn tree_hardlinks_become_link_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "same").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("c")).unwrap();
        let mut layer = Layer::new();
        add_tree(&mut layer, dir.path(), "app", Owner::ROOT, |_| true).unwrap();
        let kinds: Vec<_> = layer
            .entries()
            .map(|e| (e.path.clone(), format!("{:?}", e.kind)))
            .collect();
        assert!(kinds[2].1.starts_with("Hardlink(\"app/a\""), "{kinds:?}");
        assert!(kinds[3].1.starts_with("Symlink(\"a\""), "{kinds:?}");
    }

    #[test]
    fn file_contents_of_any_size_are_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, one byte, exactly one read buffer, and several reads plus a tail.
        let sizes = [0usize, 1, 1 << 20, (3 << 20) + 17];
        for (i, size) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
            std::fs::write(dir.path().join(format!("f{i}")), body).unwrap();
        }
        let mut layer = Layer::new();
        add_tree(&mut layer, dir.path(), "app", Owner::ROOT, |_| true).unwrap();
        let (bytes, _, _) = layer.write_tar(Vec::new(), 0).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = 0;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if let Some(name) = path.strip_prefix("app/") {
                let mut body = Vec::new();
                entry.read_to_end(&mut body).unwrap();
                assert_eq!(
                    body,
                    std::fs::read(dir.path().join(name)).unwrap(),
                    "{name}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, sizes.len());
    }

    #[test]
    fn data_that_ends_before_the_size_in_its_header_is_an_error() {
        // What a file shrinking between its header and its last read gives.
        let mut short = &[b'x'; 100][..];
        let mut out = Vec::new();
        let err = copy_exactly(&mut short, 5000, &mut out, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut exact = &[b'x'; 100][..];
        copy_exactly(&mut exact, 100, &mut out, &mut Vec::new()).unwrap();
    }
}
