//! Many clients at once against the real binary with its default limits: 100 clients, each
//! from its own address and opening what our downloader opens to one holder (five chunk
//! connections and a manifest request) at the same moment, must all be answered in full.
#![cfg(target_os = "linux")]

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use shared::chunk::chunk_ranges;
use shared::connection::Connection;
use shared::digest::Digest;
use shared::protocol::{Manifest, Request, Response};
use testkit::events::{matching, show_events};
use testkit::files::random_bytes;
use testkit::process::{start_chunk_server_process as start, ServerProcess};
use testkit::wait::poll_until;

/// Clients started together, each from its own source address 127.0.1.x.
const CLIENTS: u8 = 100;

/// Longest any one connect, write or read of a client may wait.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One client: opens its five chunk connections and its manifest request at once, then reads
/// every answer to its end; the five chunks' bytes and the manifest, or what went wrong.
fn fetch_all(server: &ServerProcess, from: IpAddr) -> Result<(Vec<Vec<u8>>, Manifest), String> {
    let open = |request: &Request| {
        let mut conn =
            Connection::connect_with(server.addr, Some(from), CLIENT_TIMEOUT, CLIENT_TIMEOUT)
                .map_err(|e| format!("{from}: connect: {e}"))?;
        conn.write_request(request)
            .map_err(|e| format!("{from}: send: {e}"))?;
        Ok::<_, String>(conn)
    };
    let mut chunks = Vec::new();
    for i in 1..=5 {
        chunks.push(open(&Request::Chunk {
            filename: format!("file.bin_{i}"),
            content_sha256: None,
            offset: 0,
            length: None,
        })?);
    }
    let mut manifest = open(&Request::Manifest {
        content: "file.bin".into(),
        content_sha256: None,
    })?;
    let mut bodies = Vec::new();
    for (i, conn) in chunks.iter_mut().enumerate() {
        let length = match conn.read_response() {
            Ok(Response::Chunk { length, .. }) => length,
            other => return Err(format!("{from}: chunk {}: {other:?}", i + 1)),
        };
        let mut body = Vec::new();
        conn.read_body_exact(length, &mut body, &mut |_| {})
            .map_err(|e| format!("{from}: chunk {}: {e}", i + 1))?;
        bodies.push(body);
    }
    match manifest.read_response() {
        Ok(Response::Manifest(m)) => Ok((bodies, m)),
        other => Err(format!("{from}: manifest: {other:?}")),
    }
}

#[test]
fn a_hundred_clients_starting_together_are_all_answered_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    let share = dir.join("served_files");
    fs::create_dir_all(&share).unwrap();
    let data = random_bytes(2_000_003, 100);
    fs::write(share.join("file.bin"), &data).unwrap();
    let server = Arc::new(start(&dir, &[]));
    let expected: Vec<Digest> = chunk_ranges(data.len() as u64)
        .iter()
        .map(|r| {
            Digest::of(&data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()])
        })
        .collect();

    let start_together = Arc::new(Barrier::new(usize::from(CLIENTS)));
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|c| {
            let (server, start_together) = (Arc::clone(&server), Arc::clone(&start_together));
            thread::spawn(move || {
                let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, c));
                start_together.wait();
                fetch_all(&server, from)
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, e.g. {:?}\n{}",
        failures.len(),
        failures.first(),
        show_events(
            &matching(&server.events(), "refused", &[])
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        )
    );
    let whole = Manifest::of_bytes("file.bin", &data);
    for (bodies, manifest) in results.iter().flatten() {
        let got: Vec<Digest> = bodies.iter().map(|b| Digest::of(b)).collect();
        assert_eq!(got, expected, "chunk bytes differ");
        assert_eq!(
            *manifest, whole,
            "the manifest differs (midstates included)"
        );
    }
    // Every chunk answer is logged as served; nothing was refused.
    let all_logged = poll_until(Duration::from_secs(10), || {
        matching(&server.events(), "served", &[("outcome", "ok")]).len() == 5 * usize::from(CLIENTS)
    });
    let events = server.events();
    assert!(all_logged, "{}", server.log_text());
    assert!(
        matching(&events, "refused", &[]).is_empty(),
        "{}",
        server.log_text()
    );
}
