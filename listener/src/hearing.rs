//! Hearing: the main loop, and what it makes of each datagram.
//!
//! The loop takes the datagrams the reading threads queued ([`crate::receive`]), in batches
//! bounded in number ([`MAX_BATCH`]) and time ([`MAX_BATCH_TIME`]), so that under a flood it
//! still looks at shutdown, expires entries ([`EXPIRE_EVERY`]), polls `peers.txt` and hands
//! `tags.txt` to the [`writer`](crate::writer) several times a second. Each datagram is
//! [heard](hear) first, a pure decision: malformed (logged, at most once per source every
//! [`MALFORMED_LOG_GAP`]), a query (passed on to the announcer, [`crate::query`]) or an
//! announcement for the [`Index`]. What the index limits refused is logged at most once every
//! [`LIMIT_LOG_GAP`].
//!
//! A compact announcement whose catalog the index does not hold is a catalog wanted
//! ([`crate::catalogs`]): the loop starts its fetch on a thread of its own ([`crate::fetch`]),
//! collects the outcome in a later turn, and applies what matched its digest.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use chrono::Utc;

use shared::latch::Latch;
use shared::peer_dir::PeerDir;
use shared::peers::{PeersFile, PEERS_POLL};
use shared::protocol::{Announcement, Kind, OfferHeard};
use shared::shutdown::Shutdown;
use shared::trust::envelope::now_ms;
use shared::trust::{ChannelKeys, Gate, NetworkKey, Passed, PeerId, Refused, Trust};
use shared::username::sanitize as sanitize_username;

use crate::catalogs::Catalogs;
use crate::config::Config;
use crate::fetch::{self, Fetched};
use crate::inbox::InboxKeeper;
use crate::index::{self, Index, Limits, Refusals};
use crate::intake::QueuedBytes;
use crate::query::{Asker, Querier};
use crate::receive::{Datagram, RECV_TIMEOUT};
use crate::writer::{self, TagsWriter};

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

/// Most sources whose malformed datagrams are remembered before the quiet ones are forgotten.
const MAX_MALFORMED_SOURCES: usize = 1024;

/// While catalogs are being fetched, the loop looks for their outcome at least this often.
const FETCH_POLL: Duration = Duration::from_millis(50);

/// What one datagram is, once decoded.
#[derive(Debug)]
pub(crate) enum Heard {
    /// Not a datagram we can use, and why.
    Malformed(String),
    /// Refused by the gate: another network's, unauthenticated on a private network, forged,
    /// replayed.
    Refused(Refused),
    /// A query: answering it is the announcer's business.
    Query,
    /// An announcement or a goodbye, for the index, with the peer ID that signed it (private
    /// network only).
    Announcement(Announcement, Option<PeerId>),
    /// An offer of a content to one user, for the inbox (if it is for ours): its sender's
    /// username and chunk-server port, and the peer ID that signed it (private network only).
    Offer(OfferHeard, String, u16, Option<PeerId>),
}

/// Decodes one datagram and decides what it is. A name a terminal would obey, or not show,
/// must not reach `tags.txt` and from there the downloader's listing: a datagram under such a
/// username is refused whole. (Chunk names are checked one by one: `ChunkName::parse` skips
/// the unsafe ones.)
pub(crate) fn hear(bytes: &[u8], from: SocketAddr, gate: &mut Gate) -> Heard {
    let (payload, signer) = match gate.admit(bytes, now_ms()) {
        Ok(Passed::Plain(bytes)) => (Cow::Borrowed(bytes), None),
        Ok(Passed::Sealed(opened)) => {
            let id = opened.peer_id();
            (Cow::Owned(opened.payload), Some(id))
        }
        Err(refused) => return Heard::Refused(refused),
    };
    let mut announcement = match Announcement::decode(&payload) {
        Ok(announcement) => announcement,
        Err(e) => return Heard::Malformed(e.to_string()),
    };
    if gate.is_private() {
        match signer {
            // Let in by --allow-legacy: nothing vouches for its extension (an open peer's
            // query, a port): it counts as a legacy peer's announcement.
            None => announcement.p2p = None,
            Some(_) if index::readable_extension(&announcement).is_none() => {
                return Heard::Malformed("a sealed datagram without a usable p2p extension".into())
            }
            Some(_) => {}
        }
    }
    let ext = index::readable_extension(&announcement);
    let kind = ext.map_or(Kind::Announce, |e| e.kind);
    log::debug!(
        "{from}: {:?} sent {} listing {} files ({})",
        announcement.username,
        match kind {
            Kind::Announce => "an announcement",
            Kind::Query => "a query",
            Kind::Goodbye => "a goodbye",
            Kind::Withdraw => "a withdrawal",
            Kind::Offer => "an offer",
        },
        announcement.files.len(),
        ext.map_or_else(|| "legacy".to_owned(), |e| format!("p2p/{}", e.v)),
    );
    if kind == Kind::Query {
        return Heard::Query;
    }
    if let Err(e) = shared::text::validate(&announcement.username) {
        return Heard::Malformed(format!("the username {e}"));
    }
    if kind == Kind::Offer {
        let port = ext.map_or(0, |e| e.port);
        return match announcement.as_offer() {
            Some(offer) => Heard::Offer(
                offer,
                sanitize_username(&announcement.username),
                port,
                signer,
            ),
            None => {
                Heard::Malformed("an offer without a valid recipient, id, content or expiry".into())
            }
        };
    }
    Heard::Announcement(announcement, signer)
}

/// The main loop's state. Only [`crate::run`]'s thread touches it.
pub(crate) struct Hearing<'a> {
    config: &'a Config,
    index: Index,
    /// The `tags.txt` writer; taken when the loop ends.
    writer: Option<TagsWriter>,
    /// Writing `tags.txt` fails.
    unwritable: Latch,
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
    /// Passes heard queries on to the announcer.
    asker: Asker,
    /// Sources of malformed datagrams.
    malformed: MalformedSources,
    /// What datagrams are let in ([`Gate`]), and the network key for its messages.
    gate: Gate,
    key: Option<NetworkKey>,
    /// Sources of refused datagrams, and why (each reason is reported on its own).
    refused_sources: MalformedSources<(IpAddr, std::mem::Discriminant<Refused>)>,
    /// The offers heard for this peer's user (`DIR/offers.txt`).
    inbox: InboxKeeper,
    /// The catalogs wanted, and their fetches.
    catalogs: Catalogs,
    /// The keys of the transfer channel, on a private network: catalogs are fetched through
    /// it.
    channel_keys: Option<ChannelKeys>,
    /// Where fetching threads send their outcome, and where the loop takes it.
    fetched: (Sender<Fetched>, Receiver<Fetched>),
    /// Peers (address and port) whose catalog could not be fetched, for the warnings.
    fetch_failures: MalformedSources<(IpAddr, u16)>,
}

impl<'a> Hearing<'a> {
    /// The loop of a listener of the peer folder `peer`, starting from `index`, whose
    /// `tags.txt` `writer` writes, sending its queries through `querier`, and letting in what
    /// the [`Gate`] of `trust`'s network admits.
    pub(crate) fn new(
        config: &'a Config,
        peer: &PeerDir,
        index: Index,
        writer: TagsWriter,
        queued: &'a QueuedBytes,
        querier: Querier<'a>,
        trust: &Trust,
    ) -> Hearing<'a> {
        Hearing {
            config,
            index,
            writer: Some(writer),
            unwritable: Latch::default(),
            tags_path: peer.tags(),
            queued,
            refused: Refusals::default(),
            refusals_reported: None,
            querier,
            peers_file: PeersFile::new(peer.peers_file(), config.peer_port),
            asker: Asker::new(peer.queries_dir()),
            malformed: MalformedSources::default(),
            gate: Gate::new(trust.key.as_ref(), config.allow_legacy),
            key: trust.key.clone(),
            refused_sources: MalformedSources::default(),
            inbox: InboxKeeper::new(peer),
            catalogs: Catalogs::default(),
            channel_keys: trust.channel_keys(),
            fetched: mpsc::channel(),
            fetch_failures: MalformedSources::default(),
        }
    }
}

impl Hearing<'_> {
    /// Runs until `shutdown`, then hands the writer its last snapshot.
    pub(crate) fn run(&mut self, receiver: Receiver<Datagram>, shutdown: &Shutdown) {
        self.peers_file.poll();
        let mut start_targets = self.config.query_targets.clone();
        add_unique(&mut start_targets, &self.config.peers);
        add_unique(&mut start_targets, self.peers_file.peers());
        self.querier.schedule(&start_targets, Instant::now());
        let mut next_peers = Instant::now() + PEERS_POLL;
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        // The last write failed: write again, whatever the index says.
        let mut retry = false;
        while !shutdown.is_triggered() {
            let now = Instant::now();
            self.querier.send_due(now);
            if now >= next_peers {
                next_peers = now + PEERS_POLL;
                self.poll_peers(now);
            }
            let mut timeout = RECV_TIMEOUT;
            if retry || self.index.write_due(Utc::now()) {
                if let Some(wait) = self.writer().and_then(|w| w.wait(now)) {
                    timeout = timeout.min(wait);
                }
            } else if let Some(due) = self.index.next_write_due() {
                let left = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                timeout = timeout.min(left);
            }
            if let Some(due) = self.querier.next_due() {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
            if self.catalogs.fetching() {
                timeout = timeout.min(FETCH_POLL);
            }
            if let Some(due) = self.catalogs.next_due() {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
            match receiver.recv_timeout(timeout.max(Duration::from_millis(1))) {
                Ok(first) => {
                    let batch = Instant::now();
                    self.handle(&first);
                    for datagram in receiver.try_iter().take(MAX_BATCH - 1) {
                        self.handle(&datagram);
                        if batch.elapsed() >= MAX_BATCH_TIME {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Both reading threads are gone (they only stop with us): nothing more comes.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
            }
            self.keep_pins();
            let now = Instant::now();
            self.inbox.tick(now);
            self.take_fetched(now);
            self.start_fetches(now);
            if now >= next_expire {
                next_expire = now + EXPIRE_EVERY;
                self.index.expire(Utc::now());
                self.catalogs.expire(now);
            }
            self.report_refusals(now, false);
            retry |= !self.check_write();
            let due = retry || self.index.write_due(Utc::now());
            if due && self.writer().is_some_and(|w| w.ready(now)) {
                self.submit();
                retry = false;
            }
        }
        self.report_refusals(Instant::now(), true);
        retry |= !self.check_write();
        if let Some(writer) = self.writer.take() {
            // Refreshes not due yet are written too: nothing heard is lost.
            if retry || self.index.has_unwritten() {
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

    /// Hands the writer a snapshot of the index, which then has nothing left to write.
    fn submit(&mut self) {
        if let Some(writer) = self.writer.as_ref() {
            writer.submit(self.index.to_tags(Utc::now()));
            self.index.written();
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
                if self.unwritable.reset() {
                    log::info!("{} written again", self.tags_path.display());
                }
                log::debug!("wrote {entries} entries to {}", self.tags_path.display());
                true
            }
            Err(e) => {
                if self.unwritable.trip_because(&e) {
                    log::warn!("{e}; will retry");
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
        let refused = std::mem::take(&mut self.refused);
        log::warn!(
            "limits reached: {} (at most one such warning every {}s)",
            describe_refusals(&refused, self.index.limits()),
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

    /// Hears one datagram: into the index (which keeps what is to be written), on to the
    /// announcer, or into the log.
    fn handle(&mut self, datagram: &Datagram) {
        let Datagram { bytes, from } = datagram;
        self.queued.taken(bytes.len());
        match hear(bytes, *from, &mut self.gate) {
            Heard::Malformed(why) => {
                self.warn_malformed(*from, bytes, &why);
            }
            Heard::Refused(refused) => {
                self.warn_refused(*from, refused);
            }
            Heard::Query => {
                self.asker.ask(*from);
            }
            Heard::Offer(offer, user, port, signer) => {
                // An offer in a pinned name from another ID would pass an impostor's file off
                // as that user's (and `accept-from.txt` would accept it unasked).
                if let Some(id) = signer.filter(|id| self.index.is_impostor(&user, *id)) {
                    log::warn!(
                        "ignoring an offer of {:?} from peer {id} in the name of {user:?}, which \
                         belongs to another peer ID",
                        offer.name
                    );
                    return;
                }
                self.inbox.hear(
                    &offer,
                    &user,
                    SocketAddr::new(from.ip().to_canonical(), port),
                );
            }
            Heard::Announcement(announcement, signer) => {
                if let Some(wanted) = self.index.catalog_wanted(from.ip(), &announcement, signer) {
                    self.catalogs.want(wanted, Instant::now());
                }
                if let Some(ext) =
                    index::readable_extension(&announcement).filter(|e| e.kind == Kind::Goodbye)
                {
                    // A fetch of its catalog still running is not to be applied.
                    self.catalogs.forget(
                        from.ip().to_canonical(),
                        &sanitize_username(&announcement.username),
                        signer,
                        Some(ext.port),
                    );
                }
                self.index.apply_signed(
                    from.ip(),
                    &announcement,
                    signer,
                    self.config.legacy_chunk_port,
                    Utc::now(),
                );
            }
        }
    }

    /// Starts the catalog fetches that are due, each on a thread of its own.
    fn start_fetches(&mut self, now: Instant) {
        for wanted in self.catalogs.start_due(now) {
            let peer = &wanted.peer;
            log::debug!(
                "fetching the catalog {} ({} contents) of {:?} from {}:{}",
                wanted.summary.sha256.short(16),
                wanted.summary.count,
                peer.user,
                peer.ip,
                peer.port
            );
            let keep = self.index.limits().max_entries_per_source;
            let done = self.fetched.0.clone();
            if let Err(e) = fetch::spawn(wanted.clone(), self.channel_keys.clone(), keep, done) {
                log::warn!("cannot start fetching a catalog: {e}");
                self.catalogs.finished(&wanted, false, now);
            }
        }
    }

    /// Applies the catalogs fetched since the last call (those still wanted, their bytes
    /// matching their digest), and warns about the fetches that failed (at most once per peer
    /// every [`MALFORMED_LOG_GAP`]).
    fn take_fetched(&mut self, now: Instant) {
        let outcomes: Vec<Fetched> = self.fetched.1.try_iter().collect();
        for Fetched {
            wanted,
            result,
            took,
        } in outcomes
        {
            let apply = self.catalogs.finished(&wanted, result.is_ok(), now);
            let peer = &wanted.peer;
            match result {
                Ok(catalog) if apply => {
                    self.index
                        .apply_catalog(&wanted, &catalog.entries, Utc::now());
                    log::debug!(
                        "applied the catalog {} of {:?} at {}:{}: {} contents in {} ms",
                        wanted.summary.sha256.short(16),
                        peer.user,
                        peer.ip,
                        peer.port,
                        catalog.count,
                        took.as_millis()
                    );
                    if (catalog.entries.len() as u64) < catalog.count {
                        log::warn!(
                            "the catalog of {:?} at {} lists {} contents: kept the first {} (--max-entries-per-source)",
                            peer.user,
                            peer.ip,
                            catalog.count,
                            catalog.entries.len()
                        );
                    }
                }
                Ok(_) => log::debug!(
                    "fetched the catalog {} of {:?} at {}, which it no longer announces",
                    wanted.summary.sha256.short(16),
                    peer.user,
                    peer.ip
                ),
                Err(e) => {
                    let what = format!(
                        "cannot fetch the catalog {} of {:?} from {}:{}: {e}",
                        wanted.summary.sha256.short(16),
                        peer.user,
                        peer.ip,
                        peer.port
                    );
                    match self.fetch_failures.note((peer.ip, peer.port), now) {
                        // A catalog that changed since its announcement: the next is on its way.
                        Some(_) if is_changed(&e) => log::debug!("{what}"),
                        Some(0) => log::warn!("{what}"),
                        Some(n) => log::warn!("{what} ({n} more failures not logged before this)"),
                        None => log::debug!("{what}"),
                    }
                }
            }
        }
    }

    /// Stores the pins in `known-peers.txt` when a username was pinned (rare: the first time a
    /// name is heard on the network).
    fn keep_pins(&mut self) {
        let (Some(key), false) = (&self.key, self.index.take_new_pins().is_empty()) else {
            return;
        };
        if let Err(e) = shared::trust::pins::save(&self.config.dir, self.index.pins(), &key.id()) {
            log::warn!(
                "cannot write {}: {e}; the pins hold until the listener stops",
                shared::trust::pins::path_in(&self.config.dir).display()
            );
        }
    }

    /// Logs a datagram the gate refused, at most once per source per [`MALFORMED_LOG_GAP`],
    /// counting the ones refused silently meanwhile.
    fn warn_refused(&mut self, from: SocketAddr, refused: Refused) {
        let what = refused.describe(from, self.key.as_ref());
        let reason = (from.ip(), std::mem::discriminant(&refused));
        match self.refused_sources.note(reason, Instant::now()) {
            None => log::debug!("{what}"),
            Some(0) => log::warn!("{what}"),
            Some(skipped) => log::warn!(
                "{what} ({skipped} more datagrams from {} refused silently before this)",
                from.ip()
            ),
        }
    }

    /// Logs a malformed datagram from `from`, at most once per source per
    /// [`MALFORMED_LOG_GAP`], counting the ones skipped silently meanwhile.
    fn warn_malformed(&mut self, from: SocketAddr, bytes: &[u8], why: &str) {
        let n = bytes.len();
        let Some(skipped) = self.malformed.note(from.ip(), Instant::now()) else {
            log::debug!("ignoring a {n}-byte datagram from {from}: {why}");
            return;
        };
        log::warn!(
            "ignoring a {n}-byte datagram from {from}: {why}: \"{}\"{}",
            excerpt(bytes),
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
}

/// For each source that sent malformed datagrams (or, with another key `K`, each source and
/// reason of refusal): when it was last warned about and how many were skipped silently since
/// (the quiet ones forgotten beyond [`MAX_MALFORMED_SOURCES`]).
#[derive(Debug)]
pub(crate) struct MalformedSources<K = IpAddr>(HashMap<K, (Instant, u64)>);

impl<K> Default for MalformedSources<K> {
    fn default() -> Self {
        MalformedSources(HashMap::new())
    }
}

impl<K: Eq + std::hash::Hash> MalformedSources<K> {
    /// A malformed datagram came from `source` at `now`: `Some(skipped)` when it is to be
    /// warned about (with how many were skipped silently before it), `None` when it is skipped
    /// silently (counted).
    pub(crate) fn note(&mut self, source: K, now: Instant) -> Option<u64> {
        if self.0.len() > MAX_MALFORMED_SOURCES {
            self.0
                .retain(|_, (last, _)| now.duration_since(*last) < MALFORMED_LOG_GAP);
        }
        let skipped = match self.0.get_mut(&source) {
            Some((last, skipped)) if now.duration_since(*last) < MALFORMED_LOG_GAP => {
                *skipped += 1;
                return None;
            }
            Some((_, skipped)) => *skipped,
            None => 0,
        };
        self.0.insert(source, (now, 0));
        Some(skipped)
    }
}

/// Whether a fetch failed only because the catalog changed since it was announced: normal
/// while the peer's files change, and followed by the announcement of the new one.
fn is_changed(error: &fetch::FetchError) -> bool {
    matches!(
        error,
        fetch::FetchError::Refused {
            code: shared::protocol::ErrorCode::WrongContent,
            ..
        }
    )
}

/// The first [`EXCERPT_BYTES`] of a datagram, escaped, with `…` when there is more.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let n = bytes.len();
    format!(
        "{}{}",
        bytes[..n.min(EXCERPT_BYTES)].escape_ascii(),
        if n > EXCERPT_BYTES { "…" } else { "" }
    )
}

/// One line saying what the index `limits` refused.
pub(crate) fn describe_refusals(r: &Refusals, limits: Limits) -> String {
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
    if r.foreign > 0 {
        parts.push(format!(
            "{} announcements of entries that another peer ID holds were ignored (a member \
             sending from another's address)",
            r.foreign
        ));
    }
    parts.join("; ")
}

/// Appends to `list` the addresses of `more` it does not hold yet.
pub(crate) fn add_unique(list: &mut Vec<SocketAddr>, more: &[SocketAddr]) {
    for addr in more {
        if !list.contains(addr) {
            list.push(*addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 7], 5000))
    }

    fn open() -> Gate {
        Gate::new(None, false)
    }

    fn key(byte: u8) -> NetworkKey {
        NetworkKey::from_bytes([byte; 32])
    }

    fn sealer(key: &NetworkKey, seed: u8) -> shared::trust::Sealer {
        shared::trust::Sealer::new(
            key,
            std::sync::Arc::new(shared::trust::Identity::from_seed(&[seed; 32])),
        )
        .unwrap()
    }

    fn ours() -> Vec<u8> {
        let ext = shared::protocol::AnnouncementExt {
            instance: Some("i1".into()),
            ..shared::protocol::AnnouncementExt::new(6001, 60)
        };
        Announcement::ours("alice", &["a.txt_1"], ext).encode()
    }

    #[test]
    fn on_a_private_network_only_members_sealed_datagrams_are_heard_with_their_signer() {
        let mut gate = Gate::new(Some(&key(1)), false);
        let member = sealer(&key(1), 5);
        let sealed = member.seal(&ours()).unwrap();
        match hear(&sealed, from(), &mut gate) {
            Heard::Announcement(a, Some(id)) => {
                assert_eq!(a.username, "alice");
                assert_eq!(id, member.peer_id());
            }
            other => panic!("{other:?}"),
        }
        // The same datagram again, another network's, a plain one, a sealed query.
        assert!(matches!(
            hear(&sealed, from(), &mut gate),
            Heard::Refused(Refused::Stale(_))
        ));
        let theirs = sealer(&key(2), 5).seal(&ours()).unwrap();
        assert!(matches!(
            hear(&theirs, from(), &mut gate),
            Heard::Refused(Refused::OtherNetwork(_))
        ));
        assert!(matches!(
            hear(&ours(), from(), &mut gate),
            Heard::Refused(Refused::Plain)
        ));
        let query = member.seal(&crate::query::query_datagram()).unwrap();
        assert!(matches!(hear(&query, from(), &mut gate), Heard::Query));
        // An open listener refuses sealed datagrams.
        assert!(matches!(
            hear(&member.seal(&ours()).unwrap(), from(), &mut open()),
            Heard::Refused(Refused::Private)
        ));
    }

    #[test]
    fn allow_legacy_lets_plain_datagrams_in_as_legacy_only() {
        let mut gate = Gate::new(Some(&key(1)), true);
        // Our plain announcement: its extension is not believed.
        match hear(&ours(), from(), &mut gate) {
            Heard::Announcement(a, None) => assert!(a.p2p.is_none(), "{a:?}"),
            other => panic!("{other:?}"),
        }
        // A plain query is no query here: an announcement of nothing.
        assert!(matches!(
            hear(&crate::query::query_datagram(), from(), &mut gate),
            Heard::Announcement(a, None) if a.files.is_empty()
        ));
    }

    #[test]
    fn what_a_datagram_is() {
        assert!(matches!(
            hear(b"not json", from(), &mut open()),
            Heard::Malformed(_)
        ));
        assert!(matches!(
            hear(&crate::query::query_datagram(), from(), &mut open()),
            Heard::Query
        ));
        let legacy = br#"{"username":"ece","files":["ece_1"]}"#;
        assert!(
            matches!(hear(legacy, from(), &mut open()), Heard::Announcement(a, None) if a.username == "ece")
        );
        let hidden = br#"{"username":"a\u001b[31mb","files":["ece_1"]}"#;
        match hear(hidden, from(), &mut open()) {
            Heard::Malformed(why) => assert!(why.starts_with("the username"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offers_go_to_the_inbox_and_never_to_the_index() {
        use shared::digest::Digest;
        use shared::protocol::{AnnouncementExt, ContentMeta};
        let offer = OfferHeard {
            to: "carol".into(),
            id: "abc123".into(),
            name: "report.pdf".into(),
            meta: ContentMeta {
                size: 3,
                sha256: Digest::of(b"abc"),
                root: None,
            },
            expires_in: 60,
        };
        let bytes = Announcement::offer(
            "bob",
            &AnnouncementExt::new(6001, 60),
            &offer,
            shared::MAX_ANNOUNCE_DATAGRAM,
        )
        .unwrap();
        match hear(&bytes, from(), &mut open()) {
            Heard::Offer(heard, user, port, None) => {
                assert_eq!((heard, user.as_str(), port), (offer.clone(), "bob", 6001));
            }
            other => panic!("{other:?}"),
        }
        let mut index = crate::index::Index::new();
        let a = Announcement::decode(&bytes).unwrap();
        assert!(!index.apply(from().ip(), &a, 5001, Utc::now()));
        assert!(index.to_tags(Utc::now()).entries.is_empty());
        // An offer without an id is malformed, not an announcement.
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("\"offer\":\"abc123\",", "");
        assert!(
            matches!(
                hear(text.as_bytes(), from(), &mut open()),
                Heard::Malformed(_)
            ),
            "{text}"
        );
    }

    #[test]
    fn a_malformed_source_is_warned_about_once_per_gap_with_the_count_skipped() {
        let ip = from().ip();
        let t0 = Instant::now();
        let mut sources = MalformedSources::default();
        assert_eq!(sources.note(ip, t0), Some(0));
        assert_eq!(sources.note(ip, t0), None);
        assert_eq!(sources.note(ip, t0 + Duration::from_secs(1)), None);
        assert_eq!(
            sources.note(IpAddr::from([127, 0, 0, 8]), t0),
            Some(0),
            "another source"
        );
        assert_eq!(sources.note(ip, t0 + MALFORMED_LOG_GAP), Some(2));
    }

    #[test]
    fn excerpts_are_escaped_and_cut() {
        assert_eq!(excerpt(b"a\nb"), "a\\nb");
        let long = vec![b'x'; EXCERPT_BYTES + 1];
        assert_eq!(excerpt(&long), format!("{}…", "x".repeat(EXCERPT_BYTES)));
    }

    #[test]
    fn refusals_are_described_in_one_line() {
        let limits = Limits::default();
        let r = Refusals {
            long_datagrams: 1,
            over_source: 2,
            over_total: 3,
            evicted: 4,
            foreign: 5,
        };
        let line = describe_refusals(&r, limits);
        assert!(
            line.contains("5 announcements of entries that another peer ID holds"),
            "{line}"
        );
        assert!(
            line.contains("1 datagrams listed more than 512 chunks"),
            "{line}"
        );
        assert!(line.contains("2 new entries refused"), "{line}");
        assert!(line.contains("3 new entries refused, 4 evicted"), "{line}");
        assert_eq!(line.matches("; ").count(), 3);
    }

    #[test]
    fn add_unique_keeps_the_first_of_each() {
        let a = from();
        let b = SocketAddr::from(([127, 0, 0, 8], 5000));
        let mut list = vec![a];
        add_unique(&mut list, &[b, a, b]);
        assert_eq!(list, [a, b]);
    }
}
