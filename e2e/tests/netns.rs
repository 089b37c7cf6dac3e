//! Multi-host tests: several real hosts on this machine, made of Linux network namespaces.
//!
//! Each host is a namespace with its own interface, address and ports, plugged into a bridge
//! that lives in a "switch" namespace of its own (see `testkit::netns`), and runs one full peer:
//! chunk server, listener and announcer with their default ports and default broadcast targets,
//! and the downloader as a command. Nothing is added to the machine's own network namespace,
//! and everything is removed when a test ends, passes or fails.
//!
//! - [`broadcast_discovery_across_hosts`]: the announcer's default targets (the directed
//!   broadcast of every up interface) reach the listeners of the other hosts.
//! - [`download_from_three_hosts`]: three hosts share a file, a fourth downloads it in chunks
//!   from all three.
//! - [`download_survives_a_host_link_cut`]: one holder's cable is pulled at the switch in the
//!   middle of a rate-limited download, which completes from the other two.
//! - [`routed_host_reached_only_through_peer`]: a host behind a router (another subnet, another
//!   broadcast domain) is invisible to the LAN until its announcer is given `--peer`; then the
//!   LAN downloads from it across the router, and its listener's `--peer` query is answered.
//!
//! They need root and iproute2 (`ip netns`); without them each test prints
//! `skipping netns tests: <reason>` and passes. Tests run in parallel, each in its own namespaces
//! and subnets.

use std::fs;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use testkit::netns::*;
use testkit::prelude::{
    assert_same_file, assert_success, printed_path, show_events, Network, Program, WAIT,
};

/// Directed broadcast targets listed in `host`'s announcer start-up line (`... to A, B every`).
fn announcer_targets(lab: &Lab, host: &Host) -> Vec<String> {
    let line = lab.wait_until(
        WAIT,
        &format!("{}'s announcer logs where it announces", host.name),
        || {
            host.check_all_running()?;
            let stderr = host.stderr_of(Program::Announcer);
            stderr
                .lines()
                .rev()
                .find(|l| l.contains("announcing ") && l.contains(" every "))
                .map(str::to_owned)
                .ok_or(stderr)
        },
    );
    let after = line
        .split_once(") to ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("unexpected announcer line: {line}"));
    let targets = after
        .split(" every ")
        .next()
        .unwrap_or_default()
        .split(" and peers ")
        .next()
        .unwrap_or_default();
    targets.split(", ").map(str::to_owned).collect()
}

/// The `fetched ... outcome=ok` events of `client`'s `client.log` for `content`, by chunk.
fn fetched_ok_sources(client: &Host, content: &str) -> Vec<(String, String)> {
    client
        .client_events()
        .iter()
        .filter(|e| {
            e.name == "fetched"
                && e.get("content") == Some(content)
                && e.get("outcome") == Some("ok")
        })
        .map(|e| {
            (
                e.get("chunk").unwrap_or("?").to_owned(),
                e.get("source").unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The chunk indexes `holder`'s `server.log` says it served completely (`outcome=ok`) of
/// `content` to a peer at `to`.
fn served_ok_to(holder: &Host, content: &str, to: Ipv4Addr) -> Vec<u8> {
    let mut chunks: Vec<u8> = holder
        .server_events()
        .iter()
        .filter(|e| {
            e.name == "served"
                && e.get("outcome") == Some("ok")
                && e.get("peer")
                    .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
                    .is_some_and(|p| p.ip() == to)
        })
        .filter_map(|e| {
            e.get("chunk")?
                .strip_prefix(content)?
                .strip_prefix('_')?
                .parse()
                .ok()
        })
        .collect();
    chunks.sort_unstable();
    chunks.dedup();
    chunks
}

/// Three hosts on one switch, each a full peer with default targets (no `--broadcast`): every
/// listener learns every host's file, at that host's own address.
#[test]
fn broadcast_discovery_across_hosts() {
    let Some(lab) = lab_or_skip("discovery", Duration::from_secs(90)) else {
        return;
    };
    let (lan, hosts) = lab.lan(&["alice", "bob", "carol"]);
    let mut shared = Vec::new();
    for (host, seed) in hosts.iter().zip(1u64..) {
        let name = format!("{}.bin", host.name);
        let (_, digest) = host.write_share(&name, 200_000 + seed, seed);
        host.start_all(&host.name);
        shared.push((name, digest));
    }

    // The announcer chose its targets itself: the directed broadcast of the host's interface.
    let expected = format!("{}:{ANNOUNCE_PORT}", lan.broadcast());
    for host in &hosts {
        let targets = announcer_targets(&lab, host);
        assert_eq!(
            targets,
            vec![expected.clone()],
            "{}'s announcer should broadcast to its subnet's directed broadcast only",
            host.name
        );
    }
    lab.log(&format!("announcers broadcast to {expected}"));

    let start = Instant::now();
    for viewer in &hosts {
        for (holder, (name, digest)) in hosts.iter().zip(&shared) {
            lab.wait_for_entry(viewer, holder, &holder.name, name, *digest);
        }
    }
    lab.log(&format!(
        "each of the 3 listeners lists all 3 hosts' files (after {:.1}s)",
        start.elapsed().as_secs_f64()
    ));
    for host in &hosts {
        host.check_all_running().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// 16 MiB shared by three hosts; a fourth downloads it, in chunks from all three, byte-identical.
#[test]
fn download_from_three_hosts() {
    const SIZE: u64 = 16 << 20;
    let Some(lab) = lab_or_skip("three-hosts", Duration::from_secs(120)) else {
        return;
    };
    let (_, hosts) = lab.lan(&["alice", "bob", "carol", "dave"]);
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| std::rc::Rc::clone(&hosts[i]));
    let (original, digest) = a.write_share("dataset.bin", SIZE, 7);
    for holder in [&b, &c] {
        fs::copy(&original, holder.share_dir().join("dataset.bin")).expect("copy the share");
    }
    for host in &hosts {
        host.start_all(&host.name);
    }
    for holder in [&a, &b, &c] {
        lab.wait_for_entry(&d, holder, &holder.name, "dataset.bin", digest);
    }
    lab.log("dave's tags.txt lists dataset.bin at alice, bob and carol");

    let started = Instant::now();
    let out = d
        .spawn_downloader(&["get", "dataset.bin"])
        .wait(Duration::from_secs(90));
    assert_success(&out, "dave downloads dataset.bin");
    let took = started.elapsed();
    assert_same_file(&original, &printed_path(&out, &d.dir));
    lab.log(&format!(
        "download of 16 MiB complete and byte-identical in {:.1}s",
        took.as_secs_f64()
    ));

    let fetched = fetched_ok_sources(&d, "dataset.bin");
    for holder in [&a, &b, &c] {
        let served = served_ok_to(holder, "dataset.bin", d.ip);
        assert!(
            !served.is_empty(),
            "{}'s server.log has no `served chunk=dataset.bin_N ... outcome=ok` to {}; \
             events:\n{}\ndave fetched: {fetched:?}",
            holder.name,
            d.ip,
            show_events(&holder.server_events())
        );
        assert!(
            fetched
                .iter()
                .any(|(_, source)| *source == holder.chunk_addr().to_string()),
            "dave's client.log has no chunk fetched from {}: {fetched:?}",
            holder.chunk_addr()
        );
        lab.log(&format!(
            "{} ({}) served chunks {served:?}",
            holder.name, holder.ip
        ));
    }
}

/// Three hosts share a file, served at 1 MiB/s per connection; while a fourth downloads it,
/// bob's cable is pulled at the switch. The download completes from alice and carol.
#[test]
fn download_survives_a_host_link_cut() {
    const SIZE: u64 = 20 << 20; // 4 MiB chunks: 4 s each at the rate below
    const MAX_RATE: &str = "1048576";
    let Some(lab) = lab_or_skip("link-cut", Duration::from_secs(150)) else {
        return;
    };
    let (_, hosts) = lab.lan(&["alice", "bob", "carol", "dave"]);
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| std::rc::Rc::clone(&hosts[i]));
    let (original, digest) = a.write_share("movie.mkv", SIZE, 11);
    for holder in [&b, &c] {
        fs::copy(&original, holder.share_dir().join("movie.mkv")).expect("copy the share");
    }
    for holder in [&a, &b, &c] {
        holder.start_chunk_server(&["--max-rate", MAX_RATE]);
        holder.start_listener(&[]);
        holder.start_announcer(&holder.name, &[]);
    }
    d.start_all("dave");
    for holder in [&a, &b, &c] {
        lab.wait_for_entry(&d, holder, &holder.name, "movie.mkv", digest);
    }
    lab.log("dave's tags.txt lists movie.mkv at alice, bob and carol");

    let mut download = d.spawn_downloader(&["-v", "get", "movie.mkv"]);
    // Cut bob once he is sending to dave and chunks are arriving (his 4 MiB chunks need 4 s).
    let connections = lab.wait_until(
        Duration::from_secs(20),
        "bob's chunk server is sending to dave and dave's part files grow",
        || {
            let n = b.chunk_connections_from(d.ip);
            let bytes = d.incoming_bytes();
            if !download.is_running() {
                return Ok(0); // reported below
            }
            if n > 0 && bytes >= 512 << 10 {
                Ok(n)
            } else {
                Err(format!(
                    "bob has {n} connection(s) from dave, dave has {bytes} bytes in parts"
                ))
            }
        },
    );
    lab.cut_link(&b);
    let cut_at = download.elapsed();
    let since_cut = Instant::now();
    lab.log(&format!(
        "cut bob's link ({} down in {}) {:.1}s into the download, while he had {connections} \
         connection(s) from dave and dave had {} bytes in part files",
        b.switch_port.as_deref().unwrap_or("?"),
        lab.switch_ns(),
        cut_at.as_secs_f64(),
        d.incoming_bytes()
    ));
    assert!(
        connections > 0 && download.is_running(),
        "the download should still be in progress, from bob too, when his link is cut; raise \
         SIZE or lower MAX_RATE"
    );

    let out = download.wait(Duration::from_secs(120));
    assert_success(&out, "dave downloads movie.mkv while bob's link is cut");
    let total = cut_at + since_cut.elapsed();
    assert_same_file(&original, &printed_path(&out, &d.dir));

    // Bob could not finish a chunk (4 s each) before the cut, nor send anything after it:
    // every chunk came from alice or carol.
    let fetched = fetched_ok_sources(&d, "movie.mkv");
    let others = [a.chunk_addr().to_string(), c.chunk_addr().to_string()];
    for chunk in 1..=5 {
        assert!(
            fetched
                .iter()
                .any(|(i, source)| *i == chunk.to_string() && others.contains(source)),
            "chunk {chunk} was not fetched from alice or carol: {fetched:?}"
        );
    }
    assert!(
        fetched
            .iter()
            .all(|(_, source)| *source != b.chunk_addr().to_string()),
        "no chunk can have come from bob, cut before he finished one: {fetched:?}"
    );
    let attempts = d
        .client_events()
        .into_iter()
        .filter(|e| e.name == "fetched")
        .collect::<Vec<_>>();
    lab.log(&format!(
        "download complete and byte-identical after {:.1}s ({:.1}s after the cut); dave's \
         fetched events:\n{}",
        total.as_secs_f64(),
        (total - cut_at).as_secs_f64(),
        show_events(&attempts)
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let endgame: Vec<&str> = stderr.lines().filter(|l| l.contains("endgame")).collect();
    lab.log(&format!("dave's downloader (-v):\n{}", endgame.join("\n")));
}

/// A host in another subnet, behind a router: broadcasts do not cross, so the LAN does not see
/// it until its announcer is given `--peer <alice>`; then alice lists it and downloads from it
/// across the router, and its listener given `--peer <alice>` learns alice's files by query.
#[test]
fn routed_host_reached_only_through_peer() {
    const SIZE: u64 = 12 << 20;
    let Some(lab) = lab_or_skip("routed", Duration::from_secs(120)) else {
        return;
    };
    let (_, lan_hosts) = lab.lan(&["alice", "bob"]);
    let [a, b] = [0, 1].map(|i| std::rc::Rc::clone(&lan_hosts[i]));
    let d = lab.routed_host("dave", a.subnet);
    let (_, notes) = a.write_share("notes.txt", 70_000, 21);
    let (_, memo) = b.write_share("memo.txt", 50_000, 22);
    let (original, report) = d.write_share("report.bin", SIZE, 23);
    a.start_all("alice");
    b.start_all("bob");
    d.start_chunk_server(&[]);
    d.start_listener(&[]);
    d.start_announcer("dave", &[]);

    // Everyone works: dave's broadcasts reach his own listener, bob's reach alice.
    assert_eq!(
        announcer_targets(&lab, &d),
        vec![format!("{}:{ANNOUNCE_PORT}", d.subnet.broadcast())]
    );
    lab.wait_for_entry(&d, &d, "dave", "report.bin", report);
    lab.wait_for_entry(&a, &b, "bob", "memo.txt", memo);
    lab.log("dave hears himself, alice hears bob; now watching alice and bob for dave");

    // Without --peer, nothing of dave reaches the LAN, for three announce intervals.
    let watch = Duration::from_secs(3 * ANNOUNCE_INTERVAL_SECS);
    lab.holds_for(watch, "alice's and bob's tags.txt without dave", || {
        a.lists_no_host(d.ip)?;
        b.lists_no_host(d.ip)?;
        d.check_all_running()
    });
    lab.log(&format!(
        "no entry of dave ({}) at alice or bob for {watch:?}",
        d.ip
    ));

    // With --peer alice, alice (and only alice) learns dave's file.
    d.stop(Program::Announcer);
    let alice = a.ip.to_string();
    d.start_announcer("dave", &["--peer", &alice]);
    let start = Instant::now();
    lab.wait_for_entry(&a, &d, "dave", "report.bin", report);
    lab.log(&format!(
        "with --peer {alice}, alice lists dave's report.bin after {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    lab.holds_for(
        Duration::from_secs(ANNOUNCE_INTERVAL_SECS + 1),
        "bob's tags.txt without dave (he was not named with --peer)",
        || b.lists_no_host(d.ip),
    );

    // Alice downloads from dave, across the router.
    let out = a
        .spawn_downloader(&["get", "report.bin"])
        .wait(Duration::from_secs(90));
    assert_success(&out, "alice downloads report.bin from dave");
    assert_same_file(&original, &printed_path(&out, &a.dir));
    let served = served_ok_to(&d, "report.bin", a.ip);
    assert_eq!(
        served,
        vec![1, 2, 3, 4, 5],
        "dave's server.log should have served every chunk to alice ({}); events:\n{}",
        a.ip,
        show_events(&d.server_events())
    );
    lab.log("alice downloaded report.bin (12 MiB) from dave across the router, byte-identical");

    // The listener's --peer: dave's start-up query reaches alice, whose announcer answers.
    d.stop(Program::Listener);
    d.start_listener(&["--peer", &alice]);
    let start = Instant::now();
    lab.wait_for_entry(&d, &a, "alice", "notes.txt", notes);
    lab.log(&format!(
        "dave's listener with --peer {alice} lists alice's notes.txt after {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    d.lists_no_host(b.ip)
        .expect("dave's tags.txt should not list bob, who was not queried");
}

/// `--bind 127.0.0.x` (as several peers on one host use) while the holder is another host: the
/// loopback source is dropped for that holder, for the manifest request as for the chunks, so
/// the download goes through instead of failing to connect.
#[test]
fn a_loopback_bind_does_not_stop_a_download_from_another_host() {
    let Some(lab) = lab_or_skip("loopback-bind", Duration::from_secs(90)) else {
        return;
    };
    let (_, hosts) = lab.lan(&["alice", "carol"]);
    let [a, c] = [0, 1].map(|i| std::rc::Rc::clone(&hosts[i]));
    let (original, digest) = a.write_share("notes.bin", 300_000, 12);
    for host in &hosts {
        host.start_all(&host.name);
    }
    lab.wait_for_entry(&c, &a, "alice", "notes.bin", digest);
    let out = c
        .spawn_downloader(&["--bind", "127.0.0.1", "get", "notes.bin"])
        .wait(Duration::from_secs(60));
    assert_success(
        &out,
        "carol downloads with --bind 127.0.0.1 from alice's host",
    );
    assert_same_file(&original, &printed_path(&out, &c.dir));
}
