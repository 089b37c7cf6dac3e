//! A file shared by one peer is downloaded by another, byte for byte, and then served onward by
//! the peer that downloaded it: the whole life of a content across the four real programs.

use std::path::Path;
use std::time::Duration;

use shared::chunk::chunk_ranges;
use shared::tags::Proto;
use testkit::prelude::*;

/// alice (A) shares `sample.bin` of `size` bytes; carol (C) downloads it; then A goes away and
/// dave (D) downloads it from C, who serves the chunks she downloaded.
fn share_download_and_reshare(size: u64, budget: Duration) {
    let net = TestNet::new(budget);
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("sample.bin", size, size ^ 0x5eed);

    // A shares its default folder, served_files/.
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);

    let entry = net.wait_for_entry(&c, &a, "alice", "sample.bin", digest);
    assert_eq!(entry.proto, Proto::P2p(shared::PROTOCOL_VERSION));
    assert_eq!(entry.size, Some(size), "announced size");
    // Once alice's content is known by its digest, no entry of hers may still offer the same
    // name with no identity: the downloader would take it for another, unverifiable content.
    let tags = c.tags().unwrap_or_else(|e| panic!("{e}"));
    let anonymous: Vec<_> = tags
        .entries
        .iter()
        .filter(|e| e.addr == a.chunk_addr() && e.content == "sample.bin" && e.sha256.is_none())
        .collect();
    assert!(
        anonymous.is_empty(),
        "tags.txt keeps an identity-less entry of alice's sample.bin beside the identified one \
         (announced while her chunk server was between installing the chunks and writing the \
         manifest):\n{tags}"
    );

    let out = c.downloader(&["get", "sample.bin"]);
    assert_success(&out, "carol downloads sample.bin from alice");
    let downloaded = printed_path(&out, &c.dir);
    let expected_path = c.downloads_dir().join("sample.bin");
    assert_eq!(
        canonical(&downloaded),
        canonical(&expected_path),
        "path printed on the last line of stdout\n{}",
        describe_output(&out)
    );
    assert_same_file(&original, &expected_path);
    // The chunk server's manifest carries the file's SHA-256 midstates: every chunk was checked
    // as a step of it as it arrived, and the file was not read again.
    let client_log = std::fs::read_to_string(c.dir.join(shared::CLIENT_LOG)).unwrap_or_default();
    assert!(
        !client_log.contains("hashing the whole file"),
        "the download should be proven in one pass:\n{client_log}"
    );

    wait_for_served_all(&net, &a, "sample.bin");
    let (fetched, download) = assert_fetched_all(&c, "sample.bin");
    for (event, range) in fetched.iter().zip(chunk_ranges(size)) {
        assert_eq!(
            event.get("source"),
            Some(a.chunk_addr().to_string().as_str()),
            "{event}"
        );
        assert_eq!(event.get("user"), Some("alice"), "{event}");
        assert_eq!(event.get("verified"), Some("yes"), "{event}");
        assert_eq!(
            event.get("bytes"),
            Some(range.len().to_string().as_str()),
            "{event}"
        );
    }
    assert_eq!(
        download.get("bytes"),
        Some(size.to_string().as_str()),
        "{download}"
    );
    assert_eq!(
        download.get("sha256"),
        Some(digest.to_string().as_str()),
        "{download}"
    );
    assert_eq!(download.get("verified"), Some("yes"), "{download}");

    let history = c.downloader(&["history"]);
    assert_success(&history, "downloader history");
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("sample.bin"),
        "`downloader history` should list the download of sample.bin\n{}",
        describe_output(&history)
    );

    // Carol now serves what she downloaded (her temp/), and alice leaves.
    c.start_chunk_server(&[], &[]);
    c.start_announcer("carol", ANNOUNCE_INTERVAL_SECS);
    a.stop_all();
    let d = net.peer("d");
    d.start_listener(&[]);
    // Carol announces the same content, identified by the same digest.
    net.wait_for_entry(&d, &c, "carol", "sample.bin", digest);

    let out = d.downloader(&["get", "sample.bin"]);
    assert_success(&out, "dave downloads sample.bin from carol");
    assert_same_file(&original, &printed_path(&out, &d.dir));
    assert_same_file(&original, &d.downloads_dir().join("sample.bin"));
    wait_for_served_all(&net, &c, "sample.bin");
    let (fetched, _) = assert_fetched_all(&d, "sample.bin");
    for event in &fetched {
        assert_eq!(
            event.get("source"),
            Some(c.chunk_addr().to_string().as_str()),
            "{event}"
        );
    }
}

fn canonical(path: &Path) -> std::path::PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SMALL: Duration = Duration::from_secs(90);

#[test]
fn empty_file_is_shared_downloaded_and_reshared() {
    share_download_and_reshare(0, SMALL);
}

#[test]
fn one_byte_file_is_shared_downloaded_and_reshared() {
    share_download_and_reshare(1, SMALL);
}

#[test]
fn four_byte_file_is_shared_downloaded_and_reshared() {
    share_download_and_reshare(4, SMALL);
}

#[test]
fn seven_byte_file_is_shared_downloaded_and_reshared() {
    share_download_and_reshare(7, SMALL);
}

#[test]
fn one_mebibyte_and_three_bytes_are_shared_downloaded_and_reshared() {
    share_download_and_reshare((1 << 20) + 3, SMALL);
}

#[test]
fn hundred_mebibytes_are_shared_downloaded_and_reshared() {
    share_download_and_reshare(100 << 20, Duration::from_secs(180));
}
