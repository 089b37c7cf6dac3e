//! Sending a file to one peer (`downloader send PATH --to USER`, seed 002's upload) with the
//! real programs on loopback: the offer reaches only its recipient, nothing of it is written
//! there until accepted, an accepted offer is downloaded and verified, a declined one never
//! comes back, `downloader sync` accepts unasked from the users of `accept-from.txt` only,
//! and an expired offer cannot be accepted.
//!
//! The latencies are printed (`cargo test -p e2e --test e2e_send -- --nocapture`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use shared::digest::Digest;
use shared::store::ChunkStore;
use testkit::prelude::*;

/// Long enough that nothing is re-announced by the clock during a test: what arrives was sent
/// at once, or in answer to a query.
const INTERVAL_SECS: u64 = 60;

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe_output(out)))
}

/// `downloader offers --json` of `peer`.
fn offers(peer: &Peer) -> Vec<serde_json::Value> {
    let out = peer.downloader(&["offers", "--json"]);
    assert_success(&out, "downloader offers --json");
    json_of(&out).as_array().expect("an array").clone()
}

/// Waits until `peer` lists an offer of `name`; returns it.
fn wait_for_offer(net: &TestNet, peer: &Peer, name: &str) -> serde_json::Value {
    net.wait_until(
        Duration::from_secs(20),
        &format!("{} lists the offer of {name}", peer.name),
        || {
            let listed = offers(peer);
            listed
                .iter()
                .find(|o| o["name"] == name)
                .cloned()
                .ok_or_else(|| format!("{listed:?}"))
        },
    )
}

/// Every file under `dir` whose path mentions `name`.
fn traces_of(dir: &Path, name: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p.contains(name))
        .collect()
}

/// A peer that receives: a username (the listener records offers only for it) and a listener.
fn receiver(net: &TestNet, name: &str) -> Peer {
    let peer = net.peer(name);
    std::fs::write(peer.dir.join("username.txt"), format!("{name}\n")).unwrap();
    peer.start_listener(&[]);
    peer
}

/// A peer that sends: chunk server (sharing `base.txt`, so others hear it) and announcer.
fn sender(net: &TestNet, name: &str, seed: u64) -> (Peer, Digest) {
    let peer = net.peer(name);
    let (_, base) = peer.write_share("base.txt", 1_000, seed);
    peer.start_chunk_server(&[], &["--rescan", "1"]);
    peer.start_announcer(name, INTERVAL_SECS);
    (peer, base)
}

/// `peer` runs `downloader send PATH --to TO [extra]`.
fn send(peer: &Peer, path: &Path, to: &str, extra: &[&str]) -> Output {
    let mut args = vec!["send", path.to_str().unwrap(), "--to", to];
    args.extend_from_slice(extra);
    peer.downloader(&args)
}

#[test]
fn an_offer_reaches_only_its_recipient_and_nothing_is_written_before_accept() {
    let net = TestNet::new(Duration::from_secs(180));
    let (bob, base) = sender(&net, "bob", 1);
    let carol = receiver(&net, "carol");
    let dave = receiver(&net, "dave");
    net.wait_for_entry(&dave, &bob, "bob", "base.txt", base);

    // Errors first: a folder with no file to send, a bad username, a name bob already serves for another file.
    let outside = net.folder("outside");
    let folder = bob.downloader(&["send", outside.to_str().unwrap(), "--to", "carol"]);
    assert_eq!(
        folder.status.code(),
        Some(1),
        "{}",
        describe_output(&folder)
    );
    assert!(
        all_output(&folder).contains("folder"),
        "{}",
        describe_output(&folder)
    );
    let clash = outside.join("base.txt");
    write_random_file(&clash, 10, 9);
    let out = send(&bob, &clash, "carol", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        all_output(&out).contains("already serves"),
        "{}",
        describe_output(&out)
    );
    let report = outside.join("report.pdf");
    let digest = write_random_file(&report, 300_003, 11);
    let out = send(&bob, &report, "bad\u{1b}name", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let out = send(&bob, &report, "carol", &["--expires", "8d"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(!bob.dir.join("sends.txt").exists(), "nothing recorded");

    // bob offers report.pdf to carol.
    let sent = Instant::now();
    let out = send(&bob, &report, "carol", &[]);
    assert_success(&out, "bob sends report.pdf to carol");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Offered report.pdf") && said.contains("to carol until"),
        "{said}"
    );
    let offer = wait_for_offer(&net, &carol, "report.pdf");
    println!(
        "offer latency: {} ms (send returned -> listed by carol's offers)",
        sent.elapsed().as_millis()
    );
    assert_eq!(offer["number"], 1);
    assert_eq!(offer["from"], "bob");
    assert_eq!(offer["address"], bob.chunk_addr().to_string());
    assert_eq!(offer["sha256"], digest.to_string());
    assert_eq!(offer["size"], 300_003);
    let left = offer["expires_in"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "{offer}");
    let listed = json_of(&bob.downloader(&["sends", "--json"]));
    assert_eq!(listed[0]["to"], "carol", "{listed:#}");
    assert_eq!(listed[0]["name"], "report.pdf");
    assert_eq!(listed[0]["state"], "offered");

    // Nothing of it is written at carol's before she accepts, and dave neither lists the offer
    // nor sees the content in his tags.txt, for a few seconds (bob answers dave's and carol's
    // queries meanwhile: the listeners restart).
    dave.stop(Program::Listener);
    dave.start_listener(&[]);
    net.holds_for(
        Duration::from_secs(3),
        "nothing of the offer reaches dave",
        || {
            let tags = dave.tags()?;
            if tags.entries.iter().any(|e| e.content == "report.pdf") {
                return Err(format!("dave's tags.txt lists it:\n{tags}"));
            }
            if !offers(&dave).is_empty() {
                return Err("dave lists an offer".into());
            }
            let traces = traces_of(&carol.dir, "report.pdf");
            if !traces.is_empty() {
                return Err(format!("carol holds {traces:?}"));
            }
            Ok(())
        },
    );
    assert!(tags_list(&dave, "base.txt"), "dave still hears bob");
    let inbox = std::fs::read_to_string(dave.dir.join("offers.txt")).unwrap_or_default();
    assert!(!inbox.contains("report.pdf"), "{inbox}");

    // carol accepts: the file in her downloads/ is bob's, byte for byte.
    let out = carol.downloader(&["accept", "1"]);
    assert_success(&out, "carol accepts offer 1");
    let path = printed_path(&out, &carol.dir);
    assert_eq!(path, carol.downloads_dir().join("report.pdf"));
    assert_same_file(&report, &path);
    assert_eq!(file_digest(&path).0, digest);
    assert!(
        offers(&carol).is_empty(),
        "an accepted offer is not pending"
    );
    let again = carol.downloader(&["accept", offer["id"].as_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", describe_output(&again));
    assert!(all_output(&again).contains("accepted already"));
    let history = json_of(&carol.downloader(&["history", "--json"]));
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "report.pdf" && e["outcome"] == "ok"),
        "{history:#}"
    );

    // Declined: gone, and a re-broadcast (bob answers carol's restarted listener's query)
    // does not bring it back; nothing of it is written.
    let notes = outside.join("notes.txt");
    write_random_file(&notes, 5_000, 12);
    assert_success(&send(&bob, &notes, "carol", &[]), "bob sends notes.txt");
    let offer = wait_for_offer(&net, &carol, "notes.txt");
    let id = offer["id"].as_str().unwrap().to_owned();
    let out = carol.downloader(&["decline", "1"]);
    assert_success(&out, "carol declines");
    assert!(offers(&carol).is_empty());
    carol.stop(Program::Listener);
    carol.start_listener(&[]);
    net.holds_for(
        Duration::from_secs(3),
        "the declined offer stays away",
        || {
            let listed = offers(&carol);
            let inbox = std::fs::read_to_string(carol.dir.join("offers.txt")).unwrap_or_default();
            if !listed.is_empty() || inbox.contains(&id) {
                return Err(format!("{listed:?}\n{inbox}"));
            }
            Ok(())
        },
    );
    assert!(traces_of(&carol.dir, "notes.txt").is_empty());

    // bob cancels what is left: his chunk server stops serving notes.txt.
    let store = ChunkStore::open(bob.temp_dir()).unwrap();
    assert!(store.load_manifest("notes.txt").unwrap().is_some());
    let out = bob.downloader(&["unsend", &id[..8]]);
    assert_success(&out, "bob cancels the offer");
    net.wait_until(WAIT, "bob stops serving notes.txt", || {
        match store.load_manifest("notes.txt") {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

fn tags_list(peer: &Peer, name: &str) -> bool {
    peer.tags()
        .is_ok_and(|t| t.entries.iter().any(|e| e.content == name))
}

#[test]
fn sync_accepts_from_allowed_users_only_and_expired_offers_cannot_be_accepted() {
    let net = TestNet::new(Duration::from_secs(180));
    let (bob, _) = sender(&net, "bob", 2);
    let (mallory, _) = sender(&net, "mallory", 3);
    let carol = receiver(&net, "carol");
    std::fs::write(carol.dir.join("accept-from.txt"), "# my friends\nbob\n").unwrap();
    let sync = carol.spawn_downloader(&["sync"]);

    let outside = net.folder("outside");
    let from_bob = outside.join("photos.tar");
    let bob_digest = write_random_file(&from_bob, 1_000_003, 21);
    let from_mallory = outside.join("invoice.exe");
    write_random_file(&from_mallory, 20_000, 22);
    let sent = Instant::now();
    assert_success(
        &send(&mallory, &from_mallory, "carol", &[]),
        "mallory sends",
    );
    assert_success(&send(&bob, &from_bob, "carol", &[]), "bob sends");

    // bob's arrives unasked; mallory's stays pending, and unwritten.
    let path = carol.downloads_dir().join("photos.tar");
    net.wait_until(Duration::from_secs(30), "bob's file accepted", || {
        if path.exists() && file_digest(&path).0 == bob_digest {
            Ok(())
        } else {
            Err(format!("{:?}", files_under(&carol.downloads_dir())))
        }
    });
    println!(
        "auto-accept latency: {} ms (send returned -> verified in carol's downloads/)",
        sent.elapsed().as_millis()
    );
    assert_same_file(&from_bob, &path);
    let pending = offers(&carol);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["from"], "mallory");
    assert_eq!(pending[0]["name"], "invoice.exe");
    net.holds_for(
        Duration::from_secs(2),
        "mallory's offer stays pending",
        || {
            let traces = traces_of(&carol.dir, "invoice.exe");
            if traces.is_empty() && offers(&carol).len() == 1 {
                Ok(())
            } else {
                Err(format!("{traces:?}"))
            }
        },
    );
    // A folder from bob: accepted unasked offer by offer, its tree rebuilt.
    let album = outside.join("album");
    let tracks: Vec<(&str, Digest)> = [("album/a.ogg", 30_000u64), ("album/disc 2/b.ogg", 7)]
        .into_iter()
        .enumerate()
        .map(|(i, (name, size))| {
            let digest = write_random_file(&outside.join(name), size, 24 + i as u64);
            (name, digest)
        })
        .collect();
    assert_success(&send(&bob, &album, "carol", &[]), "bob sends a folder");
    net.wait_until(Duration::from_secs(30), "bob's folder accepted", || {
        for (name, digest) in &tracks {
            let path = carol.downloads_dir().join(name);
            if !path.exists() || file_digest(&path).0 != *digest {
                return Err(format!("{:?}", files_under(&carol.downloads_dir())));
            }
        }
        Ok(())
    });
    signal(sync.pid(), "TERM");
    let out = sync.wait(Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Accepted photos.tar from bob"),
        "{}",
        describe_output(&out)
    );

    // An offer of three seconds: listed, then gone, and then it cannot be accepted.
    let brief = outside.join("brief.txt");
    write_random_file(&brief, 3_000, 23);
    assert_success(
        &send(&bob, &brief, "carol", &["--expires", "3s"]),
        "bob sends for 3 s",
    );
    let offer = wait_for_offer(&net, &carol, "brief.txt");
    let id = offer["id"].as_str().unwrap().to_owned();
    net.wait_until(Duration::from_secs(10), "the brief offer expires", || {
        let listed = offers(&carol);
        if listed.iter().any(|o| o["name"] == "brief.txt") {
            Err(format!("{listed:?}"))
        } else {
            Ok(())
        }
    });
    let out = carol.downloader(&["accept", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        all_output(&out).contains("expired"),
        "{}",
        describe_output(&out)
    );
    assert!(traces_of(&carol.dir, "brief.txt").is_empty());
    // bob stops serving it, and lists it as expired.
    let store = ChunkStore::open(bob.temp_dir()).unwrap();
    net.wait_until(WAIT, "bob stops serving brief.txt", || {
        match store.load_manifest("brief.txt") {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let listed = json_of(&bob.downloader(&["sends", "--json"]));
    let brief = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "brief.txt")
        .unwrap_or_else(|| panic!("{listed:#}"));
    assert_eq!(brief["state"], "expired");
}

#[test]
fn a_folder_is_sent_as_one_offer_per_file_and_accept_all_rebuilds_its_tree() {
    let net = TestNet::new(Duration::from_secs(240));
    let (bob, base) = sender(&net, "bob", 5);
    let carol = receiver(&net, "carol");
    net.wait_for_entry(&carol, &bob, "bob", "base.txt", base);

    // A tree four levels deep: a name with a space, a hidden file and an empty folder (never
    // offered), and 45 small files, 50 in all.
    let outside = net.folder("outside");
    let photos = outside.join("photos");
    let mut expected: Vec<(String, Digest)> = vec![
        ("photos/top.txt", 1_000u64),
        ("photos/2024/a b.jpg", 300_003),
        ("photos/2024/summer/beach.png", 70_000),
        ("photos/2024/summer/deep/x.bin", 5),
        ("photos/2024/summer/deep/empty.txt", 0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, size))| {
        let digest = write_random_file(&outside.join(name), size, 40 + i as u64);
        (name.to_owned(), digest)
    })
    .collect();
    for i in 0..45u64 {
        let name = format!("photos/many/f{i:02}.txt");
        let digest = write_random_file(&outside.join(&name), 100 + i * 37, 100 + i);
        expected.push((name, digest));
    }
    expected.sort();
    write_random_file(&photos.join("2024/.secret.txt"), 10, 99);
    std::fs::create_dir_all(photos.join("2024/empty/nothing")).unwrap();

    // A folder with nothing to send is refused, saying so; nothing is recorded.
    let bare = outside.join("bare");
    write_random_file(&bare.join(".hidden"), 10, 98);
    std::fs::create_dir_all(bare.join("empty")).unwrap();
    let out = send(&bob, &bare, "carol", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        all_output(&out).contains("holds no file to send"),
        "{}",
        describe_output(&out)
    );
    assert!(!bob.dir.join("sends.txt").exists(), "nothing recorded");

    let sent = Instant::now();
    let out = send(&bob, &photos, "carol", &["--expires", "30m"]);
    assert_success(&out, "bob sends photos/ to carol");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Offered photos/ to carol") && said.contains("50 file(s)"),
        "{said}"
    );
    assert!(said.contains("Skipped 1 entry"), "the hidden file: {said}");
    let outbox = std::fs::read_to_string(bob.dir.join("sends.txt")).unwrap();
    assert!(
        outbox.contains("\tphotos/2024/a b.jpg\t"),
        "each offer's name is recorded:\n{outbox}"
    );

    // carol lists exactly the files of the tree, under their nested names.
    let names_of = |listed: &[serde_json::Value]| -> Vec<String> {
        let mut names: Vec<String> = listed
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let wanted: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    let listed = net.wait_until(Duration::from_secs(30), "carol lists the 50 offers", || {
        let listed = offers(&carol);
        if listed.len() >= wanted.len() {
            Ok(listed)
        } else {
            Err(format!("{} listed", listed.len()))
        }
    });
    let listed_at = sent.elapsed();
    assert_eq!(names_of(&listed), wanted);
    for offer in &listed {
        let name = offer["name"].as_str().unwrap();
        let (_, digest) = expected.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(offer["sha256"], digest.to_string(), "{offer}");
        assert_eq!(offer["from"], "bob");
        let left = offer["expires_in"].as_u64().unwrap();
        assert!((1700..=1800).contains(&left), "{offer}");
    }
    let outgoing = json_of(&bob.downloader(&["sends", "--json"]));
    let outgoing = outgoing.as_array().unwrap();
    assert_eq!(names_of(outgoing), wanted);
    assert!(outgoing
        .iter()
        .all(|s| s["state"] == "offered" && s["to"] == "carol"));

    // Nothing of it is written at carol's before she accepts.
    assert!(traces_of(&carol.dir, "photos").is_empty());
    assert!(files_under(&carol.downloads_dir()).is_empty());
    assert!(files_under(&carol.temp_dir()).is_empty());

    // `accept all`: the tree under downloads/, byte for byte, and nothing else.
    let accepting = Instant::now();
    let out = carol.downloader(&["accept", "all"]);
    assert_success(&out, "carol accepts all");
    let accepted_in = accepting.elapsed();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 50, "{printed}");
    for (name, digest) in &expected {
        let path = carol.downloads_dir().join(name);
        assert_same_file(&outside.join(name), &path);
        assert_eq!(file_digest(&path).0, *digest, "{name}");
    }
    let mut got: Vec<PathBuf> = files_under(&carol.downloads_dir())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    got.sort();
    let mut want: Vec<PathBuf> = wanted
        .iter()
        .map(|n| carol.downloads_dir().join(n))
        .collect();
    want.sort();
    assert_eq!(got, want, "no hidden file, no empty folder's trace");
    assert!(!carol.downloads_dir().join("photos/2024/empty").exists());
    assert!(offers(&carol).is_empty(), "all answered");
    let bytes: u64 = files_under(&carol.downloads_dir())
        .iter()
        .map(|(_, n)| n)
        .sum();
    println!(
        "folder of 50 files ({bytes} bytes): send -> all listed by carol {} ms; accept all \
         {} ms; send -> tree complete {} ms",
        listed_at.as_millis(),
        accepted_in.as_millis(),
        sent.elapsed().as_millis()
    );

    // bob cancels them all at once.
    let out = bob.downloader(&["unsend", "all"]);
    assert_success(&out, "bob unsends all");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Cancelled 50 offers."));
    let outgoing = json_of(&bob.downloader(&["sends", "--json"]));
    assert_eq!(outgoing.as_array().unwrap().len(), 0, "{outgoing:#}");
}

#[test]
fn hostile_offers_cannot_crash_fill_or_forge_the_inbox() {
    use shared::offers::MAX_OFFERS_PER_SOURCE;
    use shared::protocol::{Announcement, AnnouncementExt, ContentMeta, OfferHeard};
    use testkit::announce::UdpPeer;

    let net = TestNet::new(Duration::from_secs(120));
    let carol = receiver(&net, "carol");
    let (bob, _) = sender(&net, "bob", 4);
    let hostile = UdpPeer::new(net.next_ip().octets()[3]);
    let offer = |i: usize| OfferHeard {
        to: "carol".into(),
        id: format!("flood{i:04}"),
        name: format!("free-{i}.exe"),
        meta: ContentMeta {
            size: 1,
            sha256: Digest::of(&i.to_le_bytes()),
            root: None,
        },
        expires_in: 600,
    };
    let ext = AnnouncementExt::new(6001, 60);
    // Junk, offers that break a rule each, then many well-formed ones from one address.
    for junk in [
        &br#"{"username":"m","files":[],"p2p":{"v":1,"port":6001,"interval":60,"kind":"offer"}}"#[..],
        br#"{"username":"m","files":[],"p2p":{"v":1,"port":6001,"interval":60,"kind":"offer","to":"carol","offer":"../x","expires_in":5,"contents":{"a":{"size":1,"sha256":"00"}}}}"#,
        b"{\"username\":\"m\",\"files\":[],\"p2p\":{\"kind\":\"offer\"",
    ] {
        hostile.send_raw(net.udp_port(), junk);
    }
    let mut escape = offer(9999);
    escape.name = "../../.bashrc".into();
    if let Some(bytes) = Announcement::offer("m", &ext, &escape, shared::MAX_ANNOUNCE_DATAGRAM) {
        hostile.send_raw(net.udp_port(), &bytes);
    }
    // More than the inbox keeps from one address, paced a little (the listener takes in
    // 256 KiB/s per address, 1 MiB at once), and sent again until the bound is met: UDP may
    // drop some, and an offer heard again is only refreshed.
    let flood = MAX_OFFERS_PER_SOURCE + 40;
    let mallory =
        |listed: &[serde_json::Value]| listed.iter().filter(|o| o["from"] == "mallory").count();
    for round in 0.. {
        for i in 0..flood {
            let bytes =
                Announcement::offer("mallory", &ext, &offer(i), shared::MAX_ANNOUNCE_DATAGRAM)
                    .unwrap();
            hostile.send_raw(net.udp_port(), &bytes);
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        let full = loop {
            if mallory(&offers(&carol)) >= MAX_OFFERS_PER_SOURCE {
                break true;
            }
            if Instant::now() > until {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if full || round == 3 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // The listener is alive and keeps at most MAX_OFFERS_PER_SOURCE offers from that address.
    let outside = net.folder("outside");
    let file = outside.join("real.txt");
    write_random_file(&file, 2_000, 31);
    assert_success(&send(&bob, &file, "carol", &[]), "bob sends");
    wait_for_offer(&net, &carol, "real.txt");
    let listed = offers(&carol);
    assert_eq!(
        mallory(&listed),
        MAX_OFFERS_PER_SOURCE,
        "{} listed",
        listed.len()
    );
    assert!(
        listed
            .iter()
            .all(|o| o["name"] != "../../.bashrc" && o["from"] != "m"),
        "{listed:#?}"
    );
    // A forged re-broadcast of bob's offer from another address changes nothing of it.
    let real = listed.iter().find(|o| o["name"] == "real.txt").unwrap();
    let mut forged = offer(0);
    forged.id = real["id"].as_str().unwrap().to_owned();
    forged.name = "real.txt".into();
    hostile.send_raw(
        net.udp_port(),
        &Announcement::offer("bob", &ext, &forged, shared::MAX_ANNOUNCE_DATAGRAM).unwrap(),
    );
    net.holds_for(Duration::from_secs(1), "bob's offer is left alone", || {
        let now = offers(&carol);
        match now.iter().find(|o| o["id"] == real["id"]) {
            Some(o) if o["address"] == real["address"] && o["sha256"] == real["sha256"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // Nothing of any offer was written.
    assert!(files_under(&carol.downloads_dir()).is_empty());
    assert!(files_under(&carol.temp_dir()).is_empty());
}

#[test]
fn a_legacy_listener_reads_an_offer_as_an_announcement_of_nothing() {
    let net = TestNet::new(Duration::from_secs(60));
    let (bob, _) = sender(&net, "bob", 5);
    let file = net.folder("outside").join("for-carol.txt");
    write_random_file(&file, 4_000, 41);
    let port = net.udp_port();
    let legacy = std::thread::spawn(move || {
        testkit::legacy::legacy_listen_once(port, Duration::from_millis(2500))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_success(&send(&bob, &file, "carol", &[]), "bob sends");
    // Every datagram fits the legacy 1024-byte buffer and is JSON (or the helper panics).
    let heard = legacy.join().expect("the legacy listener");
    let offers: Vec<_> = heard
        .iter()
        .filter(|h| h.json["p2p"]["kind"] == "offer")
        .collect();
    assert!(!offers.is_empty(), "no offer heard: {heard:?}");
    for h in offers {
        assert_eq!(h.json["username"], "bob", "{}", h.json);
        // What a legacy listener looks at: the username and files, and there are none.
        assert_eq!(h.json["files"], serde_json::json!([]), "{}", h.json);
        assert_eq!(h.json["p2p"]["to"], "carol");
    }
}

#[test]
fn the_prompt_tells_of_a_new_offer_and_accepts_it_and_a_folder_with_accept_all() {
    let net = TestNet::new(Duration::from_secs(90));
    let (bob, _) = sender(&net, "bob", 6);
    let carol = receiver(&net, "carol");
    let mut prompt = carol.spawn_downloader_on_terminal(&[]);
    let file = net.folder("outside").join("minutes.txt");
    let digest = write_random_file(&file, 40_000, 51);
    assert_success(&send(&bob, &file, "carol", &[]), "bob sends");
    // The notice is shown before the next prompt line: Enter until it shows.
    let mut last_enter: Option<Instant> = None;
    net.wait_until(
        Duration::from_secs(15),
        "the prompt tells of the offer",
        || {
            let shown = prompt.stdout_so_far();
            if shown.contains("bob offers minutes.txt (39.1 KiB): accept 1 / decline 1") {
                return Ok(());
            }
            if last_enter.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                prompt.type_keys("\r");
                last_enter = Some(Instant::now());
            }
            Err(shown)
        },
    );
    assert!(traces_of(&carol.dir, "minutes.txt").is_empty());
    prompt.type_keys("offers\r");
    net.wait_until(Duration::from_secs(10), "the offers listed", || {
        let shown = prompt.stdout_so_far();
        match shown.rsplit_once("(or decline all) refuses them.") {
            // Typed once the line editor is back, or the keys could be lost.
            Some((_, after)) if after.contains("> ") => Ok(()),
            _ => Err(shown),
        }
    });
    prompt.type_keys("accept 1\r");
    let path = carol.downloads_dir().join("minutes.txt");
    net.wait_until(Duration::from_secs(20), "the accepted file", || {
        if path.exists() && file_digest(&path).0 == digest {
            Ok(())
        } else {
            Err(prompt.stdout_so_far())
        }
    });
    // The prompt prints the path, then waits for the next line: Ctrl-D once it does.
    let printed = path.display().to_string();
    net.wait_until(Duration::from_secs(10), "the prompt is back", || {
        let shown = prompt.stdout_so_far();
        match shown.rsplit_once(printed.as_str()) {
            Some((_, after)) if after.contains("> ") => Ok(()),
            _ => Err(shown),
        }
    });
    // A folder of two nested files: `accept all` at the prompt takes both.
    let folder = net.folder("outside").join("minutes-dir");
    let nested = ["minutes-dir/2026/jan.txt", "minutes-dir/feb.txt"];
    let digests: Vec<Digest> = nested
        .iter()
        .enumerate()
        .map(|(i, n)| {
            write_random_file(
                &folder.join(n.split_once('/').unwrap().1),
                3_000,
                60 + i as u64,
            )
        })
        .collect();
    assert_success(&send(&bob, &folder, "carol", &[]), "bob sends a folder");
    net.wait_until(Duration::from_secs(15), "both offers listed", || {
        let listed = offers(&carol);
        (listed.len() == 2)
            .then_some(())
            .ok_or_else(|| format!("{listed:?}"))
    });
    prompt.type_keys("accept all\r");
    net.wait_until(Duration::from_secs(20), "both files accepted", || {
        for (name, digest) in nested.iter().zip(&digests) {
            let path = carol.downloads_dir().join(name);
            if !path.exists() || file_digest(&path).0 != *digest {
                return Err(prompt.stdout_so_far());
            }
        }
        Ok(())
    });
    // Both paths printed, in either order, then the next prompt line.
    let printed: Vec<String> = nested
        .iter()
        .map(|n| carol.downloads_dir().join(n).display().to_string())
        .collect();
    net.wait_until(Duration::from_secs(10), "the prompt is back", || {
        let shown = prompt.stdout_so_far();
        let last = printed
            .iter()
            .map(|p| shown.rfind(p.as_str()))
            .collect::<Option<Vec<_>>>();
        match last.and_then(|at| at.into_iter().max()) {
            Some(at) if shown[at..].contains("> ") => Ok(()),
            _ => Err(shown),
        }
    });
    prompt.type_keys("\x04");
    let out = prompt.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert!(offers(&carol).is_empty());
}

#[test]
fn offers_reach_the_name_the_announcer_announces_even_when_username_txt_says_otherwise() {
    let net = TestNet::new(Duration::from_secs(120));
    let (bob, _) = sender(&net, "bob", 5);
    // carol's announcer is given its name by flag, which is not stored; username.txt holds an
    // older name. The network knows her as "carol": offers to that name must reach her.
    let carol = net.peer("carol");
    std::fs::write(carol.dir.join("username.txt"), "carol-laptop\n").unwrap();
    carol.start_listener(&[]);
    carol.start_announcer("carol", INTERVAL_SECS);
    // The announcer records the name it announces once it runs; offers sent before that
    // would be for a name this peer does not have yet.
    let record = carol.dir.join(".run/announcer.json");
    net.wait_until(
        Duration::from_secs(10),
        "carol's announcer records its name",
        || {
            std::fs::read_to_string(&record)
                .ok()
                .filter(|text| text.contains("\"carol\""))
                .ok_or_else(|| "not yet".to_owned())
        },
    );
    let file = net.folder("outside").join("notes.md");
    write_random_file(&file, 4_000, 51);
    assert_success(&send(&bob, &file, "carol", &[]), "bob sends to carol");
    let offer = wait_for_offer(&net, &carol, "notes.md");
    assert_eq!(offer["from"], "bob", "{offer}");
    // An offer to the stored name is not hers any more.
    let other = net.folder("outside").join("old.md");
    write_random_file(&other, 4_000, 52);
    assert_success(&send(&bob, &other, "carol-laptop", &[]), "bob sends");
    net.holds_for(Duration::from_secs(2), "no offer for the old name", || {
        let listed = offers(&carol);
        if listed.iter().any(|o| o["name"] == "old.md") {
            Err(format!("{listed:?}"))
        } else {
            Ok(())
        }
    });
}
