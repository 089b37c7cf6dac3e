//! No second copy: a shared file is served in place (its five chunks are byte ranges of it),
//! so sharing costs only its manifest on disk; a download, once verified and in `downloads/`,
//! is served from there and leaves no chunk files in `temp/`; a file changed on disk is never
//! served as its old content; a downloaded file deleted from `downloads/` stops being announced.
//! All with the real programs on loopback.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use shared::chunk::chunk_ranges;
use testkit::prelude::*;

/// Bytes of all the files under `dir` (apparent sizes), and the list for messages.
fn bytes_under(dir: &Path) -> (u64, Vec<(std::path::PathBuf, u64)>) {
    let files = files_under(dir);
    (files.iter().map(|(_, len)| len).sum(), files)
}

/// Bytes under `dir`, leaving out `downloads/`.
fn bytes_besides_downloads(dir: &Path) -> (u64, Vec<(std::path::PathBuf, u64)>) {
    let downloads = dir.join(shared::DOWNLOADS_DIR);
    let files: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&downloads))
        .collect();
    (files.iter().map(|(_, len)| len).sum(), files)
}

/// What a legacy client gets when it asks `peer`'s chunk server for `chunk`: the raw bytes, or
/// nothing (a bare close) when the server does not serve it.
fn legacy_fetch(peer: &Peer, chunk: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(peer.chunk_addr()).expect("connect to the chunk server");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("{{\"filename\": {}}}", serde_json::json!(chunk));
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

/// Sets `path`'s modification time `secs` seconds later than it is, so a rewrite shows even on
/// file systems with coarse timestamps.
fn bump_mtime(path: &Path, secs: u64) {
    let old = fs::metadata(path).unwrap().modified().unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old + Duration::from_secs(secs))
        .unwrap();
}

const BIG: u64 = 256 << 20;

#[test]
fn sharing_costs_only_manifests_and_a_download_is_one_copy_served_onward() {
    let net = TestNet::new(Duration::from_secs(300));
    let a = net.peer("a");
    let c = net.peer("c");
    // Outside every peer folder, shared by path.
    let original = net.root().join("elsewhere").join("big.bin");
    let digest = write_random_file(&original, BIG, 0xB16);
    a.start_chunk_server(&[original.as_path()], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "big.bin", digest);

    // Sharing 256 MiB added less than 1 MiB under alice's folder (manifest, logs, run files).
    let (shared_cost, files) = bytes_under(&a.dir);
    assert!(
        shared_cost < 1 << 20,
        "sharing {BIG} bytes added {shared_cost} bytes under the peer folder: {files:?}"
    );

    let out = c.downloader(&["get", "big.bin"]);
    assert_success(&out, "carol downloads big.bin from alice");
    let placed = c.downloads_dir().join("big.bin");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    assert_same_file(&original, &placed);
    // One copy: the file in downloads/, and under 1 MiB besides (no chunk files in temp/).
    let (besides, files) = bytes_besides_downloads(&c.dir);
    assert!(
        besides < 1 << 20,
        "after the download, carol's folder holds {besides} bytes besides downloads/: {files:?}"
    );
    for i in 1..=5 {
        assert!(!c.temp_dir().join(format!("big.bin_{i}")).exists());
    }

    // A second get finds it already there, and copies nothing.
    let again = c.downloader(&["get", "--json", "big.bin"]);
    assert_success(&again, "a second get of big.bin");
    let json: serde_json::Value =
        serde_json::from_slice(&again.stdout).expect("get --json prints JSON");
    assert_eq!(json["already_present"], true, "{json:#}");
    assert_eq!(
        Path::new(json["path"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        placed.canonicalize().unwrap()
    );
    assert!(bytes_besides_downloads(&c.dir).0 < 1 << 20);
    assert_eq!(files_under(&c.downloads_dir()).len(), 1);

    // Carol serves it from downloads/ once alice has left; dave downloads it from her.
    c.start_chunk_server(&[], &[]);
    c.start_announcer("carol", ANNOUNCE_INTERVAL_SECS);
    a.stop_all();
    let d = net.peer("d");
    d.start_listener(&[]);
    net.wait_for_entry(&d, &c, "carol", "big.bin", digest);
    let out = d.downloader(&["get", "big.bin"]);
    assert_success(&out, "dave downloads big.bin from carol");
    assert_same_file(&original, &printed_path(&out, &d.dir));
    wait_for_served_all(&net, &c, "big.bin");
    let (fetched, _) = assert_fetched_all(&d, "big.bin");
    for event in &fetched {
        assert_eq!(
            event.get("source"),
            Some(c.chunk_addr().to_string().as_str()),
            "{event}"
        );
        assert_eq!(event.get("verified"), Some("yes"), "{event}");
    }
    // A legacy client asking for chunk 3 gets exactly its byte range of the file.
    let range = chunk_ranges(BIG)[2];
    let chunk = legacy_fetch(&c, "big.bin_3");
    let data = fs::read(&original).unwrap();
    assert!(chunk == data[range.start as usize..range.end as usize]);

    // Deleted from carol's downloads/: no longer announced, nor served.
    fs::remove_file(&placed).unwrap();
    net.wait_until(WAIT, "carol's big.bin gone from dave's tags.txt", || {
        let tags = d.tags()?;
        let left: Vec<_> = tags
            .entries
            .iter()
            .filter(|e| e.addr == c.chunk_addr() && e.content == "big.bin")
            .collect();
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("still listed: {left:?}"))
    });
    assert!(legacy_fetch(&c, "big.bin_3").is_empty());
}

#[test]
fn a_shared_file_changed_in_place_is_never_served_as_its_old_content() {
    let net = TestNet::new(Duration::from_secs(180));
    let a = net.peer("a");
    let c = net.peer("c");
    const SIZE: u64 = 8 << 20;
    let (path, old_digest) = a.write_share("doc.bin", SIZE, 1);
    let old = fs::read(&path).unwrap();
    // Neither watched nor rescanned: the change below stays unhashed for the whole test.
    a.start_chunk_server(&[], &["--no-watch", "--rescan", "3600"]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "doc.bin", old_digest);
    let range = chunk_ranges(SIZE)[0];
    let old_chunk = &old[range.start as usize..range.end as usize];
    assert!(legacy_fetch(&a, "doc.bin_1") == old_chunk);

    // Same size, new content, new modification time. The chunk server neither watches nor
    // rescans here (once an hour), so it has not hashed the new content: until it does,
    // nothing is served, and the announcer, which looks at the files served in place, withdraws
    // it.
    let new_digest = write_random_file(&path, SIZE, 2);
    bump_mtime(&path, 2);
    let new = fs::read(&path).unwrap();
    assert!(legacy_fetch(&a, "doc.bin_1").is_empty(), "old chunk served");
    net.wait_until(
        WAIT,
        "alice's doc.bin withdrawn from carol's tags.txt",
        || {
            let tags = c.tags()?;
            let left: Vec<_> = tags
                .entries
                .iter()
                .filter(|e| e.addr == a.chunk_addr() && e.content == "doc.bin")
                .collect();
            left.is_empty()
                .then_some(())
                .ok_or_else(|| format!("still listed: {left:?}"))
        },
    );
    // Nothing old to download: a clean failure, no file placed.
    let out = c.downloader(&["get", "doc.bin"]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(files_under(&c.downloads_dir()).is_empty());

    // Restarted (a rescan at start): hashed anew, announced and served as the new content.
    a.stop(Program::ChunkServer);
    a.start_chunk_server(&[], &[]);
    net.wait_for_entry(&c, &a, "alice", "doc.bin", new_digest);
    let out = c.downloader(&["get", "doc.bin"]);
    assert_success(&out, "carol downloads the new doc.bin");
    let got = fs::read(printed_path(&out, &c.dir)).unwrap();
    assert!(got == new, "carol got something else than the new content");
    let (fetched, _) = assert_fetched_all(&c, "doc.bin");
    for event in &fetched {
        assert_eq!(event.get("verified"), Some("yes"), "{event}");
    }
}

#[test]
fn a_shared_file_rewritten_during_a_download_never_gives_a_mixed_file() {
    let net = TestNet::new(Duration::from_secs(180));
    let a = net.peer("a");
    let c = net.peer("c");
    const SIZE: u64 = 20 << 20;
    let (path, old_digest) = a.write_share("live.bin", SIZE, 3);
    let old = fs::read(&path).unwrap();
    // Slow enough that the five chunks are still on their way when the file is rewritten.
    a.start_chunk_server(
        &[],
        &["--max-rate", "2000000", "--no-watch", "--rescan", "3600"],
    );
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "live.bin", old_digest);

    let download = c.spawn_downloader(&["get", "live.bin"]);
    net.wait_until(WAIT, "carol receiving live.bin", || {
        (c.incoming_bytes() > 0)
            .then_some(())
            .ok_or_else(|| "nothing received yet".to_owned())
    });
    // Rewritten in place (same inode, same size), as an editor saving over it would.
    let new_digest = write_random_file(&path, SIZE, 4);
    bump_mtime(&path, 2);
    assert_ne!(new_digest, old_digest);
    let new = fs::read(&path).unwrap();
    let out = download.wait(Duration::from_secs(120));
    let placed = c.downloads_dir().join("live.bin");
    eprintln!("the download after the rewrite: {}", describe_output(&out));
    if out.status.success() {
        // Only a whole, verified version: the old one, had it all arrived before the rewrite.
        let got = fs::read(&placed).unwrap();
        assert!(got == old || got == new, "a mixed file was accepted");
    } else {
        assert!(
            files_under(&c.downloads_dir()).is_empty(),
            "a failed download left a file: {}",
            describe_output(&out)
        );
    }
}

#[test]
fn a_download_into_a_relative_peer_folder_is_served_by_its_chunk_server() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("rel.bin", 300_000, 5);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "rel.bin", digest);
    // `--dir .`, run from inside the peer folder: the placed file is recorded by an absolute
    // path, which the chunk server (another working directory) finds.
    let out = std::process::Command::new(Program::Downloader.path())
        .args(["--dir", ".", "get", "rel.bin"])
        .current_dir(&c.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the downloader");
    assert_success(&out, "carol downloads rel.bin with --dir .");
    assert_same_file(&original, &c.downloads_dir().join("rel.bin"));
    let store = shared::store::ChunkStore::open(c.temp_dir()).unwrap();
    let stored = store.load_manifest("rel.bin").unwrap().expect("a manifest");
    let placed = stored.in_place().expect("served in place").path;
    assert!(placed.is_absolute(), "{}", placed.display());
    assert_eq!(
        placed.canonicalize().unwrap(),
        c.downloads_dir().join("rel.bin").canonicalize().unwrap()
    );
    c.start_chunk_server(&[], &[]);
    let range = chunk_ranges(300_000)[4];
    let data = fs::read(&original).unwrap();
    net.wait_until(WAIT, "carol's chunk server serves rel.bin_5", || {
        (legacy_fetch(&c, "rel.bin_5") == data[range.start as usize..range.end as usize])
            .then_some(())
            .ok_or_else(|| "not served".to_owned())
    });
}
