//! Queries, both ways: the start-up query this listener sends ([`Querier`]), and the queries
//! it hears from others, which it passes on to its own announcer ([`Asker`]) through the
//! `.queries/` mailbox ([`QueryBox`]).
//!
//! Peers announce once a minute, so a listener that only waited would show an empty network for
//! up to a minute. A starting listener therefore queries its broadcast targets, its `--peer`s
//! and the peers of `DIR/peers.txt` ([`QUERY_SCHEDULE`]: three times, as UDP may drop one),
//! from a socket of its own on an ephemeral port: several listeners on one host share the
//! announce port, and a unicast answer to a shared port reaches only one of them.
//!
//! A broadcast query reaches the other peers' announcers, which hear the broadcast addresses
//! they announce to themselves, and their *listeners* (they own the announce port). A listener
//! still passes every query it hears on to its announcer, because some reach only the
//! listener: one sent by unicast (a querier's `--peer` or `peers.txt`) is delivered to a
//! single socket of those sharing the port, and the announcer must not bind where it would
//! take the listener's unicast announcements (the announcer's `ears` module explains);
//! one broadcast to an address the announcer does not announce to, too. A query
//! that reaches both is answered once: the announcer answers a querier at most once per
//! [`shared::QUERY_ANSWER_GAP`]. What this listener may be made to ask of its announcer is
//! bounded ([`QueryGate`]), so a flood of queries cannot turn the peer into an amplifier.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shared::latch::{Latch, Latches};
use shared::protocol::{Announcement, AnnouncementExt, Kind, QUERY_USERNAME};
use shared::queries::QueryBox;
use shared::trust::Wire;
use shared::DEFAULT_ANNOUNCE_INTERVAL_SECS;

/// When the start-up query is sent, after the start: three times, because UDP may drop the
/// query or its answers. A listener hearing a query asks its announcer at most once per source
/// per [`QUERY_FILE_GAP`], so the last send is spaced a little more than that after the first.
pub const QUERY_SCHEDULE: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(1100),
];

/// A listener creates at most one query file per querier address per this long, so a
/// querier (or an attacker) cannot make the announcer answer faster than that; the announcer
/// answers each querier at most once per the same gap.
pub const QUERY_FILE_GAP: Duration = shared::QUERY_ANSWER_GAP;

/// At most this many query files are created per second in all, whatever the number of
/// queriers: bounds the unicast traffic a flood of queries can make this peer send.
const MAX_QUERY_FILES_PER_SEC: u32 = 32;

/// Sends the start-up query, on the schedule of [`QUERY_SCHEDULE`].
pub(crate) struct Querier<'a> {
    socket: &'a UdpSocket,
    /// The query datagram; the same every time (sealed anew for each send on a private
    /// network).
    datagram: Vec<u8>,
    wire: Wire,
    /// Sends still to come: when, and to whom.
    pending: Vec<(Instant, Vec<SocketAddr>)>,
    /// The targets sends fail to.
    unreachable: Latches<SocketAddr>,
}

impl<'a> Querier<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, wire: Wire) -> Querier<'a> {
        Querier {
            socket,
            datagram: query_datagram(),
            wire,
            pending: Vec::new(),
            unreachable: Latches::default(),
        }
    }

    /// Queries `targets` at each offset of [`QUERY_SCHEDULE`] from `now`.
    pub(crate) fn schedule(&mut self, targets: &[SocketAddr], now: Instant) {
        if targets.is_empty() {
            return;
        }
        for offset in QUERY_SCHEDULE {
            self.pending.push((now + offset, targets.to_vec()));
        }
    }

    /// When the next send is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|(t, _)| *t).min()
    }

    /// Sends what is due at `now`.
    pub(crate) fn send_due(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.pending = later;
        for (_, targets) in due {
            let datagram = match self.wire.wrap(&self.datagram) {
                Ok(datagram) => datagram,
                Err(e) => {
                    log::warn!("cannot seal a query: {e}");
                    continue;
                }
            };
            for &target in &targets {
                match self.socket.send_to(&datagram, target) {
                    Ok(_) => {
                        if self.unreachable.reset(&target) {
                            log::info!("sending to {target} works again");
                        }
                    }
                    Err(e) => {
                        if self.unreachable.trip_because(target, &e) {
                            log::warn!("cannot send a query to {target}: {e}");
                        }
                    }
                }
            }
            let names: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
            log::debug!("sent a query to {}", names.join(", "));
        }
    }
}

/// The query a listener sends: no chunks, `kind` query; the port and interval mean nothing in
/// a query but are there for listeners that predate `kind` and read it as an (empty)
/// announcement. Its username is [`QUERY_USERNAME`], never this peer's: a legacy listener that
/// shows the last datagram of each username would otherwise show this peer holding nothing
/// until its next announcement. (Our announcers answer a query whatever its username.)
pub fn query_datagram() -> Vec<u8> {
    let ext = AnnouncementExt {
        kind: Kind::Query,
        ..AnnouncementExt::new(0, DEFAULT_ANNOUNCE_INTERVAL_SECS)
    };
    Announcement::ours(QUERY_USERNAME, &[], ext).encode()
}

/// Why a heard query is not passed on to the announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unasked {
    /// This querier was passed on less than [`QUERY_FILE_GAP`] ago.
    Again,
    /// [`MAX_QUERY_FILES_PER_SEC`] were passed on this second already.
    TooMany,
}

/// Which heard queries are passed on: one per querier per [`QUERY_FILE_GAP`], and
/// [`MAX_QUERY_FILES_PER_SEC`] in all. Pure: the caller gives the time.
#[derive(Debug)]
pub(crate) struct QueryGate {
    /// When each querier address was last passed on.
    asked: HashMap<SocketAddr, Instant>,
    /// The start of the current one-second window and how many were passed on in it.
    this_second: (Instant, u32),
}

impl QueryGate {
    pub(crate) fn new(now: Instant) -> QueryGate {
        QueryGate {
            asked: HashMap::new(),
            this_second: (now, 0),
        }
    }

    /// Whether the query of `from`, heard at `now`, is passed on; if so it is counted.
    pub(crate) fn admit(&mut self, from: SocketAddr, now: Instant) -> Result<(), Unasked> {
        if self
            .asked
            .get(&from)
            .is_some_and(|t| now.duration_since(*t) < QUERY_FILE_GAP)
        {
            return Err(Unasked::Again);
        }
        if now.duration_since(self.this_second.0) >= Duration::from_secs(1) {
            self.this_second = (now, 0);
        }
        if self.this_second.1 >= MAX_QUERY_FILES_PER_SEC {
            return Err(Unasked::TooMany);
        }
        self.this_second.1 += 1;
        self.asked
            .retain(|_, t| now.duration_since(*t) < QUERY_FILE_GAP);
        self.asked.insert(from, now);
        Ok(())
    }
}

/// Passes heard queries on to this peer's announcer, within the [`QueryGate`].
pub(crate) struct Asker {
    gate: QueryGate,
    mailbox: QueryBox,
    /// The mailbox cannot be written to.
    unwritable: Latch,
}

impl Asker {
    /// Posting into the mailbox `dir` (`DIR/.queries`).
    pub(crate) fn new(dir: PathBuf) -> Asker {
        Asker {
            gate: QueryGate::new(Instant::now()),
            mailbox: QueryBox::new(dir),
            unwritable: Latch::default(),
        }
    }

    /// Asks this peer's announcer to answer the query of `from`, if the gate lets it through.
    pub(crate) fn ask(&mut self, from: SocketAddr) {
        match self.gate.admit(from, Instant::now()) {
            Ok(()) => {}
            Err(Unasked::Again) => {
                log::debug!("{from} queried again within {QUERY_FILE_GAP:?}: already asked");
                return;
            }
            Err(Unasked::TooMany) => {
                log::debug!("too many queries this second: not answering {from}");
                return;
            }
        }
        match self.mailbox.post(from) {
            Ok(()) => {
                if self.unwritable.reset() {
                    log::info!("{} writable again", self.mailbox.dir().display());
                }
                log::debug!("asked our announcer to answer {from}");
            }
            Err(e) => {
                if self.unwritable.trip_because(&e) {
                    log::warn!(
                        "cannot create {}: {e}; queries go unanswered",
                        self.mailbox.file_for(from).display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 9], port))
    }

    #[test]
    fn one_querier_is_passed_on_once_per_gap() {
        let t0 = Instant::now();
        let mut gate = QueryGate::new(t0);
        assert_eq!(gate.admit(addr(1), t0), Ok(()));
        assert_eq!(gate.admit(addr(1), t0), Err(Unasked::Again));
        assert_eq!(
            gate.admit(addr(2), t0),
            Ok(()),
            "another port is another querier"
        );
        assert_eq!(gate.admit(addr(1), t0 + QUERY_FILE_GAP), Ok(()));
    }

    #[test]
    fn queries_are_passed_on_at_most_so_many_per_second_in_all() {
        let t0 = Instant::now();
        let mut gate = QueryGate::new(t0);
        for port in 1..=u16::try_from(MAX_QUERY_FILES_PER_SEC).unwrap() {
            assert_eq!(gate.admit(addr(port), t0), Ok(()));
        }
        assert_eq!(gate.admit(addr(1000), t0), Err(Unasked::TooMany));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(gate.admit(addr(1000), later), Ok(()), "a new second");
    }

    #[test]
    fn the_query_datagram_is_a_query_under_the_reserved_name() {
        let query = Announcement::decode(&query_datagram()).unwrap();
        assert_eq!(query.username, QUERY_USERNAME);
        assert!(query.files.is_empty());
        assert_eq!(query.p2p.map(|e| e.kind), Some(Kind::Query));
    }
}
