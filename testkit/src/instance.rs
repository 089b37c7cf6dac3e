//! The peer folder's run-time state as the tests see it: the chunk server's record of where it
//! listens ([`shared::instance::ServerRecord`]), and the refusal of a second program of one
//! kind on one folder.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shared::instance::ServerRecord;
use shared::peer_dir::PeerDir;

use crate::process::{describe_output, ChildGuard, Program};
use crate::wait::poll_until;

/// The folder's live chunk-server record, waiting at most `timeout` for one to appear.
pub fn wait_for_record(dir: &Path, timeout: Duration) -> Option<ServerRecord> {
    let mut record = None;
    poll_until(timeout, || {
        record = ServerRecord::read_live(&PeerDir::new(dir)).ok().flatten();
        record.is_some()
    });
    record
}

/// `chunk-server --dir DIR --bind 127.0.0.1 --port 0` (a port the system picks), stdout and
/// stderr closed; killed by its handle when the guard drops. Returns once its record names
/// where it listens.
///
/// # Panics
/// When it does not record its address within 20 s.
pub fn start_recorded_chunk_server(dir: &Path) -> (ChildGuard, ServerRecord) {
    let child = ChildGuard(
        Command::new(Program::ChunkServer.path())
            .arg("--dir")
            .arg(dir)
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chunk-server"),
    );
    let record = wait_for_record(dir, Duration::from_secs(20))
        .expect("chunk-server wrote no record of where it listens");
    assert_eq!(record.pid, child.0.id(), "the record names another process");
    (child, record)
}

/// Asserts that `output` is that of a `program` refused because the process `pid` already
/// serves `dir`: exit status 1 and exactly one line on stderr saying so.
pub fn assert_refused_as_second(output: &Output, program: Program, pid: u32, dir: &Path) {
    let name = program.name();
    let expected = format!(
        "{name}: error: another {name} (pid {pid}) is already serving {}\n",
        dir.display()
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(output));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        expected,
        "{}",
        describe_output(output)
    );
}
