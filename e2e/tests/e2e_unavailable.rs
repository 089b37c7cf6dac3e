//! A content listed in `tags.txt` whose only holder cannot serve: the download fails cleanly,
//! says so in the legacy words, and leaves nothing in `downloads/`.

use std::fs;
use std::time::Duration;

use testkit::prelude::*;

#[test]
fn download_fails_cleanly_when_no_holder_serves() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let c = net.peer("c");
    let (_, digest) = a.write_share("gone.dat", 4_321, 5);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "gone.dat", digest);

    // The announcer keeps announcing the chunks in temp/, but nobody serves them any more.
    a.stop(Program::ChunkServer);
    net.wait_for_entry(&c, &a, "alice", "gone.dat", digest);

    let out = c.downloader(&["get", "gone.dat"]);
    assert!(
        !out.status.success(),
        "downloader get must fail when no holder serves\n{}",
        describe_output(&out)
    );
    assert!(
        all_output(&out).contains("CANNOT BE DOWNLOADED FROM ONLINE PEERS."),
        "expected the legacy warning `CHUNK … CANNOT BE DOWNLOADED FROM ONLINE PEERS.`\n{}",
        describe_output(&out)
    );
    let left: Vec<_> = fs::read_dir(c.downloads_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "downloads/ must stay empty, holds {left:?}"
    );

    let events = c.client_events();
    assert!(
        !matching(
            &events,
            "download",
            &[("content", "gone.dat"), ("outcome", "failed")]
        )
        .is_empty(),
        "client.log should record `download content=gone.dat … outcome=failed`; events:\n{}",
        show_events(&events)
    );
}
