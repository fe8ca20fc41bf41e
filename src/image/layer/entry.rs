//! The entries of a layer: what each is, its owner and its mode.

use std::path::PathBuf;

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

/// Joins an image path prefix (`home/blue/app`) and a relative path.
pub fn join_image_path(prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}
