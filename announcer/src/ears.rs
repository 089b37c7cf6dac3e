//! Queries heard directly: the announcer's own sockets on the broadcast addresses it announces
//! to, so a starting listener elsewhere gets an answer even while this peer's listener is not
//! running (or not yet).
//!
//! # Which addresses
//! A socket is bound (shared, `SO_REUSEADDR`) to each announce target that is a broadcast
//! address of this host ([`shared::net::local_broadcast_addresses`]), at that target's port:
//! where this peer's announcements go is where the other peers' listeners send their queries.
//! Never to a unicast address, nor to `0.0.0.0`: on Linux a socket bound to a unicast address
//! hears no broadcast, and of the sockets sharing a port the last one bound receives *all*
//! unicast datagrams to it, so such a socket would take from this host's listeners the
//! announcements that static peers (`--peer`, `peers.txt`) send them by unicast. A socket bound
//! to a broadcast address receives only broadcasts, which every socket bound to the port gets
//! a copy of: the listeners lose nothing.
//!
//! # Why the listener still passes queries on
//! A query sent by unicast (a listener's `--peer` or `peers.txt`), or broadcast to an address
//! no announce target names, reaches only this peer's listener, which leaves it in
//! `DIR/.queries/` ([`shared::queries::QueryBox`]). A broadcast query reaches both; the
//! [`budget`](crate::budget) answers each querier once per [`shared::QUERY_ANSWER_GAP`], so it
//! is answered once.
//!
//! # Legacy peers
//! They also tell whether a legacy peer announces on the LAN (its datagrams carry no `p2p`),
//! which is when `--legacy-list auto` sends the list of chunk names beside a compact
//! announcement ([`crate::legacy`]).
//!
//! # Cost
//! These sockets hear every announcement of the LAN too, possibly thousands a minute. Each
//! datagram is read into a buffer of [`MAX_LEGACY_DATAGRAM`] bytes plus one (the kernel drops
//! the rest of a longer one, which therefore can be neither a query nor a legacy
//! announcement), and only a short one that contains the bytes `query` is parsed as a query
//! ([`shared::protocol::is_query`]); as a legacy announcement, only one without the bytes
//! `"p2p"`, at most once a second. At most [`MAX_DATAGRAMS_PER_POLL`] are read per socket per
//! poll; what a flood leaves in the socket is dropped by the kernel, and those queriers ask
//! again or hear the periodic announcement.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shared::latch::Latches;
use shared::protocol::{is_query, Announcement, MAX_QUERY_DATAGRAM};
use shared::trust::envelope::now_ms;
use shared::trust::{is_sealed, Gate, Passed};

use crate::config::Config;

/// Most datagrams read from one socket per poll (every [`crate::QUERY_POLL`]), so a flood of
/// announcements cannot stall the loop.
pub const MAX_DATAGRAMS_PER_POLL: usize = 1024;

/// Longest datagram looked at as a legacy announcement: legacy peers keep theirs under 1024
/// bytes (some of them read no more).
pub const MAX_LEGACY_DATAGRAM: usize = 1024;

/// A legacy announcement is looked for at most once per this long: one a second is all
/// `--legacy-list auto` needs to know.
const LEGACY_LOOK_GAP: Duration = Duration::from_secs(1);

/// Where the announcer listens for queries itself: each of `config.targets` that is a broadcast
/// address of this host (see the module documentation), once.
pub fn query_addresses(config: &Config) -> Vec<SocketAddr> {
    let local = shared::net::local_broadcast_addresses();
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for target in &config.targets {
        let broadcast = match target.ip() {
            IpAddr::V4(ip) => local.contains(&ip),
            IpAddr::V6(_) => false,
        };
        if broadcast && !addresses.contains(target) {
            addresses.push(*target);
        }
    }
    addresses
}

/// Binds a shared socket to each of [`query_addresses`]; one that cannot be bound is warned
/// about and left out (its queries still arrive through the listener).
pub fn bind_query_sockets(config: &Config) -> Vec<UdpSocket> {
    let mut sockets = Vec::new();
    for addr in query_addresses(config) {
        match shared::net::bind_udp_shared(addr) {
            Ok(socket) => sockets.push(socket),
            Err(e) => log::warn!(
                "cannot listen for queries on {addr}: {e}; they are answered only when this \
                 peer's listener passes them on"
            ),
        }
    }
    sockets
}

/// The sockets queries are heard on, read without blocking.
pub(crate) struct Ears {
    sockets: Vec<UdpSocket>,
    /// One byte more than a query may be, so a longer datagram shows as such.
    buf: Vec<u8>,
    /// The sockets whose receive fails.
    failing: Latches<usize>,
    /// On a private network, lets in only sealed, fresh queries of members.
    gate: Gate,
    /// When and from where a legacy peer's announcement was last heard.
    legacy_heard: Option<(Instant, SocketAddr)>,
}

impl Ears {
    /// Hearing on `sockets` (already bound), which are made non-blocking; one that cannot be
    /// is dropped with a warning.
    pub(crate) fn new(sockets: Vec<UdpSocket>, gate: Gate) -> Ears {
        let sockets = sockets
            .into_iter()
            .filter(|s| match s.set_nonblocking(true) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("cannot listen for queries on {}: {e}", name(s));
                    false
                }
            })
            .collect();
        Ears {
            sockets,
            buf: vec![0; MAX_LEGACY_DATAGRAM + 1],
            failing: Latches::default(),
            gate,
            legacy_heard: None,
        }
    }

    /// When and from where a legacy peer's announcement was last heard (on an open network;
    /// on a private one, legacy peers are not looked for).
    pub(crate) fn legacy_heard(&self) -> Option<(Instant, SocketAddr)> {
        self.legacy_heard
    }

    /// Where queries are heard, for the log.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.sockets.iter().map(name).collect()
    }

    /// The queriers heard since the last call, each once, `max` at most (the other queries of
    /// this poll are dropped). Reads at most [`MAX_DATAGRAMS_PER_POLL`] datagrams per socket.
    pub(crate) fn take(&mut self, max: usize) -> Vec<SocketAddr> {
        let mut queriers = Vec::new();
        for (i, socket) in self.sockets.iter().enumerate() {
            for _ in 0..MAX_DATAGRAMS_PER_POLL {
                match socket.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        if self.failing.reset(&i) {
                            log::info!("hearing queries on {} works again", name(socket));
                        }
                        let bytes = &self.buf[..n];
                        if n <= MAX_QUERY_DATAGRAM
                            && admits_query(&mut self.gate, bytes, from)
                            && queriers.len() < max
                            && !queriers.contains(&from)
                        {
                            queriers.push(from);
                        }
                        let now = Instant::now();
                        let looked = self
                            .legacy_heard
                            .is_some_and(|(t, _)| now.duration_since(t) < LEGACY_LOOK_GAP);
                        if !looked
                            && n <= MAX_LEGACY_DATAGRAM
                            && !self.gate.is_private()
                            && is_legacy_announcement(bytes)
                        {
                            self.legacy_heard = Some((now, from));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => {
                        if self.failing.trip_because(i, &e) {
                            log::warn!("cannot hear queries on {}: {e}", name(socket));
                        }
                        break;
                    }
                }
            }
        }
        queriers
    }
}

/// Whether `bytes` is a query that `gate` lets in: on an open network any query; on a
/// private one only a member's, sealed and fresh.
fn admits_query(gate: &mut Gate, bytes: &[u8], from: SocketAddr) -> bool {
    match gate.admit(bytes, now_ms()) {
        Ok(Passed::Plain(bytes)) => !gate.is_private() && is_query(bytes),
        Ok(Passed::Sealed(opened)) => is_query(&opened.payload),
        Err(refused) => {
            log::debug!("{}", refused.describe(from, None));
            false
        }
    }
}

/// Whether `bytes` is a legacy peer's announcement: a JSON object with `username` and
/// `files` and no `p2p` key (every datagram of ours has one; a sealed one is no legacy peer's
/// either). Datagrams holding the bytes `"p2p"` are not parsed.
fn is_legacy_announcement(bytes: &[u8]) -> bool {
    const OURS: &[u8] = b"\"p2p\"";
    !bytes.windows(OURS.len()).any(|w| w == OURS)
        && !is_sealed(bytes)
        && Announcement::decode(bytes).is_ok_and(|a| a.p2p.is_none())
}

/// A socket's address, for the log.
fn name(socket: &UdpSocket) -> String {
    socket
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::{Announcement, AnnouncementExt, Kind, QUERY_USERNAME};

    fn query() -> Vec<u8> {
        let ext = AnnouncementExt {
            kind: Kind::Query,
            ..AnnouncementExt::new(0, 60)
        };
        Announcement::ours(QUERY_USERNAME, &[], ext).encode()
    }

    #[test]
    fn only_broadcast_targets_of_this_host_are_listened_on() {
        let port = 47_000;
        let config = Config {
            targets: vec![
                SocketAddr::from(([127, 255, 255, 255], port)),
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 255, 255, 255], port)),
                SocketAddr::from(([255, 255, 255, 255], port + 1)),
            ],
            ..Config::default()
        };
        assert_eq!(
            query_addresses(&config),
            [
                SocketAddr::from(([127, 255, 255, 255], port)),
                SocketAddr::from(([255, 255, 255, 255], port + 1)),
            ]
        );
    }

    #[test]
    fn queries_are_taken_once_per_querier_and_everything_else_is_skipped() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let mut ears = Ears::new(vec![socket], Gate::new(None, false));
        assert_eq!(ears.take(64), []);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'q'; MAX_QUERY_DATAGRAM + 100];
        a.send_to(&query(), to).unwrap();
        a.send_to(b"not json, but a query", to).unwrap();
        a.send_to(&big, to).unwrap();
        b.send_to(&query(), to).unwrap();
        a.send_to(&query(), to).unwrap();
        let want = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        let mut got = Vec::new();
        for _ in 0..100 {
            got.extend(ears.take(64));
            if got.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, want);
        assert_eq!(ears.take(64), []);
        assert_eq!(ears.legacy_heard(), None, "no legacy peer among them");
    }

    #[test]
    fn legacy_announcements_are_told_from_ours() {
        assert!(is_legacy_announcement(
            br#"{"username": "ece", "files": ["ece_1", "ece_2"]}"#
        ));
        assert!(is_legacy_announcement(br#"{"username":"ece","files":[]}"#));
        assert!(!is_legacy_announcement(&query()));
        let ours = Announcement::ours("alice", &["a_1"], AnnouncementExt::new(5001, 60));
        assert!(!is_legacy_announcement(&ours.encode()));
        assert!(!is_legacy_announcement(b"not json"));
        assert!(!is_legacy_announcement(br#"{"username":"x"}"#));
        // Heard on a socket: its time and source are kept.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let mut ears = Ears::new(vec![socket], Gate::new(None, false));
        let legacy = UdpSocket::bind("127.0.0.1:0").unwrap();
        legacy
            .send_to(br#"{"username": "ece", "files": ["ece_1"]}"#, to)
            .unwrap();
        for _ in 0..100 {
            ears.take(64);
            if ears.legacy_heard().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            ears.legacy_heard().map(|(_, from)| from),
            Some(legacy.local_addr().unwrap())
        );
    }
}
