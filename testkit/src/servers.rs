//! In-process servers: the chunk server, listener and announcer libraries' `run`, each on a
//! thread of the test with its own `Shutdown`, bound on `127.0.0.x:0` before the thread starts
//! (so the address is known at once and nothing collides between parallel tests). Dropping one
//! triggers its shutdown and joins its thread.

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use shared::net::bind_udp_shared;
use shared::shutdown::Shutdown;
use shared::tags::TagsIndex;

use crate::files::read_tags;
use crate::ports::free_udp_port;
use crate::wait::{poll_until, PATIENCE, WAIT};

/// A library's `run` on a thread; its shutdown triggered and its thread joined on drop.
pub struct InProcess<E: Debug> {
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), E>>>,
    /// Whether dropping it (outside a panic) asserts that `run` returned `Ok`.
    check_on_drop: bool,
}

impl<E: Debug + Send + 'static> InProcess<E> {
    /// Runs `run(shutdown)` on a new thread.
    pub fn spawn(
        check_on_drop: bool,
        run: impl FnOnce(Shutdown) -> Result<(), E> + Send + 'static,
    ) -> InProcess<E> {
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        InProcess {
            shutdown,
            thread: Some(thread::spawn(move || run(stop))),
            check_on_drop,
        }
    }

    /// Whether `run` returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Triggers shutdown and returns what `run` returned.
    ///
    /// # Panics
    /// When the thread panicked.
    pub fn stop(mut self) -> Result<(), E> {
        self.shutdown.trigger();
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("server thread panicked")
    }
}

impl<E: Debug> Drop for InProcess<E> {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            // Don't panic again while a failed test is already unwinding.
            if self.check_on_drop && !thread::panicking() {
                result
                    .expect("server thread panicked")
                    .expect("server returned an error");
            }
        }
    }
}

/// A chunk server running `chunk_server::run` on a thread; stopped and joined on drop, which
/// also checks that it returned `Ok`.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its completed scans of the shares.
    pub progress: chunk_server::ScanProgress,
    running: InProcess<chunk_server::Error>,
}

/// A peer folder whose `served_files/` holds `files`, and a chunk server's config serving it
/// (the defaults otherwise).
pub fn chunk_server_peer_with(
    files: &[(&str, &[u8])],
) -> (tempfile::TempDir, chunk_server::Config) {
    let dir = tempfile::tempdir().expect("temp dir");
    let share = dir.path().join("served_files");
    std::fs::create_dir(&share).expect("create served_files");
    for (name, data) in files {
        std::fs::write(share.join(name), data).expect("write a shared file");
    }
    let config = chunk_server::Config {
        dir: dir.path().to_owned(),
        ..chunk_server::Config::default()
    };
    (dir, config)
}

/// Binds `127.0.0.1:0` *before* spawning the server, so the address is known at once, and
/// returns once the server's first scan of the shares is complete (it accepts connections at
/// once, but hashes the shared files in the background), so every file shared at start is
/// servable; or once `run` returned, for tests of failures.
pub fn start_chunk_server(config: chunk_server::Config) -> TestServer {
    let server = start_chunk_server_scanning(config);
    poll_until(WAIT, || {
        server.progress.scans_done() > 0 || server.running.is_finished()
    });
    server
}

/// [`start_chunk_server`] without waiting for the first scan: for tests of what the server
/// does while it hashes.
pub fn start_chunk_server_scanning(config: chunk_server::Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let progress = chunk_server::ScanProgress::default();
    let counted = progress.clone();
    let running = InProcess::spawn(true, move |shutdown| {
        chunk_server::run_with_progress(listener, config, shutdown, counted)
    });
    TestServer {
        addr,
        progress,
        running,
    }
}

impl TestServer {
    /// Triggers shutdown and returns what `run` returned.
    pub fn stop(self) -> Result<(), chunk_server::Error> {
        self.running.stop()
    }
}

/// An announcer running `announcer::run` in a thread; stopped and joined on drop.
pub struct TestAnnouncer {
    running: InProcess<announcer::Error>,
}

impl TestAnnouncer {
    /// Starts an announcer sending from `127.0.0.1:<free port>`.
    pub fn start(config: announcer::Config) -> TestAnnouncer {
        Self::start_with(
            UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"),
            config,
        )
    }

    /// Starts an announcer sending from `socket`.
    pub fn start_with(socket: UdpSocket, config: announcer::Config) -> TestAnnouncer {
        TestAnnouncer {
            running: InProcess::spawn(false, move |shutdown| {
                announcer::run(socket, Vec::new(), config, shutdown)
            }),
        }
    }

    /// Starts an announcer sending from `127.0.0.1:<free port>` (allowed to broadcast) that
    /// also hears queries and legacy peers on `query_sockets`
    /// ([`announcer::ears::bind_query_sockets`]).
    pub fn start_hearing(
        config: announcer::Config,
        query_sockets: Vec<UdpSocket>,
    ) -> TestAnnouncer {
        let socket =
            bind_udp_shared(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind 127.0.0.1:0");
        TestAnnouncer {
            running: InProcess::spawn(false, move |shutdown| {
                announcer::run(socket, query_sockets, config, shutdown)
            }),
        }
    }

    /// Stops the announcer and returns what `run` returned.
    pub fn stop(self) -> Result<(), announcer::Error> {
        self.running.stop()
    }
}

/// A listener running `listener::run` in a thread; stopped and joined on drop.
pub struct TestListener {
    /// Its announce port (UDP, on every address).
    pub port: u16,
    /// Its peer folder.
    pub dir: PathBuf,
    /// The chunk port it assumes for legacy peers.
    pub legacy_chunk_port: u16,
    running: InProcess<listener::Error>,
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
        let socket = bind_udp_shared(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .expect("bind the announce port");
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
        TestListener {
            port,
            dir: dir.to_owned(),
            legacy_chunk_port,
            running: InProcess::spawn(false, move |shutdown| {
                listener::run(socket, query_socket, config, shutdown)
            }),
        }
    }

    /// Its `tags.txt`.
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
        let ok = poll_until(PATIENCE, || {
            last = self.tags();
            last.as_ref().is_some_and(&mut cond)
        });
        assert!(
            ok,
            "tags.txt never showed {what}; last seen:\n{}",
            last.map_or("(none)".to_owned(), |t| t.to_string())
        );
        last.expect("held")
    }

    /// Stops the listener and returns what `run` returned.
    pub fn stop(self) -> Result<(), listener::Error> {
        self.running.stop()
    }
}

/// A socket like the listener's query socket: an ephemeral port of its own (no
/// `SO_REUSEADDR`), allowed to broadcast.
pub fn query_socket() -> UdpSocket {
    let socket =
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).expect("bind a UDP port");
    socket.set_broadcast(true).expect("allow broadcast");
    socket
}

/// A UDP socket on `0.0.0.0:<free port>`, shared (`SO_REUSEADDR`) so a listener can join it.
///
/// The port is free when picked, but a process of another test may take it before the bind
/// (it is the kernel's next ephemeral port): then another one is picked.
pub fn shared_port_socket() -> (UdpSocket, u16) {
    let mut last_error = None;
    for _ in 0..20 {
        let port = free_udp_port();
        match bind_udp_shared(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))) {
            Ok(socket) => return (socket, port),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("bind a shared UDP port: {last_error:?}")
}
