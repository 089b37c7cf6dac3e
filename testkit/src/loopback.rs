//! The loopback implementation of the host API: real binaries on loopback peers, temp folders.
//!
//! A [`TestNet`] is one test's private network: its own UDP announce port, a broadcast target on
//! `127.255.255.255`, and a temporary root holding one folder per [`Peer`]. Each peer gets its
//! own loopback IP (`127.0.0.2`, `127.0.0.3`, …) and a TCP port found free on that IP, so tests
//! running in parallel never collide even when they reuse an IP.
//!
//! When a test panics, dropping its [`TestNet`] prints every peer's stderr, logs and `tags.txt`.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::files::folder_report;
use crate::network::Network;
use crate::node::Node;
use crate::ports::{free_tcp_port, free_udp_port, tcp_listening, tcp_listening_in, udp_bound};
use crate::process::Program;
use crate::wait::{POLL, WAIT};

/// Announce interval given to every test announcer: short, so that nothing waits a minute.
pub const ANNOUNCE_INTERVAL_SECS: u64 = 1;

/// One test's private network of peers.
pub struct TestNet {
    root: tempfile::TempDir,
    udp_port: u16,
    next_ip: Cell<u8>,
    /// Folders of the peers made so far, for the diagnostics printed on failure.
    peer_dirs: RefCell<Vec<PathBuf>>,
    deadline: Instant,
    /// The network namespace the peers' programs run in (its own loopback); `None` for the
    /// test's.
    netns: Option<String>,
}

impl TestNet {
    /// Announces `chunks` as the legacy peer `username` at `from_ip`, every half second as a
    /// legacy peer would if it announced often (they announce once a minute), until `viewer`'s
    /// `tags.txt` holds an entry of that user for which `wanted` holds; returns that entry.
    ///
    /// # Panics
    /// After [`WAIT`], with `tags.txt` as last seen.
    pub fn announce_legacy_until_listed(
        &self,
        viewer: &Node,
        from_ip: Ipv4Addr,
        username: &str,
        chunks: &[String],
        wanted: impl Fn(&shared::tags::TagEntry) -> bool,
    ) -> shared::tags::TagEntry {
        let mut last_sent: Option<Instant> = None;
        self.wait_until(
            WAIT,
            &format!("{}'s tags.txt lists legacy user {username}", viewer.name),
            || {
                if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                    crate::legacy::legacy_announce(from_ip, self.broadcast(), username, chunks);
                    last_sent = Some(Instant::now());
                }
                let tags = viewer.tags()?;
                tags.entries
                    .iter()
                    .find(|e| e.user == username && wanted(e))
                    .cloned()
                    .ok_or_else(|| format!("tags.txt is:\n{tags}"))
            },
        )
    }
}

impl Network for TestNet {
    fn deadline(&self) -> Instant {
        self.deadline
    }
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
            netns: None,
        }
    }

    /// [`TestNet::new`] whose peers run their programs in the network namespace `netns`, on
    /// its loopback (made by [`crate::netns::Lab::loopback_namespace`], which outlives this):
    /// their traffic is that namespace's alone, for a capture of it.
    pub fn inside(netns: &str, budget: Duration) -> TestNet {
        let mut net = TestNet::new(budget);
        net.netns = Some(netns.to_owned());
        net
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
        Peer {
            node: Node::new(
                name,
                dir,
                SocketAddr::from((ip, free_tcp_port(ip))),
                self.netns.clone(),
                self.deadline,
            ),
            ip,
            udp_port: self.udp_port,
            broadcast: self.broadcast(),
        }
    }

    /// A peer running only its listener, once the listener has bound the test's UDP port, and
    /// where to send it datagrams directly.
    pub fn listening_peer(&self, name: &str) -> (Peer, SocketAddr) {
        let peer = self.peer(name);
        peer.start_listener(&[]);
        let port = self.udp_port;
        self.wait_until(WAIT, &format!("the listener binds UDP port {port}"), || {
            udp_bound(port)
                .then_some(())
                .ok_or_else(|| "not bound yet".to_owned())
        });
        (peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Everything useful to read after a failure: each folder's files, stderr of each program,
    /// logs and `tags.txt` (tails of them).
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for dir in self.peer_dirs.borrow().iter() {
            let _ = writeln!(out, "===== {} =====", dir.display());
            out.push_str(&folder_report(dir, 6000));
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

/// One peer: an IP, a folder, and the programs started for it (a [`Node`], which it derefs to).
pub struct Peer {
    node: Node,
    /// Its loopback IP: its programs bind here.
    pub ip: Ipv4Addr,
    udp_port: u16,
    broadcast: SocketAddr,
}

impl Deref for Peer {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Peer {
    /// The TCP port its chunk server listens on (and its announcer announces).
    pub fn chunk_port(&self) -> u16 {
        self.chunk_addr().port()
    }

    /// `chunk-server --dir D --bind IP --port P [--share S]... [extra]`.
    pub fn start_chunk_server(&self, shares: &[&Path], extra: &[&str]) {
        let (ip, port) = (self.ip.to_string(), self.chunk_port().to_string());
        let mut args = vec!["--bind", &ip, "--port", &port];
        for share in shares {
            args.push("--share");
            args.push(share.to_str().expect("UTF-8 path"));
        }
        args.extend_from_slice(extra);
        self.start(Program::ChunkServer, &args);
        // Return once it listens (or has exited, for tests of failures), so that a download
        // started next does not find the port closed: downloads skip an unreachable holder.
        let until = Instant::now() + Duration::from_secs(10);
        let listening = || match (&self.node.netns(), self.pid_of(Program::ChunkServer)) {
            (None, _) => tcp_listening(self.chunk_addr()),
            (Some(_), Some(pid)) => tcp_listening_in(pid, self.chunk_addr()),
            (Some(_), None) => false,
        };
        while !listening()
            && self.check_running(Program::ChunkServer).is_ok()
            && Instant::now() < until
        {
            std::thread::sleep(POLL);
        }
    }

    /// `announcer` bound to this peer's IP, broadcasting to the test's UDP port every
    /// `interval_secs`, announcing this peer's chunk port.
    pub fn start_announcer(&self, username: &str, interval_secs: u64) {
        self.start_announcer_with(username, interval_secs, &[]);
    }

    /// [`Peer::start_announcer`] with `extra` flags (`--legacy-list on`, say).
    pub fn start_announcer_with(&self, username: &str, interval_secs: u64, extra: &[&str]) {
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
            self.chunk_port().to_string(),
        ];
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        self.start(Program::Announcer, &args);
    }

    /// `listener --port <udp> [extra]`, bound to 0.0.0.0 (the default) to hear broadcasts. Its
    /// start-up query goes to the test's loopback broadcast unless `extra` names a
    /// `--broadcast`: without one it would go to every interface's broadcast, off this host.
    pub fn start_listener(&self, extra: &[&str]) {
        let port = self.udp_port.to_string();
        let broadcast = self.broadcast.to_string();
        let mut args = vec!["--port", &port];
        if !extra.contains(&"--broadcast") {
            args.extend(["--broadcast", &broadcast]);
        }
        args.extend_from_slice(extra);
        self.start(Program::Listener, &args);
    }

    /// Chunk server (sharing `shares`, or `served_files/` when empty), announcer and listener.
    pub fn start_all(&self, username: &str, shares: &[&Path]) {
        self.start_chunk_server(shares, &[]);
        self.start_announcer(username, ANNOUNCE_INTERVAL_SECS);
        self.start_listener(&[]);
    }
}
