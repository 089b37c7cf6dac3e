//! "Warn once while a failure lasts": a [`Latch`] remembers that a condition was already
//! reported, so a loop that meets the same failure every second logs it once, and logs once
//! more when it clears.
//!
//! Every long-running loop of the four programs meets failures that repeat (a folder that
//! cannot be read, a peer that cannot be reached, a full index); without a latch each of them
//! would either flood the log or stay silent. A failure that changes its reason (a send that
//! failed with "host unreachable" now fails with "network unreachable") is reported again, so
//! the log always holds the current diagnosis.

use std::collections::HashMap;
use std::fmt::Display;
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
    /// The reason the condition holds for; `None` while it does not.
    reason: Option<String>,
}

impl Latch {
    /// Records that the condition holds; `true` only when it did not before, that is when the
    /// caller should report it.
    pub fn trip(&mut self) -> bool {
        self.trip_because("")
    }

    /// Records that the condition holds for `reason` (an error); `true` when it did not hold
    /// before or held for another reason, that is when the caller should report it.
    pub fn trip_because(&mut self, reason: impl Display) -> bool {
        let reason = reason.to_string();
        let new = self.reason.as_ref() != Some(&reason);
        self.reason = Some(reason);
        new
    }

    /// Records that the condition has cleared; `true` only when it held before, that is when
    /// the caller may report the recovery.
    pub fn reset(&mut self) -> bool {
        self.reason.take().is_some()
    }

    /// Whether the condition holds now.
    pub fn is_tripped(&self) -> bool {
        self.reason.is_some()
    }
}

/// One [`Latch`] per key: for failures that repeat per item (one bad line of a file, one
/// unreachable peer), each reported once until it clears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latches<K: Eq + Hash> {
    /// The keys whose condition holds, each with its reason.
    tripped: HashMap<K, String>,
}

impl<K: Eq + Hash> Default for Latches<K> {
    fn default() -> Self {
        Latches {
            tripped: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Latches<K> {
    /// [`Latch::trip`] for `key`.
    pub fn trip(&mut self, key: K) -> bool {
        self.trip_because(key, "")
    }

    /// [`Latch::trip_because`] for `key`.
    pub fn trip_because(&mut self, key: K, reason: impl Display) -> bool {
        let reason = reason.to_string();
        self.tripped.insert(key, reason.clone()).as_ref() != Some(&reason)
    }

    /// [`Latch::reset`] for `key`.
    pub fn reset(&mut self, key: &K) -> bool {
        self.tripped.remove(key).is_some()
    }

    /// Clears every key that `still_holds` rejects, so a condition that comes back later is
    /// reported again.
    pub fn retain(&mut self, mut still_holds: impl FnMut(&K) -> bool) {
        self.tripped.retain(|key, _| still_holds(key));
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
    fn a_failure_is_reported_again_when_its_reason_changes() {
        let mut latch = Latch::default();
        assert!(latch.trip_because("host unreachable"));
        assert!(!latch.trip_because("host unreachable"));
        assert!(latch.trip_because("network unreachable"));
        assert!(latch.reset());
        let mut latches = Latches::default();
        assert!(latches.trip_because(1, "refused"));
        assert!(!latches.trip_because(1, "refused"));
        assert!(latches.trip_because(1, "reset"));
        assert!(latches.trip_because(2, "reset"), "another key");
        assert_eq!(latches.len(), 2);
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
