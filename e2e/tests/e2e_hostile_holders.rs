//! Holders that are broken or hostile in ways only a download shows: legacy servers that send
//! nothing, too much or a trickle, and legacy servers that must not be asked for what they did
//! not announce. The download fails cleanly (or succeeds exactly), leaves nothing unverifiable
//! behind, and never passes unverifiable data on as verified.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use testkit::legacy::{legacy_announce, legacy_split, LegacyServer, Mode};
use testkit::prelude::*;

/// What a [`ScriptedServer`] does with a request for chunk `<content>_<index>`.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Closes at once, sending nothing.
    Nothing,
    /// Streams junk bytes, as fast as it can, until the client goes away.
    Endless,
    /// Sends one byte every `0` milliseconds, for ever.
    Trickle(u64),
}

/// A legacy-protocol server (raw bytes, end = close) that answers as told, counting how many
/// connections it holds at once and which chunks it was asked for. Stops on drop.
struct ScriptedServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<String>>>,
    most_at_once: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    fn start(ip: Ipv4Addr, answer: Answer) -> ScriptedServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind scripted server");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, asked, most) = (stop.clone(), asked.clone(), most_at_once.clone());
            std::thread::spawn(move || {
                let open = Arc::new(AtomicUsize::new(0));
                let mut handlers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let (stop, asked, open) = (stop.clone(), asked.clone(), open.clone());
                    handlers.push(std::thread::spawn(move || {
                        serve(stream, answer, &stop, &asked);
                        open.fetch_sub(1, Ordering::SeqCst);
                    }));
                }
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        ScriptedServer {
            addr,
            stop,
            asked,
            most_at_once,
            thread: Some(thread),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, answer: Answer, stop: &AtomicBool, asked: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 1024];
    let Ok(n) = stream.read(&mut buf) else { return };
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let name = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("filename")?.as_str().map(str::to_owned))
        .unwrap_or(text);
    if let Ok(mut a) = asked.lock() {
        a.push(name);
    }
    match answer {
        Answer::Nothing => {}
        Answer::Endless => {
            let junk = vec![0x5Au8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) && stream.write_all(&junk).is_ok() {}
        }
        Answer::Trickle(every_ms) => {
            while !stop.load(Ordering::SeqCst) && stream.write_all(b"x").is_ok() {
                std::thread::sleep(Duration::from_millis(every_ms));
            }
        }
    }
}

/// Makes `viewer`'s listener see legacy user `user` at `ip` (chunk port `port`, given to the
/// listener as its `--legacy-chunk-port`) holding `chunks`, announcing until it shows.
fn announce_legacy(net: &TestNet, viewer: &Peer, ip: Ipv4Addr, user: &str, chunks: &[String]) {
    let mut last: Option<Instant> = None;
    let expected: ChunkSet = ChunkSet::parse(
        &(1..=5)
            .map(|i| {
                if chunks.iter().any(|c| c.ends_with(&format!("_{i}"))) {
                    char::from(b'0' + i)
                } else {
                    '-'
                }
            })
            .collect::<String>(),
    )
    .expect("chunk set");
    net.wait_until(WAIT, &format!("tags.txt lists legacy {user}"), || {
        if last.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            legacy_announce(ip, net.broadcast(), user, chunks);
            last = Some(Instant::now());
        }
        let tags = viewer.tags()?;
        tags.entries
            .iter()
            .find(|e| e.user == user && e.chunks == expected)
            .map(|_| ())
            .ok_or_else(|| format!("tags.txt is:\n{tags}"))
    });
}

fn chunk_files(peer: &Peer, content: &str) -> Vec<(std::path::PathBuf, u64)> {
    files_under(&peer.temp_dir())
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{content}_")))
        })
        .collect()
}

fn names(content: &str, indexes: &[u8]) -> Vec<String> {
    indexes.iter().map(|i| format!("{content}_{i}")).collect()
}

#[test]
fn a_legacy_server_that_sends_nothing_yields_no_file() {
    let net = TestNet::new(Duration::from_secs(60));
    let ip = net.next_ip();
    let server = ScriptedServer::start(ip, Answer::Nothing);
    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr.port().to_string()]);
    announce_legacy(&net, &c, ip, "ece", &names("ece", &[1, 2, 3]));
    let out = c.downloader(&["get", "ece"]);
    assert!(
        !out.status.success(),
        "five empty answers are not a file\n{}",
        describe_output(&out)
    );
    assert!(files_under(&c.downloads_dir()).is_empty());
    assert!(
        chunk_files(&c, "ece").is_empty(),
        "{:?}",
        chunk_files(&c, "ece")
    );
}

#[test]
fn legacy_holders_are_asked_only_for_what_they_announced_one_request_at_a_time() {
    let net = TestNet::new(Duration::from_secs(60));
    let ece_ip = net.next_ip();
    let dir = net.folder("ece-legacy");
    // 3 bytes: the legacy split keeps three one-byte chunks, and announces only those.
    let original = dir.join("ece.txt");
    std::fs::write(&original, b"abc").unwrap();
    let (content, chunks) = legacy_split(&original, &dir.join("chunks"));
    assert_eq!(chunks.len(), 3);
    let server = LegacyServer::start(ece_ip, &dir.join("chunks"), Mode::Close);
    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr().port().to_string()]);
    announce_legacy(&net, &c, ece_ip, "ece", &chunks);
    let out = c.downloader(&["get", &content]);
    assert_success(&out, "the 3-byte legacy file");
    assert_eq!(std::fs::read(printed_path(&out, &c.dir)).unwrap(), b"abc");
    let asked = server.requests();
    assert!(
        asked
            .iter()
            .all(|r| !r.contains("ece_4") && !r.contains("ece_5")),
        "asked for chunks ece never announced: {asked:?}"
    );
    assert_eq!(asked.len(), 3, "{asked:?}");

    // One request at a time: a scripted holder of five chunks that trickles for a moment would
    // show two connections at once if the downloader opened them in parallel.
    let ip = net.next_ip();
    let slow = ScriptedServer::start(ip, Answer::Nothing);
    let d = net.peer("d");
    d.start_listener(&["--legacy-chunk-port", &slow.addr.port().to_string()]);
    announce_legacy(&net, &d, ip, "song", &names("song", &[1, 2, 3, 4, 5]));
    let _ = d.downloader(&["get", "song"]);
    assert_eq!(slow.asked().len(), 5, "{:?}", slow.asked());
    assert_eq!(
        slow.most_at_once.load(Ordering::SeqCst),
        1,
        "a legacy holder was sent several requests at once"
    );
}

#[test]
fn a_legacy_holder_sending_without_end_is_stopped_at_the_size_limit_and_leaves_nothing() {
    let net = TestNet::new(Duration::from_secs(60));
    let ip = net.next_ip();
    let server = ScriptedServer::start(ip, Answer::Endless);
    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr.port().to_string()]);
    announce_legacy(&net, &c, ip, "flood", &names("flood", &[1, 2, 3, 4, 5]));
    let started = Instant::now();
    let out = c.downloader(&["--max-size", "5M", "get", "flood"]);
    assert!(
        !out.status.success(),
        "an endless chunk is no chunk\n{}",
        describe_output(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        all_output(&out).contains("more than the"),
        "the failure names the limit\n{}",
        describe_output(&out)
    );
    assert!(files_under(&c.downloads_dir()).is_empty());
    let left = chunk_files(&c, "flood");
    assert!(
        left.is_empty(),
        "unverifiable chunks left in temp/: {left:?}"
    );
    let incoming: u64 = files_under(&c.temp_dir()).iter().map(|(_, n)| n).sum();
    assert!(incoming < 1 << 20, "{incoming} bytes left in temp/");
}

#[test]
fn a_single_trickling_holder_is_given_up_with_a_clear_failure() {
    let net = TestNet::new(Duration::from_secs(60));
    let ip = net.next_ip();
    let server = ScriptedServer::start(ip, Answer::Trickle(500));
    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr.port().to_string()]);
    announce_legacy(&net, &c, ip, "drip", &names("drip", &[1, 2, 3, 4, 5]));
    let started = Instant::now();
    // The idle timeout never fires (a byte every half second); the minimum rate does.
    let out = c.downloader(&["--idle-timeout", "3", "get", "drip"]);
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "a trickle is no download\n{}",
        describe_output(&out)
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let text = all_output(&out);
    assert!(
        text.contains("too slow") && text.contains("kept"),
        "the failure says the holder was too slow and what is kept\n{}",
        describe_output(&out)
    );
    drop(server);
}

#[test]
fn a_legacy_download_is_passed_on_unverified() {
    let net = TestNet::new(Duration::from_secs(90));
    let ece_ip = net.next_ip();
    let dir = net.folder("ece-legacy");
    let original = dir.join("ece.txt");
    write_random_file(&original, 10_000, 3);
    let (content, chunks) = legacy_split(&original, &dir.join("chunks"));
    let server = LegacyServer::start(ece_ip, &dir.join("chunks"), Mode::Close);
    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &server.addr().port().to_string()]);
    announce_legacy(&net, &c, ece_ip, "ece", &chunks);
    let out = c.downloader(&["get", &content]);
    assert_success(&out, "the legacy download");

    // carol passes it on; dave hears only carol.
    c.start_chunk_server(&[], &[]);
    c.start_announcer("carol", ANNOUNCE_INTERVAL_SECS);
    let d = net.peer("d");
    d.start_listener(&[]);
    let entry = net.wait_until(WAIT, "dave's tags.txt lists carol's ece", || {
        let tags = d.tags()?;
        tags.entries
            .iter()
            .find(|e| e.user == "carol" && e.content == content && e.chunks == ChunkSet::ALL)
            .cloned()
            .ok_or_else(|| format!("tags.txt is:\n{tags}"))
    });
    assert_eq!(
        entry.sha256, None,
        "carol must not vouch for a digest nobody vouched for: {entry:?}"
    );
    drop(server);
    let out = d.downloader(&["get", &content]);
    assert_success(&out, "dave's download from carol");
    assert_same_file(&original, &printed_path(&out, &d.dir));
    let events = d.client_events();
    let done = matching(
        &events,
        "download",
        &[("content", &content), ("outcome", "ok")],
    );
    assert_eq!(
        done.first().and_then(|e| e.get("verified")),
        Some("no"),
        "{}",
        show_events(&events)
    );
}
