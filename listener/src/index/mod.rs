//! The listener's memory: who holds which chunk of which content, and since when.
//!
//! Pure logic, no I/O and no clock: every operation takes `now`, so tests need no sleeping.
//! [`Index::apply`] records one datagram, [`Index::expire`] forgets what was not re-announced in
//! time, and [`Index::to_tags`] renders what `tags.txt` shows. One entry and the time rules
//! that apply to it live in `holding`; the bounds, what they refused and the per-source counts
//! that eviction looks at live in `limits`; this file keeps the map and what a datagram does
//! to it.
//!
//! An entry is keyed by the holder's source IP, its chunk-server port, the content name and the
//! content digest: two different files sharing a name, on one peer or two, stay apart, and so do
//! two peers behind one address but on different ports. Each chunk has its own last-seen time,
//! because one content's chunks may travel in different datagrams (a peer with many contents
//! splits its announcement), and a chunk the peer stopped announcing must drop out on its own.
//!
//! # Cost and limits
//! Entries are kept in key order, source IP first, so everything a datagram does touches only
//! what it names: each content it lists is one lookup, the other versions of a content are a
//! range of neighbouring keys, and a restart or goodbye is a range over the sender's own
//! address. Applying a datagram therefore costs the same whatever the size of the index. The
//! index is bounded ([`Limits`]): a datagram adds at most [`Limits::max_chunks_per_datagram`]
//! chunks, a source address holds at most [`Limits::max_entries_per_source`] entries, and the
//! whole index at most [`Limits::max_entries`]. When it is full, a new entry from an address
//! holding fewer entries than the biggest holder (by two, or none at all) evicts one of the
//! biggest holder's, so a flood from a few addresses cannot keep a new honest peer out, and a
//! flood from many settles into fair shares. What was refused is counted
//! ([`Index::take_refusals`]) for the caller to log.
//!
//! # Restarts and goodbyes
//! Our peers also say when they restart and when they leave. Every datagram of ours carries the
//! sender's *instance* (one per run); the index remembers the instance last seen from each
//! source IP and username with chunks. An announcement of another instance *that lists chunks*
//! first drops their `p2p` entries, so a restarted peer replaces its old entries (even under
//! another chunk port) instead of sitting beside them until they expire; one without chunks
//! changes nothing (else any host could erase a peer with a forged empty datagram from the
//! peer's address). A `withdraw` (a file unshared or removed) drops the named contents of the
//! sender at its port at once, under the same instance rule as a goodbye. A `goodbye` drops the sender's `p2p` entries at its port at once, but only
//! when it carries the instance recorded for that address and username: a goodbye without it,
//! or with another, is ignored. Two peers behind one address (two folders on one laptop) leave
//! each other alone. And since one of our peers holds at most one content per name, a new
//! digest for a name at an address replaces the old entry at once (a file replaced, or
//! announced before its digest was known).
//!
//! # Compact announcements
//! A peer with many contents announces a summary of its catalog instead of its chunks; the
//! caller fetches the catalog the summary names ([`Index::catalog_wanted`]) and applies it
//! once checked ([`Index::apply_catalog`]): it replaces that peer's entries. The rules are in
//! `catalog`.
//!
//! # Legacy peers
//! Legacy entries carry no instance and no digest and are never touched by any of that. They
//! announce no interval either: the index observes it, as the time between two announcements
//! of the same content (one second apart at least, so duplicates and split announcements do not
//! count), bounded to [`LEGACY_MIN_INTERVAL_SECS`]..=[`LEGACY_MAX_INTERVAL_SECS`]; it rises at
//! once with a longer gap and falls halfway towards a shorter one. Until a first gap is seen
//! it is the legacy 60 s. And a legacy peer may announce an original file whose name ends in
//! `_<1-5>` (`photo_2`) beside its chunks (`photo_2_1` …): read as a chunk name, it would make
//! a fake offer `photo` holding chunk 2 only. A legacy entry whose every chunk is such a name,
//! the content name of other chunks the same peer announces, is not shown.

mod catalog;
mod holding;
mod limits;
mod pending;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};

use shared::chunk::ChunkSet;
use shared::protocol::{Announcement, Kind};
use shared::tags::{Proto, TagEntry, TagsIndex};
use shared::trust::PeerId;
use shared::username::sanitize as sanitize_username;
use shared::{CHUNKS_PER_FILE, DEFAULT_ANNOUNCE_INTERVAL_SECS};

use catalog::CatalogRecord;
pub use catalog::{compact_summary, CatalogPeer, CatalogWanted};
#[cfg(test)]
use holding::MAX_INSTANCE_BYTES;
use holding::{clamp_interval, is_original_file_name, truncate_instance, Holding, Key};
pub use holding::{readable_extension, MAX_INTERVAL_SECS};
pub use holding::{LEGACY_MAX_INTERVAL_SECS, LEGACY_MIN_INTERVAL_SECS};
use limits::SourceCounts;
pub use limits::{
    Limits, Refusals, DEFAULT_MAX_CHUNKS_PER_DATAGRAM, DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_ENTRIES_PER_SOURCE,
};
use pending::Pending;
pub use pending::MAX_REFRESH_DELAY_SECS;

/// The listener's index of holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    limits: Limits,
    holdings: BTreeMap<Key, Holding>,
    /// The last instance announced with chunks from each source IP and peer (username and,
    /// on a private network, peer ID).
    instances: BTreeMap<(IpAddr, Who), String>,
    /// On a private network: the peer ID each username was first heard from. Another ID
    /// under a pinned name is listed apart as an impostor.
    pins: BTreeMap<String, PeerId>,
    /// Pins made since the last [`Index::take_new_pins`], for the caller to keep.
    new_pins: Vec<(String, PeerId)>,
    /// How many entries each source IP holds.
    counts: SourceCounts,
    /// What the limits refused since the last [`Index::take_refusals`].
    refusals: Refusals,
    /// The impostors already warned about.
    impostors_warned: BTreeSet<(String, PeerId)>,
    /// The catalog applied for each peer that announces compactly (see `catalog`).
    catalogs: BTreeMap<CatalogPeer, CatalogRecord>,
    /// What is not written to `tags.txt` yet, and by when it is to be (see `pending`).
    pending: Pending,
}

/// Who sent a datagram: its username and, on a private network, the peer ID that signed it.
/// Entries, instances, goodbyes and withdrawals belong to one `Who`: a member cannot speak for
/// another, even from the other's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Who {
    pub(crate) user: String,
    pub(crate) id: Option<PeerId>,
}

impl Who {
    pub(crate) fn new(user: &str, id: Option<PeerId>) -> Who {
        Who {
            user: user.to_owned(),
            id,
        }
    }
}

impl Index {
    /// An empty index with the default [`Limits`].
    pub fn new() -> Index {
        Index::default()
    }

    /// An empty index bounded by `limits`.
    pub fn with_limits(limits: Limits) -> Index {
        Index {
            limits,
            ..Index::default()
        }
    }

    /// An index seeded from a previously written `tags.txt`: each listed chunk counts as seen at
    /// its entry's `LAST_SEEN`, so entries a restart finds stale still expire on time.
    pub fn from_tags(tags: &TagsIndex) -> Index {
        Index::from_tags_with(tags, Limits::default())
    }

    /// [`Index::from_tags`], bounded by `limits` (lines beyond them are dropped).
    pub fn from_tags_with(tags: &TagsIndex, limits: Limits) -> Index {
        let mut index = Index::with_limits(limits);
        for entry in &tags.entries {
            let ip = entry.addr.ip().to_canonical();
            let key = Key {
                ip,
                port: entry.addr.port(),
                content: entry.content.clone(),
                sha256: entry.sha256,
            };
            if !index.holdings.contains_key(&key) {
                if !index.admit(ip) {
                    continue;
                }
                let interval = match entry.proto {
                    Proto::Legacy => entry
                        .interval
                        .clamp(LEGACY_MIN_INTERVAL_SECS, LEGACY_MAX_INTERVAL_SECS),
                    Proto::P2p(_) => clamp_interval(entry.interval),
                };
                let who = Who::new(&sanitize_username(&entry.user), entry.id);
                let mut holding = Holding::new(&who, entry.proto, interval);
                holding.impostor = entry.impostor;
                if let (Some(id), false) = (entry.id, entry.impostor) {
                    index.pins.entry(who.user.clone()).or_insert(id);
                }
                holding.size = entry.size;
                holding.root = entry.root;
                index.insert_new(key.clone(), holding);
            }
            if let Some(holding) = index.holdings.get_mut(&key) {
                for i in entry.chunks.indexes() {
                    let slot = &mut holding.seen[usize::from(i - 1)];
                    *slot = (*slot).max(Some(entry.last_seen));
                }
            }
        }
        index.refusals = Refusals::default();
        index.new_pins.clear();
        index
    }

    /// Adds pins kept from earlier runs (`known-peers.txt`): each username to the first peer
    /// ID heard under it.
    pub fn with_pins(mut self, pins: impl IntoIterator<Item = (String, PeerId)>) -> Index {
        self.pins.extend(pins);
        self
    }

    /// Every pin: each username heard on a private network, and the first peer ID heard
    /// under it.
    pub fn pins(&self) -> &BTreeMap<String, PeerId> {
        &self.pins
    }

    /// The pins made since the last call (new usernames heard on a private network).
    pub fn take_new_pins(&mut self) -> Vec<(String, PeerId)> {
        std::mem::take(&mut self.new_pins)
    }

    /// Whether `user` speaking as `id` is an impostor (the name is pinned to another ID);
    /// pins the name to `id` when it is the first.
    pub fn is_impostor(&mut self, user: &str, id: PeerId) -> bool {
        self.check_pin(user, id)
    }

    /// Whether `user` announcing as `id` is an impostor (the name is pinned to another ID);
    /// pins the name to `id` when it is the first. Warns once per (name, ID) at most.
    fn check_pin(&mut self, user: &str, id: PeerId) -> bool {
        match self.pins.get(user) {
            Some(pinned) if *pinned == id => false,
            Some(pinned) => {
                let pinned = *pinned;
                if self.impostors_warned.insert((user.to_owned(), id)) {
                    log::warn!(
                        "peer {id} announces under the username {user:?}, which belongs to peer                          {pinned} (first heard with it): listed apart as an impostor (`!{id}` in                          tags.txt), never merged"
                    );
                }
                true
            }
            None => {
                self.pins.insert(user.to_owned(), id);
                self.new_pins.push((user.to_owned(), id));
                false
            }
        }
    }

    /// The limits this index keeps to.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What the limits refused since the last call, and starts counting afresh.
    pub fn take_refusals(&mut self) -> Refusals {
        std::mem::take(&mut self.refusals)
    }

    /// Records one datagram from `source` (its source IP) received at `now`, according to its
    /// kind:
    ///
    /// - an announcement adds or refreshes its chunks (at most
    ///   [`Limits::max_chunks_per_datagram`] of them, within the entry limits). Legacy
    ///   announcements (no usable `p2p` extension: see [`readable_extension`]) name no
    ///   chunk-server port: theirs is taken to be `legacy_chunk_port`. Entries that are not
    ///   chunk names are ignored. One of ours that lists chunks under an instance other than
    ///   the last one seen from `source` and its username first drops their `p2p` entries:
    ///   the peer restarted.
    /// - a goodbye drops the `p2p` entries of `source` and its username at the port it names,
    ///   if it carries the instance last seen from them; otherwise it is ignored.
    /// - a withdrawal drops the `p2p` entries of `source` and its username, at the port it
    ///   names, of the contents it names, under the same instance rule as a goodbye.
    /// - a query changes nothing here (answering it is the caller's business).
    ///
    /// Returns whether anything `tags.txt` shows changed (a refreshed last-seen time counts).
    pub fn apply(
        &mut self,
        source: IpAddr,
        announcement: &Announcement,
        legacy_chunk_port: u16,
        now: DateTime<Utc>,
    ) -> bool {
        self.apply_signed(source, announcement, None, legacy_chunk_port, now)
    }

    /// [`Index::apply`] for a datagram of a private network, signed by `signer` (`None`: an
    /// unsigned datagram, let in by `--allow-legacy`, which counts as legacy). Its entries
    /// carry the ID; a username first heard with another ID makes them an impostor's, listed
    /// apart. An entry, an instance, a goodbye or a withdrawal touches only the entries of the
    /// same username and ID.
    pub fn apply_signed(
        &mut self,
        source: IpAddr,
        announcement: &Announcement,
        signer: Option<PeerId>,
        legacy_chunk_port: u16,
        now: DateTime<Utc>,
    ) -> bool {
        let ip = source.to_canonical();
        let user = Who::new(&sanitize_username(&announcement.username), signer);
        let ext = readable_extension(announcement);
        // A query asks, an offer is for one user's inbox: neither lists anything.
        if ext.is_some_and(|e| matches!(e.kind, Kind::Query | Kind::Offer)) {
            return false;
        }
        if let Some(ext) = ext.filter(|e| e.kind == Kind::Goodbye) {
            let instance = ext.instance.as_deref().map(truncate_instance);
            return self.goodbye(ip, &user, ext.port, instance);
        }
        if let Some(ext) = ext.filter(|e| e.kind == Kind::Withdraw) {
            let instance = ext.instance.as_deref().map(truncate_instance);
            return self.withdraw(ip, &user, ext.port, instance, &ext.withdrawn);
        }
        if compact_summary(announcement).is_some() {
            // Its `files` are for legacy listeners; the list is the catalog's.
            return self.hear_summary(ip, announcement, signer, now);
        }
        let listed = self.listed_chunks(announcement);
        if let Some(ext) = ext.filter(|_| !listed.is_empty()) {
            // Announced inline now: the catalog recorded is no longer the peer's list.
            self.forget_catalogs(ip, &user, Some(ext.port));
        }
        let impostor = match signer {
            Some(id) if !listed.is_empty() => self.check_pin(&user.user, id),
            _ => false,
        };
        let mut changed = false;
        if let Some(instance) = ext.and_then(|e| e.instance.as_deref()) {
            if !listed.is_empty() {
                changed |= self.note_instance(ip, &user, truncate_instance(instance));
            }
        }
        let (proto, port, interval) = match ext {
            Some(ext) => (Proto::P2p(ext.v), ext.port, clamp_interval(ext.interval)),
            None => (
                Proto::Legacy,
                legacy_chunk_port,
                DEFAULT_ANNOUNCE_INTERVAL_SECS,
            ),
        };
        for (content, chunks) in listed {
            let meta = ext.and_then(|e| e.contents.get(content.as_str()));
            let key = Key {
                ip,
                port,
                content,
                sha256: meta.map(|m| m.sha256),
            };
            if self.holdings.get(&key).is_some_and(|h| h.id != user.id) {
                // Another peer's entry (a member sending from another's address): untouched.
                self.refusals.foreign += 1;
                continue;
            }
            if proto != Proto::Legacy {
                // Whatever it drops, `changed` is set below for the chunks themselves.
                self.drop_other_versions(&key, user.id);
            }
            if !self.holdings.contains_key(&key) {
                if !self.admit(ip) {
                    continue;
                }
                self.insert_new(key.clone(), Holding::new(&user, proto, interval));
            }
            let Some(holding) = self.holdings.get_mut(&key) else {
                continue;
            };
            let before = holding.shown(now);
            holding.user.clone_from(&user.user);
            holding.impostor = impostor;
            holding.proto = proto;
            holding.size = meta.map(|m| m.size);
            holding.root = meta.and_then(|m| m.root);
            if proto == Proto::Legacy {
                holding.observe_legacy_interval(chunks, now);
            } else {
                holding.interval = interval;
                holding.observed = false;
            }
            for i in chunks.indexes() {
                holding.seen[usize::from(i - 1)] = Some(now);
            }
            if holding.shown(now) == before {
                self.pending.refreshed(now, holding.interval);
            } else {
                self.pending.shown();
            }
            changed = true;
        }
        changed
    }

    /// Whether `tags.txt` should be written at `now`: something it shows changed, or a refresh
    /// waited long enough (see `pending`).
    pub fn write_due(&self, now: DateTime<Utc>) -> bool {
        self.pending.due(now)
    }

    /// When `tags.txt` will be due if nothing else changes; `None` when it is up to date.
    pub fn next_write_due(&self) -> Option<DateTime<Utc>> {
        self.pending.next_due()
    }

    /// Whether anything is not written yet (due or not): what a stopping listener writes.
    pub fn has_unwritten(&self) -> bool {
        self.pending.any()
    }

    /// A snapshot ([`Index::to_tags`]) was handed to the writer: nothing is pending.
    pub fn written(&mut self) {
        self.pending = Pending::default();
    }

    /// The chunks `announcement` lists, by content, at most
    /// [`Limits::max_chunks_per_datagram`] of them (a longer datagram is counted as refused).
    fn listed_chunks(&mut self, announcement: &Announcement) -> BTreeMap<String, ChunkSet> {
        let mut listed: BTreeMap<String, ChunkSet> = BTreeMap::new();
        let names = announcement.chunk_names();
        for (taken, name) in names.enumerate() {
            if taken == self.limits.max_chunks_per_datagram {
                self.refusals.long_datagrams += 1;
                break;
            }
            listed
                .entry(name.content().to_owned())
                .or_insert(ChunkSet::EMPTY)
                .insert(name.index());
        }
        listed
    }

    /// Whether a new entry from `ip` may be added, making room for it if the index is full
    /// and `ip` holds none, or at least two fewer than the biggest source (whose first entry is
    /// then evicted). Sources within one entry of each other leave each other alone, so a
    /// flood from many addresses settles into fair shares instead of evicting back and forth.
    fn admit(&mut self, ip: IpAddr) -> bool {
        let mine = self.counts.count(ip);
        if mine >= self.limits.max_entries_per_source {
            self.refusals.over_source += 1;
            return false;
        }
        if self.holdings.len() < self.limits.max_entries {
            return true;
        }
        if let Some((biggest, victim)) = self.counts.biggest() {
            if victim != ip && (mine == 0 || biggest > mine + 1) {
                let first = self
                    .holdings
                    .range(Key::first_of(victim)..)
                    .next()
                    .map(|(k, _)| k.clone());
                if let Some(key) = first.filter(|k| k.ip == victim) {
                    self.remove(&key);
                    self.refusals.evicted += 1;
                    return true;
                }
            }
        }
        self.refusals.over_total += 1;
        false
    }

    /// Adds an entry whose key is not there yet.
    fn insert_new(&mut self, key: Key, holding: Holding) {
        let ip = key.ip;
        if self.holdings.insert(key, holding).is_none() {
            self.counts.set(ip, self.counts.count(ip) + 1);
            self.pending.shown();
        }
    }

    /// Removes an entry; returns whether it was there.
    fn remove(&mut self, key: &Key) -> bool {
        let removed = self.holdings.remove(key).is_some();
        if removed {
            self.counts
                .set(key.ip, self.counts.count(key.ip).saturating_sub(1));
            self.pending.shown();
        }
        removed
    }

    /// The entries of `ip`, in key order.
    fn entries_of(&self, ip: IpAddr) -> impl Iterator<Item = (&Key, &Holding)> {
        self.holdings
            .range(Key::first_of(ip)..)
            .take_while(move |(k, _)| k.ip == ip)
    }

    /// Records `instance` as the last one seen with chunks from `ip` as `user`; when another
    /// was seen before, drops their `p2p` entries first. Returns whether entries were dropped.
    fn note_instance(&mut self, ip: IpAddr, user: &Who, instance: &str) -> bool {
        let peer = (ip, user.clone());
        match self.instances.get(&peer) {
            Some(last) if last == instance => false,
            Some(last) => {
                log::debug!(
                    "{user:?} at {ip} restarted (instance {last} -> {instance}): dropping its entries"
                );
                let dropped = self.drop_p2p(ip, user, None);
                self.forget_catalogs(ip, user, None);
                self.instances.insert(peer, instance.to_owned());
                dropped
            }
            None => {
                self.instances.insert(peer, instance.to_owned());
                false
            }
        }
    }

    /// A goodbye from `user` at `ip` for the chunk server at `port`, of `instance`. Returns
    /// whether entries were dropped.
    fn goodbye(&mut self, ip: IpAddr, user: &Who, port: u16, instance: Option<&str>) -> bool {
        let peer = (ip, user.clone());
        let recorded = self.instances.get(&peer);
        if instance.is_none() || instance != recorded.map(String::as_str) {
            log::debug!(
                "ignoring a goodbye from {user:?} at {ip} of instance {instance:?}: \
                 the instance recorded is {recorded:?}"
            );
            return false;
        }
        log::debug!("{user:?} at {ip} (port {port}) said goodbye: dropping its entries");
        let dropped = self.drop_p2p(ip, user, Some(port));
        self.forget_catalogs(ip, user, Some(port));
        let left = self
            .entries_of(ip)
            .any(|(_, h)| h.is(user) && matches!(h.proto, Proto::P2p(_)));
        if !left {
            self.instances.remove(&peer);
        }
        dropped
    }

    /// A withdrawal from `user` at `ip` for the chunk server at `port`, of `instance`: drops
    /// its `p2p` entries of the contents `names`, whatever their digest. Honoured, like a
    /// goodbye, only with the instance recorded for that address and username. Returns whether
    /// entries were dropped.
    fn withdraw(
        &mut self,
        ip: IpAddr,
        user: &Who,
        port: u16,
        instance: Option<&str>,
        names: &[String],
    ) -> bool {
        let recorded = self.instances.get(&(ip, user.clone()));
        if instance.is_none() || instance != recorded.map(String::as_str) {
            log::debug!(
                "ignoring a withdrawal from {user:?} at {ip} of instance {instance:?}: \
                 the instance recorded is {recorded:?}"
            );
            return false;
        }
        let mut dropped = false;
        for name in names.iter().take(self.limits.max_chunks_per_datagram) {
            let start = Key {
                ip,
                port,
                content: name.clone(),
                sha256: None,
            };
            let doomed: Vec<Key> = self
                .holdings
                .range(start..)
                .take_while(|(k, _)| k.ip == ip && k.port == port && k.content == *name)
                .filter(|(_, h)| matches!(h.proto, Proto::P2p(_)) && h.is(user))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &doomed {
                log::debug!("{user:?} at {ip} (port {port}) withdrew {name:?}");
                dropped |= self.remove(key);
            }
        }
        dropped
    }

    /// Drops the `p2p` entries of `user` at `ip` (at `port` only, when given); returns whether
    /// any was there.
    fn drop_p2p(&mut self, ip: IpAddr, user: &Who, port: Option<u16>) -> bool {
        let doomed: Vec<Key> = self
            .entries_of(ip)
            .filter(|(key, holding)| {
                matches!(holding.proto, Proto::P2p(_))
                    && holding.is(user)
                    && port.is_none_or(|p| p == key.port)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            self.remove(key);
        }
        !doomed.is_empty()
    }

    /// Drops the entries of the same address, port and content name as `key` but another
    /// digest, of the same peer ID: one of our peers holds one content per name, so `key`
    /// supersedes them.
    fn drop_other_versions(&mut self, key: &Key, id: Option<PeerId>) -> bool {
        let start = Key {
            sha256: None,
            ..key.clone()
        };
        let doomed: Vec<Key> = self
            .holdings
            .range(start..)
            .take_while(|(other, _)| {
                other.ip == key.ip && other.port == key.port && other.content == key.content
            })
            .filter(|(other, holding)| {
                other.sha256 != key.sha256 && holding.proto != Proto::Legacy && holding.id == id
            })
            .map(|(other, _)| other.clone())
            .collect();
        for other in &doomed {
            self.remove(other);
        }
        !doomed.is_empty()
    }

    /// Forgets the chunks whose time is up by the one expiry rule
    /// ([`expires_at`](shared::tags::expires_at) of their holder's interval), and the entries
    /// left with none. Returns whether anything was removed.
    ///
    /// This visits every entry: the caller runs it about once a second, not per datagram.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let before = self.holdings.len();
        self.holdings.retain(|key, holding| {
            for slot in 0..CHUNKS_PER_FILE {
                if let Some(t) = holding.seen[slot] {
                    if !holding.fresh(t, now) {
                        holding.seen[slot] = None;
                        changed = true;
                        log::debug!(
                            "expired {}_{} of {:?} at {}:{}",
                            key.content,
                            slot + 1,
                            holding.user,
                            key.ip,
                            key.port
                        );
                    }
                }
            }
            holding.seen.iter().any(Option::is_some)
        });
        if self.holdings.len() != before {
            self.counts = SourceCounts::of(self.holdings.keys().map(|k| &k.ip));
        }
        if changed {
            self.pending.shown();
        }
        // An address and user with no entry left have nothing a restart could duplicate:
        // forget their instance, so spoofed sources cannot grow the map for ever.
        if !self.instances.is_empty() {
            let live: BTreeSet<(IpAddr, &str, Option<PeerId>)> = self
                .holdings
                .iter()
                .map(|(k, h)| (k.ip, h.user.as_str(), h.id))
                .collect();
            self.instances
                .retain(|(ip, who), _| live.contains(&(*ip, who.user.as_str(), who.id)));
        }
        self.forget_empty_catalogs();
        changed
    }

    /// How many entries (lines of `tags.txt`) are held, fresh or not yet expired.
    pub fn len(&self) -> usize {
        self.holdings.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.holdings.is_empty()
    }

    /// What `tags.txt` shows at `now`: one sorted entry per holder and content with at least one
    /// fresh chunk, its `LAST_SEEN` being the latest of those chunks' times.
    pub fn to_tags(&self, now: DateTime<Utc>) -> TagsIndex {
        let entries = self
            .holdings
            .iter()
            .filter_map(|(key, holding)| {
                let (chunks, last_seen) = holding.visible(now);
                if holding.proto == Proto::Legacy
                    && is_original_file_name(&self.holdings, key, chunks, now)
                {
                    return None;
                }
                Some(TagEntry {
                    user: holding.user.clone(),
                    id: holding.id,
                    impostor: holding.impostor,
                    addr: SocketAddr::new(key.ip, key.port),
                    proto: holding.proto,
                    content: key.content.clone(),
                    chunks,
                    size: holding.size,
                    sha256: key.sha256,
                    root: holding.root,
                    interval: holding.interval,
                    last_seen: last_seen?,
                })
            })
            .collect();
        let mut tags = TagsIndex {
            updated: Some(now),
            entries,
        };
        tags.sort();
        tags
    }
}
