//! Announcements as tests make and receive them: builders for ours and legacy ones, a UDP peer
//! that broadcasts from its own loopback address (as a listener hears several peers), a receiver
//! standing in for the LAN, and a flood of hostile datagrams.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::net::bind_udp_shared;
use shared::protocol::{Announcement, AnnouncementExt, Kind};

use crate::files::read_tags;

/// A socket on `127.0.0.1:<free port>` standing in for the LAN.
pub struct Receiver {
    /// The socket, with a short read timeout.
    pub socket: UdpSocket,
}

impl Default for Receiver {
    fn default() -> Receiver {
        Receiver::new()
    }
}

/// One datagram received.
pub struct Received {
    /// Its sender.
    pub from: SocketAddr,
    /// Its size in bytes.
    pub len: usize,
    /// What it says.
    pub announcement: Announcement,
}

impl Receiver {
    /// A receiver on `127.0.0.1:<free port>`.
    pub fn new() -> Receiver {
        Self::with_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
    }

    /// A receiver on `socket`.
    pub fn with_socket(socket: UdpSocket) -> Receiver {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Receiver { socket }
    }

    /// Its socket, to send from (a querier's answers come back to it).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Where it receives.
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

/// The five chunk names of `content`, as strings.
pub fn names_of(content: &str) -> BTreeSet<String> {
    ChunkName::all_of(content)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A peer sending from its own loopback address (127.0.0.`last`).
pub struct UdpPeer {
    socket: UdpSocket,
}

impl UdpPeer {
    /// A peer on `127.0.0.<last>:<ephemeral>` (shared, so several can use one address).
    pub fn new(last: u8) -> UdpPeer {
        let socket = bind_udp_shared(SocketAddr::from(([127, 0, 0, last], 0))).unwrap();
        UdpPeer { socket }
    }

    /// Its IP.
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
    let ext = AnnouncementExt {
        instance: instance.map(str::to_owned),
        kind,
        ..AnnouncementExt::new(port, interval)
    };
    Announcement::ours(user, files, ext)
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
                    let peer = UdpPeer::new(last);
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

impl UdpPeer {
    /// [`UdpPeer::send_raw`], ignoring a failed send (a flood does not care).
    pub fn send_raw_lossy(&self, port: u16, bytes: &[u8]) {
        let _ = self
            .socket
            .send_to(bytes, SocketAddr::from(([127, 255, 255, 255], port)));
    }
}

/// Sends `announcement` from `peer` every 200 ms until tags.txt at `path` lists `user`
/// (as a real peer would repeat itself), for at most `limit`; returns how long it took.
pub fn time_to_listing(
    peer: &UdpPeer,
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
