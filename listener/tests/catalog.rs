//! In-process tests of the catalog fetch: `listener::run` in a thread, compact announcements
//! from loopback peers, and fake chunk servers answering the catalog requests, honestly or
//! not.

use std::time::{Duration, Instant};

use testkit::announce::UdpPeer;
use testkit::fake_catalog::{catalog_of, CatalogBehaviour, CatalogServer};
use testkit::files::temp_dir;
use testkit::servers::TestListener;
use testkit::wait::{poll_until, PATIENCE};

/// The lines of `user` in the listener's `tags.txt`.
fn listed(listener: &TestListener, user: &str) -> usize {
    listener
        .tags()
        .map_or(0, |t| t.entries.iter().filter(|e| e.user == user).count())
}

#[test]
fn a_compact_peer_is_listed_from_its_catalog_and_lying_or_silent_servers_list_nothing() {
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let honest = CatalogServer::start(
        [127, 0, 0, 2].into(),
        &catalog_of("honest", 300),
        CatalogBehaviour::Honest,
    );
    let hostile = [
        (3, "wrong", CatalogBehaviour::WrongBytes),
        (4, "oversized", CatalogBehaviour::Oversized),
        (5, "silent", CatalogBehaviour::Silent),
    ];
    let hostile: Vec<(UdpPeer, CatalogServer, &str)> = hostile
        .into_iter()
        .map(|(last, user, behaviour)| {
            let server =
                CatalogServer::start([127, 0, 0, last].into(), &catalog_of(user, 50), behaviour);
            (UdpPeer::new(last), server, user)
        })
        .collect();
    let alice = UdpPeer::new(2);
    // The hostile ones first: the silent one holds a fetch for as long as it is let.
    let mut sent = Instant::now() - Duration::from_secs(1);
    let announce = |sent: &mut Instant| {
        if sent.elapsed() >= Duration::from_millis(300) {
            for (peer, server, user) in &hostile {
                peer.announce(listener.port, &server.announcement(user, "h1"));
            }
            alice.announce(listener.port, &honest.announcement("alice", "a1"));
            *sent = Instant::now();
        }
    };
    let all = poll_until(PATIENCE, || {
        announce(&mut sent);
        listed(&listener, "alice") == 300
    });
    assert!(
        all,
        "alice's 300 contents never listed: {} are",
        listed(&listener, "alice")
    );
    // Every lying server was asked, and what it said was not believed.
    let asked = poll_until(PATIENCE, || {
        announce(&mut sent);
        hostile.iter().all(|(_, server, _)| server.requests() >= 1)
    });
    assert!(asked, "every hostile server asked");
    std::thread::sleep(Duration::from_millis(500));
    for (_, _, user) in &hostile {
        assert_eq!(listed(&listener, user), 0, "{user}'s catalog was believed");
    }
    let tags = listener.tags().unwrap();
    let entry = tags
        .entries
        .iter()
        .find(|e| e.content == "honest-00007.bin")
        .expect("a content of alice's");
    assert_eq!(entry.addr, honest.addr());
    assert_eq!(entry.size, Some(1007));
    assert_eq!(entry.chunks.to_string(), "12345");
    // One fetch, however many summaries were heard since.
    assert_eq!(honest.requests(), 1);
    // Lying servers are not asked at every summary: they wait, longer each time.
    let wrong = &hostile[0].1;
    let before = wrong.requests();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        announce(&mut sent);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wrong.requests() <= before + 2,
        "{} requests in 3 s",
        wrong.requests() - before
    );
    // A fetch still waiting on the silent server does not hold the listener back.
    let stopping = Instant::now();
    listener.stop().expect("the listener stops cleanly");
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_catalog_beyond_the_per_source_limit_is_listed_up_to_it() {
    let dir = temp_dir();
    let listener = TestListener::start_with(dir.path(), 0, |config| {
        config.limits.max_entries_per_source = 120;
    });
    let server = CatalogServer::start(
        [127, 0, 0, 2].into(),
        &catalog_of("many", 1000),
        CatalogBehaviour::Honest,
    );
    let alice = UdpPeer::new(2);
    let listed_some = poll_until(PATIENCE, || {
        alice.announce(listener.port, &server.announcement("alice", "a1"));
        std::thread::sleep(Duration::from_millis(200));
        listed(&listener, "alice") > 0
    });
    assert!(listed_some, "nothing listed");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(listed(&listener, "alice"), 120);
}

/// Issue 12's scale with the listener's default limits: a peer sharing 10,000 files is listed
/// whole (the per-source default was 1,000, which hid nine tenths of it).
#[test]
fn a_peer_sharing_ten_thousand_files_is_listed_whole_with_the_default_limits() {
    const FILES: usize = 10_000;
    let dir = temp_dir();
    let listener = TestListener::start(dir.path(), 0);
    let server = CatalogServer::start(
        [127, 0, 0, 2].into(),
        &catalog_of("many", FILES),
        CatalogBehaviour::Honest,
    );
    let alice = UdpPeer::new(2);
    let listed_all = poll_until(PATIENCE, || {
        alice.announce(listener.port, &server.announcement("alice", "a1"));
        std::thread::sleep(Duration::from_millis(200));
        listed(&listener, "alice") >= FILES
    });
    assert!(
        listed_all,
        "{} of {FILES} listed",
        listed(&listener, "alice")
    );
    assert_eq!(listed(&listener, "alice"), FILES);
}
