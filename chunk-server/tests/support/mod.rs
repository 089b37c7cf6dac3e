//! Helpers shared by the chunk server's integration tests: an in-process server, raw clients,
//! and a deadline poll instead of sleeps. Every socket here has a timeout: no test can hang.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chunk_server::{Config, Error};
use shared::chunk::ChunkName;
use shared::connection::Connection;
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
