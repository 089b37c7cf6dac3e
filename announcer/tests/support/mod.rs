//! Helpers for the announcer's integration tests: a peer folder with chunks, an announcer
//! running in a thread, and a socket that collects what it sends.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::protocol::{Announcement, Manifest};
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Origin, StoredManifest};

/// How long any single wait in these tests may take before it counts as a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Writes the five chunks of `content` (made of `bytes`) and its manifest into `DIR/temp`;
/// returns the manifest.
pub fn add_content(dir: &Path, content: &str, bytes: &[u8]) -> Manifest {
    let store = ChunkStore::open(dir.join(shared::TEMP_DIR)).unwrap();
    let ranges = shared::chunk::chunk_ranges(bytes.len() as u64);
    let names = ChunkName::all_of(content).unwrap();
    let mut digests = [Digest::of(b""); 5];
    for ((name, range), digest) in names.iter().zip(ranges).zip(digests.iter_mut()) {
        let part = &bytes[range.start as usize..range.end as usize];
        std::fs::write(store.chunk_path(name), part).unwrap();
        *digest = Digest::of(part);
    }
    let manifest = Manifest {
        name: content.to_owned(),
        size: bytes.len() as u64,
        sha256: Digest::of(bytes),
        chunks: digests,
    };
    store
        .save_manifest(&StoredManifest {
            manifest: manifest.clone(),
            origin: Origin::Downloaded { verified: true },
        })
        .unwrap();
    manifest
}

/// A socket on `127.0.0.1:<free port>` standing in for the LAN.
pub struct Receiver {
    pub socket: UdpSocket,
}

/// One datagram received.
pub struct Received {
    pub from: SocketAddr,
    pub len: usize,
    pub announcement: Announcement,
}

impl Receiver {
    pub fn new() -> Receiver {
        Self::with_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
    }

    pub fn with_socket(socket: UdpSocket) -> Receiver {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Receiver { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next datagram within `timeout`, decoded (panics on a datagram that does not decode).
    pub fn next(&self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; shared::MAX_RECEIVE_DATAGRAM];
        while Instant::now() < deadline {
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let announcement = Announcement::decode(&buf[..len]).unwrap_or_else(|e| {
                        panic!(
                            "undecodable datagram ({e}): {:?}",
                            String::from_utf8_lossy(&buf[..len])
                        )
                    });
                    return Some(Received {
                        from,
                        len,
                        announcement,
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("receive failed: {e}"),
            }
        }
        None
    }

    /// Receives until the chunk names seen include all of `wanted`; returns every datagram
    /// received meanwhile, or panics after `timeout`.
    pub fn until_chunks(&self, wanted: &BTreeSet<String>, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut seen = BTreeSet::new();
        let mut got = Vec::new();
        while !wanted.is_subset(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(r) = self.next(left) else {
                panic!(
                    "never saw {:?}; saw {seen:?}",
                    wanted.difference(&seen).collect::<Vec<_>>()
                );
            };
            seen.extend(r.announcement.chunks().iter().map(ToString::to_string));
            got.push(r);
        }
        got
    }

    /// Throws away whatever is queued.
    pub fn drain(&self) {
        while self.next(Duration::from_millis(50)).is_some() {}
    }
}

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

/// The five chunk names of `content`, as strings.
pub fn names_of(content: &str) -> BTreeSet<String> {
    ChunkName::all_of(content)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// An announcer running [`announcer::run`] in a thread; stopped and joined on drop.
pub struct TestAnnouncer {
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), announcer::Error>>>,
}

impl TestAnnouncer {
    /// Starts an announcer sending from `127.0.0.1:<free port>`.
    pub fn start(config: announcer::Config) -> TestAnnouncer {
        Self::start_with(UdpSocket::bind("127.0.0.1:0").unwrap(), config)
    }

    pub fn start_with(socket: UdpSocket, config: announcer::Config) -> TestAnnouncer {
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || announcer::run(socket, config, stop));
        TestAnnouncer {
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the announcer and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), announcer::Error> {
        self.shutdown.trigger();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestAnnouncer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
