//! Helpers for the listener's integration tests: a listener running in a thread, peers that
//! broadcast from their own loopback address, and polling without fixed sleeps.
#![allow(dead_code)] // each test file uses its own subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared::net::bind_udp_shared;
use shared::protocol::{Announcement, AnnouncementExt, Kind};
use shared::shutdown::Shutdown;
use shared::tags::TagsIndex;
use tempfile::TempDir;

/// How long any single wait in these tests may take before it counts as a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP port no socket uses. Found with a socket *without* `SO_REUSEADDR`: the kernel may
/// hand a port-0 `SO_REUSEADDR` socket a port another such socket already holds, which would
/// let two tests hear each other's broadcasts.
pub fn free_udp_port() -> u16 {
    let probe = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
    probe.local_addr().unwrap().port()
}

/// A UDP socket on `0.0.0.0:<free port>`, shared (`SO_REUSEADDR`) so a listener can join it.
pub fn shared_port_socket() -> (UdpSocket, u16) {
    let port = free_udp_port();
    let socket = bind_udp_shared(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).unwrap();
    (socket, port)
}

/// A listener running [`listener::run`] in a thread; stopped and joined on drop.
pub struct TestListener {
    pub port: u16,
    pub dir: PathBuf,
    pub legacy_chunk_port: u16,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), listener::Error>>>,
}

impl TestListener {
    /// Starts a listener on `0.0.0.0:<port>` (0 = a free port) writing into `dir`, querying
    /// `127.255.255.255:<port>` at start.
    pub fn start(dir: &Path, port: u16) -> TestListener {
        Self::start_with(dir, port, |_| {})
    }

    /// [`TestListener::start`], with `adjust` changing the configuration first (its port is
    /// already set).
    pub fn start_with(
        dir: &Path,
        port: u16,
        adjust: impl FnOnce(&mut listener::Config),
    ) -> TestListener {
        let port = if port == 0 { free_udp_port() } else { port };
        let socket = bind_udp_shared(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).unwrap();
        let query_socket = query_socket();
        let legacy_chunk_port = 7001;
        let mut config = listener::Config {
            dir: dir.to_owned(),
            legacy_chunk_port,
            query_targets: vec![SocketAddr::from(([127, 255, 255, 255], port))],
            peers: Vec::new(),
            peer_port: port,
            ..listener::Config::default()
        };
        adjust(&mut config);
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || listener::run(socket, query_socket, config, stop));
        TestListener {
            port,
            dir: dir.to_owned(),
            legacy_chunk_port,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn tags_path(&self) -> PathBuf {
        self.dir.join(shared::TAGS_FILE)
    }

    /// The current tags.txt, if it exists and parses.
    pub fn tags(&self) -> Option<TagsIndex> {
        read_tags(&self.tags_path())
    }

    /// Waits until tags.txt satisfies `cond`; panics showing the file if it never does.
    pub fn wait_for_tags(&self, what: &str, mut cond: impl FnMut(&TagsIndex) -> bool) -> TagsIndex {
        let mut last = None;
        let ok = wait_until(PATIENCE, || {
            last = self.tags();
            last.as_ref().is_some_and(&mut cond)
        });
        assert!(
            ok,
            "tags.txt never showed {what}; last seen:\n{}",
            last.map_or("(none)".to_owned(), |t| t.to_string())
        );
        last.unwrap()
    }

    /// Stops the listener and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), listener::Error> {
        self.shutdown.trigger();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestListener {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A socket like the listener's query socket: an ephemeral port of its own (no
/// `SO_REUSEADDR`), allowed to broadcast.
pub fn query_socket() -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
    socket.set_broadcast(true).unwrap();
    socket
}

/// A temporary peer folder.
pub fn temp_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// Reads and parses tags.txt; `None` if missing or unparseable.
pub fn read_tags(path: &Path) -> Option<TagsIndex> {
    if !path.exists() {
        return None;
    }
    TagsIndex::load(path).ok()
}

/// A peer sending from its own loopback address (127.0.0.`last`).
pub struct Peer {
    socket: UdpSocket,
}

impl Peer {
    pub fn new(last: u8) -> Peer {
        let socket = bind_udp_shared(SocketAddr::from(([127, 0, 0, last], 0))).unwrap();
        Peer { socket }
    }

    pub fn ip(&self) -> IpAddr {
        self.socket.local_addr().unwrap().ip()
    }

    /// Broadcasts raw bytes to `127.255.255.255:port`.
    pub fn send_raw(&self, port: u16, bytes: &[u8]) {
        self.socket
            .send_to(bytes, SocketAddr::from(([127, 255, 255, 255], port)))
            .unwrap();
    }

    /// Broadcasts an announcement to `127.255.255.255:port`.
    pub fn announce(&self, port: u16, announcement: &Announcement) {
        self.send_raw(port, &announcement.encode());
    }

    /// Sends raw bytes by unicast to `to`.
    pub fn send_to(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).unwrap();
    }

    /// This peer's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }
}

/// One of our announcements (the `p2p` extension), of `kind`, from run `instance`.
pub fn ours_with(
    user: &str,
    port: u16,
    interval: u64,
    files: &[&str],
    instance: Option<&str>,
    kind: Kind,
) -> Announcement {
    Announcement {
        username: user.into(),
        files: files.iter().map(|f| f.to_string()).collect(),
        p2p: Some(AnnouncementExt {
            v: shared::PROTOCOL_VERSION,
            port,
            interval,
            contents: Default::default(),
            instance: instance.map(str::to_owned),
            kind,
        }),
    }
}

/// Where the binaries of the workspace are: beside the test executable's `deps/` folder.
/// `env!("CARGO_BIN_EXE_…")` only knows this package's own binaries.
///
/// # Panics
/// When `name` was not built (run `cargo test -p announcer -p listener` or `--workspace`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it too (cargo test -p announcer -p listener, or --workspace)",
        path.display()
    );
    path
}

/// A legacy announcement.
pub fn legacy(user: &str, files: &[&str]) -> Announcement {
    Announcement {
        username: user.into(),
        files: files.iter().map(|f| f.to_string()).collect(),
        p2p: None,
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

/// A hostile flood: threads sending, from several loopback addresses, announcements of ours
/// of about `bytes` bytes each, every one naming thousands of chunks never seen before.
/// Stopped on drop.
pub struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Flood {
    /// Floods `127.255.255.255:port` from `127.0.0.<last>` for each of `sources` (one thread
    /// per source), each sending bursts of 20 datagrams every 5 ms.
    pub fn start(port: u16, sources: &[u8], bytes: usize) -> Flood {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = sources
            .iter()
            .map(|&last| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let peer = Peer::new(last);
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..20 {
                            peer.send_raw_lossy(port, &flood_datagram(last, sent, bytes));
                            sent += 1;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    sent
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stops the flood; returns how many datagrams were sent.
    pub fn stop(mut self) -> u64 {
        self.stop_threads()
    }

    fn stop_threads(&mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).sum()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// One flood datagram of about `bytes` bytes: an announcement of ours from user `flood<tag>`
/// listing chunk 1 of as many new contents as fit.
pub fn flood_datagram(tag: u8, seq: u64, bytes: usize) -> Vec<u8> {
    let mut files = Vec::new();
    let mut size = 150;
    let mut n = 0u32;
    while size < bytes {
        let name = format!("junk{tag}-{seq}-{n}_1");
        size += name.len() + 3;
        files.push(name);
        n += 1;
    }
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    ours_with(
        &format!("flood{tag}"),
        6001,
        60,
        &files,
        None,
        Kind::Announce,
    )
    .encode()
}

impl Peer {
    /// [`Peer::send_raw`], ignoring a failed send (a flood does not care).
    pub fn send_raw_lossy(&self, port: u16, bytes: &[u8]) {
        let _ = self
            .socket
            .send_to(bytes, SocketAddr::from(([127, 255, 255, 255], port)));
    }
}

/// Sends `announcement` from `peer` every 200 ms until tags.txt at `path` lists `user`
/// (as a real peer would repeat itself), for at most `limit`; returns how long it took.
pub fn time_to_listing(
    peer: &Peer,
    port: u16,
    announcement: &Announcement,
    path: &Path,
    user: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut last_sent: Option<Instant> = None;
    while start.elapsed() < limit {
        if last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            peer.announce(port, announcement);
            last_sent = Some(Instant::now());
        }
        if read_tags(path).is_some_and(|t| t.entries.iter().any(|e| e.user == user)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
