//! Hostile clients against the real binary: slowloris, idle-connection floods, slow readers,
//! symbolic links planted in the store, and requests that would make the server hash a large
//! chunk again and again. The attackers are written here, on raw sockets; they come from
//! 127.0.0.5 (or from several 127.0.0.x), while the honest client is bound to 127.0.0.6: the
//! honest request must get its whole chunk within [`HONEST_BOUND`] (it takes milliseconds) and
//! every attacker connection must end up closed by the server, with the reason logged.
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::symlink;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::digest::Digest;
use shared::protocol::{ErrorCode, Manifest, Request, Response};
use shared::store::{ChunkStore, Origin, StoredManifest};
use socket2::{Domain, Protocol, Socket, Type};
use testkit::client::{p2p_fetch_from, send_raw};
use testkit::files::{chunk_files, share_sparse};
use testkit::process::{start_chunk_server_process as start, ServerProcess};
use testkit::wait::poll_until;

/// Where the attackers come from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// Where the honest client comes from: a new address, never seen by the server before.
const HONEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
/// Generous: the honest request takes milliseconds when the server is not held up.
const HONEST_BOUND: Duration = Duration::from_secs(3);
/// How long the server may take to close every attacker connection.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// One attacker connection on a raw, non-blocking socket: opening it never waits for the server
/// to accept, and nothing done on it blocks the attack loop.
struct Hostile {
    socket: Socket,
    closed: bool,
    received: usize,
}

impl Hostile {
    /// Starts connecting from `from` to `server`; `recv_buffer` shrinks the receive window, so
    /// a slow reader cannot be satisfied by socket buffers alone.
    fn open(server: SocketAddr, from: Ipv4Addr, recv_buffer: Option<usize>) -> Hostile {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket
            .bind(&SocketAddr::new(from.into(), 0).into())
            .unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.set_nonblocking(true).unwrap();
        // A non-blocking connect reports "in progress"; a real failure shows up as a closed
        // connection on the first read.
        let _ = socket.connect(&server.into());
        Hostile {
            socket,
            closed: false,
            received: 0,
        }
    }

    fn connected(&self) -> bool {
        self.socket.peer_addr().is_ok()
    }

    /// Sends what the socket takes of `bytes` now.
    fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.socket.send(bytes) {
            self.note_error(&e);
        }
    }

    /// Reads at most `limit` bytes that are already there; notices a close or a reset.
    fn read(&mut self, limit: usize) {
        let mut buf = vec![0u8; limit.max(1)];
        match (&self.socket).read(&mut buf) {
            Ok(0) => self.closed = true,
            Ok(n) => self.received += n,
            Err(e) => self.note_error(&e),
        }
    }

    fn note_error(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::{Interrupted, NotConnected, WouldBlock};
        // Not yet connected, or nothing to read or no room to write: still open.
        if !matches!(e.kind(), WouldBlock | NotConnected | Interrupted) {
            self.closed = true;
        }
    }
}

/// A set of attacker connections driven by a background thread: every `period`, `step` is
/// applied to each connection still open, then each is checked for a close by the server.
struct Attack {
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
    ready: Arc<AtomicUsize>,
    total: usize,
    thread: Option<JoinHandle<()>>,
}

impl Attack {
    fn start(
        mut conns: Vec<Hostile>,
        period: Duration,
        mut step: impl FnMut(&mut Hostile, u32) + Send + 'static,
        is_ready: fn(&Hostile) -> bool,
    ) -> Attack {
        let total = conns.len();
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, closed, ready) = (stop.clone(), closed.clone(), ready.clone());
            thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    for conn in conns.iter_mut().filter(|c| !c.closed) {
                        step(conn, round);
                        if !conn.closed {
                            conn.read(0);
                        }
                    }
                    closed.store(conns.iter().filter(|c| c.closed).count(), Ordering::SeqCst);
                    ready.store(
                        conns.iter().filter(|c| c.closed || is_ready(c)).count(),
                        Ordering::SeqCst,
                    );
                    round += 1;
                    let next = Instant::now() + period;
                    while Instant::now() < next && !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        Attack {
            stop,
            closed,
            ready,
            total,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until every connection is established, or closed, as `is_ready` says.
    fn wait_ready(&self) {
        poll_until(Duration::from_secs(10), || {
            self.ready.load(Ordering::SeqCst) == self.total
        });
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A peer folder sharing one sparse file of `size` bytes, `big.bin`, and the server on it.
fn server_sharing(size: u64, extra: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    share_sparse(&dir, size);
    let server = start(&dir, extra);
    (tmp, server)
}

/// The honest request: the whole of `big.bin_1`, from a new address, within the bound.
fn assert_honest_request_is_served(server: &ServerProcess, attack: &str) {
    let expected = chunk_files(&server.dir, "big.bin").swap_remove(0);
    let started = Instant::now();
    let got = p2p_fetch_from(server.addr, HONEST, "big.bin_1", HONEST_BOUND);
    let took = started.elapsed();
    match got {
        Ok(body) => assert!(
            body == expected,
            "{attack}: the honest client got {} bytes, not the chunk",
            body.len()
        ),
        Err(e) => panic!(
            "{attack}: the honest request failed after {took:?}: {e}\n{}",
            server.log_text()
        ),
    }
    assert!(
        took < HONEST_BOUND,
        "{attack}: the honest request took {took:?}"
    );
}

fn assert_all_closed(server: &ServerProcess, attack: &Attack, what: &str) {
    let all = poll_until(CLOSE_BOUND, || attack.closed() == attack.total);
    assert!(
        all,
        "{what}: the server closed only {} of {} attacker connections\n{}",
        attack.closed(),
        attack.total,
        server.log_text()
    );
}

/// A valid request prefix on each of `conns`, then one byte of JSON white space a second on each:
/// started, and every connection made.
fn slowloris(conns: Vec<Hostile>) -> Attack {
    let attack = Attack::start(
        conns,
        Duration::from_secs(1),
        |conn, round| conn.send(if round == 0 { b"{\"filename\"" } else { b" " }),
        Hostile::connected,
    );
    attack.wait_ready();
    attack
}

#[test]
fn slowloris_from_one_address_does_not_delay_an_honest_request() {
    let (_tmp, server) = server_sharing(5_000_000, &[]);
    // A valid request prefix, then one byte of JSON white space at a time, faster than any
    // per-read timeout: only a deadline for the whole request ends such a connection.
    let conns = (0..70)
        .map(|_| Hostile::open(server.addr, ATTACKER, None))
        .collect();
    let attack = slowloris(conns);

    assert_honest_request_is_served(&server, "slowloris");

    assert_all_closed(&server, &attack, "slowloris");
    let ip = ATTACKER.to_string();
    assert!(server.count_events("refused", "too_many_connections", &ip) > 0);
    assert!(server.count_events("refused", "timeout", &ip) > 0);
}

#[test]
fn slowloris_from_many_addresses_does_not_take_the_transfer_slots() {
    // 10 addresses × 7 connections: under any per-address cap, but more than the 32 transfers
    // served at once here. Clients still sending their request must not hold transfer slots.
    let (_tmp, server) = server_sharing(5_000_000, &["--max-connections", "32"]);
    let conns = (10..20)
        .flat_map(|last| (0..7).map(move |_| Ipv4Addr::new(127, 0, 0, last)))
        .map(|from| Hostile::open(server.addr, from, None))
        .collect();
    let attack = slowloris(conns);

    assert_honest_request_is_served(&server, "slowloris from 10 addresses");

    assert_all_closed(&server, &attack, "slowloris from 10 addresses");
    assert!(server.count_events("refused", "timeout", "127.0.0.10") > 0);
}

#[test]
fn idle_connection_flood_does_not_delay_an_honest_request() {
    let (_tmp, server) = server_sharing(5_000_000, &[]);
    let conns = (0..300)
        .map(|_| Hostile::open(server.addr, ATTACKER, None))
        .collect();
    let attack = Attack::start(
        conns,
        Duration::from_millis(500),
        |_, _| {},
        |c| c.connected(),
    );
    attack.wait_ready();

    assert_honest_request_is_served(&server, "300 idle connections");

    assert_all_closed(&server, &attack, "300 idle connections");
    let ip = ATTACKER.to_string();
    assert!(server.count_events("refused", "too_many_connections", &ip) > 0);
    assert!(server.count_events("refused", "timeout", &ip) > 0);
}

#[test]
fn slow_readers_do_not_delay_an_honest_request_and_are_dropped() {
    // 10 MB chunks: far more than the socket buffers of a small receive window hold.
    let (_tmp, server) = server_sharing(50_000_000, &["--min-rate-window", "2"]);
    let conns = (0..64)
        .map(|_| Hostile::open(server.addr, ATTACKER, Some(4096)))
        .collect();
    // Ask for the chunk, then read 1 KB every 2 s: 500 bytes/s, below the 1 KiB/s floor.
    let attack = Attack::start(
        conns,
        Duration::from_secs(2),
        |conn, round| {
            if round == 0 {
                conn.send(br#"{"filename": "big.bin_1"}"#);
            } else {
                conn.read(1024);
            }
        },
        |c| c.received > 0,
    );
    attack.wait_ready();

    assert_honest_request_is_served(&server, "64 slow readers");

    assert_all_closed(&server, &attack, "64 slow readers");
    let ip = ATTACKER.to_string();
    assert!(server.count_events("refused", "too_many_connections", &ip) > 0);
    assert!(
        server.count_events("served", "too_slow", &ip) > 0,
        "{}",
        server.log_text()
    );
}

/// A manifest for `name` as the store keeps it.
fn stored_manifest(name: &str, data: &[u8]) -> StoredManifest {
    let chunks = shared::chunk::chunk_ranges(data.len() as u64).map(|r| {
        let range = usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap();
        Digest::of(&data[range])
    });
    StoredManifest {
        manifest: Manifest {
            states: None,
            name: name.into(),
            size: data.len() as u64,
            sha256: Digest::of(data),
            chunks,
        },
        origin: Origin::Downloaded {
            verified: true,
            file: None,
        },
    }
}

fn p2p_answer(server: &ServerProcess, request: &Request) -> Response {
    let mut conn = shared::connection::Connection::connect_with(
        server.addr,
        None,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap();
    conn.write_request(request).unwrap();
    conn.read_response().expect("an answer header")
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn symbolic_links_and_special_files_planted_in_the_store_are_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    let server = start(&dir, &[]);
    let store = ChunkStore::open(dir.join("temp")).unwrap();
    let secret = tmp.path().join("secret.txt");
    fs::write(&secret, b"TOP SECRET").unwrap();

    // A chunk that is a link to a file outside the store, with a manifest that describes the
    // secret, so that even a request carrying the digest would be answered.
    let chunk = store.root().join("planted.txt_1");
    symlink(&secret, &chunk).unwrap();
    let mut described = b"TOP SECRET".to_vec();
    described.extend_from_slice(&[0; 40]);
    let planted = stored_manifest("planted.txt", &described);
    store.save_manifest(&planted).unwrap();
    // A manifest that is a link to a manifest file outside the store.
    let outside = tmp.path().join("outside.json");
    fs::write(
        &outside,
        serde_json::to_vec(&stored_manifest("linked.txt", b"elsewhere")).unwrap(),
    )
    .unwrap();
    symlink(&outside, store.manifest_path("linked.txt")).unwrap();
    // A FIFO: opening it for reading would wait for a writer for ever.
    let fifo = store.root().join("fifo.bin_1");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let legacy = send_raw(server.addr, br#"{"filename": "planted.txt_1"}"#).unwrap();
    assert!(legacy.is_empty(), "the linked file was served: {legacy:?}");
    for filename in ["planted.txt_1", "fifo.bin_1"] {
        let answer = p2p_answer(
            &server,
            &Request::Chunk {
                filename: filename.into(),
                content_sha256: None,
                offset: 0,
                length: None,
            },
        );
        assert_eq!(
            error_code(&answer),
            Some(ErrorCode::NotFound),
            "{filename}: {answer:?}"
        );
    }
    let answer = p2p_answer(
        &server,
        &Request::Manifest {
            content: "linked.txt".into(),
            content_sha256: None,
        },
    );
    assert_eq!(error_code(&answer), Some(ErrorCode::NotFound), "{answer:?}");

    server.expect_refused("not_found", "planted.txt_1");
    server.expect_refused("not_found", "fifo.bin_1");
    let log = server.log_text();
    assert!(log.contains("symbolic link"), "no reason logged:\n{log}");
    // Links and special files are refused; the store itself is served as before.
    assert_eq!(fs::read(&secret).unwrap(), b"TOP SECRET");
}

/// Bytes the process has read through `read` calls so far (`rchar` in `/proc/PID/io`).
fn bytes_read(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/<pid>/io")
}

#[test]
fn a_chunk_without_a_manifest_is_not_hashed_again_for_every_request() {
    const SIZE: u64 = 64 * 1024 * 1024;
    const REQUESTS: u64 = 8;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    let server = start(&dir, &[]);
    // A chunk no manifest describes (fetched from a legacy peer, say): sparse, so it costs no
    // disk, but it reads back as 64 MiB of zeros.
    let store = ChunkStore::open(dir.join("temp")).unwrap();
    File::create(store.root().join("legacy.bin_2"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let zeros = Digest::of(&vec![0u8; usize::try_from(SIZE).unwrap()]);

    let before = bytes_read(server.child.id());
    for _ in 0..REQUESTS {
        // From the end of the chunk: the answer is a header only, no body to read from disk.
        let answer = p2p_answer(
            &server,
            &Request::Chunk {
                filename: "legacy.bin_2".into(),
                content_sha256: None,
                offset: SIZE,
                length: None,
            },
        );
        assert_eq!(
            answer,
            Response::Chunk {
                size: SIZE,
                length: 0,
                sha256: zeros
            }
        );
    }
    let read = bytes_read(server.child.id()) - before;
    assert!(
        read < 2 * SIZE,
        "{REQUESTS} requests for a {SIZE}-byte chunk made the server read {read} bytes"
    );

    // A new file under that name is a new version: its own digest, not the remembered one.
    let replacement = tmp.path().join("replacement");
    fs::write(&replacement, b"other bytes").unwrap();
    fs::rename(&replacement, store.root().join("legacy.bin_2")).unwrap();
    let answer = p2p_answer(
        &server,
        &Request::Chunk {
            filename: "legacy.bin_2".into(),
            content_sha256: None,
            offset: 0,
            length: None,
        },
    );
    assert!(
        matches!(answer, Response::Chunk { size: 11, sha256, .. } if sha256 == Digest::of(b"other bytes")),
        "{answer:?}"
    );
}
