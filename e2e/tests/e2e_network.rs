//! `downloader network new | join | leave | status`, the real binary in temp folders: `new`
//! prints a six-word passphrase and writes a 0600 key; `join` with it (quoted or as separate
//! words, any case) in another folder stores the same key and shows the same network id; a
//! typo gets the closest word, exit status 2 and writes nothing; a different key is not
//! replaced without `--force`; `leave` removes the key. The prompt's `network` says the same.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shared::trust::key::{normalize_phrase, PHRASE_WORDS};
use shared::trust::NetworkKey;
use testkit::prelude::*;
use testkit::process::{
    assert_failed_once_with, output_of, start_chunk_server_process, wait_exit, ChildGuard,
};

fn network(dir: &Path, args: &[&str]) -> Output {
    output_of(
        Command::new(Program::Downloader.path())
            .arg("--dir")
            .arg(dir)
            .arg("network")
            .args(args),
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 on stdout")
}

/// `network --json` of `dir`, parsed.
fn status(dir: &Path) -> serde_json::Value {
    let out = network(dir, &["--json"]);
    assert_success(&out, "downloader network --json");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", describe_output(&out)))
}

fn key_of(dir: &Path) -> Option<NetworkKey> {
    NetworkKey::load(dir).expect("a readable key file")
}

#[test]
fn new_join_typo_other_key_and_leave() {
    let root = tempfile::tempdir().expect("temp dir");
    let (alice, bob, carol) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("carol"),
    );

    // new: a phrase of six listed words, a 0600 key, the network id and the peer ID shown.
    let out = network(&alice, &["new"]);
    assert_success(&out, "network new");
    let said = stdout(&out);
    let phrase = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("downloader network join \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no `downloader network join \"PHRASE\"` line:\n{said}"))
        .to_owned();
    assert_eq!(phrase.split('-').count(), PHRASE_WORDS, "{said}");
    assert_eq!(normalize_phrase(&phrase).as_deref(), Ok(phrase.as_str()));
    let key = key_of(&alice).expect("network new wrote network.key");
    assert_eq!(key, NetworkKey::from_phrase(&phrase));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(NetworkKey::path_in(&alice))
            .expect("network.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "network.key is the owner's alone");
    }
    let id = key.id();
    assert!(said.contains(&format!("network:  {id}")), "{said}");
    let alice_peer = shared::trust::Identity::load_or_create(&alice)
        .expect("identity")
        .id()
        .to_string();
    assert!(said.contains(&alice_peer), "the peer ID is shown:\n{said}");
    assert!(said.contains("read the key when they start"), "{said}");
    assert!(
        !fs::read_to_string(NetworkKey::path_in(&alice))
            .expect("key file")
            .contains(&phrase),
        "the phrase itself is not stored"
    );

    // A second `new` refuses and keeps the key.
    let again = network(&alice, &["new"]);
    assert_failed_once_with(&again, 1, "network leave");
    assert_eq!(key_of(&alice).as_ref(), Some(&key));

    // join, the words unquoted and in capitals, in another folder: the same key and id.
    let words: Vec<String> = phrase.split('-').map(str::to_uppercase).collect();
    let mut args = vec!["join"];
    args.extend(words.iter().map(String::as_str));
    let out = network(&bob, &args);
    assert_success(&out, "network join WORDS…");
    assert!(
        stdout(&out).contains(&format!("Joined private network {id}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(key_of(&bob).as_ref(), Some(&key));
    assert_eq!(status(&bob)["network"], id.as_str());
    assert_eq!(status(&alice)["network"], id.as_str());
    assert_ne!(status(&bob)["peer_id"], status(&alice)["peer_id"]);

    // The same phrase again, quoted: already a member, exit 0.
    let out = network(&bob, &["join", &phrase]);
    assert_success(&out, "network join PHRASE again");
    assert!(
        stdout(&out).contains("Already a member"),
        "{}",
        stdout(&out)
    );

    // A typo: the closest word, status 2, nothing written (not even the folder).
    let mut typo: Vec<String> = phrase.split('-').map(str::to_owned).collect();
    let original = typo[2].clone();
    typo[2] = format!("{original}q");
    let typed = typo.join(" ");
    let out = network(&carol, &["join", &typed]);
    assert_failed_once_with(&out, 2, "did you mean");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{original:?}")),
        "suggests {original}: {stderr}"
    );
    assert!(!carol.exists(), "nothing written for a typo");
    // Over an existing key too: it is kept.
    assert_eq!(network(&bob, &["join", &typed]).status.code(), Some(2));
    assert_eq!(key_of(&bob).as_ref(), Some(&key));

    // Another network's phrase over bob's key: refused without --force, key kept byte for byte.
    let before = fs::read(NetworkKey::path_in(&bob)).expect("bob's key");
    let out = network(&bob, &["join", OTHER_PHRASE]);
    assert_failed_once_with(&out, 1, "--force");
    assert_eq!(
        fs::read(NetworkKey::path_in(&bob)).expect("bob's key"),
        before
    );
    // With bob's chunk server running, the change names it as the program to restart.
    let server = start_chunk_server_process(&bob, &[]);
    let out = network(&bob, &["join", "--force", OTHER_PHRASE]);
    drop(server);
    assert_success(&out, "network join --force OTHER");
    assert!(
        stdout(&out).contains("Restart the chunk-server of this folder"),
        "{}",
        stdout(&out)
    );
    let other = network_key(OTHER_PHRASE);
    assert_eq!(key_of(&bob).as_ref(), Some(&other));
    assert!(
        stdout(&out).contains(&format!("Left private network {id}")),
        "{}",
        stdout(&out)
    );

    // leave: says which network, removes the key; a second leave has nothing to leave.
    let out = network(&bob, &["leave"]);
    assert_success(&out, "network leave");
    assert!(
        stdout(&out).contains(&format!("Left private network {}", other.id())),
        "{}",
        stdout(&out)
    );
    assert!(!NetworkKey::path_in(&bob).exists());
    let out = network(&bob, &["leave"]);
    assert_success(&out, "network leave again");
    assert!(
        stdout(&out).contains("not on a private network"),
        "{}",
        stdout(&out)
    );
    let open = status(&bob);
    assert_eq!(open["private"], false);
    assert!(open["network"].is_null());
    let out = network(&bob, &["status"]);
    assert_success(&out, "network status");
    assert!(
        stdout(&out).starts_with("network:  open"),
        "{}",
        stdout(&out)
    );

    // The prompt's `network` tells the same.
    let mut prompt = ChildGuard(
        Command::new(Program::Downloader.path())
            .arg("--dir")
            .arg(&alice)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the prompt"),
    );
    prompt
        .0
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"network\nquit\n")
        .expect("type");
    let status =
        wait_exit(&mut prompt.0, Duration::from_secs(30)).expect("the prompt ends at quit");
    assert!(status.success(), "{status}");
    let mut said = String::new();
    prompt
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut said)
        .expect("read");
    assert!(said.contains(&format!("network:  private, {id}")), "{said}");
}
