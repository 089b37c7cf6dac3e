//! In-process tests: `announcer::run` in a thread, announcing to a test socket.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use announcer::Config;
use shared::protocol::Kind;
use shared::MAX_ANNOUNCE_DATAGRAM;
use testkit::announce::{names_of, Receiver};
use testkit::files::add_content;
use testkit::servers::TestAnnouncer;
use testkit::wait::PATIENCE;

fn config(dir: &std::path::Path, receiver: &Receiver) -> Config {
    Config {
        dir: dir.to_owned(),
        username: "alice".into(),
        targets: vec![receiver.addr()],
        interval: Duration::from_secs(60),
        chunk_port: announcer::ChunkPort::Fixed(6001),
        ..Config::default()
    }
}

#[test]
fn first_announcement_arrives_at_once_with_chunks_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let photo = add_content(dir.path(), "photo.png", &[7u8; 1234]);
    let notes = add_content(dir.path(), "my notes.txt", b"abc");
    let receiver = Receiver::new();
    let started = Instant::now();
    let _announcer = TestAnnouncer::start(config(dir.path(), &receiver));
    let first = receiver.next(PATIENCE).expect("no announcement");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(first.len <= MAX_ANNOUNCE_DATAGRAM);
    let a = first.announcement;
    assert_eq!(a.username, "alice");
    let files: BTreeSet<String> = a.files.iter().cloned().collect();
    let expected: BTreeSet<String> = names_of("photo.png")
        .into_iter()
        .chain(names_of("my notes.txt"))
        .collect();
    assert_eq!(files, expected);
    let ext = a.p2p.expect("our extension");
    assert_eq!(ext.v, shared::PROTOCOL_VERSION);
    assert_eq!(ext.port, 6001);
    assert_eq!(ext.interval, 60);
    assert_eq!(ext.contents["photo.png"], photo.meta());
    assert_eq!(ext.contents["my notes.txt"], notes.meta());
}

#[test]
fn empty_store_is_still_announced_and_created() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(config(&dir.path().join("new peer"), &receiver));
    let first = receiver.next(PATIENCE).expect("no announcement");
    assert!(first.announcement.files.is_empty());
    assert_eq!(first.announcement.username, "alice");
    assert!(dir.path().join("new peer").join(shared::TEMP_DIR).is_dir());
}

#[test]
fn new_chunk_is_announced_well_before_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &receiver));
    receiver.until_chunks(&names_of("a"), PATIENCE);
    receiver.drain();
    // A chunk arrives (as the downloader would leave it: complete, under its final name).
    let temp = dir.path().join(shared::TEMP_DIR);
    std::fs::write(temp.join(".incoming").join("b.bin_3.part"), b"xyz").unwrap();
    std::fs::rename(
        temp.join(".incoming").join("b.bin_3.part"),
        temp.join("b.bin_3"),
    )
    .unwrap();
    let added = Instant::now();
    let wanted = BTreeSet::from(["b.bin_3".to_owned()]);
    let got = receiver.until_chunks(&wanted, Duration::from_secs(5));
    assert!(added.elapsed() < Duration::from_secs(5));
    // The new announcement is complete: the old chunks are still in it.
    let last = &got.last().unwrap().announcement;
    let files: BTreeSet<String> = last.files.iter().cloned().collect();
    assert!(names_of("a").is_subset(&files), "{files:?}");
    // No manifest for b.bin yet: announced without metadata.
    assert!(!last.p2p.as_ref().unwrap().contents.contains_key("b.bin"));
}

#[test]
fn removed_content_is_withdrawn_three_times_then_announced_without_it() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    add_content(dir.path(), "gone.txt", b"soon gone");
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &receiver));
    receiver.until_chunks(&names_of("gone.txt"), PATIENCE);
    receiver.drain();
    let store = shared::store::ChunkStore::open(dir.path().join(shared::TEMP_DIR)).unwrap();
    store.remove_content("gone.txt").unwrap();
    let removed = Instant::now();
    let mut withdrawals = 0;
    let mut announced_after = false;
    while withdrawals < 3 {
        let got = receiver
            .next(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{withdrawals} withdrawals only"));
        let ext = got.announcement.p2p.expect("ours");
        if ext.kind == Kind::Withdraw {
            assert_eq!(ext.withdrawn, ["gone.txt"]);
            assert!(got.announcement.files.is_empty());
            assert!(ext.instance.is_some());
            withdrawals += 1;
        } else {
            assert_eq!(ext.kind, Kind::Announce);
            assert_eq!(
                withdrawals, 1,
                "the announcement follows the first withdrawal"
            );
            let files: BTreeSet<String> = got.announcement.files.into_iter().collect();
            assert_eq!(files, names_of("a"));
            announced_after = true;
        }
    }
    assert!(announced_after);
    // Well within the 60 s interval: the store change was noticed at once.
    println!("withdrawn three times within {:?}", removed.elapsed());
    assert!(removed.elapsed() < Duration::from_secs(5));
    // And no more.
    assert!(receiver.next(Duration::from_millis(700)).is_none());
}

#[test]
fn announcements_repeat_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(Config {
        interval: Duration::from_millis(300),
        ..config(dir.path(), &receiver)
    });
    let start = Instant::now();
    let mut count = 0;
    while count < 4 {
        assert!(receiver.next(PATIENCE).is_some(), "after {count}");
        count += 1;
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800),
        "too fast: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "too slow: {elapsed:?}");
}

#[test]
fn large_store_is_split_into_datagrams_that_legacy_listeners_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = BTreeSet::new();
    // Several datagrams, still few enough to be announced inline (see `shape`).
    for i in 0..10 {
        let name = format!("holiday photo number {i:03} with a fairly long name.jpeg");
        add_content(dir.path(), &name, name.as_bytes());
        wanted.extend(names_of(&name));
    }
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &receiver));
    let got = receiver.until_chunks(&wanted, PATIENCE);
    assert!(got.len() > 1, "expected several datagrams");
    for r in &got {
        assert!(r.len <= MAX_ANNOUNCE_DATAGRAM, "{} bytes", r.len);
        let a = &r.announcement;
        assert_eq!(a.username, "alice");
        let ext = a.p2p.as_ref().unwrap();
        for chunk in a.chunks() {
            assert!(
                ext.contents.contains_key(chunk.content()),
                "{chunk} without metadata"
            );
        }
    }
}

#[test]
fn failing_target_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let receiver = Receiver::new();
    // Without SO_BROADCAST, sending to a broadcast address fails (EACCES).
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let broadcast = "127.255.255.255:9".parse().unwrap();
    let _announcer = TestAnnouncer::start_with(
        socket,
        Config {
            targets: vec![broadcast, receiver.addr()],
            interval: Duration::from_millis(200),
            ..config(dir.path(), &receiver)
        },
    );
    for _ in 0..3 {
        assert!(receiver.next(PATIENCE).is_some());
    }
}

#[test]
fn run_returns_promptly_when_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::new();
    let announcer = TestAnnouncer::start(config(dir.path(), &receiver));
    assert!(receiver.next(PATIENCE).is_some());
    let start = Instant::now();
    announcer.stop().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn unusable_peer_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let receiver = Receiver::new();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let result = announcer::run(
        socket,
        Vec::new(),
        config(&file, &receiver),
        Default::default(),
    );
    assert!(
        matches!(result, Err(announcer::Error::OpenStore(_))),
        "{result:?}"
    );
}

/// The query file asking for an answer to `to`, in the peer folder `dir`.
fn query_file(dir: &std::path::Path, to: std::net::SocketAddr) -> std::path::PathBuf {
    let queries = dir.join(shared::QUERIES_DIR);
    std::fs::create_dir_all(&queries).unwrap();
    queries.join(shared::queries::query_file_name(to))
}

#[test]
fn every_datagram_carries_this_runs_instance_and_runs_differ() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let receiver = Receiver::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let announcer = TestAnnouncer::start(Config {
            interval: Duration::from_millis(200),
            ..config(dir.path(), &receiver)
        });
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            let got = receiver.next(PATIENCE).expect("no announcement");
            seen.insert(got.announcement.p2p.unwrap().instance.expect("an instance"));
        }
        announcer.stop().unwrap();
        receiver.drain();
        assert_eq!(seen.len(), 1, "one instance per run: {seen:?}");
        instances.extend(seen);
    }
    assert_ne!(instances[0], instances[1]);
}

#[test]
fn goodbye_goes_to_every_target_and_peer_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let broadcast = Receiver::new();
    let peer = Receiver::new();
    let announcer = TestAnnouncer::start(Config {
        peers: vec![peer.addr()],
        instance: "feedfacecafebeef".into(),
        ..config(dir.path(), &broadcast)
    });
    for r in [&broadcast, &peer] {
        let hello = r.next(PATIENCE).expect("no announcement");
        assert_eq!(hello.announcement.chunks().len(), 5);
    }
    announcer.stop().unwrap();
    for r in [&broadcast, &peer] {
        let bye = r.next(PATIENCE).expect("no goodbye");
        assert!(bye.len <= MAX_ANNOUNCE_DATAGRAM);
        let a = bye.announcement;
        assert_eq!(a.username, "alice");
        assert!(a.files.is_empty());
        let ext = a.p2p.unwrap();
        assert_eq!(ext.kind, Kind::Goodbye);
        assert_eq!(ext.port, 6001);
        assert_eq!(ext.instance.as_deref(), Some("feedfacecafebeef"));
        assert!(
            r.next(Duration::from_millis(200)).is_none(),
            "nothing after"
        );
    }
}

#[test]
fn query_file_is_answered_by_unicast_with_the_whole_announcement_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = BTreeSet::new();
    for i in 0..20 {
        let name = format!("a rather long content name number {i:03}.bin");
        add_content(dir.path(), &name, name.as_bytes());
        wanted.extend(names_of(&name));
    }
    let broadcast = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &broadcast));
    broadcast.until_chunks(&wanted, PATIENCE);
    let querier = Receiver::new();
    let file = query_file(dir.path(), querier.addr());
    let asked = Instant::now();
    std::fs::File::create(&file).unwrap();
    let got = querier.until_chunks(&wanted, PATIENCE);
    assert!(
        asked.elapsed() < Duration::from_millis(700),
        "answered after {:?}",
        asked.elapsed()
    );
    assert!(got.len() > 1, "the whole announcement: several datagrams");
    for r in &got {
        assert!(r.len <= MAX_ANNOUNCE_DATAGRAM);
        assert_eq!(r.announcement.p2p.as_ref().unwrap().kind, Kind::Announce);
    }
    assert!(
        testkit::wait::poll_until(PATIENCE, || !file.exists()),
        "not deleted"
    );
    // Answered once: nothing more comes to the querier, and the broadcast saw no answer.
    querier.drain();
    assert!(querier.next(Duration::from_millis(300)).is_none());
}

#[test]
fn stale_and_misnamed_query_files_are_deleted_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let broadcast = Receiver::new();
    let querier = Receiver::new();
    let stale = query_file(dir.path(), querier.addr());
    let file = std::fs::File::create(&stale).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    drop(file);
    let queries = dir.path().join(shared::QUERIES_DIR);
    let junk = [
        "not-a-query",
        "127.0.0.1_0",
        "127.0.0.1_99999",
        ".127.0.0.1_5000.tmp",
    ];
    for name in junk {
        std::fs::write(queries.join(name), b"x").unwrap();
    }
    let _announcer = TestAnnouncer::start(config(dir.path(), &broadcast));
    assert!(broadcast.next(PATIENCE).is_some());
    assert!(
        testkit::wait::poll_until(PATIENCE, || std::fs::read_dir(&queries)
            .unwrap()
            .next()
            .is_none()),
        "left: {:?}",
        std::fs::read_dir(&queries).unwrap().collect::<Vec<_>>()
    );
    assert!(querier.next(Duration::from_millis(300)).is_none());
}

#[test]
fn static_peers_get_every_announcement_by_unicast() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let nowhere = Receiver::new();
    let peer = Receiver::new();
    let _announcer = TestAnnouncer::start(Config {
        peers: vec![peer.addr()],
        interval: Duration::from_millis(200),
        ..config(dir.path(), &nowhere)
    });
    for _ in 0..3 {
        let got = peer.next(PATIENCE).expect("no announcement to the peer");
        assert_eq!(got.announcement.chunks().len(), 5);
    }
}

#[test]
fn peer_added_to_peers_txt_is_announced_to_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let broadcast = Receiver::new();
    let announcer = TestAnnouncer::start(config(dir.path(), &broadcast));
    assert!(broadcast.next(PATIENCE).is_some());
    let peer = Receiver::new();
    let added = Instant::now();
    std::fs::write(
        dir.path().join(shared::PEERS_FILE),
        format!(
            "# written while the announcer runs\nno such host.invalid\n{}\n",
            peer.addr()
        ),
    )
    .unwrap();
    let got = peer.next(Duration::from_secs(5)).expect("never announced");
    assert!(
        added.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        added.elapsed()
    );
    assert_eq!(got.announcement.chunks().len(), 5);
    // Only the new peer got the prompt announcement; the interval is a minute.
    assert!(broadcast.next(Duration::from_millis(300)).is_none());
    // Removed from the file: it is not said goodbye to, unlike the broadcast.
    std::fs::write(dir.path().join(shared::PEERS_FILE), "# nobody\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    announcer.stop().unwrap();
    let bye = broadcast
        .next(PATIENCE)
        .expect("no goodbye to the broadcast");
    assert_eq!(bye.announcement.p2p.unwrap().kind, Kind::Goodbye);
    assert!(
        peer.next(Duration::from_millis(300)).is_none(),
        "a removed peer was still sent to"
    );
}

/// Sockets standing in for queriers, one per address of `ips` (`127.0.0.<last>`), each on a
/// port of its own.
fn queriers(ips: &[u8]) -> Vec<std::net::UdpSocket> {
    ips.iter()
        .map(|&last| {
            let s = std::net::UdpSocket::bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))
                .unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// Reads every socket of `sockets` for `window`; returns the bytes each received.
fn bytes_received(sockets: &[std::net::UdpSocket], window: Duration) -> Vec<usize> {
    let mut got = vec![0; sockets.len()];
    let mut buf = vec![0u8; shared::MAX_RECEIVE_DATAGRAM];
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        let mut idle = true;
        for (socket, total) in sockets.iter().zip(got.iter_mut()) {
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                *total += n;
                idle = false;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    got
}

/// Issue 7, defect 9: forged queries naming one address on many ports must not make the
/// announcer answer each of them (the listener's limit is per port, so rotating ports
/// bypassed it).
#[test]
fn queries_from_one_address_are_answered_a_few_times_a_second_whatever_their_ports() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "a", b"0123456789");
    let broadcast = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &broadcast));
    broadcast.until_chunks(&names_of("a"), PATIENCE);
    let sockets = queriers(&[1; 20]);
    for s in &sockets {
        std::fs::File::create(query_file(dir.path(), s.local_addr().unwrap())).unwrap();
    }
    let got = bytes_received(&sockets, Duration::from_millis(1500));
    let answered = got.iter().filter(|&&n| n > 0).count();
    assert!(answered >= 1, "nobody answered");
    assert!(
        answered <= 5,
        "{answered} of 20 ports of one address answered within 1.5 s"
    );
}

/// Issue 7, defect 9: whatever the number of querying addresses, answers are bounded in bytes
/// per second.
#[test]
fn answers_to_queries_are_bounded_in_bytes_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = BTreeSet::new();
    // As many as an inline announcement holds (about 14 KB): twenty answers are more than the
    // budget.
    for i in 0..40 {
        let name = format!("content-{i:04}.bin");
        add_content(dir.path(), &name, name.as_bytes());
        wanted.extend(names_of(&name));
    }
    let broadcast = Receiver::new();
    let _announcer = TestAnnouncer::start(config(dir.path(), &broadcast));
    let answer: usize = broadcast
        .until_chunks(&wanted, PATIENCE)
        .iter()
        .map(|r| r.len)
        .sum();
    let ips: Vec<u8> = (40..60).collect();
    let sockets = queriers(&ips);
    let window = Duration::from_secs(1);
    for s in &sockets {
        std::fs::File::create(query_file(dir.path(), s.local_addr().unwrap())).unwrap();
    }
    let got = bytes_received(&sockets, window);
    let total: usize = got.iter().sum();
    let rate = usize::try_from(announcer::budget::DEFAULT_ANSWER_RATE).unwrap();
    // The budget starts full (one second's worth), refills for the window, and the answer
    // that overdraws it is sent whole.
    let bound = rate + rate * 11 / 10 + answer;
    eprintln!("answer of {answer} bytes; {total} bytes answered in {window:?}; bound {bound}");
    assert!(total >= answer, "not even one answer: {got:?}");
    assert!(total <= bound, "{total} bytes answered in {window:?}");
}

/// A store of `n` contents, more than an inline announcement holds when `n` is in the hundreds;
/// returns their chunk names as a legacy listener reads them (`photos%2Fholiday-0000.jpg_1`).
fn many_contents(dir: &std::path::Path, n: usize) -> BTreeSet<String> {
    let mut wanted = BTreeSet::new();
    for i in 0..n {
        let name = format!("photos/holiday-{i:04}.jpg");
        add_content(dir, &name, name.as_bytes());
        for chunk in shared::chunk::ChunkName::all_of(&name).unwrap() {
            wanted.insert(chunk.to_legacy_string());
        }
    }
    wanted
}

#[test]
fn a_large_store_is_announced_by_its_catalog_in_one_datagram_the_chunk_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    many_contents(dir.path(), 300);
    let receiver = Receiver::new();
    let _announcer = TestAnnouncer::start(Config {
        interval: Duration::from_millis(500),
        ..config(dir.path(), &receiver)
    });
    let first = receiver.next(PATIENCE).expect("no announcement");
    let a = &first.announcement;
    let ext = a.p2p.as_ref().unwrap();
    let summary = ext.catalog.expect("a compact announcement");
    assert!(a.files.is_empty() && ext.contents.is_empty(), "{a:?}");
    assert_eq!(summary.count, 300);
    assert!(first.len < 400, "{} bytes", first.len);
    // The catalog it names is published for the chunk server, byte for byte.
    let peer_dir = shared::peer_dir::PeerDir::new(dir.path());
    let published = std::fs::read(shared::catalog_file::path(&peer_dir, &summary.sha256))
        .expect("the catalog announced is published");
    assert_eq!(shared::digest::Digest::of(&published), summary.sha256);
    let catalog = shared::protocol::Catalog::decode(&published).unwrap();
    assert_eq!(catalog.len(), 300);
    assert!(catalog
        .entries()
        .iter()
        .all(|e| e.chunks.is_complete() && e.meta.is_some()));
    // No legacy peer heard (auto): every announcement is that one datagram.
    for _ in 0..3 {
        let next = receiver.next(PATIENCE).expect("periodic announcement");
        assert_eq!(next.announcement.p2p.unwrap().catalog, Some(summary));
        assert!(next.announcement.files.is_empty());
    }
    // A content removed: another catalog, published in place of the first.
    shared::store::ChunkStore::open(dir.path().join("temp"))
        .unwrap()
        .remove_content("photos/holiday-0000.jpg")
        .unwrap();
    let changed = testkit::wait::wait_until(Instant::now() + PATIENCE, "a new catalog", || {
        let r = receiver.next(PATIENCE).ok_or("nothing heard")?;
        let ext = r.announcement.p2p.ok_or("no p2p")?;
        match ext.catalog {
            Some(s) if s != summary => Ok(s),
            _ => Err(format!("{ext:?}")),
        }
    });
    assert_eq!(changed.count, 299);
    assert!(shared::catalog_file::open(&peer_dir, &changed.sha256).is_ok());
    assert!(shared::catalog_file::open(&peer_dir, &summary.sha256).is_err());
}

#[test]
fn the_legacy_list_of_a_compact_announcement_is_paced_and_read_as_ours() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = many_contents(dir.path(), 200);
    let receiver = Receiver::new();
    let interval = Duration::from_secs(2);
    let _announcer = TestAnnouncer::start(Config {
        interval,
        legacy_list: announcer::legacy::LegacyPolicy::On,
        ..config(dir.path(), &receiver)
    });
    let started = Instant::now();
    let got = receiver.until_chunks(&wanted, PATIENCE);
    let spent = started.elapsed();
    let mut summary = None;
    let mut legacy_datagrams = 0;
    for r in &got {
        assert!(r.len <= MAX_ANNOUNCE_DATAGRAM, "{} bytes", r.len);
        let a = &r.announcement;
        let ext = a.p2p.as_ref().unwrap();
        // Every datagram names the catalog, so our listeners never take its names as a
        // legacy peer's; its names are plain (flattened) for legacy listeners.
        let s = ext.catalog.expect("the summary in every datagram");
        assert_eq!(*summary.get_or_insert(s), s);
        assert!(ext.contents.is_empty());
        assert!(a.files.iter().all(|f| !f.contains('/')), "{:?}", a.files);
        if !a.files.is_empty() {
            legacy_datagrams += 1;
        }
    }
    assert!(legacy_datagrams > 10, "{legacy_datagrams} datagrams");
    // Paced: spread over half the interval, not sent in one burst.
    assert!(
        spent >= interval / 4,
        "{legacy_datagrams} datagrams in {spent:?}"
    );
    // The legacy list's names are what a legacy listener reads.
    let names: BTreeSet<String> = got
        .iter()
        .flat_map(|r| r.announcement.files.iter().cloned())
        .collect();
    assert!(names.contains("photos%2Fholiday-0007.jpg_3"), "{names:?}");
}

#[test]
fn the_legacy_list_is_off_by_policy_and_auto_until_a_legacy_peer_is_heard() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = many_contents(dir.path(), 200);
    for policy in [
        announcer::legacy::LegacyPolicy::Off,
        announcer::legacy::LegacyPolicy::Auto,
    ] {
        let receiver = Receiver::new();
        let _announcer = TestAnnouncer::start(Config {
            interval: Duration::from_millis(500),
            legacy_list: policy,
            ..config(dir.path(), &receiver)
        });
        let end = Instant::now() + Duration::from_secs(2);
        let mut heard = 0;
        while let Some(r) = receiver.next(end.saturating_duration_since(Instant::now())) {
            assert!(
                r.announcement.files.is_empty(),
                "{policy}: {:?}",
                r.announcement
            );
            heard += 1;
        }
        assert!(heard >= 2, "{policy}: {heard}");
    }
    // `auto` starts the list once the announcer hears a legacy peer on its broadcast address.
    let (socket, port) = testkit::servers::shared_port_socket();
    let broadcast = std::net::SocketAddr::from(([127, 255, 255, 255], port));
    let receiver = Receiver::with_socket(socket);
    let config = Config {
        targets: vec![broadcast],
        interval: Duration::from_secs(2),
        ..config(dir.path(), &receiver)
    };
    let query_sockets = announcer::ears::bind_query_sockets(&config);
    assert!(!query_sockets.is_empty(), "the announcer hears {broadcast}");
    let _announcer = TestAnnouncer::start_hearing(config, query_sockets);
    std::thread::sleep(Duration::from_millis(500));
    testkit::legacy::legacy_announce(
        std::net::Ipv4Addr::new(127, 0, 0, 9),
        broadcast,
        "ece",
        &["ece_1".to_owned()],
    );
    let got = receiver.until_chunks(&wanted, PATIENCE);
    assert!(got
        .iter()
        .any(|r| r.announcement.username == "alice" && !r.announcement.files.is_empty()));
}
