//! The chunk server's scans of its shares (issue 12): it answers from its first moment and
//! serves each file as soon as it is hashed, a restart hashes nothing again, and a change in
//! the shares is picked up at once by watching them, not by scanning every file every few
//! seconds. In-process (`chunk_server::run` on a thread), real TCP clients on loopback.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use chunk_server::Config;
use shared::protocol::{ErrorCode, Request, Response};
use shared::store::ChunkStore;
use tempfile::TempDir;
use testkit::client::{legacy_fetch, p2p_request};
use testkit::files::pattern;
use testkit::servers::{chunk_server_peer_with, start_chunk_server, start_chunk_server_scanning};
use testkit::wait::{poll_until, WAIT};

/// A peer folder whose `served_files/` holds `files`, and a config serving it that never
/// rescans by the clock: what changes is seen by watching, or not at all.
fn peer_with(files: &[(&str, &[u8])]) -> (TempDir, Config) {
    let (dir, config) = chunk_server_peer_with(files);
    let config = Config {
        rescan: Duration::from_secs(3600),
        ..config
    };
    (dir, config)
}

fn store(dir: &Path) -> ChunkStore {
    ChunkStore::open(dir.join("temp")).unwrap()
}

/// The five chunks of `name`, fetched the legacy way and put together.
fn fetch_whole(addr: std::net::SocketAddr, name: &str) -> Vec<u8> {
    (1..=5)
        .map(|i| legacy_fetch(addr, &format!("{name}_{i}")))
        .collect::<Vec<_>>()
        .concat()
}

fn manifest_request(name: &str) -> Request {
    Request::Manifest {
        content: name.to_owned(),
        content_sha256: None,
    }
}

fn is_not_found(response: &Response) -> bool {
    matches!(
        response,
        Response::Error {
            code: ErrorCode::NotFound,
            ..
        }
    )
}

/// Unix: there a file made long by `set_len` is sparse, costing no disk.
#[cfg(unix)]
#[test]
fn a_file_is_served_while_a_much_bigger_one_is_still_being_hashed() {
    let (dir, mut config) = peer_with(&[("small.txt", &pattern(1000))]);
    // Listed after served_files/, so hashed after small.txt: 32 GiB (sparse, no disk) takes
    // many seconds to hash on any machine.
    let big = dir.path().join("big");
    fs::create_dir(&big).unwrap();
    File::create(big.join("huge.bin"))
        .unwrap()
        .set_len(32 << 30)
        .unwrap();
    config.shares = vec![dir.path().join("served_files"), big];
    let server = start_chunk_server_scanning(config);

    // Answered from the start, before anything is hashed.
    let (response, _) = p2p_request(server.addr, &manifest_request("nothing.bin"));
    assert!(is_not_found(&response), "{response:?}");
    // small.txt is served as soon as it is hashed...
    assert!(
        poll_until(WAIT, || fetch_whole(server.addr, "small.txt")
            == pattern(1000)),
        "small.txt never served"
    );
    // ... while the first scan is still on huge.bin, which is not served before it is hashed.
    assert_eq!(server.progress.scans_done(), 0, "the first scan is over");
    let (response, _) = p2p_request(server.addr, &manifest_request("huge.bin"));
    assert!(is_not_found(&response), "{response:?}");
    assert!(store(dir.path())
        .load_manifest("huge.bin")
        .unwrap()
        .is_none());
    // Dropping the server stops the hash half-way, recording nothing.
}

#[cfg(unix)]
#[test]
fn a_restarted_server_hashes_nothing_again() {
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("f{i}.bin"), pattern(100 + i * 37)))
        .collect();
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
    let (dir, config) = peer_with(&listed);
    let store = store(dir.path());
    let server = start_chunk_server(config.clone());
    // Each manifest file, as written: a manifest written again is a new file (renamed in).
    let identity = |name: &str| {
        let meta = fs::metadata(store.manifest_path(name)).unwrap();
        (
            std::os::unix::fs::MetadataExt::ino(&meta),
            meta.modified().unwrap(),
        )
    };
    let before: Vec<_> = files.iter().map(|(n, _)| identity(n)).collect();
    server.stop().unwrap();

    let server = start_chunk_server(config);
    assert!(server.progress.scans_done() >= 1);
    let after: Vec<_> = files.iter().map(|(n, _)| identity(n)).collect();
    assert_eq!(before, after, "manifests written again: files hashed again");
    for (name, data) in &files {
        assert_eq!(&fetch_whole(server.addr, name), data, "{name}");
    }
}

#[test]
fn changes_in_the_shares_are_picked_up_at_once_though_the_server_never_rescans() {
    let (dir, config) = peer_with(&[("a.txt", b"first version")]);
    let store = store(dir.path());
    let server = start_chunk_server(config);
    assert_eq!(fetch_whole(server.addr, "a.txt"), b"first version");
    let share = dir.path().join("served_files");
    let manifest_size = |name: &str| {
        store
            .load_manifest(name)
            .ok()
            .flatten()
            .map(|m| m.manifest.size)
    };

    // Added: hashed and served.
    fs::write(share.join("b.txt"), b"added later").unwrap();
    assert!(
        poll_until(WAIT, || manifest_size("b.txt") == Some(11)),
        "b.txt not shared"
    );
    assert_eq!(fetch_whole(server.addr, "b.txt"), b"added later");

    // Changed: hashed again, served as its new content.
    fs::write(share.join("a.txt"), b"the second, longer version").unwrap();
    assert!(
        poll_until(WAIT, || manifest_size("a.txt") == Some(26)),
        "a.txt not hashed again"
    );
    assert_eq!(
        fetch_whole(server.addr, "a.txt"),
        b"the second, longer version"
    );

    // A folder made, with a file in it: shared under its nested name.
    fs::create_dir(share.join("later")).unwrap();
    fs::write(share.join("later").join("c.txt"), b"nested").unwrap();
    assert!(
        poll_until(WAIT, || manifest_size("later/c.txt") == Some(6)),
        "later/c.txt not shared"
    );

    // Removed: no longer in the store, nor served.
    fs::remove_file(share.join("b.txt")).unwrap();
    assert!(
        poll_until(WAIT, || manifest_size("b.txt").is_none()),
        "b.txt still shared"
    );
    assert!(legacy_fetch(server.addr, "b.txt_1").is_empty());
}

#[test]
fn a_missing_share_is_shared_as_soon_as_it_appears() {
    let (dir, mut config) = peer_with(&[]);
    let photos = dir.path().join("photos");
    config.shares = vec![dir.path().join("served_files"), photos.clone()];
    let store = store(dir.path());
    let server = start_chunk_server(config);
    fs::create_dir(&photos).unwrap();
    fs::write(photos.join("a.jpg"), b"jpeg").unwrap();
    assert!(
        poll_until(WAIT, || store
            .load_manifest("a.jpg")
            .is_ok_and(|m| m.is_some())),
        "a.jpg not shared"
    );
    assert_eq!(fetch_whole(server.addr, "a.jpg"), b"jpeg");
}
