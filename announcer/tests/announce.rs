//! In-process tests: `announcer::run` in a thread, announcing to a test socket.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use announcer::Config;
use shared::MAX_ANNOUNCE_DATAGRAM;
use support::{add_content, names_of, Receiver, TestAnnouncer, PATIENCE};

fn config(dir: &std::path::Path, receiver: &Receiver) -> Config {
    Config {
        dir: dir.to_owned(),
        username: "alice".into(),
        targets: vec![receiver.addr()],
        interval: Duration::from_secs(60),
        chunk_port: 6001,
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
    for i in 0..60 {
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
    let result = announcer::run(socket, config(&file, &receiver), Default::default());
    assert!(
        matches!(result, Err(announcer::Error::OpenStore(_))),
        "{result:?}"
    );
}
