//! The listener: hears peers' UDP announcements and keeps `DIR/tags.txt` up to date.
//!
//! # Layout
//! - [`run`] is the whole program once `main` has parsed flags and bound the two UDP sockets:
//!   it receives datagrams, records them in an [`Index`], expires what peers stopped announcing
//!   and has `tags.txt` rewritten when what it shows changed.
//! - [`index`] holds the pure logic (apply, expire, render) with an injected clock, and the
//!   limits that keep it small.
//! - [`intake`] is the reading threads, which drop what a source sends beyond its byte rate;
//!   [`writer`] writes `tags.txt` on a thread of its own, at a bounded rate.
//!
//! # Under a flood
//! A host on the LAN may send datagrams as fast as its link allows, each naming thousands of
//! invented chunks. The listener stays responsive because every stage is bounded: a source's
//! bytes per second ([`intake`]), what waits in the queue, the time one batch of datagrams may
//! take before the loop looks at shutdown and `tags.txt` again ([`MAX_BATCH_TIME`]), the cost
//! of one datagram (it touches only what it names), the size of the index ([`index::Limits`]),
//! and the rate `tags.txt` is written at ([`writer`]). An honest peer announcing meanwhile is
//! listed within a second. What the limits refuse is logged, at most once every
//! [`LIMIT_LOG_GAP`].
//!
//! # Discovery at start-up
//! Peers announce once a minute, so a listener that only waited would show an empty network for
//! up to a minute. Instead, [`run`] starts by sending a *query* to its broadcast targets, its
//! `--peer`s and the peers of `DIR/peers.txt` (three times: UDP may drop one), from a socket
//! of its own on an ephemeral port, and keeps reading that socket too. Several listeners on
//! one host share the announce port, and a unicast answer to a shared port reaches only one of
//! them; the ephemeral port is this listener's alone.
//!
//! A query reaches the other peers' *listeners* (they own the announce port). A listener that
//! hears one asks its own peer's announcer to answer, through the peer folder: it creates
//! `DIR/.queries/<ip>_<port>` ([`shared::queries`]), which the announcer turns into a unicast
//! announcement to that address.
//!
//! The datagram's source address names the holder; nothing in the payload is trusted for that.
//! Any datagram, however malformed, is logged (at most once per source every
//! [`MALFORMED_LOG_GAP`]) and skipped: a listener shares its port with every legacy
//! implementation on the LAN and must outlive their mistakes. `tags.txt` itself, its format and
//! its locking, belong to `shared::tags`.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod index;
pub mod intake;
pub mod writer;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;

use shared::peer_dir::PeerDir;
use shared::peers::PeersFile;
use shared::protocol::{Announcement, AnnouncementExt, Kind, QUERY_USERNAME};
use shared::queries::query_file_name;
use shared::shutdown::Shutdown;
use shared::tags::{TagsError, TagsIndex};
use shared::{
    DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT, QUERY_FILE_MAX_AGE,
};

pub use index::Index;
use index::{Limits, Refusals};
use intake::{Datagram, QueuedBytes};
use writer::TagsWriter;

/// Longest a receive blocks before a reading thread looks at the stop flag again, and before
/// the main loop looks at shutdown and expiry again.
const RECV_TIMEOUT: Duration = Duration::from_millis(150);

/// Most datagrams handled in one batch before shutdown, expiry and `tags.txt` get a look.
const MAX_BATCH: usize = 1024;

/// Longest one batch of datagrams may take: under a flood the loop still looks at shutdown
/// and writes `tags.txt` several times a second.
pub const MAX_BATCH_TIME: Duration = Duration::from_millis(100);

/// How often entries are expired (which visits the whole index).
pub const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// What the index limits refused is logged at most once per this long.
pub const LIMIT_LOG_GAP: Duration = Duration::from_secs(10);

/// How many bytes of a malformed datagram a warning quotes.
const EXCERPT_BYTES: usize = 60;

/// A source that sends malformed datagrams is warned about at most once per this long.
pub const MALFORMED_LOG_GAP: Duration = Duration::from_secs(10);

/// When the start-up query is sent, after the start: three times, because UDP may drop the
/// query or its answers. A listener hearing a query asks its announcer at most once per source
/// per [`QUERY_FILE_GAP`], so the last send is spaced a little more than that after the first.
pub const QUERY_SCHEDULE: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(1100),
];

/// A listener creates at most one query file per querier address per this long, so a
/// querier (or an attacker) cannot make the announcer answer faster than that.
pub const QUERY_FILE_GAP: Duration = Duration::from_secs(1);

/// At most this many query files are created per second in all, whatever the number of
/// queriers: bounds the unicast traffic a flood of queries can make this peer send.
const MAX_QUERY_FILES_PER_SEC: u32 = 32;

/// How often `DIR/peers.txt` is checked for changes.
pub const PEERS_POLL: Duration = Duration::from_secs(1);

/// Everything [`run`] needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; `tags.txt` is written there, `peers.txt` read from there, query files
    /// left in its `.queries/`.
    pub dir: PathBuf,
    /// The TCP port where legacy peers, which announce no port, serve chunks.
    pub legacy_chunk_port: u16,
    /// Where the start-up query is broadcast (`--broadcast`; default: the directed broadcast
    /// address of every interface, at the announce port).
    pub query_targets: Vec<SocketAddr>,
    /// Static peers (`--peer`): the start-up query also goes to each by unicast.
    pub peers: Vec<SocketAddr>,
    /// The UDP port of a `peers.txt` line that names none (the announce port, `--port`).
    pub peer_port: u16,
    /// How big the index may grow (`--max-entries`, `--max-entries-per-source`,
    /// `--max-chunks-per-datagram`).
    pub limits: Limits,
    /// Bytes per second one source address may send before its datagrams are dropped
    /// unread (`--max-source-rate`; 0 = no limit). See [`intake`].
    pub source_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            legacy_chunk_port: DEFAULT_CHUNK_PORT,
            query_targets: shared::net::broadcast_targets(DEFAULT_ANNOUNCE_PORT),
            peers: Vec::new(),
            peer_port: DEFAULT_ANNOUNCE_PORT,
            limits: Limits::default(),
            source_rate: intake::DEFAULT_SOURCE_RATE,
        }
    }
}

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
    let path = peer.tags();
    let mut index = match TagsIndex::load(&path) {
        Ok(tags) => {
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

    let (sender, receiver) = mpsc::sync_channel(intake::QUEUE_CAPACITY);
    let queued = QueuedBytes::default();
    let stop = Shutdown::new();
    std::thread::scope(|scope| {
        for s in [&socket, &query_socket] {
            let sender = sender.clone();
            let (stop, queued) = (&stop, &queued);
            let rate = config.source_rate;
            scope.spawn(move || intake::read_loop(s, &sender, queued, rate, stop));
        }
        drop(sender);
        // Stops the reading threads when the loop ends, even by a panic, which would otherwise
        // leave the scope waiting for them for ever.
        let _stop_readers = StopOnDrop(&stop);
        let mut looper = Loop {
            config: &config,
            index,
            writer: Some(writer),
            write_error: None,
            tags_path: path.clone(),
            queued: &queued,
            refused: Refusals::default(),
            refusals_reported: None,
            querier: Querier::new(&query_socket),
            peers_file: PeersFile::new(peer.peers_file(), config.peer_port),
            queries_dir: peer.queries_dir(),
            asked: HashMap::new(),
            asked_this_second: (Instant::now(), 0),
            last_prune: Instant::now(),
            ask_error: None,
            malformed: HashMap::new(),
        };
        // The reading threads stop within one receive timeout of the loop's end.
        looper.run(receiver, &shutdown);
    });
    log::info!("listener stopped");
    Ok(())
}

/// Triggers its flag when dropped.
struct StopOnDrop<'a>(&'a Shutdown);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// The main loop's state. Only [`run`]'s thread touches it.
struct Loop<'a> {
    config: &'a Config,
    index: Index,
    /// The `tags.txt` writer; taken when the loop ends.
    writer: Option<TagsWriter>,
    /// The last write error warned about, so a lasting failure is logged once.
    write_error: Option<String>,
    tags_path: PathBuf,
    /// Bytes waiting in the queue from the reading threads.
    queued: &'a QueuedBytes,
    /// What the index limits refused since it was last logged.
    refused: Refusals,
    /// When that was last logged.
    refusals_reported: Option<Instant>,
    querier: Querier<'a>,
    /// `DIR/peers.txt`, polled every [`PEERS_POLL`].
    peers_file: PeersFile,
    /// `DIR/.queries/`.
    queries_dir: PathBuf,
    /// When a query file was last created for each querier address.
    asked: HashMap<SocketAddr, Instant>,
    /// The start of the current one-second window and how many query files it created.
    asked_this_second: (Instant, u32),
    /// When stale query files were last cleared away.
    last_prune: Instant,
    /// The last error creating a query file warned about, so a lasting failure is logged once.
    ask_error: Option<String>,
    /// For each source that sent malformed datagrams: when it was last warned about and how
    /// many were skipped silently since (pruned beyond 1024 sources).
    malformed: HashMap<IpAddr, (Instant, u64)>,
}

impl Loop<'_> {
    fn run(&mut self, receiver: Receiver<Datagram>, shutdown: &Shutdown) {
        self.peers_file.poll();
        let mut start_targets = self.config.query_targets.clone();
        add_unique(&mut start_targets, &self.config.peers);
        add_unique(&mut start_targets, self.peers_file.peers());
        self.querier.schedule(&start_targets, Instant::now());
        let mut next_peers = Instant::now() + PEERS_POLL;
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        let mut dirty = false;
        while !shutdown.is_triggered() {
            let now = Instant::now();
            self.querier.send_due(now);
            if now >= next_peers {
                next_peers = now + PEERS_POLL;
                self.poll_peers(now);
            }
            let mut timeout = RECV_TIMEOUT;
            if dirty {
                if let Some(wait) = self.writer().and_then(|w| w.wait(now)) {
                    timeout = timeout.min(wait);
                }
            }
            if let Some(due) = self.querier.next_due() {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
            match receiver.recv_timeout(timeout.max(Duration::from_millis(1))) {
                Ok(first) => {
                    let batch = Instant::now();
                    dirty |= self.handle(&first);
                    for datagram in receiver.try_iter().take(MAX_BATCH - 1) {
                        dirty |= self.handle(&datagram);
                        if batch.elapsed() >= MAX_BATCH_TIME {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Both reading threads are gone (they only stop with us): nothing more comes.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
            }
            let now = Instant::now();
            if now >= next_expire {
                next_expire = now + EXPIRE_EVERY;
                dirty |= self.index.expire(Utc::now());
            }
            self.report_refusals(now, false);
            dirty |= !self.check_write();
            if dirty && self.writer().is_some_and(|w| w.ready(now)) {
                self.submit();
                dirty = false;
            }
        }
        self.report_refusals(Instant::now(), true);
        dirty |= !self.check_write();
        if let Some(writer) = self.writer.take() {
            if dirty {
                writer.submit(self.index.to_tags(Utc::now()));
            }
            if !writer.finish(writer::FINAL_WRITE_WAIT) {
                log::warn!(
                    "{} could not be written within {:?} (is a reader holding its lock?): \
                     stopping without its last update",
                    self.tags_path.display(),
                    writer::FINAL_WRITE_WAIT
                );
            }
        }
    }

    fn writer(&self) -> Option<&TagsWriter> {
        self.writer.as_ref()
    }

    /// Hands the writer a snapshot of the index.
    fn submit(&self) {
        if let Some(writer) = self.writer() {
            writer.submit(self.index.to_tags(Utc::now()));
        }
    }

    /// Logs the outcome of the last write, if one came in; returns `false` when it failed (the
    /// index must be written again; the writer waits [`writer::WRITE_RETRY`] first).
    fn check_write(&mut self) -> bool {
        let Some(outcome) = self.writer().and_then(TagsWriter::take_outcome) else {
            return true;
        };
        match outcome {
            Ok(entries) => {
                if self.write_error.take().is_some() {
                    log::info!("{} written again", self.tags_path.display());
                }
                log::debug!("wrote {entries} entries to {}", self.tags_path.display());
                true
            }
            Err(e) => {
                let text = e.to_string();
                if self.write_error.as_ref() != Some(&text) {
                    log::warn!("{text}; will retry");
                    self.write_error = Some(text);
                }
                false
            }
        }
    }

    /// Logs what the index limits refused, at most once per [`LIMIT_LOG_GAP`] (unless `last`:
    /// the loop is ending).
    fn report_refusals(&mut self, now: Instant, last: bool) {
        self.refused.add(self.index.take_refusals());
        if self.refused.is_empty()
            || (!last
                && self
                    .refusals_reported
                    .is_some_and(|t| now.duration_since(t) < LIMIT_LOG_GAP))
        {
            return;
        }
        let limits = self.index.limits();
        let r = std::mem::take(&mut self.refused);
        let mut parts = Vec::new();
        if r.long_datagrams > 0 {
            parts.push(format!(
                "{} datagrams listed more than {} chunks (the rest was ignored)",
                r.long_datagrams, limits.max_chunks_per_datagram
            ));
        }
        if r.over_source > 0 {
            parts.push(format!(
                "{} new entries refused: their address already had {}",
                r.over_source, limits.max_entries_per_source
            ));
        }
        if r.over_total > 0 || r.evicted > 0 {
            parts.push(format!(
                "the index is full ({} entries): {} new entries refused, {} evicted from the \
                 biggest sources",
                limits.max_entries, r.over_total, r.evicted
            ));
        }
        log::warn!(
            "limits reached: {} (at most one such warning every {}s)",
            parts.join("; "),
            LIMIT_LOG_GAP.as_secs()
        );
        self.refusals_reported = Some(now);
    }

    /// Re-reads `peers.txt` if it changed, and queries the peers it added.
    fn poll_peers(&mut self, now: Instant) {
        let before = self.peers_file.peers().to_vec();
        if self.peers_file.poll() {
            let added: Vec<SocketAddr> = self
                .peers_file
                .peers()
                .iter()
                .filter(|p| !before.contains(p))
                .copied()
                .collect();
            if !added.is_empty() {
                self.querier.schedule(&added, now);
            }
        }
    }

    /// Decodes one datagram into the index, or turns a query into a query file. Returns
    /// whether the index changed.
    fn handle(&mut self, datagram: &Datagram) -> bool {
        let Datagram { bytes, from } = datagram;
        self.queued.taken(bytes.len());
        let announcement = match Announcement::decode(bytes) {
            Ok(announcement) => announcement,
            Err(e) => {
                self.warn_malformed(*from, bytes, &e.to_string());
                return false;
            }
        };
        let ext = index::readable_extension(&announcement);
        let kind = ext.map_or(Kind::Announce, |e| e.kind);
        log::debug!(
            "{from}: {:?} sent {} listing {} files ({})",
            announcement.username,
            match kind {
                Kind::Announce => "an announcement",
                Kind::Query => "a query",
                Kind::Goodbye => "a goodbye",
            },
            announcement.files.len(),
            ext.map_or_else(|| "legacy".to_owned(), |e| format!("p2p/{}", e.v)),
        );
        if kind == Kind::Query {
            self.ask_announcer(*from);
            return false;
        }
        // A name a terminal would obey, or not show, must not reach tags.txt and from there the
        // downloader's listing: a datagram under such a username is refused whole. (Chunk
        // names are checked one by one: `ChunkName::parse` skips the unsafe ones.)
        if let Err(e) = shared::text::validate(&announcement.username) {
            self.warn_malformed(*from, bytes, &format!("the username {e}"));
            return false;
        }
        self.index.apply(
            from.ip(),
            &announcement,
            self.config.legacy_chunk_port,
            Utc::now(),
        )
    }

    /// Logs a malformed datagram from `from`, at most once per source per
    /// [`MALFORMED_LOG_GAP`], counting the ones skipped silently meanwhile.
    fn warn_malformed(&mut self, from: SocketAddr, bytes: &[u8], why: &str) {
        let now = Instant::now();
        if self.malformed.len() > 1024 {
            self.malformed
                .retain(|_, (last, _)| now.duration_since(*last) < MALFORMED_LOG_GAP);
        }
        let skipped = match self.malformed.get_mut(&from.ip()) {
            Some((last, skipped)) if now.duration_since(*last) < MALFORMED_LOG_GAP => {
                *skipped += 1;
                log::debug!(
                    "ignoring a {}-byte datagram from {from}: {why}",
                    bytes.len()
                );
                return;
            }
            Some((_, skipped)) => *skipped,
            None => 0,
        };
        self.malformed.insert(from.ip(), (now, 0));
        let n = bytes.len();
        log::warn!(
            "ignoring a {n}-byte datagram from {from}: {why}: \"{}\"{}{}",
            bytes[..n.min(EXCERPT_BYTES)].escape_ascii(),
            if n > EXCERPT_BYTES { "…" } else { "" },
            if skipped > 0 {
                format!(
                    " ({skipped} more malformed datagrams from {} ignored silently before this)",
                    from.ip()
                )
            } else {
                String::new()
            }
        );
    }

    /// Asks this peer's announcer to answer the query of `from`, by creating its query file;
    /// at most once per querier per [`QUERY_FILE_GAP`] and [`MAX_QUERY_FILES_PER_SEC`] in all.
    fn ask_announcer(&mut self, from: SocketAddr) {
        let now = Instant::now();
        if self
            .asked
            .get(&from)
            .is_some_and(|t| now.duration_since(*t) < QUERY_FILE_GAP)
        {
            log::debug!("{from} queried again within {QUERY_FILE_GAP:?}: already asked");
            return;
        }
        if now.duration_since(self.asked_this_second.0) >= Duration::from_secs(1) {
            self.asked_this_second = (now, 0);
        }
        if self.asked_this_second.1 >= MAX_QUERY_FILES_PER_SEC {
            log::debug!("too many queries this second: not answering {from}");
            return;
        }
        self.asked_this_second.1 += 1;
        self.asked
            .retain(|_, t| now.duration_since(*t) < QUERY_FILE_GAP);
        self.asked.insert(from, now);
        if now.duration_since(self.last_prune) >= QUERY_FILE_MAX_AGE {
            self.last_prune = now;
            prune_query_files(&self.queries_dir);
        }
        let path = self.queries_dir.join(query_file_name(from));
        let result = std::fs::create_dir_all(&self.queries_dir)
            .and_then(|()| std::fs::File::create(&path).map(drop));
        match result {
            Ok(()) => {
                if self.ask_error.take().is_some() {
                    log::info!("{} writable again", self.queries_dir.display());
                }
                log::debug!("asked our announcer to answer {from}");
            }
            Err(e) => {
                let text = format!("cannot create {}: {e}", path.display());
                if self.ask_error.as_ref() != Some(&text) {
                    log::warn!("{text}; queries go unanswered");
                    self.ask_error = Some(text);
                }
            }
        }
    }
}

/// Deletes the query files older than [`QUERY_FILE_MAX_AGE`], which the announcer would not
/// answer any more: without an announcer running, they would pile up.
fn prune_query_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > QUERY_FILE_MAX_AGE);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Appends to `list` the addresses of `more` it does not hold yet.
fn add_unique(list: &mut Vec<SocketAddr>, more: &[SocketAddr]) {
    for addr in more {
        if !list.contains(addr) {
            list.push(*addr);
        }
    }
}

/// Sends the start-up query, on the schedule of [`QUERY_SCHEDULE`].
struct Querier<'a> {
    socket: &'a UdpSocket,
    /// The query datagram; the same every time.
    datagram: Vec<u8>,
    /// Sends still to come: when, and to whom.
    pending: Vec<(Instant, Vec<SocketAddr>)>,
    /// The last send error warned about for each target, so a lasting failure is logged once.
    send_errors: HashMap<SocketAddr, String>,
}

impl<'a> Querier<'a> {
    fn new(socket: &'a UdpSocket) -> Querier<'a> {
        Querier {
            socket,
            datagram: query_datagram(),
            pending: Vec::new(),
            send_errors: HashMap::new(),
        }
    }

    /// Queries `targets` at each offset of [`QUERY_SCHEDULE`] from `now`.
    fn schedule(&mut self, targets: &[SocketAddr], now: Instant) {
        if targets.is_empty() {
            return;
        }
        for offset in QUERY_SCHEDULE {
            self.pending.push((now + offset, targets.to_vec()));
        }
    }

    /// When the next send is due.
    fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|(t, _)| *t).min()
    }

    /// Sends what is due at `now`.
    fn send_due(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.pending = later;
        for (_, targets) in due {
            for &target in &targets {
                match self.socket.send_to(&self.datagram, target) {
                    Ok(_) => {
                        if self.send_errors.remove(&target).is_some() {
                            log::info!("sending to {target} works again");
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if self.send_errors.get(&target) != Some(&text) {
                            log::warn!("cannot send a query to {target}: {text}");
                            self.send_errors.insert(target, text);
                        }
                    }
                }
            }
            let names: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
            log::debug!("sent a query to {}", names.join(", "));
        }
    }
}

/// The query a listener sends: no chunks, `kind` query; the port and interval mean nothing in
/// a query but are there for listeners that predate `kind` and read it as an (empty)
/// announcement. Its username is [`QUERY_USERNAME`], never this peer's: a legacy listener that
/// shows the last datagram of each username would otherwise show this peer holding nothing
/// until its next announcement. (Our announcers answer a query whatever its username.)
pub fn query_datagram() -> Vec<u8> {
    Announcement {
        username: QUERY_USERNAME.to_owned(),
        files: Vec::new(),
        p2p: Some(AnnouncementExt {
            v: shared::PROTOCOL_VERSION,
            port: 0,
            interval: DEFAULT_ANNOUNCE_INTERVAL_SECS,
            contents: Default::default(),
            instance: None,
            kind: Kind::Query,
        }),
    }
    .encode()
}
