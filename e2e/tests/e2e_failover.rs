//! A holder dies in the middle of a download: the downloader carries on with the other holder
//! and still delivers the exact file.

use std::fs;
use std::time::{Duration, Instant};

use testkit::prelude::*;

/// 30 MiB at 2 MiB/s per connection: each 6 MiB chunk takes about 3 s, time enough to kill a
/// holder mid-transfer.
const SIZE: u64 = 30 << 20;
const MAX_RATE: &str = "2097152";

#[test]
fn download_survives_a_holder_killed_mid_transfer() {
    let net = TestNet::new(Duration::from_secs(150));
    let a = net.peer("a");
    let b = net.peer("b");
    let c = net.peer("c");
    let (original, digest) = a.write_share("movie.mkv", SIZE, 42);
    fs::copy(&original, b.share_dir().join("movie.mkv")).expect("copy to bob");

    // Both share their folder, given explicitly.
    for (peer, user) in [(&a, "alice"), (&b, "bob")] {
        let share = peer.share_dir();
        peer.start_chunk_server(&[share.as_path()], &["--max-rate", MAX_RATE]);
        peer.start_announcer(user, ANNOUNCE_INTERVAL_SECS);
    }
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "movie.mkv", digest);
    net.wait_for_entry(&c, &b, "bob", "movie.mkv", digest);

    let mut download = c.spawn_downloader(&["get", "movie.mkv"]);
    // Kill alice once some chunk is well under way (bytes received), so that the downloader
    // must drop or resume a partly received chunk; give up waiting after 5 s and kill her
    // anyway.
    let largest_part = || {
        testkit::files::receiving_record(&c.temp_dir(), "movie.mkv")
            .map_or(0, |counts| counts.into_iter().max().unwrap_or(0))
    };
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut part = largest_part();
    while part < 512 << 10 && Instant::now() < give_up && download.is_running() {
        std::thread::sleep(POLL);
        part = largest_part();
    }
    a.stop_all();
    assert!(
        download.is_running(),
        "the download should still be in progress when alice is killed (most bytes of a chunk: \
         {part}); raise SIZE or lower MAX_RATE"
    );

    let out = download.wait(Duration::from_secs(120));
    assert_success(&out, "download while alice is killed");
    assert_same_file(&original, &printed_path(&out, &c.dir));

    let events = c.client_events();
    let from_bob = matching(
        &events,
        "fetched",
        &[
            ("content", "movie.mkv"),
            ("source", &b.chunk_addr().to_string()),
            ("outcome", "ok"),
        ],
    );
    assert!(
        !from_bob.is_empty(),
        "expected at least one chunk fetched from bob ({}) after alice died; events:\n{}",
        b.chunk_addr(),
        show_events(&events)
    );
    let (_, done) = assert_fetched_all(&c, "movie.mkv");
    assert_eq!(
        done.get("sha256"),
        Some(digest.to_string().as_str()),
        "{done}"
    );
}
