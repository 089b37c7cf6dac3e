//! What scripts rely on, with the real programs: `--json` output of `list`, `get` and `history`
//! parses and carries the names, sizes, digests, holders and paths (the shapes of
//! docs/JSON.md); `list PATTERN` filters; and the read-only commands create nothing, while a
//! missing `--dir` or `tags.txt` is a clear error.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::prelude::*;
use testkit::process::output_of;

/// The one JSON value a `--json` run printed on stdout (one line).
fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one line\n{}",
        describe_output(out)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", describe_output(out)))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["name"].as_str().expect("name is a string"))
        .collect()
}

/// Runs the real `downloader --dir DIR ARGS` with its output captured here (not in files of
/// the folder, as `Node::downloader` does), so that the folder holds only what it creates.
fn downloader_in(dir: &Path, args: &[&str]) -> Output {
    output_of(
        Command::new(Program::Downloader.path())
            .arg("--dir")
            .arg(dir)
            .args(args),
    )
}

#[test]
fn json_of_list_get_and_history_parses_and_list_filters_by_name() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let c = net.peer("c");
    let (_, digest) = a.write_share("Sample.bin", 70_000, 7);
    let (_, other) = a.write_share("notes.txt", 3_000, 8);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "Sample.bin", digest);
    net.wait_for_entry(&c, &a, "alice", "notes.txt", other);

    let out = c.downloader(&["list", "--json"]);
    assert_success(&out, "list --json");
    let list = json_of(&out);
    assert_eq!(names(&list), ["Sample.bin", "notes.txt"], "{list:#}");
    let sample = &list[0];
    assert_eq!(sample["number"], 1);
    assert_eq!(sample["size"], 70_000);
    assert_eq!(sample["sha256"], digest.to_string());
    assert_eq!(sample["verified"], true);
    assert_eq!(sample["complete"], true);
    assert_eq!(sample["chunks"], serde_json::json!([1, 2, 3, 4, 5]));
    let holder = &sample["holders"][0];
    assert_eq!(holder["user"], "alice", "{sample:#}");
    assert_eq!(holder["address"], a.chunk_addr().to_string(), "{sample:#}");
    assert_eq!(holder["protocol"], "p2p", "{sample:#}");

    // A pattern filters: a substring ignoring case, or a glob; numbers stay the full list's.
    let out = c.downloader(&["list", "--json", "SAMPLE"]);
    assert_eq!(names(&json_of(&out)), ["Sample.bin"]);
    let out = c.downloader(&["list", "--json", "*.TXT"]);
    let notes = json_of(&out);
    assert_eq!(names(&notes), ["notes.txt"]);
    assert_eq!(notes[0]["number"], 2, "{notes:#}");
    let out = c.downloader(&["list", "--json", "*.txt.gz"]);
    assert_eq!(json_of(&out), serde_json::json!([]));
    let out = c.downloader(&["list", "s?mple*"]);
    assert_success(&out, "list s?mple*");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Sample.bin") && !text.contains("notes.txt"),
        "{text}"
    );

    // get --json: one result object on stdout; progress stays on stderr.
    let out = c.downloader(&["get", "--json", "Sample.bin"]);
    assert_success(&out, "get --json");
    let got = json_of(&out);
    assert_eq!(got["ok"], true, "{got:#}");
    assert_eq!(got["name"], "Sample.bin");
    assert_eq!(got["size"], 70_000);
    assert_eq!(got["sha256"], digest.to_string());
    assert_eq!(got["verified"], true);
    assert_eq!(got["already_present"], false);
    let sources = serde_json::json!([format!("alice@{}", a.chunk_addr())]);
    assert_eq!(got["sources"], sources, "{got:#}");
    let path = Path::new(got["path"].as_str().expect("path is a string"));
    assert_eq!(file_digest(path).0, digest, "{}", path.display());
    assert!(
        !String::from_utf8_lossy(&out.stderr).is_empty(),
        "progress goes to stderr\n{}",
        describe_output(&out)
    );

    let again = json_of(&c.downloader(&["get", "--json", "1"]));
    assert_eq!(again["already_present"], true, "{again:#}");
    assert_eq!(again["path"], got["path"]);

    // A failure is a JSON object too, and the exit status says so.
    let out = c.downloader(&["get", "--json", "missing.iso"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let failed = json_of(&out);
    assert_eq!(failed["ok"], false, "{failed:#}");
    assert_eq!(failed["name"], "missing.iso");
    assert_eq!(failed["cancelled"], false);
    assert!(
        failed["error"].as_str().unwrap().contains("missing.iso"),
        "{failed:#}"
    );

    let out = c.downloader(&["history", "--json"]);
    assert_success(&out, "history --json");
    let history = json_of(&out);
    let entries = history.as_array().expect("an array");
    let first = &entries[0];
    assert_eq!(first["name"], "Sample.bin", "{history:#}");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["size"], 70_000);
    assert_eq!(first["verified"], true);
    assert_eq!(first["path"], got["path"]);
    assert_eq!(first["sources"][0]["holder"], sources[0], "{history:#}");
    assert_eq!(first["sources"][0]["chunks"], 5, "{history:#}");
    assert!(first["time"].as_str().unwrap().starts_with("20"), "{first}");
}

#[test]
fn a_missing_peer_folder_is_an_error_that_creates_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let missing = root.path().join("no-such-peer");
    for args in [
        &["list"][..],
        &["list", "--json", "x*"],
        &["history"],
        &["history", "--json"],
        &["get", "notes.txt"],
    ] {
        let out = downloader_in(&missing, args);
        let what = format!("downloader {}", args.join(" "));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}\n{}",
            describe_output(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end(),
            format!(
                "downloader: error: no peer folder at {} (--dir)",
                missing.display()
            ),
            "{what}"
        );
        assert!(!missing.exists(), "{what} created {}", missing.display());
    }
}

#[test]
fn list_and_history_leave_an_existing_folder_untouched() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path();
    let out = downloader_in(dir, &["history"]);
    assert_success(&out, "history in an empty folder");
    assert!(String::from_utf8_lossy(&out.stdout).contains("No downloads yet"));
    assert_eq!(
        json_of(&downloader_in(dir, &["history", "--json"])),
        serde_json::json!([])
    );

    // No tags.txt: nothing on offer, and how to get a listing (stderr beside the JSON).
    let out = downloader_in(dir, &["list"]);
    assert_success(&out, "list with no tags.txt");
    let expected = format!(
        "No files on offer: no tags.txt in {0}: no listener has written one in this folder; \
         start one with `listener --dir {0}`.\n",
        dir.display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    let out = downloader_in(dir, &["list", "--json"]);
    assert_success(&out, "list --json with no tags.txt");
    assert_eq!(json_of(&out), serde_json::json!([]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no tags.txt in") && stderr.contains("listener --dir"),
        "{}",
        describe_output(&out)
    );
    let created: Vec<_> = std::fs::read_dir(dir)
        .expect("read the folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(created.is_empty(), "list and history created {created:?}");
}

#[test]
fn get_without_tags_txt_says_to_start_a_listener() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path();
    let out = downloader_in(dir, &["get", "notes.txt"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "downloader: error: no tags.txt in {0}: no listener has written one in this folder; \
         start one with `listener --dir {0}`",
        dir.display()
    );
    assert_eq!(stderr.trim_end(), expected, "{}", describe_output(&out));
    assert!(out.stdout.is_empty(), "{}", describe_output(&out));
    assert!(!dir.join(shared::TAGS_FILE).exists());
    assert!(!dir.join("temp").exists() && !dir.join("downloads").exists());
}
