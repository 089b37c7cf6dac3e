//! The announcer: tells the LAN, by UDP broadcast, which chunks this peer holds.
//!
//! # Layout
//! - [`run`] is the whole program once `main` has parsed flags, settled the username
//!   ([`username::resolve`]) and bound the UDP socket: it reads the chunk store (`DIR/temp`),
//!   announces at once, then every [`Config::interval`], and also promptly whenever the store
//!   changes (polled every [`Config::watch`]), so a freshly downloaded chunk is offered within a
//!   second rather than a minute.
//! - [`username`] chooses the name announced.
//!
//! Each announcement is packed by [`Announcement::pack`] into datagrams of at most
//! [`shared::MAX_ANNOUNCE_DATAGRAM`] bytes, each a complete legacy-readable message, and every
//! datagram goes to every target. This crate owns no wire format and no store layout: both are
//! in `shared`. It only decides *when* to announce and copes with the network saying no.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod username;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::peer_dir::PeerDir;
use shared::protocol::{Announcement, AnnouncementExt};
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Snapshot, StoreError};
use shared::{DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

/// Default of [`Config::watch`]: a new chunk is announced within about a second.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(1);

/// Longest the loop sleeps before looking at the shutdown flag again.
const TICK: Duration = Duration::from_millis(100);

/// How long a blocked send may take before it counts as failed; UDP sends rarely block, but a
/// full socket buffer must not stall the loop (and shutdown) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything [`run`] needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; chunks are read from its `temp/`.
    pub dir: PathBuf,
    /// The username announced.
    pub username: String,
    /// Where every datagram is sent: directed broadcast addresses in production, a test's
    /// socket in tests.
    pub targets: Vec<SocketAddr>,
    /// Time between periodic announcements; also announced (rounded up to whole seconds) so
    /// listeners know when to expire us.
    pub interval: Duration,
    /// TCP port of our chunk server, announced in the `p2p` extension.
    pub chunk_port: u16,
    /// How often the chunk store is checked for changes.
    pub watch: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            username: username::FALLBACK_USERNAME.to_owned(),
            targets: shared::net::broadcast_targets(DEFAULT_ANNOUNCE_PORT),
            interval: Duration::from_secs(DEFAULT_ANNOUNCE_INTERVAL_SECS),
            chunk_port: DEFAULT_CHUNK_PORT,
            watch: DEFAULT_WATCH,
        }
    }
}

/// Why the announcer stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chunk store could not be opened (or created).
    #[error("cannot open the chunk store")]
    OpenStore(#[source] StoreError),
}

/// Announces the chunk store of `config.dir` through `socket` until `shutdown` is triggered.
///
/// The socket is already bound (and, for broadcast targets, has `SO_BROADCAST`). A send that
/// fails, or a store that cannot be read for a moment, is logged and the loop carries on.
///
/// # Errors
/// [`Error::OpenStore`] when `DIR/temp` cannot be opened or created.
pub fn run(socket: UdpSocket, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let store = ChunkStore::open(PeerDir::new(&config.dir).temp()).map_err(Error::OpenStore)?;
    // Best effort: without it a send can block, which only delays the loop.
    let _ = socket.set_write_timeout(Some(SEND_TIMEOUT));
    log::info!(
        "announcing {} as {:?} to {} every {}s (chunk server port {})",
        store.root().display(),
        config.username,
        list(&config.targets),
        interval_secs(config.interval),
        config.chunk_port,
    );
    let mut announcer = Announcer::new(socket, config, store);
    announcer.refresh();
    announcer.announce();
    let mut next_announce = Instant::now() + announcer.config.interval;
    let mut next_watch = Instant::now() + announcer.config.watch;
    loop {
        let now = Instant::now();
        if now >= next_watch {
            next_watch = now + announcer.config.watch;
            if announcer.refresh() {
                log::debug!("chunk store changed: announcing now");
                next_announce = now;
            }
        }
        if now >= next_announce {
            announcer.announce();
            next_announce = Instant::now() + announcer.config.interval;
        }
        let wake = next_watch.min(next_announce);
        if shutdown.sleep(wake.saturating_duration_since(Instant::now()).min(TICK)) {
            break;
        }
    }
    log::info!("announcer stopped");
    Ok(())
}

/// The loop's state. Only [`run`]'s thread touches it.
struct Announcer {
    socket: UdpSocket,
    config: Config,
    store: ChunkStore,
    /// The last snapshot read successfully; what we announce.
    snapshot: Snapshot,
    /// The last store error warned about, so a lasting failure is logged once.
    store_error: Option<String>,
    /// The last send error warned about for each target, so a lasting failure is logged once.
    send_errors: HashMap<SocketAddr, String>,
    /// Chunks already reported as too big to announce.
    dropped: HashSet<ChunkName>,
}

impl Announcer {
    fn new(socket: UdpSocket, config: Config, store: ChunkStore) -> Self {
        Announcer {
            socket,
            config,
            store,
            snapshot: Snapshot::default(),
            store_error: None,
            send_errors: HashMap::new(),
            dropped: HashSet::new(),
        }
    }

    /// Re-reads the store; returns whether what we announce changed.
    fn refresh(&mut self) -> bool {
        match self.store.snapshot() {
            Ok(snapshot) => {
                if self.store_error.take().is_some() {
                    log::info!("chunk store {} readable again", self.store.root().display());
                }
                if snapshot == self.snapshot {
                    return false;
                }
                self.snapshot = snapshot;
                true
            }
            Err(e) => {
                let text = e.to_string();
                if self.store_error.as_ref() != Some(&text) {
                    log::warn!("{text}; announcing what was last read");
                    self.store_error = Some(text);
                }
                false
            }
        }
    }

    /// Sends the current snapshot to every target.
    fn announce(&mut self) {
        let ext = AnnouncementExt {
            instance: None,
            kind: Default::default(),
            v: shared::PROTOCOL_VERSION,
            port: self.config.chunk_port,
            interval: interval_secs(self.config.interval),
            contents: Default::default(),
        };
        let (datagrams, dropped) = Announcement::pack(
            &self.config.username,
            Some(&ext),
            &self.snapshot.chunks,
            &self.snapshot.metas,
        );
        for name in dropped {
            if !self.dropped.contains(&name) {
                log::warn!(
                    "chunk {name} cannot fit in one {}-byte datagram: not announced",
                    shared::MAX_ANNOUNCE_DATAGRAM
                );
                self.dropped.insert(name);
            }
        }
        for target in &self.config.targets {
            let result = datagrams
                .iter()
                .try_for_each(|d| self.socket.send_to(d, target).map(drop));
            match result {
                Ok(()) => {
                    if self.send_errors.remove(target).is_some() {
                        log::info!("sending to {target} works again");
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if self.send_errors.get(target) != Some(&text) {
                        log::warn!("cannot send announcement to {target}: {text}");
                        self.send_errors.insert(*target, text);
                    }
                }
            }
        }
        let contents: BTreeSet<&str> = self.snapshot.chunks.iter().map(|c| c.content()).collect();
        log::debug!(
            "announced {} chunks of {} contents in {} datagrams to {} targets",
            self.snapshot.chunks.len(),
            contents.len(),
            datagrams.len(),
            self.config.targets.len()
        );
    }
}

/// The interval as announced: whole seconds, rounded up, at least 1, so a listener never
/// expires us before our next announcement.
fn interval_secs(interval: Duration) -> u64 {
    let secs = interval.as_secs() + u64::from(interval.subsec_nanos() > 0);
    secs.max(1)
}

fn list(targets: &[SocketAddr]) -> String {
    let names: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_announced_in_whole_seconds_rounded_up() {
        assert_eq!(interval_secs(Duration::from_secs(60)), 60);
        assert_eq!(interval_secs(Duration::from_millis(1500)), 2);
        assert_eq!(interval_secs(Duration::from_millis(200)), 1);
        assert_eq!(interval_secs(Duration::ZERO), 1);
    }

    #[test]
    fn default_config_announces_to_port_5000_every_minute() {
        let config = Config::default();
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.chunk_port, 5001);
        assert!(!config.targets.is_empty());
        assert!(config.targets.iter().all(|t| t.port() == 5000));
    }
}
