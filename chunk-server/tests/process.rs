//! Process-level tests: the real `chunk-server` binary, started as a user would, checked
//! through its sockets, its exit status and the events in `server.log`.

mod support;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use shared::digest::Digest;
use shared::events::Event;
use shared::protocol::{Request, Response};
use support::{chunk_files, connect, legacy_fetch, p2p_request, pattern, send_raw, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_chunk-server");

/// A port free a moment ago: bind port 0, note the port, release it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running binary; killed (by its handle) and reaped on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The events logged so far.
    fn events(&self) -> Vec<Event> {
        self.log_text()
            .lines()
            .filter_map(|l| Event::parse_log_line(l).map(|(_, e)| e))
            .collect()
    }

    /// Waits for an event with all of `fields`; panics with the log when none comes.
    fn expect_event(&self, name: &str, fields: &[(&str, &str)]) {
        let found = wait_until(Duration::from_secs(15), || {
            self.events()
                .iter()
                .any(|e| e.name == name && fields.iter().all(|(k, v)| e.get(k) == Some(*v)))
        });
        assert!(
            found,
            "no `{name}` event with {fields:?} in server.log:\n{}",
            self.log_text()
        );
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

/// Starts the binary on a free loopback port with `dir` as its peer folder (stderr goes to
/// `dir/stderr.txt`) and waits until it logs that it listens.
fn start(dir: &Path, extra: &[&str]) -> ServerProcess {
    fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr.txt")).unwrap())
        .spawn()
        .expect("start chunk-server");
    let mut server = ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: dir.to_owned(),
    };
    let ready = wait_until(Duration::from_secs(20), || {
        server.log_text().contains("listening on")
            || server.child.try_wait().ok().flatten().is_some()
    });
    assert!(
        ready && server.child.try_wait().unwrap().is_none(),
        "chunk-server did not start; stderr:\n{}",
        server.stderr_text()
    );
    server
}

#[test]
fn binary_logs_served_and_refused_events_and_survives_junk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    let share = dir.join("served_files");
    fs::create_dir_all(&share).unwrap();
    let data = pattern(100_003);
    fs::write(share.join("hello world.txt"), &data).unwrap();
    fs::write(dir.join("secret_1"), b"TOP SECRET").unwrap();
    let server = start(&dir, &[]);

    let served: Vec<Vec<u8>> = (1..=5)
        .map(|i| legacy_fetch(server.addr, &format!("hello world.txt_{i}")))
        .collect();
    assert!(served.concat() == data, "reassembled file differs");
    server.expect_event(
        "served",
        &[
            ("chunk", "hello world.txt_1"),
            ("proto", "legacy"),
            ("bytes", "20001"),
            ("outcome", "ok"),
        ],
    );

    let (response, body) = p2p_request(
        server.addr,
        &Request::Chunk {
            filename: "hello world.txt_2".into(),
            content_sha256: Some(Digest::of(&data)),
            offset: 1,
        },
    );
    assert!(matches!(response, Response::Chunk { length: 20000, .. }));
    assert!(body == data[20002..40002]);
    server.expect_event(
        "served",
        &[
            ("chunk", "hello world.txt_2"),
            ("proto", "p2p"),
            ("bytes", "20000"),
            ("outcome", "ok"),
        ],
    );

    // The silent client is held until its timeout is logged.
    let silent = connect(server.addr);
    drop(connect(server.addr));
    let mut too_long = b"{\"filename\": \"".to_vec();
    too_long.extend_from_slice(&[b'a'; 10_000]);
    for junk in [
        &br#"{"filename": "../secret_1"}"#[..],
        br#"{"filename": "/etc/passwd_1"}"#,
        br#"{"filename": "x\u0000y_1"}"#,
        br#"{"filename": "nothere_1"}"#,
        b"this is not JSON",
        &too_long,
    ] {
        let answer = send_raw(server.addr, junk).expect("the server closes");
        assert!(answer.is_empty(), "junk got {} bytes", answer.len());
    }
    server.expect_event(
        "refused",
        &[("outcome", "bad_request"), ("chunk", "../secret_1")],
    );
    server.expect_event(
        "refused",
        &[("outcome", "bad_request"), ("chunk", "/etc/passwd_1")],
    );
    server.expect_event(
        "refused",
        &[("outcome", "bad_request"), ("chunk", "x\0y_1")],
    );
    server.expect_event(
        "refused",
        &[("outcome", "not_found"), ("chunk", "nothere_1")],
    );
    server.expect_event("refused", &[("outcome", "malformed")]);
    server.expect_event("refused", &[("outcome", "too_large")]);
    server.expect_event("refused", &[("outcome", "empty")]);
    server.expect_event("refused", &[("outcome", "timeout")]);
    drop(silent);

    // After all of that, a legitimate request is still served byte for byte.
    assert_eq!(
        legacy_fetch(server.addr, "hello world.txt_5"),
        chunk_files(&dir, "hello world.txt")[4]
    );
    // Every refusal names the peer and gives a reason.
    for event in server.events().iter().filter(|e| e.name == "refused") {
        assert!(event
            .get("peer")
            .is_some_and(|p| p.starts_with("127.0.0.1:")));
        assert!(event.get("reason").is_some_and(|r| !r.is_empty()));
    }
    assert!(server
        .log_text()
        .contains("split hello world.txt (100003 bytes) into 5 chunks"));
}

#[test]
fn client_leaving_midway_is_logged_as_an_error_with_the_bytes_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("served_files");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("long.bin"), pattern(2_500_000)).unwrap();
    // Throttled, so the 500 000-byte chunk is still being sent when the client leaves.
    let server = start(tmp.path(), &["--max-rate", "200000"]);
    let mut client = connect(server.addr);
    client.write_all(br#"{"filename": "long.bin_1"}"#).unwrap();
    let mut first = [0u8; 1000];
    client.read_exact(&mut first).unwrap();
    drop(client);
    let found = wait_until(Duration::from_secs(15), || {
        server.events().iter().any(|e| {
            e.name == "served"
                && e.get("chunk") == Some("long.bin_1")
                && e.get("outcome") == Some("error")
                && e.get("bytes")
                    .and_then(|b| b.parse::<u64>().ok())
                    .is_some_and(|b| (1000..500_000).contains(&b))
        })
    });
    assert!(found, "no served error event:\n{}", server.log_text());
}

#[cfg(target_os = "linux")]
#[test]
fn splitting_a_large_file_uses_little_memory() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("served_files");
    fs::create_dir_all(&share).unwrap();
    // Sparse: costs no disk for the source, but reads back as 200 MiB of zeros. Holding even
    // one 40 MiB chunk in memory would break the bound below.
    File::create(share.join("big.img"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let server = start(tmp.path(), &[]);
    let status = fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    assert!(
        peak_kib < 24 * 1024,
        "splitting {SIZE} bytes peaked at {peak_kib} KiB of memory"
    );
    let sizes: Vec<u64> = chunk_files_len(tmp.path(), "big.img");
    assert_eq!(sizes.iter().sum::<u64>(), SIZE);
}

fn chunk_files_len(dir: &Path, content: &str) -> Vec<u64> {
    (1..=5)
        .map(|i| {
            fs::metadata(dir.join("temp").join(format!("{content}_{i}")))
                .unwrap()
                .len()
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn interrupt_stops_the_binary_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), &[]);
    // Signal this child by its process id only.
    let status = Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = server.wait_exit(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit {exit:?}; stderr:\n{}",
        server.stderr_text()
    );
    assert!(server.log_text().contains("stopped"));
}

#[test]
fn busy_port_fails_with_status_1_and_names_the_address() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(BIN)
        .arg("--dir")
        .arg(tmp.path())
        .args(["--bind", "127.0.0.1", "--port", &port])
        .stdin(Stdio::null())
        .output()
        .expect("run chunk-server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "stderr:\n{stderr}"
    );
    // The cause is printed once.
    assert_eq!(stderr.matches("in use").count(), 1, "stderr:\n{stderr}");
}

#[test]
fn help_lists_every_flag() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--dir",
        "--bind",
        "--port",
        "--share",
        "--rescan",
        "--max-connections",
        "--max-rate",
        "--verbose",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let bad = Command::new(BIN).arg("--rescan").arg("0").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
