//! Interoperation with legacy (Python) peers, in both directions: we download from a legacy
//! server our listener learned of from a legacy announcement, and a legacy listener and
//! downloader get our content from our announcer and chunk server.

use std::net::SocketAddr;
use std::time::Duration;

use shared::chunk::ChunkSet;
use shared::tags::Proto;
use testkit::legacy::{legacy_download, legacy_listen_once, legacy_split, LegacyServer, Mode};
use testkit::prelude::*;

/// A legacy peer `ece` shares `ece.txt` of `size` bytes (content `ece`) with a server in `mode`;
/// carol's listener learns of it and her downloader fetches it, unverified.
fn download_from_legacy_peer(size: u64, mode: Mode) {
    let net = TestNet::new(Duration::from_secs(90));
    let ece_ip = net.next_ip();
    let ece_dir = net.folder("ece-legacy");
    let original = ece_dir.join("ece.txt");
    write_random_file(&original, size, size + 7);
    let chunk_dir = ece_dir.join("chunks");
    let (content, chunks) = legacy_split(&original, &chunk_dir);
    assert_eq!(content, "ece");
    let server = LegacyServer::start(ece_ip, &chunk_dir, mode);

    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr().port().to_string()]);
    let mut expected_chunks = ChunkSet::EMPTY;
    for name in &chunks {
        let index = name
            .rsplit('_')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("index");
        expected_chunks.insert(index);
    }
    // Legacy peers announce once a minute; here, every half second until heard.
    let entry = net.announce_legacy_until_listed(&c, ece_ip, "ece", &chunks, |e| {
        e.content == "ece" && e.chunks == expected_chunks
    });
    assert_eq!(
        entry.addr,
        server.addr(),
        "legacy holder's address: its IP, --legacy-chunk-port"
    );
    assert_eq!(entry.proto, Proto::Legacy);
    assert_eq!(
        (entry.size, entry.sha256),
        (None, None),
        "legacy peers announce no identity"
    );

    let out = c.downloader(&["get", "ece"]);
    assert_success(&out, "downloader get ece (from a legacy peer)");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    assert!(
        all_output(&out).to_lowercase().contains("unverified"),
        "the downloader should say the legacy download is unverified\n{}\nlegacy server got: {:?}",
        describe_output(&out),
        server.requests()
    );
    let events = c.client_events();
    let fetched = matching(&events, "fetched", &[("content", "ece"), ("outcome", "ok")]);
    assert!(
        !fetched.is_empty(),
        "no fetched events:\n{}",
        show_events(&events)
    );
    for event in fetched {
        assert_eq!(event.get("verified"), Some("no"), "{event}");
        assert_eq!(
            event.get("source"),
            Some(server.addr().to_string().as_str()),
            "{event}"
        );
    }
    let done = matching(
        &events,
        "download",
        &[("content", "ece"), ("outcome", "ok")],
    );
    assert!(
        !done.is_empty(),
        "no download outcome=ok:\n{}",
        show_events(&events)
    );
}

#[test]
fn three_byte_file_from_legacy_peer_with_fewer_than_five_chunk_files() {
    download_from_legacy_peer(3, Mode::Close);
}

#[test]
fn one_mebibyte_file_from_legacy_peer() {
    download_from_legacy_peer((1 << 20) + 1, Mode::Close);
}

#[test]
fn legacy_server_that_never_closes_still_completes() {
    download_from_legacy_peer(100_003, Mode::NeverClose);
}

#[test]
fn legacy_listener_and_downloader_get_our_content() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let (original, _) = a.write_share("photo.png", (1 << 20) + 2, 99);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);

    let wanted: Vec<String> = (1..=5).map(|i| format!("photo.png_{i}")).collect();
    net.wait_until(
        WAIT,
        "a legacy listener hears alice announce photo.png_1..5",
        || {
            let heard = legacy_listen_once(net.udp_port(), Duration::from_millis(1500));
            heard
                .iter()
                .find(|h| {
                    let files: Vec<&str> = h.json["files"]
                        .as_array()
                        .map(|f| f.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    h.from.ip() == a.ip
                        && h.json["username"] == "alice"
                        && wanted.iter().all(|w| files.contains(&w.as_str()))
                })
                .map(|_| ())
                .ok_or_else(|| format!("heard: {heard:?}"))
        },
    );

    // A legacy downloader only knows the sender's IP and the well-known port; the test's chunk
    // server is on an ephemeral port instead.
    let out = net.root().join("legacy-photo.png");
    let sizes = legacy_download(SocketAddr::from((a.ip, a.chunk_port())), "photo.png", &out)
        .unwrap_or_else(|e| panic!("legacy download from our chunk server: {e}"));
    assert_eq!(sizes.len(), 5);
    assert_same_file(&original, &out);

    let served = wait_for_served_all(&net, &a, "photo.png");
    for event in &served {
        assert_eq!(event.get("proto"), Some("legacy"), "{event}");
    }
}
