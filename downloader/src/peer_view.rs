//! `downloader peers`: every peer heard (the live entries of `tags.txt`, one row per user and
//! chunk-server address), with its protocol, how many files it offers, when it was last heard,
//! and whether its chunk server answers now.
//!
//! "Answers" is asked of all peers at once (a thread each), each within [`PROBE_TIMEOUT`] for
//! the connection and again for the answer, so twenty silent peers cost one timeout, not
//! twenty. Our peers are asked the manifest of a content they announced, the cheapest request
//! there is, which shows that a chunk server of ours really serves there (not merely that a
//! port is open). A legacy peer gets only a TCP connection, closed at once: a legacy server
//! takes any request as a file name and would send a chunk.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::chunk::ChunkSet;
use shared::connection::Connection;
use shared::digest::Digest;
use shared::tags::{Proto, TagsIndex};
use shared::text::terminal_safe;
use shared::trust::PeerId;

use crate::catalog::Holder;
use crate::fetch::{fetch_manifest, CancelHandle, FetchError, Network};
use crate::format;

/// How long a peer's chunk server has to accept a connection to count as answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// One peer heard, as `peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Its username.
    pub user: String,
    /// On a private network, its peer ID.
    pub id: Option<PeerId>,
    /// It announced under a username pinned to another peer ID.
    pub impostor: bool,
    /// Its chunk server's address.
    pub addr: SocketAddr,
    /// What its chunk server speaks.
    pub proto: Proto,
    /// How many different contents (name and digest) it offers.
    pub files: usize,
    /// When it was last heard (the latest `last_seen` of its entries).
    pub last_seen: DateTime<Utc>,
    /// Its announce interval, in seconds (of its latest entry).
    pub interval: u64,
    /// Whether its chunk server answered; `None` before [`probe`].
    pub answers: Option<bool>,
    /// A content it announced with its digest (our peers only): what [`probe`] asks the
    /// manifest of.
    pub sample: Option<(String, Digest)>,
}

/// The peers of `index` still live at `now`, one per (user, address, protocol), sorted by
/// username (ignoring case), then address: the same peers in the same order on every run.
pub fn peers_of(index: &TagsIndex, now: DateTime<Utc>) -> Vec<PeerView> {
    // Per peer: its view, and the contents (name, digest) it offers something of.
    type Held<'a> = BTreeSet<(&'a str, Option<Digest>)>;
    type Key<'a> = (&'a str, SocketAddr, Proto, Option<PeerId>);
    let mut groups: BTreeMap<Key, (PeerView, Held)> = BTreeMap::new();
    for entry in index.live(now) {
        let key = (entry.user.as_str(), entry.addr, entry.proto, entry.id);
        let (peer, held) = groups.entry(key).or_insert_with(|| {
            let peer = PeerView {
                user: entry.user.clone(),
                id: entry.id,
                impostor: entry.impostor,
                addr: entry.addr,
                proto: entry.proto,
                files: 0,
                last_seen: entry.last_seen,
                interval: entry.interval,
                answers: None,
                sample: None,
            };
            (peer, BTreeSet::new())
        });
        if entry.last_seen >= peer.last_seen {
            peer.last_seen = entry.last_seen;
            peer.interval = entry.interval;
        }
        if !entry.chunks.is_empty() {
            held.insert((entry.content.as_str(), entry.sha256));
            peer.files = held.len();
            if let (None, Some(digest)) = (&peer.sample, entry.sha256) {
                peer.sample = Some((entry.content.clone(), digest));
            }
        }
    }
    let mut peers: Vec<PeerView> = groups.into_values().map(|(peer, _)| peer).collect();
    // Case ignored first, so `Zed` comes after `alice`; the exact name and address settle ties.
    peers.sort_by(|a, b| {
        (a.user.to_lowercase(), &a.user, a.addr).cmp(&(b.user.to_lowercase(), &b.user, b.addr))
    });
    peers
}

/// Sets `answers` of every peer, all at once (from the `--bind` address when it suits the
/// peer, as downloads do): our peers must answer a request for the manifest of their `sample`
/// (the manifest, or a refusal in our protocol), a legacy one (or one with no sample) only
/// accept a connection, each within `timeout`.
pub fn probe(peers: &mut [PeerView], net: &Network, timeout: Duration) {
    let net = Network {
        connect: timeout,
        first_byte: timeout,
        ..net.clone()
    };
    let net = &net;
    std::thread::scope(|scope| {
        let probes: Vec<_> = peers
            .iter()
            .map(|peer| {
                let peer = peer.clone();
                scope.spawn(move || answers(&peer, net, timeout))
            })
            .collect();
        for (peer, probe) in peers.iter_mut().zip(probes) {
            peer.answers = Some(probe.join().unwrap_or(false));
        }
    });
}

/// Whether `peer`'s chunk server answers (see [`probe`]).
fn answers(peer: &PeerView, net: &Network, timeout: Duration) -> bool {
    match (&peer.sample, peer.proto) {
        (Some((name, digest)), Proto::P2p(_)) => {
            let holder = Holder {
                user: peer.user.clone(),
                addr: peer.addr,
                proto: peer.proto,
                chunks: ChunkSet::EMPTY,
                root: None,
                id: None,
                impostor: false,
            };
            match fetch_manifest(&holder, name, *digest, net, &CancelHandle::default()) {
                // A refusal in our protocol (busy, or the file just unshared) is an answer too.
                Ok(_) | Err(FetchError::Refused { .. } | FetchError::PrivateNetwork(_)) => true,
                Err(e) => {
                    log::debug!("{}: no manifest of {name:?}: {e}", holder.label());
                    false
                }
            }
        }
        _ => {
            Connection::connect_with(peer.addr, net.source_for(peer.addr), timeout, timeout).is_ok()
        }
    }
}

/// `3 s ago`, `2 min ago`, `1 h ago`: how long ago `then` was, for people.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// The table `peers` prints: one aligned row per peer (display widths, so wide names keep the
/// columns straight), or a sentence when no peer is heard.
pub fn render(peers: &[PeerView], now: DateTime<Utc>) -> String {
    if peers.is_empty() {
        return "No peer heard: tags.txt lists no live peer. Is the listener running?\n".to_owned();
    }
    let header = [
        "USER",
        "PEER ID",
        "ADDRESS",
        "PROTOCOL",
        "FILES",
        "LAST HEARD",
        "CHUNK SERVER",
    ];
    let rows: Vec<[String; 7]> = peers
        .iter()
        .map(|p| {
            [
                // Names come from the network: shown, never obeyed.
                terminal_safe(&p.user).into_owned(),
                match (p.id, p.impostor) {
                    (None, _) => "-".to_owned(),
                    (Some(id), false) => id.to_string(),
                    (Some(id), true) => format!("{id} (impostor: the name is another peer's)"),
                },
                p.addr.to_string(),
                p.proto.to_string(),
                p.files.to_string(),
                ago(p.last_seen, now),
                match p.answers {
                    Some(true) => "answers".to_owned(),
                    Some(false) => "no answer".to_owned(),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    // FILES is a number: right-aligned.
    format::table(header, &rows, &[4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use shared::tags::TagEntry;

    fn entry(user: &str, ip: u8, content: &str, legacy: bool, age: i64) -> TagEntry {
        TagEntry {
            user: user.into(),
            id: None,
            impostor: false,
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            proto: if legacy { Proto::Legacy } else { Proto::P2p(1) },
            content: content.into(),
            chunks: ChunkSet::parse("12345").unwrap(),
            size: (!legacy).then_some(10),
            sha256: (!legacy).then(|| Digest::of(content.as_bytes())),
            root: None,
            interval: 60,
            last_seen: Utc::now() - chrono::Duration::seconds(age),
        }
    }

    #[test]
    fn peers_are_grouped_counted_sorted_and_expired_ones_dropped() {
        let index = TagsIndex {
            updated: None,
            entries: vec![
                entry("bob", 3, "b.txt", false, 5),
                entry("alice", 2, "x.txt", false, 1),
                entry("alice", 2, "y.txt", false, 30),
                entry("Zed", 4, "z", true, 2),
                entry("ece", 9, "ece", true, 10),
                entry("old", 7, "gone.txt", false, 1000),
            ],
        };
        let now = Utc::now();
        let peers = peers_of(&index, now);
        let users: Vec<(&str, usize)> = peers.iter().map(|p| (p.user.as_str(), p.files)).collect();
        assert_eq!(
            users,
            [("alice", 2), ("bob", 1), ("ece", 1), ("Zed", 1)],
            "sorted by name ignoring case, expired `old` dropped"
        );
        assert_eq!(peers[0].proto, Proto::P2p(1));
        assert_eq!(peers[2].proto, Proto::Legacy);
        assert!(
            (now - peers[0].last_seen).num_seconds() <= 2,
            "the latest entry"
        );
        let text = render(&peers, now);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().next().unwrap().starts_with("USER"), "{text}");
        assert!(text.contains("legacy"), "{text}");
        assert!(text.contains("p2p/1"), "{text}");
        assert!(render(&[], now).contains("No peer heard"));
    }

    #[test]
    fn wide_names_keep_the_columns_aligned() {
        let index = TagsIndex {
            updated: None,
            entries: vec![
                entry("日本語", 2, "a", false, 1),
                entry("al", 3, "b", false, 1),
            ],
        };
        let now = Utc::now();
        let text = render(&peers_of(&index, now), now);
        let starts: Vec<usize> = text
            .lines()
            .map(|line| {
                format::width(&line[..line.find("127.0.0.").or(line.find("ADDRESS")).unwrap()])
            })
            .collect();
        assert!(starts.iter().all(|&s| s == starts[0]), "{starts:?}\n{text}");
    }

    #[test]
    fn a_listening_server_answers_and_a_closed_port_does_not() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let view = |addr| PeerView {
            user: "u".into(),
            id: None,
            impostor: false,
            addr,
            proto: Proto::P2p(1),
            files: 1,
            last_seen: Utc::now(),
            interval: 1,
            answers: None,
            sample: None,
        };
        let open_addr = open.local_addr().unwrap();
        // An open port that never sends a manifest is no chunk server of ours.
        let mut silent = view(open_addr);
        silent.sample = Some(("a.txt".into(), Digest::of(b"a")));
        let mut peers = [view(open_addr), view(closed_addr), silent];
        probe(&mut peers, &Network::default(), Duration::from_millis(300));
        assert_eq!(peers[0].answers, Some(true));
        assert_eq!(peers[1].answers, Some(false));
        assert_eq!(peers[2].answers, Some(false));
    }

    #[test]
    fn ages_read_naturally() {
        let now = Utc::now();
        let ago_secs = |s| ago(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago_secs(3), "3 s ago");
        assert_eq!(ago_secs(600), "10 min ago");
        assert_eq!(ago_secs(7200), "2 h ago");
        assert_eq!(ago_secs(-5), "0 s ago");
    }
}
