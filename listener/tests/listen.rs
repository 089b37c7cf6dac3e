//! In-process tests: `listener::run` in a thread, peers broadcasting on loopback.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::digest::Digest;
use shared::protocol::{Announcement, AnnouncementExt, ContentMeta, Kind};
use shared::queries::query_file_name;
use shared::tags::{Proto, TagEntry, TagsIndex};
use testkit::announce::{ours_with, time_to_listing, Flood, UdpPeer};
use testkit::files::temp_dir;
use testkit::servers::TestListener;
use testkit::wait::{poll_until, PATIENCE};

fn find<'a>(tags: &'a TagsIndex, user: &str, content: &str) -> Option<&'a TagEntry> {
    tags.entries
        .iter()
        .find(|e| e.user == user && e.content == content)
}

#[test]
fn tags_file_exists_with_its_header_as_soon_as_the_listener_runs() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    assert!(poll_until(PATIENCE, || listener.tags_path().exists()));
    let text = std::fs::read_to_string(listener.tags_path()).unwrap();
    assert!(text.starts_with("# tags.txt"), "{text}");
    assert!(text.contains("# USER"), "{text}");
    let tags = listener.tags().unwrap();
    assert!(tags.entries.is_empty());
    assert!(tags.updated.is_some());
}

#[test]
fn legacy_and_extended_peers_appear_with_their_source_addresses() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let ece = UdpPeer::new(2);
    let alice = UdpPeer::new(3);
    let meta = ContentMeta {
        size: 1_048_579,
        sha256: Digest::of(b"photo"),
        root: None,
    };
    ece.announce(
        listener.port,
        &Announcement::legacy("ece", &["ece_1", "ece_2", "ece_3", "ali_2", "ece.txt"]),
    );
    alice.announce(
        listener.port,
        &Announcement::ours(
            "alice",
            &["photo.png_1", "photo.png_2"],
            AnnouncementExt::new(6001, 60).with_content("photo.png", meta),
        ),
    );
    let tags = listener.wait_for_tags("ece and alice", |t| {
        find(t, "ece", "ece").is_some() && find(t, "alice", "photo.png").is_some()
    });
    let e = find(&tags, "ece", "ece").unwrap();
    assert_eq!(
        e.addr.to_string(),
        format!("127.0.0.2:{}", listener.legacy_chunk_port)
    );
    assert_eq!(e.proto, Proto::Legacy);
    assert_eq!(e.chunks.to_string(), "123--");
    assert_eq!(e.sha256, None);
    assert_eq!(
        find(&tags, "ece", "ali").unwrap().chunks.to_string(),
        "-2---"
    );
    assert!(
        find(&tags, "ece", "ece.txt").is_none(),
        "odd entries are ignored"
    );
    let a = find(&tags, "alice", "photo.png").unwrap();
    assert_eq!(a.addr.to_string(), "127.0.0.3:6001");
    assert_eq!(a.proto, Proto::P2p(shared::PROTOCOL_VERSION));
    assert_eq!(a.chunks.to_string(), "12---");
    assert_eq!(a.size, Some(meta.size));
    assert_eq!(a.sha256, Some(meta.sha256));
    assert_eq!(a.interval, 60);
    let age = Utc::now() - a.last_seen;
    assert!(
        age < chrono::Duration::seconds(30),
        "last seen {}",
        a.last_seen
    );
}

#[test]
fn chunks_in_two_datagrams_and_same_named_contents_are_merged_and_kept_apart() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let alice = UdpPeer::new(2);
    let bob = UdpPeer::new(3);
    let a = ContentMeta {
        size: 10,
        sha256: Digest::of(b"a"),
        root: None,
    };
    let b = ContentMeta {
        size: 20,
        sha256: Digest::of(b"b"),
        root: None,
    };
    let doc = |meta| AnnouncementExt::new(5001, 60).with_content("doc", meta);
    alice.announce(
        listener.port,
        &Announcement::ours("alice", &["doc_1", "doc_2"], doc(a)),
    );
    alice.announce(
        listener.port,
        &Announcement::ours("alice", &["doc_3", "doc_4", "doc_5"], doc(a)),
    );
    bob.announce(
        listener.port,
        &Announcement::ours("bob", &["doc_5"], doc(b)),
    );
    let tags = listener.wait_for_tags("alice's complete doc and bob's doc", |t| {
        find(t, "alice", "doc").is_some_and(|e| e.chunks.is_complete())
            && find(t, "bob", "doc").is_some()
    });
    assert_eq!(tags.entries.len(), 2, "{tags}");
    assert_eq!(
        (tags.live(Utc::now()).map(|e| (&e.content, e.sha256)))
            .collect::<std::collections::HashSet<_>>()
            .len(),
        2,
        "two different docs on offer"
    );
    assert_eq!(find(&tags, "bob", "doc").unwrap().sha256, Some(b.sha256));
}

#[test]
fn malformed_datagrams_do_not_stop_the_listener() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let mallory = UdpPeer::new(4);
    let junk_60k = vec![b'{'; 60_000];
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    for junk in [
        &b""[..],
        b"not json at all",
        b"{\"username\": 3, \"files\": []}",
        b"{\"username\": \"x\", \"files\": \"x_1\"}",
        b"{\"username\": \"x\", \"files\": [1, 2, null, {}]}",
        b"{\"username\": \"x\", \"files\": [\"y_1\"], \"p2p\": {\"port\": \"many\"}}",
        b"[\"username\", \"files\"]",
        b"{\"username\": \"x\", \"files\": [\"../../etc/passwd_1\", \"z_9\"]}",
        &junk_60k,
        &binary,
    ] {
        mallory.send_raw(listener.port, junk);
    }
    let good = UdpPeer::new(5);
    good.announce(listener.port, &Announcement::legacy("good", &["fine_1"]));
    let tags = listener.wait_for_tags("the valid announcement", |t| {
        find(t, "good", "fine").is_some()
    });
    // The only other thing that can appear: the degraded-to-legacy datagram with a bad `p2p`.
    for e in &tags.entries {
        assert!(
            (e.user == "good" && e.content == "fine") || (e.user == "x" && e.content == "y"),
            "{tags}"
        );
    }
    assert_eq!(find(&tags, "x", "y").unwrap().proto, Proto::Legacy);
    listener.stop().unwrap();
}

#[test]
fn two_listeners_on_one_port_both_hear_an_announcement() {
    let first_dir = temp_dir();
    let second_dir = temp_dir();
    let first = TestListener::start(first_dir.path(), 0);
    let second = TestListener::start(second_dir.path(), first.port);
    assert_eq!(first.port, second.port);
    // Both are up once both have written their empty tags.txt.
    assert!(poll_until(PATIENCE, || first.tags().is_some()
        && second.tags().is_some()));
    UdpPeer::new(2).announce(first.port, &Announcement::legacy("ece", &["shared_1"]));
    for listener in [&first, &second] {
        listener.wait_for_tags("ece", |t| find(t, "ece", "shared").is_some());
    }
}

#[test]
fn entries_expire_from_the_file_after_three_intervals() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let peer = UdpPeer::new(2);
    // Interval 1 s: gone 3 s after the last announcement.
    let sent = Instant::now();
    peer.announce(
        listener.port,
        &Announcement::ours("brief", &["blink_1"], AnnouncementExt::new(5001, 1)),
    );
    listener.wait_for_tags("the entry", |t| find(t, "brief", "blink").is_some());
    listener.wait_for_tags("the entry gone", |t| t.entries.is_empty());
    let lived = sent.elapsed();
    assert!(
        lived >= Duration::from_millis(2500),
        "expired after {lived:?}"
    );
    // Three intervals of one second, plus the loop's wake-up and a write.
    assert!(
        lived < Duration::from_millis(4500),
        "expired after {lived:?}"
    );
}

#[test]
fn restarted_listener_keeps_fresh_entries_and_drops_stale_ones() {
    let dir = temp_dir();
    let now = Utc::now();
    let entry = |user: &str, last_seen| TagEntry {
        user: user.into(),
        id: None,
        impostor: false,
        addr: "127.0.0.9:5001".parse().unwrap(),
        proto: Proto::Legacy,
        content: format!("{user}-file"),
        chunks: shared::chunk::ChunkSet::ALL,
        size: None,
        sha256: None,
        root: None,
        interval: 60,
        last_seen,
    };
    let before = TagsIndex {
        updated: Some(now),
        entries: vec![
            entry("fresh", now - chrono::Duration::seconds(10)),
            entry("stale", now - chrono::Duration::seconds(600)),
        ],
    };
    before.save(&dir.path().join(shared::TAGS_FILE)).unwrap();
    let listener = TestListener::start(dir.path(), 0);
    let tags = listener.wait_for_tags("a rewritten file", |t| {
        t.updated > Some(now) || t.entries.len() == 1
    });
    assert_eq!(tags.entries.len(), 1, "{tags}");
    assert_eq!(tags.entries[0].user, "fresh");
    assert_eq!(tags.entries[0].chunks, shared::chunk::ChunkSet::ALL);
}

#[test]
fn unreadable_tags_file_is_replaced_by_a_fresh_one() {
    let dir = temp_dir();
    let path = dir.path().join(shared::TAGS_FILE);
    std::fs::write(&path, "this is not\na tags file at all\n").unwrap();
    let listener = TestListener::start(dir.path(), 0);
    listener.wait_for_tags("a valid file", |t| t.entries.is_empty());
    UdpPeer::new(2).announce(listener.port, &Announcement::legacy("ece", &["x_1"]));
    listener.wait_for_tags("ece", |t| t.entries.len() == 1);
}

#[test]
fn run_returns_promptly_when_shut_down() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    assert!(poll_until(PATIENCE, || listener.tags_path().exists()));
    let start = Instant::now();
    listener.stop().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn unwritable_peer_folder_is_an_error() {
    let dir = temp_dir();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let socket = shared::net::bind_udp_shared("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = listener::Config {
        dir: file.join("peer"),
        query_targets: Vec::new(),
        ..Default::default()
    };
    let result = listener::run(
        socket,
        testkit::servers::query_socket(),
        config,
        shared::shutdown::Shutdown::new(),
    );
    assert!(
        matches!(result, Err(listener::Error::CreateDir { .. })),
        "{result:?}"
    );
}

/// A plain socket on `127.0.0.1:<free port>` standing in for a peer's listener or announcer.
fn test_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    socket
}

/// Every datagram `socket` receives within `window`, decoded, with when it arrived.
fn collect(socket: &UdpSocket, window: Duration) -> Vec<(Duration, SocketAddr, Announcement)> {
    let start = Instant::now();
    let mut buf = vec![0u8; shared::MAX_RECEIVE_DATAGRAM];
    let mut got = Vec::new();
    while start.elapsed() < window {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert!(n <= shared::MAX_ANNOUNCE_DATAGRAM, "{n} bytes");
            got.push((
                start.elapsed(),
                from,
                Announcement::decode(&buf[..n]).unwrap(),
            ));
        }
    }
    got
}

#[test]
fn query_goes_out_three_times_from_an_ephemeral_port_to_broadcast_targets_and_peers() {
    let dir = temp_dir();
    let broadcast = test_socket();
    let peer = test_socket();
    let (b, p) = (broadcast.local_addr().unwrap(), peer.local_addr().unwrap());
    let started = Instant::now();
    let listener = TestListener::start_with(dir.path(), 0, |c| {
        c.query_targets = vec![b];
        c.peers = vec![p];
    });
    for socket in [&broadcast, &peer] {
        let got = collect(socket, Duration::from_millis(2000));
        let times: Vec<Duration> = got.iter().map(|(t, ..)| *t).collect();
        assert_eq!(got.len(), 3, "expected 3 queries, got them at {times:?}");
        for (_, from, a) in &got {
            assert_ne!(from.port(), listener.port, "sent from the shared port");
            assert_eq!(*from, got[0].1, "always from the same socket");
            assert_eq!(a.username, shared::protocol::QUERY_USERNAME);
            assert!(a.files.is_empty());
            assert_eq!(a.p2p.as_ref().unwrap().kind, Kind::Query);
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn queries_are_spaced_to_survive_a_lost_datagram() {
    let dir = temp_dir();
    let target = test_socket();
    let t = target.local_addr().unwrap();
    let _listener = TestListener::start_with(dir.path(), 0, |c| c.query_targets = vec![t]);
    let got = collect(&target, Duration::from_millis(2000));
    let times: Vec<Duration> = got.iter().map(|(t, ..)| *t).collect();
    assert_eq!(times.len(), 3, "{times:?}");
    // At start, then ~0.3 s and ~1.1 s later (the last one past the peers' one-second
    // limit on query files, so a lost answer is asked for again).
    let second = times[1] - times[0];
    let third = times[2] - times[0];
    assert!(
        (Duration::from_millis(200)..Duration::from_millis(700)).contains(&second),
        "{times:?}"
    );
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(1600)).contains(&third),
        "{times:?}"
    );
}

#[test]
fn a_heard_query_becomes_a_query_file_at_most_once_per_second() {
    let dir = temp_dir();
    let listener = TestListener::start_with(dir.path(), 0, |c| c.query_targets.clear());
    assert!(poll_until(PATIENCE, || listener.tags().is_some()));
    let querier = UdpPeer::new(6);
    let file = dir
        .path()
        .join(shared::QUERIES_DIR)
        .join(query_file_name(querier.addr()));
    let query = ours_with("dave", 0, 60, &[], None, Kind::Query);
    querier.announce(listener.port, &query);
    assert!(poll_until(PATIENCE, || file.exists()), "no query file");
    let first = Instant::now();
    std::fs::remove_file(&file).unwrap();
    // Asked again at once (the querier's re-send): the announcer was already asked.
    querier.announce(listener.port, &query);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!file.exists() || first.elapsed() >= Duration::from_secs(1));
    // A second later it may ask again.
    std::thread::sleep(Duration::from_secs(1).saturating_sub(first.elapsed()));
    querier.announce(listener.port, &query);
    assert!(
        poll_until(PATIENCE, || file.exists()),
        "no second query file"
    );
    // A query adds nothing to tags.txt.
    assert!(listener.tags().unwrap().entries.is_empty());
}

#[test]
fn answers_arriving_on_the_query_socket_are_listed() {
    let dir = temp_dir();
    // Stands in for a peer's listener + announcer: answers each query by unicast, from
    // 127.0.0.1 (its own socket), to wherever the query came from.
    let responder = test_socket();
    let r = responder.local_addr().unwrap();
    let listener = TestListener::start_with(dir.path(), 0, |c| c.query_targets = vec![r]);
    let got = collect(&responder, Duration::from_millis(500));
    let (_, querier, _) = got.first().expect("no query");
    let answer = ours_with(
        "erin",
        6100,
        60,
        &["found.txt_2"],
        Some("e1"),
        Kind::Announce,
    );
    responder.send_to(&answer.encode(), querier).unwrap();
    let tags = listener.wait_for_tags("erin", |t| find(t, "erin", "found.txt").is_some());
    let e = find(&tags, "erin", "found.txt").unwrap();
    assert_eq!(e.addr.to_string(), "127.0.0.1:6100");
    assert_eq!(e.chunks.to_string(), "-2---");
}

#[test]
fn goodbye_removes_a_peer_from_the_file_at_once() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let alice = UdpPeer::new(7);
    let bob = UdpPeer::new(8);
    alice.announce(
        listener.port,
        &ours_with(
            "alice",
            6001,
            60,
            &["a_1", "b_1"],
            Some("a1"),
            Kind::Announce,
        ),
    );
    bob.announce(
        listener.port,
        &ours_with("bob", 6001, 60, &["a_1"], Some("b1"), Kind::Announce),
    );
    listener.wait_for_tags("alice and bob", |t| t.entries.len() == 3);
    let said = Instant::now();
    alice.announce(
        listener.port,
        &ours_with("alice", 6001, 60, &[], Some("a1"), Kind::Goodbye),
    );
    let tags = listener.wait_for_tags("alice gone", |t| t.entries.len() == 1);
    assert!(
        said.elapsed() < Duration::from_millis(500),
        "took {:?}",
        said.elapsed()
    );
    assert_eq!(tags.entries[0].user, "bob");
}

#[test]
fn restarted_peer_replaces_its_entries_even_under_another_port() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let peer = UdpPeer::new(9);
    peer.announce(
        listener.port,
        &ours_with(
            "fred",
            6001,
            60,
            &["x_1", "y_1"],
            Some("r1"),
            Kind::Announce,
        ),
    );
    listener.wait_for_tags("the first run", |t| t.entries.len() == 2);
    peer.announce(
        listener.port,
        &ours_with("fred", 6002, 60, &["x_1"], Some("r2"), Kind::Announce),
    );
    let tags = listener.wait_for_tags("only the second run", |t| {
        t.entries.len() == 1 && t.entries[0].addr.port() == 6002
    });
    assert_eq!(tags.entries[0].content, "x");
}

#[test]
fn unicast_announcements_are_accepted() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let peer = UdpPeer::new(10);
    let to = SocketAddr::from(([127, 0, 0, 1], listener.port));
    peer.send_to(to, &Announcement::legacy("gina", &["direct_3"]).encode());
    let tags = listener.wait_for_tags("gina", |t| find(t, "gina", "direct").is_some());
    assert_eq!(
        find(&tags, "gina", "direct").unwrap().addr.ip().to_string(),
        "127.0.0.10"
    );
}

#[test]
fn peer_added_to_peers_txt_after_start_is_queried() {
    let dir = temp_dir();
    let listener = TestListener::start_with(dir.path(), 0, |c| c.query_targets.clear());
    assert!(poll_until(PATIENCE, || listener.tags().is_some()));
    let peer = test_socket();
    std::fs::write(
        dir.path().join(shared::PEERS_FILE),
        format!("{}   # added later\n", peer.local_addr().unwrap()),
    )
    .unwrap();
    let added = Instant::now();
    let got = collect(&peer, Duration::from_millis(3500));
    assert!(!got.is_empty(), "never queried");
    assert!(
        got[0].0 < Duration::from_millis(2500),
        "first at {:?}",
        got[0].0
    );
    assert_eq!(
        got.len(),
        3,
        "{:?}",
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    assert!(added.elapsed() < PATIENCE);
    assert_eq!(got[0].2.p2p.as_ref().unwrap().kind, Kind::Query);
}

/// The listener under a flood (issue 7, defect 4): thousands of new chunks per datagram from
/// four addresses. An honest peer must still be listed quickly, and the index stays bounded.
#[test]
fn an_honest_peer_is_listed_within_seconds_during_a_flood_and_the_index_stays_bounded() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    assert!(poll_until(PATIENCE, || listener.tags().is_some()));
    let flood = Flood::start(listener.port, &[5, 6, 7, 8], 60_000);
    // Let the flood reach the listener first.
    std::thread::sleep(Duration::from_secs(1));
    let honest = UdpPeer::new(9);
    let took = time_to_listing(
        &honest,
        listener.port,
        &Announcement::legacy("honest", &["honest.txt_1"]),
        &listener.tags_path(),
        "honest",
        Duration::from_secs(3),
    );
    let tags = listener.tags().unwrap_or_default();
    let sent = flood.stop();
    eprintln!(
        "{sent} flood datagrams; honest peer listed after {took:?}; {} entries",
        tags.entries.len()
    );
    assert!(took.is_some(), "the honest peer was not listed within 3 s");
    assert!(
        tags.entries.len() <= listener::index::DEFAULT_MAX_ENTRIES,
        "{} entries",
        tags.entries.len()
    );
    for last in [5, 6, 7, 8] {
        let from_source = tags
            .entries
            .iter()
            .filter(|e| e.addr.ip() == std::net::IpAddr::from([127, 0, 0, last]))
            .count();
        assert!(
            from_source <= listener::index::DEFAULT_MAX_ENTRIES_PER_SOURCE,
            "{from_source} entries from 127.0.0.{last}"
        );
    }
}

/// Forged control datagrams (issue 7, defect 9): from alice's own address, a goodbye without
/// her instance and an empty announcement of a new instance must not erase her.
#[test]
fn forged_goodbyes_and_empty_new_instances_do_not_erase_a_peer() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let alice = UdpPeer::new(17);
    let mallory = UdpPeer::new(17); // same source address, another port
    let marker = UdpPeer::new(18);
    alice.announce(
        listener.port,
        &ours_with("alice", 6001, 60, &["a_1"], Some("a1"), Kind::Announce),
    );
    listener.wait_for_tags("alice", |t| find(t, "alice", "a").is_some());
    for (n, forged) in [
        ours_with("alice", 6001, 60, &[], None, Kind::Goodbye),
        ours_with("alice", 6001, 60, &[], Some("forged"), Kind::Goodbye),
        ours_with("alice", 6001, 60, &[], Some("forged"), Kind::Announce),
    ]
    .iter()
    .enumerate()
    {
        mallory.announce(listener.port, forged);
        // Once the marker is listed, the forged datagram before it was handled.
        let content = format!("m{n}");
        marker.announce(
            listener.port,
            &Announcement::legacy("marker", &[&format!("{content}_1")]),
        );
        let tags = listener.wait_for_tags("the marker", |t| find(t, "marker", &content).is_some());
        assert!(
            find(&tags, "alice", "a").is_some(),
            "forged datagram {n} erased alice:\n{tags}"
        );
    }
}
