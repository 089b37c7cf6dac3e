//! One machine of a whole-system test: a peer folder and the real programs started for it, the
//! part that a loopback peer ([`crate::loopback::Peer`]) and a network-namespace host
//! ([`crate::netns::Host`]) share. The only difference between the two is how a program is
//! launched: directly, or through `ip netns exec <namespace>` (which `exec`s the program, so the
//! [`Child`] handle is the program itself either way).
//!
//! Programs are started only through their command lines and observed only through their exit
//! status, output and the files of the peer folder, read with `shared` (`tags.txt` via
//! [`TagsIndex`], log events via [`Event`]). Every child is killed by its handle (its PID, never
//! a name) when stopped or when the node is dropped, and every wait is bounded.

use std::cell::{Cell, RefCell};
use std::fs::{self, File, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shared::digest::Digest;
use shared::events::Event;
use shared::tags::TagsIndex;

use crate::events::read_events;
use crate::files::{folder_report, tail, write_random_file};
use crate::process::{describe_output, kill_and_reap, Program};
use crate::wait::POLL;

/// Default bound on one `downloader` run.
pub const DOWNLOADER_TIMEOUT: Duration = Duration::from_secs(90);

/// One machine: a peer folder, where its chunk server answers, and the programs started on it.
pub struct Node {
    /// Name of the peer (and of its folder).
    pub name: String,
    /// Its peer folder.
    pub dir: PathBuf,
    chunk_addr: SocketAddr,
    /// The network namespace its programs run in; `None` for the test's own.
    netns: Option<String>,
    /// The test's deadline: no downloader run outlives it.
    deadline: Instant,
    /// Programs started and not yet stopped; killed and reaped on drop.
    children: RefCell<Vec<(Program, Child)>>,
    /// Counter naming the output files of successive downloader runs.
    runs: Cell<u32>,
}

impl Node {
    /// A node whose folder is `dir` (created, with an empty `served_files/`), whose chunk server
    /// answers at `chunk_addr`, whose programs run in `netns` (or here).
    pub fn new(
        name: &str,
        dir: PathBuf,
        chunk_addr: SocketAddr,
        netns: Option<String>,
        deadline: Instant,
    ) -> Node {
        fs::create_dir_all(dir.join(shared::DEFAULT_SHARE_DIR)).expect("create served_files");
        Node {
            name: name.to_owned(),
            dir,
            chunk_addr,
            netns,
            deadline,
            children: RefCell::new(Vec::new()),
            runs: Cell::new(0),
        }
    }

    /// Makes this node a member of the private network of `phrase`: writes the key that
    /// `downloader network join PHRASE` would (without the Argon2 cost of running it for every
    /// test: [`network_key`] derives each phrase once per test process).
    pub fn join_network(&self, phrase: &str) {
        network_key(phrase)
            .save(&self.dir)
            .expect("write network.key");
    }

    /// This node's peer ID (its identity is made if it has none yet).
    pub fn peer_id(&self) -> shared::trust::PeerId {
        shared::trust::Identity::load_or_create(&self.dir)
            .expect("identity.key")
            .id()
    }

    /// The network namespace its programs run in; `None` for the test's own.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Where its chunk server answers.
    pub fn chunk_addr(&self) -> SocketAddr {
        self.chunk_addr
    }

    /// `served_files/`.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.join(shared::DEFAULT_SHARE_DIR)
    }

    /// `downloads/`.
    pub fn downloads_dir(&self) -> PathBuf {
        self.dir.join(shared::DOWNLOADS_DIR)
    }

    /// `temp/`.
    pub fn temp_dir(&self) -> PathBuf {
        self.dir.join(shared::TEMP_DIR)
    }

    /// Writes `served_files/<name>` with `size` pseudo-random bytes from `seed`.
    pub fn write_share(&self, name: &str, size: u64, seed: u64) -> (PathBuf, Digest) {
        let path = self.share_dir().join(name);
        let digest = write_random_file(&path, size, seed);
        (path, digest)
    }

    /// `<program> --dir D <args>` (inside the node's namespace, if any), detached from stdin.
    fn command(&self, program: Program, args: &[&str], stdout: File, stderr: File) -> Command {
        let mut command = match &self.netns {
            None => Command::new(program.path()),
            Some(ns) => {
                let mut c =
                    Command::new(crate::netns::ip_binary().expect("checked by skip_reason"));
                c.args(["netns", "exec", ns]).arg(program.path());
                c
            }
        };
        command
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        command
    }

    /// Starts `program --dir D <args>` in the background, its stdout and stderr appended to
    /// `<program>.stdout` / `<program>.stderr` in the peer folder.
    pub fn start(&self, program: Program, args: &[&str]) {
        let stdout = self.append(&format!("{}.stdout", program.name()));
        let stderr = self.append(&format!("{}.stderr", program.name()));
        let child = self
            .command(program, args, stdout, stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} for {}: {e}", program.name(), self.name));
        self.children.borrow_mut().push((program, child));
    }

    fn append(&self, name: &str) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap_or_else(|e| panic!("cannot open {name}: {e}"))
    }

    /// Kills (SIGKILL, by its handle) and reaps every running instance of `program`.
    pub fn stop(&self, program: Program) {
        let mut children = self.children.borrow_mut();
        let (stopping, kept) = std::mem::take(&mut *children)
            .into_iter()
            .partition(|(p, _)| *p == program);
        *children = kept;
        for (_, mut child) in stopping {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// Kills every program of this node.
    pub fn stop_all(&self) {
        for (_, mut child) in std::mem::take(&mut *self.children.borrow_mut()) {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// The process id of the running `program`.
    pub fn pid_of(&self, program: Program) -> Option<u32> {
        self.children
            .borrow()
            .iter()
            .find(|(p, _)| *p == program)
            .map(|(_, c)| c.id())
    }

    /// Whether `program` was started and is still running; `Err` with its exit status if it
    /// exited on its own.
    pub fn check_running(&self, program: Program) -> Result<(), String> {
        let mut children = self.children.borrow_mut();
        let (_, child) = children
            .iter_mut()
            .find(|(p, _)| *p == program)
            .ok_or_else(|| format!("{} was never started", program.name()))?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(program, status)),
            Err(e) => Err(format!("cannot query {}: {e}", program.name())),
        }
    }

    /// `Ok` while every program started is still running; else which one exited, and its stderr.
    pub fn check_all_running(&self) -> Result<(), String> {
        for (program, child) in self.children.borrow_mut().iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.exited(*program, status));
            }
        }
        Ok(())
    }

    fn exited(&self, program: Program, status: ExitStatus) -> String {
        format!(
            "{} of {} exited: {status}; stderr:\n{}",
            program.name(),
            self.name,
            tail(&self.dir.join(format!("{}.stderr", program.name())), 4000)
        )
    }

    /// Runs `downloader --dir D <args>` to completion (bounded by [`DOWNLOADER_TIMEOUT`]).
    pub fn downloader(&self, args: &[&str]) -> Output {
        self.spawn_downloader(args).wait(DOWNLOADER_TIMEOUT)
    }

    /// Starts `downloader --dir D <args>` without waiting; its output goes to numbered files in
    /// the peer folder.
    pub fn spawn_downloader(&self, args: &[&str]) -> RunningDownloader {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stdout_path = self.dir.join(format!("downloader-{n}.stdout"));
        let stderr_path = self.dir.join(format!("downloader-{n}.stderr"));
        let child = self
            .command(
                Program::Downloader,
                args,
                File::create(&stdout_path).expect("create stdout file"),
                File::create(&stderr_path).expect("create stderr file"),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start downloader for {}: {e}", self.name));
        RunningDownloader {
            command: format!(
                "downloader (on {}) --dir {} {}",
                self.name,
                self.dir.display(),
                args.join(" ")
            ),
            child,
            stdout_path,
            stderr_path,
            deadline: self.deadline,
            started: Instant::now(),
        }
    }

    /// Starts `downloader --dir D <args>` on a pseudo-terminal, as a user at a terminal runs
    /// it: `script -qfec` (util-linux) runs it with stdin, stdout and stderr on a new terminal,
    /// and what that terminal shows goes to the returned run's stdout (its escape codes and
    /// `\r` redraws included); what [`RunningDownloader::type_line`] sends is typed on it.
    ///
    /// # Panics
    /// When `script` cannot be started (util-linux is missing).
    pub fn spawn_downloader_on_terminal(&self, args: &[&str]) -> RunningDownloader {
        assert!(self.netns.is_none(), "a terminal run is for loopback peers");
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stdout_path = self.dir.join(format!("downloader-{n}.terminal"));
        let stderr_path = self.dir.join(format!("downloader-{n}.stderr"));
        let quote = |arg: &str| format!("'{}'", arg.replace('\'', r"'\''"));
        let dir = self.dir.display().to_string();
        let mut line = vec![quote(&Program::Downloader.path().display().to_string())];
        line.extend(["--dir", dir.as_str()].iter().chain(args).map(|a| quote(a)));
        let child = Command::new("script")
            .args(["-qfec", &line.join(" "), "/dev/null"])
            .current_dir(&self.dir)
            .env("TERM", "xterm-256color")
            .env("COLUMNS", "100")
            .stdin(Stdio::piped())
            .stdout(File::create(&stdout_path).expect("create terminal file"))
            .stderr(File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `script` (util-linux) for {}: {e}", self.name)
            });
        RunningDownloader {
            command: format!("script -qfec \"{}\" /dev/null", line.join(" ")),
            child,
            stdout_path,
            stderr_path,
            deadline: self.deadline,
            started: Instant::now(),
        }
    }

    /// Its `tags.txt`, as the downloader would read it.
    pub fn tags(&self) -> Result<TagsIndex, String> {
        TagsIndex::load(&self.dir.join(shared::TAGS_FILE)).map_err(|e| e.to_string())
    }

    /// The events of `server.log`.
    pub fn server_events(&self) -> Vec<Event> {
        read_events(&self.dir.join(shared::SERVER_LOG))
    }

    /// The events of `client.log`.
    pub fn client_events(&self) -> Vec<Event> {
        read_events(&self.dir.join(shared::CLIENT_LOG))
    }

    /// The text of `<program>.stderr`.
    pub fn stderr_of(&self, program: Program) -> String {
        fs::read_to_string(self.dir.join(format!("{}.stderr", program.name()))).unwrap_or_default()
    }

    /// Bytes of downloads in transit: part files, and chunks received in place
    /// ([`crate::files::incoming_bytes`]).
    pub fn incoming_bytes(&self) -> u64 {
        crate::files::incoming_bytes(&self.temp_dir())
    }

    /// Its files and the tails of its output, logs and `tags.txt`, for failure diagnostics.
    pub fn report(&self, tail_bytes: usize) -> String {
        folder_report(&self.dir, tail_bytes)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A downloader started in the background; killed on drop if still running.
pub struct RunningDownloader {
    command: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    deadline: Instant,
    started: Instant,
}

impl RunningDownloader {
    /// Types `line` and Enter on the terminal of a run started by
    /// [`Peer::spawn_downloader_on_terminal`].
    ///
    /// # Panics
    /// When the run has no terminal to type on, or it is gone.
    pub fn type_line(&mut self, line: &str) {
        self.type_keys(&format!("{line}\n"));
    }

    /// Types `keys` on the terminal of a run started by [`Peer::spawn_downloader_on_terminal`],
    /// as they are: `"\t"` is Tab, `"\r"` Enter, `"\x1b[A"` the up-arrow, `"\x04"` Ctrl-D.
    ///
    /// # Panics
    /// When the run has no terminal to type on, or it is gone.
    pub fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("a run on a terminal");
        stdin
            .write_all(keys.as_bytes())
            .and_then(|()| stdin.flush())
            .expect("type on the terminal");
    }

    /// What the run has written to its stdout so far (its terminal, for a run on one).
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// Its process id, to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How long it has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Waits for it to exit, for at most `timeout` (and never past the test's deadline).
    ///
    /// # Panics
    /// On timeout, after killing it, with what it printed.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let status = kill_and_reap(&mut self.child)
                        .unwrap_or_else(|e| panic!("cannot reap `{}`: {e}", self.command));
                    panic!(
                        "`{}` did not finish within {timeout:?}; killed it.\n{}",
                        self.command,
                        describe_output(&self.output_so_far(status))
                    );
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => panic!("cannot wait for `{}`: {e}", self.command),
            }
        };
        self.output_so_far(status)
    }

    /// Kills it with SIGKILL (if it still runs) and reaps it; its exit status, which says
    /// whether the signal or an earlier exit of its own ended it.
    pub fn kill(mut self) -> ExitStatus {
        kill_and_reap(&mut self.child)
            .unwrap_or_else(|e| panic!("cannot kill `{}`: {e}", self.command))
    }

    /// What it printed so far (or in all, once it exited), with `status`.
    pub fn output_so_far(&self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: fs::read(&self.stdout_path).unwrap_or_default(),
            stderr: fs::read(&self.stderr_path).unwrap_or_default(),
        }
    }
}

impl Drop for RunningDownloader {
    fn drop(&mut self) {
        let _ = kill_and_reap(&mut self.child);
    }
}

/// The network key of `phrase`, derived once per test process and phrase.
pub fn network_key(phrase: &str) -> shared::trust::NetworkKey {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<String, shared::trust::NetworkKey>>> = OnceLock::new();
    let canonical = shared::trust::key::normalize_phrase(phrase).expect("a valid test phrase");
    let mut keys = KEYS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.entry(canonical.clone())
        .or_insert_with(|| shared::trust::NetworkKey::from_phrase(&canonical))
        .clone()
}

/// A passphrase for tests (any phrase of listed words works).
pub const TEST_PHRASE: &str = "abandon ability able about above absent";

/// Another network's passphrase for tests.
pub const OTHER_PHRASE: &str = "zoo zone youth young yellow year";
