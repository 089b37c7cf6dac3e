//! A legacy peer: a faithful imitation of the course's Python implementations, to test that our
//! programs interoperate with them in both directions (/work/shared/LEGACY-PROTOCOL.md).
//!
//! Like the originals it names a content after the file name *without* its extension, writes
//! only the non-empty pieces of `ceil(size / 5)` bytes, answers a request with one `recv(1024)`
//! and raw bytes, announces Python-`json.dumps`-style JSON, and reads announcements into a
//! 1024-byte buffer. Unlike them, every socket here has a timeout, so a test cannot hang.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the real listeners read per datagram.
pub const LEGACY_DATAGRAM_BUFFER: usize = 1024;

/// Bound on every read and connect of the legacy client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Splits `file` the legacy way into `folder`: content name = file name without extension,
/// chunk size `ceil(size / 5)`, and only the non-empty pieces written (`<content>_1`…).
///
/// Returns the content name and the chunk names written.
pub fn legacy_split(file: &Path, folder: &Path) -> (String, Vec<String>) {
    let content = file
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("UTF-8 file name")
        .to_owned();
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    fs::create_dir_all(folder).expect("create legacy folder");
    let size = bytes.len().div_ceil(5);
    let mut names = Vec::new();
    if size > 0 {
        for (i, piece) in bytes.chunks(size).enumerate() {
            let name = format!("{content}_{}", i + 1);
            fs::write(folder.join(&name), piece).expect("write legacy chunk");
            names.push(name);
        }
    }
    (content, names)
}

/// How a [`LegacyServer`] ends a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Closes the connection after sending, as the protocol says.
    Close,
    /// Keeps the connection open after sending, until the server is dropped, as some real
    /// servers do.
    NeverClose,
    /// Like [`Mode::Close`], except that chunk `n` (a request for `<content>_<n>`) is cut to
    /// its first half before the close, as a server that closes early would do.
    TruncateChunk(u8),
}

/// A legacy chunk server on `ip:<ephemeral>`, serving the files of one folder. Stops on drop.
pub struct LegacyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    accept_thread: Option<JoinHandle<()>>,
}

impl LegacyServer {
    /// Serves `folder` on an already bound `listener` (e.g. one of several servers sharing a
    /// port on different IPs, as legacy peers all use the same port) in a background thread.
    pub fn from_listener(listener: TcpListener, folder: &Path, mode: Mode) -> LegacyServer {
        let addr = listener.local_addr().expect("legacy server address");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accept_thread = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            let folder = folder.to_owned();
            std::thread::spawn(move || accept_loop(&listener, &folder, mode, &stop, &requests))
        };
        LegacyServer {
            addr,
            stop,
            requests,
            accept_thread: Some(accept_thread),
        }
    }

    /// Binds `ip:0` and serves `folder` in a background thread.
    pub fn start(ip: Ipv4Addr, folder: &Path, mode: Mode) -> LegacyServer {
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("legacy server cannot bind {ip}: {e}"));
        Self::from_listener(listener, folder, mode)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests received so far (the raw text of each), for assertions and diagnostics.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    folder: &Path,
    mode: Mode,
    stop: &Arc<AtomicBool>,
    requests: &Arc<Mutex<Vec<String>>>,
) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let folder = folder.to_owned();
                let stop = Arc::clone(stop);
                let requests = Arc::clone(requests);
                connections.push(std::thread::spawn(move || {
                    let _ = serve_one(stream, &folder, mode, &stop, &requests);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// One connection, as the Python servers handle it: one `recv(1024)`, parse, send, close.
fn serve_one(
    mut stream: TcpStream,
    folder: &Path,
    mode: Mode,
    stop: &AtomicBool,
    requests: &Mutex<Vec<String>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    if let Ok(mut r) = requests.lock() {
        r.push(text.clone());
    }
    let filename = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("filename")?.as_str().map(str::to_owned));
    // The originals open whatever they are asked for; this imitation at least stays in its
    // folder.
    let path = filename
        .filter(|f| !f.is_empty() && !f.contains(['/', '\\']) && f != "." && f != "..")
        .map(|f| folder.join(f));
    if let Some(mut bytes) = path.and_then(|p| fs::read(p).ok()) {
        if let (Mode::TruncateChunk(n), Some(name)) = (mode, filename_of(&text)) {
            if name.rsplit('_').next() == Some(n.to_string().as_str()) {
                bytes.truncate(bytes.len() / 2);
            }
        }
        stream.write_all(&bytes)?;
        stream.flush()?;
        if mode == Mode::NeverClose {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Ok(())
}

/// The announcement a legacy announcer sends, formatted like Python's `json.dumps`.
pub fn legacy_announcement(username: &str, files: &[String]) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("quote a string");
    let files: Vec<String> = files.iter().map(|f| quote(f)).collect();
    format!(
        "{{\"username\": {}, \"files\": [{}]}}",
        quote(username),
        files.join(", ")
    )
}

/// Sends one legacy announcement from `from_ip` (an ephemeral port there) to `target`.
pub fn legacy_announce(from_ip: Ipv4Addr, target: SocketAddr, username: &str, files: &[String]) {
    let socket = shared::net::bind_udp_shared(SocketAddr::from((from_ip, 0)))
        .unwrap_or_else(|e| panic!("bind UDP on {from_ip}: {e}"));
    let payload = legacy_announcement(username, files);
    socket
        .send_to(payload.as_bytes(), target)
        .unwrap_or_else(|e| panic!("send legacy announcement to {target}: {e}"));
}

/// Downloads `<content>_1` … `_5` from the legacy-protocol server at `server` the way legacy
/// downloaders do (one request per connection, in one write, read until the server closes) and
/// writes their concatenation to `out`. Returns the size of each chunk.
///
/// # Errors
/// Any connect, write or read failure, including a read that times out.
pub fn legacy_download(server: SocketAddr, content: &str, out: &Path) -> io::Result<Vec<usize>> {
    let mut whole = Vec::new();
    let mut sizes = Vec::new();
    for i in 1..=5 {
        let mut stream = TcpStream::connect_timeout(&server, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let request = format!(
            "{{\"filename\": {}}}",
            serde_json::to_string(&format!("{content}_{i}"))?
        );
        stream.write_all(request.as_bytes())?;
        let mut chunk = Vec::new();
        stream.read_to_end(&mut chunk).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading {content}_{i} from {server}: {e}"),
            )
        })?;
        let _ = stream.shutdown(Shutdown::Both);
        sizes.push(chunk.len());
        whole.extend_from_slice(&chunk);
    }
    fs::write(out, &whole)?;
    Ok(sizes)
}

/// One datagram heard by [`legacy_listen_once`].
#[derive(Debug, Clone)]
pub struct Heard {
    /// The sender, as `recvfrom` reports it.
    pub from: SocketAddr,
    /// The JSON object, parsed from the first 1024 bytes as a legacy listener would.
    pub json: serde_json::Value,
}

/// Listens on `0.0.0.0:<port>` (with `SO_REUSEADDR`, beside any other listener) for `timeout`,
/// like a legacy listener.
///
/// # Panics
/// When a datagram is longer than the 1024 bytes real listeners read, or is not JSON: either
/// would be lost on a legacy peer.
pub fn legacy_listen_once(port: u16, timeout: Duration) -> Vec<Heard> {
    let socket: UdpSocket = shared::net::bind_udp_shared(SocketAddr::from(([0, 0, 0, 0], port)))
        .unwrap_or_else(|e| panic!("bind UDP 0.0.0.0:{port}: {e}"));
    let deadline = Instant::now() + timeout;
    // Bigger than the legacy buffer, only to tell a truncated datagram from one that fits.
    let mut buf = vec![0u8; 65_536];
    let mut heard = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return heard;
        }
        socket
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .expect("set UDP read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert!(
                    n <= LEGACY_DATAGRAM_BUFFER,
                    "datagram from {from} is {n} bytes: a legacy listener reads only \
                     {LEGACY_DATAGRAM_BUFFER} and would see it truncated:\n{}",
                    String::from_utf8_lossy(&buf[..n])
                );
                let json = serde_json::from_slice(&buf[..n]).unwrap_or_else(|e| {
                    panic!(
                        "datagram from {from} is not JSON ({e}):\n{}",
                        String::from_utf8_lossy(&buf[..n])
                    )
                });
                heard.push(Heard { from, json });
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("receive on UDP port {port}: {e}"),
        }
    }
}

/// The `filename` of a legacy request, if it has one.
fn filename_of(request: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(request)
        .ok()
        .and_then(|v| v.get("filename")?.as_str().map(str::to_owned))
}

/// Binds one listener per IP of `ips`, all on the same TCP port (legacy peers all serve on one
/// well-known port, which the listener's `--legacy-chunk-port` names).
///
/// # Panics
/// When no common free port is found after many tries.
pub fn bind_same_port(ips: &[Ipv4Addr]) -> Vec<TcpListener> {
    for _ in 0..100 {
        let first = TcpListener::bind((ips[0], 0))
            .unwrap_or_else(|e| panic!("bind a TCP port on {}: {e}", ips[0]));
        let port = first.local_addr().expect("bound address").port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            return listeners;
        }
    }
    panic!("no TCP port free on every one of {ips:?}");
}
