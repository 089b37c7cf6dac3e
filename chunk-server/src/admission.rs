//! Admission: which connections the server takes on, and when a request may start its answer.
//!
//! A connection goes through two phases, each with its own budget, so that clients still
//! sending their request (or sending nothing) can never hold the slots of transfers:
//!
//! 1. **pending**, from accept until its request is read and a transfer slot is free: at most
//!    [`Limits::max_pending`] connections at once, each cut off at the request deadline;
//! 2. **transferring**, while its answer is sent: at most [`Limits::max_transfers`] at once,
//!    each dropped when the client reads too slowly (`serve`).
//!
//! Over both phases, one source address holds at most [`Limits::max_per_ip`] connections, so a
//! single host cannot fill either budget. A connection over a limit is closed at once by the
//! accept loop, which never waits for anything. The counters live behind one mutex; a
//! [`Ticket`] is a connection's claim on them, released when it is dropped, however the handler
//! ends.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use shared::shutdown::Shutdown;

/// How often a request waiting for a transfer slot looks at the shutdown flag.
const SLOT_POLL: Duration = Duration::from_millis(50);

/// The budgets of [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Answers being sent at once.
    pub(crate) max_transfers: usize,
    /// Connections accepted and not yet transferring.
    pub(crate) max_pending: usize,
    /// Connections from one source address, in either phase.
    pub(crate) max_per_ip: usize,
}

/// Why the accept loop turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turned {
    /// The source address already holds its share of connections.
    TooManyFromAddress {
        /// How many it holds.
        held: usize,
    },
    /// Every pending slot is taken.
    Busy {
        /// How many connections are pending.
        pending: usize,
    },
}

impl fmt::Display for Turned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Turned::TooManyFromAddress { held } => {
                write!(f, "this address already has {held} connections open")
            }
            Turned::Busy { pending } => {
                write!(
                    f,
                    "{pending} connections are already waiting for their request"
                )
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    pending: usize,
    transfers: usize,
}

/// The connection counters shared by the accept loop and the handlers.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    /// Signalled whenever a transfer slot frees.
    slot_freed: Condvar,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits: Limits {
                max_transfers: limits.max_transfers.max(1),
                max_pending: limits.max_pending.max(1),
                max_per_ip: limits.max_per_ip.max(1),
            },
            counts: Mutex::new(Counts::default()),
            slot_freed: Condvar::new(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counters stay consistent whatever panicked while holding the lock: every update
        // is a single statement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes on a new connection from `ip` as pending, or says why not. Never waits.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Turned> {
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        let held = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if held >= self.limits.max_per_ip {
            return Err(Turned::TooManyFromAddress { held });
        }
        if counts.pending >= self.limits.max_pending {
            return Err(Turned::Busy {
                pending: counts.pending,
            });
        }
        counts.pending += 1;
        *counts.per_ip.entry(ip).or_default() += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
            transferring: false,
        })
    }

    #[cfg(test)]
    fn snapshot(&self) -> (usize, usize, usize) {
        let counts = self.counts();
        (
            counts.pending,
            counts.transfers,
            counts.per_ip.values().sum(),
        )
    }
}

/// One connection's claim on the [`Admission`] budgets; released on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    transferring: bool,
}

impl Ticket {
    /// Moves this connection from pending to transferring once a transfer slot is free: waits
    /// until `deadline` at most, less if shutdown is asked. Returns whether it got a slot.
    pub(crate) fn start_transfer(&mut self, deadline: Instant, shutdown: &Shutdown) -> bool {
        if self.transferring {
            return true;
        }
        let admission = &self.admission;
        let mut counts = admission.counts();
        while counts.transfers >= admission.limits.max_transfers {
            let now = Instant::now();
            if now >= deadline || shutdown.is_triggered() {
                return false;
            }
            counts = admission
                .slot_freed
                .wait_timeout(counts, SLOT_POLL.min(deadline - now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        counts.transfers += 1;
        counts.pending -= 1;
        self.transferring = true;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let admission = &self.admission;
        let mut counts = admission.counts();
        if self.transferring {
            counts.transfers -= 1;
            admission.slot_freed.notify_all();
        } else {
            counts.pending -= 1;
        }
        if let Some(held) = counts.per_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::thread;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    fn limits(max_transfers: usize, max_pending: usize, max_per_ip: usize) -> Limits {
        Limits {
            max_transfers,
            max_pending,
            max_per_ip,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let admission = Admission::new(limits(8, 100, 3));
        let held: Vec<Ticket> = (0..3).map(|_| admission.admit(ip(5)).unwrap()).collect();
        assert_eq!(
            admission.admit(ip(5)).unwrap_err(),
            Turned::TooManyFromAddress { held: 3 }
        );
        // Another address is not affected, and a closed connection frees its place.
        let other = admission.admit(ip(6)).unwrap();
        drop(held);
        let again = admission.admit(ip(5)).unwrap();
        drop((other, again));
        assert_eq!(admission.snapshot(), (0, 0, 0));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let admission = Admission::new(limits(8, 100, 1));
        let _v4 = admission.admit(ip(5)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 5).to_ipv6_mapped());
        assert!(admission.admit(mapped).is_err());
    }

    #[test]
    fn pending_connections_are_bounded_and_do_not_take_transfer_slots() {
        let admission = Admission::new(limits(1, 2, 10));
        let mut first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(2)).unwrap();
        assert_eq!(
            admission.admit(ip(3)).unwrap_err(),
            Turned::Busy { pending: 2 }
        );
        // Starting a transfer frees a pending place.
        let shutdown = Shutdown::new();
        assert!(first.start_transfer(Instant::now(), &shutdown));
        let _third = admission.admit(ip(3)).unwrap();
        assert_eq!(admission.snapshot(), (2, 1, 3));
    }

    #[test]
    fn a_request_waits_for_a_transfer_slot_until_its_deadline() {
        let admission = Admission::new(limits(1, 10, 10));
        let shutdown = Shutdown::new();
        let mut busy = admission.admit(ip(1)).unwrap();
        assert!(busy.start_transfer(Instant::now(), &shutdown));

        let mut waiting = admission.admit(ip(2)).unwrap();
        let started = Instant::now();
        assert!(!waiting.start_transfer(started + Duration::from_millis(100), &shutdown));
        assert!(started.elapsed() >= Duration::from_millis(100));

        // A slot freed while waiting is taken at once.
        let freer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            drop(busy);
        });
        assert!(waiting.start_transfer(Instant::now() + Duration::from_secs(10), &shutdown));
        freer.join().unwrap();
        assert_eq!(admission.snapshot(), (0, 1, 1));
    }

    #[test]
    fn shutdown_ends_the_wait_for_a_slot() {
        let admission = Admission::new(limits(1, 10, 10));
        let shutdown = Shutdown::new();
        let mut busy = admission.admit(ip(1)).unwrap();
        assert!(busy.start_transfer(Instant::now(), &shutdown));
        let mut waiting = admission.admit(ip(2)).unwrap();
        shutdown.trigger();
        let started = Instant::now();
        assert!(!waiting.start_transfer(started + Duration::from_secs(10), &shutdown));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
