//! The real programs as processes: where their binaries are, guards that kill a child by its
//! handle (its PID, never a name) when a test ends, signals, and reading what a child printed.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shared::events::Event;

use crate::events::{matching, read_events};
use crate::ports::free_tcp_port;
use crate::wait::poll_until;

/// The four programs under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `announcer`
    Announcer,
    /// `listener`
    Listener,
    /// `chunk-server`
    ChunkServer,
    /// `downloader`
    Downloader,
}

impl Program {
    /// The binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Announcer => "announcer",
            Program::Listener => "listener",
            Program::ChunkServer => "chunk-server",
            Program::Downloader => "downloader",
        }
    }

    /// The binary, beside the test executable's `deps/` folder.
    ///
    /// `env!("CARGO_BIN_EXE_<name>")` only finds the binaries of the test's own package; the
    /// others are found here, where `cargo test --workspace` builds every binary before any test
    /// runs.
    ///
    /// # Panics
    /// When it has not been built.
    pub fn path(self) -> PathBuf {
        let exe = std::env::current_exe().expect("path of the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps/");
        let path = profile_dir.join(format!("{}{}", self.name(), std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "binary {} not found: run `cargo test --workspace` (or `cargo build --workspace` \
             first), which builds every program before the tests run",
            path.display()
        );
        path
    }
}

/// A child process killed (through its handle) and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The program `name` (`ip`, `tcpdump`): on `PATH`, or in the usual sbin folders (not always
/// on a user's `PATH`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Kills `child` if it still runs and reaps it; its exit status.
///
/// # Errors
/// When waiting for it fails.
pub fn kill_and_reap(child: &mut Child) -> std::io::Result<ExitStatus> {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    child.wait()
}

/// Sends `signal` (`"INT"`, `"TERM"`, `"KILL"`) to the process `pid`, by its id only.
///
/// # Panics
/// On an unknown signal name, or when the signal cannot be sent.
pub fn signal(pid: u32, signal: &str) {
    let number = match signal.trim_start_matches('-') {
        "INT" => libc::SIGINT,
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        other => panic!("unknown signal {other}"),
    };
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) with a child's pid and a valid signal number has no memory effects.
    let sent = unsafe { libc::kill(pid, number) };
    assert_eq!(sent, 0, "kill -{signal} {pid} failed");
}

/// Status, stdout and stderr of a finished program, for failure messages.
pub fn describe_output(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Panics unless the program exited 0.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: expected exit status 0\n{}",
        describe_output(output)
    );
}

/// The path `downloader get` printed as the last line of stdout, resolved against `dir` when
/// relative.
pub fn printed_path(output: &Output, dir: &Path) -> PathBuf {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("no path printed on stdout\n{}", describe_output(output)));
    dir.join(last)
}

/// stdout and stderr together, for looking for a message wherever the program printed it.
pub fn all_output(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A chunk-server binary started by [`start_chunk_server_process`]; killed (by its handle) and
/// reaped on drop.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its peer folder.
    pub dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// The text of its `server.log`.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// What it printed on stderr.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The events logged so far.
    pub fn events(&self) -> Vec<Event> {
        read_events(&self.dir.join("server.log"))
    }

    /// Waits for an event with all of `fields`; panics with the log when none comes.
    pub fn expect_event(&self, name: &str, fields: &[(&str, &str)]) {
        let found = poll_until(Duration::from_secs(15), || {
            !matching(&self.events(), name, fields).is_empty()
        });
        assert!(
            found,
            "no `{name}` event with {fields:?} in server.log:\n{}",
            self.log_text()
        );
    }

    /// Waits for a `refused outcome=<outcome> chunk=<chunk>` event.
    pub fn expect_refused(&self, outcome: &str, chunk: &str) {
        self.expect_event("refused", &[("outcome", outcome), ("chunk", chunk)]);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }

    /// Sends `signal` (`"TERM"`, `"INT"`) to this child, by its process id only.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// The events named `name` whose `outcome` is `outcome` and whose peer is at `ip`.
    pub fn count_events(&self, name: &str, outcome: &str, ip: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| {
                e.name == name
                    && e.get("outcome") == Some(outcome)
                    && e.get("peer")
                        .is_some_and(|p| p.starts_with(&format!("{ip}:")))
            })
            .count()
    }
}

/// Starts the chunk-server binary on a free loopback port with `dir` as its peer folder (stderr
/// goes to `dir/stderr.txt`) and waits until it logs that its first scan of the shares is
/// complete (it listens from the start, but hashes in the background): every file shared at
/// start is then servable.
///
/// # Panics
/// When it does not start within 20 s.
pub fn start_chunk_server_process(dir: &Path, extra: &[&str]) -> ServerProcess {
    fs::create_dir_all(dir).expect("create the peer folder");
    let port = free_tcp_port(Ipv4Addr::LOCALHOST);
    let child = Command::new(Program::ChunkServer.path())
        .arg("--dir")
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr.txt")).expect("create stderr.txt"))
        .spawn()
        .expect("start chunk-server");
    let mut server = ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: dir.to_owned(),
    };
    let ready = poll_until(Duration::from_secs(20), || {
        server.log_text().contains(chunk_server::FIRST_SCAN_DONE)
            || server.child.try_wait().ok().flatten().is_some()
    });
    assert!(
        ready && server.child.try_wait().expect("query the child").is_none(),
        "chunk-server did not start; stderr:\n{}",
        server.stderr_text()
    );
    server
}

/// Runs `command` to completion with stdin closed; its output.
///
/// # Panics
/// When it cannot be started.
pub fn output_of(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the program")
}

/// Starts `command` in the background, stdin and stdout closed, stderr to `stderr`; killed by
/// its handle when the guard drops.
///
/// # Panics
/// When it cannot be started.
pub fn spawn_guarded(command: &mut Command, stderr: impl Into<Stdio>) -> ChildGuard {
    use Stdio;
    ChildGuard(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the program"),
    )
}

/// Waits at most `timeout` for `child` to exit by itself; its status, `None` if it still runs.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(timeout, || {
        status = child.try_wait().expect("query the child");
        status.is_some()
    });
    status
}

/// Sends `name` (`"TERM"`, `"INT"`) to `child`, by its process id, and returns how long it
/// took to exit, or `None` if it still runs after `limit`.
pub fn time_to_exit_after(child: &mut ChildGuard, name: &str, limit: Duration) -> Option<Duration> {
    signal(child.0.id(), name);
    let signalled = Instant::now();
    wait_exit(&mut child.0, limit).map(|_| signalled.elapsed())
}

/// Asserts that a program failed with exit status `code` and printed one line on stderr,
/// containing `message`.
pub fn assert_failed_once_with(output: &Output, code: i32, message: &str) {
    assert_eq!(output.status.code(), Some(code));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(message), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "printed once: {stderr}");
}
