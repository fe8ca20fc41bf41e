//! The wheel reader: a zip file's central directory, every member checked
//! against its recorded size and CRC-32, and the paths of RECORD's CSV lines.
//! It reads bytes and knows nothing of pip, venvs or the cache. Wheels come
//! from indexes nobody here controls, so on any input it returns a value or
//! an error, never a panic (fuzzed by the `wheel` target in tests/fuzz).

use std::io::Read as _;

/// Why bytes are not a readable wheel.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// The central directory cannot be read.
    #[error("not a zip archive ({why})")]
    NotZip {
        /// What is wrong with the directory.
        why: &'static str,
    },
    /// A member's local header lies past the end of the file.
    #[error("the entry of {name} is truncated")]
    TruncatedEntry {
        /// The member.
        name: String,
    },
    /// A member's local header is not where the directory says.
    #[error("the local header of {name} is missing")]
    NoLocalHeader {
        /// The member.
        name: String,
    },
    /// A member's data runs past the end of the file.
    #[error("{name} is cut short: the file is truncated")]
    CutShort {
        /// The member.
        name: String,
    },
    /// A member is compressed with something other than store or deflate.
    #[error("{name} uses zip method {method}, which pip cannot read")]
    Method {
        /// The member.
        name: String,
        /// The zip compression method.
        method: u16,
    },
    /// A member's deflate stream is broken.
    #[error("{name} does not decompress")]
    Decompress {
        /// The member.
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A member's bytes do not match its recorded CRC-32 or size.
    #[error("{name} is corrupt (its CRC-32 or size does not match)")]
    Corrupt {
        /// The member.
        name: String,
    },
    /// The wheel lacks one of the metadata files every wheel has.
    #[error("the wheel has no .dist-info/{0}")]
    NoMetadata(&'static str),
}

/// One member, as the central directory records it.
struct Entry {
    name: String,
    method: u16,
    crc: u32,
    packed: usize,
    size: u64,
    local: usize,
}

const END_OF_DIRECTORY: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
const DIRECTORY_ENTRY: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
const LOCAL_HEADER: u32 = 0x0403_4b50;

fn u16_at(data: &[u8], i: usize) -> Option<usize> {
    let b = data.get(i..i.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]) as usize)
}

fn u32_at(data: &[u8], i: usize) -> Option<u32> {
    let b = data.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the central directory: every member's name, method, CRC-32, sizes
/// and local header offset.
fn directory(data: &[u8]) -> Result<Vec<Entry>, WheelError> {
    let not_zip = |why| WheelError::NotZip { why };
    let truncated = || not_zip("truncated");
    // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
    let floor = data.len().saturating_sub(65_535 + 22);
    let eocd = (floor..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..i + 4] == END_OF_DIRECTORY)
        .ok_or_else(|| not_zip("no end of central directory"))?;
    let count = u16_at(data, eocd + 10).ok_or_else(truncated)?;
    let at = u32_at(data, eocd + 16).ok_or_else(truncated)?;
    if at == 0xffff_ffff {
        return Err(not_zip("zip64 archives are not supported"));
    }
    let mut at = at as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if data.get(at..at.saturating_add(4)) != Some(&DIRECTORY_ENTRY[..]) {
            return Err(not_zip("bad central directory entry"));
        }
        let field = |off: usize| u16_at(data, at + off).ok_or_else(truncated);
        let (n, x, c) = (field(28)?, field(30)?, field(32)?);
        let name = data
            .get(at + 46..at + 46 + n)
            .ok_or_else(|| not_zip("truncated name"))?;
        // The name ends at or after the fixed 46-byte header, so every
        // field of it is in the file.
        let word = |off: usize| u32_at(data, at + off).ok_or_else(truncated);
        entries.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method: field(10)? as u16,
            crc: word(16)?,
            packed: word(20)? as usize,
            size: u64::from(word(24)?),
            local: word(42)? as usize,
        });
        at += 46 + n + x + c;
    }
    Ok(entries)
}

/// Member names of a zip file, from its central directory.
pub fn member_names(data: &[u8]) -> Result<Vec<String>, WheelError> {
    Ok(directory(data)?.into_iter().map(|e| e.name).collect())
}

/// Checks a whole wheel before it is used: a zip whose every member
/// decompresses to its recorded size and CRC-32, with a `.dist-info/WHEEL`
/// and `.dist-info/RECORD`.
pub fn check(data: &[u8]) -> Result<(), WheelError> {
    let entries = directory(data)?;
    for entry in &entries {
        check_member(data, entry)?;
    }
    for wanted in ["WHEEL", "RECORD"] {
        let found = entries.iter().any(|e| {
            e.name
                .split_once('/')
                .is_some_and(|(d, f)| d.ends_with(".dist-info") && f == wanted)
        });
        if !found {
            return Err(WheelError::NoMetadata(wanted));
        }
    }
    Ok(())
}

/// Decompresses one member, no further than one byte past its recorded
/// size, and compares its CRC-32 and size with the directory's.
fn check_member(data: &[u8], entry: &Entry) -> Result<(), WheelError> {
    read_member(data, entry, &mut std::io::sink())
}

/// One member's bytes, checked like every member by [`check`]: the
/// member named `name` of the zip file `data`, or None when it has none.
pub fn member(data: &[u8], name: &str) -> Result<Option<Vec<u8>>, WheelError> {
    let Some(entry) = directory(data)?.into_iter().find(|e| e.name == name) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0).min(1 << 28));
    read_member(data, &entry, &mut out)?;
    Ok(Some(out))
}

/// Decompresses one member into `sink`, no further than one byte past its
/// recorded size, and compares its CRC-32 and size with the directory's.
fn read_member(
    data: &[u8],
    entry: &Entry,
    sink: &mut dyn std::io::Write,
) -> Result<(), WheelError> {
    let name = || entry.name.clone();
    let local = entry.local;
    if u32_at(data, local) != Some(LOCAL_HEADER) {
        return Err(WheelError::NoLocalHeader { name: name() });
    }
    let truncated = || WheelError::TruncatedEntry { name: name() };
    let start = local
        + 30
        + u16_at(data, local + 26).ok_or_else(truncated)?
        + u16_at(data, local + 28).ok_or_else(truncated)?;
    let bytes = data
        .get(start..start.saturating_add(entry.packed))
        .ok_or_else(|| WheelError::CutShort { name: name() })?;
    let reader: Box<dyn std::io::Read> = match entry.method {
        0 => Box::new(bytes),
        8 => Box::new(flate2::read::DeflateDecoder::new(bytes)),
        method => {
            return Err(WheelError::Method {
                name: name(),
                method,
            })
        }
    };
    // One byte past the recorded size is enough to know it does not match:
    // a small member that inflates to gigabytes is not read to its end.
    let mut reader = reader.take(entry.size + 1);
    let mut crc32 = flate2::Crc::new();
    let mut amount = 0u64;
    let mut buf = [0u8; 65536];
    loop {
        let k = reader
            .read(&mut buf)
            .map_err(|source| WheelError::Decompress {
                name: name(),
                source,
            })?;
        if k == 0 {
            break;
        }
        crc32.update(&buf[..k]);
        amount += k as u64;
        if amount <= entry.size {
            sink.write_all(&buf[..k])
                .map_err(|source| WheelError::Decompress {
                    name: name(),
                    source,
                })?;
        }
    }
    if crc32.sum() != entry.crc || amount != entry.size {
        return Err(WheelError::Corrupt { name: name() });
    }
    Ok(())
}

/// The path of one RECORD line: its first CSV field, unquoted; None for an
/// empty line or an unterminated quote.
pub fn record_path(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        Some(line.split(',').next().unwrap_or("").to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// A zip written by Python's zipfile, which writes any member name it is
    /// given, each member holding `x`.
    pub(crate) fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".whl").tempfile().unwrap();
        let script = format!(
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nfor n in {names:?}:\n    z.writestr(n, 'x')\nz.close()"
        );
        let ok = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(f.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        f
    }

    #[test]
    fn zip_member_names_are_read_from_the_central_directory() {
        let f = zip_with(&["a/b.py", "a-1.0.dist-info/RECORD"]);
        assert_eq!(
            member_names(&std::fs::read(f.path()).unwrap()).unwrap(),
            ["a/b.py", "a-1.0.dist-info/RECORD"]
        );
    }

    #[test]
    fn the_fuzz_seeds_get_their_verdicts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/wheel");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        for good in [
            "milborne-0.4.0.whl",
            "tinypkg-1.0.whl",
            "stored.whl",
            "deflated.whl",
        ] {
            check(&read(good)).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let verdict = |name: &str| check(&read(name)).unwrap_err().to_string();
        assert_eq!(verdict("empty.zip"), "the wheel has no .dist-info/WHEEL");
        assert_eq!(
            verdict("no-record.whl"),
            "the wheel has no .dist-info/RECORD"
        );
        assert_eq!(
            verdict("truncated.whl"),
            "not a zip archive (no end of central directory)"
        );
        assert_eq!(
            verdict("zip64-marker.whl"),
            "not a zip archive (zip64 archives are not supported)"
        );
        assert_eq!(
            verdict("method-12.whl"),
            "a/__init__.py uses zip method 12, which pip cannot read"
        );
        assert_eq!(
            verdict("crc-mismatch.whl"),
            "a/__init__.py is corrupt (its CRC-32 or size does not match)"
        );
        assert!(verdict("cut-directory.whl").starts_with("not a zip archive"));
        assert_eq!(
            member_names(&read("hostile-names.whl")).unwrap()[..3],
            ["../../etc/cron.d/evil", "/abs", "a\\b"]
        );
    }

    #[test]
    fn quoted_record_fields_are_read() {
        assert_eq!(
            record_path("\"a,b.py\",sha256=x,1").as_deref(),
            Some("a,b.py")
        );
    }
}
