//! What the announcer knows and says: the last snapshot of the chunk store and its
//! [`Shape`] (inline or compact), the targets, and the things it sends (an announcement, the
//! legacy list beside a compact one, an answer to a query, a goodbye).
//!
//! [`crate::run`] owns the clock (when to do each); this module owns the doing, and copes with
//! the network or the disk saying no: every lasting failure is warned about once
//! ([`shared::latch`]) and the loop carries on with what it last knew.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shared::catalog_file;
use shared::chunk::ChunkName;
use shared::instance::ServerRecord;
use shared::latch::{Latch, Latches};
use shared::peer_dir::PeerDir;
use shared::peers::PeersFile;
use shared::protocol::CatalogSummary;
use shared::protocol::{Announcement, AnnouncementExt, Kind, OfferHeard};
use shared::queries::QueryBox;
use shared::sends::{unix_now, SendsWatch};
use shared::store::{ChunkStore, Snapshot, SnapshotWatch};
use shared::trust::Wire;

use crate::budget::{self, AnswerBudget, Refusal};
use crate::config::{ChunkPort, Config};
use crate::ears::Ears;
use crate::legacy::{LegacyPolicy, Pacer};
use crate::shape::{self, Shape};

/// Most queries looked at in one poll, from each of the two ways they come (heard directly,
/// query files), so a flood of them cannot stall the loop; the query files left wait for the
/// next poll, the heard queries left are dropped.
const MAX_ANSWERS_PER_POLL: usize = 64;

/// How many times a withdrawal is sent ([`crate::WITHDRAW_REPEAT`] apart).
pub(crate) const WITHDRAW_SENDS: u8 = 3;

/// Most new offers sent at once ([`Announcer::send_new_offers`], every
/// [`crate::WITHDRAW_REPEAT`]): a folder sent whole is an offer per file, about 400 bytes
/// each, and a listener drops what a source sends beyond 256 KiB/s (after a 1 MiB burst); 128
/// every 300 ms is about 170 KB/s. The rest wait for the next send.
pub(crate) const NEW_OFFERS_PER_SEND: usize = 128;

/// Queries left unanswered because of the [`budget`] are logged at most once per this long.
pub(crate) const UNANSWERED_LOG_GAP: Duration = Duration::from_secs(10);

/// The announcer's state. Only [`crate::run`]'s thread touches it.
pub(crate) struct Announcer {
    socket: UdpSocket,
    /// Seals every datagram on a private network.
    wire: Wire,
    pub(crate) config: Config,
    store: ChunkStore,
    /// `DIR/peers.txt`, polled every [`shared::peers::PEERS_POLL`].
    peers_file: PeersFile,
    /// `DIR/.queries/`, polled every [`crate::QUERY_POLL`].
    queries: QueryBox,
    /// The sockets queries are heard on directly, read every [`crate::QUERY_POLL`].
    ears: Ears,
    /// The last snapshot read successfully; what we announce.
    snapshot: Snapshot,
    /// How `snapshot` is announced, worked out when it changes.
    shape: Shape,
    /// The legacy list's rounds, when a compact announcement is to be read by legacy peers
    /// too ([`crate::legacy`]).
    legacy: Pacer,
    /// Chunks that joined the snapshot since the last announcement: what legacy peers are told
    /// at once between two rounds.
    legacy_added: Vec<ChunkName>,
    /// Whether the legacy list was wanted when last looked at, to log when that changes.
    legacy_wanted: bool,
    /// Contents the last snapshots dropped, to withdraw, with how many more times
    /// ([`WITHDRAW_SENDS`] in all: one lost datagram must not leave them listed until they
    /// expire).
    withdrawing: BTreeMap<String, u8>,
    /// `DIR/sends.txt`: the offers to make, polled every [`shared::sends::SENDS_POLL`].
    sends: SendsWatch,
    /// The ids of the offers ready last time looked (live, content hashed).
    ready_offers: BTreeSet<String>,
    /// Offers that just became ready, with how many more times to send them at once
    /// ([`WITHDRAW_SENDS`] in all, [`crate::WITHDRAW_REPEAT`] apart, like a withdrawal).
    new_offers: BTreeMap<String, u8>,
    /// `sends.txt` cannot be read.
    sends_unreadable: Latch,
    /// The store as last read, read again only where it changed ([`Announcer::refresh`]).
    watch: SnapshotWatch,
    /// The chunk-server port we announce; `None` while no chunk server runs for the folder
    /// ([`ChunkPort::Recorded`]): then nothing is sent.
    port: Option<u16>,
    /// No chunk server runs for the folder.
    no_server: Latch,
    /// The chunk server's record cannot be read.
    record_unreadable: Latch,
    /// The store cannot be read.
    store_unreadable: Latch,
    /// The catalog cannot be published.
    catalog_unwritable: Latch,
    /// The query folder cannot be read.
    queries_unreadable: Latch,
    /// The targets sends fail to.
    unreachable: Latches<SocketAddr>,
    /// Chunks already reported as too big to announce.
    too_big: Latches<ChunkName>,
    /// What answers to queries may still cost.
    budget: AnswerBudget,
    /// Queries left unanswered since that was last logged: over the per-address limit, over
    /// the bytes per second.
    unanswered: (u64, u64),
    /// When unanswered queries were last logged.
    unanswered_logged: Option<Instant>,
}

impl Announcer {
    pub(crate) fn new(
        socket: UdpSocket,
        config: Config,
        store: ChunkStore,
        peers_file: PeersFile,
        queries: QueryBox,
        ears: Ears,
        wire: Wire,
    ) -> Self {
        Announcer {
            socket,
            wire,
            watch: SnapshotWatch::new(store.clone()),
            store,
            peers_file,
            queries,
            ears,
            snapshot: Snapshot::default(),
            shape: Shape::Inline,
            legacy: Pacer::default(),
            legacy_added: Vec::new(),
            legacy_wanted: false,
            withdrawing: BTreeMap::new(),
            sends: SendsWatch::new(&PeerDir::new(&config.dir)),
            ready_offers: BTreeSet::new(),
            new_offers: BTreeMap::new(),
            sends_unreadable: Latch::default(),
            port: match config.chunk_port {
                ChunkPort::Fixed(port) => Some(port),
                ChunkPort::Recorded => None,
            },
            no_server: Latch::default(),
            record_unreadable: Latch::default(),
            store_unreadable: Latch::default(),
            catalog_unwritable: Latch::default(),
            queries_unreadable: Latch::default(),
            unreachable: Latches::default(),
            too_big: Latches::default(),
            budget: AnswerBudget::new(config.answer_rate, Instant::now()),
            config,
            unanswered: (0, 0),
            unanswered_logged: None,
        }
    }

    /// The first look at the store and at `peers.txt`, before the first announcement.
    pub(crate) fn look_around(&mut self) {
        self.refresh(true);
        self.peers_file.poll();
    }

    /// Whether the store's folders (`temp/` and its manifests) may have changed since the last
    /// [`Announcer::refresh`]: one `stat` each, cheap enough to look many times a second.
    /// Every chunk and manifest appears or goes by a rename or removal in one of them
    /// ([`SnapshotWatch`]).
    pub(crate) fn store_may_have_changed(&self) -> bool {
        self.watch.may_have_changed()
    }

    /// Reads again what changed in the store, and with `look_at_files` every file served in
    /// place (one `stat` each: a file in `downloads/` edited or deleted tells nobody); returns
    /// whether what we announce changed.
    pub(crate) fn refresh(&mut self, look_at_files: bool) -> bool {
        match self.watch.refresh(look_at_files) {
            Ok(read) => {
                if self.store_unreadable.reset() {
                    log::info!("chunk store {} readable again", self.store.root().display());
                }
                let Some(snapshot) = read.filter(|s| *s != self.snapshot) else {
                    return false;
                };
                {
                    let now: BTreeSet<&str> = snapshot.chunks.iter().map(|c| c.content()).collect();
                    for chunk in &self.snapshot.chunks {
                        if !now.contains(chunk.content()) {
                            self.withdrawing
                                .insert(chunk.content().to_owned(), WITHDRAW_SENDS);
                        }
                    }
                    // Held again: nothing to withdraw any more.
                    self.withdrawing
                        .retain(|name, _| !now.contains(name.as_str()));
                }
                self.legacy_added
                    .extend(shape::added(&self.snapshot.chunks, &snapshot.chunks));
                // The old snapshot goes before the catalog is made: with 10,000 contents each
                // is megabytes, and so is the catalog; all three at once were the heap's peak.
                self.snapshot = snapshot;
                let (shape, catalog) = Shape::of(
                    &self.snapshot,
                    &self.config.username,
                    self.wire.payload_limit(),
                );
                self.publish(shape, &catalog);
                self.shape = shape;
                true
            }
            Err(e) => {
                if self.store_unreadable.trip_because(&e) {
                    log::warn!("{e}; announcing what was last read");
                }
                false
            }
        }
    }

    /// Publishes the catalog of a compact announcement for the chunk server to serve
    /// ([`catalog_file`]), or withdraws the one published when the announcement is inline.
    /// A catalog that cannot be written is warned about once; listeners then fail to fetch it
    /// and keep what they had.
    fn publish(&mut self, shape: Shape, catalog: &[u8]) {
        let dir = PeerDir::new(&self.config.dir);
        let Shape::Compact(summary) = shape else {
            if matches!(self.shape, Shape::Compact(_)) {
                catalog_file::withdraw(&dir);
            }
            return;
        };
        match catalog_file::publish(&dir, catalog, &summary.sha256) {
            Ok(()) => {
                if self.catalog_unwritable.reset() {
                    log::info!("the catalog can be written again");
                }
                log::debug!(
                    "announcing compactly: catalog {} of {} contents ({} bytes)",
                    summary.sha256.short(16),
                    summary.count,
                    catalog.len()
                );
            }
            Err(e) => {
                if self.catalog_unwritable.trip_because(&e) {
                    log::warn!(
                        "cannot write the catalog {}: {e}; our listeners cannot fetch it",
                        catalog_file::path(&dir, &summary.sha256).display()
                    );
                }
            }
        }
    }

    /// Removes the catalog published, if any: the announcer stops.
    pub(crate) fn withdraw_catalog(&self) {
        if matches!(self.shape, Shape::Compact(_)) {
            catalog_file::withdraw(&PeerDir::new(&self.config.dir));
        }
    }

    /// With [`ChunkPort::Recorded`], re-reads where the folder's chunk server listens; returns
    /// whether the port to announce changed to another one, that is when to announce at once.
    /// When the server goes away, says goodbye (listeners forget our files) and falls silent.
    pub(crate) fn refresh_server(&mut self) -> bool {
        if self.config.chunk_port != ChunkPort::Recorded {
            return false;
        }
        let dir = PeerDir::new(&self.config.dir);
        let port = match ServerRecord::read_live(&dir) {
            Ok(record) => {
                if self.record_unreadable.reset() {
                    log::info!("{} readable again", ServerRecord::path(&dir).display());
                }
                record.map(|r| r.port)
            }
            Err(e) => {
                if self.record_unreadable.trip_because(&e) {
                    log::warn!(
                        "cannot read {}: {e}; announcing port {:?} as before",
                        ServerRecord::path(&dir).display(),
                        self.port
                    );
                }
                return false;
            }
        };
        if port == self.port {
            if port.is_none() && self.no_server.trip() {
                log::warn!(
                    "no chunk server is running for {}: announcing nothing until one starts",
                    dir.root().display()
                );
            }
            return false;
        }
        match port {
            Some(port) => {
                self.no_server.reset();
                log::info!(
                    "the chunk server of {} listens on port {port}: announcing it",
                    dir.root().display()
                );
            }
            None => {
                self.goodbye();
                self.no_server.trip();
                log::warn!(
                    "the chunk server of {} stopped: announcing nothing until one starts",
                    dir.root().display()
                );
            }
        }
        self.port = port;
        port.is_some()
    }

    /// Re-reads `peers.txt` if it changed, and announces at once to the peers it added, so a
    /// new peer does not wait for the next interval.
    pub(crate) fn poll_peers(&mut self) {
        let before = self.targets();
        if !self.peers_file.poll() {
            return;
        }
        let added: Vec<SocketAddr> = self
            .targets()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if !added.is_empty() && self.port.is_some() {
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

    /// The extension every datagram carries, of the given kind, without contents, naming
    /// `port` as our chunk server's.
    fn ext(&self, kind: Kind, port: u16) -> AnnouncementExt {
        AnnouncementExt {
            instance: Some(self.config.instance.clone()),
            kind,
            ..AnnouncementExt::new(port, interval_secs(self.config.interval))
        }
    }

    /// The extension of a compact announcement's datagrams: the catalog's summary, no
    /// contents.
    fn compact_ext(&self, port: u16, summary: CatalogSummary) -> AnnouncementExt {
        AnnouncementExt {
            catalog: Some(summary),
            ..self.ext(Kind::Announce, port)
        }
    }

    /// The current snapshot as datagrams: the inline ones, or the one datagram of a compact
    /// announcement; none while no chunk server runs.
    fn datagrams(&mut self) -> Vec<Vec<u8>> {
        let Some(port) = self.port else {
            return Vec::new();
        };
        if let Shape::Compact(summary) = self.shape {
            let ext = self.compact_ext(port, summary);
            return vec![Announcement::ours(&self.config.username, &[], ext).encode()];
        }
        let (datagrams, dropped) = Announcement::pack(
            &self.config.username,
            Some(&self.ext(Kind::Announce, port)),
            &self.snapshot.chunks,
            &self.snapshot.metas,
            self.wire.payload_limit(),
        );
        for name in dropped {
            let text = name.to_string();
            if self.too_big.trip(name) {
                log::warn!(
                    "chunk {text} cannot fit in one {}-byte datagram: not announced",
                    self.wire.payload_limit()
                );
            }
        }
        datagrams
    }

    /// Sends the current snapshot to every target, after withdrawing the contents no longer
    /// held (so listeners drop them at once, not when they expire; a legacy listener that
    /// shows only a peer's last datagram sees the announcement last); nothing while no chunk
    /// server runs. A compact announcement tells legacy peers, between two rounds of the
    /// legacy list, the contents added since the last announcement.
    pub(crate) fn announce(&mut self) {
        self.withdraw();
        if self.port.is_none() {
            return;
        }
        let targets = self.targets();
        let mut datagrams = self.datagrams();
        // The offers go again with every announcement, until they expire.
        let offers = self.offers();
        datagrams.extend(self.offer_datagrams(&offers));
        self.send_all(&datagrams, &targets);
        let added = std::mem::take(&mut self.legacy_added);
        let now = Instant::now();
        if self.legacy_wanted(now) && !self.legacy.may_start(self.config.interval, now) {
            let at_once = Pacer::send_added(self.legacy_datagrams(&added));
            self.send_all(&at_once, &targets);
        }
        let contents: BTreeSet<&str> = self.snapshot.chunks.iter().map(|c| c.content()).collect();
        let bytes: usize = datagrams.iter().map(Vec::len).sum();
        match self.shape {
            Shape::Inline => log::debug!(
                "announced {} chunks of {} contents in {} datagrams ({bytes} bytes) to {} targets",
                self.snapshot.chunks.len(),
                contents.len(),
                datagrams.len(),
                targets.len()
            ),
            Shape::Compact(summary) => log::debug!(
                "announced the catalog {} of {} contents ({} chunks) in {} datagrams ({bytes} \
                 bytes) to {} targets",
                summary.sha256.short(16),
                summary.count,
                self.snapshot.chunks.len(),
                datagrams.len(),
                targets.len()
            ),
        }
    }

    /// Whether the legacy list is to be sent at `now`: a compact announcement, a chunk server
    /// to announce, and the policy ([`crate::legacy::LegacyPolicy`]) says so.
    fn legacy_wanted(&self, now: Instant) -> bool {
        self.port.is_some()
            && matches!(self.shape, Shape::Compact(_))
            && self.config.legacy_list.wants_list(
                self.wire.is_sealed(),
                self.ears.legacy_heard().map(|(t, _)| t),
                now,
            )
    }

    /// The legacy-list datagrams of `chunks`: their names in `files`, for legacy listeners,
    /// and the catalog's summary, so ours read them as the compact announcement they belong
    /// to (and never as a legacy peer's list).
    fn legacy_datagrams(&mut self, chunks: &[ChunkName]) -> Vec<Vec<u8>> {
        let (Some(port), Shape::Compact(summary)) = (self.port, self.shape) else {
            return Vec::new();
        };
        if chunks.is_empty() {
            return Vec::new();
        }
        let ext = self.compact_ext(port, summary);
        let (datagrams, dropped) = Announcement::pack(
            &self.config.username,
            Some(&ext),
            chunks,
            &BTreeMap::new(),
            self.wire.payload_limit(),
        );
        for name in dropped {
            let text = name.to_string();
            if self.too_big.trip(name) {
                log::warn!("chunk {text} cannot fit in one datagram: not in the legacy list");
            }
        }
        datagrams
    }

    /// Sends the legacy list's datagrams that are due: starts a round when one may start
    /// (once per interval), ends it when the list is not wanted any more.
    pub(crate) fn pace_legacy(&mut self) {
        let now = Instant::now();
        let wanted = self.legacy_wanted(now);
        if wanted != self.legacy_wanted {
            self.legacy_wanted = wanted;
            match (wanted, self.ears.legacy_heard()) {
                (true, Some((_, from))) if self.config.legacy_list == LegacyPolicy::Auto => {
                    log::info!(
                        "a legacy peer announced from {from}: sending legacy peers the list of \
                         chunk names too, paced, while one is heard"
                    );
                }
                (true, _) => log::info!("sending legacy peers the list of chunk names, paced"),
                (false, _) => log::info!("not sending the list of chunk names to legacy peers"),
            }
        }
        if !wanted {
            self.legacy.stop();
            return;
        }
        if self.legacy.may_start(self.config.interval, now) {
            let chunks = self.snapshot.chunks.clone();
            let round = self.legacy_datagrams(&chunks);
            log::debug!(
                "legacy list: {} datagrams over the next {:.0?}",
                round.len(),
                self.config.interval.mul_f64(crate::legacy::SPREAD)
            );
            self.legacy.start(round, self.config.interval, now);
            self.legacy_added.clear();
        }
        let due = self.legacy.due(now).to_vec();
        if !due.is_empty() {
            let targets = self.targets();
            self.send_all(&due, &targets);
        }
    }

    /// When the next datagram of the legacy list is due, if a round is in progress.
    pub(crate) fn next_legacy(&self) -> Option<Instant> {
        self.legacy.next_due()
    }

    /// Whether contents are still to be withdrawn (again): [`crate::run`] then calls
    /// [`Announcer::withdraw`] every [`crate::WITHDRAW_REPEAT`].
    pub(crate) fn is_withdrawing(&self) -> bool {
        !self.withdrawing.is_empty()
    }

    /// Sends the withdrawal of the contents no longer held to every target, and counts it;
    /// nothing (and nothing left to send) while no chunk server runs.
    pub(crate) fn withdraw(&mut self) {
        let Some(port) = self.port else {
            self.withdrawing.clear();
            return;
        };
        if self.withdrawing.is_empty() {
            return;
        }
        let names: Vec<String> = self.withdrawing.keys().cloned().collect();
        let ext = self.ext(Kind::Withdraw, port);
        let datagrams = Announcement::pack_withdrawals(
            &self.config.username,
            &ext,
            &names,
            self.wire.payload_limit(),
        );
        let targets = self.targets();
        self.send_all(&datagrams, &targets);
        log::debug!("withdrew {}", names.join(", "));
        self.withdrawing.retain(|_, left| {
            *left -= 1;
            *left > 0
        });
    }

    /// Re-reads `sends.txt` if it changed, and looks which offers are ready (live, their
    /// content hashed by the chunk server); returns whether one became ready, that is when to
    /// send it at once.
    pub(crate) fn poll_sends(&mut self) -> bool {
        match self.sends.poll() {
            Ok(_) => {
                self.sends_unreadable.reset();
            }
            Err(e) => {
                if self.sends_unreadable.trip_because(&e) {
                    log::warn!(
                        "cannot read {}: {e}; offering what it last listed",
                        self.sends.path().display()
                    );
                }
            }
        }
        let ready: BTreeSet<String> = self.offers().into_iter().map(|o| o.id).collect();
        let mut fresh = false;
        for id in ready.difference(&self.ready_offers) {
            self.new_offers.insert(id.clone(), WITHDRAW_SENDS);
            fresh = true;
        }
        self.new_offers.retain(|id, _| ready.contains(id));
        self.ready_offers = ready;
        fresh
    }

    /// The offers to make now: those of `sends.txt` still live whose content the store
    /// holds (offered, or also shared), with the seconds left.
    fn offers(&self) -> Vec<OfferHeard> {
        let now = unix_now();
        self.sends
            .all()
            .iter()
            .filter(|s| s.is_live(now))
            .filter_map(|s| {
                let name = s.name.as_str();
                let meta = self
                    .snapshot
                    .offered
                    .get(name)
                    .or_else(|| self.snapshot.metas.get(name))?;
                Some(OfferHeard {
                    to: s.to.clone(),
                    id: s.id.clone(),
                    name: name.to_owned(),
                    meta: *meta,
                    expires_in: s.left(now),
                })
            })
            .collect()
    }

    /// The offer datagrams of `offers`; none while no chunk server runs.
    fn offer_datagrams(&self, offers: &[OfferHeard]) -> Vec<Vec<u8>> {
        let Some(port) = self.port else {
            return Vec::new();
        };
        let ext = self.ext(Kind::Offer, port);
        offers
            .iter()
            .filter_map(|offer| {
                let datagram = Announcement::offer(
                    &self.config.username,
                    &ext,
                    offer,
                    self.wire.payload_limit(),
                );
                if datagram.is_none() {
                    log::warn!(
                        "the offer of {} to {} cannot fit in one datagram: not sent",
                        offer.name,
                        offer.to
                    );
                }
                datagram
            })
            .collect()
    }

    /// Whether offers that just became ready are still to be sent (again): [`crate::run`]
    /// then calls [`Announcer::send_new_offers`] every [`crate::WITHDRAW_REPEAT`].
    pub(crate) fn has_new_offers(&self) -> bool {
        !self.new_offers.is_empty()
    }

    /// Sends the offers that just became ready to every target, at most
    /// [`NEW_OFFERS_PER_SEND`] of them, those sent the fewest times first, and counts it.
    pub(crate) fn send_new_offers(&mut self) {
        if self.new_offers.is_empty() {
            return;
        }
        let offers = next_new_offers(self.offers(), &self.new_offers, NEW_OFFERS_PER_SEND);
        let sent: BTreeSet<String> = offers.iter().map(|o| o.id.clone()).collect();
        let datagrams = self.offer_datagrams(&offers);
        let targets = self.targets();
        self.send_all(&datagrams, &targets);
        for offer in &offers {
            log::debug!(
                "offered {} to {} (offer {})",
                offer.name,
                offer.to,
                offer.id
            );
        }
        count_sends(&mut self.new_offers, &sent);
    }

    /// Tells every target we are leaving: one `goodbye` datagram, without chunks. Nothing when
    /// nothing was announced (no chunk server runs).
    pub(crate) fn goodbye(&mut self) {
        let Some(port) = self.port else {
            return;
        };
        let goodbye =
            Announcement::ours(&self.config.username, &[], self.ext(Kind::Goodbye, port)).encode();
        let targets = self.targets();
        self.send_all(&[goodbye], &targets);
        log::debug!("said goodbye to {}", list(&targets));
    }

    /// Answers the queries heard since the last call, directly ([`Ears`]) and through
    /// `DIR/.queries/` ([`QueryBox::take`]): each querier gets the whole announcement by
    /// unicast, within the [`budget`], which also answers a querier heard both ways once; the
    /// others go unanswered.
    pub(crate) fn answer_queries(&mut self) {
        let heard = self.ears.take(MAX_ANSWERS_PER_POLL);
        let posted = match self.queries.take(MAX_ANSWERS_PER_POLL) {
            Ok(queries) => {
                if self.queries_unreadable.reset() {
                    log::info!("{} readable again", self.queries.dir().display());
                }
                queries
            }
            Err(e) => {
                if self.queries_unreadable.trip_because(&e) {
                    log::warn!(
                        "cannot read {}: {e}; queries go unanswered",
                        self.queries.dir().display()
                    );
                }
                Vec::new()
            }
        };
        if self.port.is_none() {
            // No chunk server: nothing to offer, and the queries are dropped unanswered.
            return;
        }
        let queries = heard.into_iter().map(|addr| (addr, "heard")).chain(
            posted
                .into_iter()
                .map(|addr| (addr, "passed on by our listener")),
        );
        let mut datagrams: Option<Vec<Vec<u8>>> = None;
        for (addr, how) in queries {
            if let Err(refusal) = self.budget.allow(addr, Instant::now()) {
                match refusal {
                    // The same query both ways, or asked again within the gap: not news.
                    Refusal::Repeat => {
                        log::debug!("the query of {addr} ({how}) was answered already");
                        continue;
                    }
                    Refusal::PerAddress => self.unanswered.0 += 1,
                    Refusal::Bytes => self.unanswered.1 += 1,
                }
                log::debug!("not answering the query of {addr} ({how}): {refusal:?} limit");
                continue;
            }
            if datagrams.is_none() {
                let mut answer = self.datagrams();
                let offers = self.offers();
                answer.extend(self.offer_datagrams(&offers));
                datagrams = Some(answer);
            }
            let answer = datagrams.as_deref().unwrap_or_default();
            self.send_all(answer, &[addr]);
            self.budget.spent(answer.iter().map(Vec::len).sum());
            log::debug!(
                "answered the query of {addr} ({how}) with {} datagrams",
                answer.len()
            );
        }
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

    /// Sends every datagram to every target; a failing target is warned about once while it
    /// fails and does not stop the others.
    fn send_all(&mut self, datagrams: &[Vec<u8>], targets: &[SocketAddr]) {
        // Sealed once for all targets: a receiver takes each sealed datagram once.
        let sealed;
        let datagrams = if self.wire.is_sealed() {
            match datagrams
                .iter()
                .map(|d| self.wire.wrap(d))
                .collect::<std::io::Result<Vec<_>>>()
            {
                Ok(wrapped) => {
                    sealed = wrapped;
                    &sealed[..]
                }
                Err(e) => {
                    log::warn!("cannot seal datagrams: {e}; nothing sent");
                    return;
                }
            }
        } else {
            datagrams
        };
        for target in targets {
            let result = datagrams
                .iter()
                .try_for_each(|d| self.socket.send_to(d, target).map(drop));
            match result {
                Ok(()) => {
                    if self.unreachable.reset(target) {
                        log::info!("sending to {target} works again");
                    }
                }
                Err(e) => {
                    if self.unreachable.trip_because(*target, &e) {
                        log::warn!("cannot send to {target}: {e}");
                    }
                }
            }
        }
    }
}

/// Of `ready` (the offers to make now), the new ones (`left`: how many sends each has left) to
/// send at once: at most `max`, those with the most sends left first, so that every offer of a
/// folder is heard once before any is heard twice.
fn next_new_offers(
    ready: Vec<OfferHeard>,
    left: &BTreeMap<String, u8>,
    max: usize,
) -> Vec<OfferHeard> {
    let mut offers: Vec<OfferHeard> = ready
        .into_iter()
        .filter(|o| left.contains_key(&o.id))
        .collect();
    offers.sort_by_key(|o| std::cmp::Reverse(left.get(&o.id).copied()));
    offers.truncate(max);
    offers
}

/// Counts one send of the new offers `sent`; those sent enough times leave `left`.
fn count_sends(left: &mut BTreeMap<String, u8>, sent: &BTreeSet<String>) {
    left.retain(|id, n| {
        if sent.contains(id) {
            *n = n.saturating_sub(1);
        }
        *n > 0
    });
}

/// The interval as announced: whole seconds, rounded up, at least 1, so a listener never
/// expires us before our next announcement.
pub(crate) fn interval_secs(interval: Duration) -> u64 {
    let secs = interval.as_secs() + u64::from(interval.subsec_nanos() > 0);
    secs.max(1)
}

/// Addresses as one comma-separated line, for the log.
pub(crate) fn list(targets: &[SocketAddr]) -> String {
    let names: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_offers_go_out_paced_each_heard_once_before_any_twice() {
        let ready: Vec<OfferHeard> = (0..300)
            .map(|i| OfferHeard {
                to: "carol".into(),
                id: format!("o{i:03}"),
                name: format!("photos/{i}.jpg"),
                meta: shared::protocol::ContentMeta {
                    size: 1,
                    sha256: shared::digest::Digest::of(b"x"),
                    root: None,
                },
                expires_in: 60,
            })
            .collect();
        let mut left: BTreeMap<String, u8> = ready
            .iter()
            .map(|o| (o.id.clone(), WITHDRAW_SENDS))
            .collect();
        let mut sends: BTreeMap<String, u8> = BTreeMap::new();
        let mut rounds = 0;
        while !left.is_empty() {
            let batch = next_new_offers(ready.clone(), &left, NEW_OFFERS_PER_SEND);
            assert!(!batch.is_empty() && batch.len() <= NEW_OFFERS_PER_SEND);
            let least = sends.values().copied().min().unwrap_or(0);
            for o in &batch {
                let before = sends.get(&o.id).copied().unwrap_or(0);
                // Nobody is sent a second time while another was never sent.
                if before > 0 {
                    assert_eq!(sends.len(), ready.len(), "round {rounds}");
                }
                assert!(before <= least + 1);
                sends.insert(o.id.clone(), before + 1);
            }
            let sent: BTreeSet<String> = batch.into_iter().map(|o| o.id).collect();
            count_sends(&mut left, &sent);
            rounds += 1;
        }
        assert_eq!(
            rounds,
            (300 * usize::from(WITHDRAW_SENDS)).div_ceil(NEW_OFFERS_PER_SEND)
        );
        assert!(sends.values().all(|&n| n == WITHDRAW_SENDS), "{sends:?}");
        // Offers not ready (not hashed yet) are not sent, and wait.
        let mut left = BTreeMap::from([("later".to_owned(), 3)]);
        assert!(next_new_offers(ready.clone(), &left, 10).is_empty());
        count_sends(&mut left, &BTreeSet::new());
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn interval_is_announced_in_whole_seconds_rounded_up() {
        assert_eq!(interval_secs(Duration::from_secs(60)), 60);
        assert_eq!(interval_secs(Duration::from_millis(1500)), 2);
        assert_eq!(interval_secs(Duration::from_millis(200)), 1);
        assert_eq!(interval_secs(Duration::ZERO), 1);
    }
}
