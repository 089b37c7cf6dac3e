//! The index's unit tests: each states one rule of the module documentation.

use super::*;
use shared::digest::Digest;
use shared::protocol::{AnnouncementExt, ContentMeta};
use std::path::Path;

const LEGACY_PORT: u16 = 5001;

fn t0() -> DateTime<Utc> {
    "2026-11-21T18:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// [`Announcement::legacy`], under a name short enough to keep each `apply` on one line.
fn legacy(user: &str, files: &[&str]) -> Announcement {
    Announcement::legacy(user, files)
}

fn meta(seed: &str, size: u64) -> ContentMeta {
    ContentMeta {
        size,
        sha256: Digest::of(seed.as_bytes()),
        root: Some(Digest::of(format!("root of {seed}").as_bytes())),
    }
}

/// One of our announcements, giving the size and digest of each of `contents`.
fn ours(
    user: &str,
    port: u16,
    interval: u64,
    files: &[&str],
    contents: &[(&str, ContentMeta)],
) -> Announcement {
    let ext = contents
        .iter()
        .fold(AnnouncementExt::new(port, interval), |ext, (name, m)| {
            ext.with_content(name, *m)
        });
    Announcement::ours(user, files, ext)
}

/// `(user, addr, proto, content, chunks)` of each line, in file order.
fn lines(index: &Index, now: DateTime<Utc>) -> Vec<(String, String, String, String, String)> {
    index
        .to_tags(now)
        .entries
        .iter()
        .map(|e| {
            (
                e.user.clone(),
                e.addr.to_string(),
                e.proto.to_string(),
                e.content.clone(),
                e.chunks.to_string(),
            )
        })
        .collect()
}

fn line(user: &str, addr: &str, proto: &str, content: &str, chunks: &str) -> [String; 5] {
    [user, addr, proto, content, chunks].map(str::to_owned)
}

fn as_arrays(lines: Vec<(String, String, String, String, String)>) -> Vec<[String; 5]> {
    lines
        .into_iter()
        .map(|(a, b, c, d, e)| [a, b, c, d, e])
        .collect()
}

fn run_of(
    user: &str,
    port: u16,
    files: &[&str],
    instance: Option<&str>,
    kind: Kind,
) -> Announcement {
    let mut a = ours(user, port, 60, files, &[]);
    let ext = a.p2p.as_mut().unwrap();
    ext.instance = instance.map(str::to_owned);
    ext.kind = kind;
    a
}

#[test]
fn new_instance_from_an_address_drops_its_old_p2p_entries() {
    let mut index = Index::new();
    let first = run_of(
        "alice",
        6001,
        &["a_1", "b_2"],
        Some("run-1"),
        Kind::Announce,
    );
    // Chunks of one run spread over two datagrams: the same instance drops nothing.
    let first_more = run_of("alice", 6001, &["c_3"], Some("run-1"), Kind::Announce);
    index.apply(ip(2), &first, LEGACY_PORT, t0());
    index.apply(ip(2), &first_more, LEGACY_PORT, t0());
    // Another peer, and a legacy program on the same address: both must survive.
    index.apply(
        ip(3),
        &run_of("bob", 6001, &["a_1"], Some("bob-1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
    assert_eq!(index.len(), 5);
    // alice restarts under another port, with fewer chunks (her username is stored, so it
    // stays; two peers behind one address are told apart by it).
    let second = run_of("alice", 6002, &["a_1"], Some("run-2"), Kind::Announce);
    assert!(index.apply(ip(2), &second, LEGACY_PORT, at(1)));
    assert_eq!(
        as_arrays(lines(&index, at(1))),
        vec![
            line("alice", "127.0.0.2:6002", "p2p/1", "a", "1----"),
            line("bob", "127.0.0.3:6001", "p2p/1", "a", "1----"),
            line("ece", "127.0.0.2:5001", "legacy", "e", "1----"),
        ]
    );
    // The new run's later datagrams add up as usual.
    let second_more = run_of("alice", 6002, &["b_2"], Some("run-2"), Kind::Announce);
    index.apply(ip(2), &second_more, LEGACY_PORT, at(2));
    assert_eq!(index.len(), 4);
}

#[test]
fn announcements_without_an_instance_never_drop_anything() {
    let mut index = Index::new();
    index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
    index.apply(ip(2), &legacy("ece", &["f_1"]), LEGACY_PORT, at(1));
    index.apply(
        ip(2),
        &run_of("old", 6001, &["o_1"], None, Kind::Announce),
        LEGACY_PORT,
        at(1),
    );
    index.apply(
        ip(2),
        &run_of("old", 6002, &["p_1"], None, Kind::Announce),
        LEGACY_PORT,
        at(2),
    );
    assert_eq!(index.len(), 4);
    // The first instance seen from an address has nothing to replace.
    index.apply(
        ip(2),
        &run_of("new", 6003, &["n_1"], Some("x"), Kind::Announce),
        LEGACY_PORT,
        at(3),
    );
    assert_eq!(index.len(), 5);
}

#[test]
fn goodbye_drops_the_p2p_entries_of_that_address_and_port_only() {
    let mut index = Index::new();
    let hello = run_of("alice", 6001, &["a_1", "b_1"], Some("r1"), Kind::Announce);
    index.apply(ip(2), &hello, LEGACY_PORT, t0());
    index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
    index.apply(
        ip(3),
        &run_of("bob", 6001, &["a_1"], Some("b1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
    assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(1)));
    assert_eq!(
        as_arrays(lines(&index, at(1))),
        vec![
            line("bob", "127.0.0.3:6001", "p2p/1", "a", "1----"),
            line("ece", "127.0.0.2:5001", "legacy", "e", "1----"),
        ]
    );
    assert!(
        !index.apply(ip(2), &bye, LEGACY_PORT, at(2)),
        "nothing left"
    );
    // A goodbye for another port of that address leaves this one alone.
    index.apply(
        ip(3),
        &run_of("bob", 6001, &["a_1"], Some("b1"), Kind::Announce),
        LEGACY_PORT,
        at(3),
    );
    let other_port = run_of("bob", 7001, &[], Some("b1"), Kind::Goodbye);
    assert!(!index.apply(ip(3), &other_port, LEGACY_PORT, at(3)));
    assert_eq!(index.len(), 2);
    // Without an instance, a goodbye is not taken at its word: anyone could send it.
    let anonymous = run_of("bob", 6001, &[], None, Kind::Goodbye);
    assert!(!index.apply(ip(3), &anonymous, LEGACY_PORT, at(4)));
    assert_eq!(index.len(), 2);
    // bob's own goodbye still works: the one for another port did not forget his instance.
    let bye = run_of("bob", 6001, &[], Some("b1"), Kind::Goodbye);
    assert!(index.apply(ip(3), &bye, LEGACY_PORT, at(5)));
    assert_eq!(index.len(), 1);
}

#[test]
fn withdrawal_drops_the_named_contents_of_that_peer_only() {
    let mut index = Index::new();
    let hello = run_of(
        "alice",
        6001,
        &["a_1", "a_2", "b_1"],
        Some("r1"),
        Kind::Announce,
    );
    index.apply(ip(2), &hello, LEGACY_PORT, t0());
    index.apply(ip(2), &legacy("ece", &["a_1"]), LEGACY_PORT, t0());
    index.apply(
        ip(3),
        &run_of("bob", 6001, &["a_1"], Some("b1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    let withdraw = |instance: Option<&str>, names: &[&str]| {
        let mut a = run_of("alice", 6001, &[], instance, Kind::Withdraw);
        a.p2p.as_mut().unwrap().withdrawn = names.iter().map(|n| n.to_string()).collect();
        a
    };
    // Forged or stale: another instance, or none, is ignored.
    assert!(!index.apply(ip(2), &withdraw(None, &["a"]), LEGACY_PORT, at(1)));
    assert!(!index.apply(ip(2), &withdraw(Some("r0"), &["a"]), LEGACY_PORT, at(1)));
    assert_eq!(index.len(), 4);
    assert!(index.apply(
        ip(2),
        &withdraw(Some("r1"), &["a", "zzz"]),
        LEGACY_PORT,
        at(1)
    ));
    assert_eq!(
        as_arrays(lines(&index, at(1))),
        vec![
            line("bob", "127.0.0.3:6001", "p2p/1", "a", "1----"),
            line("ece", "127.0.0.2:5001", "legacy", "a", "1----"),
            line("alice", "127.0.0.2:6001", "p2p/1", "b", "1----"),
        ]
    );
    assert!(!index.apply(ip(2), &withdraw(Some("r1"), &["a"]), LEGACY_PORT, at(2)));
    // Shared again: announced again, listed again.
    index.apply(ip(2), &hello, LEGACY_PORT, at(3));
    assert_eq!(index.len(), 4);
}

#[test]
fn late_goodbye_of_a_previous_run_is_ignored() {
    let mut index = Index::new();
    let run2 = run_of("alice", 6001, &["a_1"], Some("run-2"), Kind::Announce);
    index.apply(
        ip(2),
        &run_of("alice", 6001, &["a_1"], Some("run-1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    index.apply(ip(2), &run2, LEGACY_PORT, at(1));
    let old_bye = run_of("alice", 6001, &[], Some("run-1"), Kind::Goodbye);
    assert!(!index.apply(ip(2), &old_bye, LEGACY_PORT, at(2)));
    assert_eq!(index.len(), 1);
    let bye = run_of("alice", 6001, &[], Some("run-2"), Kind::Goodbye);
    assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(3)));
    assert!(index.is_empty());
}

#[test]
fn queries_change_nothing() {
    let mut index = Index::new();
    index.apply(
        ip(2),
        &run_of("a", 6001, &["a_1"], Some("r1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    // Even one with chunks and another instance: a query is not an announcement.
    let query = run_of("q", 6001, &["q_1"], Some("other"), Kind::Query);
    assert!(!index.apply(ip(2), &query, LEGACY_PORT, at(1)));
    assert_eq!(
        as_arrays(lines(&index, at(1))),
        vec![line("a", "127.0.0.2:6001", "p2p/1", "a", "1----")]
    );
}

#[test]
fn peers_announcing_every_one_to_five_seconds_expire_after_three_intervals() {
    for interval in 1..=5i64 {
        let mut index = Index::new();
        let a = ours("quick", 6001, interval.unsigned_abs(), &["q_1"], &[]);
        index.apply(ip(2), &a, LEGACY_PORT, t0());
        assert!(!index.expire(at(3 * interval - 1)), "interval {interval}");
        assert_eq!(index.to_tags(at(3 * interval - 1)).entries.len(), 1);
        assert!(index.expire(at(3 * interval)), "interval {interval}");
        assert!(index.is_empty());
    }
}

#[test]
fn instances_of_addresses_without_entries_are_forgotten() {
    let mut index = Index::new();
    for last in 2..=200u8 {
        let empty = run_of("x", 1, &[], Some(&format!("i{last}")), Kind::Announce);
        index.apply(ip(last), &empty, LEGACY_PORT, t0());
    }
    index.expire(t0());
    assert!(index.instances.is_empty());
    let long = "i".repeat(10_000);
    index.apply(
        ip(2),
        &run_of("x", 1, &["a_1"], Some(&long), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    assert_eq!(
        index.instances[&(ip(2), Who::new("x", None))].len(),
        MAX_INSTANCE_BYTES
    );
}

#[test]
fn legacy_announcement_becomes_entries_at_the_legacy_port() {
    let mut index = Index::new();
    let a = legacy(
        "ece",
        &["ece_1", "ece_2", "ece_3", "ali_2", "ece.txt", "x_9"],
    );
    assert!(index.apply(ip(9), &a, LEGACY_PORT, t0()));
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![
            line("ece", "127.0.0.9:5001", "legacy", "ali", "-2---"),
            line("ece", "127.0.0.9:5001", "legacy", "ece", "123--"),
        ]
    );
    let tags = index.to_tags(t0());
    assert_eq!(tags.updated, Some(t0()));
    for e in &tags.entries {
        assert_eq!(e.size, None);
        assert_eq!(e.sha256, None);
        assert_eq!(e.interval, DEFAULT_ANNOUNCE_INTERVAL_SECS);
        assert_eq!(e.last_seen, t0());
    }
}

#[test]
fn our_announcement_carries_port_version_size_digest_and_interval() {
    let mut index = Index::new();
    let m = meta("photo", 1_048_579);
    let a = ours(
        "alice",
        6001,
        30,
        &["photo.png_1", "photo.png_5"],
        &[("photo.png", m)],
    );
    assert!(index.apply(ip(2), &a, LEGACY_PORT, t0()));
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries.len(), 1);
    let e = &tags.entries[0];
    assert_eq!(e.user, "alice");
    assert_eq!(e.addr, "127.0.0.2:6001".parse().unwrap());
    assert_eq!(e.proto, Proto::P2p(1));
    assert_eq!(e.content, "photo.png");
    assert_eq!(e.chunks.to_string(), "1---5");
    assert_eq!(e.size, Some(1_048_579));
    assert_eq!(e.sha256, Some(m.sha256));
    assert_eq!(e.interval, 30);
    assert_eq!(e.last_seen, t0());
}

#[test]
fn chunks_spread_over_two_datagrams_make_one_entry() {
    let mut index = Index::new();
    let m = meta("big", 10);
    let first = ours("bob", 5001, 60, &["big_1", "big_2", "big_3"], &[("big", m)]);
    let second = ours("bob", 5001, 60, &["big_4", "big_5"], &[("big", m)]);
    index.apply(ip(3), &first, LEGACY_PORT, t0());
    index.apply(ip(3), &second, LEGACY_PORT, at(1));
    let tags = index.to_tags(at(1));
    assert_eq!(tags.entries.len(), 1);
    assert!(tags.entries[0].chunks.is_complete());
    assert_eq!(tags.entries[0].last_seen, at(1));
    // A second round refreshes both halves: nothing expires.
    index.apply(ip(3), &first, LEGACY_PORT, at(60));
    index.apply(ip(3), &second, LEGACY_PORT, at(61));
    assert!(!index.expire(at(200)));
    assert!(index.to_tags(at(200)).entries[0].chunks.is_complete());
}

#[test]
fn same_name_different_contents_from_two_peers_stay_apart() {
    let mut index = Index::new();
    let a = meta("alice's notes", 100);
    let b = meta("bob's notes", 200);
    index.apply(
        ip(2),
        &ours("alice", 5001, 60, &["notes.txt_1"], &[("notes.txt", a)]),
        LEGACY_PORT,
        t0(),
    );
    index.apply(
        ip(3),
        &ours("bob", 5001, 60, &["notes.txt_2"], &[("notes.txt", b)]),
        LEGACY_PORT,
        t0(),
    );
    // And a legacy peer with a file of the same name: no digest, a third entry.
    index.apply(ip(4), &legacy("ece", &["notes.txt_3"]), LEGACY_PORT, t0());
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries.len(), 3);
    let offers: std::collections::HashSet<_> =
        tags.live(t0()).map(|e| (&e.content, e.sha256)).collect();
    assert_eq!(offers.len(), 3, "three different offers of notes.txt");
    let by_user = |u: &str| tags.entries.iter().find(|e| e.user == u).unwrap();
    assert_eq!(by_user("alice").sha256, Some(a.sha256));
    assert_eq!(by_user("alice").size, Some(100));
    assert_eq!(by_user("bob").sha256, Some(b.sha256));
    assert_eq!(by_user("ece").sha256, None);
}

#[test]
fn a_new_digest_for_a_name_replaces_the_old_entry_of_that_peer() {
    let mut index = Index::new();
    let old = meta("v1", 1);
    let new = meta("v2", 2);
    index.apply(
        ip(2),
        &ours("alice", 5001, 60, &["doc_1"], &[("doc", old)]),
        LEGACY_PORT,
        t0(),
    );
    index.apply(
        ip(2),
        &ours("alice", 5001, 60, &["doc_1", "doc_2"], &[("doc", new)]),
        LEGACY_PORT,
        at(10),
    );
    // One of our peers holds one content per name: the new file replaces the old at once.
    assert_eq!(index.len(), 1);
    let tags = index.to_tags(at(10));
    assert_eq!(tags.entries[0].sha256, Some(new.sha256));
    // Chunks first announced before their digest was known are replaced the same way.
    index.apply(
        ip(3),
        &ours("bob", 5001, 60, &["doc_1"], &[]),
        LEGACY_PORT,
        at(11),
    );
    index.apply(
        ip(3),
        &ours("bob", 5001, 60, &["doc_1"], &[("doc", new)]),
        LEGACY_PORT,
        at(12),
    );
    let bobs: Vec<_> = index
        .to_tags(at(12))
        .entries
        .into_iter()
        .filter(|e| e.user == "bob")
        .collect();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].sha256, Some(new.sha256));
}

#[test]
fn two_peers_behind_one_address_do_not_evict_each_other() {
    let mut index = Index::new();
    let mut a = ours("alice", 5001, 60, &["x_1"], &[]);
    let mut b = ours("bob", 5002, 60, &["y_1"], &[]);
    a.p2p.as_mut().unwrap().instance = Some("aaaa".into());
    b.p2p.as_mut().unwrap().instance = Some("bbbb".into());
    for n in 0..3 {
        index.apply(ip(2), &a, LEGACY_PORT, at(n));
        index.apply(ip(2), &b, LEGACY_PORT, at(n));
    }
    assert_eq!(index.len(), 2);
}

#[test]
fn same_ip_different_ports_are_different_holders() {
    let mut index = Index::new();
    index.apply(
        ip(2),
        &ours("a", 5001, 60, &["x_1"], &[]),
        LEGACY_PORT,
        t0(),
    );
    index.apply(
        ip(2),
        &ours("b", 6001, 60, &["x_1"], &[]),
        LEGACY_PORT,
        t0(),
    );
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![
            line("a", "127.0.0.2:5001", "p2p/1", "x", "1----"),
            line("b", "127.0.0.2:6001", "p2p/1", "x", "1----"),
        ]
    );
}

#[test]
fn expiry_is_per_chunk_and_honours_each_peers_interval() {
    let mut index = Index::new();
    // Fast peer: interval 10 s, so chunks last 30 s. Legacy peer: 60 s (assumed, then
    // observed), so 180 s.
    index.apply(
        ip(2),
        &ours("fast", 5001, 10, &["f_1", "f_2"], &[]),
        LEGACY_PORT,
        t0(),
    );
    index.apply(ip(9), &legacy("slow", &["s_1", "s_2"]), LEGACY_PORT, t0());
    // Only f_2 and s_2 are re-announced.
    index.apply(
        ip(2),
        &ours("fast", 5001, 10, &["f_2"], &[]),
        LEGACY_PORT,
        at(20),
    );

    assert!(!index.expire(at(29)));
    assert!(index.expire(at(30)), "f_1 is 3 x 10 s old");
    assert_eq!(
        as_arrays(lines(&index, at(30))),
        vec![
            line("fast", "127.0.0.2:5001", "p2p/1", "f", "-2---"),
            line("slow", "127.0.0.9:5001", "legacy", "s", "12---"),
        ]
    );
    assert_eq!(index.to_tags(at(30)).entries[0].last_seen, at(20));
    assert!(index.expire(at(50)), "f_2 is 30 s old: the entry goes");
    assert_eq!(index.len(), 1);
    index.apply(ip(9), &legacy("slow", &["s_2"]), LEGACY_PORT, at(60));
    assert_eq!(index.to_tags(at(60)).entries[0].interval, 60, "observed");
    assert!(!index.expire(at(179)));
    assert!(index.expire(at(180)), "s_1 is 3 x 60 s old");
    assert_eq!(
        as_arrays(lines(&index, at(180))),
        vec![line("slow", "127.0.0.9:5001", "legacy", "s", "-2---")]
    );
    assert!(!index.expire(at(239)));
    assert!(index.expire(at(240)));
    assert!(index.is_empty());
    assert!(index.to_tags(at(240)).entries.is_empty());
    assert!(!index.expire(at(1000)), "nothing left to remove");
}

#[test]
fn to_tags_hides_stale_chunks_even_before_expire_runs() {
    let mut index = Index::new();
    index.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
    index.apply(ip(9), &legacy("ece", &["e_2"]), LEGACY_PORT, at(100));
    let tags = index.to_tags(at(181));
    assert_eq!(tags.entries[0].chunks.to_string(), "-2---");
    assert!(index.to_tags(at(281)).entries.is_empty());
}

#[test]
fn latest_username_and_extension_win() {
    let mut index = Index::new();
    index.apply(ip(2), &legacy("old name", &["x_1"]), LEGACY_PORT, t0());
    index.apply(ip(2), &legacy("new name", &["x_2"]), LEGACY_PORT, at(5));
    let tags = index.to_tags(at(5));
    assert_eq!(tags.entries.len(), 1);
    assert_eq!(tags.entries[0].user, "new name");
    assert_eq!(tags.entries[0].chunks.to_string(), "12---");
}

#[test]
fn restarted_listener_reloads_tags_and_still_expires_stale_entries() {
    let mut before = Index::new();
    let m = meta("photo", 42);
    before.apply(
        ip(2),
        &ours("alice", 5001, 10, &["p_1", "p_2"], &[("p", m)]),
        LEGACY_PORT,
        t0(),
    );
    before.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(5));
    before.apply(
        ip(2),
        &ours("alice", 5001, 10, &["p_2"], &[("p", m)]),
        LEGACY_PORT,
        at(5),
    );
    let written = before.to_tags(at(5)).to_string();

    let reread = TagsIndex::parse(&written, Path::new("tags.txt")).unwrap();
    let mut after = Index::from_tags(&reread);
    assert_eq!(after.to_tags(at(5)), before.to_tags(at(5)));
    // The file keeps one time per entry, the latest: p_1 now counts as seen at 5 s.
    assert!(!after.expire(at(34)));
    assert!(after.expire(at(35)), "alice's 10 s interval is honoured");
    assert_eq!(
        as_arrays(lines(&after, at(35))),
        vec![line("ece", "127.0.0.9:5001", "legacy", "e", "1----")]
    );
    // A fresh announcement after the restart refreshes what was reloaded.
    after.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(100));
    assert!(!after.expire(at(185)));
    assert_eq!(after.len(), 1);
}

#[test]
fn reloading_merges_duplicate_lines() {
    let text = "\
alice 127.0.0.2:5001 legacy x 1---- - - - 60 2026-11-21T18:00:00Z
alice 127.0.0.2:5001 legacy x -2--- - - - 60 2026-11-21T18:00:30Z
";
    let tags = TagsIndex::parse(text, Path::new("t")).unwrap();
    let index = Index::from_tags(&tags);
    let out = index.to_tags(at(30));
    assert_eq!(out.entries.len(), 1);
    assert_eq!(out.entries[0].chunks.to_string(), "12---");
    assert_eq!(out.entries[0].last_seen, at(30));
    assert_eq!(
        index.to_tags(at(181)).entries[0].chunks.to_string(),
        "-2---"
    );
}

#[test]
fn junk_is_ignored_and_never_panics() {
    let mut index = Index::new();
    let long = "n".repeat(shared::MAX_CONTENT_NAME_BYTES + 1);
    let odd: Vec<String> = vec![
        String::new(),
        "_1".into(),
        "a_0".into(),
        "a_6".into(),
        "a_12".into(),
        "../etc/passwd_1".into(),
        "a\\b_1".into(),
        "tab\there_1".into(),
        format!("{long}_1"),
        "a_1 ".into(),
        "plain.txt".into(),
    ];
    let a = Announcement {
        username: "x".into(),
        files: odd,
        p2p: None,
    };
    assert!(!index.apply(ip(2), &a, LEGACY_PORT, t0()));
    assert!(index.is_empty());
    // An announcement without chunks (a peer with an empty store) adds nothing either.
    assert!(!index.apply(ip(2), &ours("y", 1, 60, &[], &[]), LEGACY_PORT, t0()));
    // Extremes of the extension.
    let extremes = [
        ours("z", 1, 0, &["a_1"], &[]),
        ours("z", u16::MAX, u64::MAX, &["b_1"], &[]),
    ];
    for a in &extremes {
        assert!(index.apply(ip(2), a, LEGACY_PORT, t0()));
    }
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries.len(), 2);
    for e in &tags.entries {
        assert!((1..=MAX_INTERVAL_SECS).contains(&e.interval));
        let _ = e.expires_at();
    }
    // Zero is taken as one second: gone after three.
    assert!(index.expire(at(3)));
    assert_eq!(index.len(), 1);
    assert!(index.expire(at(i64::try_from(3 * MAX_INTERVAL_SECS).unwrap())));
    assert!(index.is_empty());
}

#[test]
fn ipv4_mapped_sources_are_shown_as_ipv4() {
    let mut index = Index::new();
    let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
    index.apply(mapped, &legacy("a", &["x_1"]), LEGACY_PORT, t0());
    assert_eq!(
        index.to_tags(t0()).entries[0].addr,
        "127.0.0.2:5001".parse().unwrap()
    );
}

#[test]
fn usernames_are_sanitized() {
    let mut index = Index::new();
    index.apply(ip(2), &legacy("", &["x_1"]), LEGACY_PORT, t0());
    index.apply(
        ip(3),
        &legacy(&"\n".repeat(100), &["x_1"]),
        LEGACY_PORT,
        t0(),
    );
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries[0].user, "");
    assert!(!tags.entries[1].user.contains('\n'));
    // Whatever the names, the file reads back as written.
    let text = tags.to_string();
    let reread = TagsIndex::parse(&text, Path::new("t")).unwrap();
    assert_eq!(reread, tags);
}

// ---- Hostile and broken peers (issue 7) ----

/// One of our announcements of `contents` distinct contents (chunk 1 of each), named
/// `<prefix><n>`, as a flooder would send.
fn many(user: &str, prefix: &str, contents: usize) -> Announcement {
    let names: Vec<String> = (0..contents).map(|n| format!("{prefix}{n}_1")).collect();
    let files: Vec<&str> = names.iter().map(String::as_str).collect();
    ours(user, 6001, 60, &files, &[])
}

#[test]
fn one_datagram_adds_at_most_the_per_datagram_cap() {
    let mut index = Index::new();
    index.apply(ip(5), &many("flood", "f", 4000), LEGACY_PORT, t0());
    assert!(
        index.len() <= 512,
        "{} entries from one datagram",
        index.len()
    );
    assert!(!index.is_empty());
}

#[test]
fn one_source_holds_at_most_the_per_source_cap() {
    let mut index = Index::new();
    // 400 new names a round, until well past the cap.
    let rounds = DEFAULT_MAX_ENTRIES_PER_SOURCE / 400 + 3;
    for round in 0..rounds {
        let a = many("flood", &format!("r{round}-"), 400);
        index.apply(ip(5), &a, LEGACY_PORT, at(round as i64));
    }
    assert_eq!(
        index.len(),
        DEFAULT_MAX_ENTRIES_PER_SOURCE,
        "entries from one source"
    );
    // Entries it already has are still refreshed.
    let first = many("flood", "r0-", 1);
    assert!(index.apply(ip(5), &first, LEGACY_PORT, at(100)));
    // Another source is not affected by that source's cap.
    assert!(index.apply(ip(6), &legacy("ece", &["e_1"]), LEGACY_PORT, at(100)));
}

#[test]
fn the_index_holds_at_most_the_total_cap_and_a_new_peer_still_gets_in() {
    let mut index = Index::new();
    // 30 sources of 1,200 names each: three times the cap in all, each under its own cap.
    for source in 10..40u8 {
        for round in 0..3 {
            let a = many("flood", &format!("s{source}-r{round}-"), 400);
            index.apply(ip(source), &a, LEGACY_PORT, at(round.into()));
        }
    }
    assert_eq!(index.len(), DEFAULT_MAX_ENTRIES);
    assert!(index.apply(ip(9), &legacy("ece", &["honest_1"]), LEGACY_PORT, at(5)));
    assert_eq!(index.len(), DEFAULT_MAX_ENTRIES);
    assert!(index
        .to_tags(at(5))
        .entries
        .iter()
        .any(|e| e.user == "ece" && e.content == "honest"));
}

#[test]
fn a_full_index_is_shared_fairly_and_then_stops_changing() {
    let mut index = Index::with_limits(Limits {
        max_entries: 10,
        max_entries_per_source: 10,
        max_chunks_per_datagram: 512,
    });
    index.apply(ip(5), &many("a", "a", 10), LEGACY_PORT, t0());
    assert_eq!(index.len(), 10);
    index.apply(ip(6), &many("b", "b", 10), LEGACY_PORT, at(1));
    let count = |index: &Index, last: u8| {
        index
            .to_tags(at(1))
            .entries
            .iter()
            .filter(|e| e.addr.ip() == ip(last))
            .count()
    };
    assert_eq!((count(&index, 5), count(&index, 6)), (5, 5));
    let refused = index.take_refusals();
    assert_eq!((refused.evicted, refused.over_total), (5, 5));
    // At fair shares, more invented names change nothing: no eviction back and forth.
    assert!(!index.apply(ip(5), &many("a", "a2-", 10), LEGACY_PORT, at(2)));
    assert!(!index.apply(ip(6), &many("b", "b2-", 10), LEGACY_PORT, at(2)));
    assert_eq!(index.take_refusals().evicted, 0);
    // A newcomer always gets in.
    assert!(index.apply(ip(9), &legacy("ece", &["e_1"]), LEGACY_PORT, at(3)));
    assert_eq!(index.len(), 10);
}

#[test]
fn announced_intervals_are_honoured_up_to_ten_minutes() {
    let mut index = Index::new();
    let three_days = 3 * 24 * 60 * 60;
    index.apply(
        ip(2),
        &ours("slow", 6001, three_days, &["s_1"], &[]),
        LEGACY_PORT,
        t0(),
    );
    assert_eq!(index.to_tags(t0()).entries[0].interval, 600);
    assert!(!index.expire(at(1799)));
    assert!(index.expire(at(1800)), "gone after 3 x 600 s");
    assert!(index.is_empty());
}

#[test]
fn a_goodbye_without_the_recorded_instance_drops_nothing() {
    let mut index = Index::new();
    let hello = run_of("alice", 6001, &["a_1"], Some("r1"), Kind::Announce);
    index.apply(ip(2), &hello, LEGACY_PORT, t0());
    // Forged: no instance, or another one, or for a user with no recorded instance.
    for forged in [
        run_of("alice", 6001, &[], None, Kind::Goodbye),
        run_of("alice", 6001, &[], Some("r0"), Kind::Goodbye),
    ] {
        assert!(!index.apply(ip(2), &forged, LEGACY_PORT, at(1)));
        assert_eq!(index.len(), 1);
    }
    let unknown = run_of("bob", 6002, &["b_1"], None, Kind::Announce);
    index.apply(ip(3), &unknown, LEGACY_PORT, t0());
    let bye = run_of("bob", 6002, &[], None, Kind::Goodbye);
    assert!(!index.apply(ip(3), &bye, LEGACY_PORT, at(1)));
    assert_eq!(index.len(), 2);
    // The real goodbye still works.
    let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
    assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(2)));
    assert_eq!(index.len(), 1);
}

#[test]
fn a_new_instance_without_chunks_does_not_erase_the_old_one() {
    let mut index = Index::new();
    let hello = run_of("alice", 6001, &["a_1", "b_1"], Some("r1"), Kind::Announce);
    index.apply(ip(2), &hello, LEGACY_PORT, t0());
    let forged = run_of("alice", 6001, &[], Some("forged"), Kind::Announce);
    index.apply(ip(2), &forged, LEGACY_PORT, at(1));
    assert_eq!(index.len(), 2);
    // Nor does it take over the instance: alice's own goodbye still applies.
    let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
    assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(2)));
    assert!(index.is_empty());
    // A new instance that announces chunks does replace the old run.
    index.apply(ip(2), &hello, LEGACY_PORT, at(3));
    let restarted = run_of("alice", 6001, &["c_1"], Some("r2"), Kind::Announce);
    index.apply(ip(2), &restarted, LEGACY_PORT, at(4));
    assert_eq!(
        as_arrays(lines(&index, at(4))),
        vec![line("alice", "127.0.0.2:6001", "p2p/1", "c", "1----")]
    );
}

#[test]
fn port_zero_and_unknown_versions_make_the_extension_unreadable() {
    let mut index = Index::new();
    let zero = ours("zero", 0, 60, &["z_1"], &[("z", meta("z", 1))]);
    let mut future = ours("future", 6001, 60, &["f_1"], &[("f", meta("f", 1))]);
    future.p2p.as_mut().unwrap().v = 4_000_000_000;
    index.apply(ip(2), &zero, LEGACY_PORT, t0());
    index.apply(ip(3), &future, LEGACY_PORT, t0());
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries.len(), 2);
    for e in &tags.entries {
        assert_eq!(e.proto, Proto::Legacy, "{e:?}");
        assert_eq!(e.addr.port(), LEGACY_PORT);
        assert_eq!((e.size, e.sha256), (None, None));
    }
    // Nor can such a datagram say goodbye for a peer.
    let mut bye = run_of("zero", 6001, &[], None, Kind::Goodbye);
    bye.p2p.as_mut().unwrap().v = 4_000_000_000;
    assert!(!index.apply(ip(2), &bye, LEGACY_PORT, at(1)));
}

#[test]
fn legacy_expiry_follows_the_interval_observed_from_that_peer() {
    let mut index = Index::new();
    // A legacy peer announcing every 5 to 10 seconds, then stopping.
    let mut t = 0;
    for gap in [0, 5, 10, 7, 5, 9, 6] {
        t += gap;
        index.apply(ip(9), &legacy("quick", &["q_1", "q_2"]), LEGACY_PORT, at(t));
        assert!(!index.expire(at(t)), "at {t}");
    }
    let every = index.to_tags(at(t)).entries[0].interval;
    assert!((5..=10).contains(&every), "observed interval {every}");
    assert!(
        !index.expire(at(t + 3 * 5 - 1)),
        "kept for 3 observed intervals"
    );
    assert!(
        index.expire(at(t + 3 * 10)),
        "gone after 3 observed intervals"
    );
    assert!(index.is_empty());
    // Bounded: a legacy peer repeating itself every second counts as every 5 s...
    let mut index = Index::new();
    for t in 0..10 {
        index.apply(ip(9), &legacy("chatty", &["c_1"]), LEGACY_PORT, at(t));
    }
    assert_eq!(index.to_tags(at(9)).entries[0].interval, 5);
    // ... and one heard every 5 minutes as every 60 s, the legacy rule.
    let mut index = Index::new();
    for t in [0, 300, 600] {
        index.apply(ip(9), &legacy("sleepy", &["s_1"]), LEGACY_PORT, at(t));
    }
    assert_eq!(index.to_tags(at(600)).entries[0].interval, 60);
}

#[test]
fn a_legacy_original_file_name_beside_its_chunks_is_no_offer() {
    let mut index = Index::new();
    // `photo_2` is an original file: it would read as chunk 2 of a content `photo`.
    let files = [
        "photo_2",
        "photo_2_1",
        "photo_2_2",
        "photo_2_3",
        "photo_2_4",
        "photo_2_5",
    ];
    index.apply(ip(9), &legacy("ece", &files), LEGACY_PORT, t0());
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![line("ece", "127.0.0.9:5001", "legacy", "photo_2", "12345")]
    );
    // Also when the peer splits its announcement over two datagrams.
    let mut index = Index::new();
    index.apply(ip(9), &legacy("ece", &files[..1]), LEGACY_PORT, t0());
    index.apply(ip(9), &legacy("ece", &files[1..]), LEGACY_PORT, t0());
    assert_eq!(index.to_tags(t0()).entries.len(), 1);
    // A real content `photo` beside a real content `photo_2` stays whole.
    let mut index = Index::new();
    let mut both: Vec<&str> = vec!["photo_1", "photo_3", "photo_4", "photo_5"];
    both.extend_from_slice(&files);
    index.apply(ip(9), &legacy("ece", &both), LEGACY_PORT, t0());
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![
            line("ece", "127.0.0.9:5001", "legacy", "photo", "12345"),
            line("ece", "127.0.0.9:5001", "legacy", "photo_2", "12345"),
        ]
    );
    // And a lone chunk 2 with nothing to explain it otherwise is listed.
    let mut index = Index::new();
    index.apply(ip(9), &legacy("ece", &["photo_2"]), LEGACY_PORT, t0());
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![line("ece", "127.0.0.9:5001", "legacy", "photo", "-2---")]
    );
}

/// Two peer IDs of a private network.
fn ids() -> (PeerId, PeerId) {
    (
        shared::trust::Identity::from_seed(&[1; 32]).id(),
        shared::trust::Identity::from_seed(&[2; 32]).id(),
    )
}

#[test]
fn signed_entries_carry_their_peer_id_and_a_second_id_under_a_name_is_an_impostor() {
    let (alice, mallory) = ids();
    let mut index = Index::new();
    let hello = run_of("alice", 6001, &["a_1"], Some("r1"), Kind::Announce);
    assert!(index.apply_signed(ip(2), &hello, Some(alice), LEGACY_PORT, t0()));
    assert_eq!(index.take_new_pins(), vec![("alice".to_owned(), alice)]);
    // Mallory, a member, announces under alice's name from another address.
    let fake = run_of("alice", 6001, &["a_1"], Some("m1"), Kind::Announce);
    assert!(index.apply_signed(ip(5), &fake, Some(mallory), LEGACY_PORT, t0()));
    assert!(index.take_new_pins().is_empty());
    let tags = index.to_tags(t0());
    let by_ip = |last: u8| {
        tags.entries
            .iter()
            .find(|e| e.addr.ip() == ip(last))
            .map(|e| (e.user.clone(), e.id, e.impostor))
    };
    assert_eq!(by_ip(2), Some(("alice".into(), Some(alice), false)));
    assert_eq!(by_ip(5), Some(("alice".into(), Some(mallory), true)));
    // The impostor's line reads back from tags.txt as an impostor's, and pins survive.
    let reread = Index::from_tags(&tags);
    assert_eq!(reread.to_tags(t0()), tags);
    assert_eq!(reread.pins.get("alice"), Some(&alice));
}

#[test]
fn a_member_cannot_replace_or_erase_another_members_entries_even_from_its_address() {
    let (alice, mallory) = ids();
    let mut index = Index::new();
    let hello = run_of("alice", 6001, &["a_1"], Some("r1"), Kind::Announce);
    index.apply_signed(ip(2), &hello, Some(alice), LEGACY_PORT, t0());
    let before = index.to_tags(t0());
    // From alice's address (spoofed), signed by mallory: a goodbye, a withdrawal, a new
    // instance, another digest of the same name.
    let bye = run_of("alice", 6001, &[], Some("r1"), Kind::Goodbye);
    assert!(!index.apply_signed(ip(2), &bye, Some(mallory), LEGACY_PORT, at(1)));
    let mut withdraw = run_of("alice", 6001, &[], Some("r1"), Kind::Withdraw);
    withdraw.p2p.as_mut().unwrap().withdrawn = vec!["a".into()];
    assert!(!index.apply_signed(ip(2), &withdraw, Some(mallory), LEGACY_PORT, at(1)));
    let restart = run_of("alice", 6001, &["a_1"], Some("m9"), Kind::Announce);
    index.apply_signed(ip(2), &restart, Some(mallory), LEGACY_PORT, at(1));
    let other = ours("alice", 6001, 60, &["a_1"], &[("a", meta("other", 9))]);
    index.apply_signed(ip(2), &other, Some(mallory), LEGACY_PORT, at(1));
    let alices: Vec<_> = index
        .to_tags(at(1))
        .entries
        .into_iter()
        .filter(|e| e.id == Some(alice))
        .collect();
    assert_eq!(alices, before.entries, "alice's entry untouched");
    assert!(index.take_refusals().foreign > 0);
    // Alice's own goodbye still works.
    assert!(index.apply_signed(ip(2), &bye, Some(alice), LEGACY_PORT, at(2)));
    assert!(index
        .to_tags(at(2))
        .entries
        .iter()
        .all(|e| e.id != Some(alice)));
}

#[test]
fn an_offer_signer_is_checked_against_the_pins() {
    let (alice, mallory) = ids();
    let mut index = Index::new();
    assert!(!index.is_impostor("alice", alice), "the first ID is pinned");
    assert!(!index.is_impostor("alice", alice));
    assert!(index.is_impostor("alice", mallory));
    assert_eq!(index.take_new_pins(), vec![("alice".to_owned(), alice)]);
}

/// A compact announcement of alice's (port 6001, interval 60, instance `run`) naming the
/// catalog of `entries`, with `files` as its legacy list; and that catalog's entries.
fn compact(
    run: &str,
    files: &[&str],
    entries: &[(&str, &str, ContentMeta)],
) -> (Announcement, Vec<shared::protocol::CatalogEntry>) {
    let catalog_entries: Vec<shared::protocol::CatalogEntry> = entries
        .iter()
        .map(|(name, chunks, meta)| shared::protocol::CatalogEntry {
            name: (*name).to_owned(),
            chunks: shared::chunk::ChunkSet::parse(chunks).unwrap(),
            meta: Some(*meta),
        })
        .collect();
    let text: String = catalog_entries
        .iter()
        .map(|e| format!("{}{}", e.name, e.chunks))
        .collect();
    let ext = AnnouncementExt {
        instance: Some(run.to_owned()),
        catalog: Some(shared::protocol::CatalogSummary {
            count: entries.len() as u64,
            sha256: Digest::of(text.as_bytes()),
        }),
        ..AnnouncementExt::new(6001, 60)
    };
    (Announcement::ours("alice", files, ext), catalog_entries)
}

#[test]
fn a_compact_announcement_lists_nothing_until_its_catalog_is_applied() {
    let mut index = Index::new();
    let (summary, entries) = compact(
        "r1",
        &["legacy_1", "list_2"],
        &[("a", "12345", meta("a", 10)), ("b", "12-4-", meta("b", 20))],
    );
    // Its `files` are for legacy listeners: nothing of them is listed, legacy or ours.
    assert!(!index.apply(ip(2), &summary, LEGACY_PORT, t0()));
    assert!(index.is_empty());
    let wanted = index.catalog_wanted(ip(2), &summary, None).expect("wanted");
    assert_eq!(
        wanted.peer,
        CatalogPeer {
            ip: ip(2),
            port: 6001,
            user: "alice".into(),
            id: None
        }
    );
    assert_eq!((wanted.interval, wanted.version), (60, 1));
    assert!(index.apply_catalog(&wanted, &entries, t0()));
    assert_eq!(
        as_arrays(lines(&index, t0())),
        vec![
            line("alice", "127.0.0.2:6001", "p2p/1", "a", "12345"),
            line("alice", "127.0.0.2:6001", "p2p/1", "b", "12-4-"),
        ]
    );
    let tags = index.to_tags(t0());
    assert_eq!(tags.entries[1].sha256, Some(meta("b", 20).sha256));
    assert_eq!(tags.entries[1].root, meta("b", 20).root);
    assert_eq!(tags.entries[1].size, Some(20));
    // Held now: not wanted again; another run's summary of the same catalog is.
    assert_eq!(index.catalog_wanted(ip(2), &summary, None), None);
    let (restarted, _) = compact(
        "r2",
        &[],
        &[("a", "12345", meta("a", 10)), ("b", "12-4-", meta("b", 20))],
    );
    assert!(index.catalog_wanted(ip(2), &restarted, None).is_some());
    assert_eq!(index.catalogs_held(), 1);
}

#[test]
fn summaries_of_the_catalog_held_refresh_its_entries_at_most_every_half_interval() {
    let mut index = Index::new();
    let (summary, entries) = compact("r1", &[], &[("a", "12345", meta("a", 10))]);
    let wanted = index.catalog_wanted(ip(2), &summary, None).unwrap();
    index.apply_catalog(&wanted, &entries, t0());
    let last_seen = |index: &Index, now| index.to_tags(now).entries[0].last_seen;
    // Within half the interval: nothing to write.
    assert!(!index.apply(ip(2), &summary, LEGACY_PORT, at(29)));
    assert_eq!(last_seen(&index, at(29)), t0());
    assert!(index.apply(ip(2), &summary, LEGACY_PORT, at(30)));
    assert_eq!(last_seen(&index, at(30)), at(30));
    // Kept alive by summaries alone, as by re-announcing every chunk.
    for t in [90, 150, 210, 270] {
        index.apply(ip(2), &summary, LEGACY_PORT, at(t));
        assert!(!index.expire(at(t)));
    }
    assert_eq!(index.len(), 1);
    // Silent for three intervals: gone, and its catalog forgotten, so the next summary
    // fetches it again.
    assert!(index.expire(at(270 + 180)));
    assert!(index.is_empty());
    assert_eq!(index.catalogs_held(), 0);
    assert!(index.catalog_wanted(ip(2), &summary, None).is_some());
}

#[test]
fn a_new_catalog_replaces_the_peers_entries_and_no_one_elses() {
    let mut index = Index::new();
    // Bob's and a legacy program's entries on the same address, and alice's inline entry at
    // another port: none of them is alice's catalog.
    index.apply(
        ip(2),
        &run_of("bob", 6001, &["x_1"], Some("b1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    index.apply(ip(2), &legacy("ece", &["e_1"]), LEGACY_PORT, t0());
    index.apply(
        ip(2),
        &run_of("alice", 7001, &["old_1"], Some("r1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    let (summary, entries) = compact(
        "r1",
        &[],
        &[
            ("a", "12345", meta("a", 1)),
            ("b", "12345", meta("b", 2)),
            ("c", "1----", meta("c", 3)),
        ],
    );
    let wanted = index.catalog_wanted(ip(2), &summary, None).unwrap();
    index.apply_catalog(&wanted, &entries, t0());
    // b is gone, a is another file now, c is complete, d is new.
    let (summary2, entries2) = compact(
        "r1",
        &[],
        &[
            ("a", "12345", meta("a2", 1)),
            ("c", "12345", meta("c", 3)),
            ("d", "--3--", meta("d", 4)),
        ],
    );
    let wanted2 = index.catalog_wanted(ip(2), &summary2, None).unwrap();
    assert!(index.apply_catalog(&wanted2, &entries2, at(5)));
    assert_eq!(
        as_arrays(lines(&index, at(5))),
        vec![
            line("alice", "127.0.0.2:6001", "p2p/1", "a", "12345"),
            line("alice", "127.0.0.2:6001", "p2p/1", "c", "12345"),
            line("alice", "127.0.0.2:6001", "p2p/1", "d", "--3--"),
            line("ece", "127.0.0.2:5001", "legacy", "e", "1----"),
            line("alice", "127.0.0.2:7001", "p2p/1", "old", "1----"),
            line("bob", "127.0.0.2:6001", "p2p/1", "x", "1----"),
        ]
    );
    let a = &index.to_tags(at(5)).entries[0];
    assert_eq!(a.sha256, Some(meta("a2", 1).sha256), "the new digest only");
    // An empty catalog empties alice's list at that port, and only hers.
    let (empty, _) = compact("r1", &[], &[]);
    let wanted3 = index.catalog_wanted(ip(2), &empty, None).unwrap();
    assert!(index.apply_catalog(&wanted3, &[], at(6)));
    assert_eq!(index.len(), 3);
}

#[test]
fn a_catalog_of_a_new_run_drops_the_old_runs_entries_and_a_goodbye_forgets_the_catalog() {
    let mut index = Index::new();
    index.apply(
        ip(2),
        &run_of("alice", 7001, &["old_1"], Some("r1"), Kind::Announce),
        LEGACY_PORT,
        t0(),
    );
    let (summary, entries) = compact("r2", &[], &[("a", "12345", meta("a", 1))]);
    let wanted = index.catalog_wanted(ip(2), &summary, None).unwrap();
    // The summary alone drops nothing: only its catalog, fetched from the peer, does.
    index.apply(ip(2), &summary, LEGACY_PORT, t0());
    assert_eq!(index.len(), 1);
    index.apply_catalog(&wanted, &entries, at(1));
    assert_eq!(
        as_arrays(lines(&index, at(1))),
        vec![line("alice", "127.0.0.2:6001", "p2p/1", "a", "12345")]
    );
    // Goodbye: the entries go, and the catalog is no longer held.
    let bye = run_of("alice", 6001, &[], Some("r2"), Kind::Goodbye);
    assert!(index.apply(ip(2), &bye, LEGACY_PORT, at(2)));
    assert!(index.is_empty());
    assert!(index.catalog_wanted(ip(2), &summary, None).is_some());
}

#[test]
fn an_inline_announcement_after_a_catalog_makes_the_next_summary_fetch_it_again() {
    let mut index = Index::new();
    let (summary, entries) = compact("r1", &[], &[("a", "12345", meta("a", 1))]);
    let wanted = index.catalog_wanted(ip(2), &summary, None).unwrap();
    index.apply_catalog(&wanted, &entries, t0());
    // The peer shrank and announces inline: the catalog held is no longer its list.
    let inline = ours("alice", 6001, 60, &["a_1"], &[("a", meta("a", 1))]);
    index.apply(ip(2), &inline, LEGACY_PORT, at(1));
    assert!(index.catalog_wanted(ip(2), &summary, None).is_some());
}

#[test]
fn a_catalog_is_bounded_by_the_index_limits_and_a_member_cannot_take_anothers_entries() {
    let limits = Limits {
        max_entries_per_source: 3,
        ..Limits::default()
    };
    let mut index = Index::with_limits(limits);
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let many: Vec<(&str, &str, ContentMeta)> = names
        .iter()
        .map(|n| (n.as_str(), "12345", meta(n, 1)))
        .collect();
    let (summary, entries) = compact("r1", &[], &many);
    let wanted = index.catalog_wanted(ip(2), &summary, None).unwrap();
    index.apply_catalog(&wanted, &entries, t0());
    assert_eq!(index.len(), 3);
    assert!(index.take_refusals().over_source > 0);
    // On a private network: mallory's catalog, fetched from alice's address and port (a
    // chunk server proving mallory's ID), under alice's name, takes nothing of alice's.
    let (alice, mallory) = ids();
    let mut index = Index::new();
    let (summary, entries) = compact("r1", &[], &[("a", "12345", meta("a", 1))]);
    let by_alice = index.catalog_wanted(ip(2), &summary, Some(alice)).unwrap();
    index.apply_catalog(&by_alice, &entries, t0());
    let by_mallory = index
        .catalog_wanted(ip(2), &summary, Some(mallory))
        .unwrap();
    let (_, forged) = compact(
        "m1",
        &[],
        &[("a", "12345", meta("a", 1)), ("z", "12345", meta("z", 1))],
    );
    index.apply_catalog(&by_mallory, &forged, at(1));
    let tags = index.to_tags(at(1));
    let alices: Vec<_> = tags
        .entries
        .iter()
        .filter(|e| e.id == Some(alice))
        .collect();
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].last_seen, t0());
    let mallorys: Vec<_> = tags
        .entries
        .iter()
        .filter(|e| e.id == Some(mallory))
        .collect();
    assert_eq!(mallorys.len(), 1, "only what alice does not hold");
    assert!(mallorys[0].impostor);
    assert!(index.take_refusals().foreign > 0);
}

#[test]
fn a_change_tags_txt_shows_is_due_at_once_a_mere_refresh_later() {
    let mut index = Index::new();
    let hello = ours("alice", 6001, 60, &["a_1", "a_2"], &[("a", meta("a", 1))]);
    index.apply(ip(2), &hello, LEGACY_PORT, t0());
    assert!(index.write_due(t0()), "a new entry");
    index.written();
    assert!(!index.has_unwritten());
    // The same announcement again: only LAST_SEEN moves; written within half a minute.
    index.apply(ip(2), &hello, LEGACY_PORT, at(10));
    assert!(index.has_unwritten());
    assert!(!index.write_due(at(39)));
    assert_eq!(index.next_write_due(), Some(at(40)));
    assert!(index.write_due(at(40)));
    // Anything shown changes: due at once (and carries the refresh with it).
    for change in [
        ours("alice", 6001, 60, &["a_3"], &[("a", meta("a", 1))]),
        ours("alice", 6001, 60, &["a_1"], &[("a", meta("a2", 1))]),
        ours("bob", 6001, 60, &["a_1"], &[("a", meta("a2", 1))]),
        ours("bob", 6001, 30, &["a_1"], &[("a", meta("a2", 1))]),
    ] {
        index.written();
        index.apply(ip(2), &change, LEGACY_PORT, at(11));
        assert!(index.write_due(at(11)), "{change:?}");
    }
    // A peer of a short interval is written within its interval.
    index.written();
    let quick = ours("carol", 6001, 2, &["c_1"], &[("c", meta("c", 1))]);
    index.apply(ip(3), &quick, LEGACY_PORT, at(20));
    index.written();
    index.apply(ip(3), &quick, LEGACY_PORT, at(21));
    assert_eq!(index.next_write_due(), Some(at(23)));
    // Expiry is a change shown.
    index.written();
    assert!(index.expire(at(21 + 7)));
    assert!(index.write_due(at(28)));
}
