//! Process-level tests of discovery: the real `listener` and `announcer` binaries, started and
//! signalled as a user would, each peer on its own loopback address.
//!
//! The timing claims (a new peer sees the network within a second; a peer that leaves or
//! restarts is updated within a second) are checked here, with the periodic announcements set
//! to a minute so that they cannot explain the result. The `announcer` binary is found beside
//! this test's executable: build both (`cargo test -p announcer -p listener`, or
//! `--workspace`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::protocol::{Announcement, Kind};
use shared::tags::TagsIndex;
use testkit::announce::{ours_with, UdpPeer};
use testkit::files::{read_tags, temp_dir};
use testkit::ports::free_udp_port;
use testkit::process::{ChildGuard, Program};
use testkit::servers::shared_port_socket;
use testkit::wait::{poll_until, PATIENCE};

/// The spec's bound for discovery, goodbye and restart.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// Starts a program with `--dir dir`, its stderr in `dir/<name>.log` (see [`logs`]).
fn spawn(program: &Path, name: &str, dir: &Path, args: &[String]) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    ChildGuard(
        Command::new(program)
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn listener_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_listener"))
}

/// `listener --port <port> --broadcast <query target> [extra]` with debug logging.
fn start_listener(dir: &Path, port: u16, query_to: &str, extra: &[&str]) -> ChildGuard {
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--broadcast".to_owned(),
        query_to.to_owned(),
        "-v".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    spawn(&listener_path(), "listener", dir, &args)
}

/// `announcer` bound to `ip`, announcing to `to` every minute, as `user` with chunk port
/// `chunk_port`, with debug logging.
fn start_announcer(
    dir: &Path,
    ip: &str,
    port: u16,
    to: &str,
    user: &str,
    chunk_port: u16,
    extra: &[&str],
) -> ChildGuard {
    let mut args: Vec<String> = [
        "--bind",
        ip,
        "--broadcast",
        to,
        "--username",
        user,
        "--interval",
        "60",
        "-v",
    ]
    .map(str::to_owned)
    .into();
    args.extend([
        "--port".to_owned(),
        port.to_string(),
        "--chunk-port".to_owned(),
        chunk_port.to_string(),
    ]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    spawn(&Program::Announcer.path(), "announcer", dir, &args)
}

/// Puts the five chunks of `content` in `dir`'s chunk store.
fn add_chunks(dir: &Path, content: &str) {
    let temp = dir.join(shared::TEMP_DIR);
    std::fs::create_dir_all(&temp).unwrap();
    for i in 1..=5 {
        std::fs::write(temp.join(format!("{content}_{i}")), format!("chunk {i}")).unwrap();
    }
}

fn tags_of(dir: &Path) -> Option<TagsIndex> {
    read_tags(&dir.join(shared::TAGS_FILE))
}

/// Whether `dir`'s tags.txt lists `user` holding `content` at `addr`.
fn lists(dir: &Path, user: &str, content: &str, addr: &str) -> bool {
    tags_of(dir).is_some_and(|t| {
        t.entries
            .iter()
            .any(|e| e.user == user && e.content == content && e.addr.to_string() == addr)
    })
}

/// The logs of the programs run in `dirs`, for failure messages.
fn logs(dirs: &[&Path]) -> String {
    let mut out = String::new();
    for dir in dirs {
        for name in ["listener.log", "announcer.log"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                out.push_str(&format!("--- {}/{name}\n{text}", dir.display()));
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join(shared::TAGS_FILE)) {
            out.push_str(&format!("--- {}/tags.txt\n{text}", dir.display()));
        }
    }
    out
}

/// Polls (every 10 ms) until `cond` holds; returns how long it took, or `None` after
/// [`PATIENCE`].
fn time_until(mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Waits until the listener of `dir` has written its first tags.txt, so it is bound and
/// hears what is sent next (an announcer in another folder would not answer its query).
fn wait_listening(dir: &Path) {
    assert!(
        poll_until(PATIENCE, || tags_of(dir).is_some()),
        "the listener never started\n{}",
        logs(&[dir])
    );
}

fn signal(child: &ChildGuard, name: &str) {
    testkit::process::signal(child.0.id(), name);
}

#[test]
fn new_listener_lists_an_already_running_peer_within_a_second() {
    // Peer A (listener + announcer) and peer B's listener share the announce port, as
    // listeners on one host do; broadcasts reach both, unicast answers only B's own socket.
    let (_reserved, port) = shared_port_socket();
    let broadcast = format!("127.255.255.255:{port}");
    let a = temp_dir();
    add_chunks(a.path(), "alpha.bin");
    let _a_listener = start_listener(a.path(), port, &broadcast, &[]);
    let _a_announcer = start_announcer(a.path(), "127.0.0.2", port, &broadcast, "alice", 6201, &[]);
    // A is up: its announcer has made its start announcement and its listener heard it.
    assert!(
        poll_until(PATIENCE, || lists(
            a.path(),
            "alice",
            "alpha.bin",
            "127.0.0.2:6201"
        )),
        "peer A never came up\n{}",
        logs(&[a.path()])
    );
    // The next periodic announcement is a minute away: only the query can explain what follows.
    let b = temp_dir();
    let started = Instant::now();
    let _b_listener = start_listener(b.path(), port, &broadcast, &[]);
    let took = time_until(|| lists(b.path(), "alice", "alpha.bin", "127.0.0.2:6201"));
    let took = took.unwrap_or_else(|| panic!("B never listed A\n{}", logs(&[a.path(), b.path()])));
    assert!(
        started.elapsed() < ONE_SECOND,
        "B listed A after {:?} (poll saw it at {took:?})\n{}",
        started.elapsed(),
        logs(&[a.path(), b.path()])
    );
    // A's announcer heard the query itself and answered it; the copy A's listener passed on
    // through a query file was deleted unanswered (answered already).
    let queries = a.path().join(shared::QUERIES_DIR);
    assert!(poll_until(PATIENCE, || std::fs::read_dir(&queries)
        .is_ok_and(|mut d| d.next().is_none())));
}

#[test]
fn peer_stopped_with_sigint_leaves_the_listing_within_a_second() {
    let (_reserved, port) = shared_port_socket();
    let broadcast = format!("127.255.255.255:{port}");
    let l = temp_dir();
    let a = temp_dir();
    add_chunks(a.path(), "leaving.txt");
    let _listener = start_listener(l.path(), port, &broadcast, &[]);
    wait_listening(l.path());
    let mut announcer = start_announcer(a.path(), "127.0.0.3", port, &broadcast, "bob", 6202, &[]);
    let listed = || lists(l.path(), "bob", "leaving.txt", "127.0.0.3:6202");
    assert!(
        poll_until(PATIENCE, listed),
        "never listed\n{}",
        logs(&[l.path(), a.path()])
    );
    let signalled = Instant::now();
    signal(&announcer, "-INT");
    let gone = time_until(|| tags_of(l.path()).is_some_and(|t| t.entries.is_empty()));
    assert!(
        gone.is_some() && signalled.elapsed() < ONE_SECOND,
        "still listed {:?} after SIGINT (entries expire only after 3 minutes)\n{}",
        signalled.elapsed(),
        logs(&[l.path(), a.path()])
    );
    let mut exit = None;
    assert!(poll_until(PATIENCE, || {
        exit = announcer.0.try_wait().unwrap();
        exit.is_some()
    }));
    assert_eq!(exit.unwrap().code(), Some(0));
}

#[test]
fn peer_killed_and_restarted_on_another_chunk_port_replaces_its_entry_within_a_second() {
    let (_reserved, port) = shared_port_socket();
    let broadcast = format!("127.255.255.255:{port}");
    let l = temp_dir();
    let a = temp_dir();
    add_chunks(a.path(), "phoenix.dat");
    let _listener = start_listener(l.path(), port, &broadcast, &[]);
    wait_listening(l.path());
    let mut first = start_announcer(a.path(), "127.0.0.4", port, &broadcast, "carol", 6301, &[]);
    assert!(
        poll_until(PATIENCE, || lists(
            l.path(),
            "carol",
            "phoenix.dat",
            "127.0.0.4:6301"
        )),
        "never listed\n{}",
        logs(&[l.path(), a.path()])
    );
    // SIGKILL: no goodbye.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let restarted = Instant::now();
    let _second = start_announcer(a.path(), "127.0.0.4", port, &broadcast, "carol", 6302, &[]);
    let only_new = || {
        tags_of(l.path()).is_some_and(|t| {
            let addrs: Vec<String> = t.entries.iter().map(|e| e.addr.to_string()).collect();
            addrs == ["127.0.0.4:6302"]
        })
    };
    assert!(
        time_until(only_new).is_some() && restarted.elapsed() < ONE_SECOND,
        "after {:?}\n{}",
        restarted.elapsed(),
        logs(&[l.path(), a.path()])
    );
    // And it stays that way: no duplicate comes back.
    std::thread::sleep(Duration::from_millis(300));
    assert!(only_new(), "{}", logs(&[l.path()]));
}

#[test]
fn announcer_peer_flag_reaches_a_listener_that_broadcast_does_not() {
    // No socket shares the listener's port: a unicast datagram to it reaches the listener.
    let port = free_udp_port();
    let nobody = format!("127.0.0.1:{}", free_udp_port());
    let l = temp_dir();
    let a = temp_dir();
    add_chunks(a.path(), "direct.bin");
    let _listener = start_listener(l.path(), port, &nobody, &[]);
    wait_listening(l.path());
    let peer = format!("127.0.0.1:{port}");
    let _announcer = start_announcer(
        a.path(),
        "127.0.0.5",
        port,
        &nobody,
        "dave",
        6401,
        &["--peer", &peer],
    );
    assert!(
        poll_until(PATIENCE, || lists(
            l.path(),
            "dave",
            "direct.bin",
            "127.0.0.5:6401"
        )),
        "{}",
        logs(&[l.path(), a.path()])
    );
}

#[test]
fn listener_peer_flag_queries_that_peer_at_start() {
    // Peer A on its own port, reachable from B only by unicast.
    let a_port = free_udp_port();
    let a_broadcast = format!("127.255.255.255:{a_port}");
    let a = temp_dir();
    add_chunks(a.path(), "far.iso");
    let _a_listener = start_listener(a.path(), a_port, &a_broadcast, &[]);
    let _a_announcer = start_announcer(
        a.path(),
        "127.0.0.6",
        a_port,
        &a_broadcast,
        "erin",
        6501,
        &[],
    );
    assert!(
        poll_until(PATIENCE, || lists(
            a.path(),
            "erin",
            "far.iso",
            "127.0.0.6:6501"
        )),
        "{}",
        logs(&[a.path()])
    );
    let b = temp_dir();
    let nobody = format!("127.0.0.1:{}", free_udp_port());
    let peer = format!("127.0.0.1:{a_port}");
    let started = Instant::now();
    let _b_listener = start_listener(b.path(), free_udp_port(), &nobody, &["--peer", &peer]);
    assert!(
        time_until(|| lists(b.path(), "erin", "far.iso", "127.0.0.6:6501")).is_some()
            && started.elapsed() < ONE_SECOND,
        "after {:?}\n{}",
        started.elapsed(),
        logs(&[a.path(), b.path()])
    );
}

#[test]
fn peers_txt_written_after_start_is_announced_to_within_two_seconds() {
    let port = free_udp_port();
    let nobody = format!("127.0.0.1:{}", free_udp_port());
    let l = temp_dir();
    let a = temp_dir();
    add_chunks(a.path(), "later.txt");
    let _listener = start_listener(l.path(), port, &nobody, &[]);
    wait_listening(l.path());
    let _announcer = start_announcer(a.path(), "127.0.0.7", port, &nobody, "fred", 6601, &[]);
    // The announcer is running (and has announced, to nobody) before peers.txt appears.
    assert!(poll_until(PATIENCE, || std::fs::read_to_string(
        a.path().join("announcer.log")
    )
    .is_ok_and(|log| log.contains("announced"))));
    assert!(!lists(l.path(), "fred", "later.txt", "127.0.0.7:6601"));
    let written = Instant::now();
    // Port defaults to the announcer's --port.
    std::fs::write(
        a.path().join(shared::PEERS_FILE),
        "# added while running\n127.0.0.1\n",
    )
    .unwrap();
    assert!(
        time_until(|| lists(l.path(), "fred", "later.txt", "127.0.0.7:6601")).is_some()
            && written.elapsed() < Duration::from_millis(2500),
        "after {:?}\n{}",
        written.elapsed(),
        logs(&[l.path(), a.path()])
    );
}

/// Announcements of every shape, from a few peers: legacy and ours, odd names, goodbyes,
/// restarts (new instances).
fn varied_announcement(i: usize) -> Announcement {
    let users = ["ece", "bob smith", "ünï", "tab\there", "100%", "-", ""];
    let contents = [
        "a",
        "photo.png",
        "my notes 100%.txt",
        "#hash",
        "ünï code",
        "x-y_z",
    ];
    let user = users[i % users.len()];
    let content = contents[(i / 3) % contents.len()];
    let files: Vec<String> = (1..=5)
        .filter(|c| !(i + c).is_multiple_of(3))
        .map(|c| format!("{content}_{c}"))
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    match i % 11 {
        0 => ours_with(user, 6001, 60, &[], Some("run-a"), Kind::Goodbye),
        1..=3 => Announcement::legacy(user, &files),
        4 => ours_with(
            user,
            6002,
            1,
            &files,
            Some(&format!("run-{}", i % 4)),
            Kind::Announce,
        ),
        _ => ours_with(user, 6001, 60, &files, Some("run-a"), Kind::Announce),
    }
}

#[test]
fn tags_txt_is_never_torn_while_the_listener_is_killed_and_restarted() {
    let (_reserved, port) = shared_port_socket();
    let broadcast = format!("127.255.255.255:{port}");
    let dir = temp_dir();
    let path = dir.path().join(shared::TAGS_FILE);
    let mut child = start_listener(dir.path(), port, &broadcast, &[]);
    assert!(poll_until(PATIENCE, || path.exists()));

    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let peers: Vec<UdpPeer> = (11..=14).map(UdpPeer::new).collect();
            let steady = UdpPeer::new(15);
            let steady_says =
                ours_with("steady", 6001, 60, &["steady_1"], Some("s"), Kind::Announce);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                peers[i % peers.len()].announce(port, &varied_announcement(i));
                if i % 10 == 0 {
                    steady.announce(port, &steady_says);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
    };
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, failures, reads, path) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&reads),
            path.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = TagsIndex::load(&path) {
                    failures.lock().unwrap().push(format!("load: {e}"));
                }
                // Without the lock: the rename alone must make every read whole.
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        if let Err(e) = TagsIndex::parse(&text, &path) {
                            failures.lock().unwrap().push(format!("parse: {e}\n{text}"));
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(format!("read: {e}")),
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // Kill at varied moments: while writing, between writes, right after starting.
    for round in 0..20u64 {
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 180));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        child = start_listener(dir.path(), port, &broadcast, &[]);
    }
    let listed = poll_until(PATIENCE, || {
        tags_of(dir.path()).is_some_and(|t| t.entries.iter().any(|e| e.user == "steady"))
    });
    stop.store(true, Ordering::SeqCst);
    let sent = sender.join().unwrap();
    reader.join().unwrap();
    let failures = failures.lock().unwrap();
    eprintln!(
        "{} reads of tags.txt, {sent} announcements sent, 20 kills",
        reads.load(Ordering::SeqCst)
    );
    assert!(
        failures.is_empty(),
        "{} failed reads of {}; first: {}",
        failures.len(),
        reads.load(Ordering::SeqCst),
        failures[0]
    );
    assert!(reads.load(Ordering::SeqCst) > 100, "too few reads to tell");
    assert!(sent > 100, "too few announcements sent: {sent}");
    assert!(
        listed,
        "the steady peer is not listed after the last restart\n{}",
        logs(&[dir.path()])
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the last listener exited"
    );
}
