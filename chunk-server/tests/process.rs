//! Process-level tests: the real `chunk-server` binary, started as a user would, checked
//! through its sockets, its exit status and the events in `server.log`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use shared::connection::Connection;
use shared::digest::Digest;
use shared::protocol::{Request, Response};
use testkit::client::{connect, legacy_fetch, p2p_request, send_raw};
use testkit::files::{chunk_files, pattern, share_sparse};
use testkit::process::{start_chunk_server_process as start, ServerProcess};
use testkit::wait::poll_until;

/// This package's own binary.
const BIN: &str = env!("CARGO_BIN_EXE_chunk-server");

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
            length: None,
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
    server.expect_refused("bad_request", "../secret_1");
    server.expect_refused("bad_request", "/etc/passwd_1");
    server.expect_refused("bad_request", "x\0y_1");
    server.expect_refused("not_found", "nothere_1");
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
    let found = poll_until(Duration::from_secs(15), || {
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
    // Served in place: a manifest of the whole file, and no chunk file in `temp/`.
    let sizes: Vec<u64> = chunk_files(tmp.path(), "big.img")
        .iter()
        .map(|c| c.len() as u64)
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), SIZE);
    assert!((1..=5).all(|i| !tmp
        .path()
        .join("temp")
        .join(format!("big.img_{i}"))
        .exists()));
}

/// Whether process `pid` has the file named `file_name` open (Linux: `/proc/PID/fd`).
#[cfg(target_os = "linux")]
fn has_open(pid: u32, file_name: &str) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|target| target.ends_with(file_name)))
    })
}

#[cfg(unix)]
#[test]
fn interrupt_stops_the_binary_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), &[]);
    // Signal this child by its process id only.
    server.signal("INT");
    let exit = server.wait_exit(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit {exit:?}; stderr:\n{}",
        server.stderr_text()
    );
    assert!(server.log_text().contains("stopped"));
}

/// The chunk server must stop within this long of the first SIGTERM or Ctrl-C, whatever it is
/// doing (`docker stop` waits 10 s before it kills).
const STOP_BOUND: Duration = Duration::from_secs(3);

/// Sends SIGTERM and checks that the process exits by itself, with status 0, within
/// [`STOP_BOUND`].
fn assert_stops_in_time(server: &mut ServerProcess, state: &str) {
    let signalled = Instant::now();
    server.signal("TERM");
    let exit = server.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    eprintln!("{state}: stopped {took:?} after SIGTERM");
    assert!(
        exit.is_some_and(|s| s.success()),
        "{state}: exit {exit:?} after {took:?}; stderr:\n{}",
        server.stderr_text()
    );
    assert!(
        took < STOP_BOUND,
        "{state}: stopping took {took:?}\n{}",
        server.log_text()
    );
}

/// Connects from `from` and sends `request`; the connection is left open.
fn send_from(server: &ServerProcess, from: [u8; 4], request: &[u8]) -> Connection {
    let mut conn = Connection::connect_with(
        server.addr,
        Some(IpAddr::V4(Ipv4Addr::from(from))),
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .unwrap();
    conn.stream().write_all(request).unwrap();
    conn
}

#[cfg(unix)]
#[test]
fn sigterm_stops_an_idle_server_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), &[]);
    assert_stops_in_time(&mut server, "idle");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_in_time_during_throttled_transfers() {
    let tmp = tempfile::tempdir().unwrap();
    share_sparse(tmp.path(), 50_000_000);
    let mut server = start(tmp.path(), &["--max-rate", "100000"]);
    // One client reads as fast as the throttle lets it (a 10 MB chunk at 100 kB/s: 100 s);
    // another asks for a chunk and never reads it, so the server's writes block.
    let mut reading = send_from(&server, [127, 0, 0, 7], br#"{"filename": "big.bin_1"}"#);
    let reader = thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reading.read_body_to_end(Duration::from_secs(20), &mut sink, &mut |_| {});
    });
    let _stalled = send_from(&server, [127, 0, 0, 8], br#"{"filename": "big.bin_2"}"#);
    thread::sleep(Duration::from_millis(500));
    assert_stops_in_time(&mut server, "during throttled transfers");
    reader.join().unwrap();
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_in_time_during_a_slowloris_attack() {
    let tmp = tempfile::tempdir().unwrap();
    share_sparse(tmp.path(), 1_000_000);
    let mut server = start(tmp.path(), &[]);
    let mut attackers: Vec<Connection> = (0..70u8)
        .map(|i| send_from(&server, [127, 0, 0, 20 + i % 5], b"{\"filename\""))
        .collect();
    thread::sleep(Duration::from_millis(500));
    for conn in &mut attackers {
        let _ = conn.stream().write_all(b" ");
    }
    assert_stops_in_time(&mut server, "during a slowloris attack");
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_stops_the_server_in_time_during_the_split_of_a_large_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), &["--rescan", "1"]);
    // Dropped in after start: the rescan thread hashes it (it is served in place: the file is
    // read, nothing is written but its manifest).
    share_sparse(tmp.path(), 6_000_000_000);
    let pid = server.child.id();
    let hashing = poll_until(Duration::from_secs(10), || has_open(pid, "big.bin"));
    assert!(hashing, "the hash did not start:\n{}", server.log_text());
    assert_stops_in_time(&mut server, "during a split");
    // The interrupted hash recorded nothing half-done.
    let temp = tmp.path().join("temp");
    assert_eq!(fs::read_dir(temp.join(".incoming")).unwrap().count(), 0);
    assert!(!temp.join(".manifests").join("big.bin.json").exists());
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_in_time_while_it_hashes_a_large_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), &[]);
    // A chunk no manifest describes (from a legacy peer, say): answering an extended request
    // for it needs its digest. Sparse: 8 GiB that cost no disk.
    File::create(tmp.path().join("temp").join("huge.bin_1"))
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let _asking = send_from(
        &server,
        [127, 0, 0, 7],
        br#"{"filename":"huge.bin_1","p2p":{"v":1}}"#,
    );
    thread::sleep(Duration::from_millis(500));
    assert_stops_in_time(&mut server, "while hashing a large chunk");
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
        "--max-pending",
        "--max-per-ip",
        "--request-timeout",
        "--max-rate",
        "--min-rate",
        "--min-rate-window",
        "--verbose",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let bad = Command::new(BIN).arg("--rescan").arg("0").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_chunk_whose_file_changes_while_it_is_sent_ends_in_a_reset_not_a_clean_close() {
    // 16 MiB chunks: far more than the socket buffers hold, so the send is under way when the
    // file changes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    share_sparse(&dir, 80 * 1024 * 1024);
    let path = dir.join("served_files").join("big.bin");
    let server = start(&dir, &[]);
    let mut client = small_window_client(server.addr);
    client
        .write_all(br#"{"filename":"big.bin_1","p2p":{"v":1}}"#)
        .unwrap();
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        client.read_exact(&mut byte).unwrap();
        header.push(byte[0]);
    }
    let mut first = vec![0u8; 1024 * 1024];
    client.read_exact(&mut first).unwrap();

    // The file is rewritten in place, further into the chunk than was sent.
    let old = fs::metadata(&path).unwrap().modified().unwrap();
    let mut file = File::options().write(true).open(&path).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(12 * 1024 * 1024)).unwrap();
    file.write_all(b"changed").unwrap();
    file.set_modified(old + Duration::from_secs(2)).unwrap();
    drop(file);

    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest);
    assert!(
        matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the answer ended with {end:?} after {} bytes, not a reset",
        first.len() + rest.len()
    );
    server.expect_event("served", &[("chunk", "big.bin_1"), ("outcome", "error")]);
    let events = server.events();
    let served = testkit::events::matching(&events, "served", &[("chunk", "big.bin_1")]);
    assert_eq!(
        served[0].get("reason"),
        Some("the file changed while it was sent"),
        "{}",
        server.log_text()
    );
}

/// A client whose receive buffer is small (64 KiB): the server can only send what it reads.
fn small_window_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}
