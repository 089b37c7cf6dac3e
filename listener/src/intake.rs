//! Intake: what the reading threads (the crate's `receive` module) let through to the main
//! loop.
//!
//! Two budgets keep a flood from costing memory or from delaying everyone else's datagrams:
//!
//! - each source address may send [`DEFAULT_SOURCE_RATE`] bytes per second
//!   (`listener --max-source-rate`), with a burst of [`SOURCE_BURST_SECS`] seconds' worth;
//!   beyond that its datagrams are dropped as they arrive, before they are queued or parsed.
//!   An honest peer sends a few kilobytes a minute; answers to a query, a few hundred kilobytes
//!   at most, fit in the burst;
//! - the queue holds at most [`MAX_QUEUED_BYTES`] bytes (and [`QUEUE_CAPACITY`] datagrams), so
//!   what waits for the main loop is a few milliseconds of work, never hundreds of megabytes.
//!
//! What was dropped is logged in one line at most every [`DROP_LOG_GAP`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shared::ratelimit::PerAddress;

/// Default of `listener --max-source-rate`: bytes per second one source address may send.
pub const DEFAULT_SOURCE_RATE: u64 = 256 * 1024;

/// A source may send this many seconds' worth of its rate at once (1 MiB by default).
pub const SOURCE_BURST_SECS: u64 = 4;

/// Most bytes of datagrams waiting for the main loop; beyond that, datagrams are dropped.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Most datagrams waiting for the main loop.
pub const QUEUE_CAPACITY: usize = 4096;

/// Dropped datagrams are reported in one warning at most this often.
pub const DROP_LOG_GAP: Duration = Duration::from_secs(10);

/// Most source addresses whose rate is tracked; beyond that, the idle ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 4096;

/// How many of the addresses that were dropped a warning names.
const NAMED_SOURCES: usize = 4;

/// Bytes of the datagrams queued for the main loop: the reading threads add, the main loop
/// subtracts what it takes.
#[derive(Debug, Default)]
pub(crate) struct QueuedBytes(AtomicUsize);

impl QueuedBytes {
    /// The main loop took a datagram of `n` bytes.
    pub(crate) fn taken(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::SeqCst);
    }

    /// A reading thread would queue a datagram of `n` bytes: counts it and returns `true`
    /// unless that would make more than [`MAX_QUEUED_BYTES`] wait.
    pub(crate) fn try_add(&self, n: usize) -> bool {
        if self.0.load(Ordering::SeqCst) + n > MAX_QUEUED_BYTES {
            return false;
        }
        self.0.fetch_add(n, Ordering::SeqCst);
        true
    }
}

/// A token bucket per source address: `rate` bytes per second, up to [`SOURCE_BURST_SECS`]
/// seconds' worth saved up. A rate of 0 means no limit.
pub(crate) struct SourceRates(Option<PerAddress>);

impl SourceRates {
    #[allow(clippy::cast_precision_loss)] // rates far below 2^52
    pub(crate) fn new(rate: u64) -> SourceRates {
        SourceRates((rate > 0).then(|| {
            PerAddress::new(
                rate as f64,
                rate.saturating_mul(SOURCE_BURST_SECS) as f64,
                MAX_TRACKED_SOURCES,
            )
        }))
    }

    /// Whether `ip` may send a datagram of `bytes` bytes at `now`; if so, it is counted.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn allow(&mut self, ip: IpAddr, bytes: usize, now: Instant) -> bool {
        match &mut self.0 {
            None => true,
            Some(per_ip) => per_ip.try_take(ip, bytes as f64, now),
        }
    }
}

/// Datagrams dropped since the last warning.
#[derive(Default)]
pub(crate) struct Drops {
    over_rate: u64,
    over_rate_bytes: u64,
    /// A few of the addresses over their rate, for the warning.
    sources: Vec<IpAddr>,
    more_sources: bool,
    pub(crate) queue_full: u64,
    last_report: Option<Instant>,
}

impl Drops {
    /// A datagram of `bytes` bytes from `ip` was over its rate.
    pub(crate) fn over_rate(&mut self, ip: IpAddr, bytes: usize) {
        self.over_rate += 1;
        self.over_rate_bytes += bytes as u64;
        if !self.sources.contains(&ip) {
            if self.sources.len() < NAMED_SOURCES {
                self.sources.push(ip);
            } else {
                self.more_sources = true;
            }
        }
    }

    /// Warns about what was dropped, if anything was and the last warning is old enough (or
    /// regardless of that, when `last`: the thread is ending).
    pub(crate) fn report_if_due(&mut self, now: Instant, source_rate: u64, last: bool) {
        if self.over_rate == 0 && self.queue_full == 0 {
            return;
        }
        if !last
            && self
                .last_report
                .is_some_and(|t| now.duration_since(t) < DROP_LOG_GAP)
        {
            return;
        }
        let mut parts = Vec::new();
        if self.over_rate > 0 {
            let names: Vec<String> = self.sources.iter().map(IpAddr::to_string).collect();
            parts.push(format!(
                "{} datagrams ({} bytes) from {}{} sending more than {source_rate} bytes/s",
                self.over_rate,
                self.over_rate_bytes,
                names.join(", "),
                if self.more_sources { " and others" } else { "" },
            ));
        }
        if self.queue_full > 0 {
            parts.push(format!(
                "{} datagrams because more than {MAX_QUEUED_BYTES} bytes were waiting",
                self.queue_full
            ));
        }
        log::warn!(
            "dropped {} (at most one such warning every {}s)",
            parts.join("; "),
            DROP_LOG_GAP.as_secs()
        );
        *self = Drops {
            last_report: Some(now),
            ..Drops::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::MAX_RECEIVE_DATAGRAM;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let mut rates = SourceRates::new(1000);
        let t0 = Instant::now();
        // The burst: 4 s worth.
        for _ in 0..4 {
            assert!(rates.allow(ip(5), 1000, t0));
        }
        assert!(!rates.allow(ip(5), 1000, t0));
        assert!(
            rates.allow(ip(6), 1000, t0),
            "another source has its own budget"
        );
        // Half a second later, half a datagram's worth has come back: not enough.
        assert!(!rates.allow(ip(5), 1000, t0 + Duration::from_millis(500)));
        assert!(rates.allow(ip(5), 1000, t0 + Duration::from_millis(1000)));
        // An idle source saves up to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..4 {
            assert!(rates.allow(ip(5), 1000, later));
        }
        assert!(!rates.allow(ip(5), 1000, later));
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let mut rates = SourceRates::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(rates.allow(ip(5), MAX_RECEIVE_DATAGRAM, now));
        }
    }

    #[test]
    fn spoofed_sources_cannot_grow_the_table_for_ever() {
        let mut rates = SourceRates::new(10);
        let now = Instant::now();
        for n in 0..3 * MAX_TRACKED_SOURCES {
            let ip = IpAddr::from(u32::try_from(n).unwrap().to_be_bytes());
            rates.allow(ip, 100, now);
            assert!(rates
                .0
                .as_ref()
                .is_some_and(|r| r.tracked() <= MAX_TRACKED_SOURCES));
        }
    }
}
