//! The legacy list: the chunk names of a peer that announces compactly, sent for legacy
//! listeners only, when the policy says so, and paced.
//!
//! A peer with many contents announces a summary of its catalog ([`crate::shape`]); our
//! listeners fetch the catalog over TCP, but a legacy listener knows only `files`. Whether it
//! still gets them is [`LegacyList`]'s choice (`--legacy-list`): always, never, or (`auto`,
//! the default) only while a legacy peer has been heard lately ([`HEARD_WINDOW`]; the
//! announcer's [`crate::ears`] tell legacy announcements from ours). On a private network never:
//! a legacy peer reads nothing of a sealed datagram anyway.
//!
//! When it is sent, it is sent as a *round*: every datagram once, spread over half the
//! announce interval ([`SPREAD`]) and never faster than [`MAX_RATE`] datagrams a second, so that
//! a receiver with an ordinary socket buffer (the legacy peers' 208 KiB) reads them all instead
//! of dropping the tail of a burst. A round starts with the periodic announcement at most once
//! per interval; a content added meanwhile is sent at once on its own ([`Pacer::send_added`]),
//! so legacy peers hear a new file within about a second, as before, without a new round.
//!
//! Pure: every decision takes `now`; the announcer does the sending.

use std::time::{Duration, Instant};

/// How long after the last legacy announcement heard `auto` keeps sending the legacy list:
/// legacy peers announce once a minute, so a few missed announcements do not stop it.
pub const HEARD_WINDOW: Duration = Duration::from_secs(5 * 60);

/// A round of the legacy list is spread over this share of the announce interval, so it is
/// over well before the next one starts.
pub const SPREAD: f64 = 0.5;

/// Most legacy-list datagrams sent per second (about 100 KB/s): a round of 1,250 datagrams
/// (10,000 contents) takes at least 12.5 s, however short the interval.
pub const MAX_RATE: f64 = 100.0;

/// Most datagrams of newly added contents sent at once between rounds; more wait for the
/// next round.
pub const MAX_ADDED_AT_ONCE: usize = 16;

/// When the legacy list is sent (`--legacy-list`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LegacyPolicy {
    /// While a legacy peer has been heard within [`HEARD_WINDOW`].
    #[default]
    Auto,
    /// Always (on an open network).
    On,
    /// Never: legacy peers see only the summary datagram, an announcement of nothing.
    Off,
}

impl std::str::FromStr for LegacyPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LegacyPolicy::Auto),
            "on" => Ok(LegacyPolicy::On),
            "off" => Ok(LegacyPolicy::Off),
            other => Err(format!("{other:?} is not one of auto, on, off")),
        }
    }
}

impl std::fmt::Display for LegacyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LegacyPolicy::Auto => "auto",
            LegacyPolicy::On => "on",
            LegacyPolicy::Off => "off",
        })
    }
}

impl LegacyPolicy {
    /// Whether the legacy list is to be sent at `now`, on an open network (`private`: never),
    /// a legacy peer having last been heard at `heard`.
    pub fn wants_list(self, private: bool, heard: Option<Instant>, now: Instant) -> bool {
        !private
            && match self {
                LegacyPolicy::On => true,
                LegacyPolicy::Off => false,
                LegacyPolicy::Auto => {
                    heard.is_some_and(|t| now.saturating_duration_since(t) < HEARD_WINDOW)
                }
            }
    }
}

/// The round in progress, and when the last one started.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    round: Vec<Vec<u8>>,
    /// How many of `round` were sent.
    sent: usize,
    started: Option<Instant>,
    spacing: Duration,
}

impl Pacer {
    /// Whether a new round may start at `now`: none ever did, or the last one is over and
    /// started at least one `interval` ago.
    pub(crate) fn may_start(&self, interval: Duration, now: Instant) -> bool {
        self.is_idle() && self.started.is_none_or(|t| now >= t + interval)
    }

    /// Whether no round is in progress.
    pub(crate) fn is_idle(&self) -> bool {
        self.sent >= self.round.len()
    }

    /// Starts a round of `datagrams` at `now`, spread over [`SPREAD`] of `interval`, at most
    /// [`MAX_RATE`] a second; the first goes at once.
    pub(crate) fn start(&mut self, datagrams: Vec<Vec<u8>>, interval: Duration, now: Instant) {
        let n = datagrams.len().max(1);
        #[allow(clippy::cast_precision_loss)] // datagram counts far below 2^52
        let spread = interval.mul_f64(SPREAD).div_f64(n as f64);
        self.spacing = spread.max(Duration::from_secs_f64(1.0 / MAX_RATE));
        self.round = datagrams;
        self.sent = 0;
        self.started = Some(now);
    }

    /// Ends the round in progress (the legacy list is not wanted any more, or the peer falls
    /// silent).
    pub(crate) fn stop(&mut self) {
        self.round.clear();
        self.sent = 0;
    }

    /// The datagrams of the round whose time has come at `now`, counted as sent.
    pub(crate) fn due(&mut self, now: Instant) -> &[Vec<u8>] {
        let Some(started) = self.started else {
            return &[];
        };
        let from = self.sent;
        while self.sent < self.round.len() && self.send_time(started, self.sent) <= now {
            self.sent += 1;
        }
        &self.round[from..self.sent]
    }

    /// When the next datagram of the round is due; `None` when no round is in progress.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let started = self.started?;
        (!self.is_idle()).then(|| self.send_time(started, self.sent))
    }

    fn send_time(&self, started: Instant, i: usize) -> Instant {
        started + self.spacing * u32::try_from(i).unwrap_or(u32::MAX)
    }

    /// Of the datagrams naming contents added since the round started, those to send at once:
    /// all of them when there are at most [`MAX_ADDED_AT_ONCE`], else none (the next round
    /// carries them).
    pub(crate) fn send_added(added: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        if added.len() <= MAX_ADDED_AT_ONCE {
            added
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagrams(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| vec![u8::try_from(i % 256).unwrap()])
            .collect()
    }

    #[test]
    fn the_policy_reads_as_its_flag_and_auto_follows_legacy_peers_heard_lately() {
        for (text, policy) in [
            ("auto", LegacyPolicy::Auto),
            ("on", LegacyPolicy::On),
            ("off", LegacyPolicy::Off),
        ] {
            assert_eq!(text.parse::<LegacyPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        assert!("yes".parse::<LegacyPolicy>().is_err());
        assert_eq!(LegacyPolicy::default(), LegacyPolicy::Auto);
        let now = Instant::now() + HEARD_WINDOW * 2;
        let lately = Some(now - Duration::from_secs(30));
        let long_ago = Some(now - HEARD_WINDOW);
        assert!(LegacyPolicy::On.wants_list(false, None, now));
        assert!(!LegacyPolicy::Off.wants_list(false, lately, now));
        assert!(LegacyPolicy::Auto.wants_list(false, lately, now));
        assert!(!LegacyPolicy::Auto.wants_list(false, long_ago, now));
        assert!(!LegacyPolicy::Auto.wants_list(false, None, now));
        // A private network's datagrams are sealed: nothing a legacy peer could read.
        for policy in [LegacyPolicy::On, LegacyPolicy::Auto] {
            assert!(!policy.wants_list(true, lately, now));
        }
    }

    #[test]
    fn a_round_is_spread_over_half_the_interval_each_datagram_once() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(60);
        let mut pacer = Pacer::default();
        assert!(pacer.may_start(interval, t0) && pacer.next_due().is_none());
        pacer.start(datagrams(1000), interval, t0);
        // 1000 over 30 s: one every 30 ms; the first at once.
        assert_eq!(pacer.due(t0).len(), 1);
        assert_eq!(pacer.next_due(), Some(t0 + Duration::from_millis(30)));
        assert_eq!(pacer.due(t0 + Duration::from_millis(29)).len(), 0);
        assert_eq!(pacer.due(t0 + Duration::from_millis(100)).len(), 3);
        let mut sent = 4;
        let mut t = t0;
        while let Some(next) = pacer.next_due() {
            assert!(next > t, "always later");
            t = next;
            sent += pacer.due(t).len();
        }
        assert_eq!(sent, 1000);
        assert!(
            t <= t0 + interval.mul_f64(SPREAD),
            "over by half the interval: {t:?}"
        );
        assert!(pacer.is_idle() && pacer.due(t + interval).is_empty());
        // The next round waits for the next interval.
        assert!(!pacer.may_start(interval, t0 + Duration::from_secs(59)));
        assert!(pacer.may_start(interval, t0 + interval));
    }

    #[test]
    fn a_round_never_goes_faster_than_the_rate_cap_and_runs_to_its_end() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(5);
        let mut pacer = Pacer::default();
        pacer.start(datagrams(1000), interval, t0);
        // Half of 5 s would be 400 a second: capped at MAX_RATE.
        let one_second = pacer.due(t0 + Duration::from_secs(1)).len();
        assert!(
            (100..=101).contains(&one_second),
            "{one_second} in the first second"
        );
        // Longer than an interval: no new round until it is over.
        assert!(!pacer.may_start(interval, t0 + interval * 2));
        pacer.due(t0 + Duration::from_secs(11));
        assert!(pacer.may_start(interval, t0 + Duration::from_secs(11)));
        // Stopping ends it at once.
        pacer.start(datagrams(10), interval, t0);
        pacer.stop();
        assert!(pacer.is_idle() && pacer.next_due().is_none());
    }

    #[test]
    fn added_contents_go_at_once_unless_they_are_many() {
        assert_eq!(Pacer::send_added(datagrams(3)).len(), 3);
        assert_eq!(
            Pacer::send_added(datagrams(MAX_ADDED_AT_ONCE)).len(),
            MAX_ADDED_AT_ONCE
        );
        assert!(Pacer::send_added(datagrams(MAX_ADDED_AT_ONCE + 1)).is_empty());
    }
}
