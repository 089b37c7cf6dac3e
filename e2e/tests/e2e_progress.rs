//! What `downloader get` shows while it runs and when it fails: a live bar on a terminal (a
//! pseudo-terminal from `script`), plain lines without escape codes on a pipe, nothing with
//! `-q`, and one failure summary naming the chunks, the holder and why, with no log lines.

use std::fs;
use std::time::Duration;

use testkit::prelude::*;

/// 12 MiB at 1 MiB/s per connection (5 in parallel) from one holder: about 2.5 s, time for
/// many frames.
const SIZE: u64 = 12 << 20;
const MAX_RATE: &str = "1048576";

/// Alice serves `clip.mp4` slowly; the returned downloader peer lists it.
fn slow_share(net: &TestNet) -> (Peer, Peer, std::path::PathBuf) {
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("clip.mp4", SIZE, 9);
    let share = a.share_dir();
    a.start_chunk_server(&[share.as_path()], &["--max-rate", MAX_RATE]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "clip.mp4", digest);
    (a, c, original)
}

/// Whether `text` holds a `key=value` token, as the log's event lines do.
fn has_log_pair(text: &str) -> bool {
    text.split_whitespace().any(|word| {
        word.split_once('=').is_some_and(|(k, v)| {
            !k.is_empty() && !v.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    })
}

#[test]
fn a_terminal_gets_a_live_bar_and_a_pipe_plain_lines() {
    let net = TestNet::new(Duration::from_secs(150));
    let (_a, c, original) = slow_share(&net);

    let out = c
        .spawn_downloader_on_terminal(&["get", "clip.mp4"])
        .wait(Duration::from_secs(60));
    assert_success(&out, "get on a terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|f| f.contains("clip.mp4") && f.contains("MiB / 12.0 MiB") && f.contains("/s"))
        .collect();
    assert!(
        frames.len() >= 2,
        "expected the bar redrawn in place (name, bytes done / total, rate) several times:\n{screen:?}"
    );
    assert!(
        screen.contains('\x1b') && screen.contains("ETA"),
        "expected indicatif's escape codes and an ETA on the terminal:\n{screen:?}"
    );
    assert!(
        screen.contains("Received 12.0 MiB in") && screen.contains("from 1 holder(s)"),
        "the final line should say what moved and how fast:\n{screen}"
    );
    assert_same_file(&original, &c.downloads_dir().join("clip.mp4"));

    // Again into a pipe (after removing the copy, the only one: its chunks are served from
    // it, not kept in temp/): no escape codes, no redraws, no bar.
    fs::remove_file(c.downloads_dir().join("clip.mp4")).expect("remove the first copy");
    for i in 1..=5 {
        assert!(!c.temp_dir().join(format!("clip.mp4_{i}")).exists());
    }
    let out = c.downloader(&["get", "clip.mp4"]);
    assert_success(&out, "get into a pipe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r') && !stderr.contains("ETA"),
        "no escape codes and no bar off a terminal:\n{stderr:?}"
    );
    assert!(
        stderr.contains("Downloading clip.mp4") && stderr.contains("Received 12.0 MiB in"),
        "the start and finish lines stay:\n{stderr}"
    );
    assert!(!has_log_pair(&stderr), "no log lines on stderr:\n{stderr}");
}

#[test]
fn the_prompt_on_a_terminal_shows_a_bar_per_chunk_with_its_holder() {
    let net = TestNet::new(Duration::from_secs(150));
    let (a, c, original) = slow_share(&net);
    let mut prompt = c.spawn_downloader_on_terminal(&[]);
    net.wait_until(Duration::from_secs(10), "the prompt lists clip.mp4", || {
        let screen = prompt.stdout_so_far();
        screen.contains("1  clip.mp4").then_some(()).ok_or(screen)
    });
    prompt.type_line("1");
    net.wait_until(Duration::from_secs(60), "the download ends", || {
        let screen = prompt.stdout_so_far();
        screen.contains("Done:").then_some(()).ok_or(screen)
    });
    prompt.type_line("quit");
    let out = prompt.wait(Duration::from_secs(20));
    assert_success(&out, "the prompt");
    let screen = String::from_utf8_lossy(&out.stdout);
    let alice = format!("from alice@{}", a.chunk_addr());
    for i in 1..=5 {
        assert!(
            screen.contains(&format!("chunk {i}/5 [")),
            "a bar for chunk {i}:\n{screen:?}"
        );
    }
    assert!(
        screen.contains(&format!("MiB / 2.4 MiB {alice}")),
        "each chunk's bar says how far it got and who sends it:\n{screen:?}"
    );
    assert_same_file(&original, &c.downloads_dir().join("clip.mp4"));
}

#[test]
fn quiet_prints_only_the_path() {
    let net = TestNet::new(Duration::from_secs(120));
    let (_a, c, original) = slow_share(&net);
    let out = c.downloader(&["get", "-q", "clip.mp4"]);
    assert_success(&out, "get -q");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "-q prints nothing on stderr for a successful get"
    );
    assert_same_file(&original, &printed_path(&out, &c.dir));
}

#[test]
fn a_failed_download_prints_one_summary_and_no_log_lines() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let c = net.peer("c");
    let (_, digest) = a.write_share("gone.dat", 40_000, 5);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "gone.dat", digest);
    // Alice keeps announcing, but nobody serves her chunks any more.
    a.stop(Program::ChunkServer);

    let out = c.downloader(&["get", "gone.dat"]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alice = format!("alice@{}", a.chunk_addr());
    assert_eq!(
        stderr
            .matches("Download failed: 5 of 5 chunks could not be fetched:")
            .count(),
        1,
        "one summary:\n{stderr}"
    );
    for i in 1..=5 {
        assert_eq!(
            stderr
                .matches(&format!("CHUNK gone.dat_{i} CANNOT BE DOWNLOADED"))
                .count(),
            1,
            "chunk {i} named once:\n{stderr}"
        );
    }
    let reasons: Vec<&str> = stderr.lines().filter(|l| l.contains(&alice)).collect();
    assert!(
        reasons.len() == 1
            && reasons[0].contains(&format!("{alice} (chunks 1, 2, 3, 4, 5): "))
            && reasons[0].contains("Connection refused"),
        "alice named once, with her chunks and why:\n{stderr}"
    );
    assert!(
        stderr.contains("partial data is kept: run the same command again to resume"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("trying another holder"),
        "there is no other holder:\n{stderr}"
    );
    assert!(!has_log_pair(&stderr), "no key=value log lines:\n{stderr}");
    let log = fs::read_to_string(c.dir.join("client.log")).expect("client.log");
    assert!(
        log.contains("cannot get the manifest of \"gone.dat\""),
        "the details stay in client.log:\n{log}"
    );
}
