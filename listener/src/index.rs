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
//! Our peers also say when they restart and when they leave. Every datagram of ours carries the
//! sender's *instance* (one per run); the index remembers the last instance seen from each
//! source IP and username, and an announcement from them with another instance first drops
//! their `p2p` entries, so a restarted peer replaces its old entries (even under another chunk
//! port) instead of sitting beside them until they expire, while two peers behind one address
//! (two folders on one laptop) leave each other alone. A `goodbye` drops the sender's `p2p`
//! entries at its port at once. And since one of our peers holds at most one content per name,
//! a new digest for a name at an address replaces the old entry at once (a file replaced, or
//! announced before its digest was known). Legacy entries, which carry no instance and no
//! digest, are never touched by any of this.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::protocol::{Announcement, Kind};
use shared::tags::{Proto, TagEntry, TagsIndex};
use shared::{
    CHUNKS_PER_FILE, DEFAULT_ANNOUNCE_INTERVAL_SECS, EXPIRY_INTERVALS, MAX_USERNAME_BYTES,
};

/// Longest announce interval we honour, in seconds (one day). A peer claiming more is taken at
/// this value, so a bogus interval cannot keep it listed for ever, nor overflow date arithmetic
/// in the readers of `tags.txt`.
pub const MAX_INTERVAL_SECS: u64 = 24 * 60 * 60;

/// What identifies one line of `tags.txt`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    ip: IpAddr,
    port: u16,
    content: String,
    sha256: Option<Digest>,
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
    /// When each chunk (by position) was last announced; `None` when it never was or expired.
    seen: [Option<DateTime<Utc>>; CHUNKS_PER_FILE],
}

impl Holding {
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
}

/// Longest instance id remembered; ours are 16 hex digits, and a hostile sender must not make
/// the index hold kilobytes per address.
const MAX_INSTANCE_BYTES: usize = 64;

/// The listener's index of holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    holdings: BTreeMap<Key, Holding>,
    /// The last instance announced from each source IP and username that still has entries.
    instances: BTreeMap<(IpAddr, String), String>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// An index seeded from a previously written `tags.txt`: each listed chunk counts as seen at
    /// its entry's `LAST_SEEN`, so entries a restart finds stale still expire on time.
    pub fn from_tags(tags: &TagsIndex) -> Index {
        let mut index = Index::new();
        for entry in &tags.entries {
            let key = Key {
                ip: entry.addr.ip().to_canonical(),
                port: entry.addr.port(),
                content: entry.content.clone(),
                sha256: entry.sha256,
            };
            let holding = index.holdings.entry(key).or_insert_with(|| Holding {
                user: sanitize_username(&entry.user),
                proto: entry.proto,
                size: entry.size,
                root: entry.root,
                interval: clamp_interval(entry.interval),
                seen: [None; CHUNKS_PER_FILE],
            });
            for i in entry.chunks.indexes() {
                let slot = &mut holding.seen[usize::from(i - 1)];
                *slot = (*slot).max(Some(entry.last_seen));
            }
        }
        index
    }

    /// Records one datagram from `source` (its source IP) received at `now`, according to its
    /// kind:
    ///
    /// - an announcement adds or refreshes its chunks. Legacy announcements (no `p2p`
    ///   extension) name no chunk-server port: theirs is taken to be `legacy_chunk_port`.
    ///   Entries that are not chunk names are ignored. One of ours whose instance differs from
    ///   the last one seen from `source` first drops every `p2p` entry of `source`: the peer
    ///   restarted.
    /// - a goodbye drops the `p2p` entries of `source` at the port it names, unless it comes
    ///   from an instance other than the last one seen there (a late goodbye of a previous run).
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
        let ext = announcement.p2p.as_ref();
        let mut changed = false;
        if let Some(ext) = ext {
            let instance = ext.instance.as_deref().map(truncate_instance);
            match ext.kind {
                Kind::Query => return false,
                Kind::Goodbye => {
                    return self.goodbye(ip, &user, ext.port, instance);
                }
                Kind::Announce => {
                    if let Some(instance) = instance {
                        changed |= self.note_instance(ip, &user, instance);
                    }
                }
            }
        }
        let (proto, port, interval) = match ext {
            Some(ext) => (Proto::P2p(ext.v), ext.port, ext.interval),
            None => (
                Proto::Legacy,
                legacy_chunk_port,
                DEFAULT_ANNOUNCE_INTERVAL_SECS,
            ),
        };
        let interval = clamp_interval(interval);
        for chunk in announcement.chunks() {
            let meta = ext.and_then(|e| e.contents.get(chunk.content()));
            let key = Key {
                ip,
                port,
                content: chunk.content().to_owned(),
                sha256: meta.map(|m| m.sha256),
            };
            if proto != Proto::Legacy {
                // Whatever it drops, `changed` is set below for the chunk itself.
                self.drop_other_versions(&key);
            }
            let holding = self.holdings.entry(key).or_insert_with(|| Holding {
                user: user.clone(),
                proto,
                size: None,
                root: None,
                interval,
                seen: [None; CHUNKS_PER_FILE],
            });
            holding.user.clone_from(&user);
            holding.proto = proto;
            holding.size = meta.map(|m| m.size);
            holding.root = meta.and_then(|m| m.root);
            holding.interval = interval;
            holding.seen[chunk.position()] = Some(now);
            changed = true;
        }
        changed
    }

    /// Records `instance` as the last one seen from `ip` as `user`; when another was seen
    /// before, drops their `p2p` entries first. Returns whether entries were dropped.
    fn note_instance(&mut self, ip: IpAddr, user: &str, instance: &str) -> bool {
        let peer = (ip, user.to_owned());
        match self.instances.get(&peer) {
            Some(last) if last == instance => false,
            Some(last) => {
                log::debug!(
                    "{user:?} at {ip} restarted (instance {last} -> {instance}): dropping its entries"
                );
                let dropped = self.drop_p2p(ip, Some(user), None);
                self.instances.insert(peer, instance.to_owned());
                dropped
            }
            None => {
                self.instances.insert(peer, instance.to_owned());
                false
            }
        }
    }

    /// A goodbye from `user` at `ip` for the chunk server at `port`. Returns whether entries
    /// were dropped.
    fn goodbye(&mut self, ip: IpAddr, user: &str, port: u16, instance: Option<&str>) -> bool {
        let peer = (ip, user.to_owned());
        if let (Some(said), Some(last)) = (instance, self.instances.get(&peer)) {
            if said != last {
                log::debug!("ignoring a goodbye from {ip} of instance {said}: {last} is running");
                return false;
            }
        }
        log::debug!("{user:?} at {ip} (port {port}) said goodbye: dropping its entries");
        self.instances.remove(&peer);
        self.drop_p2p(ip, None, Some(port))
    }

    /// Drops the `p2p` entries of `ip` (of `user` only, and at `port` only, when given);
    /// returns whether any was there.
    fn drop_p2p(&mut self, ip: IpAddr, user: Option<&str>, port: Option<u16>) -> bool {
        let before = self.holdings.len();
        self.holdings.retain(|key, holding| {
            !(key.ip == ip
                && matches!(holding.proto, Proto::P2p(_))
                && user.is_none_or(|u| u == holding.user)
                && port.is_none_or(|p| p == key.port))
        });
        self.holdings.len() != before
    }

    /// Drops the entries of the same address, port and content name as `key` but another
    /// digest: one of our peers holds one content per name, so `key` supersedes them.
    fn drop_other_versions(&mut self, key: &Key) -> bool {
        let before = self.holdings.len();
        self.holdings.retain(|other, holding| {
            !(other.ip == key.ip
                && other.port == key.port
                && other.content == key.content
                && other.sha256 != key.sha256
                && holding.proto != Proto::Legacy)
        });
        self.holdings.len() != before
    }

    /// Forgets the chunks not re-announced within [`EXPIRY_INTERVALS`] of their holder's
    /// interval, and the entries left with none. Returns whether anything was removed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
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
        // An address with no entry left has nothing a restart could duplicate: forget its
        // instance, so spoofed sources cannot grow the map for ever.
        if self.instances.len() > self.holdings.len() || changed {
            let live: std::collections::BTreeSet<(IpAddr, &str)> = self
                .holdings
                .iter()
                .map(|(k, h)| (k.ip, h.user.as_str()))
                .collect();
            self.instances
                .retain(|(ip, user), _| live.contains(&(*ip, user.as_str())));
        }
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
        // Without an instance (or with no instance known), a goodbye is taken at its word.
        let anonymous = run_of("bob", 6001, &[], None, Kind::Goodbye);
        assert!(index.apply(ip(3), &anonymous, LEGACY_PORT, at(4)));
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
        let offers = tags.offers(t0());
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
        // Fast peer: interval 10 s, so chunks last 30 s. Legacy peer: 60 s, so 180 s.
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
        index.apply(ip(9), &legacy("slow", &["s_2"]), LEGACY_PORT, at(20));

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
        assert!(!index.expire(at(179)));
        assert!(index.expire(at(180)), "s_1 is 3 x 60 s old");
        assert_eq!(
            as_arrays(lines(&index, at(180))),
            vec![line("slow", "127.0.0.9:5001", "legacy", "s", "-2---")]
        );
        assert!(index.expire(at(200)));
        assert!(index.is_empty());
        assert!(index.to_tags(at(200)).entries.is_empty());
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
alice 127.0.0.2:5001 legacy x 1---- - - 60 2026-11-21T18:00:00Z
alice 127.0.0.2:5001 legacy x -2--- - - 60 2026-11-21T18:00:30Z
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
            ours("z", 0, 0, &["a_1"], &[]),
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
}
