//! Token buckets: how the programs bound what one source address (or everyone together) may
//! cost them per second. The listener meters the datagrams of each source address, the
//! announcer the answers it sends to each querying address and the bytes of all answers.
//!
//! A bucket holds up to `burst` tokens and gains `rate` per second; taking more than it holds
//! is refused ([`TokenBucket::try_take`]), or allowed to overdraw it
//! ([`TokenBucket::take`]: a datagram already sent). [`PerAddress`] keeps one bucket per IP
//! address in a table of bounded size, so forged source addresses cannot grow it for ever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// One token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens, gaining `rate` per second.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// The tokens held at `now` (negative while an overdraft is being paid back).
    pub fn tokens(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        self.tokens
    }

    /// Takes `amount` tokens at `now` if the bucket holds that many.
    pub fn try_take(&mut self, amount: f64, now: Instant) -> bool {
        if self.tokens(now) >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// Takes `amount` tokens, even more than the bucket holds: what is already spent is
    /// counted, and paid back before anything else is allowed.
    pub fn take(&mut self, amount: f64) {
        self.tokens -= amount;
    }

    /// Whether the bucket would be full at `now`: a source in that state is as good as new, and
    /// can be forgotten.
    fn is_full_at(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
}

/// One [`TokenBucket`] per IP address, each starting full, in a table of at most `max_tracked`
/// addresses.
#[derive(Debug, Clone)]
pub struct PerAddress {
    rate: f64,
    burst: f64,
    max_tracked: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl PerAddress {
    /// Buckets of `burst` tokens gaining `rate` per second, for at most `max_tracked` addresses.
    pub fn new(rate: f64, burst: f64, max_tracked: usize) -> PerAddress {
        PerAddress {
            rate,
            burst,
            max_tracked: max_tracked.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes `amount` tokens from `ip`'s bucket at `now` if it holds that many.
    ///
    /// When the table is full and `ip` is new, the addresses whose buckets have filled up again
    /// are forgotten first; if that is not enough (a flood of forged addresses), all are: a
    /// forger then gets a fresh burst, never an unbounded table.
    pub fn try_take(&mut self, ip: IpAddr, amount: f64, now: Instant) -> bool {
        if self.buckets.len() >= self.max_tracked && !self.buckets.contains_key(&ip) {
            self.buckets.retain(|_, bucket| !bucket.is_full_at(now));
            if self.buckets.len() >= self.max_tracked {
                self.buckets.clear();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(amount, now)
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 20.0, t0);
        assert!(bucket.try_take(20.0, t0));
        assert!(!bucket.try_take(1.0, t0));
        assert!(!bucket.try_take(6.0, t0 + Duration::from_millis(500)));
        assert!(bucket.try_take(5.0, t0 + Duration::from_millis(500)));
        // Never more than the burst, however long it waits.
        assert!(!bucket.try_take(21.0, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn an_overdraft_is_paid_back_first() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000.0, 1000.0, t0);
        bucket.take(1500.0);
        assert!(bucket.tokens(t0) < 0.0);
        assert!(bucket.tokens(t0 + Duration::from_millis(400)) < 0.0);
        assert!(bucket.tokens(t0 + Duration::from_millis(600)) > 0.0);
    }

    #[test]
    fn addresses_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut per = PerAddress::new(1.0, 4.0, 16);
        for _ in 0..4 {
            assert!(per.try_take(ip(2), 1.0, t0));
        }
        assert!(!per.try_take(ip(2), 1.0, t0));
        assert!(per.try_take(ip(3), 1.0, t0), "another address");
        assert!(per.try_take(ip(2), 1.0, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn forged_addresses_cannot_grow_the_table_for_ever() {
        let now = Instant::now();
        let mut per = PerAddress::new(1.0, 4.0, 64);
        for n in 0..1000u32 {
            per.try_take(IpAddr::from(n.to_be_bytes()), 1.0, now);
            assert!(per.tracked() <= 64);
        }
    }
}
