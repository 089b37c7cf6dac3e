//! Hostile and broken input from the network: the listener and the chunk server log it, refuse
//! it, leak nothing and keep serving everyone else.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use testkit::legacy::{legacy_announcement, legacy_download};
use testkit::prelude::*;

#[test]
fn listener_survives_junk_datagrams_and_keeps_indexing() {
    let net = TestNet::new(Duration::from_secs(60));
    let (c, target) = net.listening_peer("c");

    // Each junk datagram comes from its own IP: the listener may (and does) limit its warnings
    // to one per sender and interval, so that a flood cannot fill the disk.
    let junk: [(&str, Vec<u8>); 4] = [
        ("not JSON", b"hello, this is not json {".to_vec()),
        ("wrong types", br#"{"username": 5, "files": "x"}"#.to_vec()),
        ("an array", b"[]".to_vec()),
        ("60 KB of junk", random_bytes(60_000, 60)),
    ];
    let mut junk_senders = Vec::new();
    for (what, bytes) in &junk {
        let socket = UdpSocket::bind((net.next_ip(), 0)).expect("bind junk sender");
        let sent = socket
            .send_to(bytes, target)
            .unwrap_or_else(|e| panic!("send {what}: {e}"));
        assert_eq!(sent, bytes.len(), "{what} must go out as one datagram");
        junk_senders.push((*what, socket.local_addr().expect("sender address")));
    }

    let sender_ip = net.next_ip();
    let socket = UdpSocket::bind((sender_ip, 0)).expect("bind sender");
    let valid = legacy_announcement("mallory", &["m.txt_1".into(), "m.txt_2".into()]);
    let mut last_sent: Option<Instant> = None;
    net.wait_until(WAIT, "tags.txt lists mallory after the junk", || {
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            socket
                .send_to(valid.as_bytes(), target)
                .expect("send valid announcement");
            last_sent = Some(Instant::now());
        }
        c.check_running(Program::Listener)?;
        let tags = c.tags()?;
        tags.entries
            .iter()
            .find(|e| {
                e.user == "mallory"
                    && e.addr.ip() == sender_ip
                    && e.content == "m.txt"
                    && e.chunks == ChunkSet::parse("12---").expect("chunk set")
            })
            .map(|_| ())
            .ok_or_else(|| format!("tags.txt is:\n{tags}"))
    });
    c.check_running(Program::Listener)
        .unwrap_or_else(|e| panic!("{e}"));
    net.wait_until(
        WAIT,
        "listener.stderr has a warning naming each junk sender",
        || {
            let stderr = c.stderr_of(Program::Listener);
            let missing: Vec<_> = junk_senders
                .iter()
                .filter(|(_, from)| {
                    !stderr.lines().any(|l| {
                        l.starts_with("listener: warning: ") && l.contains(&from.to_string())
                    })
                })
                .collect();
            missing
                .is_empty()
                .then_some(())
                .ok_or_else(|| format!("no warning for {missing:?} in:\n{stderr}"))
        },
    );
}

/// What a hostile client got back.
struct Probe {
    what: &'static str,
    local: SocketAddr,
    /// The bytes received before the server closed, or why reading stopped.
    response: Result<Vec<u8>, String>,
    /// The `refused` outcome this must be logged with, when the contract fixes it.
    outcome: Option<&'static str>,
}

/// Connects, sends `request` (unless `None`), and reads until the server closes (or 10 s).
fn probe(
    server: SocketAddr,
    what: &'static str,
    request: Option<Vec<u8>>,
    outcome: Option<&'static str>,
) -> Probe {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{what}: connect to {server}: {e}"));
    let local = stream.local_addr().expect("local address");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    if let Some(request) = request {
        // The server may close (and reset) before taking it all: that is a fine answer.
        let _ = stream.write_all(&request);
    }
    let mut response = Vec::new();
    let response = match stream.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(response),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "the server did not close within 10 s (got {} bytes)",
            response.len()
        )),
        Err(e) => Err(format!("read error {e} after {} bytes", response.len())),
    };
    Probe {
        what,
        local,
        response,
        outcome,
    }
}

#[test]
fn chunk_server_refuses_hostile_requests_and_keeps_serving() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let (original, _) = a.write_share("hello.txt", 10_007, 11);
    // Where a `../secret_1` request would land if the server joined names blindly to temp/.
    let secret = format!("TOP SECRET {}", a.name).repeat(20);
    fs::write(a.dir.join("secret_1"), &secret).expect("write secret");
    a.start_chunk_server(&[], &[]);
    let server = a.chunk_addr();
    net.wait_until(
        WAIT,
        "the chunk server has split hello.txt and listens",
        || {
            a.check_running(Program::ChunkServer)?;
            // Served in place: hashed once its manifest is recorded.
            let split = a
                .temp_dir()
                .join(".manifests")
                .join("hello.txt.json")
                .is_file();
            (split && tcp_listening(server))
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "split: {split}, listening on {server}: {}",
                        tcp_listening(server)
                    )
                })
        },
    );

    let legacy = |name: &str| format!("{{\"filename\": {}}}", serde_json::json!(name)).into_bytes();
    let requests = vec![
        ("path traversal", Some(legacy("../secret_1")), None),
        ("absolute path", Some(legacy("/etc/passwd_1")), None),
        ("NUL in the name", Some(legacy("secret\0_1")), None),
        (
            "junk bytes",
            Some(b"\x00\x01\x02GET / HTTP/1.0\r\n\r\n\xff".to_vec()),
            None,
        ),
        ("10 KB of junk", Some(random_bytes(10_240, 10)), None),
        ("silent client", None, Some("timeout")),
    ];
    // Run them all at once: the silent one takes the server's 5 s request timeout.
    let mut probes: Vec<Probe> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(what, request, outcome)| s.spawn(move || probe(server, what, request, outcome)))
            .collect();
        // Connect and close at once, while the others are in flight.
        let closed = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .expect("connect for an immediate close");
        let early = Probe {
            what: "connect and close immediately",
            local: closed.local_addr().expect("local address"),
            response: Ok(Vec::new()),
            outcome: Some("empty"),
        };
        drop(closed);
        let mut probes: Vec<Probe> = handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect();
        probes.push(early);
        probes
    });

    let needle = &secret.as_bytes()[..16];
    for p in &mut probes {
        let response = p
            .response
            .as_ref()
            .unwrap_or_else(|e| panic!("{} ({}): {e}", p.what, p.local));
        assert!(
            !response.windows(needle.len()).any(|w| w == needle),
            "{} leaked secret_1: got {:?}",
            p.what,
            String::from_utf8_lossy(response)
        );
    }

    // Each connection is refused in server.log, found by the client's address.
    const OUTCOMES: [&str; 8] = [
        "bad_request",
        "not_found",
        "wrong_content",
        "malformed",
        "too_large",
        "timeout",
        "empty",
        "error",
    ];
    net.wait_until(
        WAIT,
        "server.log has a refused line for each hostile connection",
        || {
            let events = a.server_events();
            let mut missing = Vec::new();
            for p in &probes {
                let peer = p.local.to_string();
                match matching(&events, "refused", &[("peer", &peer)]).first() {
                    None => missing.push(format!("{} ({peer})", p.what)),
                    Some(event) => {
                        let outcome = event.get("outcome").unwrap_or("");
                        assert!(
                            OUTCOMES.contains(&outcome),
                            "{}: unknown outcome in {event}",
                            p.what
                        );
                        if let Some(want) = p.outcome {
                            assert_eq!(outcome, want, "{}: {event}", p.what);
                        }
                    }
                }
            }
            missing.is_empty().then_some(()).ok_or_else(|| {
                format!(
                    "no refused line for {missing:?}; events:\n{}",
                    show_events(&events)
                )
            })
        },
    );
    let served = matching(&a.server_events(), "served", &[]).len();
    assert_eq!(served, 0, "nothing may be served to hostile clients");

    // And a well-behaved legacy client is still served.
    a.check_running(Program::ChunkServer)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = net.root().join("hello-legacy.txt");
    legacy_download(server, "hello.txt", &out).unwrap_or_else(|e| panic!("legacy download: {e}"));
    assert_same_file(&original, &out);
    a.check_running(Program::ChunkServer)
        .unwrap_or_else(|e| panic!("{e}"));
}
