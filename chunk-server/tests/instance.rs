//! One chunk server per peer folder, and its record of where it listens
//! (`DIR/.run/chunk-server.json`): real binaries, real signals.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::instance::ServerRecord;
use shared::peer_dir::PeerDir;
use testkit::client::legacy_fetch;
use testkit::files::pattern;
use testkit::instance::{assert_refused_as_second, start_recorded_chunk_server};
use testkit::ports::free_tcp_port;
use testkit::process::{signal, start_chunk_server_process as start, wait_exit, Program};
use testkit::wait::PATIENCE;

/// This package's own binary.
const BIN: &str = env!("CARGO_BIN_EXE_chunk-server");

#[test]
fn a_second_chunk_server_on_one_folder_refuses_and_the_first_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    let share = dir.join("served_files");
    fs::create_dir_all(&share).unwrap();
    let data = pattern(50_005);
    fs::write(share.join("song.mp3"), &data).unwrap();
    let first = start(&dir, &[]);

    let other_port = free_tcp_port(Ipv4Addr::LOCALHOST).to_string();
    let output = Command::new(BIN)
        .arg("--dir")
        .arg(&dir)
        .args(["--bind", "127.0.0.1", "--port", &other_port])
        .stdin(Stdio::null())
        .output()
        .expect("run chunk-server");
    assert_refused_as_second(&output, Program::ChunkServer, first.child.id(), &dir);

    let served: Vec<Vec<u8>> = (1..=5)
        .map(|i| legacy_fetch(first.addr, &format!("song.mp3_{i}")))
        .collect();
    assert!(served.concat() == data, "the first server no longer serves");
    let record = ServerRecord::read_live(&PeerDir::new(&dir)).unwrap();
    assert_eq!(record.map(|r| r.port), Some(first.addr.port()));
}

#[test]
fn the_record_names_the_port_actually_bound_and_goes_away_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, record) = start_recorded_chunk_server(tmp.path());
    assert_eq!(record.address, Ipv4Addr::LOCALHOST);
    assert_ne!(
        record.port, 0,
        "--port 0 is recorded as the port the system picked"
    );
    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, record.port)))
        .expect("the recorded port accepts connections");
    let path = ServerRecord::path(&PeerDir::new(tmp.path()));
    assert!(path.starts_with(tmp.path().join(".run")));

    signal(server.0.id(), "TERM");
    let exit = wait_exit(&mut server.0, PATIENCE);
    assert!(exit.is_some_and(|s| s.success()), "exit {exit:?}");
    assert!(!path.exists(), "the record outlived the server");
}

#[test]
fn a_killed_server_leaves_a_stale_record_that_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PeerDir::new(tmp.path());
    let (mut killed, _) = start_recorded_chunk_server(tmp.path());
    signal(killed.0.id(), "KILL");
    assert!(wait_exit(&mut killed.0, PATIENCE).is_some());
    assert!(
        ServerRecord::path(&dir).exists(),
        "kill -9 cleans nothing up"
    );
    assert_eq!(
        ServerRecord::read_live(&dir).unwrap(),
        None,
        "a dead server's record is not believed"
    );

    let (next, record) = start_recorded_chunk_server(tmp.path());
    assert_eq!(record.pid, next.0.id());
    assert!(wait_exit(&mut { next }.0, Duration::from_millis(300)).is_none());
}
