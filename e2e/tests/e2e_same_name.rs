//! Two peers share different files under the same name: a download yields exactly one of them,
//! never a mix of both peers' chunks, and `--sha256` picks the other.

use std::path::Path;
use std::time::Duration;

use shared::digest::Digest;
use testkit::prelude::*;

#[test]
fn same_name_different_content_never_mixes() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let b = net.peer("b");
    let c = net.peer("c");
    // Same name and size, different bytes: only the digest tells them apart.
    let (file_a, digest_a) = a.write_share("notes.txt", 50_003, 1);
    let (file_b, digest_b) = b.write_share("notes.txt", 50_003, 2);
    assert_ne!(digest_a, digest_b);

    // Each shares the file itself rather than its folder.
    a.start_chunk_server(&[file_a.as_path()], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    b.start_chunk_server(&[file_b.as_path()], &[]);
    b.start_announcer("bob", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "notes.txt", digest_a);
    net.wait_for_entry(&c, &b, "bob", "notes.txt", digest_b);

    let list = c.downloader(&["list"]);
    assert_success(&list, "downloader list");
    let stdout = String::from_utf8_lossy(&list.stdout);
    let lines = stdout.lines().filter(|l| l.contains("notes.txt")).count();
    assert!(
        lines >= 2,
        "`downloader list` should show two entries named notes.txt, one per content; \
         found {lines}\n{}",
        describe_output(&list)
    );

    let out = c.downloader(&["get", "notes.txt"]);
    assert_success(&out, "downloader get notes.txt (two contents of that name)");
    let got = printed_path(&out, &c.dir);
    let (got_digest, _) = file_digest(&got);
    let owners = [
        Owner {
            user: "alice",
            peer: &a,
            digest: digest_a,
            file: &file_a,
        },
        Owner {
            user: "bob",
            peer: &b,
            digest: digest_b,
            file: &file_b,
        },
    ];
    let Some(owner) = owners.iter().find(|o| o.digest == got_digest) else {
        panic!(
            "downloaded notes.txt (sha256 {got_digest}) equals neither alice's ({digest_a}) nor \
             bob's ({digest_b}): chunks of the two files were mixed\n{}",
            describe_output(&out)
        );
    };
    assert_same_file(owner.file, &got);

    let events = c.client_events();
    let fetched = matching(&events, "fetched", &[("content", "notes.txt")]);
    assert!(
        !fetched.is_empty(),
        "no fetched events:\n{}",
        show_events(&events)
    );
    let owner_addr = owner.peer.chunk_addr().to_string();
    for event in &fetched {
        assert_eq!(
            (event.get("source"), event.get("user")),
            (Some(owner_addr.as_str()), Some(owner.user)),
            "every chunk of {}'s notes.txt must come from them; got {event}\nall events:\n{}",
            owner.user,
            show_events(&events)
        );
    }

    // A second peer asks for the other content by digest prefix.
    let other = owners
        .iter()
        .find(|o| o.user != owner.user)
        .expect("two owners");
    let d = net.peer("d");
    d.start_listener(&[]);
    net.wait_for_entry(&d, other.peer, other.user, "notes.txt", other.digest);
    let prefix = other.digest.short(12);
    let out = d.downloader(&["get", "notes.txt", "--sha256", &prefix]);
    assert_success(&out, &format!("downloader get notes.txt --sha256 {prefix}"));
    assert_same_file(other.file, &printed_path(&out, &d.dir));
}

/// One of the two peers sharing a `notes.txt`.
struct Owner<'a> {
    user: &'a str,
    peer: &'a Peer,
    digest: Digest,
    file: &'a Path,
}
