//! `DIR/peer.toml`: the four real programs started with nothing but `--dir` take their settings
//! from the peer folder's file; a flag on the command line beats it; a mistake in it stops the
//! program before it does anything, naming the file, the key and the line.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::instance::ServerRecord;
use testkit::instance::wait_for_record;
use testkit::prelude::*;
use testkit::process::{wait_exit, ChildGuard};
use testkit::wait::{poll_until, PATIENCE};

const PROGRAMS: [Program; 4] = [
    Program::Announcer,
    Program::Listener,
    Program::ChunkServer,
    Program::Downloader,
];

fn write_peer_toml(dir: &Path, text: &str) {
    fs::write(dir.join("peer.toml"), text).expect("write peer.toml");
}

/// The folder's live chunk-server record, once there is one.
fn record_of(dir: &Path) -> ServerRecord {
    wait_for_record(dir, PATIENCE).expect("the chunk server records where it listens")
}

#[test]
fn chunk_server_listens_where_peer_toml_says() {
    let net = TestNet::new(Duration::from_secs(60));
    let a = net.peer("a");
    let port = a.chunk_port();
    write_random_file(&a.dir.join("pub").join("notes.bin"), 1000, 1);
    write_peer_toml(
        &a.dir,
        &format!(
            "# alice\nbind = \"{}\"\nchunk-port = {port}\n\n[chunk-server]\nshare = [\"pub\"]\n",
            a.ip
        ),
    );
    // Started from the folder above with a relative --dir: the file's relative share is taken
    // from the file's folder, not from where the program runs.
    let stderr_path = net.root().join("chunk-server.stderr");
    let _server = ChildGuard(
        Command::new(Program::ChunkServer.path())
            .args(["--dir", "a"])
            .current_dir(net.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("create the stderr file"))
            .spawn()
            .expect("start chunk-server"),
    );
    let record = record_of(&a.dir);
    let stderr = || fs::read_to_string(&stderr_path).unwrap_or_default();
    assert_eq!(
        (record.address, record.port),
        (a.ip.into(), port),
        "{}",
        stderr()
    );
    TcpStream::connect(a.chunk_addr())
        .expect("connect to the chunk server at its peer.toml address");
    assert!(
        poll_until(PATIENCE, || {
            a.temp_dir()
                .join(".manifests")
                .join("notes.bin.json")
                .is_file()
        }),
        "a/pub/notes.bin not shared: {}",
        stderr()
    );
}

#[test]
fn a_flag_beats_peer_toml() {
    let net = TestNet::new(Duration::from_secs(60));
    let a = net.peer("a");
    let file_port = a.chunk_port();
    let flag_port = free_tcp_port(a.ip);
    write_peer_toml(
        &a.dir,
        &format!("bind = \"{}\"\nchunk-port = {file_port}\n", a.ip),
    );
    a.start(Program::ChunkServer, &["--port", &flag_port.to_string()]);
    let record = record_of(&a.dir);
    // The file's bind still applies: only the flag given is overridden.
    assert_eq!((record.address, record.port), (a.ip.into(), flag_port));
    TcpStream::connect(SocketAddr::from((a.ip, flag_port))).expect("connect at the flag's port");
    assert!(
        !tcp_listening(a.chunk_addr()),
        "nothing listens at the file's port"
    );
}

#[test]
fn announcer_listener_and_downloader_configured_by_peer_toml_alone() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let b = net.peer("b");
    let (original, digest) = a.write_share("notes.bin", 3000, 7);
    let udp = net.udp_port();
    // alice: everything through the file, one key of each kind (string, integer, array,
    // program table).
    write_peer_toml(
        &a.dir,
        &format!(
            "username = \"alice\"\nbind = \"{ip}\"\nannounce-port = {udp}\nchunk-port = {chunk}\n\
             broadcast = [\"127.255.255.255\"]\n\n[announcer]\ninterval = 1\n\n\
             [chunk-server]\nmax-rate = 10000000\n",
            ip = a.ip,
            chunk = a.chunk_port()
        ),
    );
    // bob: the listener keeps the default bind (0.0.0.0) to hear broadcasts, so his address is
    // only the downloader's; the broadcast is a plain string here.
    write_peer_toml(
        &b.dir,
        &format!(
            "announce-port = {udp}\nbroadcast = \"127.255.255.255\"\n\n[listener]\nverbose = true\n\n\
             [downloader]\nbind = \"{ip}\"\nmax-size = \"1K\"\n",
            ip = b.ip
        ),
    );
    a.start(Program::ChunkServer, &[]);
    a.start(Program::Announcer, &[]);
    b.start(Program::Listener, &[]);
    net.wait_for_entry(&b, &a, "alice", "notes.bin", digest);

    // [downloader] max-size: the file is more than it accepts.
    let out = b.downloader(&["get", "notes.bin"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        all_output(&out).contains("more than the 1024 bytes accepted (--max-size)"),
        "{}",
        describe_output(&out)
    );
    // The flag beats it; [downloader] bind still applies: alice's server sees bob's address.
    let out = b.downloader(&["get", "notes.bin", "--max-size", "1M"]);
    assert_success(&out, "bob downloads with --max-size over peer.toml's");
    assert_same_file(&original, &b.downloads_dir().join("notes.bin"));
    for event in wait_for_served_all(&net, &a, "notes.bin") {
        let peer = event.get("peer").unwrap_or_default();
        assert!(peer.starts_with(&format!("{}:", b.ip)), "{event}");
    }
}

/// Runs `program --dir DIR` (stdin closed), which must exit at once; its status and stderr.
fn run_to_exit(program: Program, dir: &Path, out_dir: &Path) -> (Option<i32>, String) {
    let stderr_path = out_dir.join(format!("{}.stderr", program.name()));
    let mut child = ChildGuard(
        Command::new(program.path())
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("create the stderr file"))
            .spawn()
            .expect("start the program"),
    );
    let status = wait_exit(&mut child.0, PATIENCE)
        .unwrap_or_else(|| panic!("{} started despite a bad peer.toml", program.name()));
    let stderr = fs::read_to_string(&stderr_path).expect("read stderr");
    (status.code(), stderr)
}

#[test]
fn a_mistake_in_peer_toml_stops_every_program_naming_the_key_and_line() {
    let net = TestNet::new(Duration::from_secs(60));
    let out_dir = net.folder("out");
    let cases = [
        (
            "bind = \"127.0.0.2\"\n\nchunk_prot = 5001\n",
            "line 3: unknown key \"chunk_prot\" (did you mean chunk-port?)",
        ),
        (
            "[announcer]\ninterval = 5\n[listner]\n",
            "line 3: unknown table [listner] (did you mean listener?)",
        ),
        (
            "announce-port = 99999\n",
            "line 1: announce-port: invalid value '99999' for '--port",
        ),
        (
            "peer = [\"a\",\n  5,\n  true]\n",
            "line 3: \"peer\" takes a string or a number, not a boolean",
        ),
        ("bind = \n", "line 1: "),
    ];
    for (i, (text, message)) in cases.into_iter().enumerate() {
        let dir = net.folder(&format!("bad{i}"));
        write_peer_toml(&dir, text);
        for program in PROGRAMS {
            if text.starts_with("announce-port")
                && matches!(program, Program::ChunkServer | Program::Downloader)
            {
                continue; // not their --port: its value is the announcer's and listener's to check
            }
            let name = program.name();
            let (code, stderr) = run_to_exit(program, &dir, &out_dir);
            let expected = format!("{name}: error: {}/peer.toml {message}", dir.display());
            assert_eq!(code, Some(2), "{name} with {text:?}: {stderr}");
            assert!(
                stderr.starts_with(&expected),
                "{name} with {text:?}:\n{stderr}\nexpected: {expected}"
            );
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            let left: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(left, ["peer.toml"], "{name} did something in its folder");
        }
    }
}

#[test]
fn each_program_checks_its_own_table() {
    let net = TestNet::new(Duration::from_secs(60));
    let out_dir = net.folder("out");
    for (program, key, value) in [
        (Program::Announcer, "intervl", "5"),
        (Program::Listener, "max-entries", "0"),
        (Program::ChunkServer, "share", "true"),
        (Program::Downloader, "idle_timeout", "5"),
    ] {
        let name = program.name();
        let dir = net.folder(&format!("own-{name}"));
        write_peer_toml(
            &dir,
            &format!("bind = \"127.0.0.1\"\n[{name}]\n{key} = {value}\n"),
        );
        let (code, stderr) = run_to_exit(program, &dir, &out_dir);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        let expected = format!("{name}: error: {}/peer.toml line 3: ", dir.display());
        assert!(
            stderr.starts_with(&expected) && stderr.contains(key),
            "{name}: {stderr}"
        );
        // The other programs leave that table alone (what they read is fine): the downloader
        // lists nothing here, and shows it used the file's folder.
        if program != Program::Downloader {
            let out = Command::new(Program::Downloader.path())
                .arg("--dir")
                .arg(&dir)
                .arg("list")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_success(&out, &format!("downloader list beside a bad [{name}]"));
        }
    }
    // A good [downloader] table is accepted.
    let dir = net.folder("good");
    write_peer_toml(
        &dir,
        "[downloader]\nidle-timeout = 2.5\nendgame-after = 1\nmax-size = \"1G\"\nmin-free = 0\nquiet = true\n",
    );
    let out = Command::new(Program::Downloader.path())
        .arg("--dir")
        .arg(&dir)
        .args(["list", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "downloader list with a good [downloader] table");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn help_mentions_peer_toml_before_the_examples() {
    for program in PROGRAMS {
        let out = Command::new(program.path()).arg("--help").output().unwrap();
        assert_success(&out, "--help");
        let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        let note = help
            .find("DIR/peer.toml")
            .expect("--help names DIR/peer.toml");
        let examples = help.find("Examples:").expect("--help has examples");
        assert!(note < examples, "{help}");
        assert!(
            help[note..examples].contains(&format!("[{}] table", program.name()))
                && help[note..examples].contains("A flag given here overrides the file."),
            "{help}"
        );
    }
}
