//! What the index must still have written to `tags.txt`, and by when ([`Pending`]).
//!
//! Two kinds of change: what `tags.txt` *shows* (an entry added or removed, a chunk that
//! appears or expires, another digest, size, username, interval), which is written at once
//! (within the writer's gap: a new peer is listed within a second); and a *refresh*, a peer
//! re-announcing what it announced before, which only moves `LAST_SEEN`. A refresh waits:
//! it is written with the next change of the first kind, or at the latest
//! [`MAX_REFRESH_DELAY_SECS`] (or one announce interval of the peer, if shorter) after it,
//! so `LAST_SEEN` never lags by more than that, far from the three intervals after which an
//! entry expires. With twenty peers announcing every minute, each at its own moment, the
//! listener rewrites (and syncs) the whole file twice a minute instead of at every
//! announcement. Nothing is lost: the snapshot written always holds every change, and a
//! listener that stops writes what is pending.

use chrono::{DateTime, Utc};

/// Longest a refresh waits to be written, in seconds.
pub const MAX_REFRESH_DELAY_SECS: u64 = 30;

/// The changes not yet handed to the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Something `tags.txt` shows changed.
    shown: bool,
    /// The time by which refreshed `LAST_SEEN` times are to be written.
    refresh_due: Option<DateTime<Utc>>,
}

impl Pending {
    /// Something `tags.txt` shows changed.
    pub(crate) fn shown(&mut self) {
        self.shown = true;
    }

    /// An entry of a peer announcing every `interval` seconds was refreshed at `now`.
    pub(crate) fn refreshed(&mut self, now: DateTime<Utc>, interval: u64) {
        let delay = interval.clamp(1, MAX_REFRESH_DELAY_SECS);
        let due = now + chrono::Duration::seconds(i64::try_from(delay).unwrap_or(1));
        self.refresh_due = Some(self.refresh_due.map_or(due, |t| t.min(due)));
    }

    /// Whether a snapshot should be written at `now`.
    pub(crate) fn due(&self, now: DateTime<Utc>) -> bool {
        self.shown || self.refresh_due.is_some_and(|t| now >= t)
    }

    /// When a snapshot will be due if nothing else changes; `None` when nothing is pending.
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        if self.shown {
            return Some(DateTime::<Utc>::MIN_UTC);
        }
        self.refresh_due
    }

    /// Whether anything at all waits to be written.
    pub(crate) fn any(&self) -> bool {
        self.shown || self.refresh_due.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        "2026-11-21T18:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn what_is_shown_is_due_at_once_refreshes_within_their_delay() {
        let mut pending = Pending::default();
        assert!(!pending.any() && !pending.due(at(0)) && pending.next_due().is_none());
        pending.refreshed(at(0), 60);
        pending.refreshed(at(10), 60);
        assert!(pending.any());
        assert!(!pending.due(at(29)));
        assert!(pending.due(at(30)), "the first refresh sets the time");
        assert_eq!(pending.next_due(), Some(at(30)));
        // A peer of a short interval is written sooner.
        pending.refreshed(at(12), 5);
        assert_eq!(pending.next_due(), Some(at(17)));
        pending.shown();
        assert!(pending.due(at(0)));
    }
}
