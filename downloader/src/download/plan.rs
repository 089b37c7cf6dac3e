//! The decisions of a download, kept pure so they can be tested without a network: which holder
//! to ask for each chunk and in what order, which chunk an idle holder should duplicate
//! (endgame), what each chunk must be, which holders vouch for the manifest, and which legacy
//! chunk lengths the chunking rule rules out.
//!
//! The workers (`workers.rs`) carry these decisions out; nothing here does I/O or takes a lock.

use std::collections::HashSet;
use std::time::Duration;

use shared::chunk::{chunk_ranges, ChunkName};
use shared::digest::Digest;
use shared::protocol::Manifest;
use shared::CHUNKS_PER_FILE;

use crate::catalog::Holder;
use crate::fetch::{Expected, MAX_WRITE};

/// Orders each chunk's holders: first the least-loaded holder that has it, so the chunks are
/// spread over the holders, then the others as fallbacks. Among equally loaded holders,
/// `proven` (the holder that just answered the manifest request) comes first, so at least one
/// chunk goes to a holder known to answer, and frees it early to help with the others
/// (endgame); `seed` rotates the other ties so that several downloaders do not all start with
/// the same holder.
pub(super) fn plan_sources(
    holders: &[Holder],
    chunks: &[ChunkName],
    seed: usize,
    proven: Option<usize>,
) -> Vec<Vec<usize>> {
    let mut load = vec![0usize; holders.len()];
    let n = holders.len().max(1);
    chunks
        .iter()
        .map(|chunk| {
            let mut candidates: Vec<usize> = (0..holders.len())
                .filter(|&h| holders[h].chunks.contains(chunk.index()))
                .collect();
            candidates.sort_by_key(|&h| (load[h], Some(h) != proven, (h + n - seed % n) % n));
            if let Some(&first) = candidates.first() {
                load[first] += 1;
            }
            // Nobody is asked for a chunk it did not announce: some legacy servers crash on
            // that (the download takes unannounced trailing chunks of a legacy file as empty).
            candidates
        })
        .collect()
}

/// The holders to ask again for a legacy chunk discarded for its length: its holders in plan
/// order, less those that already failed it.
pub(super) fn replan(holders: &[Holder], chunk: &ChunkName, failed: &HashSet<usize>) -> Vec<usize> {
    plan_sources(holders, std::slice::from_ref(chunk), 0, None)
        .remove(0)
        .into_iter()
        .filter(|h| !failed.contains(h))
        .collect()
}

/// The chunks whose lengths cannot come from the chunking rule (`ceil(size / 5)` bytes each, in
/// order, the rest in the last non-empty one): a chunk shorter than the longest before the
/// last non-empty chunk, and empty trailing chunks when the total needs more chunks than
/// arrived. A legacy server that closes early produces such lengths; a short last chunk
/// cannot be told from a smaller file.
pub(super) fn short_legacy_chunks(lens: &[u64; CHUNKS_PER_FILE]) -> Vec<usize> {
    let full = lens.iter().copied().max().unwrap_or(0);
    let Some(last) = lens.iter().rposition(|&len| len > 0) else {
        return Vec::new();
    };
    let mut short: Vec<usize> = (0..last).filter(|&i| lens[i] < full).collect();
    let total: u64 = lens.iter().sum();
    if short.is_empty() && shared::chunk::chunk_len(total) != full {
        short.extend(last + 1..CHUNKS_PER_FILE);
    }
    short
}

/// What each chunk must be: its length and digest under `manifest`; unknown without one
/// (legacy contents).
pub(super) fn expected_chunks(manifest: Option<&Manifest>) -> [Option<Expected>; CHUNKS_PER_FILE] {
    match manifest {
        Some(m) => {
            let ranges = chunk_ranges(m.size);
            std::array::from_fn(|i| {
                Some(Expected {
                    len: ranges[i].len(),
                    sha256: m.chunks[i],
                })
            })
        }
        None => [None; CHUNKS_PER_FILE],
    }
}

/// Whether a legacy chunk nobody announced is taken as empty without asking: legacy peers keep
/// no file for the empty trailing chunks of a small file, so nobody announces them, and some
/// legacy servers crash when asked for a chunk they lack. The chunking rule checks afterwards.
pub(super) fn implied_empty(holders: &[Holder], chunk: &ChunkName, has_manifest: bool) -> bool {
    !has_manifest && !holders.iter().any(|h| h.chunks.contains(chunk.index()))
}

/// Per holder: whether wrong bytes from it are its fault. A holder is blamed only when it
/// announced the root of this very manifest (its bytes contradict what it vouched for), or when
/// this peer verified the manifest itself before (`trusted`). Others (older peers that announce
/// no root) merely failed that chunk.
pub(super) fn vouching(holders: &[Holder], root: Option<Digest>, trusted: bool) -> Vec<bool> {
    holders
        .iter()
        .map(|h| trusted || (root.is_some() && h.root == root))
        .collect()
}

/// Whether `holder` vouches for the manifest whose root is `root`, as far as its announcement
/// tells (a holder that announced no root is believed until the whole file is checked).
pub(super) fn vouched_by(holder: &Holder, root: Digest) -> bool {
    holder.root.is_none_or(|r| r == root)
}

/// A transfer split for an idle holder keeps at least this much of its range: what it may be
/// writing while the split is decided (it reads where it must stop before each write of at
/// most [`MAX_WRITE`]), twice over...
pub(super) const STEAL_MARGIN: u64 = 2 * MAX_WRITE as u64;
/// ...and the idle holder gets at least this much.
pub(super) const MIN_PIECE: u64 = 256 << 10;

/// A rate in bytes per second (at least 1): `bytes` in `elapsed`.
pub(super) fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let ms = u64::try_from(elapsed.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    (bytes.saturating_mul(1000) / ms).max(1)
}

/// Where to cut a transfer at byte `pos` of a range ending at `end`, sending `victim_rate`
/// bytes per second, so that an idle holder sending `thief_rate` takes the rest and both
/// finish together: the transfer keeps [`STEAL_MARGIN`] and its share of what is left beyond.
/// `None` when the idle holder's part would be under [`MIN_PIECE`].
pub(super) fn split_point(pos: u64, end: u64, victim_rate: u64, thief_rate: u64) -> Option<u64> {
    let rest = end.checked_sub(pos)?.checked_sub(STEAL_MARGIN)?;
    let (v, t) = (
        u128::from(victim_rate.max(1)),
        u128::from(thief_rate.max(1)),
    );
    let share = u64::try_from(u128::from(rest) * v / (v + t)).ok()?;
    let mid = pos + STEAL_MARGIN + share;
    (end - mid >= MIN_PIECE).then_some(mid)
}

/// What the endgame sees of one chunk.
#[derive(Debug, Clone, Default)]
pub(super) struct ChunkState {
    /// A copy of it is kept.
    pub(super) done: bool,
    /// The holders fetching it now, and for how long.
    pub(super) flights: Vec<(usize, Duration)>,
    /// The holders that failed it in this download.
    pub(super) failed: HashSet<usize>,
}

/// What the endgame sees of the whole download.
pub(super) struct EndgameView<'a> {
    /// The holders of this round.
    pub(super) holders: &'a [Holder],
    /// The five chunks.
    pub(super) chunks: [ChunkState; CHUNKS_PER_FILE],
    /// Per holder: how many chunks it delivered in this download.
    pub(super) delivered: Vec<usize>,
    /// Per holder: whether it is avoided for the rest of the download.
    pub(super) avoided: Vec<bool>,
    /// How long a flight must have run before a second copy is asked for.
    pub(super) endgame_after: Duration,
}

impl EndgameView<'_> {
    /// Whether a chunk not yet kept is being fetched: while one is, idle workers may help.
    pub(super) fn in_flight(&self) -> bool {
        self.chunks.iter().any(|c| !c.done && !c.flights.is_empty())
    }

    fn is_busy(&self, holder: usize) -> bool {
        self.chunks
            .iter()
            .any(|c| c.flights.iter().any(|&(h, _)| h == holder))
    }

    /// The chunk (position) to duplicate and the holder to ask: among chunks in flight for at
    /// least `endgame_after`, those with the fewest copies in flight first, so idle holders
    /// spread over the stuck chunks; for each, an idle holder that has it and neither failed it
    /// nor is avoided, those that have delivered most first (an untried one may be silent).
    pub(super) fn pick(&self) -> Option<(usize, usize)> {
        let mut positions: Vec<usize> = (0..CHUNKS_PER_FILE).collect();
        positions.sort_by_key(|&p| self.chunks[p].flights.len());
        positions.into_iter().find_map(|position| {
            let chunk = &self.chunks[position];
            let old_enough = chunk
                .flights
                .iter()
                .any(|&(_, age)| age >= self.endgame_after);
            if chunk.done || !old_enough {
                return None;
            }
            let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
            (0..self.holders.len())
                .filter(|&h| {
                    self.holders[h].chunks.contains(index)
                        && !self.is_busy(h)
                        && !chunk.failed.contains(&h)
                        && !self.avoided[h]
                })
                .max_by_key(|&h| (self.delivered[h], std::cmp::Reverse(h)))
                .map(|h| (position, h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_lets_both_holders_finish_together() {
        const MIB: u64 = 1 << 20;
        // Equal rates: the margin, then half of the rest each.
        let mid = split_point(0, 20 * MIB, 100, 100).unwrap();
        assert_eq!(mid, STEAL_MARGIN + (20 * MIB - STEAL_MARGIN) / 2);
        // A thief three times faster takes three quarters of what is left beyond the margin.
        let mid = split_point(4 * MIB, 20 * MIB, 100, 300).unwrap();
        assert_eq!(mid, 4 * MIB + STEAL_MARGIN + (16 * MIB - STEAL_MARGIN) / 4);
        // Both finish together: what each has left over its rate.
        let (v, t) = (100u64, 300u64);
        let kept = mid - 4 * MIB - STEAL_MARGIN;
        let taken = 20 * MIB - mid;
        assert!((kept * t).abs_diff(taken * v) <= t + v);
        // A stalled transfer keeps only the margin.
        assert_eq!(split_point(0, 10 * MIB, 1, 1 << 30), Some(STEAL_MARGIN));
        // Too little for a piece, or past the end: no split.
        assert_eq!(
            split_point(0, STEAL_MARGIN + MIN_PIECE - 1, 1, 1 << 30),
            None
        );
        assert_eq!(split_point(5 * MIB, 4 * MIB, 1, 1), None);
        assert_eq!(split_point(0, 2 * MIB, 1 << 30, 1), None);
        // No rate yet, or absurd ones: no overflow, no panic.
        assert!(split_point(0, u64::MAX, u64::MAX, u64::MAX).is_some());
        assert!(split_point(0, 8 * MIB, 0, 0).is_some());
    }

    #[test]
    fn rates_are_bytes_per_second_and_never_zero() {
        assert_eq!(rate(1_000_000, Duration::from_secs(2)), 500_000);
        assert_eq!(rate(0, Duration::from_secs(1)), 1);
        assert_eq!(rate(5, Duration::ZERO), 5000);
        assert_eq!(
            rate(u64::MAX, Duration::from_millis(1)),
            u64::MAX,
            "saturates"
        );
    }
    use shared::chunk::ChunkSet;
    use shared::tags::Proto;
    use std::net::SocketAddr;

    fn holder(ip: u8, chunks: &str) -> Holder {
        Holder {
            user: format!("u{ip}"),
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            proto: Proto::P2p(1),
            chunks: ChunkSet::parse(chunks).unwrap(),
            root: None,
            id: None,
            impostor: false,
        }
    }

    #[test]
    fn plan_spreads_chunks_over_holders_and_keeps_fallbacks() {
        let holders = [holder(2, "12345"), holder(3, "12345")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0, None);
        let firsts: Vec<usize> = plan.iter().map(|c| c[0]).collect();
        assert_eq!(firsts, [0, 1, 0, 1, 0]);
        assert!(plan.iter().all(|c| c.len() == 2));
        let rotated: Vec<usize> = plan_sources(&holders, &chunks, 1, None)
            .iter()
            .map(|c| c[0])
            .collect();
        assert_eq!(rotated, [1, 0, 1, 0, 1]);
    }

    #[test]
    fn the_holder_that_sent_the_manifest_gets_a_chunk_first() {
        let holders: Vec<Holder> = (2..9).map(|ip| holder(ip, "12345")).collect();
        let chunks = ChunkName::all_of("f").unwrap();
        for seed in 0..7 {
            let plan = plan_sources(&holders, &chunks, seed, Some(6));
            assert_eq!(plan[0][0], 6, "seed {seed}: {plan:?}");
        }
    }

    #[test]
    fn plan_only_names_holders_of_each_chunk() {
        let holders = [holder(2, "12---"), holder(3, "--345"), holder(4, "1---5")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0, None);
        assert_eq!(plan[0].len(), 2);
        assert_eq!(plan[1], [0]);
        assert_eq!(plan[2], [1]);
        assert_eq!(plan[4].len(), 2);
        // Chunk 5: holder 1 already has chunks 3 and 4 planned, so holder 2 goes first.
        assert_eq!(plan[4][0], 2);
        let none = plan_sources(&[], &chunks, 0, None);
        assert!(none.iter().all(Vec::is_empty));
    }

    #[test]
    fn nobody_is_asked_for_a_chunk_it_did_not_announce() {
        let mut legacy = holder(9, "123--");
        legacy.proto = Proto::Legacy;
        let chunks = ChunkName::all_of("ece").unwrap();
        let plan = plan_sources(&[legacy.clone()], &chunks, 0, None);
        assert_eq!(plan[..3], [[0], [0], [0]], "{plan:?}");
        assert!(plan[3].is_empty() && plan[4].is_empty(), "{plan:?}");
        let plan = plan_sources(&[holder(2, "123--")], &chunks, 0, None);
        assert!(plan[3].is_empty() && plan[4].is_empty());
        // ... and such chunks of a legacy content are taken as empty without asking.
        assert!(implied_empty(&[legacy.clone()], &chunks[3], false));
        assert!(!implied_empty(&[legacy.clone()], &chunks[2], false));
        assert!(!implied_empty(&[legacy], &chunks[3], true));
    }

    #[test]
    fn a_replan_skips_the_holders_that_failed_the_chunk() {
        let holders = [holder(2, "12345"), holder(3, "12345"), holder(4, "1----")];
        let chunk = ChunkName::parse("f_1").unwrap();
        assert_eq!(replan(&holders, &chunk, &HashSet::from([0])), [1, 2]);
        let chunk = ChunkName::parse("f_2").unwrap();
        assert!(replan(&holders, &chunk, &HashSet::from([0, 1])).is_empty());
    }

    #[test]
    fn legacy_chunk_lengths_follow_the_chunking_rule() {
        for size in 0..200u64 {
            let lens = chunk_ranges(size).map(|r| r.len());
            assert!(
                short_legacy_chunks(&lens).is_empty(),
                "size {size}: {lens:?}"
            );
        }
        assert_eq!(short_legacy_chunks(&[10, 4, 10, 10, 3]), [1]);
        assert_eq!(short_legacy_chunks(&[10, 10, 0, 10, 3]), [2]);
        // Two full chunks and nothing else: 20 bytes would be cut 4 by 4.
        assert_eq!(short_legacy_chunks(&[10, 10, 0, 0, 0]), [2, 3, 4]);
        assert!(short_legacy_chunks(&[0; 5]).is_empty());
        // A short last chunk is indistinguishable from a smaller file.
        assert!(short_legacy_chunks(&[10, 10, 10, 10, 1]).is_empty());
    }

    #[test]
    fn a_holder_is_blamed_only_for_the_manifest_it_vouched_for() {
        let root = Digest::of(b"root");
        let mut vouching_holder = holder(2, "12345");
        vouching_holder.root = Some(root);
        let mut other = holder(3, "12345");
        other.root = Some(Digest::of(b"other"));
        let silent = holder(4, "12345");
        let holders = [vouching_holder, other, silent];
        assert_eq!(vouching(&holders, Some(root), false), [true, false, false]);
        assert_eq!(vouching(&holders, Some(root), true), [true, true, true]);
        assert_eq!(vouching(&holders, None, false), [false, false, false]);
        assert!(vouched_by(&holders[0], root));
        assert!(!vouched_by(&holders[1], root));
        assert!(vouched_by(&holders[2], root), "no root announced: believed");
    }

    #[test]
    fn expected_chunks_follow_the_manifest() {
        let m = Manifest {
            states: None,
            name: "f".into(),
            size: 12,
            sha256: Digest::of(b"f"),
            chunks: std::array::from_fn(|i| Digest::of(&[u8::try_from(i).unwrap()])),
        };
        let expected = expected_chunks(Some(&m));
        let lens: Vec<u64> = expected.iter().map(|e| e.unwrap().len).collect();
        assert_eq!(lens, [3, 3, 3, 3, 0]);
        assert_eq!(expected[4].unwrap().sha256, m.chunks[4]);
        assert_eq!(expected_chunks(None), [None; CHUNKS_PER_FILE]);
    }

    fn view(holders: &[Holder]) -> EndgameView<'_> {
        EndgameView {
            holders,
            chunks: Default::default(),
            delivered: vec![0; holders.len()],
            avoided: vec![false; holders.len()],
            endgame_after: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_endgame_duplicates_old_flights_with_an_idle_proven_holder() {
        let holders = [holder(2, "12345"), holder(3, "12345"), holder(4, "12345")];
        let mut v = view(&holders);
        for chunk in &mut v.chunks[..4] {
            chunk.done = true;
        }
        assert!(!v.in_flight(), "nothing in flight: nothing to help with");
        v.chunks[4].flights = vec![(0, Duration::from_secs(1))];
        assert!(v.in_flight());
        assert_eq!(v.pick(), None, "the flight is too young");
        v.chunks[4].flights = vec![(0, Duration::from_secs(3))];
        // Holders 1 and 2 are idle; 2 delivered more, so it is asked.
        v.delivered = vec![1, 1, 2];
        assert_eq!(v.pick(), Some((4, 2)));
        // Unless it failed this chunk, or is avoided.
        v.chunks[4].failed.insert(2);
        assert_eq!(v.pick(), Some((4, 1)));
        v.avoided[1] = true;
        assert_eq!(v.pick(), None);
    }

    #[test]
    fn the_endgame_spreads_idle_holders_over_the_stuck_chunks() {
        let holders = [
            holder(2, "12345"),
            holder(3, "12345"),
            holder(4, "12345"),
            holder(5, "---45"),
        ];
        let mut v = view(&holders);
        for chunk in &mut v.chunks[..3] {
            chunk.done = true;
        }
        let old = Duration::from_secs(5);
        v.chunks[3].flights = vec![(0, old), (1, old)];
        v.chunks[4].flights = vec![(2, old)];
        // Chunk 5 has fewer copies in flight: the idle holder goes there.
        assert_eq!(v.pick(), Some((4, 3)));
    }
}
