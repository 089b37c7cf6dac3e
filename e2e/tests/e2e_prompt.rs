//! The downloader's prompt on a real terminal (a pseudo-terminal from `script`), driven by
//! keys: Tab completes a file name ignoring case, the up-arrow recalls the previous line, the
//! history is kept in the peer folder (`.prompt_history`) and recalled in the next run; a bare
//! `get` is a usage hint; a near miss gets "did you mean"; Ctrl-C and Ctrl-D leave; and
//! `get --verbose` on a terminal shows a bar per chunk.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use testkit::prelude::*;

const TAB: &str = "\t";
const ENTER: &str = "\r";
const UP: &str = "\x1b[A";
const CTRL_D: &str = "\x04";
const CTRL_C: &str = "\x03";

/// Alice offers `Report.pdf` (`size` bytes at `max_rate`, if any); the returned downloader
/// peer lists it.
fn report_on_offer(net: &TestNet, size: u64, server_flags: &[&str]) -> (Peer, Peer, PathBuf) {
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("Report.pdf", size, 4);
    let share = a.share_dir();
    a.start_chunk_server(&[share.as_path()], server_flags);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "Report.pdf", digest);
    (a, c, original)
}

/// Waits until the terminal shows what `cond` looks for.
fn wait_for_screen(
    net: &TestNet,
    prompt: &RunningDownloader,
    what: &str,
    cond: impl Fn(&str) -> bool,
) {
    net.wait_until(Duration::from_secs(30), what, || {
        let screen = prompt.stdout_so_far();
        cond(&screen).then_some(()).ok_or(screen)
    });
}

/// Starts the prompt on a terminal and waits until it lists `Report.pdf` and waits for a line.
fn open_prompt(net: &TestNet, c: &Peer) -> RunningDownloader {
    let prompt = c.spawn_downloader_on_terminal(&[]);
    wait_for_screen(net, &prompt, "the prompt lists Report.pdf", |s| {
        s.contains("1  Report.pdf") && s.contains("> ")
    });
    prompt
}

#[test]
fn tab_completes_a_name_and_the_up_arrow_recalls_lines_across_runs() {
    let net = TestNet::new(Duration::from_secs(150));
    let (_a, c, original) = report_on_offer(&net, 300_000, &[]);
    let history = c.dir.join(".prompt_history");
    assert!(!history.exists());

    let mut prompt = open_prompt(&net, &c);
    // `rep` + Tab: the one name on offer starting so, ignoring case.
    prompt.type_keys(&format!("get rep{TAB}"));
    wait_for_screen(&net, &prompt, "Tab completes Report.pdf", |s| {
        s.contains("get Report.pdf")
    });
    prompt.type_keys(ENTER);
    wait_for_screen(&net, &prompt, "the download ends", |s| s.contains("Done:"));
    assert_same_file(&original, &c.downloads_dir().join("Report.pdf"));

    // Up-arrow + Enter: the same line again, so the same file, already here.
    prompt.type_keys(UP);
    prompt.type_keys(ENTER);
    wait_for_screen(&net, &prompt, "the recalled line runs", |s| {
        s.matches("Already downloaded:").count() == 1
    });
    prompt.type_keys(CTRL_D);
    let out = prompt.wait(Duration::from_secs(20));
    assert_success(&out, "the prompt, left with Ctrl-D");
    let kept = fs::read_to_string(&history).expect("the history file in the peer folder");
    assert_eq!(
        kept.lines().filter(|l| *l == "get Report.pdf").count(),
        1,
        "the completed line, once (a repeat is not kept twice):\n{kept}"
    );

    // A second run recalls the first run's line with the up-arrow.
    let mut prompt = open_prompt(&net, &c);
    prompt.type_keys(UP);
    prompt.type_keys(ENTER);
    wait_for_screen(&net, &prompt, "the line of the last run runs", |s| {
        s.contains("Already downloaded:")
    });
    prompt.type_keys(&format!("quit{ENTER}"));
    let out = prompt.wait(Duration::from_secs(20));
    assert_success(&out, "the second prompt");
    let kept = fs::read_to_string(&history).expect("the history file");
    assert!(kept.ends_with("get Report.pdf\nquit\n"), "{kept}");
    let files: Vec<_> = files_under(&c.downloads_dir());
    assert_eq!(files.len(), 1, "one copy, fetched once: {files:?}");
}

#[test]
fn a_bare_get_is_a_usage_hint_and_a_near_miss_is_named() {
    let net = TestNet::new(Duration::from_secs(150));
    let (_a, c, original) = report_on_offer(&net, 50_000, &[]);

    let mut prompt = open_prompt(&net, &c);
    prompt.type_keys(&format!("get{ENTER}"));
    wait_for_screen(&net, &prompt, "the usage hint", |s| {
        s.contains("usage: get NAME|NUMBER")
    });
    prompt.type_keys(&format!("get reprot.pdf{ENTER}"));
    wait_for_screen(&net, &prompt, "the name meant", |s| {
        s.contains(r#"no file named "reprot.pdf" on offer; did you mean "Report.pdf"?"#)
    });
    // Ctrl-C at the prompt leaves it (the line editor reads it as a key, not a signal).
    prompt.type_keys(CTRL_C);
    let out = prompt.wait(Duration::from_secs(20));
    assert_success(&out, "the prompt, left with Ctrl-C");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        !screen.contains("Downloading"),
        "nothing downloads:\n{screen}"
    );
    assert!(
        files_under(&c.downloads_dir()).is_empty(),
        "nothing in downloads/"
    );

    // The same rules on the command line.
    let out = c.downloader(&["get", "reprot.pdf"]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"did you mean "Report.pdf"?"#), "{stderr}");
    let out = c.downloader(&["get", "REPORT.PDF"]);
    assert_success(&out, "get REPORT.PDF");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    assert!(printed_path(&out, &c.dir).ends_with("Report.pdf"));
}

#[test]
fn get_verbose_on_a_terminal_shows_a_bar_per_chunk() {
    let net = TestNet::new(Duration::from_secs(150));
    // 12 MiB at 1 MiB/s per connection: about 2.5 s, time for the chunks' bars to be drawn.
    let (a, c, original) = report_on_offer(&net, 12 << 20, &["--max-rate", "1048576"]);
    let out = c
        .spawn_downloader_on_terminal(&["get", "--verbose", "Report.pdf"])
        .wait(Duration::from_secs(60));
    assert_success(&out, "get --verbose on a terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    for i in 1..=5 {
        assert!(
            screen.contains(&format!("chunk {i}/5 [")),
            "a bar for chunk {i}:\n{screen:?}"
        );
    }
    assert!(
        screen.contains(&format!("from alice@{}", a.chunk_addr())),
        "each chunk's bar names its holder:\n{screen:?}"
    );
    assert_same_file(&original, &c.downloads_dir().join("Report.pdf"));
}

#[test]
fn ctrl_c_cancels_a_download_started_at_the_prompt() {
    let net = TestNet::new(Duration::from_secs(150));
    // 12 MiB at 1 MiB/s per connection: seconds to go when Ctrl-C comes.
    let (_a, c, _) = report_on_offer(&net, 12 << 20, &["--max-rate", "1048576"]);
    let mut prompt = open_prompt(&net, &c);
    prompt.type_keys(&format!("get Report.pdf{ENTER}"));
    // The editor gave the terminal back before the download started: Ctrl-C is a signal again.
    wait_for_screen(&net, &prompt, "the download starts", |s| {
        s.contains("Downloading Report.pdf")
    });
    prompt.type_keys(CTRL_C);
    let out = prompt.wait(Duration::from_secs(20));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("Download cancelled."), "{screen}");
    assert!(!screen.contains("Done:"), "{screen}");
    assert!(!c.downloads_dir().join("Report.pdf").exists());
}

#[test]
fn piped_commands_are_read_as_lines_with_no_history_file() {
    let dir = testkit::files::temp_dir();
    let mut child = std::process::Command::new(Program::Downloader.path())
        .args(["--dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the downloader");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("its stdin");
        stdin.write_all(b"get\nhelp\n").expect("write the commands");
        // End of input ends the prompt, as `quit` would.
    }
    testkit::wait::wait_until(
        std::time::Instant::now() + Duration::from_secs(20),
        "the prompt ends at the end of its input",
        || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let out = child.wait_with_output().expect("the downloader's output");
    assert_success(&out, "the prompt reading a pipe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("> usage: get NAME|NUMBER\n"), "{stdout}");
    assert!(
        stdout.contains("Tab completes commands and names"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes off a terminal:\n{stdout:?}"
    );
    assert!(
        !dir.path().join(".prompt_history").exists(),
        "no history file without a terminal"
    );
}
