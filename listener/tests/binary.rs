//! Process-level tests: the real `listener` binary, as a user starts it.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::protocol::{Announcement, Kind};
use testkit::announce::{Flood, UdpPeer};
use testkit::files::{read_tags, temp_dir};
use testkit::process::{
    assert_failed_once_with, output_of, spawn_guarded, time_to_exit_after, wait_exit, ChildGuard,
};
use testkit::servers::shared_port_socket;
use testkit::wait::{poll_until, PATIENCE};

fn listener() -> Command {
    Command::new(env!("CARGO_BIN_EXE_listener"))
}

/// `listener --dir DIR`, its start-up query also sent to the loopback discard port: without
/// any `--broadcast` it would go to every interface's broadcast, off this host.
fn listener_in(dir: &std::path::Path) -> Command {
    let mut command = listener();
    command
        .arg("--dir")
        .arg(dir)
        .args(["--broadcast", "127.0.0.1:9"]);
    command
}

#[test]
fn listener_binary_lists_a_broadcast_announcement_in_tags_txt() {
    let dir = temp_dir();
    // Keep the port reserved: the listener shares it (SO_REUSEADDR), so no other test can
    // take it between our choosing it and the child binding it.
    let (_reserved, port) = shared_port_socket();
    let port_text = port.to_string();
    let args = ["--port", &port_text, "--legacy-chunk-port", "7777", "-v"];
    let mut child = spawn_guarded(listener_in(dir.path()).args(args), Stdio::null());
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(
        poll_until(PATIENCE, || read_tags(&tags_path).is_some()),
        "tags.txt not written at start"
    );
    let peer = UdpPeer::new(2);
    let mut last = None;
    let seen = poll_until(PATIENCE, || {
        // Datagrams may be lost; repeat, as a real peer would.
        peer.announce(
            port,
            &Announcement::legacy("ece", &["song.mp3_1", "song.mp3_4"]),
        );
        std::thread::sleep(Duration::from_millis(100));
        last = read_tags(&tags_path);
        last.as_ref().is_some_and(|t| !t.entries.is_empty())
    });
    assert!(seen, "never listed; last: {last:?}");
    let tags = last.unwrap();
    assert_eq!(tags.entries.len(), 1, "{tags}");
    let e = &tags.entries[0];
    assert_eq!(e.user, "ece");
    assert_eq!(e.addr.to_string(), "127.0.0.2:7777");
    assert_eq!(e.content, "song.mp3");
    assert_eq!(e.chunks.to_string(), "1--4-");
    assert!(child.0.try_wait().unwrap().is_none(), "listener exited");
}

#[test]
fn listener_binary_stops_cleanly_on_sigint() {
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let mut child = spawn_guarded(
        listener_in(dir.path()).args(["--port", &port.to_string()]),
        Stdio::null(),
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    // Signal this child only, by its process id.
    testkit::process::signal(child.0.id(), "INT");
    let exit = wait_exit(&mut child.0, PATIENCE);
    assert!(exit.is_some());
    assert_eq!(exit.unwrap().code(), Some(0));
}

#[test]
fn listener_binary_fails_with_a_clear_error_when_it_cannot_bind() {
    let dir = temp_dir();
    // 192.0.2.1 (TEST-NET-1) is not an address of this host.
    let output = output_of(listener_in(dir.path()).args(["--bind", "192.0.2.1", "--port", "0"]));
    assert_failed_once_with(&output, 1, "cannot bind a UDP socket to 192.0.2.1:0");
}

#[test]
fn listener_binary_rejects_bad_usage_with_status_2() {
    let output = listener().args(["--port", "many"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn listener_binary_warns_about_a_malformed_flood_once_per_source() {
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let log_path = dir.path().join("listener.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _child = spawn_guarded(
        listener_in(dir.path())
            .args(["--port", &port.to_string()])
            .args(["--broadcast", &format!("127.255.255.255:{port}")]),
        log,
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    let (noisy, other) = (UdpPeer::new(12), UdpPeer::new(13));
    for i in 0..200 {
        noisy.send_raw(port, format!("garbage {i}").as_bytes());
    }
    other.send_raw(port, b"{\"username\": 1}");
    // A valid announcement after the flood: once it is listed, the flood was handled.
    let good = UdpPeer::new(14);
    let seen = poll_until(PATIENCE, || {
        good.announce(port, &Announcement::legacy("good", &["ok_1"]));
        std::thread::sleep(Duration::from_millis(50));
        read_tags(&tags_path).is_some_and(|t| t.entries.iter().any(|e| e.user == "good"))
    });
    assert!(seen);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let warnings = |ip: &str| {
        text.lines()
            .filter(|l| l.contains("ignoring") && l.contains(ip))
            .count()
    };
    assert_eq!(warnings("127.0.0.12:"), 1, "{text}");
    assert_eq!(warnings("127.0.0.13:"), 1, "{text}");
}

/// `listener --dir <dir> --port <port> [extra]`, its stderr in `dir/listener.log`.
fn spawn_listener(dir: &std::path::Path, port: u16, extra: &[&str]) -> ChildGuard {
    let log = std::fs::File::create(dir.join("listener.log")).unwrap();
    spawn_guarded(
        listener_in(dir)
            .args(["--port", &port.to_string()])
            .args(extra),
        log,
    )
}

/// Sends SIGTERM to `child` (by its process id) and returns how long it took to exit, or
/// `None` if it is still running after [`PATIENCE`].
fn time_to_exit_after_sigterm(child: &mut ChildGuard) -> Option<Duration> {
    time_to_exit_after(child, "TERM", PATIENCE)
}

/// The bound of issue 7, defect 1: a program stops within 3 s of the first SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(3);

#[test]
fn listener_binary_stops_within_three_seconds_of_sigterm_when_idle() {
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let mut child = spawn_listener(dir.path(), port, &[]);
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    let took = time_to_exit_after_sigterm(&mut child);
    assert!(took.is_some_and(|t| t < STOP_BOUND), "took {took:?}");
}

#[test]
fn listener_binary_stops_within_three_seconds_of_sigterm_during_a_flood() {
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let mut child = spawn_listener(dir.path(), port, &[]);
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    let flood = Flood::start(port, &[21, 22, 23, 24], 60_000);
    std::thread::sleep(Duration::from_secs(2));
    let took = time_to_exit_after_sigterm(&mut child);
    let sent = flood.stop();
    eprintln!("{sent} flood datagrams; stopped after {took:?}");
    assert!(took.is_some_and(|t| t < STOP_BOUND), "took {took:?}");
    // The limits were hit and said so, in a warning when first hit and one with the counts
    // since then when stopping (at most one per 10 s), not once per datagram.
    let log = std::fs::read_to_string(dir.path().join("listener.log")).unwrap();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert!((1..=2).contains(&count("limits reached")), "{log}");
    assert!((1..=2).contains(&count("dropped")), "{log}");
}

#[test]
fn listener_binary_stops_within_three_seconds_of_sigterm_while_a_reader_holds_the_tags_lock() {
    use fs2::FileExt;
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let mut child = spawn_listener(dir.path(), port, &[]);
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    // A reader (a downloader, say) that takes the lock and does not let go.
    let lock = std::fs::File::open(dir.path().join("tags.txt.lock")).unwrap();
    lock.lock_shared().unwrap();
    // Something to write: the listener now waits for the lock.
    let peer = UdpPeer::new(25);
    for _ in 0..3 {
        peer.announce(port, &Announcement::legacy("ece", &["waiting_1"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = time_to_exit_after_sigterm(&mut child);
    FileExt::unlock(&lock).unwrap();
    assert!(took.is_some_and(|t| t < STOP_BOUND), "took {took:?}");
}

/// Issue 7, defect 17: the start-up query must not change what a legacy listener that keeps
/// the last datagram of each username shows for this peer.
#[test]
fn the_start_up_query_leaves_a_legacy_listeners_view_of_this_peer_alone() {
    let dir = temp_dir();
    std::fs::write(dir.path().join(shared::USERNAME_FILE), "alice\n").unwrap();
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (_reserved, port) = shared_port_socket();
    let _child = spawn_listener(
        dir.path(),
        port,
        &["--broadcast", &target.local_addr().unwrap().to_string()],
    );
    let mut buf = vec![0u8; shared::MAX_RECEIVE_DATAGRAM];
    let mut query = None;
    assert!(poll_until(PATIENCE, || {
        if let Ok((n, _)) = target.recv_from(&mut buf) {
            query = Announcement::decode(&buf[..n]).ok();
        }
        query.is_some()
    }));
    let query = query.unwrap();
    assert_eq!(query.p2p.as_ref().unwrap().kind, Kind::Query);
    assert_ne!(query.username, "alice", "the query speaks for alice");
    // A legacy listener: the last datagram of each username is what it shows.
    let mut legacy_view: HashMap<String, Vec<String>> = HashMap::new();
    let alices = Announcement::legacy("alice", &["notes.txt_1", "notes.txt_2"]);
    for datagram in [&alices, &query] {
        // What a legacy listener reads: `username` and `files`, nothing else.
        let seen = Announcement::decode(&datagram.encode()).unwrap();
        legacy_view.insert(seen.username, seen.files);
    }
    assert_eq!(legacy_view["alice"], alices.files);
}

#[test]
fn a_second_listener_on_one_folder_refuses_to_start() {
    let dir = temp_dir();
    let (_reserved, port) = shared_port_socket();
    let mut first = spawn_guarded(
        listener_in(dir.path()).args(["--port", &port.to_string()]),
        Stdio::null(),
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(poll_until(PATIENCE, || read_tags(&tags_path).is_some()));
    let (_other, other_port) = shared_port_socket();
    let output = output_of(listener_in(dir.path()).args(["--port", &other_port.to_string()]));
    testkit::instance::assert_refused_as_second(
        &output,
        testkit::process::Program::Listener,
        first.0.id(),
        dir.path(),
    );
    assert!(
        wait_exit(&mut first.0, Duration::from_millis(300)).is_none(),
        "the first listener stopped"
    );
}
