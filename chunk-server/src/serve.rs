//! One connection: read one request, answer it from the chunk store, close.
//!
//! Three requests exist (see [`shared::protocol::Request`]):
//! - a legacy chunk request, answered with the chunk's raw bytes and a close, or a bare close
//!   when the name is invalid or the chunk missing (legacy clients know no error reply);
//! - our chunk request, answered with a [`Response`] header and then exactly the announced bytes
//!   from the requested offset;
//! - our manifest request, answered with a header only.
//!
//! Every outcome is logged as one `served` or `refused` event ([`Event`]) with the fields
//! `docs/ARCHITECTURE.md` lists. A request name only ever reaches the file system after
//! [`ChunkName::parse`] or [`validate_content_name`] accepted it, and then only through the
//! store's path functions, so no request can name a file outside `temp/`; and a name there is
//! only read when it is a regular file itself, never through a symbolic link
//! ([`fsutil::open_regular`]).
//!
//! Hostile clients are bounded at each step: the whole request must arrive within the request
//! deadline, counted from accept; an answer waits at most [`SLOT_WAIT`] for a transfer slot
//! ([`crate::admission`]); and a client that reads an answer slower than the [`RateFloor`]
//! is dropped (`too_slow`). No request makes the server hash a chunk it hashed before
//! ([`DigestCache`]).
//!
//! This module neither accepts connections nor counts them: [`crate::run`] and
//! [`crate::admission`] do. Failures here concern one client and are logged, never returned.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shared::chunk::{chunk_ranges, validate_content_name, ChunkName};
use shared::connection::{Connection, ConnectionError};
use shared::digest::Digest;
use shared::events::Event;
use shared::fsutil::{self, OpenError};
use shared::protocol::{ErrorCode, Manifest, Request, Response};
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Origin, StoreError};
use shared::IO_IDLE_TIMEOUT;

use crate::admission::Ticket;
use crate::digest_cache::DigestCache;

/// Buffer of an unthrottled transfer: few system calls, little memory per connection.
const SEND_BUFFER: usize = 128 * 1024;

/// Largest read-and-write step of a throttled transfer.
const THROTTLE_BUFFER: usize = 64 * 1024;

/// After answering, how long to wait for the client to close before we do. Closing with unread
/// request bytes in the socket makes the kernel send a reset, which can destroy the answer
/// before the client reads it; a well-behaved client closes at once on our end of stream.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// At most this much is read and discarded from a client while closing.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Longest raw request name copied into a log line.
const MAX_LOGGED_NAME: usize = 256;

/// How long a complete request waits for a transfer slot before it is refused as `busy`.
/// Shorter than the clients' idle timeout ([`IO_IDLE_TIMEOUT`]), so they get the refusal
/// rather than time out.
pub(crate) const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The slowest a client may read an answer: at least `bytes_per_sec` on average over each
/// `window` of time the server spends waiting for the client's socket to take more. Only that
/// waiting counts, never the pauses of our own `--max-rate` throttle or disk reads, so the
/// throttle cannot make an honest client look slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateFloor {
    /// Bytes per second.
    pub(crate) bytes_per_sec: u64,
    /// Over how much waiting the rate is measured.
    pub(crate) window: Duration,
}

impl RateFloor {
    /// Bytes the client must take in one window.
    fn min_bytes(&self) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * self.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// What serving one connection needs, shared by every handler thread.
#[derive(Debug)]
pub(crate) struct ServeContext {
    /// The chunk store; handlers only read from it.
    pub(crate) store: ChunkStore,
    /// Per-connection send rate in bytes per second; `None` for as fast as possible.
    pub(crate) max_rate: Option<u64>,
    /// Clients reading slower than this are dropped; `None` for no floor.
    pub(crate) min_rate: Option<RateFloor>,
    /// The whole request must have arrived this long after accept.
    pub(crate) request_timeout: Duration,
    /// Digests of chunks no manifest describes.
    pub(crate) digests: DigestCache,
    /// The server's shutdown flag: waits and long hashes end when it is set.
    pub(crate) shutdown: Shutdown,
}

/// The `outcome` field of `served` and `refused` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    BadRequest,
    NotFound,
    WrongContent,
    Malformed,
    TooLarge,
    Timeout,
    Empty,
    TooManyConnections,
    Busy,
    TooSlow,
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::WrongContent => "wrong_content",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Timeout => "timeout",
            Outcome::Empty => "empty",
            Outcome::TooManyConnections => "too_many_connections",
            Outcome::Busy => "busy",
            Outcome::TooSlow => "too_slow",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request gets no data.
#[derive(Debug)]
struct Refusal {
    outcome: Outcome,
    reason: String,
}

impl Refusal {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Refusal {
        Refusal {
            outcome,
            reason: reason.into(),
        }
    }

    /// The error reply of our protocol for this refusal.
    fn response(&self) -> Response {
        let code = match self.outcome {
            Outcome::BadRequest | Outcome::Malformed | Outcome::TooLarge => ErrorCode::BadRequest,
            Outcome::NotFound => ErrorCode::NotFound,
            Outcome::WrongContent => ErrorCode::WrongContent,
            Outcome::Ok
            | Outcome::Timeout
            | Outcome::Empty
            | Outcome::TooManyConnections
            | Outcome::Busy
            | Outcome::TooSlow
            | Outcome::Error => ErrorCode::Internal,
        };
        Response::Error {
            code,
            message: self.reason.clone(),
        }
    }
}

/// The outcome and reason of a request that could not be read.
pub(crate) fn read_refusal(err: &ConnectionError) -> (Outcome, String) {
    match err {
        ConnectionError::Empty => (Outcome::Empty, err.to_string()),
        ConnectionError::Timeout(waited) => (
            Outcome::Timeout,
            format!("no complete request {waited:.1?} after the connection was accepted"),
        ),
        ConnectionError::Malformed(_) => (Outcome::Malformed, err.to_string()),
        ConnectionError::TooLarge(_) => (Outcome::TooLarge, err.to_string()),
        ConnectionError::Truncated => (Outcome::Malformed, err.to_string()),
        ConnectionError::Io(e) | ConnectionError::Sink(e) => {
            (Outcome::Error, format!("cannot read the request: {e}"))
        }
    }
}

/// A raw request name, shortened for a log line.
fn loggable(raw: &str) -> String {
    if raw.len() <= MAX_LOGGED_NAME {
        return raw.to_owned();
    }
    let mut end = MAX_LOGGED_NAME;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

/// Logs one `refused` event.
pub(crate) fn log_refused(peer: SocketAddr, outcome: Outcome, chunk: Option<&str>, reason: &str) {
    let mut event = Event::new("refused")
        .with("peer", peer)
        .with("outcome", outcome);
    if let Some(chunk) = chunk {
        event = event.with("chunk", loggable(chunk));
    }
    log::info!("{}", event.with("reason", reason));
}

/// Why sending an answer's body stopped early.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The client read less than the [`RateFloor`] asks.
    TooSlow {
        /// Bytes it took in the last window.
        moved: u64,
        /// The time spent waiting for it in that window.
        waited: Duration,
        /// What it should have taken.
        required: u64,
    },
    /// The file or the socket failed (the client went away, say).
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooSlow {
                moved,
                waited,
                required,
            } => write!(
                f,
                "the client took {moved} bytes in {waited:.1?} of waiting, fewer than {required}"
            ),
            SendError::Io(e) => e.fmt(f),
        }
    }
}

fn log_served(
    name: &ChunkName,
    peer: SocketAddr,
    proto: &str,
    offset: Option<u64>,
    sent: u64,
    started: Instant,
    result: &Result<(), SendError>,
) {
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(SendError::TooSlow { .. }) => Outcome::TooSlow,
        Err(SendError::Io(_)) => Outcome::Error,
    };
    let mut event = Event::new("served")
        .with("chunk", name)
        .with("peer", peer)
        .with("proto", proto);
    // A resumed transfer starts mid-chunk; say where, so the log shows what was re-sent.
    if let Some(offset) = offset {
        event = event.with("offset", offset);
    }
    event = event
        .with("bytes", sent)
        .with("ms", started.elapsed().as_millis())
        .with("outcome", outcome);
    if let Err(e @ SendError::TooSlow { .. }) = result {
        event = event.with("reason", e);
    }
    log::info!("{event}");
    if let Err(e) = result {
        log::debug!("sending {name} to {peer} stopped after {sent} bytes: {e}");
    }
}

/// Serves one accepted connection to the end: reads its request by `accepted` plus the request
/// deadline, waits for a transfer slot (moving `ticket` from pending to transferring), answers.
/// `transferring` is set once the answer starts, so that shutdown can tell transfers in
/// progress from clients that have not asked anything or wait for a slot.
pub(crate) fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    mut ticket: Ticket,
    ctx: &ServeContext,
    transferring: &AtomicBool,
) {
    let mut conn = match Connection::new(stream, ctx.request_timeout) {
        Ok(conn) => conn,
        Err(e) => {
            log_refused(
                peer,
                Outcome::Error,
                None,
                &format!("cannot set up the connection: {e}"),
            );
            return;
        }
    };
    let request = match conn.read_request_until(accepted + ctx.request_timeout) {
        Ok(request) => request,
        Err(e) => {
            let (outcome, reason) = read_refusal(&e);
            log_refused(peer, outcome, None, &reason);
            // Nothing to protect from a reset when the client is silent or already gone.
            if !matches!(outcome, Outcome::Empty | Outcome::Timeout) {
                close(&mut conn);
            }
            return;
        }
    };
    if !ticket.start_transfer(Instant::now() + SLOT_WAIT, &ctx.shutdown) {
        let reason = if ctx.shutdown.is_triggered() {
            "busy: the server is shutting down".to_owned()
        } else {
            format!("busy: no transfer slot freed within {SLOT_WAIT:?}")
        };
        let refusal = Refusal::new(Outcome::Busy, reason);
        match &request {
            Request::LegacyChunk { filename } => {
                log_refused(peer, refusal.outcome, Some(filename), &refusal.reason);
            }
            Request::Chunk { filename, .. } => {
                refuse_p2p(&mut conn, peer, Some(filename), &refusal);
            }
            Request::Manifest { .. } => refuse_p2p(&mut conn, peer, None, &refusal),
        }
        close(&mut conn);
        return;
    }
    transferring.store(true, Ordering::SeqCst);
    let timeouts = conn
        .set_read_timeout(IO_IDLE_TIMEOUT)
        .and_then(|()| conn.stream().set_write_timeout(Some(IO_IDLE_TIMEOUT)));
    if let Err(e) = timeouts {
        log_refused(
            peer,
            Outcome::Error,
            None,
            &format!("cannot set socket timeouts: {e}"),
        );
        return;
    }
    let started = Instant::now();
    let result = match request {
        Request::LegacyChunk { filename } => serve_legacy(&mut conn, peer, &filename, ctx, started),
        Request::Chunk {
            filename,
            content_sha256,
            offset,
        } => match prepare_chunk(ctx, &filename, content_sha256, offset) {
            Ok(mut chunk) => {
                let (sent, result) = match conn.write_response(&chunk.header) {
                    Ok(()) => send_file(
                        conn.stream(),
                        &mut chunk.file,
                        chunk.length,
                        ctx.max_rate,
                        ctx.min_rate,
                    ),
                    Err(e) => (0, Err(SendError::Io(e))),
                };
                log_served(
                    &chunk.name,
                    peer,
                    "p2p",
                    Some(offset),
                    sent,
                    started,
                    &result,
                );
                result
            }
            Err(refusal) => {
                refuse_p2p(&mut conn, peer, Some(&filename), &refusal);
                Ok(())
            }
        },
        Request::Manifest {
            content,
            content_sha256,
        } => {
            match prepare_manifest(&ctx.store, &content, content_sha256) {
                Ok(manifest) => {
                    let size = manifest.size;
                    match conn.write_response(&Response::Manifest(manifest)) {
                        Ok(()) => {
                            log::debug!("sent the manifest of {content} ({size} bytes) to {peer}")
                        }
                        Err(e) => {
                            log::debug!("cannot send the manifest of {content} to {peer}: {e}")
                        }
                    }
                }
                Err(refusal) => {
                    let refusal = Refusal {
                        reason: format!("manifest of {}: {}", loggable(&content), refusal.reason),
                        ..refusal
                    };
                    refuse_p2p(&mut conn, peer, None, &refusal);
                }
            }
            Ok(())
        }
    };
    if matches!(result, Err(SendError::TooSlow { .. })) {
        abort(&conn);
    } else {
        close(&mut conn);
    }
}

/// Closes gracefully: end of stream first, then a short wait for the client to close, reading
/// whatever it still sends, so the kernel does not answer with a reset.
fn close(conn: &mut Connection) {
    conn.shutdown_write();
    if conn.set_read_timeout(CLOSE_LINGER).is_ok() {
        conn.drain(DRAIN_LIMIT);
    }
}

/// Drops a client at once with a reset: the bytes still queued for it in the kernel are
/// discarded rather than kept (megabytes, for a client that reads nothing) until it reads them.
fn abort(conn: &Connection) {
    if let Ok(stream) = conn.try_clone_stream() {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

fn refuse_p2p(conn: &mut Connection, peer: SocketAddr, chunk: Option<&str>, refusal: &Refusal) {
    log_refused(peer, refusal.outcome, chunk, &refusal.reason);
    if let Err(e) = conn.write_response(&refusal.response()) {
        log::debug!("cannot send an error reply to {peer}: {e}");
    }
}

fn serve_legacy(
    conn: &mut Connection,
    peer: SocketAddr,
    filename: &str,
    ctx: &ServeContext,
    started: Instant,
) -> Result<(), SendError> {
    let name = match ChunkName::parse(filename) {
        Ok(name) => name,
        Err(e) => {
            let reason = format!("invalid chunk name: {e}");
            log_refused(peer, Outcome::BadRequest, Some(filename), &reason);
            return Ok(());
        }
    };
    match open_chunk(&ctx.store, &name) {
        Ok((mut file, meta)) => {
            let (sent, result) = send_file(
                conn.stream(),
                &mut file,
                meta.len(),
                ctx.max_rate,
                ctx.min_rate,
            );
            log_served(&name, peer, "legacy", None, sent, started, &result);
            result
        }
        Err(refusal) => {
            log_refused(peer, refusal.outcome, Some(filename), &refusal.reason);
            Ok(())
        }
    }
}

/// Opens a complete chunk of the store, only if its name there is a regular file: a symbolic
/// link planted in `temp/` (`x_1 -> /etc/passwd`) or a FIFO is refused as missing, with the
/// reason logged. Returns the file and its metadata.
fn open_chunk(store: &ChunkStore, name: &ChunkName) -> Result<(File, Metadata), Refusal> {
    // A download whose whole file is not verified yet is not passed on: its manifest may be
    // forged.
    if !store.is_servable(name.content()) {
        return Err(Refusal::new(
            Outcome::NotFound,
            format!("no chunk {name} here: its download is not verified yet"),
        ));
    }
    match fsutil::open_regular(&store.chunk_path(name)) {
        Ok(opened) => Ok(opened),
        Err(OpenError::Missing) => Err(Refusal::new(
            Outcome::NotFound,
            format!("no chunk {name} here"),
        )),
        Err(why @ (OpenError::SymbolicLink | OpenError::NotRegular)) => Err(Refusal::new(
            Outcome::NotFound,
            format!("no chunk {name} here: its name in the store is {why}"),
        )),
        Err(OpenError::Io(e)) => Err(Refusal::new(
            Outcome::Error,
            format!("cannot open chunk {name}: {e}"),
        )),
    }
}

/// A chunk ready to send: header written first, then `length` bytes of `file` from its
/// current position.
struct PreparedChunk {
    name: ChunkName,
    file: File,
    length: u64,
    header: Response,
}

/// Checks an extended chunk request against the store, in the order the protocol gives the
/// errors: name, presence, content digest, offset.
fn prepare_chunk(
    ctx: &ServeContext,
    filename: &str,
    content_sha256: Option<Digest>,
    offset: u64,
) -> Result<PreparedChunk, Refusal> {
    let store = &ctx.store;
    let name = ChunkName::parse(filename)
        .map_err(|e| Refusal::new(Outcome::BadRequest, format!("invalid chunk name: {e}")))?;
    let (mut file, meta) = open_chunk(store, &name)?;
    let size = meta.len();
    let stored = match store.load_manifest(name.content()) {
        Ok(stored) => stored,
        Err(e @ StoreError::NotAFile { .. }) => {
            return Err(Refusal::new(Outcome::NotFound, e.to_string()));
        }
        Err(e) if content_sha256.is_some() => {
            return Err(Refusal::new(Outcome::Error, e.to_string()));
        }
        Err(e) => {
            log::warn!("{e}; hashing {name} instead");
            None
        }
    };
    // A manifest that implies another length for this chunk does not describe the file (the
    // content is being replaced right now, for instance), nor does one of another name.
    let described = stored.as_ref().map(|s| &s.manifest).filter(|m| {
        m.name == name.content() && chunk_ranges(m.size)[name.position()].len() == size
    });
    if let Some(wanted) = content_sha256 {
        match (&stored, described) {
            (None, _) => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!(
                        "no manifest for {}: cannot vouch for content {}",
                        name.content(),
                        wanted.short(16)
                    ),
                ))
            }
            (Some(s), _) if s.manifest.sha256 != wanted => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!(
                        "{} here is content {}, not {}",
                        name.content(),
                        s.manifest.sha256.short(16),
                        wanted.short(16)
                    ),
                ))
            }
            (Some(_), None) => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!("{name} here does not match its manifest"),
                ))
            }
            (Some(_), Some(_)) => {}
        }
    }
    if offset > size {
        return Err(Refusal::new(
            Outcome::BadRequest,
            format!("offset {offset} is past the end of the {size}-byte chunk {name}"),
        ));
    }
    let sha256 = match described {
        Some(manifest) => manifest.chunks[name.position()],
        // Hashed once per version of the file, never once per request.
        None => ctx
            .digests
            .digest_of(&mut file, &meta, &ctx.shutdown)
            .map_err(|e| Refusal::new(Outcome::Error, format!("cannot read {name}: {e}")))?,
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Refusal::new(Outcome::Error, format!("cannot read {name}: {e}")))?;
    let length = size - offset;
    Ok(PreparedChunk {
        name,
        file,
        length,
        header: Response::Chunk {
            size,
            length,
            sha256,
        },
    })
}

/// Checks a manifest request against the store.
fn prepare_manifest(
    store: &ChunkStore,
    content: &str,
    content_sha256: Option<Digest>,
) -> Result<Manifest, Refusal> {
    validate_content_name(content)
        .map_err(|e| Refusal::new(Outcome::BadRequest, format!("invalid content name: {e}")))?;
    let stored = match store.load_manifest(content) {
        Ok(Some(stored)) if stored.origin != Origin::Downloading => stored,
        Ok(Some(_)) => {
            return Err(Refusal::new(
                Outcome::NotFound,
                "no such content here: its download is not verified yet",
            ))
        }
        Ok(None) => return Err(Refusal::new(Outcome::NotFound, "no such content here")),
        Err(e @ StoreError::NotAFile { .. }) => {
            return Err(Refusal::new(Outcome::NotFound, e.to_string()))
        }
        Err(e) => return Err(Refusal::new(Outcome::Error, e.to_string())),
    };
    if stored.manifest.name != content {
        return Err(Refusal::new(
            Outcome::NotFound,
            format!(
                "the manifest file of {content} describes {}",
                loggable(&stored.manifest.name)
            ),
        ));
    }
    match content_sha256 {
        Some(wanted) if wanted != stored.manifest.sha256 => Err(Refusal::new(
            Outcome::WrongContent,
            format!(
                "content here is {}, not {}",
                stored.manifest.sha256.short(16),
                wanted.short(16)
            ),
        )),
        _ => Ok(stored.manifest),
    }
}

/// Whether a socket error is a timeout rather than a failure.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes to a client while keeping count of how fast it takes the bytes; see [`RateFloor`].
struct WriteWatch {
    floor: Option<RateFloor>,
    /// Bytes the socket took in the current window.
    moved: u64,
    /// Time spent inside `write` in the current window.
    waited: Duration,
    /// When the socket last took a byte.
    last_progress: Instant,
}

impl WriteWatch {
    fn new(floor: Option<RateFloor>) -> WriteWatch {
        WriteWatch {
            floor,
            moved: 0,
            waited: Duration::ZERO,
            last_progress: Instant::now(),
        }
    }

    /// The socket write timeout: short enough that a client that takes nothing is measured
    /// within a window.
    fn write_timeout(&self) -> Duration {
        self.floor
            .map_or(IO_IDLE_TIMEOUT, |f| f.window.min(IO_IDLE_TIMEOUT))
            .max(Duration::from_millis(1))
    }

    /// Writes all of `data`, adding each byte the socket takes to `sent`.
    fn write_all(
        &mut self,
        stream: &mut TcpStream,
        mut data: &[u8],
        sent: &mut u64,
    ) -> Result<(), SendError> {
        while !data.is_empty() {
            let started = Instant::now();
            let result = stream.write(data);
            self.waited += started.elapsed();
            match result {
                Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    data = &data[n..];
                    *sent += n as u64;
                    self.moved += n as u64;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if self.last_progress.elapsed() >= IO_IDLE_TIMEOUT {
                        return Err(SendError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client took nothing for {IO_IDLE_TIMEOUT:?}"),
                        )));
                    }
                }
                Err(e) => return Err(SendError::Io(e)),
            }
            if let Some(floor) = self.floor {
                if self.waited >= floor.window {
                    let required = floor.min_bytes();
                    if self.moved < required {
                        return Err(SendError::TooSlow {
                            moved: self.moved,
                            waited: self.waited,
                            required,
                        });
                    }
                    self.moved = 0;
                    self.waited = Duration::ZERO;
                }
            }
        }
        Ok(())
    }
}

/// Sends `length` bytes of `file`, from its current position, to `stream`, at most `max_rate`
/// bytes per second when given, dropping a client that reads slower than `min_rate`. Returns
/// how many bytes were handed to the socket (a lower bound when the transfer failed) and how
/// the transfer ended.
///
/// This is a plain read/write loop through one buffer rather than `io::copy`: the standard
/// library no longer uses `sendfile` from a file to a socket (its `safe_kernel_copy` refuses,
/// since later changes to the file could show in bytes already "sent"), and its fallback copies
/// through an 8 KiB buffer. Our own loop uses a larger buffer and counts exactly what was sent.
pub(crate) fn send_file(
    stream: &mut TcpStream,
    file: &mut File,
    length: u64,
    max_rate: Option<u64>,
    min_rate: Option<RateFloor>,
) -> (u64, Result<(), SendError>) {
    let rate = max_rate.filter(|&r| r > 0);
    // Throttled: about ten steps a second, so that the sleeps between them stay short.
    let step = match rate {
        Some(rate) => {
            usize::try_from(rate / 10).map_or(THROTTLE_BUFFER, |s| s.clamp(1, THROTTLE_BUFFER))
        }
        None => SEND_BUFFER,
    };
    let mut watch = WriteWatch::new(min_rate.filter(|f| f.bytes_per_sec > 0));
    if let Err(e) = stream.set_write_timeout(Some(watch.write_timeout())) {
        return (0, Err(SendError::Io(e)));
    }
    let mut buf = vec![0u8; usize::try_from(length).map_or(step, |l| l.min(step))];
    let step = buf.len();
    let started = Instant::now();
    let mut sent = 0;
    while sent < length {
        let want = usize::try_from(length - sent).map_or(step, |r| r.min(step));
        if let Err(e) = file.read_exact(&mut buf[..want]) {
            let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("chunk file ended before {length} bytes"),
                )
            } else {
                e
            };
            return (sent, Err(SendError::Io(e)));
        }
        if let Err(e) = watch.write_all(stream, &buf[..want], &mut sent) {
            return (sent, Err(e));
        }
        // Sleep until the bytes so far are due at `rate`: the average never exceeds it.
        if let Some(due) = rate.and_then(|rate| started.checked_add(due_after(sent, rate))) {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
    }
    (sent, Ok(()))
}

/// How long sending `bytes` takes at `rate` bytes per second.
fn due_after(bytes: u64, rate: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::DecodeError;
    use std::net::TcpListener;

    #[test]
    fn read_errors_map_to_the_documented_outcomes() {
        let cases = [
            (ConnectionError::Empty, "empty"),
            (ConnectionError::Timeout(Duration::from_secs(5)), "timeout"),
            (
                ConnectionError::Malformed(DecodeError::Malformed("x".into())),
                "malformed",
            ),
            (ConnectionError::TooLarge(4096), "too_large"),
            (ConnectionError::Truncated, "malformed"),
            (
                ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
                "error",
            ),
        ];
        for (err, expected) in cases {
            let (outcome, reason) = read_refusal(&err);
            assert_eq!(outcome.as_str(), expected, "{err:?}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn refusals_map_to_protocol_error_codes() {
        let code = |outcome| match Refusal::new(outcome, "r").response() {
            Response::Error { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(Outcome::BadRequest), ErrorCode::BadRequest);
        assert_eq!(code(Outcome::NotFound), ErrorCode::NotFound);
        assert_eq!(code(Outcome::WrongContent), ErrorCode::WrongContent);
        assert_eq!(code(Outcome::Error), ErrorCode::Internal);
    }

    #[test]
    fn long_names_are_shortened_on_a_char_boundary() {
        assert_eq!(loggable("a_1"), "a_1");
        let long = "é".repeat(300);
        let short = loggable(&long);
        assert!(short.len() <= MAX_LOGGED_NAME + "…".len());
        assert!(short.ends_with('…'));
    }

    #[test]
    fn due_time_follows_the_rate_without_overflow() {
        assert_eq!(due_after(1000, 1000), Duration::from_secs(1));
        assert_eq!(due_after(500, 1000), Duration::from_millis(500));
        assert_eq!(due_after(0, 7), Duration::ZERO);
        // Saturates rather than overflowing.
        assert_eq!(due_after(u64::MAX, 1), Duration::from_nanos(u64::MAX));
    }

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn both_senders_send_exactly_the_requested_range() {
        let mut source = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        source.write_all(&data).unwrap();
        for rate in [None, Some(1_000_000_000)] {
            let (mut server, mut client) = socket_pair();
            source.seek(SeekFrom::Start(17)).unwrap();
            let reader = thread::spawn(move || {
                let mut got = Vec::new();
                client.read_to_end(&mut got).unwrap();
                got
            });
            let (sent, result) = send_file(&mut server, &mut source, 2_500_000, rate, None);
            result.unwrap();
            drop(server);
            assert_eq!(sent, 2_500_000);
            assert!(
                reader.join().unwrap() == data[17..2_500_017],
                "rate {rate:?}"
            );
        }
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error_with_the_count_sent() {
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(b"0123456789").unwrap();
        for rate in [None, Some(1_000_000)] {
            let (mut server, _client) = socket_pair();
            source.seek(SeekFrom::Start(0)).unwrap();
            let (sent, result) = send_file(&mut server, &mut source, 20, rate, None);
            assert!(result.is_err(), "rate {rate:?}");
            assert!(sent <= 10);
        }
    }

    #[test]
    fn a_client_that_takes_nothing_is_dropped_as_too_slow() {
        // Far more than the socket buffers hold, so the writes must wait for the client.
        let source = tempfile::tempfile().unwrap();
        source.set_len(64 * 1024 * 1024).unwrap();
        let (mut server, _client) = socket_pair();
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(200),
        };
        let started = Instant::now();
        let (sent, result) = send_file(
            &mut server,
            &mut source.try_clone().unwrap(),
            64 * 1024 * 1024,
            None,
            Some(floor),
        );
        assert!(
            matches!(result, Err(SendError::TooSlow { .. })),
            "{result:?} after {sent} bytes"
        );
        assert!(sent < 64 * 1024 * 1024);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn our_own_throttle_never_counts_against_the_client() {
        // Throttled to 20 kB/s, far below a floor of 1 MB/s: only waiting on the socket counts,
        // and a client that reads at once never makes the server wait.
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(&[7u8; 30_000]).unwrap();
        source.seek(SeekFrom::Start(0)).unwrap();
        let (mut server, mut client) = socket_pair();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got.len()
        });
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(100),
        };
        let (sent, result) = send_file(&mut server, &mut source, 30_000, Some(20_000), Some(floor));
        assert!(result.is_ok(), "{result:?}");
        drop(server);
        assert_eq!((sent, reader.join().unwrap()), (30_000, 30_000));
    }

    #[test]
    fn the_floor_asks_its_rate_over_its_window() {
        let floor = RateFloor {
            bytes_per_sec: 1024,
            window: Duration::from_secs(10),
        };
        assert_eq!(floor.min_bytes(), 10_240);
        let tiny = RateFloor {
            bytes_per_sec: u64::MAX,
            window: Duration::from_secs(u64::MAX / 1000),
        };
        assert_eq!(tiny.min_bytes(), u64::MAX);
    }
}
