//! Issue 11, private networks, discovery side: members list each other under their peer IDs;
//! outsiders (our programs with another key or none, and raw scripts) neither get listed, nor
//! list, nor erase or replace an entry, nor get an answer to a query; a member using another
//! member's username is listed apart; legacy peers are refused unless `--allow-legacy`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shared::protocol::Kind;
use shared::trust::is_sealed;
use testkit::announce::{ours_with, UdpPeer};
use testkit::loopback::Peer;
use testkit::prelude::*;
use testkit::wait::holds_for;

/// How long a refusal is watched for: several announce intervals of every announcer.
const QUIET: Duration = Duration::from_secs(3);

/// A peer of the network of `phrase` (none: open) sharing one file named after it, with all
/// three programs running; the listener logs with `-v` when `verbose`.
fn member(net: &TestNet, name: &str, phrase: Option<&str>, user: &str) -> Peer {
    let peer = net.peer(name);
    if let Some(phrase) = phrase {
        peer.join_network(phrase);
    }
    peer.write_share(
        &format!("{name}-notes.txt"),
        20_000,
        u64::from(peer.ip.octets()[3]),
    );
    peer.start_chunk_server(&[], &[]);
    peer.start_announcer(user, ANNOUNCE_INTERVAL_SECS);
    peer.start_listener(&[]);
    peer
}

/// The entries of `viewer`'s tags.txt held at `holder`'s address.
fn entries_of(viewer: &Peer, holder: &Peer) -> Vec<shared::tags::TagEntry> {
    viewer
        .tags()
        .map(|t| {
            t.entries
                .into_iter()
                .filter(|e| e.addr == holder.chunk_addr())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `viewer` lists `holder`'s file under `holder`'s peer ID, not as an impostor.
fn wait_listed(net: &TestNet, viewer: &Peer, holder: &Peer) {
    let id = holder.peer_id();
    net.wait_until(
        WAIT,
        &format!("{} lists {} as {id}", viewer.name, holder.name),
        || {
            let entries = entries_of(viewer, holder);
            entries
                .iter()
                .any(|e| e.id == Some(id) && !e.impostor)
                .then_some(())
                .ok_or_else(|| format!("{entries:?}"))
        },
    );
}

/// Waits until `peer`'s listener has logged a line containing every one of `parts`.
fn wait_listener_logs(net: &TestNet, peer: &Peer, parts: &[&str]) {
    net.wait_until(
        WAIT,
        &format!("{}'s listener logs {parts:?}", peer.name),
        || {
            let log = peer.stderr_of(Program::Listener);
            log.lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
                .then_some(())
                .ok_or(log)
        },
    );
}

#[test]
fn three_keyed_peers_list_each_other_under_their_peer_ids() {
    let net = TestNet::new(Duration::from_secs(60));
    let start = Instant::now();
    let peers: Vec<Peer> = ["alice", "bob", "carol"]
        .iter()
        .map(|name| member(&net, name, Some(TEST_PHRASE), name))
        .collect();
    for viewer in &peers {
        for holder in peers.iter().filter(|p| p.name != viewer.name) {
            wait_listed(&net, viewer, holder);
        }
    }
    println!(
        "three keyed peers listed each other {:?} after the first program started",
        start.elapsed()
    );
    // Every line of every tags.txt carries a peer ID: nothing unsigned got in.
    for viewer in &peers {
        let tags = viewer.tags().unwrap();
        assert!(tags.entries.iter().all(|e| e.id.is_some()), "{tags}");
        let text = std::fs::read_to_string(viewer.dir.join("tags.txt")).unwrap();
        assert!(text.contains("PEER_ID"), "{text}");
    }
    // The key and the identity are private files.
    use std::os::unix::fs::PermissionsExt;
    for file in ["network.key", "identity.key"] {
        let mode = std::fs::metadata(peers[0].dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // The pins are kept for the next run.
    let known = std::fs::read_to_string(peers[0].dir.join("known-peers.txt")).unwrap();
    assert!(known.contains(&peers[1].peer_id().to_string()), "{known}");
}

#[test]
fn outsiders_with_another_key_or_none_are_not_listed_and_list_nothing_and_are_told_why() {
    let net = TestNet::new(Duration::from_secs(60));
    let alice = member(&net, "alice", Some(TEST_PHRASE), "alice");
    let bob = member(&net, "bob", Some(TEST_PHRASE), "bob");
    let mallory = member(&net, "mallory", Some(OTHER_PHRASE), "mallory");
    let olive = member(&net, "olive", None, "olive");
    wait_listed(&net, &bob, &alice);
    wait_listed(&net, &alice, &bob);
    // The key mismatch is said plainly, on both sides; the open peer is told it lacks a key.
    wait_listener_logs(
        &net,
        &alice,
        &[
            &format!("peer at {}:", mallory.ip),
            "uses a different network key",
        ],
    );
    wait_listener_logs(
        &net,
        &mallory,
        &[
            &format!("peer at {}:", alice.ip),
            "uses a different network key",
        ],
    );
    wait_listener_logs(
        &net,
        &olive,
        &[
            &format!("peer at {}:", alice.ip),
            "is on a private network; this peer has no network key",
        ],
    );
    wait_listener_logs(
        &net,
        &alice,
        &[&format!("from {}:", olive.ip), "private network"],
    );
    holds_for(Instant::now() + QUIET, "no entry crosses networks", || {
        for (viewer, outsiders) in [(&alice, [&mallory, &olive]), (&bob, [&mallory, &olive])] {
            for outsider in outsiders {
                let listed = entries_of(viewer, outsider);
                if !listed.is_empty() {
                    return Err(format!(
                        "{} lists {}: {listed:?}",
                        viewer.name, outsider.name
                    ));
                }
            }
        }
        for outsider in [&mallory, &olive] {
            for member in [&alice, &bob] {
                let listed = entries_of(outsider, member);
                if !listed.is_empty() {
                    return Err(format!(
                        "{} lists {}: {listed:?}",
                        outsider.name, member.name
                    ));
                }
            }
        }
        Ok(())
    });
}

/// Appends to `into` every datagram waiting on `socket` that came from `ip`, until it has been
/// quiet for 300 ms.
fn capture_from(socket: &UdpSocket, ip: IpAddr, into: &mut Vec<Vec<u8>>) {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        if from.ip() == ip {
            into.push(buf[..n].to_vec());
        }
    }
}

#[test]
fn raw_outsiders_cannot_add_erase_replay_or_query() {
    let net = TestNet::new(Duration::from_secs(90));
    // Capture everything sent to the announce port, as a host on the LAN can.
    let capture =
        shared::net::bind_udp_shared(SocketAddr::from(([0, 0, 0, 0], net.udp_port()))).unwrap();
    let alice = member(&net, "alice", Some(TEST_PHRASE), "alice");
    let bob = member(&net, "bob", Some(TEST_PHRASE), "bob");
    wait_listed(&net, &bob, &alice);
    let alice_ip = std::net::IpAddr::V4(alice.ip);
    let mut captured = Vec::new();
    capture_from(&capture, alice_ip, &mut captured);
    assert!(!captured.is_empty() && captured.iter().all(|d| is_sealed(d)));
    let before = entries_of(&bob, &alice);

    // From alice's own address: a plain announcement of another file, a plain goodbye and
    // withdrawal in her name (whatever the instance), a legacy announcement.
    let forger = UdpPeer::new(alice.ip.octets()[3]);
    let port = net.udp_port();
    for kind in [Kind::Announce, Kind::Goodbye, Kind::Withdraw] {
        let files: &[&str] = if kind == Kind::Announce {
            &["forged.txt_1"]
        } else {
            &[]
        };
        forger.announce(
            port,
            &ours_with("alice", alice.chunk_port(), 1, files, Some("any"), kind),
        );
    }
    forger.send_raw(port, br#"{"username":"eve","files":["eve_1","eve_2"]}"#);
    // A plain query, from a socket of its own: a member would answer at once.
    let querier = testkit::servers::query_socket();
    querier
        .send_to(
            &ours_with("q", 0, 1, &[], Some("q"), Kind::Query).encode(),
            net.broadcast(),
        )
        .unwrap();
    querier
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    holds_for(
        Instant::now() + QUIET,
        "the forgeries change nothing",
        || {
            let mut buf = [0u8; 2048];
            if let Ok((n, from)) = querier.recv_from(&mut buf) {
                return Err(format!("{from} answered a plain query with {n} bytes"));
            }
            let now = entries_of(&bob, &alice);
            if now
                .iter()
                .map(|e| (&e.content, e.id))
                .ne(before.iter().map(|e| (&e.content, e.id)))
            {
                return Err(format!("alice's entries changed: {now:?}"));
            }
            let tags = bob.tags().map_err(|e| e.to_string())?;
            if tags
                .entries
                .iter()
                .any(|e| e.user == "eve" || e.content == "forged.txt")
            {
                return Err(format!("a forgery got in:\n{tags}"));
            }
            Ok(())
        },
    );

    // Alice leaves: her goodbye is heard. Replaying everything she sent brings nothing back.
    signal(alice.pid_of(Program::Announcer).unwrap(), "TERM");
    net.wait_until(WAIT, "bob forgets alice after her goodbye", || {
        entries_of(&bob, &alice)
            .is_empty()
            .then_some(())
            .ok_or("still listed".to_owned())
    });
    capture_from(&capture, alice_ip, &mut captured);
    let goodbye = captured.last().unwrap().clone();
    for datagram in &captured {
        forger.send_raw(port, datagram);
    }
    holds_for(Instant::now() + QUIET, "replays bring alice back", || {
        let listed = entries_of(&bob, &alice);
        listed.is_empty().then_some(()).ok_or(format!("{listed:?}"))
    });
    wait_listener_logs(&net, &bob, &[&format!("from {}:", alice.ip), "replay"]);

    // Alice comes back (a new instance); her old goodbye, replayed, does not erase her.
    alice.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    wait_listed(&net, &bob, &alice);
    forger.send_raw(port, &goodbye);
    holds_for(
        Instant::now() + QUIET,
        "the old goodbye erases alice",
        || {
            (!entries_of(&bob, &alice).is_empty())
                .then_some(())
                .ok_or("alice was erased".to_owned())
        },
    );
}

#[test]
fn a_member_using_another_members_username_is_listed_apart_with_a_warning() {
    let net = TestNet::new(Duration::from_secs(60));
    let alice = member(&net, "alice", Some(TEST_PHRASE), "alice");
    let bob = member(&net, "bob", Some(TEST_PHRASE), "bob");
    wait_listed(&net, &bob, &alice);
    let mallory = member(&net, "mallory", Some(TEST_PHRASE), "alice");
    let mallory_id = mallory.peer_id();
    net.wait_until(WAIT, "bob lists mallory apart, as an impostor", || {
        let entries = entries_of(&bob, &mallory);
        entries
            .iter()
            .any(|e| e.user == "alice" && e.id == Some(mallory_id) && e.impostor)
            .then_some(())
            .ok_or(format!("{entries:?}"))
    });
    // Alice is still herself, not merged with mallory.
    let alices = entries_of(&bob, &alice);
    assert!(
        alices
            .iter()
            .all(|e| e.id == Some(alice.peer_id()) && !e.impostor),
        "{alices:?}"
    );
    wait_listener_logs(
        &net,
        &bob,
        &[&mallory_id.to_string(), "\"alice\"", "impostor"],
    );
    let text = std::fs::read_to_string(bob.dir.join("tags.txt")).unwrap();
    assert!(text.contains(&format!("!{mallory_id}")), "{text}");
}

#[test]
fn legacy_peers_are_refused_on_a_private_network_unless_allowed() {
    let net = TestNet::new(Duration::from_secs(60));
    let strict = net.peer("strict");
    strict.join_network(TEST_PHRASE);
    strict.start_listener(&[]);
    let lenient = net.peer("lenient");
    lenient.join_network(TEST_PHRASE);
    lenient.start_listener(&["--allow-legacy"]);
    let ece = net.next_ip();
    let chunks = vec!["ece_1".to_owned(), "ece_2".to_owned()];
    let entry = net.announce_legacy_until_listed(&lenient, ece, "ece", &chunks, |_| true);
    assert_eq!(entry.proto, shared::tags::Proto::Legacy);
    assert_eq!(entry.id, None);
    // The strict listener heard the same announcements and listed nothing.
    let tags = strict.tags().unwrap();
    assert!(tags.entries.is_empty(), "{tags}");
    wait_listener_logs(
        &net,
        &strict,
        &[&format!("from {ece}:"), "start with --allow-legacy"],
    );
}
