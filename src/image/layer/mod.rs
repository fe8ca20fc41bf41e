//! Deterministic layer tarballs, compressed and hashed in one streaming pass.
//!
//! Everything that reaches a digest is set explicitly: entry order (sorted by
//! path bytes), mtime (`SOURCE_DATE_EPOCH` or 0), owners, modes, the gzip
//! header (no name, mtime 0, OS "unknown"), the compression level and the
//! gzip member size (see `compress.rs`). Long names and link targets use
//! PAX records (`writer.rs`). Memory stays flat: file contents are streamed
//! from disk, and host trees are walked in tar order while the layer is
//! written (`tree.rs`), never held whole.
//!
//! This module writes layer blobs into a directory it is given and nothing
//! else; it never reads an image or the cache.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::fsutil;
use crate::image::media;

mod compress;
mod entry;
mod error;
mod tree;
mod writer;

pub use compress::{decoder, Compression, Encoded, Encoder, GZIP_CHUNK, GZIP_LEVEL, ZSTD_CHUNK};
pub use entry::{join_image_path, Content, Entry, Kind, Owner};
pub use error::LayerError;
pub use tree::Select;
use tree::{Tree, Walk};
use writer::EntryWriter;

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

impl LayerBlob {
    /// Whether the blob at `path` is this layer: its digest, and the
    /// digest of the tar it decompresses to (the diff_id, which a
    /// registry does not check).
    pub fn matches_file(&self, path: &std::path::Path) -> bool {
        let check = || -> std::io::Result<bool> {
            let (digest, size) = crate::digest::digest_file(path)?;
            if digest != self.digest || size != self.size {
                return Ok(false);
            }
            let file = std::io::BufReader::new(std::fs::File::open(path)?);
            let mut tar = crate::digest::HashingWriter::new(std::io::sink());
            std::io::copy(&mut decoder(&self.media_type, file)?, &mut tar)?;
            Ok(tar.finish().1 == self.diff_id)
        };
        check().unwrap_or(false)
    }

    /// The blob as a manifest names it (digest, size, media type).
    pub fn blob(&self) -> crate::image::Blob {
        crate::image::Blob {
            digest: self.digest.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
        }
    }
}

/// The entries of one layer: explicit entries, kept sorted and unique by
/// path, and host trees, read while the layer is written.
#[derive(Default, Debug)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
    trees: Vec<Tree>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry, replacing one at the same path, and adds the missing
    /// parent directories with `dir_owner` and mode 0755.
    pub fn add(&mut self, entry: Entry, dir_owner: Owner) {
        self.add_parents(&entry.path, dir_owner);
        self.entries.insert(entry.path.clone(), entry);
    }

    /// Adds the directories that lead to `path` and are missing, with
    /// `owner` and mode 0755.
    fn add_parents(&mut self, path: &str, owner: Owner) {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent {
            let s = p.to_str().unwrap_or_default();
            // A parent already present has its own parents too.
            if s.is_empty() || self.entries.contains_key(s) {
                break;
            }
            self.entries
                .insert(s.to_string(), Entry::dir(s, 0o755, owner));
            parent = p.parent();
        }
    }

    /// Adds the entries of the host tree at `root` that `select` names, at
    /// `prefix` (a path in the image), owned by `owner`, keeping their
    /// permission bits; the directories that lead to `prefix`, and `prefix`
    /// itself, are added with mode 0755 where missing. Files sharing an inode
    /// become hard links to the first of them in path order. The tree is
    /// read when the layer is written, so errors reading it come from
    /// [`Layer::write_blob`]; an explicit entry at the same path as one of
    /// the tree's wins.
    pub fn add_tree(&mut self, root: &Path, prefix: &str, owner: Owner, select: Select) {
        if select.is_nothing() {
            return;
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && !self.entries.contains_key(&prefix) {
            self.add(Entry::dir(prefix.clone(), 0o755, owner), owner);
        }
        self.trees.push(Tree {
            root: root.to_path_buf(),
            prefix,
            owner,
            select,
        });
    }

    /// The explicit entries, in path order (trees are read when written).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Writes the layer as an uncompressed tar stream to `out` and returns
    /// `out`: the explicit entries and the trees' entries merged in path
    /// order. (A layer blob's digests come from [`Layer::write_blob`].)
    pub fn write_tar<W: Write>(&self, out: W, mtime: u64) -> Result<W, LayerError> {
        let mut writer = EntryWriter::new(out, mtime);
        let mut explicit = self.entries.values().peekable();
        let mut walks: Vec<Walk> = self.trees.iter().map(Walk::new).collect();
        let mut heads = walks
            .iter_mut()
            .map(Walk::next)
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            let next_in_trees = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.as_ref().map(|f| (i, f.path.as_str())))
                .min_by(|a, b| a.1.cmp(b.1));
            // The tree to take from; None: the explicit entry (which wins a tie).
            let from_tree = match (explicit.peek(), next_in_trees) {
                (None, None) => break,
                (Some(e), Some((i, p))) => (p < e.path.as_str()).then_some(i),
                (Some(_), None) => None,
                (None, Some((i, _))) => Some(i),
            };
            let path = match from_tree {
                None => {
                    let e = explicit.next().expect("an explicit entry was peeked");
                    writer.explicit(e)?;
                    e.path.clone()
                }
                Some(i) => {
                    let found = heads[i].take().expect("a head was found");
                    writer.found(&found, self.trees[i].owner)?;
                    heads[i] = walks[i].next()?;
                    found.path
                }
            };
            // Tree entries at the path just written are left out.
            for (head, walk) in heads.iter_mut().zip(&mut walks) {
                while head.as_ref().is_some_and(|f| f.path == path) {
                    *head = walk.next()?;
                }
            }
        }
        writer.finish()
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
        let tmp = fsutil::temp_file(dir, ".layer-").map_err(io_err)?;
        let file =
            io::BufWriter::with_capacity(1 << 16, tmp.as_file().try_clone().map_err(io_err)?);
        let encoder = Encoder::new(file, compression).map_err(io_err)?;
        let encoded = self.write_tar(encoder, mtime)?.finish().map_err(io_err)?;
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

/// Compresses an existing tar stream into a gzip blob in `dir`, computing the
/// diff_id and digest in the same pass.
pub fn compress_tar_blob(mut tar: impl Read, dir: &Path) -> Result<LayerBlob, LayerError> {
    let io_err = |source| LayerError::Io {
        path: dir.display().to_string(),
        source,
    };
    let tmp = fsutil::temp_file(dir, ".layer-").map_err(io_err)?;
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
        media_type: media::LAYER_TAR_GZIP.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    use super::*;

    /// What the tests look at in one entry's header.
    struct Header {
        path: String,
        kind: tar::EntryType,
        link: Option<String>,
        uid: u64,
        gid: u64,
        mode: u32,
        mtime: u64,
    }

    /// The headers of every entry of a tar.
    fn headers(tar_bytes: &[u8]) -> Vec<Header> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                Header {
                    path: e.path().unwrap().to_string_lossy().into_owned(),
                    kind: h.entry_type(),
                    link: e
                        .link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    mode: h.mode().unwrap(),
                    mtime: h.mtime().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let blue = Owner { uid: 1000, gid: 33 };
        let mut layer = Layer::new();
        layer.add(Entry::bytes("home/blue/z", "z", 0o644, blue), blue);
        layer.add(Entry::bytes("home/blue/a", "a", 0o4755, blue), blue);
        let bytes = layer.write_tar(Vec::new(), 42).unwrap();
        let got = headers(&bytes);
        let paths: Vec<_> = got.iter().map(|g| g.path.as_str()).collect();
        assert_eq!(paths, ["home/", "home/blue/", "home/blue/a", "home/blue/z"]);
        assert!(got
            .iter()
            .all(|g| g.uid == 1000 && g.gid == 33 && g.mtime == 42));
        assert_eq!(got[2].mode, 0o4755, "setuid bit kept");
    }

    #[test]
    fn long_names_use_pax_records() {
        let long = format!("d/{}", "x".repeat(300));
        let mut layer = Layer::new();
        layer.add(
            Entry::bytes(long.clone(), "x", 0o644, Owner::ROOT),
            Owner::ROOT,
        );
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
        let got = headers(&bytes);
        assert_eq!(got.last().unwrap().path, long);
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
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
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
        layer.add_tree(dir.path(), "app", Owner::ROOT, Select::All);
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
        let got = headers(&bytes);
        let kinds: Vec<_> = got
            .iter()
            .map(|h| (h.path.as_str(), h.kind, h.link.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("app/", tar::EntryType::Directory, None),
                ("app/a", tar::EntryType::Regular, None),
                ("app/b", tar::EntryType::Link, Some("app/a")),
                ("app/c", tar::EntryType::Symlink, Some("a")),
            ]
        );
    }

    /// A tree whose names sort differently by name and by full path: `a`
    /// is a directory, and `a-b`, `a.c`, `a b` sort between `a` and `a/`.
    fn tricky_tree() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a/b/c", "a-b", "a/b-", "é/x", "empty"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "a/b/c/f", "a/b/g", "a/b-/h", "a-b/i", "a.c", "a b", "ab", "é/x/j", "z",
        ] {
            std::fs::write(root.join(f), f).unwrap();
        }
        std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(root.join("z"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("../z", root.join("a/link")).unwrap();
        dir
    }

    #[test]
    fn a_tree_is_written_as_its_entries_added_one_by_one_would_be() {
        // The reference: every entry found by a plain recursive walk, added
        // explicitly, so that the layer sorts them itself.
        fn add_all(layer: &mut Layer, root: &Path, dir: &Path) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let path = join_image_path("srv/app", &rel);
                let kind = if meta.is_dir() {
                    add_all(layer, root, &e.path());
                    Kind::Dir
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(e.path()).unwrap();
                    Kind::Symlink(target.to_str().unwrap().to_string())
                } else {
                    Kind::File(Content::File(e.path()))
                };
                let mode = if matches!(kind, Kind::Symlink(_)) {
                    0o777
                } else {
                    meta.mode() & 0o7777
                };
                let owner = Owner { uid: 1000, gid: 33 };
                let xattrs = Vec::new();
                layer.add(
                    Entry {
                        path,
                        kind,
                        mode,
                        owner,
                        xattrs,
                    },
                    owner,
                );
            }
        }
        let tree = tricky_tree();
        let blue = Owner { uid: 1000, gid: 33 };
        let mut expected = Layer::new();
        add_all(&mut expected, tree.path(), tree.path());
        let mut streamed = Layer::new();
        streamed.add_tree(tree.path(), "/srv/app/", blue, Select::All);
        let want = expected.write_tar(Vec::new(), 7).unwrap();
        let got = streamed.write_tar(Vec::new(), 7).unwrap();
        let names = |b: &[u8]| headers(b).into_iter().map(|h| h.path).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want));
        assert!(got == want, "same names, different bytes");
        let got = names(&got);
        let mut sorted = got.clone();
        sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
        assert_eq!(got, sorted, "full paths in byte order");
    }

    #[test]
    fn a_selection_keeps_what_it_names_and_the_directories_leading_there() {
        let tree = tricky_tree();
        let only = ["a/b/c/f", "a/b", "a-b/i", "z"].map(PathBuf::from);
        let mut layer = Layer::new();
        layer.add_tree(
            tree.path(),
            "app",
            Owner::ROOT,
            Select::Only(only.into_iter().collect()),
        );
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
        let got: Vec<_> = headers(&bytes)
            .into_iter()
            .map(|h| (h.path, h.mode))
            .collect();
        let want = [
            ("app/", 0o755),
            ("app/a/", 0o755),
            ("app/a-b/", 0o755),
            ("app/a-b/i", 0o644),
            ("app/a/b/", 0o700),
            ("app/a/b/c/", 0o755),
            ("app/a/b/c/f", 0o644),
            ("app/z", 0o4755),
        ];
        let want: Vec<_> = want.iter().map(|(p, m)| (p.to_string(), *m)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_explicit_entry_wins_over_a_tree_entry_at_the_same_path() {
        let tree = tricky_tree();
        let mut layer = Layer::new();
        layer.add_tree(tree.path(), "app", Owner::ROOT, Select::All);
        layer.add(
            Entry::bytes("app/a.c", "mine", 0o600, Owner::ROOT),
            Owner::ROOT,
        );
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut found = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("app/a.c") {
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                found.push((body, e.header().mode().unwrap()));
            }
        }
        assert_eq!(found, [("mine".to_string(), 0o600)]);
    }

    #[test]
    fn a_missing_tree_fails_when_written_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let mut layer = Layer::new();
        layer.add_tree(&gone, "app", Owner::ROOT, Select::All);
        match layer.write_tar(Vec::new(), 0) {
            Err(LayerError::Walk { path, .. }) => assert_eq!(path, gone),
            other => panic!("expected a walk error, got {other:?}"),
        }
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
        layer.add_tree(dir.path(), "app", Owner::ROOT, Select::All);
        let bytes = layer.write_tar(Vec::new(), 0).unwrap();
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
}
