//! Layer compression on every core, deterministically, and decompression
//! of a layer blob by its media type ([`decoder`]).
//!
//! The tar stream is cut into fixed-size chunks and each chunk becomes a
//! complete gzip member or zstd frame, compressed on a pool of one worker per
//! core and written in order. Concatenated gzip members are one valid gzip
//! file (RFC 1952, section 2.2) and concatenated zstd frames one valid zstd
//! stream (RFC 8878, section 3): Go's readers (containerd, skopeo, umoci, the
//! registry), `gzip -d` and `zstd -d` read them whole; in Rust,
//! `MultiGzDecoder` and zstd's decoder. The output depends only on the input
//! bytes, the chunk size and the codec's settings, never on thread timing
//! or the number of cores.
//!
//! The thread that feeds the encoder only copies bytes into the current
//! chunk: the SHA-256 of the uncompressed stream (the layer's diff_id) and
//! the writing and hashing of the compressed blob run on threads of their
//! own, and chunk buffers are recycled rather than faulted in anew. On the
//! pack benchmark (2 cores, `--compression zstd`) that took packing from
//! 0.536 s with zstd's own multi-threading to 0.46 s. Memory stays bounded:
//! each stage holds at most one chunk more than there are workers.

use std::io::{self, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::digest::{Digest, HashingWriter};
use crate::image::media;

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// gzip members of [`GZIP_CHUNK`] bytes, by libdeflate at
    /// [`GZIP_LEVEL`]: the fastest level whose output stays no larger than
    /// umoci's on the pack benchmark. Every engine reads it.
    // `--help` shows `help`, not the doc comment, whose links are rustdoc's.
    #[default]
    #[value(
        help = "gzip members of 2 MiB, by libdeflate at level 4 (the fastest level whose output stays \
                no larger than umoci's); every engine reads it"
    )]
    Gzip,
    /// zstd frames of [`ZSTD_CHUNK`] bytes with the settings of
    /// `zstd_compressor`: faster than gzip and smaller. For registries and
    /// engines that take `tar+zstd` layers (containerd 1.5+, podman).
    #[value(
        help = "zstd frames of 4 MiB: faster than gzip and smaller, for registries and engines \
                that take tar+zstd layers (containerd 1.5+, podman)"
    )]
    Zstd,
}

impl Compression {
    /// The name used in cache keys: it changes whenever the bytes would.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip-members-2MiB-libdeflate-1.26-4",
            Compression::Zstd => "zstd-frames-4MiB-fast-w22-h15-m6-1.5.7",
        }
    }

    /// The OCI media type of a layer compressed so.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media::LAYER_TAR_GZIP,
            Compression::Zstd => media::LAYER_TAR_ZSTD,
        }
    }

    /// Bytes of input per gzip member or zstd frame.
    fn chunk(self) -> usize {
        match self {
            Compression::Gzip => GZIP_CHUNK,
            Compression::Zstd => ZSTD_CHUNK,
        }
    }
}

/// A reader of a layer blob's tar stream, whatever its media type.
pub fn decoder<'a>(
    media_type: &str,
    blob: impl io::Read + 'a,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match media_type {
        media::LAYER_TAR_GZIP | media::DOCKER_LAYER_TAR_GZIP => {
            Box::new(flate2::read::MultiGzDecoder::new(blob))
        }
        media::LAYER_TAR_ZSTD => Box::new(zstd::stream::read::Decoder::new(blob)?),
        media::LAYER_TAR | media::DOCKER_LAYER_TAR => Box::new(blob),
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

/// Bytes per gzip member: the lost history between members costs 0.1% of
/// the output at 2 MiB (69.35 MB against 69.29 MB for 4 MiB on the pack
/// benchmark's tree), and peak memory stays lower.
pub const GZIP_CHUNK: usize = 2 << 20;

/// libdeflate's level: the fastest whose output stays no larger than
/// umoci's on the pack benchmark (70.1 MB against 71.7 MB; level 3 gives
/// 71.2 MB on a GNU tar of that tree, too close to call on other trees).
/// libdeflate rather than flate2 here: it compresses a whole buffer in one
/// call, which is all a member needs, 30% faster than zlib-rs at level 4
/// and with 1% smaller output (one core, a GNU tar of the pack benchmark's
/// tree, 240 MB: 1.34 s and 70.4 MB against 1.89 s and 71.3 MB).
pub const GZIP_LEVEL: i32 = 4;

/// Bytes per zstd frame. Each frame starts with an empty history, which
/// costs 0.7% of the output at 4 MiB against one whole stream on the pack
/// benchmark's tree, and 1.4% at 2 MiB (level 2, `zstd -b -B`); 8 MiB
/// frames would take peak memory past 64 MiB on 2 cores.
pub const ZSTD_CHUNK: usize = 4 << 20;

/// A zstd compressor with every setting that reaches the bytes given
/// explicitly, rather than taken from a level's table that a zstd release
/// may retune. The "fast" strategy with a 32 Ki-entry hash table and 6-byte
/// minimum matches: on a tar of the pack benchmark's tree, in 4 MiB frames on
/// one core (`zstd -b -B4M`), 485-497 MB/s into 68.3 MB, where level 2 gave
/// 481 MB/s and 66.9 MB, level 1 534 MB/s and 72.8 MB (larger than
/// gzip's 70.1 MB), and a 64 Ki-entry table 478 MB/s and 66.2 MB. In the
/// layer writer on 2 cores, where the hashing threads share the caches, the
/// 32 Ki-entry table packed the tree in 0.451 s against 0.47 s (medians of 6).
fn zstd_compressor() -> io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::{CParameter as P, Strategy};
    let mut z = zstd::bulk::Compressor::new(1)?;
    for p in [
        P::Strategy(Strategy::ZSTD_fast),
        P::WindowLog(22),
        P::HashLog(15),
        P::ChainLog(16),
        P::SearchLog(1),
        P::MinMatch(6),
        P::TargetLength(0),
        P::ContentSizeFlag(true),
        P::ChecksumFlag(false),
        P::DictIdFlag(false),
    ] {
        z.set_parameter(p)?;
    }
    Ok(z)
}

/// One worker's compressor, kept from chunk to chunk.
enum Codec {
    Gzip(libdeflater::Compressor),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl Codec {
    fn new(compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => {
                let level = libdeflater::CompressionLvl::new(GZIP_LEVEL)
                    .map_err(|e| io::Error::other(format!("gzip level: {e:?}")))?;
                Codec::Gzip(libdeflater::Compressor::new(level))
            }
            Compression::Zstd => Codec::Zstd(Box::new(zstd_compressor()?)),
        })
    }

    /// Compresses `data` into one complete gzip member or zstd frame in
    /// `out` (a recycled buffer: its earlier contents are overwritten) and
    /// returns `out` with the length of the member or frame.
    fn compress(&mut self, data: &[u8], mut out: Vec<u8>) -> io::Result<Compressed> {
        match self {
            Codec::Gzip(c) => {
                // libdeflate writes into initialised memory; a recycled
                // buffer is already that long, so it is not zeroed again.
                let bound = c.gzip_compress_bound(data.len());
                if out.len() < bound {
                    out.resize(bound, 0);
                }
                let len = c
                    .gzip_compress(data, &mut out)
                    .map_err(|e| io::Error::other(format!("gzip member: {e:?}")))?;
                Ok(Compressed { buf: out, len })
            }
            Codec::Zstd(z) => {
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(data.len()));
                let len = z.compress_to_buffer(data, &mut out)?;
                Ok(Compressed { buf: out, len })
            }
        }
    }
}

/// A compressed chunk: the first `len` bytes of `buf`.
struct Compressed {
    buf: Vec<u8>,
    len: usize,
}

/// An input chunk that goes back to the encoder's spare buffers once both
/// its hasher and its compressor are done with it, so that chunk memory is
/// touched once rather than faulted in again for every chunk.
struct Chunk {
    data: Vec<u8>,
    spare: Sender<Vec<u8>>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let _ = self.spare.send(std::mem::take(&mut self.data));
    }
}

/// Starts a named thread (the names show in `top -H` and `perf`).
fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(format!("assemble-{name}"))
        .spawn(f)
}

/// A chunk to compress and where its result goes.
struct Job {
    data: Arc<Chunk>,
    out: Vec<u8>,
    done: Sender<io::Result<Compressed>>,
}

/// What an [`Encoder`] wrote.
#[derive(Debug)]
pub struct Encoded<W> {
    /// The writer the blob went to.
    pub out: W,
    /// Digest and size of the uncompressed stream.
    pub plain: (Digest, u64),
    /// Digest and size of the compressed blob.
    pub blob: (Digest, u64),
}

type WriterResult<W> = io::Result<(W, Digest, u64)>;

/// A writer that compresses what it is given on every core, in independent
/// members or frames, and hashes both the input and the output.
pub struct Encoder<W: Write + Send + 'static> {
    chunk: usize,
    buf: Vec<u8>,
    sent_any: bool,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    plain: Option<SyncSender<Arc<Chunk>>>,
    plain_hasher: Option<JoinHandle<(Digest, u64)>>,
    ordered: Option<SyncSender<Receiver<io::Result<Compressed>>>>,
    writer: Option<JoinHandle<WriterResult<W>>>,
    /// Input buffers back from finished chunks, and their way back.
    spare_in: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Output buffers back from the writer.
    spare_out: Receiver<Vec<u8>>,
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// Compresses into `out` with one worker per core.
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(out, compression, cores)
    }

    /// Compresses into `out` with `workers` threads (the bytes do not depend on it).
    pub fn with_workers(out: W, compression: Compression, workers: usize) -> io::Result<Self> {
        let workers = workers.max(1);
        let in_flight = workers + 1;
        let (jobs, job_rx) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let mut codec = Codec::new(compression)?;
            let job_rx = Arc::clone(&job_rx);
            handles.push(spawn("compress", move || loop {
                // The lock is held only while waiting for the next job.
                let job = {
                    let Ok(rx) = job_rx.lock() else { return };
                    rx.recv()
                };
                let Ok(job) = job else { return };
                let _ = job.done.send(codec.compress(&job.data.data, job.out));
            })?);
        }

        let (plain, plain_rx) = sync_channel::<Arc<Chunk>>(in_flight);
        let plain_hasher = spawn("hash-tar", move || {
            let mut h = HashingWriter::new(io::sink());
            for chunk in plain_rx {
                // Writing to a sink cannot fail.
                let _ = h.write_all(&chunk.data);
            }
            let (_, digest, size) = h.finish();
            (digest, size)
        })?;

        let (ordered, ordered_rx) = sync_channel::<Receiver<io::Result<Compressed>>>(in_flight);
        let (spare_out_tx, spare_out) = channel();
        let writer = spawn("write-blob", move || {
            let mut out = HashingWriter::new(out);
            for result in ordered_rx {
                let done = result
                    .recv()
                    .map_err(|_| io::Error::other("a compression thread died"))??;
                out.write_all(&done.buf[..done.len])?;
                let _ = spare_out_tx.send(done.buf);
            }
            out.flush()?;
            Ok(out.finish())
        })?;

        Ok(Self {
            chunk: compression.chunk(),
            buf: Vec::with_capacity(compression.chunk()),
            sent_any: false,
            jobs: Some(jobs),
            workers: handles,
            plain: Some(plain),
            plain_hasher: Some(plain_hasher),
            ordered: Some(ordered),
            writer: Some(writer),
            spare_in: channel(),
            spare_out,
        })
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let next = match self.spare_in.1.try_recv() {
            Ok(mut spare) => {
                spare.clear();
                spare
            }
            Err(_) => Vec::with_capacity(self.chunk),
        };
        let data = Arc::new(Chunk {
            data: std::mem::replace(&mut self.buf, next),
            spare: self.spare_in.0.clone(),
        });
        self.sent_any = true;
        let (done, result) = channel();
        let job = Job {
            data: Arc::clone(&data),
            out: self.spare_out.try_recv().unwrap_or_default(),
            done,
        };
        let sent = match (&self.jobs, &self.plain, &self.ordered) {
            (Some(jobs), Some(plain), Some(ordered)) => {
                jobs.send(job).is_ok() && plain.send(data).is_ok() && ordered.send(result).is_ok()
            }
            _ => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.stopped())
        }
    }

    /// The error that stopped the writer thread (a full disk, say), once a
    /// send found it gone.
    fn stopped(&mut self) -> io::Error {
        self.ordered = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the layer's compression threads stopped"),
        }
    }

    /// Compresses what is left, waits for every thread, and returns the
    /// writer with the digests of both streams.
    pub fn finish(mut self) -> io::Result<Encoded<W>> {
        // An empty stream still gets one (empty) member or frame: a gzip
        // file is never zero bytes.
        if !self.buf.is_empty() || !self.sent_any {
            self.dispatch()?;
        }
        self.jobs = None;
        self.plain = None;
        self.ordered = None;
        let written = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            _ => return Err(io::Error::other("the layer's writer thread died")),
        };
        let plain = self
            .plain_hasher
            .take()
            .map(JoinHandle::join)
            .and_then(Result::ok)
            .ok_or_else(|| io::Error::other("the layer's hashing thread died"))?;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let (out, digest, size) = written;
        Ok(Encoded {
            out,
            plain,
            blob: (digest, size),
        })
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (self.chunk - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Encoder<W> {
    /// An encoder dropped before `finish` (an error while writing the tar)
    /// stops its threads once the chunks already handed over are written;
    /// the partial chunk is dropped. The caller discards the output.
    fn drop(&mut self) {
        self.jobs = None;
        self.plain = None;
        self.ordered = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(h) = self.plain_hasher.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    fn encode(data: &[u8], compression: Compression, workers: usize) -> Encoded<Vec<u8>> {
        let mut w = Encoder::with_workers(Vec::new(), compression, workers).unwrap();
        // Odd write sizes, to cross chunk boundaries mid-write.
        for part in data.chunks(777_777) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn decode(compression: Compression, blob: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        match compression {
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(blob)
                    .read_to_end(&mut back)
                    .unwrap();
            }
            Compression::Zstd => back = zstd::decode_all(blob).unwrap(),
        }
        back
    }

    /// How many bytes the command-line tool decodes from `blob`; None, said
    /// on stderr, where the tool is not installed (`.ci/setup` installs both).
    fn decoded_length_by(tool: &str, blob: &[u8]) -> Option<usize> {
        use std::process::{Command, Stdio};
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status();
        if !found.is_ok_and(|s| s.success()) {
            eprintln!("skipping the check by {tool} -d: {tool} is not installed");
            return None;
        }
        let mut child = Command::new(tool)
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let blob = blob.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&blob));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "{tool} -d failed");
        Some(out.stdout.len())
    }

    #[test]
    fn chunks_decode_to_the_input_whatever_the_number_of_workers() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let data = pseudo_random(3 * compression.chunk() + 12_345);
            let one = encode(&data, compression, 1);
            for workers in [2, 3, 8] {
                let other = encode(&data, compression, workers);
                assert!(
                    other.out == one.out,
                    "{compression:?}: {workers} workers changed the bytes"
                );
            }
            assert_eq!(decode(compression, &one.out), data, "{compression:?}");
            assert_eq!(one.plain, (Digest::of(&data), data.len() as u64));
            assert_eq!(one.blob, (Digest::of(&one.out), one.out.len() as u64));
            let tool = match compression {
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            };
            if let Some(n) = decoded_length_by(tool, &one.out) {
                assert_eq!(n, data.len(), "{tool} -d reads every chunk");
            }
        }
    }

    #[test]
    fn an_empty_stream_is_one_empty_member_or_frame() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let out = encode(&[], compression, 2);
            assert!(!out.out.is_empty(), "{compression:?}");
            assert!(decode(compression, &out.out).is_empty(), "{compression:?}");
            assert_eq!(out.plain, (Digest::of(b""), 0));
        }
    }

    /// A writer that fails like a full disk after `room` bytes.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if data.len() > self.room {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room -= data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_output_reports_its_own_error() {
        let data = pseudo_random(40 * GZIP_CHUNK);
        let mut w = Encoder::with_workers(Full { room: 1000 }, Compression::Gzip, 2).unwrap();
        let err = data
            .chunks(1 << 16)
            .try_for_each(|part| w.write_all(part))
            .err()
            .or_else(|| w.finish().err())
            .expect("the full output is noticed");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
}
