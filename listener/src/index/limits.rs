//! How big the index may grow ([`Limits`]), what the limits refused ([`Refusals`]), and how
//! many entries each source holds ([`SourceCounts`]), which is what eviction looks at.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Default of [`Limits::max_entries`]: a peer sharing 10,000 files and room for 2,000 entries
/// of everyone else. It sets what a flood can cost: 12,000 entries, measured at 28-29 MiB peak
/// RSS flooded from 4 or 16 addresses (`scripts/bench-hostile/listener-flood.sh`).
pub const DEFAULT_MAX_ENTRIES: usize = 12_000;

/// Default of [`Limits::max_entries_per_source`]: a peer sharing 10,000 files is listed whole.
/// Near [`DEFAULT_MAX_ENTRIES`], because that bound, not this one, sets what a flood costs, and
/// once the index is full, eviction keeps one big source from shutting a new peer out.
pub const DEFAULT_MAX_ENTRIES_PER_SOURCE: usize = 10_000;

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

/// What the [`Limits`] refused since the last [`Index::take_refusals`](super::Index::take_refusals).
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
    /// Announcements of an entry that another peer ID holds (a member sending from another
    /// member's address), left untouched.
    pub foreign: u64,
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
        self.foreign += other.foreign;
    }
}

/// How many entries each source IP holds, kept two ways: by address, and ordered by size so
/// the biggest source is found at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceCounts {
    /// How many entries each source IP holds (absent: none).
    per_source: HashMap<IpAddr, usize>,
    /// The same counts, ordered.
    by_size: BTreeSet<(usize, IpAddr)>,
}

impl SourceCounts {
    /// How many entries `ip` holds.
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }

    /// The source holding the most entries, and how many.
    pub(crate) fn biggest(&self) -> Option<(usize, IpAddr)> {
        self.by_size.last().copied()
    }

    /// Sets the number of entries `ip` holds, in both maps.
    pub(crate) fn set(&mut self, ip: IpAddr, count: usize) {
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

    /// The counts of these source addresses, one per entry.
    pub(crate) fn of<'a>(sources: impl Iterator<Item = &'a IpAddr>) -> SourceCounts {
        let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
        for ip in sources {
            *per_source.entry(*ip).or_default() += 1;
        }
        SourceCounts {
            by_size: per_source.iter().map(|(ip, n)| (*n, *ip)).collect(),
            per_source,
        }
    }
}
