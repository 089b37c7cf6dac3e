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
//! store's path functions, so no request can name a file outside `temp/`.
//!
//! This module neither accepts connections nor limits how many run at once: [`crate::run`] does.
//! Failures here concern one client and are logged, never returned.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shared::chunk::{chunk_ranges, validate_content_name, ChunkName};
use shared::connection::{Connection, ConnectionError};
use shared::digest::Digest;
use shared::events::Event;
use shared::protocol::{ErrorCode, Manifest, Request, Response};
use shared::store::{ChunkStore, Origin};
use shared::{IO_IDLE_TIMEOUT, REQUEST_TIMEOUT};

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

/// What serving one connection needs, shared by every handler thread.
#[derive(Debug, Clone)]
pub(crate) struct ServeContext {
    /// The chunk store; handlers only read from it.
    pub(crate) store: ChunkStore,
    /// Per-connection send rate in bytes per second; `None` for as fast as possible.
    pub(crate) max_rate: Option<u64>,
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
            Outcome::Ok | Outcome::Timeout | Outcome::Empty | Outcome::Error => ErrorCode::Internal,
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
        ConnectionError::Timeout(_) => (Outcome::Timeout, err.to_string()),
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

fn log_refused(peer: SocketAddr, outcome: Outcome, chunk: Option<&str>, reason: &str) {
    let mut event = Event::new("refused")
        .with("peer", peer)
        .with("outcome", outcome);
    if let Some(chunk) = chunk {
        event = event.with("chunk", loggable(chunk));
    }
    log::info!("{}", event.with("reason", reason));
}

fn log_served(
    name: &ChunkName,
    peer: SocketAddr,
    proto: &str,
    offset: Option<u64>,
    sent: u64,
    started: Instant,
    result: &io::Result<()>,
) {
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    };
    let mut event = Event::new("served")
        .with("chunk", name)
        .with("peer", peer)
        .with("proto", proto);
    // A resumed transfer starts mid-chunk; say where, so the log shows what was re-sent.
    if let Some(offset) = offset {
        event = event.with("offset", offset);
    }
    log::info!(
        "{}",
        event
            .with("bytes", sent)
            .with("ms", started.elapsed().as_millis())
            .with("outcome", outcome)
    );
    if let Err(e) = result {
        log::debug!("sending {name} to {peer} stopped after {sent} bytes: {e}");
    }
}

/// Serves one accepted connection to the end. `busy` is set once a valid request has been read,
/// so that shutdown can tell transfers in progress from clients that have not asked anything.
pub(crate) fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &ServeContext,
    busy: &AtomicBool,
) {
    let mut conn = match Connection::new(stream, REQUEST_TIMEOUT) {
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
    let request = match conn.read_request() {
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
    busy.store(true, Ordering::SeqCst);
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
    match request {
        Request::LegacyChunk { filename } => {
            serve_legacy(&mut conn, peer, &filename, ctx, started);
        }
        Request::Chunk {
            filename,
            content_sha256,
            offset,
        } => match prepare_chunk(&ctx.store, &filename, content_sha256, offset) {
            Ok(mut chunk) => {
                let (sent, result) = match conn.write_response(&chunk.header) {
                    Ok(()) => send_file(conn.stream(), &mut chunk.file, chunk.length, ctx.max_rate),
                    Err(e) => (0, Err(e)),
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
            }
            Err(refusal) => refuse_p2p(&mut conn, peer, Some(&filename), &refusal),
        },
        Request::Manifest {
            content,
            content_sha256,
        } => match prepare_manifest(&ctx.store, &content, content_sha256) {
            Ok(manifest) => {
                let size = manifest.size;
                match conn.write_response(&Response::Manifest(manifest)) {
                    Ok(()) => {
                        log::debug!("sent the manifest of {content} ({size} bytes) to {peer}")
                    }
                    Err(e) => log::debug!("cannot send the manifest of {content} to {peer}: {e}"),
                }
            }
            Err(refusal) => {
                let refusal = Refusal {
                    reason: format!("manifest of {}: {}", loggable(&content), refusal.reason),
                    ..refusal
                };
                refuse_p2p(&mut conn, peer, None, &refusal);
            }
        },
    }
    close(&mut conn);
}

/// Closes gracefully: end of stream first, then a short wait for the client to close, reading
/// whatever it still sends, so the kernel does not answer with a reset.
fn close(conn: &mut Connection) {
    conn.shutdown_write();
    if conn.set_read_timeout(CLOSE_LINGER).is_ok() {
        conn.drain(DRAIN_LIMIT);
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
) {
    let name = match ChunkName::parse(filename) {
        Ok(name) => name,
        Err(e) => {
            let reason = format!("invalid chunk name: {e}");
            log_refused(peer, Outcome::BadRequest, Some(filename), &reason);
            return;
        }
    };
    match open_chunk(&ctx.store, &name) {
        Ok((mut file, size)) => {
            let (sent, result) = send_file(conn.stream(), &mut file, size, ctx.max_rate);
            log_served(&name, peer, "legacy", None, sent, started, &result);
        }
        Err(refusal) => log_refused(peer, refusal.outcome, Some(filename), &refusal.reason),
    }
}

/// Opens a complete chunk of the store; returns it with its length.
fn open_chunk(store: &ChunkStore, name: &ChunkName) -> Result<(File, u64), Refusal> {
    let not_found = || Refusal::new(Outcome::NotFound, format!("no chunk {name} here"));
    // A download whose whole file is not verified yet is not passed on: its manifest may be
    // forged.
    if !store.is_servable(name.content()) {
        return Err(not_found());
    }
    let file = match File::open(store.chunk_path(name)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => {
            return Err(Refusal::new(
                Outcome::Error,
                format!("cannot open chunk {name}: {e}"),
            ))
        }
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok((file, meta.len())),
        Ok(_) => Err(not_found()),
        Err(e) => Err(Refusal::new(
            Outcome::Error,
            format!("cannot read chunk {name}: {e}"),
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
    store: &ChunkStore,
    filename: &str,
    content_sha256: Option<Digest>,
    offset: u64,
) -> Result<PreparedChunk, Refusal> {
    let name = ChunkName::parse(filename)
        .map_err(|e| Refusal::new(Outcome::BadRequest, format!("invalid chunk name: {e}")))?;
    let (mut file, size) = open_chunk(store, &name)?;
    let stored = match store.load_manifest(name.content()) {
        Ok(stored) => stored,
        Err(e) if content_sha256.is_some() => {
            return Err(Refusal::new(Outcome::Error, e.to_string()));
        }
        Err(e) => {
            log::warn!("{e}; hashing {name} instead");
            None
        }
    };
    // A manifest that implies another length for this chunk does not describe the file (the
    // content is being replaced right now, for instance).
    let described = stored
        .as_ref()
        .map(|s| &s.manifest)
        .filter(|m| chunk_ranges(m.size)[name.position()].len() == size);
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
        None => {
            Digest::of_reader(&mut file)
                .map_err(|e| Refusal::new(Outcome::Error, format!("cannot read {name}: {e}")))?
                .0
        }
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
    let stored = store
        .load_manifest(content)
        .map_err(|e| Refusal::new(Outcome::Error, e.to_string()))?
        .filter(|stored| stored.origin != Origin::Downloading)
        .ok_or_else(|| Refusal::new(Outcome::NotFound, "no such content here"))?;
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

/// Sends `length` bytes of `file`, from its current position, to `stream`, at most `max_rate`
/// bytes per second when given. Returns how many bytes were handed to the socket (a lower bound
/// when the transfer failed) and how the transfer ended.
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
) -> (u64, io::Result<()>) {
    let rate = max_rate.filter(|&r| r > 0);
    // Throttled: about ten steps a second, so that the sleeps between them stay short.
    let step = match rate {
        Some(rate) => {
            usize::try_from(rate / 10).map_or(THROTTLE_BUFFER, |s| s.clamp(1, THROTTLE_BUFFER))
        }
        None => SEND_BUFFER,
    };
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
            return (sent, Err(e));
        }
        if let Err(e) = stream.write_all(&buf[..want]) {
            return (sent, Err(e));
        }
        sent += want as u64;
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
            (ConnectionError::Timeout(REQUEST_TIMEOUT), "timeout"),
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
            let (sent, result) = send_file(&mut server, &mut source, 2_500_000, rate);
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
            let (sent, result) = send_file(&mut server, &mut source, 20, rate);
            assert!(result.is_err(), "rate {rate:?}");
            assert!(sent <= 10);
        }
    }
}
