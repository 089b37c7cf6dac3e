//! One connection: read one request, answer it from the chunk store, close.
//!
//! Three requests exist (see [`shared::protocol::Request`]):
//! - a legacy chunk request, answered with the chunk's raw bytes and a close, or a bare close
//!   when the name is invalid or the chunk missing (legacy clients know no error reply);
//! - our chunk request, answered with a [`Response`] header and then exactly the announced bytes
//!   from the requested offset;
//! - our manifest request, answered with a header only;
//! - our catalog request, answered with a header and the catalog's bytes (`catalog`).
//!
//! Every outcome is logged as one `served` or `refused` event ([`Event`]) with the fields
//! `docs/ARCHITECTURE.md` lists, its `outcome` a word of [`Outcome`].
//!
//! # Layout
//! - here: [`handle_connection`], the life of one connection, and the `served` event;
//! - `gate`: who is answered at all: the encrypted channel of a private network, the allow
//!   list, and plaintext refused there unless `--allow-legacy` ([`Gate`]);
//! - `refusal`: why a request gets no data, the `refused` event and the protocol's error reply;
//! - `prepare`: checking a request against the store and opening what it names (the only way
//!   a request name reaches the file system);
//! - `send`: sending a body (by `sendfile` to another host in plaintext), throttled, with the
//!   slow-reader floor ([`RateFloor`]); a file served in place that changed meanwhile ends it
//!   with a reset;
//! - `catalog`: the catalog request, answered with the catalog the announcer published.
//!
//! Hostile clients are bounded at each step: the whole request must arrive within the request
//! deadline, counted from accept; an answer waits at most [`SLOT_WAIT`] for a transfer slot
//! ([`crate::admission`]); and a client that reads an answer slower than the [`RateFloor`]
//! is dropped (`too_slow`). No request makes the server hash a chunk it hashed before
//! ([`DigestCache`]).
//!
//! This module neither accepts connections nor counts them: `server` and [`crate::admission`]
//! do. Failures here concern one client and are logged, never returned.

mod catalog;
mod gate;
mod prepare;
mod refusal;
mod send;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::connection::Connection;
use shared::digest::Digest;
use shared::events::{Event, Outcome};
use shared::peer_dir::PeerDir;
use shared::protocol::{Request, Response};
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::trust::PeerId;
use shared::IO_IDLE_TIMEOUT;

use self::catalog::serve_catalog;
pub(crate) use self::gate::Gate;
use self::prepare::{open_chunk, prepare_chunk, prepare_manifest, FileVersion};
pub(crate) use self::refusal::log_refused;
use self::refusal::{loggable, read_refusal, Refusal};
pub(crate) use self::send::LocalCopies;
pub(crate) use self::send::RateFloor;
use self::send::{send_file, SendError};
use crate::admission::Ticket;
use crate::digest_cache::DigestCache;

/// After answering, how long to wait for the client to close before we do. Closing with unread
/// request bytes in the socket makes the kernel send a reset, which can destroy the answer
/// before the client reads it; a well-behaved client closes at once on our end of stream.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// At most this much is read and discarded from a client while closing.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The read buffer of a connection: a request is at most [`shared::MAX_REQUEST_BYTES`] (4 KiB),
/// read through a buffer of this size in one or two reads. Each open connection holds one, so it
/// is kept small (hundreds of clients at once).
const REQUEST_READ_BUFFER: usize = 4096;

/// How long a complete request waits for a transfer slot before it is refused as `busy`.
/// Shorter than the clients' idle timeout ([`IO_IDLE_TIMEOUT`]), so they get the refusal
/// rather than time out.
const SLOT_WAIT: Duration = Duration::from_secs(10);

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
    /// Who is answered: the network key, `--allow-legacy`, the allow list.
    pub(crate) gate: Gate,
    /// The copies to clients on this host under way (the others get `sendfile`).
    pub(crate) local_copies: LocalCopies,
    /// The peer folder, where the announcer publishes the catalog it announces.
    pub(crate) peer_dir: PeerDir,
}

/// Logs one `served` event: what was sent to whom, how much, how fast, and how it ended.
fn log_served(
    name: &ChunkName,
    (peer, id): (SocketAddr, Option<PeerId>),
    proto: &str,
    offset: Option<u64>,
    sent: u64,
    started: Instant,
    result: &Result<(), SendError>,
) {
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(SendError::TooSlow { .. }) => Outcome::TooSlow,
        Err(SendError::Io(_) | SendError::Changed) => Outcome::Error,
    };
    let mut event = Event::new("served").with("chunk", name).with("peer", peer);
    // On a private network: the client's proved peer ID.
    if let Some(id) = id {
        event = event.with("id", id);
    }
    event = event.with("proto", proto);
    // A resumed transfer starts mid-chunk; say where, so the log shows what was re-sent.
    if let Some(offset) = offset {
        event = event.with("offset", offset);
    }
    event = event
        .with("bytes", sent)
        .with("ms", started.elapsed().as_millis())
        .with("outcome", outcome);
    if let Err(e @ (SendError::TooSlow { .. } | SendError::Changed)) = result {
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
    let deadline = accepted + ctx.request_timeout;
    let transport = match ctx.gate.open(stream, deadline) {
        Ok(transport) => transport,
        Err(refusal) => {
            ctx.gate.log(peer, None, &refusal);
            return;
        }
    };
    let mut conn =
        match Connection::with_read_buffer(transport, ctx.request_timeout, REQUEST_READ_BUFFER) {
            Ok(conn) => conn,
            Err(e) => {
                let reason = format!("cannot set up the connection: {e}");
                log_refused(peer, Outcome::Error, None, &reason);
                return;
            }
        };
    let request = match conn.read_request_until(deadline) {
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
    let admitted = match &request {
        // A list every member reads in the announcements anyway: not bound by the allow list.
        Request::Catalog { .. } => ctx.gate.admit_listing(conn.peer_id()),
        _ => ctx.gate.admit(conn.peer_id()),
    };
    if let Err(refusal) = admitted {
        match &request {
            // All a legacy client understands: the close (a missing chunk, to it).
            Request::LegacyChunk { filename } => ctx.gate.log(peer, Some(filename), &refusal),
            Request::Chunk { filename, .. } => {
                ctx.gate.log(peer, Some(filename), &refusal);
                reply_error(&mut conn, peer, &refusal);
            }
            Request::Manifest { .. } | Request::Catalog { .. } => {
                ctx.gate.log(peer, None, &refusal);
                reply_error(&mut conn, peer, &refusal);
            }
        }
        close(&mut conn);
        return;
    }
    if !ticket.start_transfer(Instant::now() + SLOT_WAIT, &ctx.shutdown) {
        refuse_busy(&mut conn, peer, &request, &ctx.shutdown);
        close(&mut conn);
        return;
    }
    transferring.store(true, Ordering::SeqCst);
    let timeouts = conn
        .set_read_timeout(IO_IDLE_TIMEOUT)
        .and_then(|()| conn.stream().set_write_timeout(Some(IO_IDLE_TIMEOUT)));
    if let Err(e) = timeouts {
        let reason = format!("cannot set socket timeouts: {e}");
        log_refused(peer, Outcome::Error, None, &reason);
        return;
    }
    let started = Instant::now();
    let result = match request {
        Request::LegacyChunk { filename } => serve_legacy(&mut conn, peer, &filename, ctx, started),
        Request::Chunk {
            filename,
            content_sha256,
            offset,
            length,
        } => serve_chunk(
            &mut conn,
            peer,
            &filename,
            (content_sha256, offset, length),
            ctx,
            started,
        ),
        Request::Manifest {
            content,
            content_sha256,
        } => {
            serve_manifest(&mut conn, peer, &content, content_sha256, ctx);
            Ok(())
        }
        Request::Catalog { sha256 } => {
            serve_catalog(&mut conn, peer, sha256, ctx);
            Ok(())
        }
    };
    // A client too slow, or sent bytes of a file that changed meanwhile, is reset: it must
    // not take what it got for a whole answer.
    if matches!(result, Err(SendError::TooSlow { .. } | SendError::Changed)) {
        abort(&conn);
    } else {
        close(&mut conn);
    }
}

/// Refuses a request that found no transfer slot in time (or came as the server stops), in
/// the manner its protocol knows: a legacy client only sees the close.
fn refuse_busy(conn: &mut Connection, peer: SocketAddr, request: &Request, shutdown: &Shutdown) {
    let reason = if shutdown.is_triggered() {
        "busy: the server is shutting down".to_owned()
    } else {
        format!("busy: no transfer slot freed within {SLOT_WAIT:?}")
    };
    let refusal = Refusal::new(Outcome::Busy, reason);
    match request {
        Request::LegacyChunk { filename } => {
            log_refused(peer, refusal.outcome, Some(filename), &refusal.reason);
        }
        Request::Chunk { filename, .. } => refuse_p2p(conn, peer, Some(filename), &refusal),
        Request::Manifest { .. } | Request::Catalog { .. } => {
            refuse_p2p(conn, peer, None, &refusal)
        }
    }
}

/// Answers our chunk request (of content `content_sha256`, `length` bytes from `offset`): the
/// header, then the bytes; or an error reply.
fn serve_chunk(
    conn: &mut Connection,
    peer: SocketAddr,
    filename: &str,
    (content_sha256, offset, length): (Option<Digest>, u64, Option<u64>),
    ctx: &ServeContext,
    started: Instant,
) -> Result<(), SendError> {
    let mut chunk = match prepare_chunk(
        &ctx.store,
        &ctx.digests,
        &ctx.shutdown,
        filename,
        content_sha256,
        offset,
        length,
    ) {
        Ok(chunk) => chunk,
        Err(refusal) => {
            refuse_p2p(conn, peer, Some(filename), &refusal);
            return Ok(());
        }
    };
    // Held until the body is sent.
    let path = ctx.local_copies.choose(peer.ip());
    let (sent, result) = match conn.write_response(&chunk.header) {
        Ok(()) => send_file(
            conn.stream(),
            &mut chunk.file,
            chunk.length,
            path.path,
            (ctx.max_rate, ctx.min_rate),
        ),
        Err(e) => (0, Err(SendError::Io(e))),
    };
    let result = result.and_then(|()| unchanged(&chunk.file, chunk.version));
    log_served(
        &chunk.name,
        (peer, conn.peer_id()),
        "p2p",
        Some(offset),
        sent,
        started,
        &result,
    );
    result
}

/// After a send: [`SendError::Changed`] when `file` is no longer the `version` its digest
/// describes (a file served in place, rewritten while it was sent).
fn unchanged(file: &std::fs::File, version: FileVersion) -> Result<(), SendError> {
    match version.still_in(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(SendError::Changed),
        Err(e) => Err(SendError::Io(e)),
    }
}

/// Answers our manifest request: the manifest as a header line, or an error reply. A sent
/// manifest is logged at debug level only: `served` events count chunks.
fn serve_manifest(
    conn: &mut Connection,
    peer: SocketAddr,
    content: &str,
    content_sha256: Option<Digest>,
    ctx: &ServeContext,
) {
    match prepare_manifest(&ctx.store, content, content_sha256) {
        Ok(manifest) => {
            let size = manifest.size;
            match conn.write_response(&Response::Manifest(manifest)) {
                Ok(()) => log::debug!("sent the manifest of {content} ({size} bytes) to {peer}"),
                Err(e) => log::debug!("cannot send the manifest of {content} to {peer}: {e}"),
            }
        }
        Err(refusal) => {
            let refusal = Refusal {
                reason: format!("manifest of {}: {}", loggable(content), refusal.reason),
                ..refusal
            };
            refuse_p2p(conn, peer, None, &refusal);
        }
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

/// Refuses our request: the `refused` event, then the protocol's error reply.
fn refuse_p2p(conn: &mut Connection, peer: SocketAddr, chunk: Option<&str>, refusal: &Refusal) {
    log_refused(peer, refusal.outcome, chunk, &refusal.reason);
    reply_error(conn, peer, refusal);
}

/// The protocol's error reply for `refusal`.
fn reply_error(conn: &mut Connection, peer: SocketAddr, refusal: &Refusal) {
    if let Err(e) = conn.write_response(&refusal.response()) {
        log::debug!("cannot send an error reply to {peer}: {e}");
    }
}

/// Answers a legacy chunk request: the raw bytes of the whole chunk, or (the legacy protocol
/// has no error reply) nothing but the close.
fn serve_legacy(
    conn: &mut Connection,
    peer: SocketAddr,
    filename: &str,
    ctx: &ServeContext,
    started: Instant,
) -> Result<(), SendError> {
    let name = match ChunkName::parse(filename) {
        Ok(name) => prepare::resolve(&ctx.store, name),
        Err(e) => {
            let reason = format!("invalid chunk name: {e}");
            log_refused(peer, Outcome::BadRequest, Some(filename), &reason);
            return Ok(());
        }
    };
    match open_chunk(&ctx.store, &name) {
        Ok((mut chunk, _)) => {
            // Held until the body is sent.
            let path = ctx.local_copies.choose(peer.ip());
            let (sent, result) = send_file(
                conn.stream(),
                &mut chunk.file,
                chunk.len,
                path.path,
                (ctx.max_rate, ctx.min_rate),
            );
            let result = result.and_then(|()| unchanged(&chunk.file, chunk.version));
            let who = (peer, conn.peer_id());
            log_served(&name, who, "legacy", None, sent, started, &result);
            result
        }
        Err(refusal) => {
            log_refused(peer, refusal.outcome, Some(filename), &refusal.reason);
            Ok(())
        }
    }
}
