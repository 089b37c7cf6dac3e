//! The announcer: tells the LAN, by UDP broadcast, which chunks this peer holds.
//!
//! # Layout
//! - [`run`] is the timer loop, the whole program once `main` has parsed flags, settled the
//!   username ([`prompt::resolve`]) and bound the UDP socket: it reads the chunk store
//!   (`DIR/temp`), announces at once, then every [`Config::interval`], and also promptly
//!   whenever the store changes (its folders' stamps looked at every [`STORE_POLL`], then only
//!   what changed read again: [`shared::store::SnapshotWatch`]; the files served in place
//!   looked at every [`Config::watch`]), so a freshly downloaded chunk or a newly shared file
//!   is offered within a fraction of a second rather than a minute, and a peer sharing 10,000
//!   files costs next to nothing while nothing changes; a content no longer held (unshared, removed) is *withdrawn* at once
//!   ([`shared::protocol::Kind::Withdraw`], sent three times [`WITHDRAW_REPEAT`] apart), so
//!   listeners drop it without waiting for expiry. The offers of `DIR/sends.txt` (`downloader
//!   send`) whose content the chunk server has hashed (unlisted) are sent as offer datagrams
//!   ([`shared::protocol::Kind::Offer`]): three times at once when one appears, then with
//!   every announcement and every answer to a query, until it expires. On shutdown it says goodbye, so listeners
//!   forget it at once.
//! - `announcer` holds the state and does the sending: announce, answer, goodbye.
//! - [`prompt`] settles the name announced (flag, stored file, terminal, host name); the rules
//!   a name must follow are [`shared::username`]'s.
//! - [`ears`] hears queries (and legacy peers) directly; [`budget`] bounds the answers to
//!   queries.
//! - [`shape`] decides how the store is announced: inline (the chunk names in the datagrams)
//!   or, beyond a few datagrams, compact (one datagram naming the catalog, which our listeners
//!   fetch from the chunk server); [`legacy`] when legacy peers still get the chunk names of a
//!   compact announcement (`--legacy-list`), and paces them over the interval.
//!
//! Each announcement is packed by [`Announcement::pack`](shared::protocol::Announcement::pack) into datagrams of at most
//! [`shared::MAX_ANNOUNCE_DATAGRAM`] bytes, each a complete legacy-readable message, and every
//! datagram goes to every target: the broadcast addresses, the `--peer` addresses and those of
//! `DIR/peers.txt` (re-read when it changes; see [`shared::peers`]). Every datagram carries
//! this run's [`Config::instance`], so a listener that sees a new instance from our address
//! knows we restarted and drops what the previous run announced.
//!
//! The announcer also answers *queries*: a starting listener elsewhere broadcasts one, and
//! [`run`], every [`QUERY_POLL`], sends the whole announcement to its source address by
//! unicast. That is what lets a new peer see the network in well under a second instead of
//! waiting up to an interval. A query arrives two ways: the announcer hears it itself, on
//! sockets bound to the broadcast addresses it announces to ([`ears`]), whichever of this
//! peer's programs run and in whatever order they started; and this peer's listener, which
//! also hears the queries sent to it by unicast, leaves a file in `DIR/.queries/` naming the
//! querier's address ([`shared::queries::QueryBox`]). A querier is answered once per
//! [`shared::QUERY_ANSWER_GAP`] however many ways its query came. Answers are bounded
//! ([`budget`]): a few per querying address, and [`Config::answer_rate`] bytes per second in
//! all, so forged queries cannot turn this peer into an amplifier aimed at someone else.
//!
//! The port announced is [`Config::chunk_port`]: a fixed one (`--chunk-port`), or, by default,
//! the one the folder's chunk server recorded when it started ([`shared::instance`]), looked at
//! every [`SERVER_POLL`]. While no chunk server runs for the folder the announcer sends
//! nothing and answers no query (and says goodbye when its server goes away), so listeners never
//! list files that nobody can serve.
//!
//! This crate owns no wire format and no store layout: both are in `shared`. It only decides
//! *when* and *where* to announce and copes with the network saying no.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

mod announcer;
pub mod budget;
mod config;
pub mod ears;
pub mod legacy;
pub mod prompt;
pub mod shape;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use shared::instance::UsernameRecord;
use shared::peer_dir::PeerDir;
use shared::peers::{PeersFile, PEERS_POLL};
use shared::queries::QueryBox;
use shared::sends::SENDS_POLL;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, StoreError};
use shared::trust::{Gate, Trust, TrustError, Wire};

use announcer::{interval_secs, list, Announcer};
pub use config::{new_instance_id, ChunkPort, Config, DEFAULT_WATCH};
use ears::Ears;

/// How often queries are looked for (heard ones and `DIR/.queries/`): a query is answered
/// within about this long after it arrived, well inside the one second a starting peer waits
/// for.
pub const QUERY_POLL: Duration = Duration::from_millis(100);

/// How often the store's folders are looked at (one `stat` each) for a change, which is then
/// read (only what changed: [`shared::store::SnapshotWatch`]) and announced at once: a file
/// shared or unshared reaches the listeners well within a second. The files served in place
/// are looked at every [`Config::watch`].
pub const STORE_POLL: Duration = Duration::from_millis(50);

/// Least time between two announcements made because the store changed: a single change is
/// announced at once, a store changing all the time (a batch of files being hashed) twice a
/// second at most.
pub const CHANGE_ANNOUNCE_GAP: Duration = Duration::from_millis(500);

/// How often the chunk server's record is read again (with [`ChunkPort::Recorded`]): a chunk
/// server started, restarted on another port or stopped is followed within a second.
pub const SERVER_POLL: Duration = Duration::from_secs(1);

/// Time between the sends of one withdrawal (three in all), so that one lost datagram does not
/// leave an unshared file listed until it expires.
pub const WITHDRAW_REPEAT: Duration = Duration::from_millis(300);

/// Longest the loop sleeps before looking at the shutdown flag again.
const TICK: Duration = Duration::from_millis(100);

/// How long a blocked send may take before it counts as failed; UDP sends rarely block, but a
/// full socket buffer must not stall the loop (and shutdown) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the announcer stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chunk store could not be opened (or created).
    #[error("cannot open the chunk store")]
    OpenStore(#[source] StoreError),
    /// The network key or the identity could not be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The system's random source failed.
    #[error("cannot start sealing datagrams")]
    Random(#[source] std::io::Error),
}

/// Announces the chunk store of `config.dir` through `socket` until `shutdown` is triggered,
/// then sends a goodbye to every target; answers the queries heard on `query_sockets`
/// ([`ears::bind_query_sockets`]; none is fine: then only those the listener passes on).
///
/// The socket is already bound (and, for broadcast targets, has `SO_BROADCAST`). A send that
/// fails, or a store, peers file or query folder that cannot be read for a moment, is logged
/// and the loop carries on.
///
/// # Errors
/// [`Error::OpenStore`] when `DIR/temp` cannot be opened or created.
pub fn run(
    socket: UdpSocket,
    query_sockets: Vec<UdpSocket>,
    config: Config,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let peer_dir = PeerDir::new(&config.dir);
    let store = ChunkStore::open(peer_dir.temp()).map_err(Error::OpenStore)?;
    let trust = Trust::load(&config.dir)?;
    log::info!("{}", trust.describe());
    let wire = Wire::of(&trust).map_err(Error::Random)?;
    // Best effort: without it a send can block, which only delays the loop.
    let _ = socket.set_write_timeout(Some(SEND_TIMEOUT));
    log::info!(
        "announcing {} as {:?} (instance {}) to {}{} every {}s ({})",
        store.root().display(),
        config.username,
        config.instance,
        list(&config.targets),
        if config.peers.is_empty() {
            String::new()
        } else {
            format!(" and peers {}", list(&config.peers))
        },
        interval_secs(config.interval),
        config.chunk_port,
    );
    // The listener tells the offers meant for this peer by the name announced, which
    // username.txt does not always hold (a --username flag, the host name).
    let _username_record = UsernameRecord::of_this_process(&config.username)
        .write(&peer_dir)
        .map_err(|e| {
            log::warn!(
                "cannot record the username in {}: {e}; the listener takes username.txt's",
                UsernameRecord::path(&peer_dir).display()
            );
        })
        .ok();
    let peers_file = PeersFile::new(peer_dir.peers_file(), config.peer_port);
    let queries = QueryBox::new(peer_dir.queries_dir());
    // Only authenticated queries are answered on a private network.
    let ears = Ears::new(query_sockets, Gate::new(trust.key.as_ref(), false));
    let heard_on = ears.addresses();
    if heard_on.is_empty() {
        log::info!("hearing no query directly: answering those our listener passes on");
    } else {
        log::info!(
            "hearing queries on {} (and those our listener passes on)",
            heard_on.join(", ")
        );
    }
    let mut announcer = Announcer::new(socket, config, store, peers_file, queries, ears, wire);
    announcer.look_around();
    announcer.refresh_server();
    announcer.announce();
    let mut next_announce = Instant::now() + announcer.config.interval;
    // When the store last made us announce, and whether the next announcement is for that.
    let mut last_change_announce: Option<Instant> = None;
    let mut for_change = false;
    let mut next_files = Instant::now() + announcer.config.watch;
    let mut next_server = Instant::now() + SERVER_POLL;
    let mut next_store = Instant::now() + STORE_POLL;
    let mut next_withdraw = Instant::now();
    let mut next_peers = Instant::now() + PEERS_POLL;
    let mut next_queries = Instant::now();
    let mut next_sends = Instant::now();
    loop {
        let now = Instant::now();
        let look_at_files = now >= next_files;
        if look_at_files || (now >= next_store && announcer.store_may_have_changed()) {
            let started = Instant::now();
            if announcer.refresh(look_at_files) {
                log::debug!("chunk store changed: announcing now");
                // At once, unless a change was announced a moment ago: while a batch of files
                // is being hashed the store changes all the time.
                let at = last_change_announce.map_or(now, |t| (t + CHANGE_ANNOUNCE_GAP).max(now));
                if at < next_announce {
                    next_announce = at;
                    for_change = true;
                }
            }
            // A store changing all the time (a batch of files being hashed) is read again
            // at most a fifth of the time.
            next_store = Instant::now() + STORE_POLL.max(started.elapsed() * 4);
            if look_at_files {
                next_files = Instant::now() + announcer.config.watch;
            }
        } else if now >= next_store {
            next_store = now + STORE_POLL;
        }
        if now >= next_server {
            next_server = now + SERVER_POLL;
            if announcer.refresh_server() {
                next_announce = now;
            }
        }
        if now >= next_peers {
            next_peers = now + PEERS_POLL;
            announcer.poll_peers();
        }
        if now >= next_sends {
            next_sends = now + SENDS_POLL;
            if announcer.poll_sends() {
                // A new offer goes out at once (then twice more, like a withdrawal).
                next_withdraw = now;
            }
        }
        if now >= next_announce {
            announcer.announce();
            if std::mem::take(&mut for_change) {
                last_change_announce = Some(Instant::now());
            }
            next_announce = Instant::now() + announcer.config.interval;
            next_withdraw = Instant::now() + WITHDRAW_REPEAT;
        } else if now >= next_withdraw && (announcer.is_withdrawing() || announcer.has_new_offers())
        {
            announcer.withdraw();
            announcer.send_new_offers();
            next_withdraw = Instant::now() + WITHDRAW_REPEAT;
        }
        if now >= next_queries {
            next_queries = now + QUERY_POLL;
            announcer.answer_queries();
        }
        announcer.pace_legacy();
        // A withdrawal or a new offer still to repeat wakes the loop too.
        let withdraw_at = Some(next_withdraw)
            .filter(|_| announcer.is_withdrawing() || announcer.has_new_offers());
        let wake = next_files
            .min(next_server)
            .min(next_store)
            .min(withdraw_at.unwrap_or(next_announce))
            .min(next_announce)
            .min(next_peers)
            .min(next_sends)
            .min(next_queries)
            .min(announcer.next_legacy().unwrap_or(next_announce));
        if shutdown.sleep(wake.saturating_duration_since(Instant::now()).min(TICK)) {
            break;
        }
    }
    announcer.goodbye();
    announcer.withdraw_catalog();
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn default_config_announces_to_port_5000_every_minute() {
        let config = Config::default();
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.chunk_port, ChunkPort::Fixed(5001));
        assert!(!config.targets.is_empty());
        assert!(config.targets.iter().all(|t| t.port() == 5000));
        assert!(config.peers.is_empty());
        assert_eq!(config.peer_port, 5000);
    }

    #[test]
    fn instance_ids_are_16_hex_digits_and_differ_between_runs() {
        let ids: HashSet<String> = (0..100).map(|_| new_instance_id()).collect();
        assert_eq!(ids.len(), 100);
        for id in &ids {
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(Config::default().instance, Config::default().instance);
    }
}
