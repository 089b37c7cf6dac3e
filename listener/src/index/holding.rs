//! One line of `tags.txt` as the index keeps it: its [`Key`] (who holds what) and its
//! [`Holding`] (since when each chunk was seen, and what the holder said about it), with the
//! two time rules that apply to one holding: freshness ([`shared::tags::expires_at`]) and the
//! interval observed from a legacy peer; also how much of an announcement's claims the index
//! believes (its extension, interval and instance id), and which legacy lines are no offer.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::protocol::{Announcement, AnnouncementExt, Kind, MAX_ANNOUNCE_INTERVAL_SECS};
use shared::tags::{expires_at, Proto};
use shared::trust::PeerId;

use super::Who;
use shared::username::truncate;
use shared::{CHUNKS_PER_FILE, DEFAULT_ANNOUNCE_INTERVAL_SECS, PROTOCOL_VERSION};

/// Shortest interval observed from a legacy peer that we honour, in seconds: one repeating
/// itself faster still expires 3 × 5 s after it stops.
pub const LEGACY_MIN_INTERVAL_SECS: u64 = 5;

/// Longest interval observed from a legacy peer that we honour, in seconds: the legacy rule,
/// once a minute.
pub const LEGACY_MAX_INTERVAL_SECS: u64 = DEFAULT_ANNOUNCE_INTERVAL_SECS;

/// Two announcements of a content by a legacy peer closer than this are one round (a
/// duplicate, or an announcement split over datagrams), not a measure of its interval.
const LEGACY_SAME_ROUND_MS: i64 = 1000;

/// What identifies one line of `tags.txt`. Ordered by source IP first, so one address's
/// entries are neighbours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) content: String,
    pub(crate) sha256: Option<Digest>,
}

impl Key {
    /// The smallest key of `ip`: where its range of entries starts.
    pub(crate) fn first_of(ip: IpAddr) -> Key {
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
pub(crate) struct Holding {
    pub(crate) user: String,
    /// The peer ID that signed the announcements (private network only).
    pub(crate) id: Option<PeerId>,
    /// The username is pinned to another peer ID ([`super::Index`]'s pins).
    pub(crate) impostor: bool,
    pub(crate) proto: Proto,
    pub(crate) size: Option<u64>,
    /// The root digest of the holder's manifest, when announced.
    pub(crate) root: Option<Digest>,
    pub(crate) interval: u64,
    /// For a legacy holder: whether `interval` was observed rather than assumed.
    pub(crate) observed: bool,
    /// When each chunk (by position) was last announced; `None` when it never was or expired.
    pub(crate) seen: [Option<DateTime<Utc>>; CHUNKS_PER_FILE],
}

impl Holding {
    /// Whether this entry is `who`'s: same username, same peer ID (or both without one).
    pub(crate) fn is(&self, who: &Who) -> bool {
        self.user == who.user && self.id == who.id
    }

    pub(crate) fn new(who: &Who, proto: Proto, interval: u64) -> Holding {
        Holding {
            user: who.user.clone(),
            id: who.id,
            impostor: false,
            proto,
            size: None,
            root: None,
            interval,
            observed: false,
            seen: [None; CHUNKS_PER_FILE],
        }
    }

    /// Whether chunk time `t` still counts at `now`.
    pub(crate) fn fresh(&self, t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        expires_at(t, self.interval) > now
    }

    /// The chunks still fresh at `now`, and the latest time one of them was seen.
    pub(crate) fn visible(&self, now: DateTime<Utc>) -> (ChunkSet, Option<DateTime<Utc>>) {
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

    /// What `tags.txt` shows of this entry at `now`, but its `LAST_SEEN`: what makes a change
    /// one to write at once rather than a refresh (see `pending`).
    pub(crate) fn shown(&self, now: DateTime<Utc>) -> Shown {
        (
            self.visible(now).0,
            self.user.clone(),
            self.impostor,
            self.proto,
            self.size,
            self.root,
            self.interval,
        )
    }

    /// A legacy holder announced `chunks` again at `now`: updates the interval observed from
    /// it (see the module documentation).
    pub(crate) fn observe_legacy_interval(&mut self, chunks: ChunkSet, now: DateTime<Utc>) {
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

/// The columns of a line of `tags.txt` but its `LAST_SEEN` ([`Holding::shown`]).
pub(crate) type Shown = (
    ChunkSet,
    String,
    bool,
    Proto,
    Option<u64>,
    Option<Digest>,
    u64,
);

/// Longest announce interval we honour, in seconds
/// ([`MAX_ANNOUNCE_INTERVAL_SECS`], ten minutes). A peer claiming more is taken at this value,
/// so a bogus interval cannot keep it listed for days, nor overflow date arithmetic in the
/// readers of `tags.txt`.
pub const MAX_INTERVAL_SECS: u64 = MAX_ANNOUNCE_INTERVAL_SECS;

/// Longest instance id remembered; ours are 16 hex digits, and a hostile sender must not make
/// the index hold kilobytes per address.
pub(crate) const MAX_INSTANCE_BYTES: usize = 64;

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

/// Whether the legacy entry `key` is no offer at all: each of its fresh chunks `<content>_<i>`
/// is also the content name of fresh chunks the same peer announces, i.e. an original file
/// listed beside its chunks (see the module documentation).
pub(crate) fn is_original_file_name(
    holdings: &BTreeMap<Key, Holding>,
    key: &Key,
    chunks: ChunkSet,
    now: DateTime<Utc>,
) -> bool {
    !chunks.is_empty()
        && chunks.indexes().all(|i| {
            let other = Key {
                content: format!("{}_{i}", key.content),
                ..key.clone()
            };
            holdings
                .get(&other)
                .is_some_and(|h| h.proto == Proto::Legacy && !h.visible(now).0.is_empty())
        })
}

/// An instance id as remembered: cut to [`MAX_INSTANCE_BYTES`] on a character boundary.
pub(crate) fn truncate_instance(instance: &str) -> &str {
    truncate(instance, MAX_INSTANCE_BYTES)
}

/// An announced interval as we honour it: at least one second (zero would expire at once), at
/// most [`MAX_INTERVAL_SECS`].
pub(crate) fn clamp_interval(secs: u64) -> u64 {
    secs.clamp(1, MAX_INTERVAL_SECS)
}
