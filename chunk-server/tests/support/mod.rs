//! Helpers shared by the chunk server's integration tests: an in-process server, raw clients,
//! and a deadline poll instead of sleeps. Every socket here has a timeout: no test can hang.
#![allow(dead_code)] // each test file uses a different subset

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chunk_server::{Config, Error};
use shared::chunk::ChunkName;
use shared::connection::Connection;
use shared::events::Event;
use shared::protocol::{Request, Response};
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;

/// Longest any single client read may wait.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A chunk server running `chunk_server::run` on a thread; stopped and joined on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

/// Binds `127.0.0.1:0` *before* spawning the server, so the address is known and connections
/// made right away wait in the backlog until the server, done with its first scan, accepts.
pub fn start_chunk_server(config: Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = Shutdown::new();
    let thread = {
        let shutdown = shutdown.clone();
        thread::spawn(move || chunk_server::run(listener, config, shutdown))
    };
    TestServer {
        addr,
        shutdown,
        thread: Some(thread),
    }
}

impl TestServer {
    /// Triggers shutdown and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown.trigger();
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            // Don't panic again while a failed test is already unwinding.
            let result = thread.join();
            if !thread::panicking() {
                result
                    .expect("server thread panicked")
                    .expect("server returned an error");
            }
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Connects with timeouts on every read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the server");
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

/// Sends `bytes` in one write, as a legacy client does, and reads until the server closes.
/// A reset after the server read what it wanted counts as a close.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr);
    stream.write_all(bytes)?;
    read_until_close(&mut stream)
}

/// Reads until end of stream; a connection reset ends the stream too.
pub fn read_until_close(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(e),
    }
}

/// A legacy request exactly as a Python peer sends it (`json.dumps` puts a space after the
/// colon); returns the raw bytes received before the close.
pub fn legacy_fetch(addr: SocketAddr, chunk: &str) -> Vec<u8> {
    let request = format!(
        "{{\"filename\": {}}}",
        serde_json::to_string(chunk).unwrap()
    );
    send_raw(addr, request.as_bytes()).expect("legacy fetch")
}

/// One extended request: the response header and, for a chunk, its body.
pub fn p2p_request(addr: SocketAddr, request: &Request) -> (Response, Vec<u8>) {
    let mut conn = Connection::connect_with(addr, None, Duration::from_secs(5), CLIENT_TIMEOUT)
        .expect("connect to the server");
    conn.write_request(request).expect("send the request");
    let response = conn.read_response().expect("read the response header");
    let mut body = Vec::new();
    if let Response::Chunk { length, .. } = response {
        conn.read_body_exact(length, &mut body, &mut |_| {})
            .expect("read the body");
    }
    // Nothing may follow, and the server closes.
    let mut rest = Vec::new();
    conn.read_body_to_end(Duration::from_secs(5), &mut rest, &mut |_| {})
        .expect("the server closes after its answer");
    assert!(
        rest.is_empty(),
        "{} unexpected bytes after the answer",
        rest.len()
    );
    (response, body)
}

/// The bytes of the five chunk files of `content` in the store under `dir`.
pub fn chunk_files(dir: &Path, content: &str) -> Vec<Vec<u8>> {
    let store = ChunkStore::open(dir.join("temp")).unwrap();
    ChunkName::all_of(content)
        .unwrap()
        .iter()
        .map(|c| std::fs::read(store.chunk_path(c)).unwrap())
        .collect()
}

/// Deterministic, non-repeating-looking test data.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 131 + i / 253) % 256).unwrap())
        .collect()
}

// The real binary, for tests that need its log, its signals or its exit status.

pub const BIN: &str = env!("CARGO_BIN_EXE_chunk-server");

/// A port free a moment ago: bind port 0, note the port, release it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running binary; killed (by its handle) and reaped on drop.
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
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The events logged so far.
    pub fn events(&self) -> Vec<Event> {
        self.log_text()
            .lines()
            .filter_map(|l| Event::parse_log_line(l).map(|(_, e)| e))
            .collect()
    }

    /// Waits for an event with all of `fields`; panics with the log when none comes.
    pub fn expect_event(&self, name: &str, fields: &[(&str, &str)]) {
        let found = wait_until(Duration::from_secs(15), || {
            self.events()
                .iter()
                .any(|e| e.name == name && fields.iter().all(|(k, v)| e.get(k) == Some(*v)))
        });
        assert!(
            found,
            "no `{name}` event with {fields:?} in server.log:\n{}",
            self.log_text()
        );
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

/// Starts the binary on a free loopback port with `dir` as its peer folder (stderr goes to
/// `dir/stderr.txt`) and waits until it logs that it listens.
pub fn start(dir: &Path, extra: &[&str]) -> ServerProcess {
    fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr.txt")).unwrap())
        .spawn()
        .expect("start chunk-server");
    let mut server = ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: dir.to_owned(),
    };
    let ready = wait_until(Duration::from_secs(20), || {
        server.log_text().contains("listening on")
            || server.child.try_wait().ok().flatten().is_some()
    });
    assert!(
        ready && server.child.try_wait().unwrap().is_none(),
        "chunk-server did not start; stderr:\n{}",
        server.stderr_text()
    );
    server
}

impl ServerProcess {
    /// Sends `signal` (`"TERM"`, `"INT"`) to this child, by its process id only.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
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

/// An honest extended request for a whole chunk, from the source address `from`, every socket
/// operation bounded by `timeout`: the chunk's bytes, or why it failed.
pub fn p2p_fetch_from(
    addr: SocketAddr,
    from: std::net::IpAddr,
    chunk: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut conn = Connection::connect_with(addr, Some(from), timeout, timeout)
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_request(&Request::Chunk {
        filename: chunk.into(),
        content_sha256: None,
        offset: 0,
    })
    .map_err(|e| format!("send: {e}"))?;
    let length = match conn.read_response() {
        Ok(Response::Chunk { length, .. }) => length,
        Ok(other) => return Err(format!("answer: {other:?}")),
        Err(e) => return Err(format!("answer: {e}")),
    };
    let mut body = Vec::new();
    conn.read_body_exact(length, &mut body, &mut |_| {})
        .map_err(|e| format!("body: {e}"))?;
    Ok(body)
}
