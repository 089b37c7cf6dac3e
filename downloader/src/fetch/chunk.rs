//! Fetching one chunk from one holder into a file, checking it on the way.
//!
//! Our peers get an extended request and answer with a header giving the chunk's length and
//! hash; the body is checked against the manifest's hash before the caller may use it. A part
//! file left by an interrupted transfer is continued from its last byte (the request carries
//! the offset). Legacy peers get the legacy request and are read until they close (or fall
//! silent after sending); what they send cannot be checked, and they always start over.
//!
//! Every byte passes a [`Guard`] that stops the transfer on Ctrl-C, on cancellation, when the
//! holder trickles, sends more than the chunk can hold, or the disk fills.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::connection::{Connection, ConnectionError};
use shared::digest::{Digest, Hasher, HashingWriter};
use shared::protocol::{Request, Response};
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
    /// SHA-256 of the whole chunk.
    pub sha256: Digest,
    /// Whether it matched an [`Expected`] hash.
    pub verified: bool,
}

impl Fetched {
    /// `bytes` received and not kept, for the log of a failed or superseded transfer.
    pub fn unverified(bytes: u64) -> Fetched {
        Fetched {
            bytes,
            resumed_from: 0,
            sha256: Digest::of(b""),
            verified: false,
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
    /// Continue a part file from its last byte when possible.
    pub resume: bool,
}

/// The writer every received byte goes through: it stops the transfer on Ctrl-C, on
/// cancellation, and (when asked) when the holder trickles.
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
    /// Where free space is watched, how much must stay free, and when to look next.
    space: &'a Path,
    min_free: u64,
    next_space_check: u64,
    low_space: Option<u64>,
}

/// Free space is looked at again after this many bytes received.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

impl<W: Write> Write for Guard<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if after > self.max_len {
            // A holder that sends more than the chunk can hold is stopped here, before the
            // bytes reach the disk.
            self.oversized = true;
            return Err(io::Error::other("chunk too large"));
        }
        if after >= self.next_space_check {
            self.next_space_check = after + SPACE_CHECK_EVERY;
            if let Ok(free) = fs2::available_space(self.space) {
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

type Sink<'a> = HashingWriter<Guard<'a, BufWriter<File>>>;

/// Fetches the job's chunk from its holder into `part`, flushed to disk on success. A part file
/// that holds the beginning of the chunk is continued when the job allows it.
///
/// On failure the part file is kept when it can be continued later (our peers, a known chunk,
/// no bad data); the caller decides what to do with it.
///
/// # Errors
/// A [`FetchError`] saying why this holder did not deliver.
pub fn fetch_chunk(
    job: &Job<'_>,
    part: &Path,
    net: &Network,
    shutdown: &Shutdown,
    handle: &CancelHandle,
) -> Result<Fetched, FetchError> {
    if shutdown.is_triggered() {
        return Err(FetchError::Cancelled);
    }
    let conn = connect(job.holder, net, net.idle, handle)?;
    let write_err = |source| FetchError::Write {
        path: part.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .map_err(write_err)?;
    let existing = file.metadata().map_err(write_err)?.len();
    let resume_from = match (job.holder.proto, job.expected) {
        (Proto::P2p(_), Some(exp)) if job.resume && existing < exp.len => existing,
        _ => 0,
    };
    let mut hasher = Hasher::default();
    if resume_from > 0 {
        io::copy(&mut Read::by_ref(&mut file).take(resume_from), &mut hasher).map_err(write_err)?;
    } else {
        file.set_len(0).map_err(write_err)?;
    }
    file.seek(SeekFrom::Start(resume_from)).map_err(write_err)?;
    handle.resume_at(resume_from);
    let out = HashingWriter::resume(
        Guard {
            inner: BufWriter::with_capacity(256 * 1024, file),
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
            space: part.parent().unwrap_or(part),
            min_free: net.limits.min_free,
            next_space_check: resume_from,
            low_space: None,
        },
        hasher,
        resume_from,
    );
    match job.holder.proto {
        Proto::P2p(_) => fetch_ours(job, net, conn, out, resume_from, part),
        Proto::Legacy => fetch_legacy(job, conn, out, net, part),
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

fn out_guard<'s, 'a>(out: &'s Sink<'a>) -> &'s Guard<'a, BufWriter<File>> {
    out.get_ref()
}

fn fetch_ours(
    job: &Job<'_>,
    net: &Network,
    mut conn: Connection,
    mut out: Sink<'_>,
    offset: u64,
    part: &Path,
) -> Result<Fetched, FetchError> {
    conn.write_request(&Request::Chunk {
        filename: job.chunk.to_string(),
        content_sha256: job.content_sha256,
        offset,
        length: None,
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
            return match transfer_error(ConnectionError::Timeout(waited), &out, part) {
                FetchError::Transfer(_) => Err(FetchError::Silent(waited)),
                other => Err(other),
            }
        }
        Err(e) => return Err(transfer_error(e, &out, part)),
    };
    if size.checked_sub(offset) != Some(length) {
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
    if let Err(e) = conn.read_body_exact(length, &mut out, &mut |_| {}) {
        let error = transfer_error(e, &out, part);
        // Keep what arrived, so the next attempt continues from there.
        let _ = finish(out);
        return Err(error);
    }
    let (bytes, digest) = finish(out).map_err(|source| FetchError::Write {
        path: part.to_owned(),
        source,
    })?;
    let target = job
        .expected
        .map_or((size, announced), |e| (e.len, e.sha256));
    if (bytes, digest) != target {
        return Err(FetchError::BadData {
            expected: target.1,
            expected_len: target.0,
            actual: digest,
            actual_len: bytes,
        });
    }
    Ok(Fetched {
        bytes,
        resumed_from: offset,
        sha256: digest,
        verified: job.expected.is_some(),
    })
}

fn fetch_legacy(
    job: &Job<'_>,
    mut conn: Connection,
    mut out: Sink<'_>,
    net: &Network,
    part: &Path,
) -> Result<Fetched, FetchError> {
    conn.write_request(&Request::LegacyChunk {
        filename: job.chunk.to_legacy_string(),
    })
    .map_err(FetchError::Send)?;
    if let Err(e) = conn.read_body_to_end(net.legacy_end, &mut out, &mut |_| {}) {
        return Err(transfer_error(e, &out, part));
    }
    let (bytes, digest) = finish(out).map_err(|source| FetchError::Write {
        path: part.to_owned(),
        source,
    })?;
    if let Some(exp) = job.expected {
        if (bytes, digest) != (exp.len, exp.sha256) {
            return Err(FetchError::BadData {
                expected: exp.sha256,
                expected_len: exp.len,
                actual: digest,
                actual_len: bytes,
            });
        }
    }
    Ok(Fetched {
        bytes,
        resumed_from: 0,
        sha256: digest,
        verified: job.expected.is_some(),
    })
}

fn finish(out: Sink<'_>) -> io::Result<(u64, Digest)> {
    let bytes = out.written();
    let (guard, digest) = out.finish();
    let file = guard.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((bytes, digest))
}
