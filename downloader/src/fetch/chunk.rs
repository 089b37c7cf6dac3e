//! Fetching one chunk from one holder into a file, checking it on the way.
//!
//! The bytes go either to a part file of their own ([`Dest::Part`]) or straight to their place
//! in the file being received ([`Dest::InFile`]: written once, where they stay). They are
//! hashed as they arrive, on this thread. When the manifest carries midstates, the chunk is
//! checked as one step of the whole file's SHA-256 ([`ChunkStep`]), so that the file needs no
//! second pass; otherwise (or when that step fails, to tell forged midstates from wrong bytes)
//! against the chunk digest.
//!
//! Our peers get an extended request and answer with a header giving the chunk's length and
//! hash; the body is checked against the manifest before the caller may use it. A part left by
//! an interrupted transfer is continued from its last byte (the request carries the offset).
//! Legacy peers get the legacy request and are read until they close (or fall silent after
//! sending); what they send cannot be checked, and they always start over.
//!
//! Every byte passes a [`Guard`] that stops the transfer on Ctrl-C, on cancellation, when the
//! holder trickles, sends more than the chunk can hold, or the disk fills.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::connection::{Connection, ConnectionError};
use shared::digest::{Digest, Hasher, HashingWriter};
use shared::protocol::{ChunkStep, Request, Response};
use shared::shutdown::Shutdown;
use shared::tags::Proto;

use super::connect::{connect, CancelHandle};
use super::error::FetchError;
use super::network::{no_space, Network};
use crate::catalog::Holder;

/// What the chunk must be, when known (from the content's manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: Digest,
}

/// A chunk received into the part file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes of the whole chunk.
    pub bytes: u64,
    /// Bytes that were already in the part file and not fetched again.
    pub resumed_from: u64,
    /// SHA-256 of the whole chunk (the manifest's, when the chunk was proven by its step).
    pub sha256: Digest,
    /// Whether it matched an [`Expected`] hash.
    pub verified: bool,
    /// How the file's midstates fared: `Some(true)` when the chunk was proven as a step of the
    /// file's SHA-256, `Some(false)` when that step failed but the bytes match the chunk digest
    /// (the midstates are wrong, and the file must be hashed whole), `None` when not tried.
    pub step: Option<bool>,
}

impl Fetched {
    /// `bytes` received and not kept, for the log of a failed or superseded transfer.
    pub fn unverified(bytes: u64) -> Fetched {
        Fetched {
            bytes,
            resumed_from: 0,
            sha256: Digest::of(b""),
            verified: false,
            step: None,
        }
    }
}

/// Where a chunk's bytes go.
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    /// A part file of their own, flushed to disk when complete.
    Part(&'a Path),
    /// Their place in the file being received.
    InFile(&'a InFile<'a>),
}

/// A chunk's place in the file being received, and where the transfer records how far it got
/// (so that a run killed mid-chunk is continued from there).
pub struct InFile<'a> {
    /// The file, open for writing; chunks are written with `pwrite`, so many at once.
    pub file: &'a File,
    /// Its path, for errors.
    pub path: &'a Path,
    /// Where the chunk starts in it.
    pub offset: u64,
    /// Bytes of the chunk already there, from an earlier transfer (continued when the job
    /// allows it).
    pub resumable: u64,
    /// Records how many bytes of the chunk are there; called now and then, and at the end.
    pub record: &'a (dyn Fn(u64) + Sync),
}

impl std::fmt::Debug for InFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFile")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("resumable", &self.resumable)
            .finish_non_exhaustive()
    }
}

impl Dest<'_> {
    fn path(&self) -> PathBuf {
        match self {
            Dest::Part(path) => path.to_path_buf(),
            Dest::InFile(place) => place.path.to_owned(),
        }
    }
}

/// One chunk to fetch from one holder.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// Who to ask.
    pub holder: &'a Holder,
    /// Which chunk.
    pub chunk: &'a ChunkName,
    /// The digest of the content the chunk belongs to, when known: our peers refuse to send a
    /// chunk of another content of the same name.
    pub content_sha256: Option<Digest>,
    /// What the chunk must be, when the manifest is known.
    pub expected: Option<Expected>,
    /// The chunk as a step of the file's SHA-256, when the manifest carries midstates.
    pub step: Option<&'a ChunkStep<'a>>,
    /// Continue what an earlier transfer left from its last byte when possible.
    pub resume: bool,
    /// Only bytes `start..end` of the chunk (our peers, into the file): a piece, the rest of
    /// the chunk coming from other holders. A piece is not checked here: the chunk is, whole,
    /// once all its pieces are in.
    pub range: Option<(u64, u64)>,
}

/// What a fetch delivered.
#[derive(Debug)]
pub enum Delivery {
    /// The whole chunk, checked.
    Chunk(Fetched),
    /// A piece of it, up to byte `end` of the chunk: a [`Job::range`], or a transfer cut short
    /// because another holder was given the rest ([`CancelHandle::cut_at`]). `hashed` is the
    /// hash of the chunk's bytes up to `end` when this transfer hashed them from the chunk's
    /// start (it continued them), `None` for a piece hashed later, in order.
    Piece {
        /// Where in the chunk the piece ends.
        end: u64,
        /// The chunk's hash so far.
        hashed: Option<Hasher>,
    },
}

/// Most bytes [`Guard`] passes on in one write: as much as a client's connection reads at
/// once (256 KiB). The receiving thread reads where it must stop (`CancelHandle::end`) before
/// each write, so a transfer split for another holder (`download::plan::split_point`) may
/// still write this much past the position it was split at, and the split leaves it more room
/// than that: otherwise the transfer's hash would cover bytes the other holder writes too.
/// Smaller steps cost speed: a 1 GiB download from one source over loopback took 1.04 s in
/// steps of 64 KiB, 0.97 s in steps of 256 KiB (medians of 15, alternating).
pub const MAX_WRITE: usize = 256 << 10;

/// The writer every received byte goes through: it stops the transfer on Ctrl-C, on
/// cancellation, and (when asked) when the holder trickles; it passes bytes on in steps of at
/// most [`MAX_WRITE`].
struct Guard<'a, W> {
    inner: W,
    shutdown: &'a Shutdown,
    handle: &'a CancelHandle,
    /// The minimum rate: at least this many bytes per window of time.
    stall: (Duration, u64),
    window_start: Instant,
    window_bytes: u64,
    stalled: Option<(u64, Duration)>,
    /// Bytes of the chunk so far (those resumed from included) and the most it may have.
    written: u64,
    max_len: u64,
    oversized: bool,
    /// The transfer reached the end it was cut at ([`CancelHandle::cut_at`]).
    cut: bool,
    /// Where free space is watched, how much must stay free, and when to look next.
    space: PathBuf,
    min_free: u64,
    next_space_check: u64,
    low_space: Option<u64>,
}

/// Free space is looked at again after this many bytes received.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

impl<W: Write> Write for Guard<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.handle.end();
        if self.written >= end {
            self.cut = true;
            return Err(io::Error::other(
                "the rest of the chunk comes from another holder",
            ));
        }
        let room = usize::try_from(end - self.written).unwrap_or(usize::MAX);
        let buf = &buf[..buf.len().min(room).min(MAX_WRITE)];
        let after = self.written + buf.len() as u64;
        if after > self.max_len {
            // A holder that sends more than the chunk can hold is stopped here, before the
            // bytes reach the disk.
            self.oversized = true;
            return Err(io::Error::other("chunk too large"));
        }
        if after >= self.next_space_check {
            self.next_space_check = after + SPACE_CHECK_EVERY;
            if let Ok(free) = fs2::available_space(&self.space) {
                if free < self.min_free + buf.len() as u64 {
                    self.low_space = Some(free);
                    return Err(io::Error::other("low on disk space"));
                }
            }
        }
        self.written = after;
        self.handle.wrote(after);
        if self.shutdown.is_triggered() || self.handle.is_cancelled() {
            // Not `ErrorKind::Interrupted`: `write_all` retries that kind for ever, which turned
            // Ctrl-C into a busy loop. The caller reads the flags to report a cancellation.
            return Err(io::Error::other("cancelled"));
        }
        let (window, min_bytes) = self.stall;
        let elapsed = self.window_start.elapsed();
        if elapsed >= window {
            if self.window_bytes < min_bytes {
                self.stalled = Some((self.window_bytes, elapsed));
                return Err(io::Error::new(io::ErrorKind::TimedOut, "too slow"));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        self.window_bytes += buf.len() as u64;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes written at their place in the file being received, the progress recorded every
/// [`RECORD_EVERY`] bytes.
struct AtOffset<'a> {
    place: &'a InFile<'a>,
    /// Where in the chunk the next byte goes.
    written: u64,
    /// What the record says; `None` for a piece, which records nothing: the record counts the
    /// bytes from the chunk's start.
    recorded: Option<u64>,
    /// Where in the chunk writing back to disk was last started ([`WRITEBACK_EVERY`]).
    written_back: u64,
}

/// How often a transfer into the file starts writing what it received to disk, so that the
/// one `fsync` at the end has little left to write.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// How often a transfer into the file records how far it got.
const RECORD_EVERY: u64 = 256 << 10;

impl Write for AtOffset<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.place
            .file
            .write_all_at(buf, self.place.offset + self.written)?;
        self.written += buf.len() as u64;
        if self
            .recorded
            .is_some_and(|r| self.written - r >= RECORD_EVERY)
        {
            self.recorded = Some(self.written);
            (self.place.record)(self.written);
        }
        if self.written - self.written_back >= WRITEBACK_EVERY {
            let (from, len) = (self.written_back, self.written - self.written_back);
            shared::fsutil::start_writeback(self.place.file, self.place.offset + from, len);
            self.written_back = self.written;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The two kinds of [`Dest`], open.
enum Out<'a> {
    Part(BufWriter<File>),
    InFile(AtOffset<'a>),
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Part(w) => w.write(buf),
            Out::InFile(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Part(w) => w.flush(),
            Out::InFile(w) => w.flush(),
        }
    }
}

impl Out<'_> {
    /// Makes what was written last: a part file is flushed to disk (it is renamed into the store
    /// next); a place in the file records its progress (the file is flushed once, whole).
    fn finish(self) -> io::Result<()> {
        match self {
            Out::Part(w) => w.into_inner().map_err(|e| e.into_error())?.sync_all(),
            Out::InFile(w) => {
                if w.recorded.is_some() {
                    (w.place.record)(w.written);
                }
                // The rest goes to disk while other transfers go on, not at the one `fsync`.
                let (from, len) = (w.written_back, w.written - w.written_back);
                shared::fsutil::start_writeback(w.place.file, w.place.offset + from, len);
                Ok(())
            }
        }
    }
}

type Sink<'a> = HashingWriter<Guard<'a, Out<'a>>>;

/// Fetches the job's chunk from its holder into `dest`. What an earlier transfer left there is
/// continued when the job allows it.
///
/// On failure, what arrived is kept when it can be continued later (our peers, a known chunk,
/// no bad data); the caller decides what to do with it.
///
/// # Errors
/// A [`FetchError`] saying why this holder did not deliver.
pub fn fetch_chunk<'a>(
    job: &Job<'_>,
    dest: Dest<'a>,
    net: &Network,
    shutdown: &'a Shutdown,
    handle: &'a CancelHandle,
) -> Result<Delivery, FetchError> {
    if shutdown.is_triggered() {
        return Err(FetchError::Cancelled);
    }
    let conn = connect(job.holder, net, net.idle, handle)?;
    let path = dest.path();
    let write_err = |source| FetchError::Write {
        path: path.clone(),
        source,
    };
    let resumable = |existing: u64| match (job.holder.proto, job.expected) {
        (Proto::P2p(_), Some(exp)) if job.resume && existing < exp.len => existing,
        _ => 0,
    };
    // The hash starts where the chunk starts in the file's SHA-256 when it is checked as a
    // step, and takes in again what is continued.
    let mut hasher = job.step.map_or_else(Hasher::default, |s| s.start.resume());
    let (out, resume_from) = match dest {
        Dest::Part(part) => {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(part)
                .map_err(write_err)?;
            let resume_from = resumable(file.metadata().map_err(write_err)?.len());
            if resume_from > 0 {
                io::copy(&mut Read::by_ref(&mut file).take(resume_from), &mut hasher)
                    .map_err(write_err)?;
            } else {
                file.set_len(0).map_err(write_err)?;
            }
            file.seek(SeekFrom::Start(resume_from)).map_err(write_err)?;
            (
                Out::Part(BufWriter::with_capacity(256 * 1024, file)),
                resume_from,
            )
        }
        Dest::InFile(place) if job.range.is_some() => {
            let (start, end) = job.range.unwrap_or_default();
            handle.cut_at(end);
            let out = AtOffset {
                place,
                written: start,
                recorded: None,
                written_back: start,
            };
            (Out::InFile(out), start)
        }
        Dest::InFile(place) => {
            let resume_from = resumable(place.resumable);
            if resume_from > 0 {
                hash_range(place.file, place.offset, resume_from, &mut hasher)
                    .map_err(write_err)?;
            }
            let out = AtOffset {
                place,
                written: resume_from,
                recorded: Some(resume_from),
                written_back: resume_from,
            };
            (Out::InFile(out), resume_from)
        }
    };
    handle.resume_at(resume_from);
    let out = HashingWriter::resume(
        Guard {
            inner: out,
            shutdown,
            handle,
            // Every holder must keep up the minimum rate, the only one too: a holder that
            // trickles would otherwise keep the download going for ever.
            stall: (net.stall_window, net.stall_bytes),
            window_start: Instant::now(),
            window_bytes: 0,
            stalled: None,
            written: resume_from,
            max_len: job.expected.map_or(net.limits.max_chunk_len(), |e| e.len),
            oversized: false,
            cut: false,
            space: path.parent().unwrap_or(&path).to_owned(),
            min_free: net.limits.min_free,
            next_space_check: resume_from,
            low_space: None,
        },
        hasher,
        resume_from,
    );
    let received = match job.holder.proto {
        Proto::P2p(_) => fetch_ours(job, net, conn, out, resume_from, &path),
        Proto::Legacy => fetch_legacy(job, conn, out, net, &path),
    }?;
    if received.cut || job.range.is_some() {
        // Only a transfer that started with the chunk has hashed its bytes in order.
        let hashed = job.range.is_none().then_some(received.hasher);
        return Ok(Delivery::Piece {
            end: received.bytes,
            hashed,
        });
    }
    let bytes = received.bytes;
    check(
        (job.expected, job.step),
        received,
        resume_from,
        || match dest {
            Dest::Part(part) => Digest::of_reader(File::open(part)?).map(|(d, _)| d),
            Dest::InFile(place) => {
                let mut hasher = Hasher::default();
                hash_range(place.file, place.offset, bytes, &mut hasher)?;
                Ok(hasher.finish())
            }
        },
    )
    .map(Delivery::Chunk)
    .map_err(|e| match e {
        CheckError::Read(source) => FetchError::Write { path, source },
        CheckError::Fetch(e) => e,
    })
}

/// Checks a chunk an earlier run left complete at its place in the file, read back and
/// checked as [`fetch_chunk`] checks what it receives: `None` when it does not match.
///
/// # Errors
/// The file cannot be read.
pub fn check_in_file(
    place: &InFile<'_>,
    expected: Expected,
    step: Option<&ChunkStep<'_>>,
) -> io::Result<Option<Fetched>> {
    let mut hasher = step.map_or_else(Hasher::default, |s| s.start.resume());
    hash_range(place.file, place.offset, expected.len, &mut hasher)?;
    let received = Received {
        bytes: expected.len,
        announced: None,
        hasher,
        cut: false,
    };
    let reread = || {
        let mut hasher = Hasher::default();
        hash_range(place.file, place.offset, expected.len, &mut hasher)?;
        Ok(hasher.finish())
    };
    match check((Some(expected), step), received, expected.len, reread) {
        Ok(fetched) => Ok(Some(fetched)),
        Err(CheckError::Read(e)) => Err(e),
        Err(CheckError::Fetch(_)) => Ok(None),
    }
}

/// Checks a chunk received in pieces into the file: `hashed` is its hash up to byte `from`
/// (the transfer that started with it); the rest is read back from the file, hashed, and the
/// chunk checked as [`fetch_chunk`] checks a whole one.
///
/// # Errors
/// [`FetchError::BadData`] when it does not match; [`FetchError::Write`] when the file cannot
/// be read.
pub fn check_pieces(
    place: &InFile<'_>,
    mut hashed: Hasher,
    from: u64,
    expected: Expected,
    step: Option<&ChunkStep<'_>>,
) -> Result<Fetched, FetchError> {
    let path = place.path.to_owned();
    let read_err = |source| FetchError::Write {
        path: path.clone(),
        source,
    };
    let rest = expected.len.saturating_sub(from);
    hash_range(place.file, place.offset + from, rest, &mut hashed).map_err(read_err)?;
    let received = Received {
        bytes: expected.len,
        announced: None,
        hasher: hashed,
        cut: false,
    };
    let reread = || {
        let mut hasher = Hasher::default();
        hash_range(place.file, place.offset, expected.len, &mut hasher)?;
        Ok(hasher.finish())
    };
    match check((Some(expected), step), received, 0, reread) {
        Ok(fetched) => Ok(fetched),
        Err(CheckError::Read(source)) => Err(read_err(source)),
        Err(CheckError::Fetch(e)) => Err(e),
    }
}

/// Hashes `len` bytes of `file` from `offset`.
fn hash_range(file: &File, offset: u64, len: u64, hasher: &mut Hasher) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the received part is shorter than recorded",
            ));
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(())
}

/// A chunk received whole, not yet checked.
struct Received {
    /// Where in the chunk the bytes received end.
    bytes: u64,
    /// The header's length and digest, from our peers.
    announced: Option<(u64, Digest)>,
    hasher: Hasher,
    /// Cut short: the rest of the chunk comes from another holder.
    cut: bool,
}

enum CheckError {
    Read(io::Error),
    Fetch(FetchError),
}

/// Checks a received chunk against what it must be: as a step of the file's SHA-256 when the
/// job has one, falling back on the chunk digest (read back: `reread`) when that step fails;
/// against the digest otherwise; against the holder's header for a chunk of no known manifest.
fn check(
    (expected, step): (Option<Expected>, Option<&ChunkStep<'_>>),
    received: Received,
    resumed_from: u64,
    reread: impl FnOnce() -> io::Result<Digest>,
) -> Result<Fetched, CheckError> {
    let Received {
        bytes,
        announced,
        hasher,
        cut: _,
    } = received;
    let fetched = |sha256, verified, step| Fetched {
        bytes,
        resumed_from,
        sha256,
        verified,
        step,
    };
    let mismatch = |expected: (u64, Digest), actual: Digest| {
        CheckError::Fetch(FetchError::BadData {
            expected: expected.1,
            expected_len: expected.0,
            actual,
            actual_len: bytes,
        })
    };
    match (expected, step) {
        (Some(exp), Some(step)) => {
            if bytes == exp.len && step.reached_by(hasher) {
                return Ok(fetched(exp.sha256, true, Some(true)));
            }
            let digest = reread().map_err(CheckError::Read)?;
            if (bytes, digest) == (exp.len, exp.sha256) {
                Ok(fetched(digest, true, Some(false)))
            } else {
                Err(mismatch((exp.len, exp.sha256), digest))
            }
        }
        (Some(exp), None) => {
            let digest = hasher.finish();
            if (bytes, digest) == (exp.len, exp.sha256) {
                Ok(fetched(digest, true, None))
            } else {
                Err(mismatch((exp.len, exp.sha256), digest))
            }
        }
        (None, _) => {
            let digest = hasher.finish();
            match announced {
                Some(announced) if (bytes, digest) != announced => Err(mismatch(announced, digest)),
                _ => Ok(fetched(digest, false, None)),
            }
        }
    }
}

fn transfer_error(e: ConnectionError, out: &Sink<'_>, part: &Path) -> FetchError {
    let guard = out_guard(out);
    if let Some((bytes, window)) = guard.stalled {
        return FetchError::Stalled { bytes, window };
    }
    if guard.oversized {
        return FetchError::TooLarge {
            limit: guard.max_len,
        };
    }
    if let Some(free) = guard.low_space {
        return FetchError::Write {
            path: part.to_owned(),
            source: no_space(free, guard.min_free),
        };
    }
    if guard.shutdown.is_triggered() || guard.handle.is_cancelled() {
        return FetchError::Cancelled;
    }
    match e {
        ConnectionError::Sink(source) => FetchError::Write {
            path: part.to_owned(),
            source,
        },
        e => FetchError::Transfer(e),
    }
}

fn out_guard<'s, 'a>(out: &'s Sink<'a>) -> &'s Guard<'a, Out<'a>> {
    out.get_ref()
}

fn fetch_ours(
    job: &Job<'_>,
    net: &Network,
    mut conn: Connection,
    mut out: Sink<'_>,
    offset: u64,
    path: &Path,
) -> Result<Received, FetchError> {
    // A range, or a transfer that already knows where it stops (other holders have the rest):
    // only that much is asked for, so no byte beyond it crosses the network.
    let end = out_guard(&out).handle.end();
    let wanted = match job.range {
        Some((start, end)) => Some(end - start),
        None => (end != u64::MAX).then(|| end.saturating_sub(offset)),
    };
    if wanted == Some(0) {
        let (bytes, hasher) = finish(out).map_err(|source| FetchError::Write {
            path: path.to_owned(),
            source,
        })?;
        return Ok(Received {
            bytes,
            announced: None,
            hasher,
            cut: true,
        });
    }
    conn.write_request(&Request::Chunk {
        filename: job.chunk.to_string(),
        content_sha256: job.content_sha256,
        offset,
        length: wanted,
    })
    .map_err(FetchError::Send)?;
    // Our servers answer at once: a holder that accepts and then says nothing is given up
    // after the first-byte deadline, not the longer idle timeout of a running transfer.
    conn.set_read_timeout(net.first_byte.min(net.idle))
        .map_err(FetchError::Send)?;
    let header = conn.read_response();
    conn.set_read_timeout(net.idle).map_err(FetchError::Send)?;
    let (size, length, announced) = match header {
        Ok(Response::Chunk {
            size,
            length,
            sha256,
        }) => (size, length, sha256),
        Ok(Response::Error { code, message }) => {
            return Err(FetchError::refused(
                job.holder.addr,
                net.keys.is_none(),
                code,
                message,
            ))
        }
        Ok(other) => return Err(FetchError::Protocol(format!("{other:?}"))),
        Err(ConnectionError::Timeout(waited)) => {
            return match transfer_error(ConnectionError::Timeout(waited), &out, path) {
                FetchError::Transfer(_) => Err(FetchError::Silent(waited)),
                other => Err(other),
            }
        }
        Err(e) => return Err(transfer_error(e, &out, path)),
    };
    // All to the chunk's end; or the range asked for (cut at the end), which servers older
    // than ranges answer with all to the end: only what was asked for is read.
    let to_end = size.checked_sub(offset);
    if to_end != Some(length) && wanted.zip(to_end).map(|(w, t)| w.min(t)) != Some(length) {
        return Err(FetchError::Protocol(format!(
            "asked for bytes {offset}.. of the chunk, offered {length} of {size}"
        )));
    }
    let max_len = out_guard(&out).max_len;
    if size > max_len {
        return Err(FetchError::TooLarge { limit: max_len });
    }
    if let Some(exp) = job.expected {
        if size != exp.len || announced != exp.sha256 {
            return Err(FetchError::BadData {
                expected: exp.sha256,
                expected_len: exp.len,
                actual: announced,
                actual_len: size,
            });
        }
    }
    let length = wanted.map_or(length, |w| w.min(length));
    let mut cut = false;
    if let Err(e) = conn.read_body_exact(length, &mut out, &mut |_| {}) {
        cut = out_guard(&out).cut;
        if !cut {
            let error = transfer_error(e, &out, path);
            // Keep what arrived, so the next attempt continues from there.
            let _ = finish(out);
            return Err(error);
        }
    }
    let (bytes, hasher) = finish(out).map_err(|source| FetchError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(Received {
        bytes,
        announced: Some((size, announced)),
        hasher,
        // Stopped where it was told to, before the chunk's end: the rest is others'.
        cut: cut || (job.range.is_none() && wanted.is_some()),
    })
}

fn fetch_legacy(
    job: &Job<'_>,
    mut conn: Connection,
    mut out: Sink<'_>,
    net: &Network,
    path: &Path,
) -> Result<Received, FetchError> {
    conn.write_request(&Request::LegacyChunk {
        filename: job.chunk.to_legacy_string(),
    })
    .map_err(FetchError::Send)?;
    let mut cut = false;
    if let Err(e) = conn.read_body_to_end(net.legacy_end, &mut out, &mut |_| {}) {
        cut = out_guard(&out).cut;
        if !cut {
            return Err(transfer_error(e, &out, path));
        }
    }
    let (bytes, hasher) = finish(out).map_err(|source| FetchError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(Received {
        bytes,
        announced: None,
        hasher,
        cut,
    })
}

/// Ends the writing: bytes written (continued ones included) and the hash of them all.
fn finish(out: Sink<'_>) -> io::Result<(u64, Hasher)> {
    let bytes = out.written();
    let (guard, hasher) = out.into_parts();
    guard.inner.finish()?;
    Ok((bytes, hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the size of every write it is given.
    #[derive(Default)]
    struct Steps(Vec<usize>);

    impl Write for Steps {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn guard<'a>(shutdown: &'a Shutdown, handle: &'a CancelHandle) -> Guard<'a, Steps> {
        Guard {
            inner: Steps::default(),
            shutdown,
            handle,
            stall: (Duration::from_secs(3600), 0),
            window_start: Instant::now(),
            window_bytes: 0,
            stalled: None,
            written: 0,
            max_len: u64::MAX,
            oversized: false,
            cut: false,
            space: std::env::temp_dir(),
            min_free: 0,
            next_space_check: u64::MAX,
            low_space: None,
        }
    }

    #[test]
    fn bytes_are_passed_on_in_steps_of_at_most_max_write_and_never_past_the_cut() {
        let (shutdown, handle) = (Shutdown::default(), CancelHandle::default());
        let mut guard = guard(&shutdown, &handle);
        // More than one step at once: passed on in steps.
        guard.write_all(&[7u8; 4 * MAX_WRITE + 5]).unwrap();
        assert_eq!(
            guard.inner.0,
            [MAX_WRITE, MAX_WRITE, MAX_WRITE, MAX_WRITE, 5]
        );
        assert_eq!(handle.position().1, 4 * MAX_WRITE as u64 + 5);

        // Cut while a read is under way: what is left is written up to the cut, then no more.
        let cut = 5 * MAX_WRITE as u64 + 100;
        handle.cut_at(cut);
        let err = guard.write_all(&[7u8; 2 * MAX_WRITE]).unwrap_err();
        assert_eq!(guard.written, cut);
        assert!(guard.cut, "{err}");
        assert!(guard.inner.0.iter().all(|&n| n <= MAX_WRITE));
    }
}
