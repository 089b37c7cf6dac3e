//! Process-level tests: the real `listener` binary, as a user starts it.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    legacy, read_tags, shared_port_socket, temp_dir, wait_until, ChildGuard, Peer, PATIENCE,
};

fn listener() -> Command {
    Command::new(env!("CARGO_BIN_EXE_listener"))
}

#[test]
fn listener_binary_lists_a_broadcast_announcement_in_tags_txt() {
    let dir = temp_dir();
    // Keep the port reserved: the listener shares it (SO_REUSEADDR), so no other test can
    // take it between our choosing it and the child binding it.
    let (_reserved, port) = shared_port_socket();
    let mut child = ChildGuard(
        listener()
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--port",
                &port.to_string(),
                "--legacy-chunk-port",
                "7777",
                "-v",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(
        wait_until(PATIENCE, || read_tags(&tags_path).is_some()),
        "tags.txt not written at start"
    );
    let peer = Peer::new(2);
    let mut last = None;
    let seen = wait_until(PATIENCE, || {
        // Datagrams may be lost; repeat, as a real peer would.
        peer.announce(port, &legacy("ece", &["song.mp3_1", "song.mp3_4"]));
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
    let mut child = ChildGuard(
        listener()
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(wait_until(PATIENCE, || read_tags(&tags_path).is_some()));
    // Signal this child only, by its process id.
    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    assert!(wait_until(PATIENCE, || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    }));
    assert_eq!(exit.unwrap().code(), Some(0));
}

#[test]
fn listener_binary_fails_with_a_clear_error_when_it_cannot_bind() {
    let dir = temp_dir();
    // 192.0.2.1 (TEST-NET-1) is not an address of this host.
    let output = listener()
        .arg("--dir")
        .arg(dir.path())
        .args(["--bind", "192.0.2.1", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot bind a UDP socket to 192.0.2.1:0"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "printed once: {stderr}");
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
    let _child = ChildGuard(
        listener()
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .args(["--broadcast", &format!("127.255.255.255:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let tags_path = dir.path().join(shared::TAGS_FILE);
    assert!(wait_until(PATIENCE, || read_tags(&tags_path).is_some()));
    let (noisy, other) = (Peer::new(12), Peer::new(13));
    for i in 0..200 {
        noisy.send_raw(port, format!("garbage {i}").as_bytes());
    }
    other.send_raw(port, b"{\"username\": 1}");
    // A valid announcement after the flood: once it is listed, the flood was handled.
    let good = Peer::new(14);
    let seen = wait_until(PATIENCE, || {
        good.announce(port, &legacy("good", &["ok_1"]));
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
