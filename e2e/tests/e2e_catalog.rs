//! Issue 12, compact announcements: a peer sharing many files announces a summary of its
//! catalog, and listeners of ours fetch the catalog from its chunk server (over the encrypted
//! channel on a private network), follow it as files come and go, and download from it;
//! legacy listeners still get the chunk names when the policy says so; a listener believes no
//! catalog that does not match what was announced.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use testkit::announce::UdpPeer;
use testkit::fake_catalog::{catalog_of, CatalogBehaviour, CatalogServer};
use testkit::legacy::{legacy_announce, legacy_listen_once};
use testkit::loopback::Peer;
use testkit::prelude::*;

/// Files shared by the compact peer: many more than an inline announcement holds.
const FILES: usize = 200;

/// `served_files/file-NNN.txt` of a few bytes each, `n` of them.
fn share_many(peer: &Peer, n: usize) {
    for i in 0..n {
        std::fs::write(
            peer.share_dir().join(format!("file-{i:03}.txt")),
            format!("file {i} of {}\n", peer.name),
        )
        .expect("write a shared file");
    }
}

/// The complete contents `viewer` lists for `user`.
fn listed(viewer: &Peer, user: &str) -> BTreeSet<String> {
    viewer
        .tags()
        .map(|t| {
            t.entries
                .into_iter()
                .filter(|e| e.user == user && e.chunks.is_complete() && !e.impostor)
                .map(|e| e.content)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `viewer` lists exactly `count` complete contents of `user`.
fn wait_listed(net: &TestNet, viewer: &Peer, user: &str, count: usize) -> BTreeSet<String> {
    net.wait_until(
        WAIT,
        &format!("{} lists {count} files of {user}", viewer.name),
        || {
            let got = listed(viewer, user);
            if got.len() == count {
                Ok(got)
            } else {
                Err(format!("{} listed", got.len()))
            }
        },
    )
}

#[test]
fn a_listener_learns_a_large_catalog_by_fetching_it_and_follows_it_as_files_come_and_go() {
    let net = TestNet::new(Duration::from_secs(150));
    let alice = net.peer("alice");
    share_many(&alice, FILES);
    alice.start_chunk_server(&[], &[]);
    alice.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    let carol = net.peer("carol");
    carol.start_listener(&[]);
    let first = wait_listed(&net, &carol, "alice", FILES);
    assert!(first.contains("file-000.txt") && first.contains("file-199.txt"));

    // What alice sends: one compact datagram per announcement (no legacy peer is heard),
    // naming her catalog; no chunk names.
    let heard = legacy_listen_once(net.udp_port(), Duration::from_millis(2500));
    let from_alice: Vec<&serde_json::Value> = heard
        .iter()
        .filter(|h| h.from.ip() == alice.ip)
        .map(|h| &h.json)
        .collect();
    assert!(!from_alice.is_empty(), "alice announced nothing in 2.5 s");
    for datagram in &from_alice {
        assert_eq!(datagram["files"], serde_json::json!([]), "{datagram}");
        assert_eq!(datagram["p2p"]["catalog"]["count"], FILES, "{datagram}");
    }

    // A file added is listed; one removed is not any more.
    std::fs::write(alice.share_dir().join("added.txt"), "a file added later\n").unwrap();
    let after_add = wait_listed(&net, &carol, "alice", FILES + 1);
    assert!(after_add.contains("added.txt"));
    std::fs::remove_file(alice.share_dir().join("file-007.txt")).unwrap();
    let after_remove = wait_listed(&net, &carol, "alice", FILES);
    assert!(!after_remove.contains("file-007.txt"));
    assert!(after_remove.contains("added.txt"));

    // The entries carry what a verified download needs.
    let out = carol.downloader(&["get", "file-123.txt"]);
    assert_success(
        &out,
        "downloader get file-123.txt (a content of alice's catalog)",
    );
    assert_same_file(
        &alice.share_dir().join("file-123.txt"),
        &printed_path(&out, &carol.dir),
    );
    let events = carol.client_events();
    let done = matching(
        &events,
        "download",
        &[("content", "file-123.txt"), ("outcome", "ok")],
    );
    assert!(!done.is_empty(), "{}", show_events(&events));
    assert!(
        done.iter().all(|e| e.get("verified") == Some("yes")),
        "{}",
        show_events(&events)
    );
}

/// The chunk names alice sent a legacy listener on `port` within `window`, and whether every
/// one of her datagrams then carried the catalog's summary.
fn legacy_names_from(alice: &Peer, port: u16, window: Duration) -> BTreeSet<String> {
    legacy_listen_once(port, window)
        .into_iter()
        .filter(|h| h.from.ip() == alice.ip)
        .flat_map(|h| {
            assert!(
                h.json["p2p"]["catalog"].is_object(),
                "a datagram of a compact announcement without the summary: {}",
                h.json
            );
            h.json["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
        })
        .collect()
}

#[test]
fn legacy_listeners_get_the_chunk_names_when_the_policy_says_so_and_ours_list_no_legacy_entry() {
    let net = TestNet::new(Duration::from_secs(150));
    let every_name: BTreeSet<String> = (0..FILES)
        .flat_map(|i| ChunkName::all_of(&format!("file-{i:03}.txt")).unwrap())
        .map(|c| c.to_string())
        .collect();

    // --legacy-list on: every chunk name, paced over half the interval, in datagrams a legacy
    // listener reads whole.
    let alice = net.peer("alice");
    share_many(&alice, FILES);
    alice.start_chunk_server(&[], &[]);
    alice.start_announcer_with("alice", 2, &["--legacy-list", "on"]);
    let carol = net.peer("carol");
    carol.start_listener(&[]);
    wait_listed(&net, &carol, "alice", FILES);
    let names = legacy_names_from(&alice, net.udp_port(), Duration::from_secs(5));
    assert_eq!(
        names.intersection(&every_name).count(),
        every_name.len(),
        "a legacy listener missed some of alice's chunk names"
    );
    // Ours read those datagrams as alice's compact announcement: no legacy entry of hers.
    let tags = carol.tags().unwrap();
    assert!(
        tags.entries
            .iter()
            .all(|e| e.user != "alice" || e.proto != shared::tags::Proto::Legacy),
        "{tags}"
    );

    // The default, auto: nothing for legacy listeners until a legacy peer announces.
    let bob = net.peer("bob");
    share_many(&bob, FILES);
    bob.start_chunk_server(&[], &[]);
    bob.start_announcer("bob", 2);
    wait_listed(&net, &carol, "bob", FILES);
    assert!(
        legacy_names_from(&bob, net.udp_port(), Duration::from_secs(3)).is_empty(),
        "bob sent chunk names with no legacy peer about"
    );
    let ece = net.next_ip();
    let names = net.wait_until(WAIT, "bob sends his chunk names to legacy peers", || {
        legacy_announce(ece, net.broadcast(), "ece", &["ece_1".to_owned()]);
        let names = legacy_names_from(&bob, net.udp_port(), Duration::from_secs(3));
        if names.len() == every_name.len() {
            Ok(names)
        } else {
            Err(format!("{} names", names.len()))
        }
    });
    assert_eq!(names, every_name);
}

#[test]
fn members_of_a_private_network_fetch_the_catalog_over_the_encrypted_channel() {
    let net = TestNet::new(Duration::from_secs(150));
    let alice = net.peer("alice");
    let carol = net.peer("carol");
    let dave = net.peer("dave");
    for peer in [&alice, &carol, &dave] {
        peer.join_network(TEST_PHRASE);
    }
    // Alice lets carol download, not dave: listing is not downloading, both list her files.
    std::fs::write(
        alice.dir.join(shared::trust::ALLOW_FILE),
        format!("{}\n", carol.peer_id()),
    )
    .unwrap();
    share_many(&alice, FILES);
    alice.start_chunk_server(&[], &[]);
    alice.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    carol.start_listener(&[]);
    dave.start_listener(&[]);
    let id = alice.peer_id();
    for viewer in [&carol, &dave] {
        wait_listed(&net, viewer, "alice", FILES);
        let tags = viewer.tags().unwrap();
        assert!(
            tags.entries
                .iter()
                .filter(|e| e.user == "alice")
                .all(|e| e.id == Some(id)),
            "{tags}"
        );
    }
    // An outsider's listener (no key) lists nothing of hers, and reads nothing.
    let eve = net.peer("eve");
    eve.start_listener(&[]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(listed(&eve, "alice").is_empty());
    // And a plaintext catalog request is refused, as any plaintext request there.
    let (response, body) = testkit::client::p2p_request(
        alice.chunk_addr(),
        &shared::protocol::Request::Catalog {
            sha256: shared::digest::Digest::of(b"any"),
        },
    );
    assert!(
        matches!(
            response,
            shared::protocol::Response::Error {
                code: shared::protocol::ErrorCode::PrivateNetwork,
                ..
            }
        ),
        "{response:?}"
    );
    assert!(body.is_empty());
}

#[test]
fn the_listener_believes_no_catalog_that_does_not_match_its_announcement() {
    let net = TestNet::new(Duration::from_secs(120));
    let carol = net.peer("carol");
    carol.start_listener(&[]);
    let honest_ip = net.next_ip();
    let honest = CatalogServer::start(
        honest_ip,
        &catalog_of("honest", 120),
        CatalogBehaviour::Honest,
    );
    let lying: Vec<(UdpPeer, CatalogServer, &str)> = [
        ("wrong", CatalogBehaviour::WrongBytes),
        ("oversized", CatalogBehaviour::Oversized),
    ]
    .into_iter()
    .map(|(user, behaviour)| {
        let ip = net.next_ip();
        let server = CatalogServer::start(ip, &catalog_of(user, 40), behaviour);
        (UdpPeer::new(ip.octets()[3]), server, user)
    })
    .collect();
    let honest_peer = UdpPeer::new(honest_ip.octets()[3]);
    let mut last = Instant::now() - Duration::from_secs(1);
    net.wait_until(
        WAIT,
        "carol lists the honest catalog and asked the others",
        || {
            if last.elapsed() > Duration::from_millis(300) {
                honest_peer.announce(net.udp_port(), &honest.announcement("honest", "h1"));
                for (peer, server, user) in &lying {
                    peer.announce(net.udp_port(), &server.announcement(user, "l1"));
                }
                last = Instant::now();
            }
            let asked = lying.iter().all(|(_, s, _)| s.requests() > 0);
            let n = listed(&carol, "honest").len();
            if n == 120 && asked {
                Ok(())
            } else {
                Err(format!("{n} listed, lying servers asked: {asked}"))
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    for (_, _, user) in &lying {
        assert!(
            listed(&carol, user).is_empty(),
            "{user}'s catalog was believed"
        );
    }
    carol
        .check_running(Program::Listener)
        .expect("the listener is still running");
    let entry = carol
        .tags()
        .unwrap()
        .entries
        .into_iter()
        .find(|e| e.user == "honest")
        .unwrap();
    assert_eq!(entry.addr, honest.addr());
}
