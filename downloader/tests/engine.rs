//! In-process tests of the download engine against fake holders started in the test: honest
//! ones, one that corrupts what it sends, one that refuses. They pin down verification and
//! fallback without starting the other programs.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use downloader::catalog::{Holder, Target};
use downloader::download::{self, Config, DownloadError, Progress};
use shared::chunk::{chunk_ranges, ChunkName, ChunkSet};
use shared::connection::Connection;
use shared::digest::Digest;
use shared::peer_dir::PeerDir;
use shared::protocol::{ErrorCode, Manifest, Request, Response};
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::tags::Proto;

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    /// Sends the right header but flips a byte in every chunk body.
    Corrupt,
    /// Answers every chunk request with not_found.
    Refuse,
    /// Sends the header, then one byte every 100 ms.
    Trickle,
    /// Accepts the request and never answers.
    Silent,
    /// Sends at about 20 KB/s.
    Slow,
    /// Claims a chunk of 10^15 bytes, and sends zeros until the client leaves.
    Huge,
}

struct FakeHolder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    /// Body bytes written, and the offsets asked for.
    bytes_sent: Arc<AtomicUsize>,
    offsets: Arc<std::sync::Mutex<Vec<u64>>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeHolder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    let ranges = chunk_ranges(data.len() as u64);
    Manifest {
        name: name.into(),
        size: data.len() as u64,
        sha256: Digest::of(data),
        chunks: std::array::from_fn(|i| {
            let r = ranges[i];
            Digest::of(&data[r.start as usize..r.end as usize])
        }),
    }
}

fn start_holder(name: &str, data: Vec<u8>, behaviour: Behaviour) -> FakeHolder {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let bytes_sent = Arc::new(AtomicUsize::new(0));
    let offsets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let manifest = manifest_of(name, &data);
    let data = Arc::new(data);
    let (stop2, served2, sent2, offsets2) = (
        stop.clone(),
        served.clone(),
        bytes_sent.clone(),
        offsets.clone(),
    );
    let thread = thread::spawn(move || {
        let mut connections = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let (data, manifest, stop, served, sent, offsets) = (
                data.clone(),
                manifest.clone(),
                stop2.clone(),
                served2.clone(),
                sent2.clone(),
                offsets2.clone(),
            );
            // One thread per connection, so slow answers do not hold up other requests.
            connections.push(thread::spawn(move || {
                let mut conn = Connection::new(stream, Duration::from_secs(5)).unwrap();
                let Ok(request) = conn.read_request() else {
                    return;
                };
                match request {
                    Request::Manifest { .. } => {
                        let _ = conn.write_response(&Response::Manifest(manifest));
                    }
                    Request::Chunk {
                        filename, offset, ..
                    } => {
                        offsets.lock().unwrap().push(offset);
                        match behaviour {
                            Behaviour::Refuse => {
                                let _ = conn.write_response(&Response::Error {
                                    code: ErrorCode::NotFound,
                                    message: "no".into(),
                                });
                                return;
                            }
                            Behaviour::Silent => {
                                while !stop.load(Ordering::SeqCst) {
                                    thread::sleep(Duration::from_millis(10));
                                }
                                return;
                            }
                            Behaviour::Huge => {
                                let huge = 1_000_000_000_000_000;
                                let _ = conn.write_response(&Response::Chunk {
                                    size: huge,
                                    length: huge - offset,
                                    sha256: Digest::of(b"whatever"),
                                });
                                let zeros = vec![0u8; 64 * 1024];
                                while !stop.load(Ordering::SeqCst)
                                    && conn.stream().write_all(&zeros).is_ok()
                                {
                                    sent.fetch_add(zeros.len(), Ordering::SeqCst);
                                }
                                return;
                            }
                            _ => {}
                        }
                        let chunk = ChunkName::parse(&filename).unwrap();
                        let r = chunk_ranges(data.len() as u64)[chunk.position()];
                        let mut body = data[(r.start + offset) as usize..r.end as usize].to_vec();
                        if behaviour == Behaviour::Corrupt {
                            if let Some(b) = body.last_mut() {
                                *b ^= 0xff;
                            }
                        }
                        let _ = conn.write_response(&Response::Chunk {
                            size: r.len(),
                            length: r.len() - offset,
                            sha256: manifest.chunks[chunk.position()],
                        });
                        let step = match behaviour {
                            Behaviour::Trickle => 1,
                            Behaviour::Slow => 2000,
                            _ => body.len().max(1),
                        };
                        for piece in body.chunks(step) {
                            if stop.load(Ordering::SeqCst)
                                || conn.stream().write_all(piece).is_err()
                            {
                                return;
                            }
                            sent.fetch_add(piece.len(), Ordering::SeqCst);
                            if step < body.len() {
                                thread::sleep(Duration::from_millis(100));
                            }
                        }
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Request::LegacyChunk { .. } => {}
                }
            }));
        }
        for c in connections {
            let _ = c.join();
        }
    });
    FakeHolder {
        addr,
        stop,
        served,
        bytes_sent,
        offsets,
        thread: Some(thread),
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn target(name: &str, data: &[u8], holders: &[(&str, &FakeHolder)]) -> Target {
    let root = manifest_of(name, data).root();
    Target {
        name: name.into(),
        sha256: Some(Digest::of(data)),
        size: Some(data.len() as u64),
        holders: holders
            .iter()
            .map(|(user, h)| Holder {
                user: (*user).into(),
                addr: h.addr,
                proto: Proto::P2p(1),
                chunks: ChunkSet::ALL,
                root: Some(root),
            })
            .collect(),
    }
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        dir: PeerDir::new(dir),
        ..Config::default()
    }
}

/// Short timeouts, so tests of slow and silent holders take a second, not a minute.
fn impatient(dir: &std::path::Path) -> Config {
    let mut config = config(dir);
    config.net.idle = Duration::from_millis(800);
    config.net.stall_window = Duration::from_millis(600);
    config.endgame_after = Duration::from_millis(200);
    config
}

#[test]
fn chunks_come_from_both_holders_and_the_file_is_identical() {
    let bytes = data(100_003);
    let a = start_holder("f.bin", bytes.clone(), Behaviour::Honest);
    let b = start_holder("f.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("f.bin", &bytes, &[("alice", &a), ("bob", &b)]);
    let mut events = Vec::new();
    let outcome = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        events.push(p.clone())
    })
    .unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert_eq!(outcome.path, dir.path().join("downloads/f.bin"));
    assert!(outcome.verified);
    assert_eq!(outcome.sources.len(), 2, "{:?}", outcome.sources);
    assert_eq!(
        a.served.load(Ordering::SeqCst) + b.served.load(Ordering::SeqCst),
        5
    );
    // The chunks stay in the store, with the manifest, to be served to others.
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    assert!(store.chunks_of("f.bin").is_complete());
    assert_eq!(
        store.load_manifest("f.bin").unwrap().unwrap().manifest,
        manifest_of("f.bin", &bytes)
    );
    // Nothing partial is left behind.
    assert_eq!(std::fs::read_dir(store.incoming_dir()).unwrap().count(), 0);
}

#[test]
fn a_corrupting_holder_is_caught_and_avoided() {
    let bytes = data(50_000);
    let bad = start_holder("f.bin", bytes.clone(), Behaviour::Corrupt);
    let good = start_holder("f.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("f.bin", &bytes, &[("mallory", &bad), ("alice", &good)]);
    let mut failures = Vec::new();
    let outcome = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if let Progress::AttemptFailed { holder, reason, .. } = p {
            failures.push((holder.clone(), reason.clone()));
        }
    })
    .unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert!(!failures.is_empty());
    assert!(failures
        .iter()
        .all(|(h, r)| h.starts_with("mallory@") && r.contains("wrong data")));
    assert_eq!(
        outcome.sources.iter().collect::<Vec<_>>(),
        [&format!("alice@{}", good.addr)]
    );
    // Once caught, mallory is not asked for every remaining chunk: at most the chunks that were
    // already in flight to it when the first bad one arrived.
    assert!(failures.len() <= 5);
}

#[test]
fn refusals_fall_back_and_no_holder_means_no_file() {
    let bytes = data(1234);
    let refusing = start_holder("x", bytes.clone(), Behaviour::Refuse);
    let dir = tempfile::tempdir().unwrap();
    let t = target("x", &bytes, &[("r", &refusing)]);
    let mut unavailable = Vec::new();
    let err = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if let Progress::ChunkUnavailable { chunk } = p {
            unavailable.push(chunk.to_string());
        }
    })
    .unwrap_err();
    assert!(matches!(err, DownloadError::Incomplete { ref missing } if missing.len() == 5));
    assert_eq!(unavailable, ["x_1", "x_2", "x_3", "x_4", "x_5"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("downloads"))
            .unwrap()
            .count(),
        0
    );

    // With an honest second holder the same download succeeds.
    let honest = start_holder("x", bytes.clone(), Behaviour::Honest);
    let t = target("x", &bytes, &[("r", &refusing), ("h", &honest)]);
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
}

#[test]
fn unreachable_holders_fail_every_chunk_cleanly() {
    // A port nobody listens on: bind, read the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bytes = data(10);
    let dir = tempfile::tempdir().unwrap();
    let t = Target {
        holders: vec![Holder {
            user: "gone".into(),
            addr,
            proto: Proto::P2p(1),
            chunks: ChunkSet::ALL,
            root: None,
        }],
        ..target("gone.txt", &bytes, &[])
    };
    let err =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Incomplete { .. }), "{err}");
    assert!(!dir.path().join("downloads/gone.txt").exists());
}

#[test]
fn a_second_download_keeps_verified_chunks_and_reuses_the_file() {
    let bytes = data(77_777);
    let a = start_holder("k.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("k.bin", &bytes, &[("alice", &a)]);
    let first = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    let served = a.served.load(Ordering::SeqCst);
    let mut kept = 0;
    let second = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if matches!(p, Progress::ChunkKept { .. }) {
            kept += 1;
        }
    })
    .unwrap();
    assert_eq!(kept, 5);
    assert_eq!(
        a.served.load(Ordering::SeqCst),
        served,
        "nothing fetched again"
    );
    assert!(second.already_present);
    assert_eq!(second.path, first.path);
}

#[test]
fn a_different_file_of_the_same_name_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("downloads")).unwrap();
    std::fs::write(dir.path().join("downloads/notes.txt"), b"mine").unwrap();
    let bytes = data(300);
    let a = start_holder("notes.txt", bytes.clone(), Behaviour::Honest);
    let t = target("notes.txt", &bytes, &[("alice", &a)]);
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(outcome.path, dir.path().join("downloads/notes (1).txt"));
    assert_eq!(
        std::fs::read(dir.path().join("downloads/notes.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
}

#[test]
fn a_different_content_in_the_store_is_left_alone() {
    use shared::store::{Origin, StoredManifest};
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    // This peer shares its own notes.txt: its chunks and manifest are in the store.
    let own = b"my own notes, not the network's".to_vec();
    let own_manifest = manifest_of("notes.txt", &own);
    let ranges = chunk_ranges(own.len() as u64);
    for (i, chunk) in ChunkName::all_of("notes.txt").unwrap().iter().enumerate() {
        let r = ranges[i];
        std::fs::write(
            store.chunk_path(chunk),
            &own[r.start as usize..r.end as usize],
        )
        .unwrap();
    }
    let stored = StoredManifest {
        manifest: own_manifest,
        origin: Origin::Shared {
            path: "/somewhere/notes.txt".into(),
            modified: std::time::SystemTime::UNIX_EPOCH,
        },
    };
    store.save_manifest(&stored).unwrap();

    let theirs = data(4321);
    let a = start_holder("notes.txt", theirs.clone(), Behaviour::Honest);
    let t = target("notes.txt", &theirs, &[("alice", &a)]);
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), theirs);
    // The store still holds, and serves, this peer's own file.
    assert_eq!(store.load_manifest("notes.txt").unwrap(), Some(stored));
    let mut reassembled = Vec::new();
    for chunk in ChunkName::all_of("notes.txt").unwrap() {
        reassembled.extend(std::fs::read(store.chunk_path(&chunk)).unwrap());
    }
    assert_eq!(reassembled, own);
    assert_eq!(std::fs::read_dir(store.incoming_dir()).unwrap().count(), 0);
}

#[test]
fn an_interrupted_chunk_continues_from_its_last_byte() {
    let bytes = data(100_000);
    let a = start_holder("r.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("r.bin", &bytes, &[("alice", &a)]);
    // An earlier run got the manifest and the first 7000 bytes of chunk 2, then died.
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    store
        .save_manifest(&shared::store::StoredManifest {
            manifest: manifest_of("r.bin", &bytes),
            origin: shared::store::Origin::Downloaded { verified: true },
        })
        .unwrap();
    let chunk2 = ChunkName::parse("r.bin_2").unwrap();
    let r = chunk_ranges(bytes.len() as u64)[1];
    std::fs::write(
        store.incoming_path(&chunk2),
        &bytes[r.start as usize..r.start as usize + 7000],
    )
    .unwrap();
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
    let mut offsets = a.offsets.lock().unwrap().clone();
    offsets.sort();
    assert_eq!(offsets, [0, 0, 0, 0, 7000]);
    assert_eq!(a.bytes_sent.load(Ordering::SeqCst), bytes.len() - 7000);
}

#[test]
fn a_damaged_part_file_is_fetched_again_whole() {
    let bytes = data(50_000);
    let a = start_holder("d.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    store
        .save_manifest(&shared::store::StoredManifest {
            manifest: manifest_of("d.bin", &bytes),
            origin: shared::store::Origin::Downloaded { verified: true },
        })
        .unwrap();
    // Garbage where the first 5000 bytes of chunk 1 should be (a power cut, say).
    std::fs::write(
        store.incoming_path(&ChunkName::parse("d.bin_1").unwrap()),
        vec![0u8; 5000],
    )
    .unwrap();
    let t = target("d.bin", &bytes, &[("alice", &a)]);
    // The resumed chunk fails its hash and is discarded; the retry fetches it whole.
    let first = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {});
    let outcome = match first {
        Ok(o) => o,
        Err(_) => {
            download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap()
        }
    };
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
}

#[test]
fn a_trickling_holder_is_abandoned_for_another() {
    let bytes = data(200_000);
    let slow = start_holder("t.bin", bytes.clone(), Behaviour::Trickle);
    let good = start_holder("t.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("t.bin", &bytes, &[("slow", &slow), ("good", &good)]);
    // No endgame here: this test is about the stall rule alone.
    let mut config = impatient(dir.path());
    config.endgame_after = Duration::from_secs(600);
    let mut reasons = Vec::new();
    let outcome = download::download(&config, &t, &Shutdown::new(), &mut |p| {
        if let Progress::AttemptFailed { reason, .. } = p {
            reasons.push(reason.clone());
        }
    })
    .unwrap();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
    assert_eq!(slow.served.load(Ordering::SeqCst), 0);
    assert!(
        outcome.sources.iter().all(|s| s.starts_with("good@")),
        "{:?}",
        outcome.sources
    );
    assert!(
        reasons.iter().any(|r| r.contains("too slow")),
        "{reasons:?}"
    );
}

#[test]
fn a_silent_holder_times_out_and_the_chunk_comes_from_another() {
    let bytes = data(30_000);
    let silent = start_holder("s.bin", bytes.clone(), Behaviour::Silent);
    let good = start_holder("s.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target("s.bin", &bytes, &[("silent", &silent), ("good", &good)]);
    let outcome =
        download::download(&impatient(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
    assert!(outcome.sources.iter().all(|s| s.starts_with("good@")));
}

#[test]
fn endgame_asks_an_idle_holder_and_does_not_wait_for_a_slow_one() {
    // 5 chunks of 40 kB: the slow holder needs ~2 s per chunk, the fast one milliseconds.
    let bytes = data(200_000);
    let slow = start_holder("e.bin", bytes.clone(), Behaviour::Slow);
    let fast = start_holder("e.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let mut config = impatient(dir.path());
    // Slow is not trickling (20 kB/s is above the stall threshold): only the endgame helps.
    config.net.stall_bytes = 1;
    let t = target("e.bin", &bytes, &[("slow", &slow), ("fast", &fast)]);
    let started = std::time::Instant::now();
    let outcome = download::download(&config, &t, &Shutdown::new(), &mut |_| {}).unwrap();
    let took = started.elapsed();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
    assert_eq!(
        slow.served.load(Ordering::SeqCst),
        0,
        "slow holder should have been overtaken"
    );
    // Behavioural bound, not a speed target: without the endgame this takes over 2 s.
    assert!(took < Duration::from_millis(1800), "took {took:?}");
}

#[test]
fn a_second_downloader_of_the_same_content_refuses() {
    let bytes = data(1000);
    let a = start_holder("l.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("temp/.locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = std::fs::File::create(locks.join("l.bin.lock")).unwrap();
    fs2::FileExt::lock_exclusive(&held).unwrap();
    let t = target("l.bin", &bytes, &[("alice", &a)]);
    let err =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("another downloader"));
    fs2::FileExt::unlock(&held).unwrap();
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(outcome.path).unwrap(), bytes);
}

#[test]
fn a_holder_claiming_a_huge_chunk_of_an_unverified_content_is_refused_before_its_bytes() {
    let bytes = data(10_000);
    let h = start_holder("big.bin", bytes.clone(), Behaviour::Huge);
    let dir = tempfile::tempdir().unwrap();
    // A holder of ours offering a content nobody vouched for: no digest, no size, no manifest.
    let t = Target {
        sha256: None,
        size: None,
        ..target("big.bin", &bytes, &[("mallory", &h)])
    };
    let err = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {})
        .expect_err("a 10^15-byte chunk is no chunk");
    assert!(matches!(err, DownloadError::Incomplete { .. }), "{err}");
    let stored: u64 = walk(dir.path()).iter().map(|(_, n)| n).sum();
    assert!(
        stored < 1 << 20,
        "{stored} bytes written from the huge holder"
    );
}

/// Every file under `dir`, with its length.
fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => out.extend(walk(&path)),
            Ok(m) => out.push((path, m.len())),
            Err(_) => {}
        }
    }
    out
}
