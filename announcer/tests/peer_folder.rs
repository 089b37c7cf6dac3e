//! The announcer and the chunk server of one peer folder agree through the folder: the real
//! binaries, a chunk server on a port the system picks (never 5001), and a UDP receiver in the
//! role of every listener of the LAN.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::protocol::Kind;
use testkit::announce::{names_of, Receiver};
use testkit::files::add_content;
use testkit::instance::{assert_refused_as_second, start_recorded_chunk_server};
use testkit::process::{output_of, signal, spawn_guarded, wait_exit, ChildGuard, Program};
use testkit::servers::shared_port_socket;
use testkit::wait::{poll_until, PATIENCE};

/// `announcer --dir DIR --bind IP --broadcast 127.255.255.255:PORT --interval 1`, without
/// `--chunk-port`: it announces the port DIR's chunk server records. stderr goes to
/// `DIR/announcer.err`.
fn start_announcer(dir: &Path, ip: &str, port: u16) -> ChildGuard {
    let stderr = File::create(dir.join("announcer.err")).unwrap();
    spawn_guarded(
        Command::new(env!("CARGO_BIN_EXE_announcer"))
            .arg("--dir")
            .arg(dir)
            .args(["--username", "alice", "--bind", ip, "--interval", "1"])
            .args(["--broadcast", &format!("127.255.255.255:{port}")]),
        stderr,
    )
}

fn stderr_of_announcer(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("announcer.err")).unwrap_or_default()
}

#[test]
fn an_announcer_started_first_announces_nothing_until_its_chunk_server_runs_then_its_port() {
    let dir = tempfile::tempdir().unwrap();
    add_content(dir.path(), "song.mp3", b"la la la la la la la la");
    let (socket, port) = shared_port_socket();
    let receiver = Receiver::with_socket(socket);
    let mut announcer = start_announcer(dir.path(), "127.0.0.8", port);

    // With --interval 1 it would have announced three times by now.
    assert!(
        receiver.next(Duration::from_millis(3500)).is_none(),
        "announced without a chunk server"
    );
    let warning = format!(
        "no chunk server is running for {}: announcing nothing until one starts",
        dir.path().display()
    );
    let stderr = stderr_of_announcer(dir.path());
    assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");

    let (mut server, record) = start_recorded_chunk_server(dir.path());
    assert_ne!(record.port, shared::DEFAULT_CHUNK_PORT);
    let got = receiver
        .next(PATIENCE)
        .expect("no announcement once the chunk server runs");
    let a = got.announcement;
    assert_eq!(a.p2p.as_ref().map(|e| e.port), Some(record.port));
    let chunks: Vec<String> = a.chunks().iter().map(ToString::to_string).collect();
    assert_eq!(chunks, names_of("song.mp3").into_iter().collect::<Vec<_>>());

    // The server stops: its record goes, the announcer says goodbye and falls silent.
    let record_path =
        shared::instance::ServerRecord::path(&shared::peer_dir::PeerDir::new(dir.path()));
    signal(server.0.id(), "TERM");
    assert!(wait_exit(&mut server.0, PATIENCE).is_some_and(|s| s.success()));
    assert!(!record_path.exists(), "the record outlived the server");
    let goodbye = poll_until(PATIENCE, || {
        receiver
            .next(Duration::from_millis(200))
            .is_some_and(|r| r.announcement.p2p.is_some_and(|e| e.kind == Kind::Goodbye))
    });
    assert!(goodbye, "no goodbye when the chunk server stopped");
    receiver.drain();
    assert!(
        receiver.next(Duration::from_millis(2500)).is_none(),
        "announced after the chunk server stopped"
    );
    assert!(wait_exit(&mut announcer.0, Duration::from_millis(10)).is_none());
}

/// A folder with an announcer running in it (and announcing nothing: no chunk server), and
/// the socket that holds its UDP port.
fn first_announcer() -> (tempfile::TempDir, std::net::UdpSocket, ChildGuard) {
    let dir = tempfile::tempdir().unwrap();
    let (socket, port) = shared_port_socket();
    let first = start_announcer(dir.path(), "127.0.0.9", port);
    assert!(
        poll_until(PATIENCE, || stderr_of_announcer(dir.path())
            .contains("announcing nothing")),
        "the first announcer did not start"
    );
    (dir, socket, first)
}

#[test]
fn a_second_announcer_on_one_folder_refuses_to_start() {
    let (dir, _socket, first) = first_announcer();
    let output = output_of(
        Command::new(env!("CARGO_BIN_EXE_announcer"))
            .arg("--dir")
            .arg(dir.path())
            .args(["--username", "bob", "--broadcast", "127.0.0.1:9"])
            .stdout(Stdio::null()),
    );
    assert_refused_as_second(&output, Program::Announcer, first.0.id(), dir.path());
}

#[test]
fn a_second_announcer_on_a_terminal_refuses_before_asking_a_username() {
    let (dir, _socket, first) = first_announcer();
    // On a terminal and with no username anywhere, the second one would ask for one; the
    // folder is in use, so it must say so at once instead. Its stdin stays open: a question
    // would hang until the deadline.
    let line = format!(
        "'{}' --dir '{}' --broadcast 127.0.0.1:9",
        env!("CARGO_BIN_EXE_announcer"),
        dir.path().display()
    );
    let terminal = dir.path().join("second.terminal");
    let mut second = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(File::create(&terminal).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start `script` (util-linux)");
    let status = wait_exit(&mut second, PATIENCE);
    if status.is_none() {
        let _ = second.kill();
    }
    let shown = std::fs::read_to_string(&terminal).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "announcer: error: another announcer (pid {}) is already serving",
            first.0.id()
        )),
        "{shown}"
    );
    assert!(!shown.to_lowercase().contains("username"), "{shown}");
}
