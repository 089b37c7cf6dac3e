//! The listener's memory: who holds which chunk of which content, and since when.
//!
//! Pure logic, no I/O and no clock: every operation takes `now`, so tests need no sleeping.
//! [`Index::apply`] records one datagram, [`Index::expire`] forgets what was not re-announced in
//! time, and [`Index::to_tags`] renders what `tags.txt` shows.
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
//! peer's address). A `goodbye` drops the sender's `p2p` entries at its port at once, but only
//! when it carries the instance recorded for that address and username: a goodbye without it,
//! or with another, is ignored. Two peers behind one address (two folders on one laptop) leave
//! each other alone. And since one of our peers holds at most one content per name, a new
//! digest for a name at an address replaces the old entry at once (a file replaced, or
//! announced before its digest was known).
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};

use shared::chunk::{ChunkName, ChunkSet};
use shared::digest::Digest;
use shared::protocol::{Announcement, AnnouncementExt, Kind, MAX_ANNOUNCE_INTERVAL_SECS};
use shared::tags::{Proto, TagEntry, TagsIndex};
use shared::{
    CHUNKS_PER_FILE, DEFAULT_ANNOUNCE_INTERVAL_SECS, EXPIRY_INTERVALS, MAX_USERNAME_BYTES,
    PROTOCOL_VERSION,
};

/// Longest announce interval we honour, in seconds
/// ([`MAX_ANNOUNCE_INTERVAL_SECS`], ten minutes). A peer claiming more is taken at this value,
/// so a bogus interval cannot keep it listed for days, nor overflow date arithmetic in the
/// readers of `tags.txt`.
pub const MAX_INTERVAL_SECS: u64 = MAX_ANNOUNCE_INTERVAL_SECS;

/// Shortest interval observed from a legacy peer that we honour, in seconds: one repeating
/// itself faster still expires 3 × 5 s after it stops.
pub const LEGACY_MIN_INTERVAL_SECS: u64 = 5;

/// Longest interval observed from a legacy peer that we honour, in seconds: the legacy rule,
/// once a minute.
pub const LEGACY_MAX_INTERVAL_SECS: u64 = DEFAULT_ANNOUNCE_INTERVAL_SECS;

/// Two announcements of a content by a legacy peer closer than this are one round (a
/// duplicate, or an announcement split over datagrams), not a measure of its interval.
const LEGACY_SAME_ROUND_MS: i64 = 1000;

/// Default of [`Limits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Default of [`Limits::max_entries_per_source`].
pub const DEFAULT_MAX_ENTRIES_PER_SOURCE: usize = 1_000;

/// Default of [`Limits::max_chunks_per_datagram`]: our datagrams (at most 1000 bytes) and
/// legacy ones (under 1024) name at most about 170 chunks.
pub const DEFAULT_MAX_CHUNKS_PER_DATAGRAM: usize = 512;

/// How big the index may grow, so a flood of invented chunk names costs bounded memory, CPU
/// and `tags.txt` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (lines of `tags.txt`) in all (`listener --max-entries`).
    pub max_entries: usize,
    /// Most entries from one source IP (`listener --max-entries-per-source`).
    pub max_entries_per_source: usize,
    /// Most chunk names taken from one datagram; the rest of it is ignored
    /// (`listener --max-chunks-per-datagram`).
    pub max_chunks_per_datagram: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_entries_per_source: DEFAULT_MAX_ENTRIES_PER_SOURCE,
            max_chunks_per_datagram: DEFAULT_MAX_CHUNKS_PER_DATAGRAM,
        }
    }
}

/// What the [`Limits`] refused since the last [`Index::take_refusals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Datagrams that listed more chunks than [`Limits::max_chunks_per_datagram`].
    pub long_datagrams: u64,
    /// New entries refused because their source held [`Limits::max_entries_per_source`].
    pub over_source: u64,
    /// New entries refused because the index held [`Limits::max_entries`] and their source
    /// was already among the biggest.
    pub over_total: u64,
    /// Entries evicted from the biggest source to make room for a smaller one.
    pub evicted: u64,
}

impl Refusals {
    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        *self == Refusals::default()
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Refusals) {
        self.long_datagrams += other.long_datagrams;
        self.over_source += other.over_source;
        self.over_total += other.over_total;
        self.evicted += other.evicted;
    }
}

/// What identifies one line of `tags.txt`. Ordered by source IP first, so one address's
/// entries are neighbours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    ip: IpAddr,
    port: u16,
    content: String,
    sha256: Option<Digest>,
}

impl Key {
    /// The smallest key of `ip`: where its range of entries starts.
    fn first_of(ip: IpAddr) -> Key {
        Key {
            ip,
            port: 0,
            content: String::new(),
            sha256: None,
        }
    }
}

/// What is known about one holder's copy of one content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holding {
    user: String,
    proto: Proto,
    size: Option<u64>,
    /// The root digest of the holder's manifest, when announced.
    root: Option<Digest>,
    interval: u64,
    /// For a legacy holder: whether `interval` was observed rather than assumed.
    observed: bool,
    /// When each chunk (by position) was last announced; `None` when it never was or expired.
    seen: [Option<DateTime<Utc>>; CHUNKS_PER_FILE],
}

impl Holding {
    fn new(user: &str, proto: Proto, interval: u64) -> Holding {
        Holding {
            user: user.to_owned(),
            proto,
            size: None,
            root: None,
            interval,
            observed: false,
            seen: [None; CHUNKS_PER_FILE],
        }
    }

    /// Whether chunk time `t` still counts at `now`.
    fn fresh(&self, t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let secs = self.interval.saturating_mul(EXPIRY_INTERVALS);
        let lifetime = i64::try_from(secs)
            .ok()
            .and_then(chrono::Duration::try_seconds);
        match lifetime.and_then(|d| t.checked_add_signed(d)) {
            Some(expiry) => expiry > now,
            None => true,
        }
    }

    /// The chunks still fresh at `now`, and the latest time one of them was seen.
    fn visible(&self, now: DateTime<Utc>) -> (ChunkSet, Option<DateTime<Utc>>) {
        let mut set = ChunkSet::EMPTY;
        let mut last = None;
        for (index, t) in (1u8..).zip(self.seen) {
            if let Some(t) = t.filter(|&t| self.fresh(t, now)) {
                set.insert(index);
                last = last.max(Some(t));
            }
        }
        (set, last)
    }

    /// A legacy holder announced `chunks` again at `now`: updates the interval observed from
    /// it (see the module documentation).
    fn observe_legacy_interval(&mut self, chunks: ChunkSet, now: DateTime<Utc>) {
        let previous = chunks
            .indexes()
            .filter_map(|i| self.seen[usize::from(i - 1)])
            .max();
        let Some(previous) = previous else {
            return;
        };
        let gap_ms = (now - previous).num_milliseconds();
        if gap_ms < LEGACY_SAME_ROUND_MS {
            return;
        }
        let gap = u64::try_from(gap_ms)
            .unwrap_or(u64::MAX)
            .div_ceil(1000)
            .clamp(LEGACY_MIN_INTERVAL_SECS, LEGACY_MAX_INTERVAL_SECS);
        self.interval = if !self.observed || gap >= self.interval {
            gap
        } else {
            (self.interval + gap).div_ceil(2)
        };
        self.observed = true;
    }
}

/// Longest instance id remembered; ours are 16 hex digits, and a hostile sender must not make
/// the index hold kilobytes per address.
const MAX_INSTANCE_BYTES: usize = 64;

/// The `p2p` extension of `announcement` if we can use it: a version we know
/// (1..=[`PROTOCOL_VERSION`]) and, except in a query (where the port means nothing), a chunk
/// server port other than 0. Anything else makes the datagram count as a legacy one, as an
/// extension that does not parse does.
pub fn readable_extension(announcement: &Announcement) -> Option<&AnnouncementExt> {
    announcement
        .p2p
        .as_ref()
        .filter(|e| (1..=PROTOCOL_VERSION).contains(&e.v) && (e.kind == Kind::Query || e.port != 0))
}

/// The listener's index of holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    limits: Limits,
    holdings: BTreeMap<Key, Holding>,
    /// The last instance announced with chunks from each source IP and username.
    instances: BTreeMap<(IpAddr, String), String>,
    /// How many entries each source IP holds (absent: none).
    per_source: HashMap<IpAddr, usize>,
    /// The same counts, ordered, to find the biggest source at once.
    by_size: BTreeSet<(usize, IpAddr)>,
    /// What the limits refused since the last [`Index::take_refusals`].
    refusals: Refusals,
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
                let mut holding =
                    Holding::new(&sanitize_username(&entry.user), entry.proto, interval);
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
        index
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
        let ip = source.to_canonical();
        let user = sanitize_username(&announcement.username);
        let ext = readable_extension(announcement);
        if ext.is_some_and(|e| e.kind == Kind::Query) {
            return false;
        }
        if let Some(ext) = ext.filter(|e| e.kind == Kind::Goodbye) {
            let instance = ext.instance.as_deref().map(truncate_instance);
            return self.goodbye(ip, &user, ext.port, instance);
        }
        let listed = self.listed_chunks(announcement);
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
            if proto != Proto::Legacy {
                // Whatever it drops, `changed` is set below for the chunks themselves.
                self.drop_other_versions(&key);
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
            holding.user.clone_from(&user);
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
            changed = true;
        }
        changed
    }

    /// The chunks `announcement` lists, by content, at most
    /// [`Limits::max_chunks_per_datagram`] of them (a longer datagram is counted as refused).
    fn listed_chunks(&mut self, announcement: &Announcement) -> BTreeMap<String, ChunkSet> {
        let mut listed: BTreeMap<String, ChunkSet> = BTreeMap::new();
        let names = announcement
            .files
            .iter()
            .filter_map(|f| ChunkName::parse(f).ok());
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
        let mine = self.count(ip);
        if mine >= self.limits.max_entries_per_source {
            self.refusals.over_source += 1;
            return false;
        }
        if self.holdings.len() < self.limits.max_entries {
            return true;
        }
        if let Some(&(biggest, victim)) = self.by_size.last() {
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

    /// How many entries `ip` holds.
    fn count(&self, ip: IpAddr) -> usize {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }

    /// Sets the number of entries `ip` holds, in both maps.
    fn set_count(&mut self, ip: IpAddr, count: usize) {
        let old = self.count(ip);
        if old == count {
            return;
        }
        self.by_size.remove(&(old, ip));
        if count == 0 {
            self.per_source.remove(&ip);
        } else {
            self.per_source.insert(ip, count);
            self.by_size.insert((count, ip));
        }
    }

    /// Adds an entry whose key is not there yet.
    fn insert_new(&mut self, key: Key, holding: Holding) {
        let ip = key.ip;
        if self.holdings.insert(key, holding).is_none() {
            self.set_count(ip, self.count(ip) + 1);
        }
    }

    /// Removes an entry; returns whether it was there.
    fn remove(&mut self, key: &Key) -> bool {
        let removed = self.holdings.remove(key).is_some();
        if removed {
            self.set_count(key.ip, self.count(key.ip).saturating_sub(1));
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
    fn note_instance(&mut self, ip: IpAddr, user: &str, instance: &str) -> bool {
        let peer = (ip, user.to_owned());
        match self.instances.get(&peer) {
            Some(last) if last == instance => false,
            Some(last) => {
                log::debug!(
                    "{user:?} at {ip} restarted (instance {last} -> {instance}): dropping its entries"
                );
                let dropped = self.drop_p2p(ip, user, None);
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
    fn goodbye(&mut self, ip: IpAddr, user: &str, port: u16, instance: Option<&str>) -> bool {
        let peer = (ip, user.to_owned());
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
        let left = self
            .entries_of(ip)
            .any(|(_, h)| h.user == user && matches!(h.proto, Proto::P2p(_)));
        if !left {
            self.instances.remove(&peer);
        }
        dropped
    }

    /// Drops the `p2p` entries of `user` at `ip` (at `port` only, when given); returns whether
    /// any was there.
    fn drop_p2p(&mut self, ip: IpAddr, user: &str, port: Option<u16>) -> bool {
        let doomed: Vec<Key> = self
            .entries_of(ip)
            .filter(|(key, holding)| {
                matches!(holding.proto, Proto::P2p(_))
                    && holding.user == user
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
    /// digest: one of our peers holds one content per name, so `key` supersedes them.
    fn drop_other_versions(&mut self, key: &Key) -> bool {
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
            .filter(|(other, holding)| other.sha256 != key.sha256 && holding.proto != Proto::Legacy)
            .map(|(other, _)| other.clone())
            .collect();
        for other in &doomed {
            self.remove(other);
        }
        !doomed.is_empty()
    }

    /// Forgets the chunks not re-announced within [`EXPIRY_INTERVALS`] of their holder's
    /// interval, and the entries left with none. Returns whether anything was removed.
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
            self.recount();
        }
        // An address and user with no entry left have nothing a restart could duplicate:
        // forget their instance, so spoofed sources cannot grow the map for ever.
        if !self.instances.is_empty() {
            let live: BTreeSet<(IpAddr, &str)> = self
                .holdings
                .iter()
                .map(|(k, h)| (k.ip, h.user.as_str()))
                .collect();
            self.instances
                .retain(|(ip, user), _| live.contains(&(*ip, user.as_str())));
        }
        changed
    }

    /// Rebuilds the per-source counts from the entries.
    fn recount(&mut self) {
        let mut counts: HashMap<IpAddr, usize> = HashMap::new();
        for key in self.holdings.keys() {
            *counts.entry(key.ip).or_default() += 1;
        }
        self.by_size = counts.iter().map(|(ip, n)| (*n, *ip)).collect();
        self.per_source = counts;
    }

    /// How many entries (lines of `tags.txt`) are held, fresh or not yet expired.
    pub fn len(&self) -> usize {
        self.holdings.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.holdings.is_empty()
    }

    /// Whether the legacy entry `key` is no offer at all: each of its fresh chunks `<content>_<i>`
    /// is also the content name of fresh chunks the same peer announces, i.e. an original file
    /// listed beside its chunks (see the module documentation).
    fn is_original_file_name(&self, key: &Key, chunks: ChunkSet, now: DateTime<Utc>) -> bool {
        !chunks.is_empty()
            && chunks.indexes().all(|i| {
                let other = Key {
                    content: format!("{}_{i}", key.content),
                    ..key.clone()
                };
                self.holdings
                    .get(&other)
                    .is_some_and(|h| h.proto == Proto::Legacy && !h.visible(now).0.is_empty())
            })
    }

    /// What `tags.txt` shows at `now`: one sorted entry per holder and content with at least one
    /// fresh chunk, its `LAST_SEEN` being the latest of those chunks' times.
    pub fn to_tags(&self, now: DateTime<Utc>) -> TagsIndex {
        let entries = self
            .holdings
            .iter()
            .filter_map(|(key, holding)| {
                let (chunks, last_seen) = holding.visible(now);
                if holding.proto == Proto::Legacy && self.is_original_file_name(key, chunks, now) {
                    return None;
                }
                Some(TagEntry {
                    user: holding.user.clone(),
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

/// A peer's username made safe to show: control, bidi and invisible characters
/// ([`must_escape`](shared::text::must_escape)) replaced by U+FFFD and the whole cut to
/// [`MAX_USERNAME_BYTES`] on a character boundary. An empty name stays empty.
pub fn sanitize_username(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_USERNAME_BYTES));
    for c in name.chars() {
        let c = if shared::text::must_escape(c) {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_USERNAME_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// An instance id as remembered: cut to [`MAX_INSTANCE_BYTES`] on a character boundary.
fn truncate_instance(instance: &str) -> &str {
    let mut end = instance.len().min(MAX_INSTANCE_BYTES);
    while !instance.is_char_boundary(end) {
        end -= 1;
    }
    &instance[..end]
}

/// An announced interval as we honour it: at least one second (zero would expire at once), at
/// most [`MAX_INTERVAL_SECS`].
fn clamp_interval(secs: u64) -> u64 {
    secs.clamp(1, MAX_INTERVAL_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::{AnnouncementExt, ContentMeta};
    use std::path::Path;

    const LEGACY_PORT: u16 = 5001;

    fn t0() -> DateTime<Utc> {
        "2026-11-21T18:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(secs)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn legacy(user: &str, files: &[&str]) -> Announcement {
        Announcement {
            username: user.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            p2p: None,
        }
    }

    fn meta(seed: &str, size: u64) -> ContentMeta {
        ContentMeta {
            size,
            sha256: Digest::of(seed.as_bytes()),
            root: Some(Digest::of(format!("root of {seed}").as_bytes())),
        }
    }

    fn ours(
        user: &str,
        port: u16,
        interval: u64,
        files: &[&str],
        contents: &[(&str, ContentMeta)],
    ) -> Announcement {
        Announcement {
            username: user.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            p2p: Some(AnnouncementExt {
                instance: None,
                kind: Default::default(),
                v: 1,
                port,
                interval,
                contents: contents
                    .iter()
                    .map(|(name, m)| (name.to_string(), *m))
                    .collect(),
            }),
        }
    }

    /// `(user, addr, proto, content, chunks)` of each line, in file order.
    fn lines(index: &Index, now: DateTime<Utc>) -> Vec<(String, String, String, String, String)> {
        index
            .to_tags(now)
            .entries
            .iter()
            .map(|e| {
                (
                    e.user.clone(),
                    e.addr.to_string(),
                    e.proto.to_string(),
                    e.content.clone(),
                    e.chunks.to_string(),
                )
            })
            .collect()
    }

    fn line(user: &str, addr: &str, proto: &str, content: &str, chunks: &str) -> [String; 5] {
        [user, addr, proto, content, chunks].map(str::to_owned)
    }

    fn as_arrays(lines: Vec<(String, String, String, String, String)>) -> Vec<[String; 5]> {
        lines
            .into_iter()
            .map(|(a, b, c, d, e)| [a, b, c, d, e])
            .collect()
    }

    fn run_of(
        user: &str,
        port: u16,
        files: &[&str],
        instance: Option<&str>,
        kind: Kind,
    ) -> Announcement {
        let mut a = ours(user, port, 60, files, &[]);
        let ext = a.p2p.as_mut().unwrap();
        ext.instance = instance.map(str::to_owned);
        ext.kind = kind;
        a
    }

    #[test]
    fn new_instance_from_an_address_drops_its_old_p2p_entries() {
        let mut index = Index::new();
        let first = run_of(
            "alice",
            6001,
            &["a_1", "b_2"],
            Some("run-1"),
            Kind::Announce,
        );
        // Chunks of one run spread over two datagrams: the same instance drops nothing.
        let first_more = run_of("alice", 6001, &["c_3"], Some("run-1"), Kind::Announce);
        index.apply(ip(2), &first, LEGACY_PORT, t0());
        index.apply(ip(2), &first_more, LEGACY_PORT, t0());
        // Another peer, and a legacy program on the same address: both must survive.
        index.apply(
            ip(3),
            &run_of("bob", 6001, &["a_1"], Some("bob-1"), Kind::Announce),
            LEGACY_PORT,
            t0(),
        );
        index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
        assert_eq!(index.len(), 5);
        // alice restarts under another port, with fewer chunks (her username is stored, so it
        // stays; two peers behind one address are told apart by it).
        let second = run_of("alice", 6002, &["a_1"], Some("run-2"), Kind::Announce);
        assert!(index.apply(ip(2), &second, LEGACY_PORT, at(1)));
        assert_eq!(
            as_arrays(lines(&index, at(1))),
            vec![
                line("alice", "127.0.0.2:6002", "p2p/1", "a", "1----"),
                line("bob", "127.0.0.3:6001", "p2p/1", "a", "1----"),
                line("ece", "127.0.0.2:5001", "legacy", "e", "1----"),
            ]
        );
        // The new run's later datagrams add up as usual.
        let second_more = run_of("alice", 6002, &["b_2"], Some("run-2"), Kind::Announce);
        index.apply(ip(2), &second_more, LEGACY_PORT, at(2));
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn announcements_without_an_instance_never_drop_anything() {
        let mut index = Index::new();
        index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
        index.apply(ip(2), &legacy("ece", &["f_1"]), LEGACY_PORT, at(1));
        index.apply(
            ip(2),
            &run_of("old", 6001, &["o_1"], None, Kind::Announce),
            LEGACY_PORT,
            at(1),
        );
        index.apply(
            ip(2),
            &run_of("old", 6002, &["p_1"], None, Kind::Announce),
            LEGACY_PORT,
            at(2),
        );
        assert_eq!(index.len(), 4);
        // The first instance seen from an address has nothing to replace.
        index.apply(
            ip(2),
            &run_of("new", 6003, &["n_1"], Some("x"), Kind::Announce),
            LEGACY_PORT,
            at(3),
        );
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn goodbye_drops_the_p2p_entries_of_that_address_and_port_only() {
        let mut index = Index::new();
        let hello = run_of("alice", 6001, &["a_1", "b_1"], Some("r1"), Kind::Announce);
        index.apply(ip(2), &hello, LEGACY_PORT, t0());
        index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
        index.apply(
            ip(3),
            &run_of("bob", 6001, &["a_1"], Some("b1"), Kind::Announce),
            LEGACY_PORT,
            t0(),
        );
        let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
        assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(1)));
        assert_eq!(
            as_arrays(lines(&index, at(1))),
            vec![
                line("bob", "127.0.0.3:6001", "p2p/1", "a", "1----"),
                line("ece", "127.0.0.2:5001", "legacy", "e", "1----"),
            ]
        );
        assert!(
            !index.apply(ip(2), &bye, LEGACY_PORT, at(2)),
            "nothing left"
        );
        // A goodbye for another port of that address leaves this one alone.
        index.apply(
            ip(3),
            &run_of("bob", 6001, &["a_1"], Some("b1"), Kind::Announce),
            LEGACY_PORT,
            at(3),
        );
        let other_port = run_of("bob", 7001, &[], Some("b1"), Kind::Goodbye);
        assert!(!index.apply(ip(3), &other_port, LEGACY_PORT, at(3)));
        assert_eq!(index.len(), 2);
        // Without an instance, a goodbye is not taken at its word: anyone could send it.
        let anonymous = run_of("bob", 6001, &[], None, Kind::Goodbye);
        assert!(!index.apply(ip(3), &anonymous, LEGACY_PORT, at(4)));
        assert_eq!(index.len(), 2);
        // bob's own goodbye still works: the one for another port did not forget his instance.
        let bye = run_of("bob", 6001, &[], Some("b1"), Kind::Goodbye);
        assert!(index.apply(ip(3), &bye, LEGACY_PORT, at(5)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn late_goodbye_of_a_previous_run_is_ignored() {
        let mut index = Index::new();
        let run2 = run_of("alice", 6001, &["a_1"], Some("run-2"), Kind::Announce);
        index.apply(
            ip(2),
            &run_of("alice", 6001, &["a_1"], Some("run-1"), Kind::Announce),
            LEGACY_PORT,
            t0(),
        );
        index.apply(ip(2), &run2, LEGACY_PORT, at(1));
        let old_bye = run_of("alice", 6001, &[], Some("run-1"), Kind::Goodbye);
        assert!(!index.apply(ip(2), &old_bye, LEGACY_PORT, at(2)));
        assert_eq!(index.len(), 1);
        let bye = run_of("alice", 6001, &[], Some("run-2"), Kind::Goodbye);
        assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(3)));
        assert!(index.is_empty());
    }

    #[test]
    fn queries_change_nothing() {
        let mut index = Index::new();
        index.apply(
            ip(2),
            &run_of("a", 6001, &["a_1"], Some("r1"), Kind::Announce),
            LEGACY_PORT,
            t0(),
        );
        // Even one with chunks and another instance: a query is not an announcement.
        let query = run_of("q", 6001, &["q_1"], Some("other"), Kind::Query);
        assert!(!index.apply(ip(2), &query, LEGACY_PORT, at(1)));
        assert_eq!(
            as_arrays(lines(&index, at(1))),
            vec![line("a", "127.0.0.2:6001", "p2p/1", "a", "1----")]
        );
    }

    #[test]
    fn peers_announcing_every_one_to_five_seconds_expire_after_three_intervals() {
        for interval in 1..=5i64 {
            let mut index = Index::new();
            let a = ours("quick", 6001, interval.unsigned_abs(), &["q_1"], &[]);
            index.apply(ip(2), &a, LEGACY_PORT, t0());
            assert!(!index.expire(at(3 * interval - 1)), "interval {interval}");
            assert_eq!(index.to_tags(at(3 * interval - 1)).entries.len(), 1);
            assert!(index.expire(at(3 * interval)), "interval {interval}");
            assert!(index.is_empty());
        }
    }

    #[test]
    fn instances_of_addresses_without_entries_are_forgotten() {
        let mut index = Index::new();
        for last in 2..=200u8 {
            let empty = run_of("x", 1, &[], Some(&format!("i{last}")), Kind::Announce);
            index.apply(ip(last), &empty, LEGACY_PORT, t0());
        }
        index.expire(t0());
        assert!(index.instances.is_empty());
        let long = "i".repeat(10_000);
        index.apply(
            ip(2),
            &run_of("x", 1, &["a_1"], Some(&long), Kind::Announce),
            LEGACY_PORT,
            t0(),
        );
        assert_eq!(
            index.instances[&(ip(2), "x".to_owned())].len(),
            MAX_INSTANCE_BYTES
        );
    }

    #[test]
    fn legacy_announcement_becomes_entries_at_the_legacy_port() {
        let mut index = Index::new();
        let a = legacy(
            "ece",
            &["ece_1", "ece_2", "ece_3", "ali_2", "ece.txt", "x_9"],
        );
        assert!(index.apply(ip(9), &a, LEGACY_PORT, t0()));
        assert_eq!(
            as_arrays(lines(&index, t0())),
            vec![
                line("ece", "127.0.0.9:5001", "legacy", "ali", "-2---"),
                line("ece", "127.0.0.9:5001", "legacy", "ece", "123--"),
            ]
        );
        let tags = index.to_tags(t0());
        assert_eq!(tags.updated, Some(t0()));
        for e in &tags.entries {
            assert_eq!(e.size, None);
            assert_eq!(e.sha256, None);
            assert_eq!(e.interval, DEFAULT_ANNOUNCE_INTERVAL_SECS);
            assert_eq!(e.last_seen, t0());
        }
    }

    #[test]
    fn our_announcement_carries_port_version_size_digest_and_interval() {
        let mut index = Index::new();
        let m = meta("photo", 1_048_579);
        let a = ours(
            "alice",
            6001,
            30,
            &["photo.png_1", "photo.png_5"],
            &[("photo.png", m)],
        );
        assert!(index.apply(ip(2), &a, LEGACY_PORT, t0()));
        let tags = index.to_tags(t0());
        assert_eq!(tags.entries.len(), 1);
        let e = &tags.entries[0];
        assert_eq!(e.user, "alice");
        assert_eq!(e.addr, "127.0.0.2:6001".parse().unwrap());
        assert_eq!(e.proto, Proto::P2p(1));
        assert_eq!(e.content, "photo.png");
        assert_eq!(e.chunks.to_string(), "1---5");
        assert_eq!(e.size, Some(1_048_579));
        assert_eq!(e.sha256, Some(m.sha256));
        assert_eq!(e.interval, 30);
        assert_eq!(e.last_seen, t0());
    }

    #[test]
    fn chunks_spread_over_two_datagrams_make_one_entry() {
        let mut index = Index::new();
        let m = meta("big", 10);
        let first = ours("bob", 5001, 60, &["big_1", "big_2", "big_3"], &[("big", m)]);
        let second = ours("bob", 5001, 60, &["big_4", "big_5"], &[("big", m)]);
        index.apply(ip(3), &first, LEGACY_PORT, t0());
        index.apply(ip(3), &second, LEGACY_PORT, at(1));
        let tags = index.to_tags(at(1));
        assert_eq!(tags.entries.len(), 1);
        assert!(tags.entries[0].chunks.is_complete());
        assert_eq!(tags.entries[0].last_seen, at(1));
        // A second round refreshes both halves: nothing expires.
        index.apply(ip(3), &first, LEGACY_PORT, at(60));
        index.apply(ip(3), &second, LEGACY_PORT, at(61));
        assert!(!index.expire(at(200)));
        assert!(index.to_tags(at(200)).entries[0].chunks.is_complete());
    }

    #[test]
    fn same_name_different_contents_from_two_peers_stay_apart() {
        let mut index = Index::new();
        let a = meta("alice's notes", 100);
        let b = meta("bob's notes", 200);
        index.apply(
            ip(2),
            &ours("alice", 5001, 60, &["notes.txt_1"], &[("notes.txt", a)]),
            LEGACY_PORT,
            t0(),
        );
        index.apply(
            ip(3),
            &ours("bob", 5001, 60, &["notes.txt_2"], &[("notes.txt", b)]),
            LEGACY_PORT,
            t0(),
        );
        // And a legacy peer with a file of the same name: no digest, a third entry.
        index.apply(ip(4), &legacy("ece", &["notes.txt_3"]), LEGACY_PORT, t0());
        let tags = index.to_tags(t0());
        assert_eq!(tags.entries.len(), 3);
        let offers: std::collections::HashSet<_> =
            tags.live(t0()).map(|e| (&e.content, e.sha256)).collect();
        assert_eq!(offers.len(), 3, "three different offers of notes.txt");
        let by_user = |u: &str| tags.entries.iter().find(|e| e.user == u).unwrap();
        assert_eq!(by_user("alice").sha256, Some(a.sha256));
        assert_eq!(by_user("alice").size, Some(100));
        assert_eq!(by_user("bob").sha256, Some(b.sha256));
        assert_eq!(by_user("ece").sha256, None);
    }

    #[test]
    fn a_new_digest_for_a_name_replaces_the_old_entry_of_that_peer() {
        let mut index = Index::new();
        let old = meta("v1", 1);
        let new = meta("v2", 2);
        index.apply(
            ip(2),
            &ours("alice", 5001, 60, &["doc_1"], &[("doc", old)]),
            LEGACY_PORT,
            t0(),
        );
        index.apply(
            ip(2),
            &ours("alice", 5001, 60, &["doc_1", "doc_2"], &[("doc", new)]),
            LEGACY_PORT,
            at(10),
        );
        // One of our peers holds one content per name: the new file replaces the old at once.
        assert_eq!(index.len(), 1);
        let tags = index.to_tags(at(10));
        assert_eq!(tags.entries[0].sha256, Some(new.sha256));
        // Chunks first announced before their digest was known are replaced the same way.
        index.apply(
            ip(3),
            &ours("bob", 5001, 60, &["doc_1"], &[]),
            LEGACY_PORT,
            at(11),
        );
        index.apply(
            ip(3),
            &ours("bob", 5001, 60, &["doc_1"], &[("doc", new)]),
            LEGACY_PORT,
            at(12),
        );
        let bobs: Vec<_> = index
            .to_tags(at(12))
            .entries
            .into_iter()
            .filter(|e| e.user == "bob")
            .collect();
        assert_eq!(bobs.len(), 1);
        assert_eq!(bobs[0].sha256, Some(new.sha256));
    }

    #[test]
    fn two_peers_behind_one_address_do_not_evict_each_other() {
        let mut index = Index::new();
        let mut a = ours("alice", 5001, 60, &["x_1"], &[]);
        let mut b = ours("bob", 5002, 60, &["y_1"], &[]);
        a.p2p.as_mut().unwrap().instance = Some("aaaa".into());
        b.p2p.as_mut().unwrap().instance = Some("bbbb".into());
        for n in 0..3 {
            index.apply(ip(2), &a, LEGACY_PORT, at(n));
            index.apply(ip(2), &b, LEGACY_PORT, at(n));
        }
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn same_ip_different_ports_are_different_holders() {
        let mut index = Index::new();
        index.apply(
            ip(2),
            &ours("a", 5001, 60, &["x_1"], &[]),
            LEGACY_PORT,
            t0(),
        );
        index.apply(
            ip(2),
            &ours("b", 6001, 60, &["x_1"], &[]),
            LEGACY_PORT,
            t0(),
        );
        assert_eq!(
            as_arrays(lines(&index, t0())),
            vec![
                line("a", "127.0.0.2:5001", "p2p/1", "x", "1----"),
                line("b", "127.0.0.2:6001", "p2p/1", "x", "1----"),
            ]
        );
    }

    #[test]
    fn expiry_is_per_chunk_and_honours_each_peers_interval() {
        let mut index = Index::new();
        // Fast peer: interval 10 s, so chunks last 30 s. Legacy peer: 60 s (assumed, then
        // observed), so 180 s.
        index.apply(
            ip(2),
            &ours("fast", 5001, 10, &["f_1", "f_2"], &[]),
            LEGACY_PORT,
            t0(),
        );
        index.apply(ip(9), &legacy("slow", &["s_1", "s_2"]), LEGACY_PORT, t0());
        // Only f_2 and s_2 are re-announced.
        index.apply(
            ip(2),
            &ours("fast", 5001, 10, &["f_2"], &[]),
            LEGACY_PORT,
            at(20),
        );

        assert!(!index.expire(at(29)));
        assert!(index.expire(at(30)), "f_1 is 3 x 10 s old");
        assert_eq!(
            as_arrays(lines(&index, at(30))),
            vec![
                line("fast", "127.0.0.2:5001", "p2p/1", "f", "-2---"),
                line("slow", "127.0.0.9:5001", "legacy", "s", "12---"),
            ]
        );
        assert_eq!(index.to_tags(at(30)).entries[0].last_seen, at(20));
        assert!(index.expire(at(50)), "f_2 is 30 s old: the entry goes");
        assert_eq!(index.len(), 1);
        index.apply(ip(9), &legacy("slow", &["s_2"]), LEGACY_PORT, at(60));
        assert_eq!(index.to_tags(at(60)).entries[0].interval, 60, "observed");
        assert!(!index.expire(at(179)));
        assert!(index.expire(at(180)), "s_1 is 3 x 60 s old");
        assert_eq!(
            as_arrays(lines(&index, at(180))),
            vec![line("slow", "127.0.0.9:5001", "legacy", "s", "-2---")]
        );
        assert!(!index.expire(at(239)));
        assert!(index.expire(at(240)));
        assert!(index.is_empty());
        assert!(index.to_tags(at(240)).entries.is_empty());
        assert!(!index.expire(at(1000)), "nothing left to remove");
    }

    #[test]
    fn to_tags_hides_stale_chunks_even_before_expire_runs() {
        let mut index = Index::new();
        index.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
        index.apply(ip(9), &legacy("ece", &["e_2"]), LEGACY_PORT, at(100));
        let tags = index.to_tags(at(181));
        assert_eq!(tags.entries[0].chunks.to_string(), "-2---");
        assert!(index.to_tags(at(281)).entries.is_empty());
    }

    #[test]
    fn latest_username_and_extension_win() {
        let mut index = Index::new();
        index.apply(ip(2), &legacy("old name", &["x_1"]), LEGACY_PORT, t0());
        index.apply(ip(2), &legacy("new name", &["x_2"]), LEGACY_PORT, at(5));
        let tags = index.to_tags(at(5));
        assert_eq!(tags.entries.len(), 1);
        assert_eq!(tags.entries[0].user, "new name");
        assert_eq!(tags.entries[0].chunks.to_string(), "12---");
    }

    #[test]
    fn restarted_listener_reloads_tags_and_still_expires_stale_entries() {
        let mut before = Index::new();
        let m = meta("photo", 42);
        before.apply(
            ip(2),
            &ours("alice", 5001, 10, &["p_1", "p_2"], &[("p", m)]),
            LEGACY_PORT,
            t0(),
        );
        before.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(5));
        before.apply(
            ip(2),
            &ours("alice", 5001, 10, &["p_2"], &[("p", m)]),
            LEGACY_PORT,
            at(5),
        );
        let written = before.to_tags(at(5)).to_string();

        let reread = TagsIndex::parse(&written, Path::new("tags.txt")).unwrap();
        let mut after = Index::from_tags(&reread);
        assert_eq!(after.to_tags(at(5)), before.to_tags(at(5)));
        // The file keeps one time per entry, the latest: p_1 now counts as seen at 5 s.
        assert!(!after.expire(at(34)));
        assert!(after.expire(at(35)), "alice's 10 s interval is honoured");
        assert_eq!(
            as_arrays(lines(&after, at(35))),
            vec![line("ece", "127.0.0.9:5001", "legacy", "e", "1----")]
        );
        // A fresh announcement after the restart refreshes what was reloaded.
        after.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(100));
        assert!(!after.expire(at(185)));
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn reloading_merges_duplicate_lines() {
        let text = "\
alice 127.0.0.2:5001 legacy x 1---- - - - 60 2026-11-21T18:00:00Z
alice 127.0.0.2:5001 legacy x -2--- - - - 60 2026-11-21T18:00:30Z
";
        let tags = TagsIndex::parse(text, Path::new("t")).unwrap();
        let index = Index::from_tags(&tags);
        let out = index.to_tags(at(30));
        assert_eq!(out.entries.len(), 1);
        assert_eq!(out.entries[0].chunks.to_string(), "12---");
        assert_eq!(out.entries[0].last_seen, at(30));
        assert_eq!(
            index.to_tags(at(181)).entries[0].chunks.to_string(),
            "-2---"
        );
    }

    #[test]
    fn junk_is_ignored_and_never_panics() {
        let mut index = Index::new();
        let long = "n".repeat(shared::MAX_CONTENT_NAME_BYTES + 1);
        let odd: Vec<String> = vec![
            String::new(),
            "_1".into(),
            "a_0".into(),
            "a_6".into(),
            "a_12".into(),
            "../etc/passwd_1".into(),
            "a\\b_1".into(),
            "tab\there_1".into(),
            format!("{long}_1"),
            "a_1 ".into(),
            "plain.txt".into(),
        ];
        let a = Announcement {
            username: "x".into(),
            files: odd,
            p2p: None,
        };
        assert!(!index.apply(ip(2), &a, LEGACY_PORT, t0()));
        assert!(index.is_empty());
        // An announcement without chunks (a peer with an empty store) adds nothing either.
        assert!(!index.apply(ip(2), &ours("y", 1, 60, &[], &[]), LEGACY_PORT, t0()));
        // Extremes of the extension.
        let extremes = [
            ours("z", 1, 0, &["a_1"], &[]),
            ours("z", u16::MAX, u64::MAX, &["b_1"], &[]),
        ];
        for a in &extremes {
            assert!(index.apply(ip(2), a, LEGACY_PORT, t0()));
        }
        let tags = index.to_tags(t0());
        assert_eq!(tags.entries.len(), 2);
        for e in &tags.entries {
            assert!((1..=MAX_INTERVAL_SECS).contains(&e.interval));
            let _ = e.expires_at();
        }
        // Zero is taken as one second: gone after three.
        assert!(index.expire(at(3)));
        assert_eq!(index.len(), 1);
        assert!(index.expire(at(i64::try_from(3 * MAX_INTERVAL_SECS).unwrap())));
        assert!(index.is_empty());
    }

    #[test]
    fn ipv4_mapped_sources_are_shown_as_ipv4() {
        let mut index = Index::new();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        index.apply(mapped, &legacy("a", &["x_1"]), LEGACY_PORT, t0());
        assert_eq!(
            index.to_tags(t0()).entries[0].addr,
            "127.0.0.2:5001".parse().unwrap()
        );
    }

    #[test]
    fn usernames_are_sanitized() {
        assert_eq!(sanitize_username(""), "");
        assert_eq!(
            sanitize_username("a\nb\tc\u{1b}[31m"),
            "a\u{fffd}b\u{fffd}c\u{fffd}[31m"
        );
        assert_eq!(
            sanitize_username("mal\u{202e}yrol\u{200b}"),
            "mal\u{fffd}yrol\u{fffd}"
        );
        let long = "é".repeat(MAX_USERNAME_BYTES);
        let cut = sanitize_username(&long);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES);
        let odd = format!("x{long}");
        let cut = sanitize_username(&odd);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES - 1, "cut on a char boundary");

        let mut index = Index::new();
        index.apply(ip(2), &legacy("", &["x_1"]), LEGACY_PORT, t0());
        index.apply(
            ip(3),
            &legacy(&"\n".repeat(100), &["x_1"]),
            LEGACY_PORT,
            t0(),
        );
        let tags = index.to_tags(t0());
        assert_eq!(tags.entries[0].user, "");
        assert!(!tags.entries[1].user.contains('\n'));
        // Whatever the names, the file reads back as written.
        let text = tags.to_string();
        let reread = TagsIndex::parse(&text, Path::new("t")).unwrap();
        assert_eq!(reread, tags);
    }

    // ---- Hostile and broken peers (issue 7) ----

    /// One of our announcements of `contents` distinct contents (chunk 1 of each), named
    /// `<prefix><n>`, as a flooder would send.
    fn many(user: &str, prefix: &str, contents: usize) -> Announcement {
        let names: Vec<String> = (0..contents).map(|n| format!("{prefix}{n}_1")).collect();
        let files: Vec<&str> = names.iter().map(String::as_str).collect();
        ours(user, 6001, 60, &files, &[])
    }

    #[test]
    fn one_datagram_adds_at_most_the_per_datagram_cap() {
        let mut index = Index::new();
        index.apply(ip(5), &many("flood", "f", 4000), LEGACY_PORT, t0());
        assert!(
            index.len() <= 512,
            "{} entries from one datagram",
            index.len()
        );
        assert!(!index.is_empty());
    }

    #[test]
    fn one_source_holds_at_most_the_per_source_cap() {
        let mut index = Index::new();
        for round in 0..10 {
            let a = many("flood", &format!("r{round}-"), 400);
            index.apply(ip(5), &a, LEGACY_PORT, at(round));
        }
        assert!(
            index.len() <= 1000,
            "{} entries from one source",
            index.len()
        );
        // Entries it already has are still refreshed.
        let first = many("flood", "r0-", 1);
        assert!(index.apply(ip(5), &first, LEGACY_PORT, at(100)));
        // Another source is not affected by that source's cap.
        assert!(index.apply(ip(6), &legacy("ece", &["e_1"]), LEGACY_PORT, at(100)));
    }

    #[test]
    fn the_index_holds_at_most_the_total_cap_and_a_new_peer_still_gets_in() {
        let mut index = Index::new();
        for source in 10..40u8 {
            for round in 0..3 {
                let a = many("flood", &format!("s{source}-r{round}-"), 400);
                index.apply(ip(source), &a, LEGACY_PORT, at(round.into()));
            }
        }
        assert!(index.len() <= 10_000, "{} entries", index.len());
        assert!(index.apply(ip(9), &legacy("ece", &["honest_1"]), LEGACY_PORT, at(5)));
        assert!(index.len() <= 10_000, "{} entries", index.len());
        assert!(index
            .to_tags(at(5))
            .entries
            .iter()
            .any(|e| e.user == "ece" && e.content == "honest"));
    }

    #[test]
    fn a_full_index_is_shared_fairly_and_then_stops_changing() {
        let mut index = Index::with_limits(Limits {
            max_entries: 10,
            max_entries_per_source: 10,
            max_chunks_per_datagram: 512,
        });
        index.apply(ip(5), &many("a", "a", 10), LEGACY_PORT, t0());
        assert_eq!(index.len(), 10);
        index.apply(ip(6), &many("b", "b", 10), LEGACY_PORT, at(1));
        let count = |index: &Index, last: u8| {
            index
                .to_tags(at(1))
                .entries
                .iter()
                .filter(|e| e.addr.ip() == ip(last))
                .count()
        };
        assert_eq!((count(&index, 5), count(&index, 6)), (5, 5));
        let refused = index.take_refusals();
        assert_eq!((refused.evicted, refused.over_total), (5, 5));
        // At fair shares, more invented names change nothing: no eviction back and forth.
        assert!(!index.apply(ip(5), &many("a", "a2-", 10), LEGACY_PORT, at(2)));
        assert!(!index.apply(ip(6), &many("b", "b2-", 10), LEGACY_PORT, at(2)));
        assert_eq!(index.take_refusals().evicted, 0);
        // A newcomer always gets in.
        assert!(index.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(3)));
        assert_eq!(index.len(), 10);
    }

    #[test]
    fn announced_intervals_are_honoured_up_to_ten_minutes() {
        let mut index = Index::new();
        let three_days = 3 * 24 * 60 * 60;
        index.apply(
            ip(2),
            &ours("slow", 6001, three_days, &["s_1"], &[]),
            LEGACY_PORT,
            t0(),
        );
        assert_eq!(index.to_tags(t0()).entries[0].interval, 600);
        assert!(!index.expire(at(1799)));
        assert!(index.expire(at(1800)), "gone after 3 x 600 s");
        assert!(index.is_empty());
    }

    #[test]
    fn a_goodbye_without_the_recorded_instance_drops_nothing() {
        let mut index = Index::new();
        let hello = run_of("alice", 6001, &["a_1"], Some("r1"), Kind::Announce);
        index.apply(ip(2), &hello, LEGACY_PORT, t0());
        // Forged: no instance, or another one, or for a user with no recorded instance.
        for forged in [
            run_of("alice", 6001, &[], None, Kind::Goodbye),
            run_of("alice", 6001, &[], Some("r0"), Kind::Goodbye),
        ] {
            assert!(!index.apply(ip(2), &forged, LEGACY_PORT, at(1)));
            assert_eq!(index.len(), 1);
        }
        let unknown = run_of("bob", 6002, &["b_1"], None, Kind::Announce);
        index.apply(ip(3), &unknown, LEGACY_PORT, t0());
        let bye = run_of("bob", 6002, &[], None, Kind::Goodbye);
        assert!(!index.apply(ip(3), &bye, LEGACY_PORT, at(1)));
        assert_eq!(index.len(), 2);
        // The real goodbye still works.
        let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
        assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(2)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_new_instance_without_chunks_does_not_erase_the_old_one() {
        let mut index = Index::new();
        let hello = run_of("alice", 6001, &["a_1", "b_1"], Some("r1"), Kind::Announce);
        index.apply(ip(2), &hello, LEGACY_PORT, t0());
        let forged = run_of("alice", 6001, &[], Some("forged"), Kind::Announce);
        index.apply(ip(2), &forged, LEGACY_PORT, at(1));
        assert_eq!(index.len(), 2);
        // Nor does it take over the instance: alice's own goodbye still applies.
        let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
        assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(2)));
        assert!(index.is_empty());
        // A new instance that announces chunks does replace the old run.
        index.apply(ip(2), &hello, LEGACY_PORT, at(3));
        let restarted = run_of("alice", 6001, &["c_1"], Some("r2"), Kind::Announce);
        index.apply(ip(2), &restarted, LEGACY_PORT, at(4));
        assert_eq!(
            as_arrays(lines(&index, at(4))),
            vec![line("alice", "127.0.0.2:6001", "p2p/1", "c", "1----")]
        );
    }

    #[test]
    fn port_zero_and_unknown_versions_make_the_extension_unreadable() {
        let mut index = Index::new();
        let zero = ours("zero", 0, 60, &["z_1"], &[("z", meta("z", 1))]);
        let mut future = ours("future", 6001, 60, &["f_1"], &[("f", meta("f", 1))]);
        future.p2p.as_mut().unwrap().v = 4_000_000_000;
        index.apply(ip(2), &zero, LEGACY_PORT, t0());
        index.apply(ip(3), &future, LEGACY_PORT, t0());
        let tags = index.to_tags(t0());
        assert_eq!(tags.entries.len(), 2);
        for e in &tags.entries {
            assert_eq!(e.proto, Proto::Legacy, "{e:?}");
            assert_eq!(e.addr.port(), LEGACY_PORT);
            assert_eq!((e.size, e.sha256), (None, None));
        }
        // Nor can such a datagram say goodbye for a peer.
        let mut bye = run_of("zero", 6001, &[], None, Kind::Goodbye);
        bye.p2p.as_mut().unwrap().v = 4_000_000_000;
        assert!(!index.apply(ip(2), &bye, LEGACY_PORT, at(1)));
    }

    #[test]
    fn legacy_expiry_follows_the_interval_observed_from_that_peer() {
        let mut index = Index::new();
        // A legacy peer announcing every 5 to 10 seconds, then stopping.
        let mut t = 0;
        for gap in [0, 5, 10, 7, 5, 9, 6] {
            t += gap;
            index.apply(ip(9), &legacy("quick", &["q_1", "q_2"]), LEGACY_PORT, at(t));
            assert!(!index.expire(at(t)), "at {t}");
        }
        let every = index.to_tags(at(t)).entries[0].interval;
        assert!((5..=10).contains(&every), "observed interval {every}");
        assert!(
            !index.expire(at(t + 3 * 5 - 1)),
            "kept for 3 observed intervals"
        );
        assert!(
            index.expire(at(t + 3 * 10)),
            "gone after 3 observed intervals"
        );
        assert!(index.is_empty());
        // Bounded: a legacy peer repeating itself every second counts as every 5 s...
        let mut index = Index::new();
        for t in 0..10 {
            index.apply(ip(9), &legacy("chatty", &["c_1"]), LEGACY_PORT, at(t));
        }
        assert_eq!(index.to_tags(at(9)).entries[0].interval, 5);
        // ... and one heard every 5 minutes as every 60 s, the legacy rule.
        let mut index = Index::new();
        for t in [0, 300, 600] {
            index.apply(ip(9), &legacy("sleepy", &["s_1"]), LEGACY_PORT, at(t));
        }
        assert_eq!(index.to_tags(at(600)).entries[0].interval, 60);
    }

    #[test]
    fn a_legacy_original_file_name_beside_its_chunks_is_no_offer() {
        let mut index = Index::new();
        // `photo_2` is an original file: it would read as chunk 2 of a content `photo`.
        let files = [
            "photo_2",
            "photo_2_1",
            "photo_2_2",
            "photo_2_3",
            "photo_2_4",
            "photo_2_5",
        ];
        index.apply(ip(9), &legacy("ece", &files), LEGACY_PORT, t0());
        assert_eq!(
            as_arrays(lines(&index, t0())),
            vec![line("ece", "127.0.0.9:5001", "legacy", "photo_2", "12345")]
        );
        // Also when the peer splits its announcement over two datagrams.
        let mut index = Index::new();
        index.apply(ip(9), &legacy("ece", &files[..1]), LEGACY_PORT, t0());
        index.apply(ip(9), &legacy("ece", &files[1..]), LEGACY_PORT, t0());
        assert_eq!(index.to_tags(t0()).entries.len(), 1);
        // A real content `photo` beside a real content `photo_2` stays whole.
        let mut index = Index::new();
        let mut both: Vec<&str> = vec!["photo_1", "photo_3", "photo_4", "photo_5"];
        both.extend_from_slice(&files);
        index.apply(ip(9), &legacy("ece", &both), LEGACY_PORT, t0());
        assert_eq!(
            as_arrays(lines(&index, t0())),
            vec![
                line("ece", "127.0.0.9:5001", "legacy", "photo", "12345"),
                line("ece", "127.0.0.9:5001", "legacy", "photo_2", "12345"),
            ]
        );
        // And a lone chunk 2 with nothing to explain it otherwise is listed.
        let mut index = Index::new();
        index.apply(ip(9), &legacy("ece", &["photo_2"]), LEGACY_PORT, t0());
        assert_eq!(
            as_arrays(lines(&index, t0())),
            vec![line("ece", "127.0.0.9:5001", "legacy", "photo", "-2---")]
        );
    }
}
