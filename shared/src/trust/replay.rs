//! Refusing replayed datagrams.
//!
//! Anyone can record a sealed datagram and send it again later. A receiver accepts one only if
//! it was sealed within [`MAX_CLOCK_SKEW_MS`] of its own clock, and if its number was not seen
//! before in its sender's session: each (signer, session) keeps the highest sequence number seen
//! and a window of the [`WINDOW`] numbers below it (as IPsec and WireGuard do), so datagrams
//! that arrive out of order by a few, through two sockets, are still taken. On first contact
//! with a session every earlier number counts as seen: what a receiver missed (sent before it
//! started) cannot be replayed to it later. Sessions whose
//! last datagram is older than the clock window are forgotten: anything they could still send
//! is refused by the clock. The number of sessions remembered is bounded ([`MAX_SESSIONS`]);
//! only members, whose datagrams open, can make new ones.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::envelope::Opened;
use super::identity::PUBLIC_KEY_BYTES;

/// Largest difference between the sender's clock and ours (10 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// How far behind the highest sequence number seen a datagram may still arrive.
pub const WINDOW: u64 = 1024;

/// Most sessions remembered; beyond that the stalest is forgotten.
pub const MAX_SESSIONS: usize = 4096;

const WORDS: usize = (WINDOW / 64) as usize;

/// Why a datagram was refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// Sealed too long before or after our clock (by this many ms, signed: positive = ahead).
    #[error("its clock is {} s {} ours (at most {} s apart are accepted): check both clocks", .0.unsigned_abs() / 1000, if *.0 > 0 { "ahead of" } else { "behind" }, MAX_CLOCK_SKEW_MS / 1000)]
    Clock(i64),
    /// Its number was seen already, or is too far behind.
    #[error("a replay of a datagram already received")]
    Repeated,
}

#[derive(Debug, Clone)]
struct Session {
    highest: u64,
    /// Bit `i` of the window: `highest - i` was seen.
    seen: [u64; WORDS],
    last_time_ms: u64,
}

/// The replay state of one receiver.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    sessions: HashMap<([u8; PUBLIC_KEY_BYTES], u64), Session>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// Accepts `opened` at `now_ms` (recording it) or says why not.
    ///
    /// # Errors
    /// [`Stale`].
    pub fn check(&mut self, opened: &Opened, now_ms: u64) -> Result<(), Stale> {
        let skew =
            i64::try_from(i128::from(opened.time_ms) - i128::from(now_ms)).unwrap_or(i64::MAX);
        if skew.unsigned_abs() > MAX_CLOCK_SKEW_MS {
            return Err(Stale::Clock(skew));
        }
        let key = (opened.signer, opened.session);
        if !self.sessions.contains_key(&key) && self.sessions.len() >= MAX_SESSIONS {
            self.forget_stale(now_ms);
            if self.sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_time_ms)
                    .map(|(k, _)| *k)
                {
                    self.sessions.remove(&oldest);
                }
            }
        }
        let n = opened.sequence;
        let session = match self.sessions.entry(key) {
            Entry::Occupied(session) => session.into_mut(),
            // First contact: everything this session sent before is taken as seen. A number
            // below it was either heard by us already or missed (sent before we started,
            // lost): either way, one recorded then and replayed now must not count.
            Entry::Vacant(vacant) => {
                vacant.insert(Session {
                    highest: n,
                    seen: [u64::MAX; WORDS],
                    last_time_ms: opened.time_ms,
                });
                return Ok(());
            }
        };
        if n > session.highest {
            shift(&mut session.seen, n - session.highest);
            session.highest = n;
        } else if session.highest - n >= WINDOW {
            return Err(Stale::Repeated);
        }
        let behind = session.highest - n;
        let (word, bit) = ((behind / 64) as usize, behind % 64);
        if session.seen[word] & (1 << bit) != 0 {
            return Err(Stale::Repeated);
        }
        session.seen[word] |= 1 << bit;
        session.last_time_ms = session.last_time_ms.max(opened.time_ms);
        Ok(())
    }

    /// Forgets the sessions whose last datagram is older than the clock window.
    fn forget_stale(&mut self, now_ms: u64) {
        self.sessions
            .retain(|_, s| s.last_time_ms + MAX_CLOCK_SKEW_MS >= now_ms);
    }

    /// How many sessions are remembered.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Moves the window `by` numbers up: bit `i` becomes bit `i + by`.
fn shift(seen: &mut [u64; WORDS], by: u64) {
    if by >= WINDOW {
        *seen = [0; WORDS];
        return;
    }
    let words = (by / 64) as usize;
    let bits = by % 64;
    for i in (0..WORDS).rev() {
        let from = i.checked_sub(words);
        let low = from.map_or(0, |f| seen[f]);
        let carry = from.and_then(|f| f.checked_sub(1)).map_or(0, |f| seen[f]);
        seen[i] = if bits == 0 {
            low
        } else {
            (low << bits) | (carry >> (64 - bits))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(signer: u8, session: u64, sequence: u64, time_ms: u64) -> Opened {
        Opened {
            signer: [signer; 32],
            session,
            sequence,
            time_ms,
            payload: Vec::new(),
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn each_number_is_taken_once_even_out_of_order() {
        let mut guard = ReplayGuard::new();
        for n in [5, 9, 6, 1000, 7] {
            assert_eq!(guard.check(&opened(1, 1, n, NOW), NOW), Ok(()), "{n}");
        }
        // Before the first contact: taken as seen (missed, then replayed, is still refused).
        for n in [5, 3, 4, 9, 1000, 7] {
            assert_eq!(
                guard.check(&opened(1, 1, n, NOW), NOW),
                Err(Stale::Repeated),
                "{n}"
            );
        }
        // Far behind the highest: refused, seen or not.
        assert_eq!(guard.check(&opened(1, 1, 8, NOW), NOW), Ok(()));
        assert_eq!(guard.check(&opened(1, 1, 5000, NOW), NOW), Ok(()));
        assert_eq!(
            guard.check(&opened(1, 1, 3000, NOW), NOW),
            Err(Stale::Repeated)
        );
        assert_eq!(guard.check(&opened(1, 1, 4000, NOW), NOW), Ok(()));
        // Another session, another signer: their own numbers.
        assert_eq!(guard.check(&opened(1, 2, 5, NOW), NOW), Ok(()));
        assert_eq!(guard.check(&opened(2, 1, 5, NOW), NOW), Ok(()));
    }

    #[test]
    fn the_window_shifts_across_word_boundaries() {
        let mut guard = ReplayGuard::new();
        assert_eq!(guard.check(&opened(1, 1, 0, NOW), NOW), Ok(()));
        for n in (7..3000).step_by(7) {
            assert_eq!(guard.check(&opened(1, 1, n, NOW), NOW), Ok(()), "{n}");
        }
        for n in (3000 - WINDOW + 6..3000).filter(|n| n % 7 == 0) {
            assert_eq!(
                guard.check(&opened(1, 1, n, NOW), NOW),
                Err(Stale::Repeated),
                "{n}"
            );
        }
        for n in (3000 - WINDOW + 6..3000).filter(|n| n % 7 == 3) {
            assert_eq!(guard.check(&opened(1, 1, n, NOW), NOW), Ok(()), "{n}");
        }
    }

    #[test]
    fn datagrams_off_our_clock_are_refused_with_the_skew() {
        let mut guard = ReplayGuard::new();
        let ahead = guard.check(&opened(1, 1, 0, NOW + 3_600_000), NOW);
        assert_eq!(ahead, Err(Stale::Clock(3_600_000)));
        assert!(ahead.unwrap_err().to_string().contains("3600 s ahead of"));
        assert_eq!(
            guard.check(&opened(1, 1, 0, NOW - MAX_CLOCK_SKEW_MS - 1), NOW),
            Err(Stale::Clock(-(MAX_CLOCK_SKEW_MS as i64) - 1))
        );
        assert_eq!(
            guard.check(&opened(1, 1, 0, NOW - MAX_CLOCK_SKEW_MS), NOW),
            Ok(())
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let mut guard = ReplayGuard::new();
        for session in 0..(MAX_SESSIONS as u64 + 10) {
            assert_eq!(guard.check(&opened(1, session, 0, NOW), NOW), Ok(()));
        }
        assert_eq!(guard.len(), MAX_SESSIONS);
    }
}
