//! Display spoofing: names and messages that come from the network or from `tags.txt` never
//! reach the terminal (or a log file) raw. Control, bidi and zero-width characters come out
//! escaped (`\u{202e}`), a flood of combining marks is cut, and the listener refuses such names
//! on the way in.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use shared::chunk::chunk_ranges;
use shared::digest::Digest;
use shared::protocol::{ErrorCode, Manifest, Request, Response};
use testkit::legacy::legacy_announcement;
use testkit::prelude::*;

/// Characters that must never be printed raw: the C0 and C1 controls, DEL, the bidi controls,
/// the zero-width characters and the line and paragraph separators the hostile peers below use.
const HOSTILE: [char; 17] = [
    '\u{1b}', '\u{7}', '\u{a}', '\u{9b}', '\u{7f}', '\u{202e}', '\u{202a}', '\u{2066}', '\u{200f}',
    '\u{61c}', '\u{200b}', '\u{200d}', '\u{2060}', '\u{feff}', '\u{2028}', '\u{2029}', '\u{85}',
];

/// A combining acute accent: 40 of them in a row make a "Zalgo" name.
const ACUTE: char = '\u{301}';

/// Panics if `text` holds a [`HOSTILE`] character (other than the newlines ending its lines)
/// or more than 8 combining marks in a row.
fn assert_terminal_safe(what: &str, text: &str) {
    let raw: Vec<(usize, char)> = text
        .lines()
        .flat_map(|line| line.char_indices())
        .filter(|(_, c)| HOSTILE.contains(c))
        .collect();
    assert!(
        raw.is_empty(),
        "{what} holds raw control/bidi/zero-width characters {raw:?}:\n{}",
        text.escape_debug()
    );
    let flood: String = std::iter::repeat_n(ACUTE, 9).collect();
    assert!(
        !text.contains(&flood),
        "{what} holds a flood of combining marks:\n{}",
        text.escape_debug()
    );
}

fn text_of(output: &std::process::Output) -> String {
    all_output(output)
}

/// Content names, each hiding one kind of character a terminal would obey or not show.
fn hostile_content_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "gnp.\u{202e}evil.exe",
        "embed\u{202a}ding",
        "iso\u{2066}late",
        "rlm\u{200f}mark",
        "alm\u{61c}mark",
        "zero\u{200b}width",
        "join\u{200d}er",
        "word\u{2060}joiner",
        "bom\u{feff}name",
        "line\u{2028}separator",
        "para\u{2029}separator",
        "csi\u{9b}31m",
        "del\u{7f}ete",
        "nel\u{85}line",
        "esc\u{1b}[31mred",
        "bell\u{7}ring",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push(format!("z{}algo", String::from_iter([ACUTE; 40])));
    names
}

#[test]
fn hostile_names_from_the_network_are_refused_and_never_printed_raw() {
    let net = TestNet::new(Duration::from_secs(60));
    let (c, target) = net.listening_peer("c");

    // A user name with a right-to-left override: the whole datagram is refused (and logged).
    let spoofer_ip = net.next_ip();
    let spoofer = UdpSocket::bind((spoofer_ip, 0)).expect("bind spoofer");
    let spoofed = legacy_announcement("mal\u{202e}yrol", &["spoofed.txt_1".to_owned()]);
    // Hostile content names beside an honest one, from a peer with an ordinary name: each
    // hostile entry is refused, the honest one listed.
    let mallory_ip = net.next_ip();
    let mallory = UdpSocket::bind((mallory_ip, 0)).expect("bind mallory");
    let mut files: Vec<String> = hostile_content_names()
        .iter()
        .map(|n| format!("{n}_1"))
        .collect();
    files.push("sentinel.txt_1".to_owned());
    let hostile = legacy_announcement("mallory", &files);
    let mut last_sent: Option<Instant> = None;
    net.wait_until(WAIT, "tags.txt lists mallory's sentinel.txt", || {
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            // Datagrams from one socket arrive in order, so the spoofed one has been handled
            // once the sentinel shows.
            spoofer.send_to(spoofed.as_bytes(), target).expect("send");
            mallory.send_to(hostile.as_bytes(), target).expect("send");
            spoofer
                .send_to(
                    legacy_announcement("honest", &["sentinel.txt_2".to_owned()]).as_bytes(),
                    target,
                )
                .expect("send");
            last_sent = Some(Instant::now());
        }
        let tags = c.tags()?;
        let seen = |user: &str| {
            tags.entries
                .iter()
                .any(|e| e.user == user && e.content == "sentinel.txt")
        };
        (seen("mallory") && seen("honest"))
            .then_some(())
            .ok_or_else(|| format!("tags.txt is:\n{tags}"))
    });

    // Refused on the way in: no such name or user is in tags.txt.
    let tags = c.tags().expect("read tags.txt");
    let listed: Vec<(&str, &str)> = tags
        .entries
        .iter()
        .map(|e| (e.user.as_str(), e.content.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("honest", "sentinel.txt"), ("mallory", "sentinel.txt")],
        "only the honest names may enter tags.txt:\n{tags}"
    );
    let tags_text = fs::read_to_string(c.dir.join(shared::TAGS_FILE)).expect("read tags.txt");
    assert_terminal_safe("tags.txt", &tags_text);

    // The refusal of the spoofed user name is logged, naming its sender, and the log line
    // itself is safe.
    let stderr = net.wait_until(WAIT, "the listener warns about the spoofed name", || {
        let stderr = c.stderr_of(Program::Listener);
        stderr
            .lines()
            .any(|l| l.starts_with("listener: warning: ") && l.contains(&spoofer_ip.to_string()))
            .then(|| stderr.clone())
            .ok_or_else(|| format!("listener stderr:\n{stderr}"))
    });
    assert!(
        stderr.contains("\\u{202e}"),
        "the warning should show the offending character escaped:\n{stderr}"
    );
    assert_terminal_safe("listener stderr", &stderr);

    let list = c.downloader(&["list"]);
    assert_success(&list, "downloader list");
    let text = text_of(&list);
    assert_terminal_safe("downloader list", &text);
    assert!(text.contains("sentinel.txt"), "{text}");
}

#[test]
fn chunk_names_requested_from_the_network_are_logged_escaped() {
    let net = TestNet::new(Duration::from_secs(60));
    let s = net.peer("s");
    s.start_chunk_server(&[], &[]);
    let addr = s.chunk_addr();
    net.wait_until(WAIT, "the chunk server listens", || {
        tcp_listening(addr)
            .then_some(())
            .ok_or_else(|| format!("nothing listens on {addr}"))
    });
    let names = hostile_content_names();
    for name in &names {
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let request = Request::LegacyChunk {
            filename: format!("{name}_1"),
        };
        stream.write_all(&request.encode()).expect("send request");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{name:?} must not be served");
    }
    let log_path = s.dir.join(shared::SERVER_LOG);
    net.wait_until(WAIT, "every hostile request is logged", || {
        let refused = matching(&read_events(&log_path), "refused", &[]).len();
        (refused >= names.len())
            .then_some(())
            .ok_or_else(|| format!("{refused} refusals logged"))
    });
    // Each name is logged, escaped, and reads back exactly as it was sent.
    let events = read_events(&log_path);
    for name in &names {
        let chunk = format!("{name}_1");
        assert_eq!(
            matching(&events, "refused", &[("chunk", &chunk)]).len(),
            1,
            "{chunk:?} should be logged once:\n{}",
            show_events(&events)
        );
    }
    let log = fs::read_to_string(&log_path).expect("read server.log");
    assert_terminal_safe("server.log", &log);
    assert_terminal_safe("chunk-server stderr", &s.stderr_of(Program::ChunkServer));
}

/// Writes `tags.txt` for `peer` by hand: one live entry per `(user, address, proto, content,
/// size, sha256)`, the names already percent-encoded as the file holds them.
fn write_tags(peer: &Peer, lines: &[(&str, SocketAddr, &str, &str, &str, &str)]) {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut text = String::from("# tags.txt written by hand\n");
    for (user, addr, proto, content, size, sha) in lines {
        text.push_str(&format!(
            "{user} {addr} {proto} {content} 12345 {size} {sha} - 60 {now}\n"
        ));
    }
    fs::write(peer.dir.join(shared::TAGS_FILE), text).expect("write tags.txt");
}

#[test]
fn a_hostile_tags_txt_prints_nothing_raw() {
    let net = TestNet::new(Duration::from_secs(60));
    let c = net.peer("c");
    let at = |n: u8| SocketAddr::from(([127, 0, 0, n], 5001));
    write_tags(
        &c,
        &[
            ("alice", at(2), "legacy", "notes.txt", "-", "-"),
            ("mallory", at(3), "legacy", "%1B[31mred%1B[0m", "-", "-"),
            ("bell%07", at(4), "legacy", "ring%07ring", "-", "-"),
            ("eve", at(5), "legacy", "new%0Aline", "-", "-"),
            (
                "%E2%80%AEtrudy",
                at(6),
                "legacy",
                "gnp.%E2%80%AEexe",
                "-",
                "-",
            ),
        ],
    );
    for args in [&["list"][..], &[][..], &["get", "notes.txt"][..]] {
        let output = c.downloader(args);
        let text = text_of(&output);
        let what = format!("downloader {}", args.join(" "));
        assert_terminal_safe(&what, &text);
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("line")),
            "{what} printed a name's %0A as a line break:\n{text}"
        );
        assert!(
            text.contains("tags.txt"),
            "{what} should say that tags.txt is refused:\n{text}"
        );
    }
}

/// A chunk server of our protocol that knows `content` (serving its manifest) but refuses
/// every chunk with `message`, for as long as it lives.
struct RefusingServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RefusingServer {
    fn start(ip: Ipv4Addr, manifest: Manifest, message: &str) -> RefusingServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind fake chunk server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let message = message.to_owned();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => answer(stream, &manifest, &message),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            }
        });
        RefusingServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RefusingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, manifest: &Manifest, message: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    let request = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
        match Request::decode(&bytes) {
            Ok((request, _)) => break request,
            Err(shared::protocol::DecodeError::Incomplete) => {}
            Err(_) => return,
        }
    };
    let response = match request {
        Request::Manifest { .. } => Response::Manifest(manifest.clone()),
        _ => Response::Error {
            code: ErrorCode::NotFound,
            message: message.to_owned(),
        },
    };
    let _ = stream.write_all(&response.encode());
}

#[test]
fn hostile_error_messages_are_escaped_in_progress_logs_and_history() {
    let net = TestNet::new(Duration::from_secs(90));
    let c = net.peer("c");
    let content: Vec<u8> = (0u8..100).collect();
    let ranges = chunk_ranges(content.len() as u64);
    let manifest = Manifest {
        states: None,
        name: "victim.bin".to_owned(),
        size: content.len() as u64,
        sha256: Digest::of(&content),
        chunks: std::array::from_fn(|i| {
            Digest::of(&content[ranges[i].start as usize..ranges[i].end as usize])
        }),
    };
    let message = format!(
        "no \u{1b}[31mchunk\u{7} \u{202e}here\u{2028}\u{9b}2J{}",
        String::from_iter([ACUTE; 30])
    );
    let server = RefusingServer::start(net.next_ip(), manifest.clone(), &message);
    let sha = manifest.sha256.to_string();
    write_tags(
        &c,
        &[(
            "hostile",
            server.addr,
            "p2p/1",
            "victim.bin",
            &content.len().to_string(),
            &sha,
        )],
    );

    let get = c.downloader(&["get", "victim.bin"]);
    let text = text_of(&get);
    assert!(!get.status.success(), "{text}");
    assert_terminal_safe("downloader get", &text);
    assert!(
        text.contains("\\u{1b}[31mchunk\\u{7} \\u{202e}here"),
        "the holder's message should be shown, escaped:\n{text}"
    );

    let log = fs::read_to_string(c.dir.join(shared::CLIENT_LOG)).expect("read client.log");
    assert_terminal_safe("client.log", &log);
    let events = c.client_events();
    let reasons: Vec<&str> = matching(&events, "fetched", &[("content", "victim.bin")])
        .iter()
        .filter_map(|e| e.get("reason"))
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r.contains(&message)),
        "client.log should keep the holder's message exactly, escaped: {reasons:?}"
    );

    let history = c.downloader(&["history"]);
    assert_success(&history, "downloader history");
    let text = text_of(&history);
    assert_terminal_safe("downloader history", &text);
    assert!(text.contains("victim.bin"), "{text}");
    drop(server);
}
