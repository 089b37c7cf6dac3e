//! "Warn once while a failure lasts": a [`Latch`] remembers that a condition was already
//! reported, so a loop that meets the same failure every second logs it once, and logs once
//! more when it clears.
//!
//! Every long-running loop of the four programs meets failures that repeat (a folder that
//! cannot be read, a peer that cannot be reached, a full index); without a latch each of them
//! would either flood the log or stay silent.

use std::collections::HashSet;
use std::hash::Hash;

/// Whether a lasting condition has been reported.
///
/// ```
/// use shared::latch::Latch;
/// let mut unreadable = Latch::default();
/// assert!(unreadable.trip()); // first failure: report it
/// assert!(!unreadable.trip()); // still failing: stay quiet
/// assert!(unreadable.reset()); // recovered: report the recovery
/// assert!(!unreadable.reset());
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Latch {
    tripped: bool,
}

impl Latch {
    /// Records that the condition holds; `true` only when it did not before, that is when the
    /// caller should report it.
    pub fn trip(&mut self) -> bool {
        !std::mem::replace(&mut self.tripped, true)
    }

    /// Records that the condition has cleared; `true` only when it held before, that is when
    /// the caller may report the recovery.
    pub fn reset(&mut self) -> bool {
        std::mem::replace(&mut self.tripped, false)
    }

    /// Whether the condition holds now.
    pub fn is_tripped(&self) -> bool {
        self.tripped
    }
}

/// One [`Latch`] per key: for failures that repeat per item (one bad line of a file, one
/// unreachable peer), each reported once until it clears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latches<K: Eq + Hash> {
    tripped: HashSet<K>,
}

impl<K: Eq + Hash> Default for Latches<K> {
    fn default() -> Self {
        Latches {
            tripped: HashSet::new(),
        }
    }
}

impl<K: Eq + Hash> Latches<K> {
    /// [`Latch::trip`] for `key`.
    pub fn trip(&mut self, key: K) -> bool {
        self.tripped.insert(key)
    }

    /// [`Latch::reset`] for `key`.
    pub fn reset(&mut self, key: &K) -> bool {
        self.tripped.remove(key)
    }

    /// Clears every key that `still_holds` rejects, so a condition that comes back later is
    /// reported again.
    pub fn retain(&mut self, still_holds: impl FnMut(&K) -> bool) {
        self.tripped.retain(still_holds);
    }

    /// How many conditions hold now.
    pub fn len(&self) -> usize {
        self.tripped.len()
    }

    /// Whether no condition holds.
    pub fn is_empty(&self) -> bool {
        self.tripped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latch_reports_each_change_once() {
        let mut latch = Latch::default();
        assert!(!latch.reset(), "nothing to recover from");
        assert!(latch.trip());
        assert!(latch.is_tripped());
        assert!(!latch.trip());
        assert!(latch.reset());
        assert!(!latch.is_tripped());
        assert!(latch.trip(), "a failure that comes back is reported again");
    }

    #[test]
    fn latches_are_independent_per_key() {
        let mut latches = Latches::default();
        assert!(latches.trip("a"));
        assert!(latches.trip("b"));
        assert!(!latches.trip("a"));
        assert_eq!(latches.len(), 2);
        latches.retain(|k| *k == "b");
        assert!(latches.trip("a"), "a cleared by retain");
        assert!(latches.reset(&"b"));
        assert!(!latches.reset(&"b"));
        assert!(!latches.is_empty());
    }
}
