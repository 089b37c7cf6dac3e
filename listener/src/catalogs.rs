//! Which catalogs to fetch, and when: the compact announcements heard whose catalog the index
//! does not hold yet ([`crate::index::CatalogWanted`]), one fetch at a time per peer, at most
//! [`MAX_IN_FLIGHT`] in all, the peers heard first fetched first.
//!
//! A peer whose fetch fails (unreachable, refused, too slow, bytes that do not match the
//! digest) is tried again later, each time waiting twice as long (from [`RETRY_FIRST`] to
//! [`RETRY_MAX`]); hearing the same summary again does not hurry it, a new digest does (a
//! failure because the catalog changed between announcement and fetch is normal, and the new
//! one is then announced at once). Two fetches of one peer are at least [`MIN_FETCH_GAP`]
//! apart, so a peer whose list changes every moment costs a fetch a second at most. A fetch
//! that ends after its peer announced another catalog, or said goodbye, is not applied.
//!
//! Bounded: at most [`MAX_WANTED`] peers are remembered (the one heard longest ago makes room),
//! and a peer not heard for [`FORGET_AFTER_INTERVALS`] of its intervals is forgotten.
//!
//! Pure: every decision takes `now`; `hearing` starts the fetches (`fetch`) and applies them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use shared::trust::PeerId;

use crate::index::{CatalogPeer, CatalogWanted};

/// Most catalog fetches at once: each holds a thread, a connection and the entries it keeps.
pub const MAX_IN_FLIGHT: usize = 2;

/// Most peers whose catalog is wanted, remembered at once.
pub const MAX_WANTED: usize = 1024;

/// Shortest time between the starts of two fetches of one peer's catalog.
pub const MIN_FETCH_GAP: Duration = Duration::from_secs(1);

/// Wait before the first retry of a failed fetch; doubled at each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);

/// Longest wait before retrying a failed fetch.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// A peer whose summary is not heard for this many of its intervals is forgotten (its
/// entries expire after three).
pub const FORGET_AFTER_INTERVALS: u32 = 3;

/// One peer's catalog wanted, and the fetching of it.
#[derive(Debug)]
struct Want {
    wanted: CatalogWanted,
    /// When its summary was last heard.
    heard: Instant,
    /// A fetch of this peer runs (of this catalog, or of one announced before it).
    in_flight: bool,
    /// Failed fetches of this catalog.
    failures: u32,
    /// No fetch starts before this.
    not_before: Instant,
}

/// The catalogs wanted.
#[derive(Debug, Default)]
pub(crate) struct Catalogs {
    wants: BTreeMap<CatalogPeer, Want>,
}

impl Catalogs {
    /// A compact announcement named `wanted`, which the index does not hold.
    pub(crate) fn want(&mut self, wanted: CatalogWanted, now: Instant) {
        if let Some(want) = self.wants.get_mut(&wanted.peer) {
            want.heard = now;
            if want.wanted.summary != wanted.summary || want.wanted.instance != wanted.instance {
                // Another catalog: try it as soon as the gap since the last start allows.
                want.wanted = wanted;
                want.failures = 0;
                want.not_before = want.not_before.min(now + MIN_FETCH_GAP);
            }
            return;
        }
        if self.wants.len() >= MAX_WANTED {
            let oldest = self
                .wants
                .iter()
                .filter(|(_, w)| !w.in_flight)
                .min_by_key(|(_, w)| w.heard)
                .map(|(peer, _)| peer.clone());
            match oldest {
                Some(peer) => {
                    self.wants.remove(&peer);
                }
                None => return,
            }
        }
        self.wants.insert(
            wanted.peer.clone(),
            Want {
                wanted,
                heard: now,
                in_flight: false,
                failures: 0,
                not_before: now,
            },
        );
    }

    /// The fetches to start at `now`, counted as running: those due, peers heard first
    /// first, as many as [`MAX_IN_FLIGHT`] leaves room for.
    pub(crate) fn start_due(&mut self, now: Instant) -> Vec<CatalogWanted> {
        let running = self.wants.values().filter(|w| w.in_flight).count();
        let free = MAX_IN_FLIGHT.saturating_sub(running);
        let mut due: Vec<(&CatalogPeer, &Want)> = self
            .wants
            .iter()
            .filter(|(_, w)| !w.in_flight && w.not_before <= now)
            .collect();
        due.sort_by_key(|(_, w)| w.heard);
        let peers: Vec<CatalogPeer> = due.into_iter().take(free).map(|(p, _)| p.clone()).collect();
        peers
            .iter()
            .filter_map(|peer| {
                let want = self.wants.get_mut(peer)?;
                want.in_flight = true;
                want.not_before = now + MIN_FETCH_GAP;
                Some(want.wanted.clone())
            })
            .collect()
    }

    /// The fetch of `wanted` ended at `now` (`ok`: its bytes matched the digest). Returns
    /// whether to apply it: it succeeded and is still what its peer announces.
    pub(crate) fn finished(&mut self, wanted: &CatalogWanted, ok: bool, now: Instant) -> bool {
        let Some(want) = self.wants.get_mut(&wanted.peer) else {
            // Forgotten meanwhile: the peer said goodbye.
            return false;
        };
        want.in_flight = false;
        if want.wanted != *wanted {
            // The peer announced another catalog meanwhile: that one is fetched next.
            return false;
        }
        if ok {
            self.wants.remove(&wanted.peer);
            return true;
        }
        want.failures += 1;
        let backoff = RETRY_FIRST
            .saturating_mul(1 << want.failures.min(16).saturating_sub(1))
            .min(RETRY_MAX);
        want.not_before = want.not_before.max(now + backoff);
        false
    }

    /// Forgets the peers at `ip` announcing as `user` (with peer ID `id`), at `port` only when
    /// given: they said goodbye, so a fetch of theirs still running is not applied.
    pub(crate) fn forget(&mut self, ip: IpAddr, user: &str, id: Option<PeerId>, port: Option<u16>) {
        self.wants.retain(|peer, _| {
            !(peer.ip == ip
                && peer.user == user
                && peer.id == id
                && port.is_none_or(|p| p == peer.port))
        });
    }

    /// Forgets the peers not heard for [`FORGET_AFTER_INTERVALS`] of their intervals, unless
    /// a fetch of theirs runs.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.wants.retain(|_, w| {
            let interval = Duration::from_secs(w.wanted.interval);
            w.in_flight
                || now.saturating_duration_since(w.heard) < interval * FORGET_AFTER_INTERVALS
        });
    }

    /// When the next fetch may start, if one waits (and there is room for it).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let running = self.wants.values().filter(|w| w.in_flight).count();
        if running >= MAX_IN_FLIGHT {
            return None;
        }
        self.wants
            .values()
            .filter(|w| !w.in_flight)
            .map(|w| w.not_before)
            .min()
    }

    /// Whether fetches run.
    pub(crate) fn fetching(&self) -> bool {
        self.wants.values().any(|w| w.in_flight)
    }

    /// How many peers' catalogs are wanted.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.wants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::digest::Digest;
    use shared::protocol::CatalogSummary;

    fn wanted(last: u8, digest: &str) -> CatalogWanted {
        CatalogWanted {
            peer: CatalogPeer {
                ip: IpAddr::from([127, 0, 0, last]),
                port: 6001,
                user: format!("user{last}"),
                id: None,
            },
            summary: CatalogSummary {
                count: 10,
                sha256: Digest::of(digest.as_bytes()),
            },
            instance: Some("i1".into()),
            interval: 60,
            version: 1,
        }
    }

    #[test]
    fn fetches_start_in_the_order_heard_at_most_two_at_once_one_per_peer() {
        let t0 = Instant::now();
        let mut catalogs = Catalogs::default();
        for (i, last) in [5u8, 3, 4].into_iter().enumerate() {
            catalogs.want(wanted(last, "a"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(catalogs.next_due(), Some(t0));
        let started = catalogs.start_due(t0 + Duration::from_millis(10));
        assert_eq!(started, [wanted(5, "a"), wanted(3, "a")]);
        assert!(catalogs.fetching());
        assert_eq!(catalogs.next_due(), None, "no room");
        assert!(catalogs.start_due(t0 + Duration::from_secs(5)).is_empty());
        // One ends: the third starts.
        assert!(catalogs.finished(&started[0], true, t0 + Duration::from_secs(1)));
        let third = catalogs.start_due(t0 + Duration::from_secs(1));
        assert_eq!(third, [wanted(4, "a")]);
        // Heard again while running: still one fetch per peer.
        catalogs.want(wanted(4, "b"), t0 + Duration::from_secs(1));
        assert!(catalogs.start_due(t0 + Duration::from_secs(9)).is_empty());
        // The fetch of the superseded catalog ends: not applied, and the new one follows.
        assert!(!catalogs.finished(&third[0], true, t0 + Duration::from_secs(2)));
        assert_eq!(
            catalogs.start_due(t0 + Duration::from_secs(2)),
            [wanted(4, "b")]
        );
    }

    #[test]
    fn failures_back_off_and_a_new_digest_is_tried_at_once() {
        let t0 = Instant::now();
        let mut catalogs = Catalogs::default();
        catalogs.want(wanted(5, "a"), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = catalogs.start_due(now);
            assert_eq!(started.len(), 1, "at {:?}", now - t0);
            assert!(!catalogs.finished(&started[0], false, now));
            let next = catalogs.next_due().unwrap();
            waits.push((next - now).as_secs());
            // The same summary heard again does not hurry it.
            catalogs.want(wanted(5, "a"), now + Duration::from_millis(1));
            assert!(catalogs
                .start_due(next - Duration::from_millis(1))
                .is_empty());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        // Another catalog: tried at once (a second after the last start at most).
        catalogs.want(wanted(5, "b"), now);
        assert_eq!(catalogs.start_due(now + MIN_FETCH_GAP), [wanted(5, "b")]);
    }

    #[test]
    fn goodbyes_and_silence_forget_and_a_late_fetch_is_not_applied() {
        let t0 = Instant::now();
        let mut catalogs = Catalogs::default();
        catalogs.want(wanted(5, "a"), t0);
        catalogs.want(wanted(6, "a"), t0);
        let started = catalogs.start_due(t0);
        catalogs.forget(IpAddr::from([127, 0, 0, 5]), "user5", None, Some(6001));
        assert!(!catalogs.finished(&started[0], true, t0), "said goodbye");
        // Another port or user is someone else.
        catalogs.forget(IpAddr::from([127, 0, 0, 6]), "user6", None, Some(7001));
        catalogs.forget(IpAddr::from([127, 0, 0, 6]), "other", None, None);
        assert_eq!(catalogs.len(), 1);
        // Running fetches are not forgotten by silence; idle ones are.
        catalogs.expire(t0 + Duration::from_secs(3600));
        assert_eq!(catalogs.len(), 1);
        assert!(!catalogs.finished(&started[1], false, t0));
        catalogs.expire(t0 + Duration::from_secs(179));
        assert_eq!(catalogs.len(), 1);
        catalogs.expire(t0 + Duration::from_secs(180));
        assert_eq!(catalogs.len(), 0);
    }

    #[test]
    fn the_wanted_are_bounded_by_forgetting_the_oldest() {
        let t0 = Instant::now();
        let mut catalogs = Catalogs::default();
        for i in 0..MAX_WANTED + 10 {
            let mut w = wanted(1, "a");
            w.peer.port = u16::try_from(i).unwrap();
            catalogs.want(w, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(catalogs.len(), MAX_WANTED);
        assert!(
            !catalogs.wants.keys().any(|p| p.port < 10),
            "the oldest went"
        );
    }
}
