//! `scripts/peer.sh DIR`: one command starts a whole peer (chunk server, announcer and listener
//! in the background, the downloader's prompt in the foreground) configured by `DIR/peer.toml`
//! alone, which another peer downloads from; it stops exactly what it started when the prompt
//! ends or on SIGTERM, and a second one on the same folder refuses without disturbing the first.
//!
//! The script runs under `bash` with the binaries of this build (`P2P_BIN_DIR`), its stdin a
//! pipe the test holds (the prompt's input).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::loopback::Peer;
use testkit::prelude::*;

/// The script under test.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer.sh")
}

/// `peer.toml` for `peer`: its address, the test's ports, the loopback broadcast, a username,
/// and a listener on 0.0.0.0 (a socket bound to 127.0.0.x hears no broadcast).
fn write_peer_toml(net: &TestNet, peer: &Peer, username: &str) {
    let toml = format!(
        "username = \"{username}\"\n\
         bind = \"{ip}\"\n\
         announce-port = {udp}\n\
         chunk-port = {tcp}\n\
         broadcast = [\"127.255.255.255\"]\n\
         \n\
         [listener]\n\
         bind = \"0.0.0.0\"\n",
        ip = peer.ip,
        udp = net.udp_port(),
        tcp = peer.chunk_port(),
    );
    fs::write(peer.dir.join("peer.toml"), toml).expect("write peer.toml");
}

/// A running `peer.sh`, killed (by its PID) on drop if still running.
struct PeerSh {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl PeerSh {
    /// `bash scripts/peer.sh DIR`, its output in `DIR/../<name>.peer-sh.{stdout,stderr}`.
    fn start(net: &TestNet, dir: &Path, name: &str) -> PeerSh {
        let stdout = net.root().join(format!("{name}.peer-sh.stdout"));
        let stderr = net.root().join(format!("{name}.peer-sh.stderr"));
        let bin_dir = Program::Downloader.path();
        let mut child = Command::new("bash")
            .arg(script())
            .arg(dir)
            .env(
                "P2P_BIN_DIR",
                bin_dir.parent().expect("the binaries' folder"),
            )
            .stdin(Stdio::piped())
            .stdout(File::create(&stdout).expect("create stdout file"))
            .stderr(File::create(&stderr).expect("create stderr file"))
            .spawn()
            .expect("start bash scripts/peer.sh");
        let stdin = child.stdin.take();
        PeerSh {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- peer.sh stdout ---\n{}\n--- peer.sh stderr ---\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to peer.sh's stdin");
    }

    /// Waits (bounded) for it to exit.
    fn wait(&mut self, net: &TestNet) -> ExitStatus {
        net.wait_until(WAIT, "peer.sh exits", || {
            self.child
                .try_wait()
                .expect("query peer.sh")
                .ok_or_else(|| self.output())
        })
    }
}

impl Drop for PeerSh {
    fn drop(&mut self) {
        let _ = kill_and_reap(&mut self.child);
    }
}

/// The programs peer.sh reports running for `dir` (`DIR/logs/peer.pids`), once all four do
/// (the last one is `downloader sync`).
fn wait_for_pids(net: &TestNet, dir: &Path, peer_sh: &PeerSh) -> Vec<(String, u32)> {
    let pids = net.wait_until(WAIT, "peer.sh writes logs/peer.pids", || {
        let text = fs::read_to_string(dir.join("logs/peer.pids"))
            .map_err(|e| format!("{e}\n{}", peer_sh.output()))?;
        let pids: Vec<(String, u32)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(name, pid)| (name.to_owned(), pid.trim().parse().expect("a pid")))
            .collect();
        (pids.len() == 4).then_some(pids).ok_or(text)
    });
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["chunk-server", "announcer", "listener", "downloader"]
    );
    for (name, pid) in &pids {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("the program runs");
        assert_eq!(
            exe.file_name().and_then(|n| n.to_str()),
            Some(name.as_str()),
            "pid {pid} of {name} runs {}",
            exe.display()
        );
        // And it is the folder's instance: its lock holds its pid.
        let lock = fs::read_to_string(dir.join(format!(".run/{name}.lock"))).unwrap_or_default();
        assert_eq!(lock.trim(), pid.to_string(), "{name}'s lock");
    }
    pids
}

/// Whether process `pid` exists (a zombie counts as gone: it has stopped).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

fn wait_all_gone(net: &TestNet, pids: &[(String, u32)]) {
    net.wait_until(WAIT, "every program peer.sh started has stopped", || {
        let left: Vec<_> = pids.iter().filter(|(_, pid)| alive(*pid)).collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
}

/// A process the test started that peer.sh must leave alone.
fn bystander() -> Child {
    Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("start sleep")
}

#[test]
fn peer_sh_runs_a_peer_others_download_from_and_stops_exactly_what_it_started() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let b = net.peer("b");
    let (original, digest) = a.write_share("shared.bin", 300_007, 11);
    write_peer_toml(&net, &a, "alice");
    let mut bystander = bystander();

    let mut peer_sh = PeerSh::start(&net, &a.dir, "a");
    let pids = wait_for_pids(&net, &a.dir, &peer_sh);

    // Bob, started by hand, hears alice and downloads from her.
    let broadcast = net.broadcast().to_string();
    b.start_listener(&["--broadcast", &broadcast]);
    net.wait_for_entry(&b, &a, "alice", "shared.bin", digest);
    let out = b.downloader(&["get", "shared.bin"]);
    assert_success(&out, "bob downloads shared.bin from alice's peer.sh");
    assert_same_file(&original, &b.downloads_dir().join("shared.bin"));

    // The prompt in the foreground is alice's downloader: it lists what her listener heard.
    peer_sh.type_line("list");
    net.wait_until(WAIT, "alice's prompt lists shared.bin", || {
        let out = fs::read_to_string(&peer_sh.stdout).unwrap_or_default();
        out.contains("shared.bin").then_some(()).ok_or(out)
    });
    for name in ["chunk-server", "announcer", "listener"] {
        let log = a.dir.join(format!("logs/{name}.log"));
        assert!(
            fs::read_to_string(&log).is_ok_and(|t| t.contains("=== peer.sh: ")),
            "{} holds no output of {name}",
            log.display()
        );
    }

    // End of input ends the prompt, and peer.sh stops the rest.
    drop(peer_sh.stdin.take());
    let status = peer_sh.wait(&net);
    assert_eq!(status.code(), Some(0), "{}", peer_sh.output());
    wait_all_gone(&net, &pids);
    assert!(
        !a.dir.join("logs/peer.pids").exists(),
        "logs/peer.pids is removed once they are stopped"
    );
    // Stopped cleanly: the chunk server removed its record, the announcer said goodbye.
    assert!(!a.dir.join(".run/chunk-server.json").exists());
    net.wait_until(WAIT, "bob's tags.txt forgets alice (her goodbye)", || {
        let tags = b.tags()?;
        tags.entries
            .is_empty()
            .then_some(())
            .ok_or_else(|| tags.to_string())
    });
    // Nothing else was touched.
    b.check_running(Program::Listener)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        bystander.try_wait().expect("query sleep").is_none(),
        "a process peer.sh did not start was stopped"
    );
    let _ = kill_and_reap(&mut bystander);
}

#[test]
fn peer_sh_refuses_a_folder_in_use_and_stops_on_sigterm() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    a.write_share("x.txt", 1_000, 1);
    write_peer_toml(&net, &a, "alice");
    let mut bystander = bystander();

    let mut first = PeerSh::start(&net, &a.dir, "first");
    let pids = wait_for_pids(&net, &a.dir, &first);

    // A second one on the same folder: its chunk server refuses, it says so and gives up.
    let mut second = PeerSh::start(&net, &a.dir, "second");
    let status = second.wait(&net);
    assert_eq!(status.code(), Some(1), "{}", second.output());
    let said = fs::read_to_string(&second.stderr).unwrap_or_default();
    assert!(
        said.contains("chunk-server did not start") && said.contains("already serving"),
        "{}",
        second.output()
    );
    // The first peer runs on, untouched, and still knows its programs.
    for (name, pid) in &pids {
        assert!(
            alive(*pid),
            "{name} (pid {pid}) of the first peer.sh stopped"
        );
    }
    assert!(a.dir.join("logs/peer.pids").exists());

    let started = Instant::now();
    signal(first.child.id(), "TERM");
    let status = first.wait(&net);
    assert_eq!(status.code(), Some(143), "{}", first.output());
    wait_all_gone(&net, &pids);
    eprintln!(
        "peer.sh stopped everything {:?} after SIGTERM",
        started.elapsed()
    );
    assert!(
        bystander.try_wait().expect("query sleep").is_none(),
        "a process peer.sh did not start was stopped"
    );
    let _ = kill_and_reap(&mut bystander);
}
