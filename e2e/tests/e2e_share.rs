//! Sharing without restarts: `downloader share` / `unshare` / `shared` on a running peer. A file
//! shared appears in another peer's `tags.txt` within a second, and an unshared one disappears
//! from it as fast (withdrawn, not left to expire: the announce interval here is a minute);
//! the list is kept in the peer folder and survives a chunk-server restart.
//!
//! The latencies are printed (`cargo test -p e2e --test e2e_share -- --nocapture`); the
//! assertions only bound them generously, as timed assertions must not be tight.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shared::digest::Digest;
use shared::tags::TagsIndex;
use testkit::prelude::*;
use testkit::process::{assert_failed_once_with, Program};
use testkit::wait::FAST_POLL;

/// Long enough that nothing expires during the test: what disappears was withdrawn.
const INTERVAL_SECS: u64 = 60;

/// The generous bound on a latency measured here (the promise is one second).
const BOUND: Duration = Duration::from_secs(10);

/// Whether `tags` lists alice's complete `content` of digest `sha256` at `holder`.
fn lists(tags: &TagsIndex, holder: &Peer, content: &str, sha256: Option<Digest>) -> bool {
    tags.entries.iter().any(|e| {
        e.user == "alice"
            && e.addr == holder.chunk_addr()
            && e.content == content
            && sha256
                .is_none_or(|d| e.sha256 == Some(d) && e.chunks == shared::chunk::ChunkSet::ALL)
    })
}

/// How long after `start` `viewer`'s tags.txt first satisfies `cond`; panics after [`BOUND`].
fn latency(
    start: Instant,
    viewer: &Peer,
    what: &str,
    cond: impl Fn(&TagsIndex) -> bool,
) -> Duration {
    loop {
        if let Ok(tags) = viewer.tags() {
            if cond(&tags) {
                return start.elapsed();
            }
        }
        if start.elapsed() > BOUND {
            panic!(
                "{what}: not within {BOUND:?}\n{}",
                viewer.tags().map(|t| t.to_string()).unwrap_or_else(|e| e)
            );
        }
        std::thread::sleep(FAST_POLL / 4);
    }
}

/// `downloader shared --json` of `peer`, parsed.
fn shared_json(peer: &Peer) -> Vec<serde_json::Value> {
    let out = peer.downloader(&["shared", "--json"]);
    assert_success(&out, "downloader shared --json");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("shared --json is not JSON: {e}\n{}", describe_output(&out)));
    value.as_array().expect("an array").clone()
}

fn find<'a>(items: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    items.iter().find(|i| i["name"] == name)
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().expect("canonical path")
}

#[test]
fn share_and_unshare_while_running_reach_other_peers_within_a_second() {
    let net = TestNet::new(Duration::from_secs(180));
    let a = net.peer("a");
    let b = net.peer("b");
    let (_, base_digest) = a.write_share("base.txt", 2_000, 7);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", INTERVAL_SECS);
    a.start_listener(&[]);
    b.start_listener(&[]);
    net.wait_for_entry(&b, &a, "alice", "base.txt", base_digest);

    // Share a file outside served_files/ while everything runs.
    let outside = net.folder("outside");
    let report = outside.join("report.bin");
    let digest = write_random_file(&report, 100_003, 11);
    let out = a.downloader(&["share", report.to_str().unwrap()]);
    assert_success(&out, "downloader share report.bin");
    let shared_after = latency(Instant::now(), &b, "report.bin listed by b", |t| {
        lists(t, &a, "report.bin", Some(digest))
    });
    println!(
        "share latency: {} ms (share returned -> listed in b's tags.txt)",
        shared_after.as_millis()
    );
    let list = std::fs::read_to_string(a.dir.join("shares.txt")).expect("shares.txt");
    assert!(
        list.lines().any(|l| Path::new(l) == canonical(&report)),
        "{list}"
    );

    // b downloads it, byte for byte.
    let got = b.downloader(&["get", "report.bin"]);
    assert_success(&got, "b downloads report.bin");
    assert_same_file(&report, &printed_path(&got, &b.dir));

    // `shared --json` lists it with its digest and path, and base.txt of served_files/.
    let items = shared_json(&a);
    let item = find(&items, "report.bin").unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(item["sha256"], digest.to_string());
    assert_eq!(item["size"], 100_003);
    assert_eq!(item["hashed"], true);
    assert_eq!(
        Path::new(item["path"].as_str().unwrap()),
        canonical(&report)
    );
    assert!(find(&items, "base.txt").is_some(), "{items:?}");

    // A path that does not exist: a clear error, status 1, and the list unchanged.
    let before = std::fs::read(a.dir.join("shares.txt")).unwrap();
    let missing = outside.join("no-such-file.bin");
    let out = a.downloader(&["share", missing.to_str().unwrap()]);
    assert_failed_once_with(&out, 1, "cannot share");
    assert!(
        all_output(&out).contains("no-such-file.bin"),
        "{}",
        describe_output(&out)
    );
    assert_eq!(std::fs::read(a.dir.join("shares.txt")).unwrap(), before);

    // The list survives a chunk-server restart: report.bin is still shared, not dropped.
    a.stop(Program::ChunkServer);
    a.start_chunk_server(&[], &[]);
    net.wait_until(WAIT, "the restarted chunk server listens", || {
        let log = std::fs::read_to_string(a.dir.join("server.log")).unwrap_or_default();
        (log.matches("listening on").count() >= 2)
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    });
    let items = shared_json(&a);
    assert_eq!(
        find(&items, "report.bin").map(|i| i["hashed"].clone()),
        Some(serde_json::Value::Bool(true)),
        "{items:?}"
    );
    net.wait_for_entry(&b, &a, "alice", "report.bin", digest);

    // Unshare by name: gone from b's tags.txt at once, though nothing expires for minutes.
    let out = a.downloader(&["unshare", "report.bin"]);
    assert_success(&out, "downloader unshare report.bin");
    let unshared_after = latency(Instant::now(), &b, "report.bin gone from b", |t| {
        !lists(t, &a, "report.bin", None)
    });
    println!(
        "unshare latency: {} ms (unshare returned -> gone from b's tags.txt)",
        unshared_after.as_millis()
    );
    assert!(find(&shared_json(&a), "report.bin").is_none());
    let list = std::fs::read_to_string(a.dir.join("shares.txt")).unwrap();
    assert!(!list.contains("report.bin"), "{list}");

    // A file of served_files/, which the list does not hold: excluded, gone the same way.
    let out = a.downloader(&["unshare", "base.txt"]);
    assert_success(&out, "downloader unshare base.txt");
    let excluded_after = latency(Instant::now(), &b, "base.txt gone from b", |t| {
        !lists(t, &a, "base.txt", None)
    });
    println!(
        "unshare (served_files) latency: {} ms",
        excluded_after.as_millis()
    );
    assert!(std::fs::read_to_string(a.dir.join("shares.txt"))
        .unwrap()
        .contains("-base.txt"));
    // And shared again.
    let out = a.downloader(&["share", a.share_dir().join("base.txt").to_str().unwrap()]);
    assert_success(&out, "downloader share base.txt again");
    let again_after = latency(Instant::now(), &b, "base.txt back in b", |t| {
        lists(t, &a, "base.txt", Some(base_digest))
    });
    println!("share again latency: {} ms", again_after.as_millis());

    // Not shared: an error.
    let out = a.downloader(&["unshare", "report.bin"]);
    assert_failed_once_with(&out, 1, "is not shared");
}

#[test]
fn concurrent_shares_all_land_in_the_list() {
    let net = TestNet::new(Duration::from_secs(60));
    let a = net.peer("a");
    let files = net.folder("files");
    let paths: Vec<PathBuf> = (0..6)
        .map(|i| {
            let path = files.join(format!("f{i}.txt"));
            std::fs::write(&path, format!("file {i}")).unwrap();
            path
        })
        .collect();
    let runs: Vec<RunningDownloader> = paths
        .iter()
        .map(|p| a.spawn_downloader(&["share", p.to_str().unwrap()]))
        .collect();
    for run in runs {
        assert_success(
            &run.wait(DOWNLOADER_TIMEOUT),
            "downloader share, six at once",
        );
    }
    let list = std::fs::read_to_string(a.dir.join("shares.txt")).unwrap();
    for path in &paths {
        assert!(
            list.lines().any(|l| Path::new(l) == canonical(path)),
            "{} missing from shares.txt:\n{list}",
            path.display()
        );
    }
    // Without a chunk server nothing is hashed yet, and `shared` says so.
    let items = shared_json(&a);
    assert_eq!(items.len(), 6, "{items:?}");
    assert!(items
        .iter()
        .all(|i| i["hashed"] == false && i["sha256"].is_null()));
}

#[test]
fn share_unshare_and_shared_at_the_prompt() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let net = TestNet::new(Duration::from_secs(60));
    let a = net.peer("a");
    let file = net.folder("files").join("my notes.txt");
    std::fs::write(&file, b"notes").unwrap();
    let mut child = Command::new(Program::Downloader.path())
        .args(["--dir", a.dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the prompt");
    let script = format!(
        "share {}\nshared\nunshare my notes.txt\nshared\nunshare my notes.txt\nshare\nquit\n",
        file.display()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "the prompt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shown = format!("sharing {}", canonical(&file).display());
    assert!(stdout.contains(&shown), "{stdout}");
    assert!(
        stdout.contains("my notes.txt") && stdout.contains("(hashing)"),
        "{stdout}"
    );
    assert!(stdout.contains("no longer sharing"), "{stdout}");
    assert!(stdout.contains("Nothing is shared"), "{stdout}");
    assert!(
        stdout.contains("error: \"my notes.txt\" is not shared"),
        "{stdout}"
    );
    assert!(stdout.contains("usage: share PATH"), "{stdout}");
}
