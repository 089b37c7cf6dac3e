//! Ctrl-C and SIGTERM during `downloader get`: the first signal ends the download within a
//! second, says that it was cancelled and that running the command again resumes, keeps what
//! arrived, and exits with the conventional status (130 for SIGINT, 143 for SIGTERM).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use testkit::prelude::*;

const CONTENT: &str = "slow.bin";

fn cancelled_download_stops_at_once(signal: &str, expected_status: i32) {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let c = net.peer("c");
    // 10 MiB at 1 MB/s per connection: the download takes at least two seconds per chunk.
    let (_, digest) = a.write_share(CONTENT, 10 << 20, 77);
    a.start_chunk_server(&[], &["--max-rate", "1000000"]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", CONTENT, digest);

    let mut running = c.spawn_downloader(&["get", CONTENT]);
    // Wait until bytes are arriving, so the signal lands mid-transfer.
    let incoming = c.temp_dir().join(".incoming");
    net.wait_until(Duration::from_secs(20), "part files growing", || {
        let total: u64 = files_under(&incoming).iter().map(|(_, len)| len).sum();
        if total > 200_000 {
            Ok(())
        } else {
            Err(format!("{total} bytes in temp/.incoming"))
        }
    });
    assert!(running.is_running(), "the download ended before the signal");
    let signalled = Instant::now();
    testkit::process::signal(running.pid(), signal);
    // Generous against a noisy machine; the requirement is one second, and the elapsed time is
    // printed for the record.
    let out = running.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("downloader stopped {took:?} after SIG{signal}");
    assert!(
        took < Duration::from_secs(3),
        "downloader took {took:?} to stop after SIG{signal}\n{}",
        describe_output(&out)
    );
    assert_eq!(
        out.status.code().or(out.status.signal().map(|s| 128 + s)),
        Some(expected_status),
        "exit status after SIG{signal}\n{}",
        describe_output(&out)
    );
    let text = all_output(&out);
    assert!(
        text.contains("cancelled") && text.contains("resume"),
        "the downloader should say the download was cancelled and that a re-run resumes\n{}",
        describe_output(&out)
    );
    // Nothing in downloads/, the bytes received are kept for the next run.
    assert!(files_under(&c.downloads_dir()).is_empty());
    let kept: u64 = files_under(&c.temp_dir())
        .iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(CONTENT))
        })
        .map(|(_, len)| len)
        .sum();
    assert!(kept > 0, "received bytes should be kept in temp/");
    // The cancelled attempt is in the history.
    let outcomes_of = |c: &Peer| {
        let out = c.downloader(&["history", "--json"]);
        assert_success(&out, "history --json");
        let history: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("history --json parses");
        history
            .as_array()
            .expect("an array")
            .iter()
            .filter(|d| d["name"] == CONTENT)
            .map(|d| d["outcome"].as_str().unwrap_or("null").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes_of(&c), ["cancelled"]);

    // And a second run resumes and completes.
    a.stop(Program::ChunkServer);
    a.start_chunk_server(&[], &[]);
    let out = c.downloader(&["get", CONTENT]);
    assert_success(&out, "the download after the cancelled one");
    assert_eq!(file_digest(&printed_path(&out, &c.dir)).0, digest);
    assert_eq!(outcomes_of(&c), ["cancelled", "ok"]);
}

#[test]
fn ctrl_c_ends_a_download_within_a_second_and_exits_130() {
    cancelled_download_stops_at_once("INT", 130);
}

#[test]
fn sigterm_ends_a_download_within_a_second_and_exits_143() {
    cancelled_download_stops_at_once("TERM", 143);
}
