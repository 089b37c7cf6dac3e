//! In-process tests of the chunk server: `chunk_server::run` on a thread, real TCP clients on
//! loopback, real files in a temporary peer folder.

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use chunk_server::{Config, Error};
use shared::chunk::{chunk_ranges, ChunkName};
use shared::digest::Digest;
use shared::protocol::{ErrorCode, Request, Response};
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::REQUEST_TIMEOUT;
use testkit::client::{connect, legacy_fetch, p2p_request, read_until_close, send_raw};
use testkit::files::{chunk_files, pattern};
use testkit::servers::{chunk_server_peer_with as peer_with, start_chunk_server};
use testkit::wait::poll_until;

fn store(dir: &Path) -> ChunkStore {
    ChunkStore::open(dir.join("temp")).unwrap()
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn legacy_request_gets_the_raw_chunk_then_a_close() {
    let sizes = [0usize, 1, 4, 7, 10, 1024 * 1024 + 3];
    let data: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&size| (format!("file {size}.bin"), pattern(size)))
        .collect();
    let files: Vec<(&str, &[u8])> = data.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
    let (dir, config) = peer_with(&files);
    let server = start_chunk_server(config);

    for (name, original) in &data {
        let mut fetched = Vec::new();
        for index in 1..=5 {
            fetched.push(legacy_fetch(server.addr, &format!("{name}_{index}")));
        }
        assert_eq!(
            fetched,
            chunk_files(dir.path(), name),
            "{name}: served bytes differ from the chunk files"
        );
        let expected: Vec<u64> = chunk_ranges(original.len() as u64)
            .iter()
            .map(|r| r.len())
            .collect();
        let got: Vec<u64> = fetched.iter().map(|c| c.len() as u64).collect();
        assert_eq!(got, expected, "{name}: chunk lengths");
        assert!(
            fetched.concat() == *original,
            "{name}: chunks do not reassemble"
        );
    }
}

#[test]
fn p2p_chunk_request_sends_a_header_then_the_bytes_of_the_range_asked() {
    let data = pattern(1000);
    let (dir, config) = peer_with(&[("data.bin", &data)]);
    let server = start_chunk_server(config);
    // The first request is answered after the initial scan, so the manifest exists by then.
    let (first, _) = p2p_request(
        server.addr,
        &Request::Chunk {
            filename: "data.bin_1".into(),
            content_sha256: None,
            offset: 0,
            length: None,
        },
    );
    let manifest = store(dir.path())
        .load_manifest("data.bin")
        .unwrap()
        .expect("manifest")
        .manifest;
    assert_eq!(
        first,
        Response::Chunk {
            size: 200,
            length: 200,
            sha256: manifest.chunks[0]
        }
    );

    assert_eq!(manifest.chunks[1], Digest::of(&data[200..400]));
    // From an offset to the end; a range: `length` bytes from `offset`, cut at the chunk's end.
    for (offset, length, expected) in [
        (0u64, None, &data[200..400]),
        (150, None, &data[350..400]),
        (200, None, &[][..]),
        (0, Some(1u64), &data[200..201]),
        (10, Some(90), &data[210..300]),
        (150, Some(50), &data[350..400]),
        (150, Some(1_000_000), &data[350..400]),
    ] {
        let (response, body) = p2p_request(
            server.addr,
            &Request::Chunk {
                filename: "data.bin_2".into(),
                content_sha256: Some(manifest.sha256),
                offset,
                length,
            },
        );
        assert_eq!(
            response,
            Response::Chunk {
                size: 200,
                length: expected.len() as u64,
                sha256: manifest.chunks[1]
            },
            "offset {offset} length {length:?}"
        );
        assert_eq!(body, expected, "offset {offset} length {length:?}");
    }
}

#[test]
fn chunk_without_a_manifest_is_hashed_and_served() {
    let (dir, config) = peer_with(&[]);
    // A chunk fetched from a legacy peer: no manifest.
    let store = store(dir.path());
    let name = ChunkName::parse("old.txt_3").unwrap();
    fs::write(store.chunk_path(&name), b"legacy bytes").unwrap();
    let server = start_chunk_server(config);

    assert_eq!(legacy_fetch(server.addr, "old.txt_3"), b"legacy bytes");
    let (response, body) = p2p_request(
        server.addr,
        &Request::Chunk {
            filename: "old.txt_3".into(),
            content_sha256: None,
            offset: 0,
            length: None,
        },
    );
    assert_eq!(
        response,
        Response::Chunk {
            size: 12,
            length: 12,
            sha256: Digest::of(b"legacy bytes")
        }
    );
    assert_eq!(body, b"legacy bytes");
    // Without a manifest the server cannot vouch for a content digest.
    let (response, _) = p2p_request(
        server.addr,
        &Request::Chunk {
            filename: "old.txt_3".into(),
            content_sha256: Some(Digest::of(b"anything")),
            offset: 0,
            length: None,
        },
    );
    assert_eq!(error_code(&response), Some(ErrorCode::WrongContent));
}

#[test]
fn manifest_request_returns_the_stored_manifest() {
    let data = pattern(12_345);
    let (dir, config) = peer_with(&[("photo.png", &data)]);
    let server = start_chunk_server(config);
    let (response, _) = p2p_request(
        server.addr,
        &Request::Manifest {
            content: "photo.png".into(),
            content_sha256: None,
        },
    );
    let stored = store(dir.path())
        .load_manifest("photo.png")
        .unwrap()
        .unwrap();
    assert_eq!(response, Response::Manifest(stored.manifest.clone()));
    assert_eq!(stored.manifest.sha256, Digest::of(&data));

    let (response, _) = p2p_request(
        server.addr,
        &Request::Manifest {
            content: "photo.png".into(),
            content_sha256: Some(Digest::of(&data)),
        },
    );
    assert_eq!(response, Response::Manifest(stored.manifest));
}

#[test]
fn catalog_request_is_answered_with_the_catalog_published_under_that_digest() {
    let (dir, config) = peer_with(&[("a.txt", b"abc")]);
    let server = start_chunk_server(config);
    // What an announcer publishes before it announces the catalog's summary.
    let snapshot = shared::store::Snapshot {
        chunks: ChunkName::all_of("a.txt").unwrap().into(),
        ..shared::store::Snapshot::default()
    };
    let (bytes, summary) = snapshot.catalog().encode();
    let peer_dir = shared::peer_dir::PeerDir::new(dir.path());
    shared::catalog_file::publish(&peer_dir, &bytes, &summary.sha256).unwrap();
    let (response, body) = p2p_request(
        server.addr,
        &Request::Catalog {
            sha256: summary.sha256,
        },
    );
    assert_eq!(
        response,
        Response::Catalog {
            count: 1,
            length: bytes.len() as u64,
            sha256: summary.sha256,
        }
    );
    assert_eq!(body, bytes);
    // Another digest (the catalog changed since it was announced): wrong_content, at once.
    let (response, _) = p2p_request(
        server.addr,
        &Request::Catalog {
            sha256: Digest::of(b"an older catalog"),
        },
    );
    assert_eq!(error_code(&response), Some(ErrorCode::WrongContent));
    // Withdrawn (the folder announces inline now): the same.
    shared::catalog_file::withdraw(&peer_dir);
    let (response, _) = p2p_request(
        server.addr,
        &Request::Catalog {
            sha256: summary.sha256,
        },
    );
    assert_eq!(error_code(&response), Some(ErrorCode::WrongContent));
}

#[test]
fn p2p_errors_say_not_found_wrong_content_and_bad_request() {
    let data = pattern(500);
    let (_dir, config) = peer_with(&[("data.bin", &data)]);
    let server = start_chunk_server(config);
    let right = Digest::of(&data);
    let wrong = Digest::of(b"another content");
    let chunk = |filename: &str, content_sha256, offset| Request::Chunk {
        filename: filename.into(),
        content_sha256,
        offset,
        length: None,
    };
    let manifest = |content: &str, content_sha256| Request::Manifest {
        content: content.into(),
        content_sha256,
    };
    let cases = [
        (chunk("missing.bin_1", None, 0), ErrorCode::NotFound),
        (chunk("data.bin_1", Some(wrong), 0), ErrorCode::WrongContent),
        (chunk("data.bin_1", Some(right), 101), ErrorCode::BadRequest),
        // The content check comes before the offset check.
        (
            chunk("data.bin_1", Some(wrong), 101),
            ErrorCode::WrongContent,
        ),
        (chunk("data.bin_6", None, 0), ErrorCode::BadRequest),
        (chunk("data.bin", None, 0), ErrorCode::BadRequest),
        (chunk("../secret_1", None, 0), ErrorCode::BadRequest),
        (chunk("/etc/passwd_1", None, 0), ErrorCode::BadRequest),
        (manifest("missing.bin", None), ErrorCode::NotFound),
        (manifest("data.bin", Some(wrong)), ErrorCode::WrongContent),
        (manifest("../data.bin", None), ErrorCode::BadRequest),
        (manifest("..", None), ErrorCode::BadRequest),
        (manifest("", None), ErrorCode::BadRequest),
    ];
    for (request, expected) in cases {
        let (response, body) = p2p_request(server.addr, &request);
        assert_eq!(
            error_code(&response),
            Some(expected),
            "{request:?}: {response:?}"
        );
        assert!(body.is_empty());
    }
}

#[test]
fn hostile_requests_get_nothing_and_never_reach_outside_the_store() {
    let data = pattern(4321);
    let (dir, config) = peer_with(&[("ok.bin", &data)]);
    // Bait one level above temp/, where "../secret_1" would point.
    let secret = dir.path().join("secret_1");
    fs::write(&secret, b"TOP SECRET").unwrap();
    let server = start_chunk_server(config);

    // Held open, silent, for the whole test: it must not block anyone else.
    let silent = connect(server.addr);
    // Connect and close at once.
    drop(connect(server.addr));

    let absolute = format!("{}", dir.path().join("secret").display());
    let mut long_name = b"{\"filename\": \"".to_vec();
    long_name.extend_from_slice(&[b'a'; 10_000]);
    let junk: Vec<Vec<u8>> = vec![
        br#"{"filename": "../secret_1"}"#.to_vec(),
        br#"{"filename": "..\\secret_1"}"#.to_vec(),
        br#"{"filename": "/etc/passwd_1"}"#.to_vec(),
        format!(
            "{{\"filename\": {}}}",
            serde_json::to_string(&format!("{absolute}_1")).unwrap()
        )
        .into_bytes(),
        br#"{"filename": "x\u0000y_1"}"#.to_vec(),
        br#"{"filename": "ok.bin_1\u0000"}"#.to_vec(),
        br#"{"filename": "ok.bin_0"}"#.to_vec(),
        br#"{"filename": "missing_1"}"#.to_vec(),
        br#"{"filename": 7}"#.to_vec(),
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        vec![b'x'; 10_000],
        long_name,
    ];
    for request in &junk {
        let answer = send_raw(server.addr, request).expect("the server closes");
        assert!(
            answer.is_empty(),
            "{:?} got {} bytes",
            String::from_utf8_lossy(&request[..request.len().min(60)]),
            answer.len()
        );
    }
    let (response, _) = p2p_request(
        server.addr,
        &Request::Chunk {
            filename: "../secret_1".into(),
            content_sha256: None,
            offset: 0,
            length: None,
        },
    );
    assert_eq!(error_code(&response), Some(ErrorCode::BadRequest));

    // Still serving, byte for byte.
    assert_eq!(
        legacy_fetch(server.addr, "ok.bin_5"),
        chunk_files(dir.path(), "ok.bin")[4]
    );
    // Nothing was created or changed outside the store (but the peer's identity, made on first
    // start).
    let mut top: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["identity.key", "secret_1", "served_files", "temp"]);
    assert_eq!(fs::read(&secret).unwrap(), b"TOP SECRET");
    drop(silent);
}

#[test]
fn a_silent_client_takes_no_transfer_slot_and_requests_wait_for_one() {
    let data = pattern(1_000_000);
    let (dir, mut config) = peer_with(&[("a.bin", &data)]);
    config.max_connections = 1;
    // The 200 000-byte chunk 1 takes two seconds to send.
    config.max_rate = Some(100_000);
    let server = start_chunk_server(config);

    // Silent, and connected first: it must not hold the only transfer slot.
    let silent = connect(server.addr);
    let mut first = connect(server.addr);
    first.write_all(br#"{"filename": "a.bin_1"}"#).unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();

    // The only slot is taken by the first transfer: the second request waits for it.
    let mut waiting = connect(server.addr);
    waiting.write_all(br#"{"filename": "a.bin_2"}"#).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match waiting.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("served while the only slot was taken: {other:?}"),
    }
    let mut rest = read_until_close(&mut first).unwrap();
    rest.insert(0, byte[0]);
    assert!(rest == chunk_files(dir.path(), "a.bin")[0]);
    // The slot freed: the waiting request goes through, and the silent client never mattered.
    waiting
        .set_read_timeout(Some(testkit::client::CLIENT_TIMEOUT))
        .unwrap();
    assert!(read_until_close(&mut waiting).unwrap() == chunk_files(dir.path(), "a.bin")[1]);
    drop(silent);
}

#[test]
fn max_rate_slows_a_transfer_down() {
    // One chunk of 150 000 bytes at 100 000 bytes/s takes at least 1.5 s.
    let data = pattern(750_000);
    let (_dir, mut config) = peer_with(&[("slow.bin", &data)]);
    config.max_rate = Some(100_000);
    let server = start_chunk_server(config);
    // Let the first scan finish outside the timed part.
    assert_eq!(legacy_fetch(server.addr, "slow.bin_5").len(), 150_000);

    let started = Instant::now();
    let got = legacy_fetch(server.addr, "slow.bin_1");
    let elapsed = started.elapsed();
    assert!(got == data[..150_000], "throttled bytes differ");
    assert!(
        elapsed >= Duration::from_millis(1400),
        "150 000 bytes at 100 000 B/s took only {elapsed:?}"
    );
}

#[test]
fn rescan_shares_new_files_and_forgets_deleted_ones() {
    let (dir, mut config) = peer_with(&[]);
    config.rescan = Duration::from_millis(100);
    let server = start_chunk_server(config);
    let store = store(dir.path());

    let late = dir.path().join("served_files").join("late.txt");
    fs::write(&late, b"arrived after start").unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || store
            .load_manifest("late.txt")
            .is_ok_and(|m| m.is_some())),
        "new file not split"
    );
    let chunks: Vec<Vec<u8>> = (1..=5)
        .map(|i| legacy_fetch(server.addr, &format!("late.txt_{i}")))
        .collect();
    assert_eq!(chunks.concat(), b"arrived after start");

    fs::remove_file(&late).unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || store
            .load_manifest("late.txt")
            .is_ok_and(|m| m.is_none())),
        "deleted file still in the store"
    );
    assert!(store.chunks_of("late.txt").is_empty());
    assert!(legacy_fetch(server.addr, "late.txt_1").is_empty());
}

#[test]
fn explicit_shares_replace_the_default_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("single.txt");
    fs::write(&file, b"just this one").unwrap();
    let server = start_chunk_server(Config {
        dir: dir.path().join("peer"),
        shares: vec![file],
        ..Config::default()
    });
    let chunks: Vec<Vec<u8>> = (1..=5)
        .map(|i| legacy_fetch(server.addr, &format!("single.txt_{i}")))
        .collect();
    assert_eq!(chunks.concat(), b"just this one");
    assert!(!dir.path().join("peer").join("served_files").exists());
}

#[test]
fn shutdown_does_not_wait_for_a_silent_client() {
    let (_dir, config) = peer_with(&[("a.txt", b"abc")]);
    let server = start_chunk_server(config);
    let mut silent = connect(server.addr);
    // Served after the silent one was accepted (the backlog is first in, first out).
    assert_eq!(legacy_fetch(server.addr, "a.txt_1"), b"a");

    let started = Instant::now();
    server.stop().expect("run returns Ok");
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "shutdown waited {:?} for a silent client",
        started.elapsed()
    );
    assert!(read_until_close(&mut silent).unwrap().is_empty());
}

#[test]
fn run_reports_a_peer_folder_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a file");
    fs::write(&blocker, b"not a folder").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = Config {
        dir: blocker.join("peer"),
        ..Config::default()
    };
    match chunk_server::run(listener, config, Shutdown::new()) {
        Err(Error::CreateDir { path, .. }) => assert_eq!(path, blocker.join("peer")),
        other => panic!("expected CreateDir, got {other:?}"),
    }
}

#[test]
fn chunks_and_ranges_of_a_file_served_in_place_arrive_byte_for_byte() {
    // Large enough that each chunk takes many `sendfile` calls and the chunks start at odd
    // offsets of the file (5 × 4_000_001 + 3 bytes); served in place from `served_files/`.
    let data = testkit::files::random_bytes(20_000_008, 12);
    let (_dir, config) = peer_with(&[("big.bin", &data)]);
    let server = start_chunk_server(config);
    let ranges = chunk_ranges(data.len() as u64);
    let slice = |start: u64, end: u64| {
        &data[usize::try_from(start).unwrap()..usize::try_from(end).unwrap()]
    };
    for (i, range) in ranges.iter().enumerate() {
        let name = format!("big.bin_{}", i + 1);
        let expected = slice(range.start, range.end);
        let legacy = legacy_fetch(server.addr, &name);
        assert!(
            Digest::of(&legacy) == Digest::of(expected),
            "{name}: legacy answer differs"
        );
        let (response, body) = p2p_request(
            server.addr,
            &Request::Chunk {
                filename: name.clone(),
                content_sha256: Some(Digest::of(&data)),
                offset: 0,
                length: None,
            },
        );
        assert_eq!(
            response,
            Response::Chunk {
                size: range.len(),
                length: range.len(),
                sha256: Digest::of(expected)
            },
            "{name}"
        );
        assert!(
            Digest::of(&body) == Digest::of(expected),
            "{name}: body differs"
        );
    }
    // Ranges inside chunk 4, at offsets that are not page or block multiples, and to the end.
    let chunk = ranges[3];
    for (offset, length) in [
        (1u64, Some(1u64)),
        (4_095, Some(3_000_001)),
        (123_457, None),
        (chunk.len() - 1, Some(10)),
    ] {
        let (response, body) = p2p_request(
            server.addr,
            &Request::Chunk {
                filename: "big.bin_4".into(),
                content_sha256: Some(Digest::of(&data)),
                offset,
                length,
            },
        );
        let end = length.map_or(chunk.end, |l| (chunk.start + offset + l).min(chunk.end));
        let expected = slice(chunk.start + offset, end);
        assert!(
            matches!(response, Response::Chunk { length, .. } if length == expected.len() as u64),
            "offset {offset} length {length:?}: {response:?}"
        );
        assert!(
            Digest::of(&body) == Digest::of(expected),
            "offset {offset} length {length:?}: body differs"
        );
    }
}

#[test]
fn the_documented_range_request_and_its_answer_are_what_the_server_does() {
    // docs/PROTOCOL.md's running example: `seq 1 100000 > numbers.txt`.
    let data: Vec<u8> = (1..=100_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let (_dir, config) = peer_with(&[("numbers.txt", &data)]);
    let server = start_chunk_server(config);
    let request = Request::Chunk {
        filename: "numbers.txt_3".into(),
        content_sha256: Some(Digest::of(&data)),
        offset: 1000,
        length: Some(65536),
    };
    let (response, body) = p2p_request(server.addr, &request);
    let doc = include_str!("../../docs/PROTOCOL.md");
    let request_bytes = String::from_utf8(request.encode()).unwrap();
    assert!(
        doc.contains(&request_bytes),
        "not documented: {request_bytes}"
    );
    let header = String::from_utf8(response.encode()).unwrap();
    assert!(
        doc.contains(&format!("{}\\n<65536 bytes", header.trim_end())),
        "not documented: {header}"
    );
    let chunk = chunk_ranges(data.len() as u64)[2];
    let start = usize::try_from(chunk.start + 1000).unwrap();
    assert!(body == data[start..start + 65536]);
}
