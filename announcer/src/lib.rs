//! The announcer: tells the LAN, by UDP broadcast, which chunks this peer holds.
//!
//! # Layout
//! - [`run`] is the whole program once `main` has parsed flags, settled the username
//!   ([`username::resolve`]) and bound the UDP socket: it reads the chunk store (`DIR/temp`),
//!   announces at once, then every [`Config::interval`], and also promptly whenever the store
//!   changes (polled every [`Config::watch`]), so a freshly downloaded chunk is offered within a
//!   second rather than a minute. On shutdown it says goodbye, so listeners forget it at once.
//! - [`username`] chooses the name announced.
//!
//! Each announcement is packed by [`Announcement::pack`] into datagrams of at most
//! [`shared::MAX_ANNOUNCE_DATAGRAM`] bytes, each a complete legacy-readable message, and every
//! datagram goes to every target: the broadcast addresses, the `--peer` addresses and those of
//! `DIR/peers.txt` (re-read when it changes; see [`shared::peers`]). Every datagram carries
//! this run's [`Config::instance`], so a listener that sees a new instance from our address
//! knows we restarted and drops what the previous run announced.
//!
//! The announcer also answers *queries*: a starting listener elsewhere broadcasts one, this
//! peer's listener leaves a file in `DIR/.queries/` naming the querier's address
//! ([`shared::queries`]), and [`run`], polling that folder every [`QUERY_POLL`], sends the whole
//! announcement there by unicast and deletes the file. That is what lets a new peer see the
//! network in well under a second instead of waiting up to an interval. Answers are bounded
//! ([`budget`]): a few per querying address, and [`Config::answer_rate`] bytes per second in
//! all, so forged queries cannot turn this peer into an amplifier aimed at someone else.
//!
//! This crate owns no wire format and no store layout: both are in `shared`. It only decides
//! *when* and *where* to announce and copes with the network saying no.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod budget;
pub mod username;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use budget::{AnswerBudget, Refusal};
use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::peer_dir::PeerDir;
use shared::peers::PeersFile;
use shared::protocol::{Announcement, AnnouncementExt, Kind};
use shared::queries::parse_query_file_name;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Snapshot, StoreError};
use shared::{
    DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT, QUERY_FILE_MAX_AGE,
};

/// Default of [`Config::watch`]: a new chunk is announced within about a second.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(1);

/// How often `DIR/.queries/` is looked at: a query is answered within about this long after
/// this peer's listener heard it, well inside the one second a starting peer waits for.
pub const QUERY_POLL: Duration = Duration::from_millis(100);

/// How often `DIR/peers.txt` is checked for changes (its modification time and length).
pub const PEERS_POLL: Duration = Duration::from_secs(1);

/// Most query files answered in one poll, so a flood of them cannot stall the loop; the rest
/// wait for the next poll.
const MAX_ANSWERS_PER_POLL: usize = 64;

/// Queries left unanswered because of the [`budget`] are logged at most once per this long.
pub const UNANSWERED_LOG_GAP: Duration = Duration::from_secs(10);

/// Longest the loop sleeps before looking at the shutdown flag again.
const TICK: Duration = Duration::from_millis(100);

/// How long a blocked send may take before it counts as failed; UDP sends rarely block, but a
/// full socket buffer must not stall the loop (and shutdown) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything [`run`] needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; chunks are read from its `temp/`, static peers from its `peers.txt`,
    /// query files from its `.queries/`.
    pub dir: PathBuf,
    /// The username announced.
    pub username: String,
    /// Where every datagram is sent: directed broadcast addresses in production, a test's
    /// socket in tests.
    pub targets: Vec<SocketAddr>,
    /// Static peers (`--peer`): every announcement and the goodbye also go to each by unicast.
    pub peers: Vec<SocketAddr>,
    /// The UDP port of a `peers.txt` line that names none (the announce port, `--port`).
    pub peer_port: u16,
    /// Time between periodic announcements; also announced (rounded up to whole seconds) so
    /// listeners know when to expire us.
    pub interval: Duration,
    /// TCP port of our chunk server, announced in the `p2p` extension.
    pub chunk_port: u16,
    /// How often the chunk store is checked for changes.
    pub watch: Duration,
    /// This run's identity, sent in every datagram ([`new_instance_id`]).
    pub instance: String,
    /// Bytes per second of answers to queries, all queriers together
    /// (`--max-answer-rate`; 0 = no limit). See [`budget`].
    pub answer_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            username: username::FALLBACK_USERNAME.to_owned(),
            targets: shared::net::broadcast_targets(DEFAULT_ANNOUNCE_PORT),
            peers: Vec::new(),
            peer_port: DEFAULT_ANNOUNCE_PORT,
            interval: Duration::from_secs(DEFAULT_ANNOUNCE_INTERVAL_SECS),
            chunk_port: DEFAULT_CHUNK_PORT,
            watch: DEFAULT_WATCH,
            instance: new_instance_id(),
            answer_rate: budget::DEFAULT_ANSWER_RATE,
        }
    }
}

/// A fresh instance id: 16 hex digits of the SHA-256 of this process's id, the time in
/// nanoseconds, the host name and a per-process counter. Unique enough to tell two runs (or
/// two announcers of one test process) apart; it is an identity, not a secret.
pub fn new_instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{}/{nanos}/{}/{}",
        std::process::id(),
        shared::net::host_name().unwrap_or_default(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Digest::of(seed.as_bytes()).short(16)
}

/// Why the announcer stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chunk store could not be opened (or created).
    #[error("cannot open the chunk store")]
    OpenStore(#[source] StoreError),
}

/// Announces the chunk store of `config.dir` through `socket` until `shutdown` is triggered,
/// then sends a goodbye to every target.
///
/// The socket is already bound (and, for broadcast targets, has `SO_BROADCAST`). A send that
/// fails, or a store, peers file or query folder that cannot be read for a moment, is logged
/// and the loop carries on.
///
/// # Errors
/// [`Error::OpenStore`] when `DIR/temp` cannot be opened or created.
pub fn run(socket: UdpSocket, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let peer_dir = PeerDir::new(&config.dir);
    let store = ChunkStore::open(peer_dir.temp()).map_err(Error::OpenStore)?;
    // Best effort: without it a send can block, which only delays the loop.
    let _ = socket.set_write_timeout(Some(SEND_TIMEOUT));
    log::info!(
        "announcing {} as {:?} (instance {}) to {}{} every {}s (chunk server port {})",
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
    let peers_file = PeersFile::new(peer_dir.peers_file(), config.peer_port);
    let mut announcer = Announcer::new(socket, config, store, peers_file, peer_dir.queries_dir());
    announcer.refresh();
    announcer.peers_file.poll();
    announcer.announce();
    let mut next_announce = Instant::now() + announcer.config.interval;
    let mut next_watch = Instant::now() + announcer.config.watch;
    let mut next_peers = Instant::now() + PEERS_POLL;
    let mut next_queries = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_watch {
            next_watch = now + announcer.config.watch;
            if announcer.refresh() {
                log::debug!("chunk store changed: announcing now");
                next_announce = now;
            }
        }
        if now >= next_peers {
            next_peers = now + PEERS_POLL;
            announcer.poll_peers();
        }
        if now >= next_announce {
            announcer.announce();
            next_announce = Instant::now() + announcer.config.interval;
        }
        if now >= next_queries {
            next_queries = now + QUERY_POLL;
            announcer.answer_queries();
        }
        let wake = next_watch
            .min(next_announce)
            .min(next_peers)
            .min(next_queries);
        if shutdown.sleep(wake.saturating_duration_since(Instant::now()).min(TICK)) {
            break;
        }
    }
    announcer.goodbye();
    log::info!("announcer stopped");
    Ok(())
}

/// The loop's state. Only [`run`]'s thread touches it.
struct Announcer {
    socket: UdpSocket,
    config: Config,
    store: ChunkStore,
    /// `DIR/peers.txt`, polled every [`PEERS_POLL`].
    peers_file: PeersFile,
    /// `DIR/.queries/`, polled every [`QUERY_POLL`].
    queries_dir: PathBuf,
    /// The last snapshot read successfully; what we announce.
    snapshot: Snapshot,
    /// The last store error warned about, so a lasting failure is logged once.
    store_error: Option<String>,
    /// The last error about the query folder warned about, so a lasting failure is logged once.
    queries_error: Option<String>,
    /// Query files answered but that could not be deleted, with their modification time: not
    /// answered again (every [`QUERY_POLL`]) unless they are touched anew.
    undeletable: HashMap<PathBuf, Option<SystemTime>>,
    /// The last send error warned about for each target, so a lasting failure is logged once.
    send_errors: HashMap<SocketAddr, String>,
    /// Chunks already reported as too big to announce.
    dropped: HashSet<ChunkName>,
    /// What answers to queries may still cost.
    budget: AnswerBudget,
    /// Queries left unanswered since that was last logged: over the per-address limit, over
    /// the bytes per second.
    unanswered: (u64, u64),
    /// When unanswered queries were last logged.
    unanswered_logged: Option<Instant>,
}

impl Announcer {
    fn new(
        socket: UdpSocket,
        config: Config,
        store: ChunkStore,
        peers_file: PeersFile,
        queries_dir: PathBuf,
    ) -> Self {
        Announcer {
            socket,
            store,
            peers_file,
            queries_dir,
            snapshot: Snapshot::default(),
            store_error: None,
            queries_error: None,
            undeletable: HashMap::new(),
            send_errors: HashMap::new(),
            dropped: HashSet::new(),
            budget: AnswerBudget::new(config.answer_rate, Instant::now()),
            config,
            unanswered: (0, 0),
            unanswered_logged: None,
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

    /// Re-reads `peers.txt` if it changed, and announces at once to the peers it added, so a
    /// new peer does not wait for the next interval.
    fn poll_peers(&mut self) {
        let before = self.targets();
        if !self.peers_file.poll() {
            return;
        }
        let added: Vec<SocketAddr> = self
            .targets()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if !added.is_empty() {
            let datagrams = self.datagrams();
            self.send_all(&datagrams, &added);
            log::debug!("announced to new peers {}", list(&added));
        }
    }

    /// Every address an announcement goes to: broadcast targets, `--peer`s and the peers of
    /// `peers.txt`, each once.
    fn targets(&self) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = Vec::new();
        for t in self
            .config
            .targets
            .iter()
            .chain(&self.config.peers)
            .chain(self.peers_file.peers())
        {
            if !targets.contains(t) {
                targets.push(*t);
            }
        }
        targets
    }

    /// The extension every datagram carries, of the given kind, without contents.
    fn ext(&self, kind: Kind) -> AnnouncementExt {
        AnnouncementExt {
            v: shared::PROTOCOL_VERSION,
            port: self.config.chunk_port,
            interval: interval_secs(self.config.interval),
            contents: Default::default(),
            instance: Some(self.config.instance.clone()),
            kind,
        }
    }

    /// The current snapshot, packed into datagrams.
    fn datagrams(&mut self) -> Vec<Vec<u8>> {
        let (datagrams, dropped) = Announcement::pack(
            &self.config.username,
            Some(&self.ext(Kind::Announce)),
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
        datagrams
    }

    /// Sends the current snapshot to every target.
    fn announce(&mut self) {
        let datagrams = self.datagrams();
        let targets = self.targets();
        self.send_all(&datagrams, &targets);
        let contents: BTreeSet<&str> = self.snapshot.chunks.iter().map(|c| c.content()).collect();
        log::debug!(
            "announced {} chunks of {} contents in {} datagrams to {} targets",
            self.snapshot.chunks.len(),
            contents.len(),
            datagrams.len(),
            targets.len()
        );
    }

    /// Tells every target we are leaving: one `goodbye` datagram, without chunks.
    fn goodbye(&mut self) {
        let goodbye = Announcement {
            username: self.config.username.clone(),
            files: Vec::new(),
            p2p: Some(self.ext(Kind::Goodbye)),
        }
        .encode();
        let targets = self.targets();
        self.send_all(&[goodbye], &targets);
        log::debug!("said goodbye to {}", list(&targets));
    }

    /// Answers the query files in `DIR/.queries/`: each gets the whole announcement by
    /// unicast, within the [`budget`], then is deleted. Files older than
    /// [`QUERY_FILE_MAX_AGE`] and queries over the budget are deleted unanswered, and names
    /// that are not query files are deleted with a debug line.
    fn answer_queries(&mut self) {
        let entries = match std::fs::read_dir(&self.queries_dir) {
            Ok(entries) => {
                if self.queries_error.take().is_some() {
                    log::info!("{} readable again", self.queries_dir.display());
                }
                entries
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                let text = format!("cannot read {}: {e}", self.queries_dir.display());
                if self.queries_error.as_ref() != Some(&text) {
                    log::warn!("{text}; queries go unanswered");
                    self.queries_error = Some(text);
                }
                return;
            }
        };
        let mut datagrams: Option<Vec<Vec<u8>>> = None;
        let mut seen = HashSet::new();
        for entry in entries.filter_map(Result::ok).take(MAX_ANSWERS_PER_POLL) {
            let path = entry.path();
            seen.insert(path.clone());
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            if self.undeletable.get(&path) == Some(&modified) {
                continue;
            }
            let name = entry.file_name();
            let Some(addr) = name.to_str().and_then(parse_query_file_name) else {
                log::debug!("deleting {}: not a query file", path.display());
                self.delete(path, modified);
                continue;
            };
            // A modification time in the future (a clock step) counts as fresh.
            let age = modified
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age > QUERY_FILE_MAX_AGE {
                log::debug!("deleting the query of {addr} unanswered: {age:?} old");
                self.delete(path, modified);
                continue;
            }
            match self.budget.allow(addr.ip(), Instant::now()) {
                Ok(()) => {}
                Err(refusal) => {
                    log::debug!("not answering the query of {addr}: {refusal:?} limit");
                    match refusal {
                        Refusal::PerAddress => self.unanswered.0 += 1,
                        Refusal::Bytes => self.unanswered.1 += 1,
                    }
                    self.delete(path, modified);
                    continue;
                }
            }
            if datagrams.is_none() {
                datagrams = Some(self.datagrams());
            }
            let answer = datagrams.as_deref().unwrap_or_default();
            self.send_all(answer, &[addr]);
            self.budget.spent(answer.iter().map(Vec::len).sum());
            log::debug!(
                "answered the query of {addr} with {} datagrams",
                answer.len()
            );
            self.delete(path, modified);
        }
        self.undeletable.retain(|path, _| seen.contains(path));
        self.report_unanswered();
    }

    /// Logs the queries left unanswered by the [`budget`], at most once per
    /// [`UNANSWERED_LOG_GAP`].
    fn report_unanswered(&mut self) {
        let (per_address, bytes) = self.unanswered;
        if per_address + bytes == 0
            || self
                .unanswered_logged
                .is_some_and(|t| t.elapsed() < UNANSWERED_LOG_GAP)
        {
            return;
        }
        log::warn!(
            "left {} queries unanswered: {per_address} over {} answers per address (then one \
             every {:?}), {bytes} over {} bytes/s of answers (at most one such warning every \
             {}s)",
            per_address + bytes,
            budget::ANSWERS_PER_IP_BURST,
            budget::ANSWER_PER_IP_REFILL,
            self.config.answer_rate,
            UNANSWERED_LOG_GAP.as_secs()
        );
        self.unanswered = (0, 0);
        self.unanswered_logged = Some(Instant::now());
    }

    /// Deletes a handled query file; one that cannot be deleted is remembered, so it is not
    /// handled again on every poll.
    fn delete(&mut self, path: PathBuf, modified: Option<SystemTime>) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                if !self.undeletable.contains_key(&path) {
                    log::warn!("cannot delete {}: {e}", path.display());
                }
                self.undeletable.insert(path, modified);
            }
        }
    }

    /// Sends every datagram to every target; a failing target is warned about once while it
    /// fails and does not stop the others.
    fn send_all(&mut self, datagrams: &[Vec<u8>], targets: &[SocketAddr]) {
        for target in targets {
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
                        log::warn!("cannot send to {target}: {text}");
                        self.send_errors.insert(*target, text);
                    }
                }
            }
        }
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
