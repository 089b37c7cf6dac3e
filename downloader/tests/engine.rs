//! In-process tests of the download engine against fake holders started in the test: honest
//! ones, one that corrupts what it sends, one that refuses. They pin down verification and
//! fallback without starting the other programs.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use downloader::catalog::{Holder, Target};
use downloader::download::{self, Config, DownloadError, Progress};
use shared::chunk::{chunk_ranges, ChunkName, ChunkSet};
use shared::digest::Digest;
use shared::peer_dir::PeerDir;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::tags::Proto;
use testkit::fake_holder::{Behaviour, FakeHolder};
use testkit::files::{files_under, manifest_of};

fn start_holder(name: &str, data: Vec<u8>, behaviour: Behaviour) -> FakeHolder {
    FakeHolder::start(Ipv4Addr::LOCALHOST, name, data, behaviour)
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
                id: None,
                impostor: false,
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
    assert!(
        outcome.hashed_once,
        "received in place, each chunk a step of the file's SHA-256: not read back"
    );
    assert_eq!(outcome.sources.len(), 2, "{:?}", outcome.sources);
    assert_eq!(a.served() + b.served(), 5);
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
    let bad = start_holder("f.bin", bytes.clone(), Behaviour::CorruptLastByte);
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
            id: None,
            impostor: false,
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
    let served = a.served();
    let mut kept = 0;
    let second = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if matches!(p, Progress::ChunkKept { .. }) {
            kept += 1;
        }
    })
    .unwrap();
    assert_eq!(kept, 5);
    assert_eq!(a.served(), served, "nothing fetched again");
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
            origin: shared::store::Origin::Downloaded {
                verified: true,
                file: None,
            },
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
    let mut offsets = a.offsets();
    offsets.sort();
    assert_eq!(offsets, [0, 0, 0, 0, 7000]);
    assert_eq!(a.bytes_sent(), bytes.len() - 7000);
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
            origin: shared::store::Origin::Downloaded {
                verified: true,
                file: None,
            },
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
fn forged_midstates_cost_a_read_back_and_blame_no_honest_byte() {
    let bytes = data(300_007);
    let liar = start_holder("s.bin", bytes.clone(), Behaviour::ForgeMidstates);
    let dir = tempfile::tempdir().unwrap();
    let t = target("s.bin", &bytes, &[("mallory", &liar)]);
    let mut failures = Vec::new();
    let outcome = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if let Progress::AttemptFailed { .. } = p {
            failures.push(p.clone());
        }
    })
    .unwrap();
    // Every chunk failed its step and matched its digest: the bytes are right, the midstates
    // are not, so the file was hashed whole (and matched), and nothing was fetched twice.
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert!(outcome.verified);
    assert!(!outcome.hashed_once);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(liar.bytes_sent(), bytes.len());
}

/// The record of a download received in place, in `dir`'s store.
fn record_of(dir: &std::path::Path, content: &str) -> [u64; 5] {
    testkit::files::receiving_record(&dir.join("temp"), content).expect("a progress record")
}

#[test]
fn a_download_cut_mid_chunk_continues_from_the_recorded_bytes() {
    // Chunks of 2 MiB, sent 300 kB every 100 ms: cut after about 0.45 s, each is part-way.
    let bytes = data(10 << 20);
    let slow = start_holder("m.bin", bytes.clone(), Behaviour::Trickle(300_000));
    let dir = tempfile::tempdir().unwrap();
    let cancel = Shutdown::new();
    let first = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(450));
            cancel.trigger();
        });
        let t = target("m.bin", &bytes, &[("alice", &slow)]);
        download::download(&config(dir.path()), &t, &cancel, &mut |_| {})
    });
    assert!(matches!(first, Err(DownloadError::Cancelled)), "{first:?}");
    let record = record_of(dir.path(), "m.bin");
    let len = 2u64 << 20;
    assert!(
        record.iter().any(|&n| n > 0 && n < len),
        "some chunk should be part-way: {record:?}"
    );
    assert!(files_under(&dir.path().join("downloads")).is_empty());

    let fast = start_holder("m.bin", bytes.clone(), Behaviour::Honest);
    let t = target("m.bin", &bytes, &[("alice", &fast)]);
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert!(outcome.hashed_once);
    // Each chunk was asked for from where the record said its bytes end, and only the rest
    // crossed the network.
    let mut offsets = fast.offsets();
    offsets.sort_unstable();
    let mut expected: Vec<u64> = record.iter().copied().filter(|&n| n < len).collect();
    expected.sort_unstable();
    assert_eq!(offsets, expected);
    let recorded: u64 = record.iter().sum();
    assert_eq!(fast.bytes_sent() as u64, bytes.len() as u64 - recorded);
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    assert_eq!(std::fs::read_dir(store.incoming_dir()).unwrap().count(), 0);
}

#[test]
fn damaged_bytes_in_a_continued_chunk_are_fetched_again_without_blaming_the_holder() {
    let bytes = data(10 << 20);
    let slow = start_holder("p.bin", bytes.clone(), Behaviour::Trickle(300_000));
    let dir = tempfile::tempdir().unwrap();
    let cancel = Shutdown::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(450));
            cancel.trigger();
        });
        let t = target("p.bin", &bytes, &[("alice", &slow)]);
        let _ = download::download(&config(dir.path()), &t, &cancel, &mut |_| {});
    });
    let record = record_of(dir.path(), "p.bin");
    let (position, &kept) = (record.iter().enumerate())
        .find(|&(_, &n)| n > 0 && n < 2 << 20)
        .expect("a chunk part-way");
    // Zeros where the recorded bytes of that chunk should be (a power cut, say).
    let file = dir.path().join("temp/.incoming/p.bin.receiving");
    let mut received = std::fs::read(&file).unwrap();
    let start = usize::try_from(chunk_ranges(bytes.len() as u64)[position].start).unwrap();
    received[start..start + usize::try_from(kept).unwrap()].fill(0);
    std::fs::write(&file, received).unwrap();

    let honest = start_holder("p.bin", bytes.clone(), Behaviour::Honest);
    let t = target("p.bin", &bytes, &[("alice", &honest)]);
    let mut failures = Vec::new();
    let outcome = download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |p| {
        if let Progress::AttemptFailed { .. } = p {
            failures.push(p.clone());
        }
    })
    .expect("the chunk is fetched again whole from the same holder, in the same run");
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert_eq!(failures.len(), 1, "{failures:?}");
    // Asked from the recorded byte first, then from 0.
    let chunk = format!("p.bin_{}", position + 1);
    let asked: Vec<u64> = (honest.timed_chunk_requests().into_iter())
        .filter(|(_, name, _)| *name == chunk)
        .map(|(_, _, offset)| offset)
        .collect();
    assert_eq!(asked, [kept, 0]);
}

#[test]
fn idle_holders_take_the_end_of_a_slow_holders_chunks_and_the_file_is_hashed_once() {
    // 10 MiB: chunks of 2 MiB. The slow holder sends 300 kB per 100 ms on each connection;
    // the two fast ones finish their chunks at once, then take over the rest of the slow
    // holder's (range requests: these fake holders ignore `length` and send to the chunk's
    // end, as servers older than ranges do, so the downloader reads only what it asked for).
    let bytes = data(10 << 20);
    let slow = start_holder("b.bin", bytes.clone(), Behaviour::Trickle(300_000));
    let fast1 = start_holder("b.bin", bytes.clone(), Behaviour::Honest);
    let fast2 = start_holder("b.bin", bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target(
        "b.bin",
        &bytes,
        &[("slow", &slow), ("fast1", &fast1), ("fast2", &fast2)],
    );
    let mut config = config(dir.path());
    // No whole-chunk duplicates: the pieces alone must finish the slow holder's chunks.
    config.endgame_after = Duration::from_secs(3600);
    let outcome = download::download(&config, &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert!(outcome.verified);
    assert!(outcome.hashed_once, "pieces are hashed once too, in order");
    let pieces: Vec<u64> = [&fast1, &fast2]
        .iter()
        .flat_map(|h| h.offsets())
        .filter(|&offset| offset > 0)
        .collect();
    assert!(
        !pieces.is_empty(),
        "the fast holders should have been asked for the end of a chunk"
    );
    // The slow holder sent far less than the chunks it was first asked for.
    let asked_of_slow = slow.offsets().len() as u64 * (2 << 20);
    assert!(
        (slow.bytes_sent() as u64) < asked_of_slow,
        "slow sent {} of {asked_of_slow}",
        slow.bytes_sent()
    );
}

#[test]
fn a_holder_sending_wrong_pieces_costs_one_fetch_of_the_chunk_and_cannot_stop_the_download() {
    // The fast holder is honest for whole chunks and inverts every piece it is asked for: the
    // slow holder's chunks it takes the end of fail, and are fetched again whole.
    let bytes = data(10 << 20);
    let slow = start_holder("w.bin", bytes.clone(), Behaviour::Trickle(300_000));
    let slow2 = start_holder("w.bin", bytes.clone(), Behaviour::Trickle(300_000));
    let liar = start_holder("w.bin", bytes.clone(), Behaviour::CorruptPieces);
    let dir = tempfile::tempdir().unwrap();
    let t = target(
        "w.bin",
        &bytes,
        &[("slow", &slow), ("slow2", &slow2), ("liar", &liar)],
    );
    let mut config = config(dir.path());
    config.endgame_after = Duration::from_secs(3600);
    let outcome = download::download(&config, &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert!(outcome.verified);
    let pieces: Vec<String> = (liar.timed_chunk_requests().into_iter())
        .filter(|(_, _, offset)| *offset > 0)
        .map(|(_, chunk, _)| chunk)
        .collect();
    assert!(
        !pieces.is_empty(),
        "the liar should have been given a piece"
    );
    // Once a chunk received in pieces fails, it is fetched whole: never a second piece of it.
    let mut seen = std::collections::BTreeSet::new();
    for chunk in &pieces {
        assert!(seen.insert(chunk), "{chunk} was split twice: {pieces:?}");
    }
}

#[test]
fn a_trickling_holder_is_abandoned_for_another() {
    let bytes = data(200_000);
    let slow = start_holder("t.bin", bytes.clone(), Behaviour::Trickle(1));
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
    assert_eq!(slow.served(), 0);
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
    let silent = start_holder("s.bin", bytes.clone(), Behaviour::SilentAfterManifest);
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
    let slow = start_holder("e.bin", bytes.clone(), Behaviour::Trickle(2000));
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
    assert_eq!(slow.served(), 0, "slow holder should have been overtaken");
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
    let stored: u64 = files_under(dir.path()).iter().map(|(_, n)| n).sum();
    assert!(
        stored < 1 << 20,
        "{stored} bytes written from the huge holder"
    );
}

#[test]
fn a_nested_content_resumes_lands_in_its_folders_and_is_served_in_place() {
    let name = "photos/2024/r b.bin";
    let bytes = data(100_000);
    let a = start_holder(name, bytes.clone(), Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let t = target(name, &bytes, &[("alice", &a)]);
    // An earlier run got the manifest and the first 7000 bytes of chunk 2, then died: what it
    // left under temp/ (flat names, '/' written '\') is found and continued.
    let store = ChunkStore::open(dir.path().join("temp")).unwrap();
    store
        .save_manifest(&shared::store::StoredManifest {
            manifest: manifest_of(name, &bytes),
            origin: shared::store::Origin::Downloaded {
                verified: true,
                file: None,
            },
        })
        .unwrap();
    let chunk2 = ChunkName::new(name, 2).unwrap();
    let r = chunk_ranges(bytes.len() as u64)[1];
    let part = store.incoming_path(&chunk2);
    assert_eq!(part.parent(), Some(store.incoming_dir().as_path()));
    std::fs::write(&part, &bytes[r.start as usize..r.start as usize + 7000]).unwrap();
    let outcome =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert_eq!(
        outcome.path,
        dir.path().join("downloads/photos/2024/r b.bin")
    );
    assert_eq!(std::fs::read(&outcome.path).unwrap(), bytes);
    assert_eq!(
        a.bytes_sent(),
        bytes.len() - 7000,
        "resumed, not fetched again"
    );
    // Served on from downloads/, in place: no chunk file left in temp/.
    assert!(store.chunks_of(name).is_complete());
    assert!(store.chunk_files_of(name).is_empty());
    let second =
        download::download(&config(dir.path()), &t, &Shutdown::new(), &mut |_| {}).unwrap();
    assert!(second.already_present);
    assert_eq!(second.path, outcome.path);
}
