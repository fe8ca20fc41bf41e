//! A guard on the bytes of a tar stream against extension headers that
//! would make the tar crate allocate without bound.

use std::io::{self, Read};

/// Largest PAX or GNU long-name extension accepted, to refuse hostile headers
/// that would make the reader allocate without bound.
pub(super) const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// True for the entry types whose data the tar crate reads whole: PAX
/// (`x`, `g`) and GNU long names (`L`, `K`).
pub(super) fn is_extension(kind: tar::EntryType) -> bool {
    matches!(
        kind,
        tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
    )
}

/// Follows the tar structure as bytes pass and fails the read when an
/// extension header (PAX `x`/`g`, GNU `L`/`K`) is larger than
/// [`MAX_EXTENSION_BYTES`]: the tar crate reads those whole into memory before
/// any entry reaches us, so a hostile archive could make it allocate without
/// bound. PAX `size` records are honoured to keep following the structure.
pub(super) struct ExtensionGuard<R> {
    inner: R,
    /// Bytes of the current header block collected so far.
    header: Vec<u8>,
    /// Data and padding bytes still to pass before the next header.
    skip: u64,
    /// The PAX data being collected (for a `size` record), if any.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// A `size` record for the next entry.
    next_size: Option<u64>,
    /// Size of the GNU sparse entry whose extension blocks are being read.
    sparse_pending: Option<u64>,
    ended: bool,
}

impl<R> ExtensionGuard<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            header: Vec::with_capacity(512),
            skip: 0,
            pax: None,
            pax_left: 0,
            next_size: None,
            sparse_pending: None,
            ended: false,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    let take = (self.pax_left.min(n as u64)) as usize;
                    pax.extend_from_slice(&data[..take]);
                    self.pax_left -= take as u64;
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.next_size = pax_size(&pax);
                    }
                }
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 512 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            if let Some(size) = self.sparse_pending {
                // A GNU sparse extension block; more follow while its flag is set.
                if h[504] == 0 {
                    self.sparse_pending = None;
                    self.skip = size.div_ceil(512) * 512;
                }
                continue;
            }
            if h.iter().all(|b| *b == 0) {
                // End of archive: what follows is padding.
                self.ended = true;
                break;
            }
            let kind = h[156];
            let mut size = header_size(&h[124..136]).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a tar header has an invalid size field",
                )
            })?;
            let is_extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
            if is_extension && size > MAX_EXTENSION_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a tar extension header of {size} bytes is over the {MAX_EXTENSION_BYTES}-byte limit"),
                ));
            }
            if !is_extension {
                if let Some(s) = self.next_size.take() {
                    size = s;
                }
            }
            // Links and directories carry no data whatever their size says.
            if matches!(kind, b'1' | b'2' | b'5') {
                size = 0;
            }
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
                self.pax_left = size;
            }
            if kind == b'S' && h[482] != 0 {
                self.sparse_pending = Some(size);
                continue;
            }
            self.skip = size.div_ceil(512) * 512;
            if self.skip == 0 && kind == b'x' {
                self.pax = None;
            }
        }
        Ok(())
    }
}

/// The size field of a tar header: octal, or base-256 when the high bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of PAX extension data (`<len> size=<n>\n` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|l| {
        l.split_once(' ')
            .and_then(|(_, kv)| kv.strip_prefix("size="))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl<R: Read> Read for ExtensionGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}
