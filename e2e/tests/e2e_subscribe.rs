//! Subscriptions (seed 004) with the real programs: a peer follows a file another peer shares;
//! when the sharer replaces it, `downloader sync` fetches the new version, verified, puts it in
//! place of the old one (kept in `downloads/.previous/`), and `history` shows the update.

use std::time::{Duration, Instant};

use testkit::prelude::*;

const NAME: &str = "report.txt";

fn version_here(c: &Peer) -> Result<shared::digest::Digest, String> {
    let path = c.downloads_dir().join(NAME);
    if path.exists() {
        Ok(file_digest(&path).0)
    } else {
        Err(format!("no {}", path.display()))
    }
}

/// Waits until `c`'s `downloads/` holds version `wanted` of the followed file.
fn wait_for_version(net: &TestNet, c: &Peer, wanted: shared::digest::Digest) {
    net.wait_until(
        Duration::from_secs(30),
        "the new version",
        || match version_here(c) {
            Ok(v) if v == wanted => Ok(()),
            Ok(v) => Err(format!("still {v}")),
            Err(e) => Err(e),
        },
    );
}

/// alice shares the followed file (version `seed`, rescanned every second) and carol (`c`)
/// hears it; returns its digest.
fn alice_shares(net: &TestNet, a: &Peer, c: &Peer, size: u64, seed: u64) -> shared::digest::Digest {
    let (_, v1) = a.write_share(NAME, size, seed);
    a.start_chunk_server(&[], &["--rescan", "1"]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(c, a, "alice", NAME, v1);
    v1
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe_output(out)))
}

#[test]
fn sync_replaces_a_followed_file_with_each_new_version_and_keeps_the_old_one() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let c = net.peer("c");
    let v1 = alice_shares(&net, &a, &c, 300_000, 1);
    // carol serves what she downloads: the new version too, once it replaced the old one.
    c.start_chunk_server(&[], &[]);
    c.start_announcer("carol", ANNOUNCE_INTERVAL_SECS);

    // Following a name is not downloading: nothing is written until `sync` runs.
    let out = c.downloader(&["subscribe", NAME, "--from", "alice"]);
    assert_success(&out, "subscribe");
    assert!(files_under(&c.downloads_dir()).is_empty());
    let listed = json_of(&c.downloader(&["subscriptions", "--json"]));
    assert_eq!(listed[0]["name"], NAME, "{listed:#}");
    assert_eq!(listed[0]["from"], "alice");
    assert_eq!(listed[0]["current"], serde_json::Value::Null);

    let sync = c.spawn_downloader(&["sync"]);
    let got = net.wait_until(Duration::from_secs(20), "the first version", || {
        version_here(&c)
    });
    assert_eq!(got, v1);

    // A second sync on the folder refuses: one per folder.
    let second = c.downloader(&["sync"]);
    assert_eq!(
        second.status.code(),
        Some(1),
        "{}",
        describe_output(&second)
    );

    // alice replaces the file: the new version reaches c's downloads/ on its own.
    let (_, v2) = a.write_share(NAME, 310_000, 2);
    let replaced = Instant::now();
    wait_for_version(&net, &c, v2);
    eprintln!(
        "the new version was in place {:?} after alice replaced the file",
        replaced.elapsed()
    );
    let kept: Vec<_> = files_under(&c.downloads_dir().join(".previous"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        file_digest(&kept[0].0).0,
        v1,
        "the previous version is kept whole"
    );
    // Only the two versions: no `report (1).txt` left behind.
    assert_eq!(files_under(&c.downloads_dir()).len(), 2);
    // And carol passes the new version on, served from its place in downloads/.
    net.wait_for_entry(&c, &c, "carol", NAME, v2);

    let history = json_of(&c.downloader(&["history", "--json"]));
    let update = history
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["name"] == NAME)
        .expect("an entry for the update");
    assert_eq!(update["outcome"], "ok", "{history:#}");
    assert!(
        update["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("downloads/{NAME}")),
        "{history:#}"
    );
    assert_eq!(
        update["replaced"].as_str(),
        Some(kept[0].0.to_str().unwrap()),
        "{history:#}"
    );
    let listed = json_of(&c.downloader(&["subscriptions", "--json"]));
    assert_eq!(listed[0]["current"], v2.to_string(), "{listed:#}");
    assert_eq!(listed[0]["previous"][0], v1.to_string());

    // Stopped by SIGTERM, sync ends cleanly.
    testkit::process::signal(sync.pid(), "TERM");
    let out = sync.wait(Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Updated"),
        "{}",
        describe_output(&out)
    );

    let out = c.downloader(&["unsubscribe", NAME]);
    assert_success(&out, "unsubscribe");
    assert_eq!(
        json_of(&c.downloader(&["subscriptions", "--json"])),
        serde_json::json!([])
    );
    let again = c.downloader(&["unsubscribe", NAME]);
    assert_eq!(again.status.code(), Some(1), "{}", describe_output(&again));
}

#[test]
fn the_prompt_keeps_a_followed_file_up_to_date_while_it_is_open() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let c = net.peer("c");
    let v1 = alice_shares(&net, &a, &c, 200_000, 3);
    assert_success(&c.downloader(&["subscribe", NAME]), "subscribe");

    // No `downloader sync` runs: the open prompt does the syncing, while nobody types.
    let mut prompt = c.spawn_downloader_on_terminal(&[]);
    let got = net.wait_until(Duration::from_secs(20), "the first version", || {
        version_here(&c)
    });
    assert_eq!(got, v1);
    let (_, v2) = a.write_share(NAME, 210_000, 4);
    wait_for_version(&net, &c, v2);
    // What it did is said before the next prompt line. The file is in place a moment before
    // the pass that put it there reports it: Enter again (every half second) until it shows.
    let mut last_enter: Option<Instant> = None;
    net.wait_until(Duration::from_secs(10), "the prompt says so", || {
        let shown = prompt.stdout_so_far();
        if shown.contains("Updated ") {
            return Ok(());
        }
        if last_enter.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            prompt.type_keys("\r");
            last_enter = Some(Instant::now());
        }
        Err(shown)
    });
    prompt.type_keys("\x04");
    let out = prompt.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert_eq!(
        files_under(&c.downloads_dir().join(".previous")).len(),
        1,
        "the first version is kept"
    );
}
