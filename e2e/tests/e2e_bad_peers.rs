//! Holders that misbehave: one that sends wrong bytes under a correct header, one that accepts
//! and never answers, one that trickles, and a legacy server that closes early. Beside an honest
//! holder, the download still yields the exact file, and the bad holder is dropped.
//!
//! The bad holders of our protocol are fakes in this process: they announce over UDP like our
//! announcer (their own 127.0.0.x, the `p2p` extension with the real content's size and digest)
//! and answer manifest requests with the real manifest, so the downloader has every reason to
//! trust them until their bytes prove otherwise.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::events::Event;
use testkit::fake_holder::{Behaviour, FakeHolder};
use testkit::legacy::{bind_same_port, legacy_announce, legacy_split, LegacyServer, Mode};
use testkit::prelude::*;

/// A fake holder of `content` on its own loopback IP, announcing itself as `user` to the test's
/// network like our announcer.
fn fake_peer(
    net: &TestNet,
    user: &str,
    content: &str,
    data: Vec<u8>,
    behaviour: Behaviour,
) -> FakeHolder {
    FakeHolder::start(net.next_ip(), content, data, behaviour).announce(
        user,
        net.broadcast(),
        ANNOUNCE_INTERVAL_SECS,
    )
}

const CONTENT: &str = "report.pdf";
/// 5 MiB: five chunks of 1 MiB, far beyond what a trickle of 100 bytes/s could ever deliver.
const SIZE: usize = 5 << 20;

/// An honest holder `a` (real programs) sharing `CONTENT`, and carol (`c`) whose listener lists
/// it. The fields are dropped in order: carol's programs, then the holder's.
struct Holding {
    c: Peer,
    a: Peer,
    /// The shared file, its bytes and their digest.
    original: PathBuf,
    data: Vec<u8>,
    digest: Digest,
}

/// Peer `a` writes `size` random bytes from `seed` as `CONTENT` into its shared files, serves
/// them (its chunk server given `server_args`) and announces them as `user`; carol (`c`) starts
/// her listener and waits until it lists `a`'s offer.
fn honest_holder(
    net: &TestNet,
    user: &str,
    size: usize,
    seed: u64,
    server_args: &[&str],
) -> Holding {
    let a = net.peer("a");
    let c = net.peer("c");
    let data = random_bytes(size, seed);
    let original = a.share_dir().join(CONTENT);
    fs::write(&original, &data).expect("write the shared file");
    let digest = Digest::of(&data);
    a.start_chunk_server(&[], server_args);
    a.start_announcer(user, ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, user, CONTENT, digest);
    Holding {
        c,
        a,
        original,
        data,
        digest,
    }
}

/// The fields are dropped in order: the fake and the peers (their programs) before the network
/// (its folder).
struct Scene {
    mallory: FakeHolder,
    h: Holding,
    #[allow(dead_code)] // held for its drop: the folder goes last
    net: TestNet,
}

/// alice (real programs) and mallory (a fake that misbehaves as told) both offer `report.pdf`;
/// carol's listener knows both.
fn scene(behaviour: Behaviour, seed: u64, server_args: &[&str]) -> Scene {
    let net = TestNet::new(Duration::from_secs(120));
    let h = honest_holder(&net, "alice", SIZE, seed, server_args);
    let mallory = fake_peer(&net, "mallory", CONTENT, h.data.clone(), behaviour);
    net.wait_for_entry_at(&h.c, mallory.addr, "mallory", CONTENT, h.digest);
    Scene { mallory, h, net }
}

impl Scene {
    /// The chunks carol asked of mallory; there must be some, or the test proves nothing.
    fn asked_of_mallory(&self) -> Vec<(String, u64)> {
        let asked = self.mallory.chunk_requests();
        assert!(
            !asked.is_empty(),
            "mallory was never asked for a chunk: the test proves nothing"
        );
        asked
    }

    /// The `fetched` events of `CONTENT` from mallory (her user name and address) that ended in
    /// `outcome`.
    fn fetched_from_mallory<'a>(&self, events: &'a [Event], outcome: &str) -> Vec<&'a Event> {
        matching(
            events,
            "fetched",
            &[
                ("content", CONTENT),
                ("user", "mallory"),
                ("source", &self.mallory.addr.to_string()),
                ("outcome", outcome),
            ],
        )
    }
}

/// Every `fetched ... outcome=ok` of the content came from alice.
fn assert_all_chunks_from(c: &Peer, a: &Peer) {
    let (fetched, done) = assert_fetched_all(c, CONTENT);
    for event in &fetched {
        assert_eq!(
            (event.get("user"), event.get("source")),
            (Some("alice"), Some(a.chunk_addr().to_string().as_str())),
            "{event}"
        );
        assert_eq!(event.get("verified"), Some("yes"), "{event}");
    }
    assert_eq!(done.get("verified"), Some("yes"), "{done}");
}

/// `c` runs `downloader <args> get CONTENT`: the download succeeds and the file is exactly
/// `original`. Returns the output and how long it took.
fn download_exact(c: &Peer, original: &Path, args: &[&str], what: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = c.downloader(&[args, &["get", CONTENT]].concat());
    let took = started.elapsed();
    assert_success(&out, what);
    assert_same_file(original, &printed_path(&out, &c.dir));
    (out, took)
}

/// carol downloads with `args` (then `get CONTENT`): the download succeeds, the file is exact
/// and every chunk came from alice. Returns the output and how long it took.
fn download_exactly_from_alice(s: &Scene, args: &[&str], what: &str) -> (Output, Duration) {
    let (out, took) = download_exact(&s.h.c, &s.h.original, args, what);
    assert_all_chunks_from(&s.h.c, &s.h.a);
    (out, took)
}

/// The download (`out`) took less than `limit`; `why` says what it should have cost.
fn assert_took_less(took: Duration, limit: Duration, out: &Output, why: &str) {
    assert!(
        took < limit,
        "{why}, not {took:?}\n{}",
        describe_output(out)
    );
}

/// No chunk carol fetched from alice ended in `outcome=bad_data`: `why` names what blaming her
/// would mean.
fn assert_alice_not_blamed(c: &Peer, why: &str) {
    let events = c.client_events();
    assert!(
        matching(
            &events,
            "fetched",
            &[("user", "alice"), ("outcome", "bad_data")]
        )
        .is_empty(),
        "{why}:\n{}",
        show_events(&events)
    );
}

/// alice's chunk server sends one chunk at a time, at 1 MiB/s: 1 s per chunk, the others wait.
const ONE_AT_A_TIME: &[&str] = &["--max-rate", "1048576", "--max-connections", "1"];

#[test]
fn corrupting_peer_is_caught_avoided_and_the_file_is_exact() {
    // alice sends one chunk at a time and the endgame starts early, so when alice's first chunk
    // is done, the others have long been in flight and the endgame looks for an idle holder to
    // ask as well: mallory would be that holder if she were not avoided once caught.
    let s = scene(Behaviour::Corrupt, 0xBAD, ONE_AT_A_TIME);
    download_exactly_from_alice(
        &s,
        &["--endgame-after", "0.3"],
        "download beside a corrupting peer",
    );

    let events = s.h.c.client_events();
    let all = show_events(&events);
    let caught = s.fetched_from_mallory(&events, "bad_data");
    assert!(
        !caught.is_empty(),
        "client.log should record mallory's wrong bytes as outcome=bad_data:\n{all}"
    );
    let asked = s.mallory.timed_chunk_requests();
    assert!(
        !asked.is_empty(),
        "mallory was never asked for a chunk: the test proves nothing\n{all}"
    );
    let names: Vec<&str> = asked.iter().map(|(_, n, _)| n.as_str()).collect();
    // Once caught, mallory is not asked again: only the requests of the first wave (at most one
    // per chunk, all sent together when the download starts), never the same chunk twice, and
    // nothing later (the endgame would come a second after, when alice's first chunk is done).
    let mut per_chunk: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        *per_chunk.entry(name).or_default() += 1;
    }
    assert!(
        per_chunk.values().all(|&n| n == 1) && asked.len() <= 5,
        "mallory was asked {names:?}: a chunk twice, or more than the five first requests\n{all}"
    );
    let first = asked[0].0;
    let late: Vec<(Duration, &str)> = asked
        .iter()
        .map(|(at, name, _)| (at.duration_since(first), name.as_str()))
        .filter(|(after, _)| *after > Duration::from_millis(400))
        .collect();
    assert!(
        late.is_empty(),
        "mallory was asked again after being caught: {late:?} after the first request\n{all}"
    );
    assert_eq!(
        caught.len(),
        asked.len(),
        "every chunk mallory sent was caught:\n{all}"
    );
    // Nothing mallory sent is left behind.
    let parts: Vec<_> = files_under(&s.h.c.temp_dir().join(".incoming"));
    assert!(
        parts.is_empty(),
        "temp/.incoming should be empty: {parts:?}"
    );
}

#[test]
fn silent_peer_is_given_up_and_the_file_is_exact() {
    let s = scene(Behaviour::Silent, 0x51E, &[]);
    // No endgame: only the idle timeout can free the chunks first asked of mallory.
    let (out, took) = download_exactly_from_alice(
        &s,
        &["--idle-timeout", "2", "--endgame-after", "600"],
        "download beside a silent peer",
    );
    let asked = s.asked_of_mallory();
    let events = s.h.c.client_events();
    let timeouts = s.fetched_from_mallory(&events, "timeout");
    assert_eq!(
        timeouts.len(),
        asked.len(),
        "each chunk asked of the silent mallory ({asked:?}) should end in outcome=timeout:\n{}",
        show_events(&events)
    );
    assert_took_less(
        took,
        Duration::from_secs(12),
        &out,
        "with --idle-timeout 2 the silent peer should cost about 2 s",
    );
}

#[test]
fn trickling_peer_is_abandoned_and_the_file_is_exact() {
    let s = scene(Behaviour::Trickle(10), 0x7C1, &[]);
    let (out, took) = download_exactly_from_alice(
        &s,
        &["--idle-timeout", "2"],
        "download beside a trickling peer",
    );
    s.asked_of_mallory();
    // A 1 MiB chunk at 100 bytes/s takes three hours: only abandoning mallory (stall detection)
    // or asking alice as well (endgame) finishes in seconds.
    assert_took_less(
        took,
        Duration::from_secs(30),
        &out,
        "beside a trickling peer the download should take seconds",
    );
    let events = s.h.c.client_events();
    let too_slow = s.fetched_from_mallory(&events, "too_slow");
    let log = fs::read_to_string(s.h.c.dir.join(shared::CLIENT_LOG)).unwrap_or_default();
    let endgame = log
        .lines()
        .any(|l| l.contains("endgame: also asking alice"));
    assert!(
        !too_slow.is_empty() || endgame,
        "client.log shows neither outcome=too_slow for mallory nor the endgame asking alice:\n{log}"
    );
}

#[test]
fn trickling_peer_is_abandoned_by_stall_detection_and_alice_continues_its_bytes() {
    let s = scene(Behaviour::Trickle(10), 0x7C2, &[]);
    // No endgame: only the stall window (which follows --idle-timeout) can drop mallory.
    let (out, took) = download_exactly_from_alice(
        &s,
        &["--idle-timeout", "2", "--endgame-after", "600"],
        "download beside a trickling peer, without endgame",
    );
    assert_took_less(
        took,
        Duration::from_secs(12),
        &out,
        "a 2 s stall window should drop mallory in about 2 s",
    );
    let asked = s.asked_of_mallory();
    let events = s.h.c.client_events();
    let all = show_events(&events);
    let too_slow = s.fetched_from_mallory(&events, "too_slow");
    assert_eq!(
        too_slow.len(),
        asked.len(),
        "each chunk asked of mallory ({asked:?}) should end in outcome=too_slow:\n{all}"
    );
    // The right bytes mallory trickled are kept, and alice sends only the rest, each byte
    // once: the continuation from where mallory stopped, and (when she was idle while mallory
    // still had the chunk) the end of it, which she took as a piece.
    wait_for_served_all(&s.net, &s.h.a, CONTENT);
    let served = s.h.a.server_events();
    let lens = shared::chunk::chunk_ranges(SIZE as u64).map(|r| r.len());
    for event in &too_slow {
        let chunk = event.get("chunk").expect("chunk");
        let kept = event.get("bytes").expect("bytes");
        let name = format!("{CONTENT}_{chunk}");
        let from_alice = matching(&served, "served", &[("chunk", &name), ("outcome", "ok")]);
        assert!(
            from_alice.iter().any(|e| e.get("offset") == Some(kept)),
            "alice should continue {name} after the {kept} bytes mallory sent: {}",
            show_events(&served)
        );
        let sent: u64 = (from_alice.iter())
            .map(|e| {
                e.get("bytes")
                    .and_then(|b| b.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        let position = chunk.parse::<usize>().expect("a chunk index") - 1;
        let kept_bytes: u64 = kept.parse().expect("bytes");
        assert_eq!(
            sent,
            lens[position] - kept_bytes,
            "alice should send each byte of {name} mallory did not, once: {}",
            show_events(&served)
        );
        let fetched = matching(
            &events,
            "fetched",
            &[("chunk", chunk), ("user", "alice"), ("outcome", "ok")],
        );
        assert_eq!(fetched.len(), 1, "{all}");
        assert_ne!(
            kept, "0",
            "10 bytes every 100 ms for 2 s: mallory's part should hold bytes: {event}"
        );
        assert_eq!(fetched[0].get("resumed_from"), Some(kept), "{}", fetched[0]);
    }
}

// ---------------------------------------------------------------------------------------------
// A legacy server that closes early
// ---------------------------------------------------------------------------------------------

#[test]
fn legacy_chunk_cut_short_is_detected_and_fetched_from_the_other_legacy_peer() {
    let net = TestNet::new(Duration::from_secs(90));
    let honest_ip = net.next_ip();
    let cutter_ip = net.next_ip();
    let folder = net.folder("legacy-peers");
    let original = folder.join("thesis.pdf");
    write_random_file(&original, (1 << 20) + 3, 0x7E5);
    let chunks_dir = folder.join("chunks");
    let (content, chunks) = legacy_split(&original, &chunks_dir);
    assert_eq!((content.as_str(), chunks.len()), ("thesis", 5));

    // Legacy peers all serve on one port; the listener is told which.
    let mut listeners = bind_same_port(&[honest_ip, cutter_ip]).into_iter();
    let honest = LegacyServer::from_listener(listeners.next().unwrap(), &chunks_dir, Mode::Close);
    let cutter = LegacyServer::from_listener(
        listeners.next().unwrap(),
        &chunks_dir,
        Mode::TruncateChunk(2),
    );
    let port = honest.addr().port();

    let c = net.peer("c");
    c.start_listener(&["--legacy-chunk-port", &port.to_string()]);
    // The honest peer announces chunks 1 and 2, the cutter chunks 2 to 5. Chunk 1 can only come
    // from the honest peer, so the downloader, spreading chunks over holders, asks the cutter
    // first for chunk 2 whatever its tie-breaking: the cut is always met, never dodged by luck.
    let honest_files: Vec<String> = chunks[..2].to_vec();
    let cutter_files: Vec<String> = chunks[1..].to_vec();
    let mut last_sent: Option<Instant> = None;
    net.wait_until(WAIT, "carol's tags.txt lists both legacy peers", || {
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            legacy_announce(honest_ip, net.broadcast(), "hugo", &honest_files);
            legacy_announce(cutter_ip, net.broadcast(), "cutter", &cutter_files);
            last_sent = Some(Instant::now());
        }
        let tags = c.tags()?;
        let has = |user: &str, addr: SocketAddr, set: &str| {
            tags.entries.iter().any(|e| {
                e.user == user
                    && e.addr == addr
                    && e.content == "thesis"
                    && Some(e.chunks) == ChunkSet::parse(set)
            })
        };
        (has("hugo", honest.addr(), "12---") && has("cutter", cutter.addr(), "-2345"))
            .then_some(())
            .ok_or_else(|| format!("tags.txt is:\n{tags}"))
    });

    let out = c.downloader(&["get", "thesis"]);
    assert_success(
        &out,
        "download from two legacy peers, one cutting chunk 2 short",
    );
    assert_same_file(&original, &printed_path(&out, &c.dir));

    let asked_for = |server: &LegacyServer, chunk: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.contains(&format!("\"{chunk}\"")))
            .count()
    };
    assert_eq!(
        asked_for(&cutter, "thesis_2"),
        1,
        "the cutter should be asked for thesis_2 once (first, then avoided): {:?}",
        cutter.requests()
    );
    assert_eq!(
        asked_for(&honest, "thesis_2"),
        1,
        "the honest peer should be asked for thesis_2 after the cut was detected: {:?}",
        honest.requests()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("thesis_2") && stderr.contains("chunking rule"),
        "the downloader should warn that thesis_2 broke the chunking rule\n{}",
        describe_output(&out)
    );
    let events = c.client_events();
    let from_honest = matching(
        &events,
        "fetched",
        &[
            ("content", "thesis"),
            ("chunk", "2"),
            ("source", &honest.addr().to_string()),
            ("outcome", "ok"),
        ],
    );
    assert_eq!(from_honest.len(), 1, "{}", show_events(&events));
    let full = fs::metadata(chunks_dir.join("thesis_2"))
        .expect("chunk 2")
        .len();
    assert_eq!(
        from_honest[0].get("bytes"),
        Some(full.to_string().as_str()),
        "{}",
        from_honest[0]
    );
    let done = matching(
        &events,
        "download",
        &[("content", "thesis"), ("outcome", "ok")],
    );
    assert_eq!(done.len(), 1, "{}", show_events(&events));
    assert_eq!(done[0].get("verified"), Some("no"), "{}", done[0]);
}

#[test]
fn six_silent_holders_beside_one_honest_holder_cost_seconds_not_minutes() {
    let net = TestNet::new(Duration::from_secs(120));
    // The silent ones sort before "zoe", in case holders are asked in name order.
    let h = honest_holder(&net, "zoe", 1 << 20, 0x5A1, &[]);
    let silent: Vec<FakeHolder> = (1..=6)
        .map(|i| {
            fake_peer(
                &net,
                &format!("mute{i}"),
                CONTENT,
                h.data.clone(),
                Behaviour::Silent,
            )
        })
        .collect();
    for (i, fake) in silent.iter().enumerate() {
        net.wait_for_entry_at(
            &h.c,
            fake.addr,
            &format!("mute{}", i + 1),
            CONTENT,
            h.digest,
        );
    }
    let (out, took) = download_exact(&h.c, &h.original, &[], "download beside six silent holders");
    eprintln!("download beside six silent holders took {took:?}");
    // Asked one after another with the 15 s idle timeout, the manifest alone took 90 s.
    assert_took_less(
        took,
        Duration::from_secs(10),
        &out,
        "six silent holders should cost seconds",
    );
}

#[test]
fn a_forged_manifest_is_rolled_back_blames_nobody_and_never_spreads() {
    let net = TestNet::new(Duration::from_secs(150));
    let Holding {
        c,
        a,
        original,
        data,
        digest,
    } = honest_holder(&net, "alice", 1 << 20, 0xF0F, &[]);
    // alice's chunk server goes away (her announcer goes on): the forger is the only holder
    // that answers, so the download must take its manifest, and fail the whole-file check.
    a.stop(Program::ChunkServer);
    let mallory = fake_peer(&net, "mallory", CONTENT, data, Behaviour::ForgeManifest);
    net.wait_for_entry_at(&c, mallory.addr, "mallory", CONTENT, digest);

    let out = c.downloader(&["get", CONTENT]);
    assert!(
        !out.status.success(),
        "nothing genuine could be had: the download must fail\n{}",
        describe_output(&out)
    );
    assert!(files_under(&c.downloads_dir()).is_empty());
    // The forged manifest and everything fetched under it are gone: nothing to announce or
    // serve, nothing that would be taken for verified next time.
    let store = shared::store::ChunkStore::open(c.temp_dir()).unwrap();
    assert_eq!(store.load_manifest(CONTENT).unwrap(), None);
    let snapshot = store.snapshot().unwrap();
    assert!(
        snapshot.chunks.is_empty() && snapshot.metas.is_empty(),
        "the store still offers {snapshot:?}"
    );
    assert_alice_not_blamed(&c, "alice was blamed on the word of the forged manifest");

    // alice is back: the next run gets the genuine file, from her alone, and blames her for
    // nothing.
    a.start_chunk_server(&[], &[]);
    download_exact(&c, &original, &[], "the download once alice serves again");
    assert_alice_not_blamed(&c, "alice was blamed");

    // A fourth peer that only ever hears carol gets the genuine file from her.
    drop(mallory);
    a.stop_all();
    c.start_chunk_server(&[], &[]);
    c.start_announcer("carol", ANNOUNCE_INTERVAL_SECS);
    let d = net.peer("d");
    d.start_listener(&[]);
    net.wait_for_entry(&d, &c, "carol", CONTENT, digest);
    download_exact(&d, &original, &[], "the fourth peer's download from carol");
}

#[test]
fn rolling_back_a_forged_manifest_keeps_this_peers_own_file_of_the_same_name() {
    let net = TestNet::new(Duration::from_secs(90));
    let Holding {
        c, a, data, digest, ..
    } = honest_holder(&net, "alice", 300_000, 0xF1F, &[]);
    // carol shares a different file under the same name.
    let (_, own_digest) = c.write_share(CONTENT, 200_000, 0x0C);
    c.start_chunk_server(&[], &[]);
    a.stop(Program::ChunkServer);
    let mallory = fake_peer(&net, "mallory", CONTENT, data, Behaviour::ForgeManifest);
    net.wait_for_entry_at(&c, mallory.addr, "mallory", CONTENT, digest);
    let store = shared::store::ChunkStore::open(c.temp_dir()).unwrap();
    net.wait_until(WAIT, "carol's own file split", || {
        match store.load_manifest(CONTENT) {
            Ok(Some(m)) if m.manifest.sha256 == own_digest => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    let out = c.downloader(&["get", CONTENT]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let kept = store
        .load_manifest(CONTENT)
        .unwrap()
        .expect("carol's manifest");
    assert_eq!(kept.manifest.sha256, own_digest);
    assert!(
        store.chunks_of(CONTENT).is_complete(),
        "carol's own chunks were removed with the forged download"
    );
    drop(mallory);
}
