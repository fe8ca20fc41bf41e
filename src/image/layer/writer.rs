//! Appends entries to a tar stream: headers with every field set
//! explicitly, PAX records for long names, link targets and xattrs, and file
//! contents copied in large reads.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::image::layer::entry::{Content, Entry, Kind, Owner};
use crate::image::layer::error::LayerError;
use crate::image::layer::tree::{Found, FoundKind};

/// What follows an entry's header.
enum Body<'a> {
    Dir,
    Symlink(&'a str),
    Hardlink(&'a str),
    Bytes(&'a [u8]),
    /// An open file, its size, and its path on the host (for errors).
    File(&'a mut fs_err::File, u64, &'a Path),
}

/// Appends entries to a tar stream, with the state they share: the mtime,
/// a read buffer, and the first path of each multiply-linked inode met.
pub(super) struct EntryWriter<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
    scratch: Vec<u8>,
    inodes: HashMap<(u64, u64), String>,
}

impl<W: Write> EntryWriter<W> {
    /// A writer of entries dated `mtime` into `out`.
    pub(super) fn new(out: W, mtime: u64) -> Self {
        Self {
            builder: tar::Builder::new(out),
            mtime,
            scratch: Vec::new(),
            inodes: HashMap::new(),
        }
    }

    /// Ends the archive and returns the output.
    pub(super) fn finish(self) -> Result<W, LayerError> {
        self.builder.into_inner().map_err(|source| LayerError::Io {
            path: "<end of archive>".into(),
            source,
        })
    }

    /// Appends an explicit entry.
    pub(super) fn explicit(&mut self, entry: &Entry) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: entry.path.clone(),
            source,
        };
        let mut file;
        let body = match &entry.kind {
            Kind::Dir => Body::Dir,
            Kind::Symlink(target) => Body::Symlink(target),
            Kind::Hardlink(target) => Body::Hardlink(target),
            Kind::File(Content::Bytes(bytes)) => Body::Bytes(bytes),
            Kind::File(Content::File(src)) => {
                file = fs_err::File::open(src).map_err(io_err)?;
                let len = file.metadata().map_err(io_err)?.len();
                Body::File(&mut file, len, src)
            }
        };
        let (path, mode, owner) = (&entry.path, entry.mode, entry.owner);
        self.append(path, mode, owner, &entry.xattrs, body)
    }

    /// Appends an entry of a host tree, owned by `owner`.
    pub(super) fn found(&mut self, found: &Found, owner: Owner) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: found.path.clone(),
            source,
        };
        match found.kind {
            FoundKind::Dir(mode) => self.append(&found.path, mode, owner, &[], Body::Dir),
            FoundKind::Symlink => {
                let target = fs_err::read_link(&found.src).map_err(io_err)?;
                let target = target
                    .to_str()
                    .ok_or_else(|| LayerError::BadPath(target.clone()))?;
                self.append(&found.path, 0o777, owner, &[], Body::Symlink(target))
            }
            FoundKind::File => {
                let mut file = fs_err::File::open(&found.src).map_err(io_err)?;
                let meta = file.metadata().map_err(io_err)?;
                let mode = meta.mode() & 0o7777;
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.inodes.get(&key).cloned() {
                        return self.append(&found.path, mode, owner, &[], Body::Hardlink(&first));
                    }
                    self.inodes.insert(key, found.path.clone());
                }
                let body = Body::File(&mut file, meta.len(), &found.src);
                self.append(&found.path, mode, owner, &[], body)
            }
        }
    }

    fn append(
        &mut self,
        path: &str,
        mode: u32,
        owner: Owner,
        xattrs: &[(String, Vec<u8>)],
        body: Body,
    ) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_string(),
            source,
        };
        let mut header = tar::Header::new_ustar();
        header.set_mtime(self.mtime);
        header.set_uid(owner.uid);
        header.set_gid(owner.gid);
        header.set_mode(mode & 0o7777);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut xattrs = xattrs.to_vec();
        xattrs.sort();
        for (name, value) in xattrs {
            pax.push((format!("SCHILY.xattr.{name}"), value));
        }
        let name = match body {
            Body::Dir => format!("{path}/"),
            _ => path.to_string(),
        };
        if header.set_path(&name).is_err() {
            pax.push(("path".into(), name.clone().into_bytes()));
            header.set_path(truncate_name(&name)).map_err(io_err)?;
        }
        if let Body::Symlink(target) | Body::Hardlink(target) = body {
            if header.set_link_name(target).is_err() {
                pax.push(("linkpath".into(), target.as_bytes().to_vec()));
                header
                    .set_link_name(truncate_name(target))
                    .map_err(io_err)?;
            }
        }
        let builder = &mut self.builder;
        if !pax.is_empty() {
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(io_err)?;
        }
        let (entry_type, size) = match &body {
            Body::Dir => (tar::EntryType::Directory, 0),
            Body::Symlink(_) => (tar::EntryType::Symlink, 0),
            Body::Hardlink(_) => (tar::EntryType::Link, 0),
            Body::Bytes(bytes) => (tar::EntryType::Regular, bytes.len() as u64),
            Body::File(_, len, _) => (tar::EntryType::Regular, *len),
        };
        header.set_entry_type(entry_type);
        header.set_size(size);
        header.set_cksum();
        match body {
            Body::Dir | Body::Symlink(_) | Body::Hardlink(_) => {
                builder.append(&header, io::empty()).map_err(io_err)
            }
            Body::Bytes(bytes) => builder.append(&header, bytes).map_err(io_err),
            Body::File(file, len, src) => {
                // What tar::Builder::append does, with reads of up to 1 MiB
                // (one read for most files) instead of io::copy's 8 KiB.
                let out = builder.get_mut();
                out.write_all(header.as_bytes()).map_err(io_err)?;
                copy_exactly(file, len, out, &mut self.scratch).map_err(|e| match e.kind() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
