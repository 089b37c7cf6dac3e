//! How much the announcer may answer queries: per querying address, and in bytes per second.
//!
//! A query is one small datagram, and its answer is the whole announcement, which can be a
//! hundred datagrams: answering every query would let anyone who forges the source address of
//! queries aim that traffic at a victim. Listeners create at most one query file per querier
//! *port* per second, so a forger rotating ports is not slowed by that; the announcer
//! therefore also limits:
//!
//! - answers to one IP address, whatever its ports: [`ANSWERS_PER_IP_BURST`] at once, then one
//!   per [`ANSWER_PER_IP_REFILL`] (several peers on one host may query within a second);
//! - the bytes of all answers together: [`DEFAULT_ANSWER_RATE`] bytes per second
//!   (`announcer --max-answer-rate`), a second's worth at once. An answer is sent whole when
//!   any budget is left, so the average stays within the rate.
//!
//! A query over either limit is not answered (its file is deleted): the querier asks again
//! (three times at start) or hears the next periodic announcement.
//!
//! Before either, a querier (one IP address *and* port) answered less than
//! [`QUERY_ANSWER_GAP`] ago is not answered again: the announcer hears a broadcast query
//! itself and also, a moment later, through its listener's query file, and must answer it
//! once, not twice. That costs nothing from the budgets above.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shared::ratelimit::{PerAddress, TokenBucket};
use shared::QUERY_ANSWER_GAP;

/// Default of `announcer --max-answer-rate`: bytes per second of answers to queries.
pub const DEFAULT_ANSWER_RATE: u64 = 128 * 1024;

/// Answers one IP address may get at once.
pub const ANSWERS_PER_IP_BURST: u32 = 4;

/// After its burst, one IP address gets one more answer per this long.
pub const ANSWER_PER_IP_REFILL: Duration = Duration::from_secs(1);

/// Most querying addresses remembered; beyond that, those with a full budget are forgotten.
const MAX_TRACKED_QUERIERS: usize = 1024;

/// Why a query was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This querier was answered less than [`QUERY_ANSWER_GAP`] ago (the same query heard
    /// both directly and through the listener, or asked again too soon). Not worth a warning.
    Repeat,
    /// Its address had its answers for now.
    PerAddress,
    /// The bytes per second of all answers were spent.
    Bytes,
}

/// The budgets of answers to queries.
pub(crate) struct AnswerBudget {
    /// Bytes of answers; `None` for no limit.
    bytes: Option<TokenBucket>,
    /// Answers per querying address.
    per_ip: PerAddress,
    /// When each querier was last answered; at most [`MAX_TRACKED_QUERIERS`] of the last
    /// [`QUERY_ANSWER_GAP`].
    answered: HashMap<SocketAddr, Instant>,
}

impl AnswerBudget {
    /// Budgets of `rate` bytes per second of answers (0: no limit, a second's worth at once),
    /// and of [`ANSWERS_PER_IP_BURST`] answers per address, one more per
    /// [`ANSWER_PER_IP_REFILL`].
    #[allow(clippy::cast_precision_loss)] // rates far below 2^52
    pub(crate) fn new(rate: u64, now: Instant) -> AnswerBudget {
        AnswerBudget {
            bytes: (rate > 0).then(|| TokenBucket::new(rate as f64, rate as f64, now)),
            per_ip: PerAddress::new(
                1.0 / ANSWER_PER_IP_REFILL.as_secs_f64(),
                f64::from(ANSWERS_PER_IP_BURST),
                MAX_TRACKED_QUERIERS,
            ),
            answered: HashMap::new(),
        }
    }

    /// Whether an answer to `querier` may be sent at `now`; if so, it is counted against its
    /// IP address and remembered for [`QUERY_ANSWER_GAP`] (its bytes are counted by
    /// [`AnswerBudget::spent`] once sent).
    pub(crate) fn allow(&mut self, querier: SocketAddr, now: Instant) -> Result<(), Refusal> {
        let recent = |t: &Instant| now.saturating_duration_since(*t) < QUERY_ANSWER_GAP;
        if self.answered.get(&querier).is_some_and(recent) {
            return Err(Refusal::Repeat);
        }
        if self.answered.len() >= MAX_TRACKED_QUERIERS {
            self.answered.retain(|_, t| recent(t));
            if self.answered.len() >= MAX_TRACKED_QUERIERS {
                // So many queriers within one gap are a flood: answering one more without
                // remembering it could answer it twice.
                return Err(Refusal::PerAddress);
            }
        }
        if let Some(bytes) = &mut self.bytes {
            if bytes.tokens(now) <= 0.0 {
                return Err(Refusal::Bytes);
            }
        }
        if !self.per_ip.try_take(querier.ip(), 1.0, now) {
            return Err(Refusal::PerAddress);
        }
        self.answered.insert(querier, now);
        Ok(())
    }

    /// An answer of `bytes` bytes was sent: whole, even beyond what was left, so the budget may
    /// be overdrawn and the next answers wait until it is paid back.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn spent(&mut self, bytes: usize) {
        if let Some(budget) = &mut self.bytes {
            budget.take(bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(last: u8) -> SocketAddr {
        ip_port(last, 4000)
    }

    fn ip_port(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    #[test]
    fn one_address_gets_its_burst_then_one_answer_a_second() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(0, t0);
        for port in 1..=u16::try_from(ANSWERS_PER_IP_BURST).unwrap() {
            assert_eq!(budget.allow(ip_port(2, port), t0), Ok(()));
        }
        assert_eq!(budget.allow(ip_port(2, 99), t0), Err(Refusal::PerAddress));
        assert_eq!(budget.allow(ip(3), t0), Ok(()), "another address");
        let later = t0 + ANSWER_PER_IP_REFILL;
        assert_eq!(budget.allow(ip_port(2, 99), later), Ok(()));
        assert_eq!(
            budget.allow(ip_port(2, 100), later),
            Err(Refusal::PerAddress)
        );
    }

    #[test]
    fn one_querier_is_answered_once_per_gap_at_no_cost_to_its_address() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(0, t0);
        assert_eq!(budget.allow(ip(2), t0), Ok(()));
        // The same query again, through the listener's query file: not answered, not counted.
        let soon = t0 + QUERY_ANSWER_GAP / 2;
        for _ in 0..10 {
            assert_eq!(budget.allow(ip(2), soon), Err(Refusal::Repeat));
        }
        assert_eq!(budget.allow(ip_port(2, 4001), soon), Ok(()), "another port");
        assert_eq!(budget.allow(ip(2), t0 + QUERY_ANSWER_GAP), Ok(()));
    }

    #[test]
    fn a_query_refused_for_its_cost_may_be_answered_when_asked_again() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(1000, t0);
        assert_eq!(budget.allow(ip(2), t0), Ok(()));
        budget.spent(2000);
        assert_eq!(budget.allow(ip(3), t0), Err(Refusal::Bytes));
        let paid_back = t0 + Duration::from_millis(1100);
        assert_eq!(budget.allow(ip(3), paid_back), Ok(()), "not a repeat");
    }

    #[test]
    fn answers_stop_when_the_bytes_are_spent_and_resume_as_they_refill() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(1000, t0);
        assert_eq!(budget.allow(ip(2), t0), Ok(()));
        // An answer bigger than the budget is sent whole, and overdraws it.
        budget.spent(1500);
        assert_eq!(budget.allow(ip(3), t0), Err(Refusal::Bytes));
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(budget.allow(ip(3), t1), Err(Refusal::Bytes), "still -100");
        let t2 = t0 + Duration::from_millis(600);
        assert_eq!(budget.allow(ip(3), t2), Ok(()));
    }

    #[test]
    fn forged_addresses_cannot_grow_the_table_for_ever() {
        let now = Instant::now();
        let mut budget = AnswerBudget::new(0, now);
        for n in 0..5 * MAX_TRACKED_QUERIERS {
            let ip = IpAddr::from(u32::try_from(n).unwrap().to_be_bytes());
            let _ = budget.allow(SocketAddr::new(ip, 4000), now);
            assert!(budget.per_ip.tracked() <= MAX_TRACKED_QUERIERS);
            assert!(budget.answered.len() <= MAX_TRACKED_QUERIERS);
        }
    }
}
