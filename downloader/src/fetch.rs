//! Fetching one chunk from one holder into a file, checking it on the way.
//!
//! Our peers get an extended request and answer with a header giving the chunk's length and
//! hash; the body is checked against the manifest's hash before the caller may use it. Legacy
//! peers get the legacy request and are read until they close (or fall silent after sending),
//! and what they send cannot be checked.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::chunk::ChunkName;
use shared::connection::{Connection, ConnectionError};
use shared::digest::{Digest, HashingWriter};
use shared::protocol::{ErrorCode, Request, Response};
use shared::shutdown::Shutdown;
use shared::tags::Proto;

use crate::catalog::Holder;

/// How to talk to chunk servers: source address and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    /// Source address of outgoing connections; `None` lets the system choose.
    pub bind: Option<IpAddr>,
    /// To establish a connection.
    pub connect: Duration,
    /// Longest silence during a transfer.
    pub idle: Duration,
    /// Silence after which a legacy server that sent data is taken to have finished.
    pub legacy_end: Duration,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            bind: None,
            connect: shared::CONNECT_TIMEOUT,
            idle: shared::IO_IDLE_TIMEOUT,
            legacy_end: shared::LEGACY_END_IDLE,
        }
    }
}

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
    /// Bytes received.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: Digest,
    /// Whether they matched an [`Expected`] hash.
    pub verified: bool,
}

/// Why a fetch from one holder failed. Each is a reason to try another holder.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The holder could not be reached.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The request could not be sent.
    #[error("cannot send the request: {0}")]
    Send(io::Error),
    /// The holder refused the request.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The holder answered with something other than a chunk.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The transfer broke off.
    #[error("transfer failed: {0}")]
    Transfer(ConnectionError),
    /// The bytes are not the chunk the manifest describes.
    #[error("wrong data: expected {expected_len} bytes with SHA-256 {expected}, got {actual_len} bytes with {actual}")]
    BadData {
        /// Expected hash.
        expected: Digest,
        /// Expected length.
        expected_len: u64,
        /// Received hash.
        actual: Digest,
        /// Received length.
        actual_len: u64,
    },
    /// Writing the part file failed: not the holder's fault.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The part file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The download was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl FetchError {
    /// A short word for the log's `outcome` field.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "unreachable",
            FetchError::Send(_) => "send_failed",
            FetchError::Refused {
                code: ErrorCode::NotFound,
                ..
            } => "not_found",
            FetchError::Refused {
                code: ErrorCode::WrongContent,
                ..
            } => "wrong_content",
            FetchError::Refused { .. } => "refused",
            FetchError::Protocol(_) => "protocol_error",
            FetchError::Transfer(ConnectionError::Timeout(_)) => "timeout",
            FetchError::Transfer(ConnectionError::Truncated) => "truncated",
            FetchError::Transfer(_) => "transfer_failed",
            FetchError::BadData { .. } => "bad_data",
            FetchError::Write { .. } => "write_failed",
            FetchError::Cancelled => "cancelled",
        }
    }

    /// Whether the holder sent bytes that are provably wrong: such a holder is avoided for the
    /// rest of the download.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, FetchError::BadData { .. })
    }
}

/// A writer that fails once the download is cancelled, so a long transfer stops promptly.
struct Cancellable<'a, W> {
    inner: W,
    cancel: &'a Shutdown,
}

impl<W: Write> Write for Cancellable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.is_triggered() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
}

/// Fetches the job's chunk from its holder into `part` (created or truncated), flushed to disk on success.
///
/// With `expected`, the bytes must match it. With legacy peers the bytes are taken as they come, unverified.
///
/// # Errors
/// A [`FetchError`] saying why this holder did not deliver.
pub fn fetch_chunk(
    job: &Job<'_>,
    part: &Path,
    net: Network,
    cancel: &Shutdown,
) -> Result<Fetched, FetchError> {
    let Job {
        holder,
        chunk,
        content_sha256,
        expected,
    } = *job;
    let progress = &mut |_| {};
    if cancel.is_triggered() {
        return Err(FetchError::Cancelled);
    }
    let mut conn = Connection::connect_with(holder.addr, net.bind, net.connect, net.idle)
        .map_err(FetchError::Connect)?;
    let write_err = |source| FetchError::Write {
        path: part.to_owned(),
        source,
    };
    let file = File::create(part).map_err(write_err)?;
    let mut out = HashingWriter::new(Cancellable {
        inner: BufWriter::with_capacity(256 * 1024, file),
        cancel,
    });
    let map_transfer = |e: ConnectionError| match e {
        ConnectionError::Io(ref io) if io.kind() == io::ErrorKind::Interrupted => {
            FetchError::Cancelled
        }
        e => FetchError::Transfer(e),
    };

    match holder.proto {
        Proto::P2p(_) => {
            conn.write_request(&Request::Chunk {
                filename: chunk.to_string(),
                content_sha256,
                offset: 0,
            })
            .map_err(FetchError::Send)?;
            let (size, length, announced) = match conn.read_response() {
                Ok(Response::Chunk {
                    size,
                    length,
                    sha256,
                }) => (size, length, sha256),
                Ok(Response::Error { code, message }) => {
                    return Err(FetchError::Refused { code, message })
                }
                Ok(other) => return Err(FetchError::Protocol(format!("{other:?}"))),
                Err(e) => return Err(map_transfer(e)),
            };
            if length != size {
                return Err(FetchError::Protocol(format!(
                    "asked for the whole chunk, offered {length} of {size} bytes"
                )));
            }
            if let Some(exp) = expected {
                if size != exp.len || announced != exp.sha256 {
                    return Err(FetchError::BadData {
                        expected: exp.sha256,
                        expected_len: exp.len,
                        actual: announced,
                        actual_len: size,
                    });
                }
            }
            conn.read_body_exact(length, &mut out, progress)
                .map_err(map_transfer)?;
            let (bytes, digest) = finish(out).map_err(write_err)?;
            let target = expected.map_or((size, announced), |e| (e.len, e.sha256));
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
                sha256: digest,
                verified: expected.is_some(),
            })
        }
        Proto::Legacy => {
            conn.write_request(&Request::LegacyChunk {
                filename: chunk.to_string(),
            })
            .map_err(FetchError::Send)?;
            conn.read_body_to_end(net.legacy_end, &mut out, progress)
                .map_err(map_transfer)?;
            let (bytes, digest) = finish(out).map_err(write_err)?;
            if let Some(exp) = expected {
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
                sha256: digest,
                verified: expected.is_some(),
            })
        }
    }
}

fn finish(out: HashingWriter<Cancellable<'_, BufWriter<File>>>) -> io::Result<(u64, Digest)> {
    let bytes = out.written();
    let (cancellable, digest) = out.finish();
    let file = cancellable.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((bytes, digest))
}
