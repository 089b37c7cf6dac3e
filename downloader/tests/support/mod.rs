//! Harness for the process-level end-to-end tests: real binaries, loopback peers, temp folders.
//!
//! A [`TestNet`] is one test's private network: its own UDP announce port, a broadcast target on
//! `127.255.255.255`, and a temporary root holding one folder per [`Peer`]. Each peer gets its
//! own loopback IP (`127.0.0.2`, `127.0.0.3`, …) and a TCP port found free on that IP, so tests
//! running in parallel never collide even when they reuse an IP.
//!
//! Programs are started only through their command lines (docs/ARCHITECTURE.md) and observed
//! only through their exit status, output and the files of the peer folder, read with `shared`
//! (`tags.txt` via [`TagsIndex`], log events via [`Event`]). Every child is killed by its handle
//! when its [`Peer`] is dropped, and every wait is bounded: nothing here can hang a test.
//!
//! When a test panics, dropping its [`TestNet`] prints every peer's stderr, logs and `tags.txt`.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod legacy;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use shared::digest::{Digest, Hasher};
use shared::events::Event;
use shared::tags::{TagEntry, TagsIndex};

/// How often every wait polls its condition.
pub const POLL: Duration = Duration::from_millis(50);

/// Announce interval given to every test announcer: short, so that nothing waits a minute.
pub const ANNOUNCE_INTERVAL_SECS: u64 = 1;

/// Default bound on one `downloader` run.
pub const DOWNLOADER_TIMEOUT: Duration = Duration::from_secs(90);

/// Default bound on waiting for something to appear (an index entry, a log line).
pub const WAIT: Duration = Duration::from_secs(30);

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

/// One test's private network of peers.
pub struct TestNet {
    root: tempfile::TempDir,
    udp_port: u16,
    next_ip: Cell<u8>,
    /// Folders of the peers made so far, for the diagnostics printed on failure.
    peer_dirs: RefCell<Vec<PathBuf>>,
    deadline: Instant,
}

impl TestNet {
    /// A new network whose test must finish within `budget`: every wait and every downloader run
    /// is cut at that deadline.
    pub fn new(budget: Duration) -> TestNet {
        TestNet {
            root: tempfile::Builder::new()
                .prefix("p2p-e2e-")
                .tempdir()
                .expect("create temp dir"),
            udp_port: free_udp_port(),
            next_ip: Cell::new(2),
            peer_dirs: RefCell::new(Vec::new()),
            deadline: Instant::now() + budget,
        }
    }

    /// The UDP port announcements go to.
    pub fn udp_port(&self) -> u16 {
        self.udp_port
    }

    /// Where announcers send: the loopback broadcast address at the test's UDP port.
    pub fn broadcast(&self) -> SocketAddr {
        SocketAddr::from(([127, 255, 255, 255], self.udp_port))
    }

    /// The temp root, for files that belong to no peer.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The next unused loopback IP of this network.
    pub fn next_ip(&self) -> Ipv4Addr {
        let n = self.next_ip.get();
        assert!(n < 255, "too many peers in one test");
        self.next_ip.set(n + 1);
        Ipv4Addr::new(127, 0, 0, n)
    }

    /// A folder inside the root that shows up in the failure diagnostics.
    pub fn folder(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        fs::create_dir_all(&dir).expect("create folder");
        self.peer_dirs.borrow_mut().push(dir.clone());
        dir
    }

    /// A new peer with its own IP, folder (`<root>/<name>`, with an empty `served_files/`) and a
    /// chunk-server port free on its IP.
    pub fn peer(&self, name: &str) -> Peer {
        let ip = self.next_ip();
        let dir = self.folder(name);
        fs::create_dir_all(dir.join(shared::DEFAULT_SHARE_DIR)).expect("create served_files");
        Peer {
            name: name.to_owned(),
            ip,
            chunk_port: free_tcp_port(ip),
            dir,
            udp_port: self.udp_port,
            broadcast: self.broadcast(),
            deadline: self.deadline,
            children: Vec::new(),
            runs: Cell::new(0),
        }
    }

    /// Polls `cond` every [`POLL`] until it returns `Ok`, for at most `timeout` (and never past
    /// the test's deadline). `Err` carries a description of what was seen instead.
    ///
    /// # Panics
    /// On timeout, with `what`, the last thing `cond` saw, and every peer's diagnostics.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl FnMut() -> Result<T, String>,
    ) -> T {
        wait_until((Instant::now() + timeout).min(self.deadline), what, cond)
    }

    /// Waits until `viewer`'s `tags.txt` lists `user` with all five chunks of `content` at
    /// `holder`'s chunk server, identified by `sha256`, and returns the entry.
    ///
    /// The digest is part of the wait, not only of the check: an entry without it can show up
    /// for a moment while the holder's chunk server is still writing the manifest.
    pub fn wait_for_entry(
        &self,
        viewer: &Peer,
        holder: &Peer,
        user: &str,
        content: &str,
        sha256: Digest,
    ) -> TagEntry {
        let addr = holder.chunk_addr();
        self.wait_until(
            WAIT,
            &format!(
                "{}/tags.txt lists user {user} at {addr} with chunks 12345 of {content:?} \
                 (sha256 {sha256})",
                viewer.name
            ),
            || {
                let tags = viewer.tags()?;
                tags.entries
                    .iter()
                    .find(|e| {
                        e.user == user
                            && e.addr == addr
                            && e.content == content
                            && e.chunks == ChunkSet::ALL
                            && e.sha256 == Some(sha256)
                    })
                    .cloned()
                    .ok_or_else(|| format!("tags.txt is:\n{tags}"))
            },
        )
    }

    /// Everything useful to read after a failure: each folder's files, stderr of each program,
    /// logs and `tags.txt` (tails of them).
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for dir in self.peer_dirs.borrow().iter() {
            let _ = writeln!(out, "===== {} =====", dir.display());
            let mut files = Vec::new();
            list_files(dir, &mut files);
            for (path, len) in &files {
                let rel = path.strip_prefix(dir).unwrap_or(path);
                let _ = writeln!(out, "  {:>12}  {}", len, rel.display());
            }
            for (path, _) in &files {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let wanted = name.ends_with(".stderr")
                    || name.ends_with(".stdout")
                    || name.ends_with(".log")
                    || name == shared::TAGS_FILE;
                if wanted && path.parent() == Some(dir.as_path()) {
                    let _ = writeln!(out, "----- {name} (tail) -----\n{}", tail(path, 6000));
                }
            }
        }
        out
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\n{}", self.diagnostics());
        }
    }
}

/// One peer: an IP, a folder, and the programs started for it.
pub struct Peer {
    /// Name of the peer (and of its folder).
    pub name: String,
    /// Its loopback IP: its programs bind here.
    pub ip: Ipv4Addr,
    /// The TCP port its chunk server listens on (and its announcer announces).
    pub chunk_port: u16,
    /// Its peer folder.
    pub dir: PathBuf,
    udp_port: u16,
    broadcast: SocketAddr,
    deadline: Instant,
    /// Programs started and not yet stopped; killed and reaped on drop.
    children: Vec<(Program, Child)>,
    /// Counter naming the output files of successive downloader runs.
    runs: Cell<u32>,
}

impl Peer {
    /// Where its chunk server answers.
    pub fn chunk_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.chunk_port))
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

    /// `chunk-server --dir D --bind IP --port P [--share S]... [extra]`.
    pub fn start_chunk_server(&mut self, shares: &[&Path], extra: &[&str]) {
        let mut args = vec![
            "--bind".to_owned(),
            self.ip.to_string(),
            "--port".to_owned(),
            self.chunk_port.to_string(),
        ];
        for share in shares {
            args.push("--share".to_owned());
            args.push(share.to_str().expect("UTF-8 path").to_owned());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.start(Program::ChunkServer, &args);
        // Return once it listens (or has exited, for tests of failures), so that a download
        // started next does not find the port closed: downloads skip an unreachable holder.
        let until = Instant::now() + Duration::from_secs(10);
        while !tcp_listening(self.chunk_addr())
            && self.check_running(Program::ChunkServer).is_ok()
            && Instant::now() < until
        {
            std::thread::sleep(POLL);
        }
    }

    /// `announcer` bound to this peer's IP, broadcasting to the test's UDP port every
    /// `interval_secs`, announcing this peer's chunk port.
    pub fn start_announcer(&mut self, username: &str, interval_secs: u64) {
        let args = [
            "--bind".to_owned(),
            self.ip.to_string(),
            "--username".to_owned(),
            username.to_owned(),
            "--broadcast".to_owned(),
            self.broadcast.to_string(),
            "--port".to_owned(),
            self.udp_port.to_string(),
            "--interval".to_owned(),
            interval_secs.to_string(),
            "--chunk-port".to_owned(),
            self.chunk_port.to_string(),
        ];
        self.start(Program::Announcer, &args);
    }

    /// `listener --port <udp> [extra]`, bound to 0.0.0.0 (the default) to hear broadcasts.
    pub fn start_listener(&mut self, extra: &[&str]) {
        let mut args = vec!["--port".to_owned(), self.udp_port.to_string()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.start(Program::Listener, &args);
    }

    /// Chunk server (sharing `shares`, or `served_files/` when empty), announcer and listener.
    pub fn start_all(&mut self, username: &str, shares: &[&Path]) {
        self.start_chunk_server(shares, &[]);
        self.start_announcer(username, ANNOUNCE_INTERVAL_SECS);
        self.start_listener(&[]);
    }

    fn start(&mut self, program: Program, args: &[String]) {
        let stdout = self.output_file(&format!("{}.stdout", program.name()), true);
        let stderr = self.output_file(&format!("{}.stderr", program.name()), true);
        let child = Command::new(program.path())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} for {}: {e}", program.name(), self.name));
        self.children.push((program, child));
    }

    fn output_file(&self, name: &str, append: bool) -> File {
        OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(self.dir.join(name))
            .unwrap_or_else(|e| panic!("cannot create {name}: {e}"))
    }

    /// Kills (SIGKILL) and reaps every running instance of `program`.
    pub fn stop(&mut self, program: Program) {
        let (stopping, kept) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(p, _)| *p == program);
        self.children = kept;
        for (_, mut child) in stopping {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// Kills every program of this peer.
    pub fn stop_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// Whether `program` was started and is still running; `Err` with its exit status if it
    /// exited on its own.
    pub fn check_running(&mut self, program: Program) -> Result<(), String> {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(p, _)| *p == program)
            .ok_or_else(|| format!("{} was never started", program.name()))?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} of {} exited: {status}; stderr:\n{}",
                program.name(),
                self.name,
                tail(&self.dir.join(format!("{}.stderr", program.name())), 4000)
            )),
            Err(e) => Err(format!("cannot query {}: {e}", program.name())),
        }
    }

    /// Runs `downloader --dir D <args>` to completion (bounded by [`DOWNLOADER_TIMEOUT`]).
    pub fn downloader(&self, args: &[&str]) -> Output {
        self.spawn_downloader(args).wait(DOWNLOADER_TIMEOUT)
    }

    /// Starts `downloader --dir D <args>` without waiting; its output goes to numbered files.
    pub fn spawn_downloader(&self, args: &[&str]) -> RunningDownloader {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stdout_path = self.dir.join(format!("downloader-{n}.stdout"));
        let stderr_path = self.dir.join(format!("downloader-{n}.stderr"));
        let child = Command::new(Program::Downloader.path())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout file"))
            .stderr(File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start downloader for {}: {e}", self.name));
        RunningDownloader {
            command: format!("downloader --dir {} {}", self.dir.display(), args.join(" ")),
            child,
            stdout_path,
            stderr_path,
            deadline: self.deadline,
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
}

impl Drop for Peer {
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
}

impl RunningDownloader {
    /// Its process id, to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
                        describe_output(&self.read_output(status))
                    );
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => panic!("cannot wait for `{}`: {e}", self.command),
            }
        };
        self.read_output(status)
    }

    fn read_output(&self, status: ExitStatus) -> Output {
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

/// Kills `child` if it still runs and reaps it; its exit status.
pub fn kill_and_reap(child: &mut Child) -> std::io::Result<ExitStatus> {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    child.wait()
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

/// Polls `cond` every [`POLL`] until it returns `Ok` or `deadline` passes.
///
/// # Panics
/// On timeout, with `what` and the last `Err` description `cond` gave.
pub fn wait_until<T>(
    deadline: Instant,
    what: &str,
    mut cond: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match cond() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => panic!(
                "timed out after {:?} waiting until {what}\nlast seen: {seen}",
                start.elapsed()
            ),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// A UDP port free on every address at the moment of the call.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// A TCP port free on `ip` at the moment of the call.
pub fn free_tcp_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("bind an ephemeral TCP port on {ip}: {e}"))
        .port()
}

/// Whether some socket is listening on TCP `addr`, read from `/proc/net/tcp`: a readiness check
/// that, unlike a probe connection, leaves no trace in the server's log.
pub fn tcp_listening(addr: SocketAddr) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return false;
        };
        *state == "0A" && proc_addr_matches(local, addr)
    })
}

/// Whether some socket is bound to UDP `port` (on any address), read from `/proc/net/udp`.
pub fn udp_bound(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        line.split_whitespace()
            .nth(1)
            .and_then(|local| local.split_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            == Some(port)
    })
}

/// Matches a `/proc/net/tcp` local address (`0100007F:1389`) against `addr`, a wildcard bind
/// matching every IP.
fn proc_addr_matches(local: &str, addr: SocketAddr) -> bool {
    let Some((ip_hex, port_hex)) = local.split_once(':') else {
        return false;
    };
    let (Ok(ip), Ok(port)) = (
        u32::from_str_radix(ip_hex, 16),
        u16::from_str_radix(port_hex, 16),
    ) else {
        return false;
    };
    // The kernel prints the network-order address as a host-order integer.
    let ip = Ipv4Addr::from(ip.to_ne_bytes());
    port == addr.port() && (ip.is_unspecified() || IpAddr::V4(ip) == addr.ip())
}

/// Reads the events of a log file (none if it does not exist yet).
pub fn read_events(path: &Path) -> Vec<Event> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| Event::parse_log_line(line).map(|(_, event)| event))
        .collect()
}

/// The events named `name` whose fields include every `(key, value)` of `fields`.
pub fn matching<'a>(events: &'a [Event], name: &str, fields: &[(&str, &str)]) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.name == name && fields.iter().all(|(k, v)| e.get(k) == Some(*v)))
        .collect()
}

/// The events, one per line, for failure messages.
pub fn show_events(events: &[Event]) -> String {
    events.iter().map(|e| format!("  {e}\n")).collect()
}

/// Writes `size` deterministic pseudo-random bytes (xorshift from `seed`) to `path`, in 1 MiB
/// blocks, and returns their digest.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> Digest {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent folder");
    }
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut hasher = Hasher::default();
    let mut rng = XorShift::new(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).expect("block fits usize");
        rng.fill(&mut block[..n]);
        file.write_all(&block[..n]).expect("write random file");
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hasher.finish()
}

/// `size` deterministic pseudo-random bytes, in memory.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    XorShift::new(seed).fill(&mut bytes);
    bytes
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Any non-zero state works; mix the seed so that nearby seeds differ at once.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// SHA-256 and size of a file, streamed.
pub fn file_digest(path: &Path) -> (Digest, u64) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Digest::of_reader(BufReader::new(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Panics unless `actual` has the same size and SHA-256 as `expected`, showing both.
pub fn assert_same_file(expected: &Path, actual: &Path) {
    assert!(
        actual.is_file(),
        "expected a file at {} (a copy of {})",
        actual.display(),
        expected.display()
    );
    let (want, want_len) = file_digest(expected);
    let (got, got_len) = file_digest(actual);
    assert!(
        want == got && want_len == got_len,
        "file contents differ\n  expected: {} ({want_len} bytes, sha256 {want})\n  \
         actual:   {} ({got_len} bytes, sha256 {got}){}",
        expected.display(),
        actual.display(),
        small_diff(expected, actual)
    );
}

fn small_diff(expected: &Path, actual: &Path) -> String {
    let (Ok(a), Ok(b)) = (fs::read(expected), fs::read(actual)) else {
        return String::new();
    };
    if a.len().max(b.len()) > 64 {
        return String::new();
    }
    format!("\n  expected bytes: {a:02x?}\n  actual bytes:   {b:02x?}")
}

/// Files under `dir`, recursively, with their sizes.
pub fn list_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => list_files(&path, out),
            Ok(m) => out.push((path, m.len())),
            Err(_) => {}
        }
    }
}

/// The last `max` bytes of a text file.
pub fn tail(path: &Path, max: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let mut s = String::from_utf8_lossy(&text[start..]).into_owned();
    if start > 0 {
        s.insert(0, '…');
    }
    s
}

/// Waits until `holder`'s `server.log` has a `served ... outcome=ok` event for each of the five
/// chunks of `content`, and returns them (the first per chunk).
pub fn wait_for_served_all(net: &TestNet, holder: &Peer, content: &str) -> Vec<Event> {
    net.wait_until(
        WAIT,
        &format!(
            "{}/server.log has served chunk={content}_1..5 outcome=ok",
            holder.name
        ),
        || {
            let events = holder.server_events();
            (1..=5)
                .map(|i| {
                    matching(
                        &events,
                        "served",
                        &[("chunk", &format!("{content}_{i}")), ("outcome", "ok")],
                    )
                    .first()
                    .map(|e| (*e).clone())
                    .ok_or_else(|| {
                        format!(
                            "no served chunk={content}_{i}; events:\n{}",
                            show_events(&events)
                        )
                    })
                })
                .collect()
        },
    )
}

/// Asserts that `client`'s `client.log` has a `fetched ... outcome=ok` event for each of the
/// five chunks of `content` and a `download ... outcome=ok` event; returns the fetched events
/// that succeeded, by chunk, and the download event.
pub fn assert_fetched_all(client: &Peer, content: &str) -> (Vec<Event>, Event) {
    let events = client.client_events();
    let fetched = (1..=5)
        .map(|i| {
            matching(
                &events,
                "fetched",
                &[
                    ("content", content),
                    ("chunk", &i.to_string()),
                    ("outcome", "ok"),
                ],
            )
            .first()
            .map(|e| (*e).clone())
            .unwrap_or_else(|| {
                panic!(
                    "{}/client.log: no `fetched content={content} chunk={i} outcome=ok`; \
                     events:\n{}",
                    client.name,
                    show_events(&events)
                )
            })
        })
        .collect();
    let download = matching(
        &events,
        "download",
        &[("content", content), ("outcome", "ok")],
    )
    .last()
    .map(|e| (*e).clone())
    .unwrap_or_else(|| {
        panic!(
            "{}/client.log: no `download content={content} outcome=ok`; events:\n{}",
            client.name,
            show_events(&events)
        )
    });
    (fetched, download)
}

// ----- Additions for e2e_resume.rs and e2e_bad_peers.rs (nothing above depends on them) -----

impl RunningDownloader {
    /// Kills it with SIGKILL (if it still runs) and reaps it; its exit status, which says
    /// whether the signal or an earlier exit of its own ended it.
    pub fn kill(mut self) -> ExitStatus {
        kill_and_reap(&mut self.child)
            .unwrap_or_else(|e| panic!("cannot kill `{}`: {e}", self.command))
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// What it printed so far (or in all, once it exited), with `status`.
    pub fn output_so_far(&self, status: ExitStatus) -> Output {
        self.read_output(status)
    }
}

/// Regular files under `dir`, recursively, with their sizes (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    list_files(dir, &mut files);
    files
}
