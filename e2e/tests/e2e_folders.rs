//! Folders (issue 10): `downloader share ~/photos` shares the folder's whole tree under its own
//! name (`photos/2024/a.jpg`), and `downloader get photos/` on another peer downloads every file
//! of it, each verified, into `downloads/photos/…` with its structure. A symbolic link out of
//! the share is not shared, one inside is; an empty folder is no content and is not recreated;
//! hidden entries stay home. Legacy peers fetch a nested file under its flattened name
//! (`photos%2F2024%2Fa b.jpg`). A hostile announcement's escaping names never reach a file
//! outside `downloads/`. All with the real programs on loopback.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::digest::Digest;
use shared::protocol::{Announcement, AnnouncementExt, ContentMeta};
use testkit::legacy::{legacy_download, legacy_listen_once};
use testkit::prelude::*;

/// The tree alice shares: content name under `photos/` → (size, seed). Four levels deep, an
/// empty file, names with spaces.
const TREE: &[(&str, u64, u64)] = &[
    ("top.txt", 10_000, 1),
    ("empty.bin", 0, 2),
    ("2024/a b.jpg", 300_001, 3),
    ("2024/summer/deep.raw", 1_000_003, 4),
    ("2024/summer/notes", 7, 5),
    ("2024/summer/beach/x y z.txt", 4_321, 6),
];

/// Builds `home/photos` with [`TREE`], an empty folder, a hidden folder, a link to a file
/// inside and one to a secret outside; returns (the folder, content name → file, digest).
fn build_tree(home: &Path) -> (PathBuf, BTreeMap<String, (PathBuf, Digest)>) {
    let photos = home.join("photos");
    let mut expected = BTreeMap::new();
    for &(name, size, seed) in TREE {
        let path = photos.join(name);
        let digest = write_random_file(&path, size, seed);
        expected.insert(format!("photos/{name}"), (path, digest));
    }
    fs::create_dir_all(photos.join("empty folder")).unwrap();
    fs::create_dir_all(photos.join(".git")).unwrap();
    fs::write(photos.join(".git").join("config"), b"[core]\n").unwrap();
    let secret = home.join("secret.txt");
    write_random_file(&secret, 999, 7);
    std::os::unix::fs::symlink(&secret, photos.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(photos.join("top.txt"), photos.join("2024").join("link.txt"))
        .unwrap();
    let (_, top_digest) = expected["photos/top.txt"].clone();
    expected.insert(
        "photos/2024/link.txt".into(),
        (photos.join("top.txt"), top_digest),
    );
    (photos, expected)
}

#[test]
fn a_shared_folder_tree_is_downloaded_whole_and_byte_identical() {
    let net = TestNet::new(Duration::from_secs(240));
    let a = net.peer("a");
    let b = net.peer("b");
    let home = net.folder("home");
    let (photos, expected) = build_tree(&home);

    // Shared by the user's own command, before the chunk server starts.
    let out = a.downloader(&["share", photos.to_str().unwrap()]);
    assert_success(&out, "downloader share photos");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("its whole tree, as photos/"),
        "{}",
        describe_output(&out)
    );
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    b.start_listener(&[]);
    for (name, (_, digest)) in &expected {
        net.wait_for_entry(&b, &a, "alice", name, *digest);
    }
    let tags = b.tags().unwrap();
    let listed: Vec<&str> = tags
        .entries
        .iter()
        .filter(|e| e.user == "alice")
        .map(|e| e.content.as_str())
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "exactly the tree, no link out, no hidden file, no folder: {listed:?}"
    );
    // What a legacy listener hears: plain file names, the tree flattened, every datagram
    // under 1024 bytes and valid JSON (legacy_listen_once checks both).
    let heard = legacy_listen_once(net.udp_port(), Duration::from_millis(2500));
    let files: Vec<String> = heard
        .iter()
        .filter(|h| h.json["username"] == "alice")
        .flat_map(|h| h.json["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    assert!(
        files.iter().any(|f| f == "photos%2F2024%2Fa b.jpg_1"),
        "{files:?}"
    );
    assert!(files.iter().all(|f| !f.contains('/')), "{files:?}");
    let server_log = fs::read_to_string(a.dir.join("server.log")).unwrap();
    assert_eq!(
        server_log.matches("leak.txt: a symbolic link to").count(),
        1,
        "one warning for the link out of the share, not one per scan:\n{server_log}"
    );

    // At the prompt, a subfolder: only what is under it.
    let mut prompt = b.spawn_downloader_on_terminal(&[]);
    let screen = |what: &str, cond: &dyn Fn(&str) -> bool, prompt: &RunningDownloader| {
        net.wait_until(Duration::from_secs(30), what, || {
            let screen = prompt.stdout_so_far();
            cond(&screen).then_some(()).ok_or(screen)
        })
    };
    screen(
        "the prompt waits for a line",
        &|s| s.contains("> "),
        &prompt,
    );
    prompt.type_keys("get photos/2024/summer/\r");
    screen(
        "the subfolder is downloaded",
        &|s| s.contains("Folder photos/2024/summer/: 3 of 3 files"),
        &prompt,
    );
    prompt.type_keys("quit\r");
    let out = prompt.wait(Duration::from_secs(60));
    assert_success(&out, "get photos/2024/summer/ at the prompt");
    let summer: Vec<&String> = expected
        .keys()
        .filter(|n| n.starts_with("photos/2024/summer/"))
        .collect();
    assert_eq!(summer.len(), 3);
    for name in &summer {
        assert_same_file(&expected[*name].0, &b.downloads_dir().join(name));
    }
    assert_eq!(
        files_under(&b.downloads_dir()).len(),
        3,
        "only the subfolder"
    );

    // `get photos/`: every file, each verified, its structure kept.
    let out = b.downloader(&["get", "photos/"]);
    assert_success(&out, "downloader get photos/");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Folder photos/: {0} of {0} files downloaded and verified",
            expected.len()
        )) && stderr.contains("0 failed"),
        "{}",
        describe_output(&out)
    );
    let printed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(printed.len(), expected.len(), "one path per file");
    let downloads = b.downloads_dir();
    for (name, (original, _)) in &expected {
        assert_same_file(original, &downloads.join(name));
    }
    let got: Vec<PathBuf> = files_under(&downloads)
        .into_iter()
        .map(|(p, _)| p.strip_prefix(&downloads).unwrap().to_owned())
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "nothing else in downloads/: {got:?}"
    );
    assert!(!downloads.join("photos/leak.txt").exists());
    assert!(
        !downloads.join("photos/empty folder").exists(),
        "an empty folder is no content, and is not recreated"
    );
    assert!(!downloads.join("photos/.git").exists());

    // Again, with --json: each file already there, nothing fetched, exit 0.
    let out = b.downloader(&["get", "photos", "--json"]);
    assert_success(&out, "downloader get photos --json");
    println!(
        "get photos --json: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", describe_output(&out)));
    assert_eq!(result["ok"], true);
    assert_eq!(result["folder"], "photos/");
    assert_eq!(result["failed"], 0);
    let files = result["files"].as_array().unwrap();
    assert_eq!(files.len(), expected.len());
    for file in files {
        let name = file["name"].as_str().unwrap();
        assert_eq!(file["sha256"], expected[name].1.to_string(), "{name}");
        assert_eq!(file["already_present"], true, "{name}");
        assert_eq!(file["verified"], true, "{name}");
    }

    // A legacy client asks for the flattened name, and gets the right bytes.
    let legacy_copy = net.folder("legacy").join("a b.jpg");
    let sizes = legacy_download(a.chunk_addr(), "photos%2F2024%2Fa b.jpg", &legacy_copy)
        .expect("legacy download of the flattened name");
    assert_eq!(sizes.iter().sum::<usize>(), 300_001);
    assert_same_file(&expected["photos/2024/a b.jpg"].0, &legacy_copy);

    // The link's target outside the share is not served under any name.
    let leak = net.folder("legacy").join("leak");
    let sizes = legacy_download(a.chunk_addr(), "photos%2Fleak.txt", &leak).unwrap_or_default();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        0,
        "the secret must not be served"
    );

    // bob passes the tree on, from downloads/photos/… in place: with alice's chunk server
    // stopped, carol gets a subfolder from him.
    a.stop(Program::ChunkServer);
    b.start_chunk_server(&[], &[]);
    b.start_announcer("bob", ANNOUNCE_INTERVAL_SECS);
    let c = net.peer("c");
    c.start_listener(&[]);
    for (name, (_, digest)) in &expected {
        net.wait_for_entry(&c, &b, "bob", name, *digest);
    }
    let out = c.downloader(&["get", "photos/2024/"]);
    assert_success(&out, "carol: get photos/2024/ from bob");
    for (name, (original, _)) in expected
        .iter()
        .filter(|(n, _)| n.starts_with("photos/2024/"))
    {
        assert_same_file(original, &c.downloads_dir().join(name));
    }
}

#[test]
fn a_link_planted_in_downloads_fails_the_folder_and_nothing_is_written_through_it() {
    let net = TestNet::new(Duration::from_secs(180));
    let a = net.peer("a");
    let b = net.peer("b");
    let home = net.folder("home");
    let (photos, expected) = build_tree(&home);
    assert_success(
        &a.downloader(&["share", photos.to_str().unwrap()]),
        "downloader share photos",
    );
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    b.start_listener(&[]);
    for (name, (_, digest)) in &expected {
        net.wait_for_entry(&b, &a, "alice", name, *digest);
    }
    // Someone with access to b's folder planted downloads/photos/2024 -> elsewhere.
    let elsewhere = net.folder("elsewhere");
    fs::create_dir_all(b.downloads_dir().join("photos")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.downloads_dir().join("photos/2024")).unwrap();

    let out = b.downloader(&["get", "photos/"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let under_2024 = expected
        .keys()
        .filter(|n| n.starts_with("photos/2024/"))
        .count();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Folder photos/: {} of {} files downloaded and verified",
            expected.len() - under_2024,
            expected.len()
        )) && stderr.contains(&format!("{under_2024} failed")),
        "{}",
        describe_output(&out)
    );
    assert!(stderr.contains("refusing to write through it"), "{stderr}");
    assert!(
        files_under(&elsewhere).is_empty(),
        "written through the link: {:?}",
        files_under(&elsewhere)
    );
    // The files outside the planted link did arrive, verified.
    assert_same_file(
        &expected["photos/top.txt"].0,
        &b.downloads_dir().join("photos/top.txt"),
    );
}

#[test]
fn unshare_of_a_folder_or_one_file_in_it_withdraws_them() {
    let net = TestNet::new(Duration::from_secs(180));
    let a = net.peer("a");
    let b = net.peer("b");
    let home = net.folder("home");
    let (photos, expected) = build_tree(&home);
    assert_success(
        &a.downloader(&["share", photos.to_str().unwrap()]),
        "downloader share photos",
    );
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    b.start_listener(&[]);
    let (_, deep) = &expected["photos/2024/summer/deep.raw"];
    net.wait_for_entry(&b, &a, "alice", "photos/2024/summer/deep.raw", *deep);

    // One file of the folder: excluded by name, the rest stays.
    let out = a.downloader(&["unshare", "photos/2024/summer/deep.raw"]);
    assert_success(&out, "unshare one file of the folder");
    let alice_has = |tags: &shared::tags::TagsIndex, name: &str| {
        tags.entries
            .iter()
            .any(|e| e.user == "alice" && e.content == name)
    };
    net.wait_until(WAIT, "deep.raw withdrawn, the rest still listed", || {
        let tags = b.tags()?;
        (!alice_has(&tags, "photos/2024/summer/deep.raw") && alice_has(&tags, "photos/top.txt"))
            .then_some(())
            .ok_or_else(|| tags.to_string())
    });
    // The whole folder, by its content path.
    let out = a.downloader(&["unshare", "photos/"]);
    assert_success(&out, "unshare photos/");
    net.wait_until(WAIT, "the whole folder withdrawn", || {
        let tags = b.tags()?;
        (!tags
            .entries
            .iter()
            .any(|e| e.content.starts_with("photos/")))
        .then_some(())
        .ok_or_else(|| tags.to_string())
    });
}

/// Sends `announcement` as one datagram from `from` to the test's announce port.
fn send_from(from: Ipv4Addr, to: SocketAddr, announcement: &Announcement) {
    let socket = shared::net::bind_udp_shared(SocketAddr::from((from, 0))).expect("bind UDP");
    socket.send_to(&announcement.encode(), to).expect("send");
}

#[test]
fn escaping_names_in_a_hostile_announcement_never_reach_a_file_outside_downloads() {
    let net = TestNet::new(Duration::from_secs(120));
    let b = net.peer("b");
    b.start_listener(&[]);
    let mallory = net.next_ip();
    let meta = ContentMeta {
        size: 10,
        sha256: Digest::of(b"0123456789"),
        root: None,
    };
    let hostile = [
        "../x",
        "a/../../x",
        "/etc/x",
        "a//x",
        "..",
        "photos/../../x",
    ];
    // One datagram per name, each under its raw and its flattened form, with its metadata.
    let mut datagrams: Vec<Announcement> = hostile
        .iter()
        .map(|name| {
            let files = [
                format!("{name}_1"),
                format!("{}_1", name.replace('/', "%2F")),
            ];
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            let ext = AnnouncementExt::new(4242, 60).with_content(name, meta);
            Announcement::ours("mallory", &files, ext)
        })
        .collect();
    // And one valid content, sent last, to know when they were heard.
    datagrams.push(Announcement::ours(
        "mallory",
        &["ok.txt_1"],
        AnnouncementExt::new(4242, 60).with_content("ok.txt", meta),
    ));
    net.wait_until(WAIT, "b hears mallory", || {
        for datagram in &datagrams {
            send_from(mallory, net.broadcast(), datagram);
        }
        let tags = b.tags()?;
        tags.entries
            .iter()
            .any(|e| e.user == "mallory" && e.content == "ok.txt")
            .then_some(())
            .ok_or_else(|| tags.to_string())
    });
    let tags = b.tags().unwrap();
    for entry in tags.entries.iter().filter(|e| e.user == "mallory") {
        shared::chunk::validate_content_name(&entry.content)
            .unwrap_or_else(|e| panic!("{:?} reached tags.txt: {e}", entry.content));
        assert!(
            !entry.content.split('/').any(|c| c == ".." || c.is_empty()),
            "{:?}",
            entry.content
        );
    }
    for name in hostile {
        let out = b.downloader(&["get", name]);
        assert!(
            !out.status.success(),
            "get {name}: {}",
            describe_output(&out)
        );
    }
    // Nothing was written beside the peer folder or above downloads/.
    let outside: Vec<_> = files_under(net.root())
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n == "x"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}
