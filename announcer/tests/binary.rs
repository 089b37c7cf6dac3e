//! Process-level tests: the real `announcer` binary, as a user starts it.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::announce::{names_of, Receiver};
use testkit::files::add_content;
use testkit::process::{
    assert_failed_once_with, output_of, spawn_guarded, time_to_exit_after, wait_exit, ChildGuard,
};
use testkit::servers::shared_port_socket;
use testkit::wait::PATIENCE;

fn announcer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_announcer"))
}

/// `announcer --dir DIR`. Tests that need announcements without a chunk server running for
/// DIR also give `--chunk-port`: without it the announcer announces nothing until one runs.
fn announcer_in(dir: &std::path::Path) -> Command {
    let mut command = announcer();
    command.arg("--dir").arg(dir);
    command
}

/// A receiver on `0.0.0.0:<free port>`, with `SO_REUSEADDR` as a listener would have, that
/// hears broadcasts to `127.255.255.255`.
fn broadcast_receiver() -> (Receiver, u16) {
    let (socket, port) = shared_port_socket();
    (Receiver::with_socket(socket), port)
}

fn spawn(command: &mut Command) -> ChildGuard {
    spawn_guarded(command, Stdio::null())
}

/// The binary announcing as `username` from `bind` to the receiver on `port`, for a chunk server
/// on 5001 (so it announces without one running).
fn spawn_announcing(dir: &std::path::Path, username: &str, bind: &str, port: u16) -> ChildGuard {
    spawn(
        announcer_in(dir)
            .args([
                "--username",
                username,
                "--bind",
                bind,
                "--chunk-port",
                "5001",
            ])
            .args(["--broadcast", &format!("127.255.255.255:{port}")]),
    )
}

#[test]
fn announcer_binary_broadcasts_from_its_bind_address() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = add_content(dir.path(), "song.mp3", b"la la la la la la");
    let (receiver, port) = broadcast_receiver();
    let _child = spawn(
        announcer_in(dir.path())
            .args(["--username", "alice", "--bind", "127.0.0.2"])
            .args(["--broadcast", &format!("127.255.255.255:{port}")])
            .args(["--chunk-port", "6123", "-v"]),
    );
    let got = receiver
        .next(PATIENCE)
        .expect("no announcement from the binary");
    assert_eq!(got.from.ip(), IpAddr::from([127, 0, 0, 2]));
    assert!(got.len <= shared::MAX_ANNOUNCE_DATAGRAM);
    let a = got.announcement;
    assert_eq!(a.username, "alice");
    let files: Vec<String> = a.chunks().iter().map(ToString::to_string).collect();
    assert_eq!(files, names_of("song.mp3").into_iter().collect::<Vec<_>>());
    let ext = a.p2p.unwrap();
    assert_eq!(ext.port, 6123);
    assert_eq!(ext.interval, shared::DEFAULT_ANNOUNCE_INTERVAL_SECS);
    assert_eq!(ext.contents["song.mp3"], manifest.meta());
}

#[test]
fn announcer_binary_uses_the_stored_username_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(shared::USERNAME_FILE), "stored bob\n").unwrap();
    let (receiver, port) = broadcast_receiver();
    let _child = spawn(
        announcer_in(dir.path())
            .args(["--bind", "127.0.0.3", "--chunk-port", "5001"])
            .args(["--broadcast", &format!("127.255.255.255:{port}")]),
    );
    let got = receiver.next(PATIENCE).expect("no announcement");
    assert_eq!(got.from.ip(), IpAddr::from([127, 0, 0, 3]));
    assert_eq!(got.announcement.username, "stored bob");
}

#[test]
fn announcer_binary_falls_back_to_the_host_name_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, port) = broadcast_receiver();
    let _child = spawn(
        announcer_in(dir.path())
            .args(["--bind", "127.0.0.4", "--chunk-port", "5001"])
            .args(["--broadcast", &format!("127.255.255.255:{port}")]),
    );
    let got = receiver.next(PATIENCE).expect("no announcement");
    assert!(!got.announcement.username.is_empty());
    assert!(!dir.path().join(shared::USERNAME_FILE).exists());
}

#[test]
fn announcer_binary_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, port) = broadcast_receiver();
    let mut child = spawn_announcing(dir.path(), "carol", "127.0.0.5", port);
    assert!(receiver.next(PATIENCE).is_some());
    // Signal this child only, by its process id.
    testkit::process::signal(child.0.id(), "INT");
    let exit = wait_exit(&mut child.0, PATIENCE);
    assert!(exit.is_some(), "still running");
    assert_eq!(exit.unwrap().code(), Some(0));
}

#[test]
fn announcer_binary_fails_with_a_clear_error_when_it_cannot_bind() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is not an address of this host.
    let output = output_of(
        announcer_in(dir.path())
            .args(["--username", "x", "--bind", "192.0.2.1"])
            .args(["--broadcast", "127.0.0.1:9"]),
    );
    assert_failed_once_with(&output, 1, "cannot bind a UDP socket to 192.0.2.1:0");
}

#[test]
fn announcer_binary_rejects_bad_usage_with_status_2() {
    for args in [
        &["--interval", "0"][..],
        // Listeners honour at most 600 s (shared::protocol::MAX_ANNOUNCE_INTERVAL_SECS).
        &["--interval", "601"],
        &["--port", "many"],
        &["--bind", "nowhere"],
    ] {
        let output = output_of(announcer().args(args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn announcer_binary_refuses_an_invalid_username() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        output_of(announcer_in(dir.path()).args(["--username", "", "--broadcast", "127.0.0.1:9"]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid username"), "{stderr}");
}

#[test]
fn announcer_binary_refuses_a_peer_it_cannot_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let output = output_of(
        announcer_in(dir.path())
            .args(["--username", "x", "--broadcast", "127.0.0.1:9"])
            .args(["--peer", "no such host.invalid"]),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad --peer"), "{stderr}");
}

/// Sends SIGTERM to `child` (by its process id) and returns how long it took to exit, or
/// `None` if it is still running after [`PATIENCE`].
fn time_to_exit_after_sigterm(child: &mut ChildGuard) -> Option<Duration> {
    time_to_exit_after(child, "TERM", PATIENCE)
}

/// The bound of issue 7, defect 1: a program stops within 3 s of the first SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(3);

#[test]
fn announcer_binary_stops_within_three_seconds_of_sigterm_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, port) = broadcast_receiver();
    let mut child = spawn_announcing(dir.path(), "idle", "127.0.0.6", port);
    assert!(receiver.next(PATIENCE).is_some());
    let took = time_to_exit_after_sigterm(&mut child);
    assert!(took.is_some_and(|t| t < STOP_BOUND), "took {took:?}");
}

#[test]
fn announcer_binary_stops_within_three_seconds_of_sigterm_while_answering_queries() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..300 {
        let name = format!("a long content name to make big answers {i:04}.bin");
        add_content(dir.path(), &name, name.as_bytes());
    }
    let (receiver, port) = broadcast_receiver();
    let mut child = spawn_announcing(dir.path(), "busy", "127.0.0.7", port);
    assert!(receiver.next(PATIENCE).is_some());
    // Queries keep coming, from many addresses and ports (where nobody listens).
    let queries = dir.path().join(shared::QUERIES_DIR);
    std::fs::create_dir_all(&queries).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..50 {
                    let last = u8::try_from(2 + n % 200).unwrap();
                    let port = u16::try_from(20_000 + n % 40_000).unwrap();
                    let to = SocketAddr::from(([127, 0, 0, last], port));
                    let name = shared::queries::query_file_name(to);
                    let _ = std::fs::File::create(queries.join(name));
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let took = time_to_exit_after_sigterm(&mut child);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    asker.join().unwrap();
    assert!(took.is_some_and(|t| t < STOP_BOUND), "took {took:?}");
}
