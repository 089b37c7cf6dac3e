//! Seeing the network with the real programs: `downloader peers` lists every peer heard (three
//! of ours with their file counts, and a legacy one) and whether its chunk server answers;
//! `find` matches by substring and glob across all holders, legacy ones included; `list --from
//! USER` shows one peer's files, and an unknown user is a clear error. One piped prompt run
//! shows the same commands at the prompt.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::legacy::{legacy_split, LegacyServer, Mode};
use testkit::prelude::*;

/// The one JSON value a `--json` run printed on stdout.
fn json_of(out: &Output) -> Value {
    assert_success(out, "a --json command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{}", describe_output(out));
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", describe_output(out)))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn peers_find_and_list_from_show_the_network() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let b = net.peer("b");
    let d = net.peer("d");
    let c = net.peer("c");

    // alice shares 1 file, bob 2, dave 3; dave's chunk server will be stopped.
    let (_, alice_photo) = a.write_share("Holiday Photo.jpg", 20_000, 1);
    let (_, bob_notes) = b.write_share("notes.txt", 3_000, 2);
    let (_, bob_photo) = b.write_share("beach.JPG", 9_000, 3);
    let (_, dave_a) = d.write_share("report.pdf", 5_000, 4);
    let (_, dave_b) = d.write_share("song.mp3", 7_000, 5);
    let (_, dave_c) = d.write_share("notes-2024.txt", 1_000, 6);
    for (peer, user) in [(&a, "alice"), (&b, "bob"), (&d, "dave")] {
        peer.start_chunk_server(&[], &[]);
        peer.start_announcer(user, ANNOUNCE_INTERVAL_SECS);
    }
    c.start_listener(&[]);

    // A legacy peer `ece` offers `sunset.jpg` (content `sunset`) from a legacy server.
    let ece_ip = net.next_ip();
    let ece_dir = net.folder("ece-legacy");
    let original = ece_dir.join("sunset.jpg");
    write_random_file(&original, 4_000, 7);
    let chunk_dir = ece_dir.join("chunks");
    let (content, chunks) = legacy_split(&original, &chunk_dir);
    let server = LegacyServer::start(ece_ip, &chunk_dir, Mode::Close);
    c.stop(Program::Listener);
    c.start_listener(&["--legacy-chunk-port", &server.addr().port().to_string()]);

    for (holder, user, name, digest) in [
        (&a, "alice", "Holiday Photo.jpg", alice_photo),
        (&b, "bob", "notes.txt", bob_notes),
        (&b, "bob", "beach.JPG", bob_photo),
        (&d, "dave", "report.pdf", dave_a),
        (&d, "dave", "song.mp3", dave_b),
        (&d, "dave", "notes-2024.txt", dave_c),
    ] {
        net.wait_for_entry(&c, holder, user, name, digest);
    }
    net.announce_legacy_until_listed(&c, ece_ip, "ece", &chunks, |e| e.content == content);

    // dave's chunk server stops; his announcer (a fixed --chunk-port) keeps announcing.
    d.stop(Program::ChunkServer);
    net.wait_until(WAIT, "dave's chunk port is closed", || {
        (!tcp_listening(d.chunk_addr()))
            .then_some(())
            .ok_or_else(|| "still listening".to_owned())
    });

    // peers --json: all four, sorted by user, with counts, protocols and answers.
    let out = c.downloader(&["peers", "--json"]);
    let peers = json_of(&out);
    let by_user: BTreeMap<&str, &Value> = peers
        .as_array()
        .expect("array")
        .iter()
        .map(|p| (p["user"].as_str().expect("user"), p))
        .collect();
    let users: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob", "dave", "ece"], "{peers:#}");
    for (user, addr, protocol, files, answers) in [
        ("alice", a.chunk_addr(), "p2p", 1, true),
        ("bob", b.chunk_addr(), "p2p", 2, true),
        ("dave", d.chunk_addr(), "p2p", 3, false),
        ("ece", server.addr(), "legacy", 1, true),
    ] {
        let p = by_user[user];
        assert_eq!(p["address"], addr.to_string(), "{user}: {p:#}");
        assert_eq!(p["protocol"], protocol, "{user}: {p:#}");
        assert_eq!(p["files"], files, "{user}: {p:#}");
        assert_eq!(p["answers"], answers, "{user}: {p:#}");
        assert!(
            p["last_seen"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{p:#}"
        );
        assert!(p["interval"].as_u64().is_some(), "{p:#}");
    }
    assert_eq!(by_user["alice"]["version"], 1);
    assert_eq!(by_user["ece"]["version"], Value::Null);

    // The table: one row per peer, the stopped server said so.
    let out = c.downloader(&["peers"]);
    assert_success(&out, "downloader peers");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 5, "{text}");
    let row = |user: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{user} ")))
            .unwrap_or_else(|| panic!("no row for {user}:\n{text}"))
            .to_owned()
    };
    assert!(row("dave").contains("no answer"), "{text}");
    assert!(row("alice").contains("answers"), "{text}");
    assert!(row("ece").contains("legacy"), "{text}");

    // find: a substring ignoring case, and a glob, across holders (the legacy one included).
    let out = c.downloader(&["find", "NOTES", "--json"]);
    assert_eq!(names(&json_of(&out)), ["notes-2024.txt", "notes.txt"]);
    let out = c.downloader(&["find", "*.jpg", "--json"]);
    assert_eq!(names(&json_of(&out)), ["Holiday Photo.jpg", "beach.JPG"]);
    let out = c.downloader(&["find", "sun*", "--json"]);
    let sunset = json_of(&out);
    assert_eq!(names(&sunset), ["sunset"]);
    assert_eq!(sunset[0]["holders"][0]["user"], "ece");
    assert_eq!(sunset[0]["holders"][0]["protocol"], "legacy");
    // As text, each match with its holders' addresses.
    let out = c.downloader(&["find", "photo"]);
    assert_success(&out, "find photo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("Holiday Photo.jpg"), "{text}");
    assert!(
        text.contains(&format!("alice@{}", a.chunk_addr())),
        "{text}"
    );
    assert!(!text.contains("notes"), "{text}");
    let out = c.downloader(&["find", "zzz"]);
    assert_success(&out, "find zzz");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No file on offer matches"),
        "{}",
        describe_output(&out)
    );

    // list --from USER: that user's files only, its name's case ignored.
    let out = c.downloader(&["list", "--from", "BOB", "--json"]);
    let bobs = json_of(&out);
    assert_eq!(names(&bobs), ["beach.JPG", "notes.txt"]);
    for item in bobs.as_array().unwrap() {
        assert_eq!(item["holders"][0]["user"], "bob", "{item:#}");
    }
    let out = c.downloader(&["list", "--from", "ece"]);
    assert_success(&out, "list --from ece");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("sunset"), "{text}");
    // An unknown user: exit 1, the users heard named.
    let out = c.downloader(&["list", "--from", "mallory"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mallory") && stderr.contains("alice, bob, dave, ece (legacy)"),
        "{}",
        describe_output(&out)
    );

    // The same at the prompt, from piped input.
    let mut prompt = Command::new(Program::Downloader.path());
    prompt
        .arg("--dir")
        .arg(&c.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = output_with_input(
        prompt,
        "peers\nfind *.txt\nfiles alice\nlist --from nobody\nquit\n",
    );
    assert_success(&out, "the prompt");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("no answer"), "peers at the prompt:\n{text}");
    assert!(
        text.contains(&format!("bob@{}", b.chunk_addr())),
        "find at the prompt:\n{text}"
    );
    assert!(text.contains("Holiday Photo.jpg"), "files alice:\n{text}");
    assert!(
        text.contains("no peer named \"nobody\" is heard"),
        "unknown user at the prompt:\n{text}"
    );
}

/// Runs `command` with `input` on its standard input, to its end (killed by its handle if it
/// has not ended within [`DOWNLOADER_TIMEOUT`]).
fn output_with_input(mut command: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command.spawn().expect("start the downloader");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let deadline = Instant::now() + DOWNLOADER_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = kill_and_reap(&mut child);
            panic!("the prompt did not end with its input");
        }
        std::thread::sleep(POLL);
    }
    child.wait_with_output().expect("output")
}
