//! Issue 11, the transfer channel: on a private network chunk servers answer only members
//! that open the encrypted channel with the network key (and, with an allow list, only the
//! listed ones); everyone else gets no byte of content and a clear message.
//!
//! The holders' entries come from a real listener of a member. A peer that must see the same
//! entries without hearing the member's announcements (another key, no key) gets a copy of
//! that `tags.txt`: what it could have learnt by any means, the channel must still refuse.

use std::fs;
use std::path::Path;

use shared::chunk::chunk_ranges;
use shared::digest::Digest;
use testkit::client::legacy_fetch;
use testkit::prelude::*;

/// `peer`'s `tags.txt` copied from `from`'s.
fn copy_tags(from: &Peer, to: &Peer) {
    fs::copy(from.dir.join("tags.txt"), to.dir.join("tags.txt")).expect("copy tags.txt");
}

/// Bytes of every file under `dir` (0 when it does not exist).
fn bytes_under(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, len)| len).sum()
}

/// `downloader get NAME` by `peer` must fail having received no byte, saying `message`.
fn assert_gets_nothing(peer: &Peer, name: &str, message: &str) {
    let out = peer.downloader(&["get", name]);
    let text = all_output(&out);
    assert!(
        !out.status.success(),
        "{}'s download should fail\n{}",
        peer.name,
        describe_output(&out)
    );
    assert!(
        text.contains(message),
        "{}'s downloader should say {message:?}\n{}",
        peer.name,
        describe_output(&out)
    );
    assert!(!peer.downloads_dir().join(name).exists());
    assert_eq!(
        bytes_under(&peer.temp_dir()),
        0,
        "{} received bytes: {:?}",
        peer.name,
        files_under(&peer.temp_dir())
    );
}

/// alice shares `sample.bin` on the private network of [`TEST_PHRASE`]; carol, a member, sees
/// it in her tags.txt. Returns them, the file and its digest.
fn private_holder(
    net: &TestNet,
    size: u64,
    server_args: &[&str],
) -> (Peer, Peer, std::path::PathBuf, Digest) {
    let a = net.peer("alice");
    let c = net.peer("carol");
    a.join_network(TEST_PHRASE);
    c.join_network(TEST_PHRASE);
    let (original, digest) = a.write_share("sample.bin", size, 0x5eed);
    a.start_chunk_server(&[], server_args);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "sample.bin", digest);
    (a, c, original, digest)
}

#[test]
fn members_download_byte_identical_and_outsiders_get_no_byte() {
    let net = TestNet::new(std::time::Duration::from_secs(240));
    let size = 3_000_017;
    let (a, c, original, digest) = private_holder(&net, size, &[]);

    let out = c.downloader(&["get", "sample.bin"]);
    assert_success(&out, "carol (a member) downloads sample.bin from alice");
    let got = c.downloads_dir().join("sample.bin");
    assert_same_file(&original, &got);
    assert_eq!(file_digest(&got), (digest, size));
    let served = wait_for_served_all(&net, &a, "sample.bin");
    let carol = c.peer_id().to_string();
    for event in &served {
        assert_eq!(event.get("id"), Some(carol.as_str()), "{event}");
        assert_eq!(event.get("proto"), Some("p2p"), "{event}");
    }

    // dave holds another network's key.
    let d = net.peer("dave");
    d.join_network(OTHER_PHRASE);
    copy_tags(&c, &d);
    let addr = a.chunk_addr();
    assert_gets_nothing(
        &d,
        "sample.bin",
        &format!("peer at {addr} uses a different network key"),
    );

    // erin has no key at all (an open network).
    let e = net.peer("erin");
    copy_tags(&c, &e);
    assert_gets_nothing(
        &e,
        "sample.bin",
        &format!("peer at {addr} is on a private network; this peer has no network key"),
    );

    // frank is a member, but his tags.txt says alice's entries were announced by another ID
    // (his own): alice's server proves hers, and he refuses it.
    let f = net.peer("frank");
    f.join_network(TEST_PHRASE);
    let mut tags = c.tags().unwrap_or_else(|e| panic!("{e}"));
    let frank = f.peer_id();
    let alice = a.peer_id();
    for entry in &mut tags.entries {
        assert_eq!(
            entry.id,
            Some(alice),
            "carol's listener binds alice's entry to her ID"
        );
        entry.id = Some(frank);
    }
    tags.save(&f.dir.join("tags.txt"))
        .expect("write frank's tags.txt");
    assert_gets_nothing(
        &f,
        "sample.bin",
        &format!("peer at {addr} is not {frank} (it proved to be {alice})"),
    );

    // A legacy client's raw request: nothing but the close.
    assert!(legacy_fetch(addr, "sample.bin_1").is_empty());

    let refused: Vec<String> = read_events(&a.dir.join("server.log"))
        .iter()
        .filter(|e| e.name == "refused")
        .filter_map(|e| e.get("outcome").map(str::to_owned))
        .collect();
    for outcome in ["wrong_key", "private_network"] {
        assert!(
            refused.iter().any(|o| o == outcome),
            "alice's server.log has no refused event with outcome {outcome}: {refused:?}"
        );
    }
    // Still nothing but carol's five chunks were ever served.
    assert_eq!(
        matching(&read_events(&a.dir.join("server.log")), "served", &[]).len(),
        5,
        "served events"
    );
}

#[test]
fn allow_legacy_serves_plaintext_and_an_open_server_refuses_the_channel() {
    let net = TestNet::new(std::time::Duration::from_secs(180));
    let size = 1_000_003;
    let (a, c, original, _) = private_holder(&net, size, &["--allow-legacy"]);
    // With --allow-legacy a raw legacy request gets the chunk.
    let first = chunk_ranges(size)[0];
    let bytes = fs::read(&original).unwrap();
    let got = legacy_fetch(a.chunk_addr(), "sample.bin_1");
    assert!(
        got == bytes[first.start as usize..first.end as usize],
        "legacy request got {} bytes, expected chunk 1 ({} bytes)",
        got.len(),
        first.end - first.start
    );

    // bob runs an open network; carol, a member, is told so and gets nothing from him.
    let b = net.peer("bob");
    let (_, bob_digest) = b.write_share("open.bin", 70_000, 7);
    b.start_chunk_server(&[], &[]);
    b.start_announcer("bob", ANNOUNCE_INTERVAL_SECS);
    // Heard by an open listener (a member's may ignore an open network's announcements).
    let o = net.peer("observer");
    o.start_listener(&[]);
    net.wait_for_entry(&o, &b, "bob", "open.bin", bob_digest);
    c.stop(Program::Listener);
    copy_tags(&o, &c);
    assert_gets_nothing(
        &c,
        "open.bin",
        &format!(
            "peer at {} has no network key (an open network)",
            b.chunk_addr()
        ),
    );
}

#[test]
fn the_allow_list_refuses_an_unlisted_member_until_it_is_listed() {
    let net = TestNet::new(std::time::Duration::from_secs(180));
    let (a, c, original, _) = private_holder(&net, 500_000, &[]);
    let d = net.peer("dave");
    d.join_network(TEST_PHRASE);
    let allow = a.dir.join("allowed-peers.txt");
    fs::write(
        &allow,
        format!("# only carol\n{}   # carol\nnot a peer id\n", c.peer_id()),
    )
    .unwrap();

    let out = c.downloader(&["get", "sample.bin"]);
    assert_success(&out, "carol (listed) downloads");
    assert_same_file(&original, &c.downloads_dir().join("sample.bin"));

    copy_tags(&c, &d);
    let dave = d.peer_id().to_string();
    assert_gets_nothing(
        &d,
        "sample.bin",
        &format!("peer {dave} is not in the allow list"),
    );
    let refused = read_events(&a.dir.join("server.log"));
    assert!(
        refused
            .iter()
            .any(|e| e.name == "refused" && e.get("outcome") == Some("not_allowed")),
        "no not_allowed refusal in alice's server.log"
    );

    // Listed now: the server reads the changed file at the next connection.
    fs::write(&allow, format!("{}\n{dave}\n", c.peer_id())).unwrap();
    let out = d.downloader(&["get", "sample.bin"]);
    assert_success(&out, "dave (listed now) downloads");
    assert_same_file(&original, &d.downloads_dir().join("sample.bin"));
}

#[test]
fn a_member_fetches_a_legacy_holder_in_plaintext_when_its_listener_allows_legacy_peers() {
    use testkit::legacy::{legacy_split, LegacyServer, Mode};
    let net = TestNet::new(std::time::Duration::from_secs(120));
    let ece_ip = net.next_ip();
    let ece_dir = net.folder("ece-legacy");
    let original = ece_dir.join("ece.txt");
    write_random_file(&original, 300_001, 11);
    let (content, chunks) = legacy_split(&original, &ece_dir.join("chunks"));
    let server = LegacyServer::start(ece_ip, &ece_dir.join("chunks"), Mode::Close);

    let c = net.peer("carol");
    c.join_network(TEST_PHRASE);
    let port = server.addr().port().to_string();
    c.start_listener(&["--allow-legacy", "--legacy-chunk-port", &port]);
    net.announce_legacy_until_listed(&c, ece_ip, "ece", &chunks, |e| {
        e.content == content && e.chunks == shared::chunk::ChunkSet::ALL
    });
    let out = c.downloader(&["get", &content]);
    assert_success(&out, "a member downloads from a legacy holder");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    // The legacy server heard plain legacy requests, not our handshake.
    let requests = server.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert!(request.contains("filename"), "{request:?}");
    }
}
