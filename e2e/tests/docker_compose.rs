//! The Docker Compose demo, for real: `scripts/docker-demo.sh` builds the static binaries and the
//! FROM-scratch image, starts alice, bob and carol (three containers each, one network
//! namespace per peer) on a network of their own, and carol downloads across container
//! boundaries; this test then checks what the peers' folders say happened:
//!
//! - every file carol downloaded is byte-identical to the original;
//! - `dataset.bin`, which alice and bob both share, came in chunks from both: each one's
//!   `server.log` has `served ... outcome=ok` lines for it, to carol's address;
//! - `archive.bin`, also on both, still arrived complete although alice's containers were stopped
//!   in the middle of the transfer (a cut transfer from alice is in carol's `client.log`);
//! - `report.txt`, sent by bob to carol, was accepted unasked (carol's `accept-from.txt` lists
//!   bob) and is byte-identical; `gift.txt`, sent by alice, stays an offer, unwritten.
//!
//! It runs twice: on an open network, and as a private network (`P2P_PRIVATE=1`: the three
//! joined with one passphrase, made by `downloader network new`), where everything above holds
//! too, and one more container, mallory, without the key on the same Docker network, sees
//! nothing (its `tags.txt` has no entry) and gets nothing (0 bytes of a file whose name and
//! holders it was given). The two runs take turns.
//!
//! Runs only when a Docker engine answers (`docker info`) and a compose command exists; else it
//! prints why it is skipped and passes. Everything it creates is named after a project unique to
//! this run (`p2ptest<pid>`) and removed by a guard, whatever happens: containers, network, image.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `docker compose` when the plugin exists, else `docker-compose`; `None` without either.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

fn docker_engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command quietly and returns its stdout, or "" when it cannot run.
fn output_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What this run leaves in Docker, removed on drop, even when the test fails or panics.
struct Teardown {
    repo: PathBuf,
    compose: Vec<&'static str>,
    project: String,
    image: String,
}

impl Teardown {
    /// Containers and networks of the project, and the image, that still exist.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut left = Vec::new();
        for (what, out) in [
            (
                "container",
                output_of("docker", &["ps", "-a", "-q", "--filter", &label]),
            ),
            (
                "network",
                output_of("docker", &["network", "ls", "-q", "--filter", &label]),
            ),
            (
                "volume",
                output_of("docker", &["volume", "ls", "-q", "--filter", &label]),
            ),
            (
                "image",
                output_of("docker", &["image", "ls", "-q", &self.image]),
            ),
        ] {
            left.extend(out.split_whitespace().map(|id| format!("{what} {id}")));
        }
        left
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let compose_file = self.repo.join("docker-compose.yml");
        let (program, first) = self.compose.split_first().expect("a compose command");
        let _ = Command::new(program)
            .args(first)
            .arg("--project-directory")
            .arg(&self.repo)
            .arg("-f")
            .arg(&compose_file)
            .args([
                "-p",
                &self.project,
                "--profile",
                "downloader",
                "--profile",
                "outsider",
            ])
            .args(["down", "-v", "--remove-orphans", "--rmi", "local"])
            .env("P2P_IMAGE", &self.image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.image])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!(
                "warning: project {} left behind: {}",
                self.project,
                left.join(", ")
            );
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(&read(path)).into_owned()
}

/// The value of `key=` in a `key=value` log event line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The event lines `[LEVEL] <event> ...` of a log, from `<event>` on.
fn events<'a>(log: &'a str, event: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    log.lines().filter_map(move |line| {
        let rest = &line[line.find("] ")? + 2..];
        rest.starts_with(&format!("{event} ")).then_some(rest)
    })
}

/// The host part of `ip:port`.
fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(ip, _)| ip)
}

/// The two demos take turns: each builds the same binaries and starts a dozen containers.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn docker_compose_demo_downloads_across_containers() {
    run_demo(false);
}

#[test]
fn docker_compose_demo_as_a_private_network_with_an_outsider() {
    run_demo(true);
}

/// The entry lines of a tags.txt (none when it does not exist).
fn tag_entries(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn run_demo(private: bool) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !docker_engine_answers() {
        eprintln!("skipping: no Docker engine answers (`docker info` failed)");
        return;
    }
    let Some(compose) = compose_command() else {
        eprintln!("skipping: neither `docker compose` nor `docker-compose` is available");
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let pid = std::process::id();
    let mode = if private { "p" } else { "o" };
    let project = format!("p2ptest{pid}{mode}");
    let image = format!("p2ptest{pid}{mode}:latest");
    let run_dir = tempfile::Builder::new()
        .prefix("p2p-docker-test-")
        .tempdir()
        .expect("a temporary folder for the peer folders");
    let teardown = Teardown {
        repo: repo.clone(),
        compose: compose.clone(),
        project: project.clone(),
        image: image.clone(),
    };

    // The demo, with its output passed on line by line (shown with --nocapture or on failure).
    let mut child = Command::new("bash")
        .arg("-c")
        .arg("exec \"$0\" demo 2>&1")
        .arg(repo.join("scripts/docker-demo.sh"))
        .current_dir(&repo)
        .env("COMPOSE_PROJECT_NAME", &project)
        .env("P2P_IMAGE", &image)
        .env("P2P_RUN_DIR", run_dir.path())
        .env("P2P_NET", "auto")
        .env("DEMO_KEEP_IMAGE", "0")
        .env("DEMO_FAILOVER", "1")
        .env("P2P_PRIVATE", if private { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run scripts/docker-demo.sh");
    let mut output = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.unwrap_or_default();
        println!("{line}");
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait().expect("wait for scripts/docker-demo.sh");
    assert!(status.success(), "scripts/docker-demo.sh failed: {status}");
    assert!(
        output.contains("Docker demo passed."),
        "the demo did not report success"
    );
    for line in output.lines() {
        if ["image  ", "cold start  ", "private  ", "outsider  "]
            .iter()
            .any(|m| line.contains(m))
        {
            eprintln!("{}", line.trim());
        }
    }

    let peer = |name: &str| run_dir.path().join(name);
    let (alice, bob, carol) = (peer("alice"), peer("bob"), peer("carol"));

    // 1. Every download is byte-identical to the original.
    for (file, owner) in [
        ("notes.txt", &alice),
        ("dataset.bin", &alice),
        ("archive.bin", &bob),
    ] {
        let original = read(&owner.join("served_files").join(file));
        let downloaded = read(&carol.join("downloads").join(file));
        assert!(
            original == downloaded,
            "carol's {file} ({} bytes) differs from the original ({} bytes)",
            downloaded.len(),
            original.len()
        );
    }

    // The addresses carol's listener recorded are the peers' containers: where their chunk
    // servers answered, as carol's client.log and their server.logs show.
    let client_log = read_text(&carol.join("client.log"));
    let fetched: Vec<&str> = events(&client_log, "fetched").collect();
    let source_of = |user: &str| {
        fetched
            .iter()
            .find(|l| field(l, "user") == Some(user) && field(l, "outcome") == Some("ok"))
            .and_then(|l| field(l, "source"))
            .unwrap_or_else(|| panic!("no chunk fetched from {user} in carol's client.log"))
    };
    let (alice_addr, bob_addr) = (source_of("alice"), source_of("bob"));
    assert_ne!(
        ip_of(alice_addr),
        ip_of(bob_addr),
        "alice and bob share an address"
    );

    // 2. dataset.bin came from both: each chunk server logged chunks of it served to carol.
    let mut carol_ips = Vec::new();
    for (name, folder) in [("alice", &alice), ("bob", &bob)] {
        let server_log = read_text(&folder.join("server.log"));
        let served: Vec<&str> = events(&server_log, "served")
            .filter(|l| {
                field(l, "chunk").is_some_and(|c| c.starts_with("dataset.bin_"))
                    && field(l, "outcome") == Some("ok")
            })
            .collect();
        assert!(
            !served.is_empty(),
            "{name}'s server.log has no `served chunk=dataset.bin_N ... outcome=ok` line:\n{server_log}"
        );
        carol_ips.extend(
            served
                .iter()
                .filter_map(|l| field(l, "peer").map(|p| ip_of(p).to_string())),
        );
    }
    carol_ips.sort_unstable();
    carol_ips.dedup();
    assert_eq!(
        carol_ips.len(),
        1,
        "alice and bob should both have served carol's one container address: {carol_ips:?}"
    );
    assert!(
        ![ip_of(alice_addr), ip_of(bob_addr)].contains(&carol_ips[0].as_str()),
        "carol's address {} is alice's or bob's",
        carol_ips[0]
    );
    let dataset_users: Vec<&str> = fetched
        .iter()
        .filter(|l| field(l, "content") == Some("dataset.bin") && field(l, "outcome") == Some("ok"))
        .filter_map(|l| field(l, "user"))
        .collect();
    assert!(
        dataset_users.contains(&"alice") && dataset_users.contains(&"bob"),
        "carol's dataset.bin chunks should come from alice and bob: {dataset_users:?}"
    );

    // 3. alice left in the middle of archive.bin: a transfer from her was cut, and the download
    // still completed, verified, with every chunk from a holder that stayed.
    let archive: Vec<&str> = fetched
        .iter()
        .copied()
        .filter(|l| field(l, "content") == Some("archive.bin"))
        .collect();
    assert!(
        archive
            .iter()
            .any(|l| field(l, "user") == Some("alice") && field(l, "outcome") != Some("ok")),
        "no cut transfer from alice in carol's client.log: was alice stopped mid-download?\n{}",
        archive.join("\n")
    );
    let mut chunks_ok: Vec<&str> = archive
        .iter()
        .filter(|l| field(l, "outcome") == Some("ok"))
        .filter_map(|l| field(l, "chunk"))
        .collect();
    chunks_ok.sort_unstable();
    chunks_ok.dedup();
    assert_eq!(
        chunks_ok,
        ["1", "2", "3", "4", "5"],
        "every chunk of archive.bin should have arrived:\n{}",
        archive.join("\n")
    );
    assert!(
        events(&client_log, "download").any(|l| field(l, "content") == Some("archive.bin")
            && field(l, "outcome") == Some("ok")
            && field(l, "verified") == Some("yes")),
        "carol's client.log has no verified, successful download of archive.bin:\n{client_log}"
    );

    // 4. bob's report.txt, sent to carol, was accepted by carol-sync (accept-from.txt lists
    // bob); alice's gift.txt, offered too, was not written.
    assert!(
        read(&bob.join("extra/report.txt")) == read(&carol.join("downloads/report.txt")),
        "carol's report.txt differs from the one bob sent"
    );
    assert!(
        !carol.join("downloads/gift.txt").exists(),
        "alice's offer was written without carol's consent"
    );
    assert!(read_text(&carol.join("offers.txt")).contains("gift.txt"));

    // 5. On a private network: the three hold one key, made from one passphrase; mallory, an
    // outsider without it, heard nothing it could read and got nothing.
    if private {
        let key = read(&alice.join("network.key"));
        for (name, folder) in [("bob", &bob), ("carol", &carol)] {
            assert!(
                read(&folder.join("network.key")) == key,
                "{name}'s network.key differs from alice's"
            );
        }
        let mallory = peer("mallory");
        assert!(
            !mallory.join("network.key").exists(),
            "mallory must have no key"
        );
        let seen = tag_entries(&mallory.join("tags.txt"));
        assert!(
            seen.is_empty(),
            "mallory's tags.txt lists entries of the private network:\n{}",
            seen.join("\n")
        );
        let stolen = mallory.join("stolen");
        assert!(
            !tag_entries(&stolen.join("tags.txt")).is_empty(),
            "mallory's downloader was given carol's tags.txt"
        );
        for part in ["downloads", "temp"] {
            assert_eq!(
                bytes_under(&mallory.join(part)) + bytes_under(&stolen.join(part)),
                0,
                "mallory holds bytes under {part}/"
            );
        }
        // What mallory's downloader logged: each holder named as on a private network, and
        // the download failed with 0 bytes.
        let mallory_log = read_text(&stolen.join("client.log"));
        for addr in [alice_addr, bob_addr] {
            assert!(
                mallory_log.contains(&format!(
                    "peer at {addr} is on a private network; this peer has no network key"
                )),
                "mallory's client.log does not say that {addr} is on a private network:\n{mallory_log}"
            );
        }
        assert!(
            events(&mallory_log, "download").any(|l| field(l, "content") == Some("dataset.bin")
                && field(l, "bytes") == Some("0")
                && field(l, "outcome") == Some("failed")),
            "mallory's client.log has no failed, 0-byte download of dataset.bin:\n{mallory_log}"
        );
        // And the chunk servers refused mallory's plaintext requests.
        for (name, folder) in [("alice", &alice), ("bob", &bob)] {
            let server_log = read_text(&folder.join("server.log"));
            let refused: Vec<&str> = events(&server_log, "refused")
                .filter(|l| field(l, "outcome") == Some("private_network"))
                .collect();
            assert!(
                refused
                    .iter()
                    .filter_map(|l| field(l, "peer"))
                    .any(|p| !carol_ips.contains(&ip_of(p).to_string())),
                "{name}'s server.log refused no request of mallory as private_network:\n{server_log}"
            );
        }
    } else {
        assert!(!alice.join("network.key").exists());
        assert!(!run_dir.path().join("mallory").exists());
    }

    // The demo tore down what it started (the guard would otherwise still remove it).
    let left = teardown.leftovers();
    assert!(
        left.is_empty(),
        "scripts/docker-demo.sh left behind: {}",
        left.join(", ")
    );
}
