//! The listener: hears peers' UDP announcements and keeps `DIR/tags.txt` up to date.
//!
//! # Layout
//! - [`run`] is the whole program once `main` has parsed flags and bound the two UDP sockets:
//!   it reloads `tags.txt`, writes it once, starts the reading threads and the main loop.
//! - `receive` is the reading threads, and [`intake`] what they let through: they drop what a
//!   source sends beyond its byte rate, and what the queue has no room for.
//! - `hearing` is the main loop: it decides what each datagram is, records announcements in
//!   the [`Index`], expires what peers stopped announcing and has `tags.txt` rewritten when
//!   what it shows changed.
//! - `query` sends the start-up query and passes the queries it hears on to this peer's
//!   announcer.
//! - `catalogs` decides which catalogs to fetch and when (a peer with many files announces a
//!   summary of its catalog, not its chunks); `fetch` fetches one from the peer's chunk server
//!   over TCP and checks it against the digest announced, on a thread of its own.
//! - `inbox` keeps `DIR/offers.txt`: the offers (`downloader send` elsewhere) heard for this
//!   peer's user, bounded, answered ones dropped; nothing of an offered content is fetched.
//! - [`index`] holds the pure logic (apply, expire, render) with an injected clock, and the
//!   limits that keep it small; [`writer`] writes `tags.txt` on a thread of its own, at a
//!   bounded rate.
//!
//! # Under a flood
//! A host on the LAN may send datagrams as fast as its link allows, each naming thousands of
//! invented chunks. The listener stays responsive because every stage is bounded: a source's
//! bytes per second ([`intake`]), what waits in the queue, the time one batch of datagrams may
//! take before the loop looks at shutdown and `tags.txt` again (`hearing::MAX_BATCH_TIME`), the cost
//! of one datagram (it touches only what it names), the size of the index ([`index::Limits`]),
//! and the rate `tags.txt` is written at ([`writer`]). An honest peer announcing meanwhile is
//! listed within a second. What the limits refuse is logged, at most once every
//! `hearing::LIMIT_LOG_GAP`.
//!
//! # Discovery at start-up
//! Peers announce once a minute, so a listener that only waited would show an empty network for
//! up to a minute. Instead, [`run`] starts by sending a *query* to its broadcast targets, its
//! `--peer`s and the peers of `DIR/peers.txt` (three times: UDP may drop one), from a socket
//! of its own on an ephemeral port, and keeps reading that socket too. Several listeners on
//! one host share the announce port, and a unicast answer to a shared port reaches only one of
//! them; the ephemeral port is this listener's alone.
//!
//! A broadcast query reaches the other peers' announcers, which hear it themselves (so a peer
//! whose listener is not running answers too), and their *listeners* (they own the announce
//! port). A listener that hears one asks its own peer's announcer to answer, through the peer
//! folder: it creates `DIR/.queries/<ip>_<port>` ([`shared::queries::QueryBox`]), which the
//! announcer turns into a unicast announcement to that address. That second path is kept
//! because a query sent by unicast (to a `--peer`) reaches only the listener; the announcer
//! answers a querier heard both ways once.
//!
//! The datagram's source address names the holder; nothing in the payload is trusted for that.
//! Any datagram, however malformed, is logged (at most once per source every
//! `hearing::MALFORMED_LOG_GAP`) and skipped: a listener shares its port with every legacy
//! implementation on the LAN and must outlive their mistakes. `tags.txt` itself, its format and
//! its locking, belong to `shared::tags`.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

mod catalogs;
mod config;
mod fetch;
mod hearing;
mod inbox;
pub mod index;
pub mod intake;
mod query;
mod receive;
pub mod writer;

use std::io;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use shared::peer_dir::PeerDir;
use shared::shutdown::Shutdown;
use shared::tags::{Proto, TagsError, TagsIndex};
use shared::trust::{Trust, TrustError, Wire};

pub use config::Config;
use hearing::Hearing;
pub use index::Index;
use intake::QueuedBytes;
use receive::{StopOnDrop, RECV_TIMEOUT};
use writer::TagsWriter;

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer folder could not be created.
    #[error("cannot create the peer folder {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The socket could not be configured (timeouts).
    #[error("cannot configure the UDP socket")]
    Socket(#[source] io::Error),
    /// The thread that writes `tags.txt` could not be started.
    #[error("cannot start the thread that writes tags.txt")]
    Thread(#[source] io::Error),
    /// The first write of `tags.txt` failed: later ones would too.
    #[error("cannot write the index")]
    WriteTags(#[source] TagsError),
    /// The network key or the identity could not be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The system's random source failed.
    #[error("cannot start sealing queries")]
    Random(#[source] io::Error),
}

/// Listens on `socket` (the shared announce port) and `query_socket` (this listener's own
/// ephemeral port, which queries are sent from and answers arrive on) until `shutdown` is
/// triggered, keeping `config.dir/tags.txt` current.
///
/// An existing `tags.txt` is reloaded first (a file that does not parse is warned about and
/// replaced), then written at once so that it exists with its header while the listener runs.
/// Then the start-up query goes out (see the crate documentation). Malformed datagrams, failed
/// sends and later write failures are logged and the loop carries on. Once `shutdown` is
/// triggered, `run` returns within about two seconds whatever the state: the last write of
/// `tags.txt` is abandoned after [`writer::FINAL_WRITE_WAIT`].
///
/// # Errors
/// [`Error`] when the peer folder cannot be created, a socket cannot be configured or the
/// first write of `tags.txt` fails.
pub fn run(
    socket: UdpSocket,
    query_socket: UdpSocket,
    config: Config,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let peer = PeerDir::new(&config.dir);
    peer.create().map_err(|source| Error::CreateDir {
        path: peer.root().to_owned(),
        source,
    })?;
    for s in [&socket, &query_socket] {
        s.set_read_timeout(Some(RECV_TIMEOUT))
            .map_err(Error::Socket)?;
    }
    // Best effort: without it a send can block, which only delays the loop.
    let _ = query_socket.set_write_timeout(Some(RECV_TIMEOUT));
    let trust = Trust::load(&config.dir)?;
    log::info!("{}", trust.describe());
    if trust.is_private() && config.allow_legacy {
        log::warn!(
            "--allow-legacy: legacy peers are listed too; nothing authenticates what they announce"
        );
    }
    let wire = Wire::of(&trust).map_err(Error::Random)?;
    let path = peer.tags();
    let mut index = match TagsIndex::load(&path) {
        Ok(mut tags) => {
            // What an earlier run heard on another network (open, or before a key was
            // joined or left) is not believed on this one.
            tags.entries.retain(|e| {
                if trust.is_private() {
                    e.id.is_some() || (config.allow_legacy && e.proto == Proto::Legacy)
                } else {
                    e.id.is_none()
                }
            });
            if !tags.entries.is_empty() {
                log::info!(
                    "reloaded {} entries from {}",
                    tags.entries.len(),
                    path.display()
                );
            }
            Index::from_tags_with(&tags, config.limits)
        }
        Err(e) => {
            log::warn!("{e}; starting with an empty index");
            Index::with_limits(config.limits)
        }
    };
    if let Some(key) = &trust.key {
        match shared::trust::pins::load(&config.dir, &key.id()) {
            Ok(pins) => index = index.with_pins(pins),
            Err(e) => log::warn!(
                "cannot read {}: {e}; usernames are pinned afresh",
                shared::trust::pins::path_in(&config.dir).display()
            ),
        }
    }
    index.expire(Utc::now());
    let name = |s: &UdpSocket| {
        s.local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    };
    log::info!(
        "listening on {} (queries from {}); writing {}",
        name(&socket),
        name(&query_socket),
        path.display()
    );
    let writer = TagsWriter::start(path.clone()).map_err(Error::Thread)?;
    writer.submit(index.to_tags(Utc::now()));
    match writer.wait_outcome(&shutdown, writer::FIRST_WRITE_WAIT) {
        Some(Err(e)) => {
            writer.finish(Duration::ZERO);
            return Err(Error::WriteTags(e));
        }
        Some(Ok(n)) => log::debug!("wrote {n} entries to {}", path.display()),
        // Stopping already, or the write is stuck: a reader holding the lock, say. The
        // writer keeps at it; its outcome is checked in the loop.
        None if shutdown.is_triggered() => {}
        None => log::warn!(
            "{} not written after {:?} (is a reader holding its lock?): listening meanwhile",
            path.display(),
            writer::FIRST_WRITE_WAIT
        ),
    }

    let queued = QueuedBytes::default();
    let stop = Shutdown::new();
    std::thread::scope(|scope| {
        let sockets = [&socket, &query_socket];
        let receiver = receive::start(scope, sockets, &queued, config.source_rate, &stop);
        let _stop_readers = StopOnDrop(&stop);
        let mut hearing = Hearing::new(
            &config,
            &peer,
            index,
            writer,
            &queued,
            query::Querier::new(&query_socket, wire),
            &trust,
        );
        // The reading threads stop within one receive timeout of the loop's end.
        hearing.run(receiver, &shutdown);
    });
    log::info!("stopped");
    Ok(())
}
