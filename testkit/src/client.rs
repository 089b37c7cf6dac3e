//! Clients of a chunk server as tests need them: raw bytes in one write (as a legacy or hostile
//! client sends them), one extended request read back in full, an honest fetch from a chosen
//! source address. Every socket has a timeout: no test can hang on a server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shared::connection::Connection;
use shared::protocol::{Request, Response};

/// Longest any single client read may wait.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One extended request: the response header and, for a chunk or a catalog, its body.
pub fn p2p_request(addr: SocketAddr, request: &Request) -> (Response, Vec<u8>) {
    let mut conn = Connection::connect_with(addr, None, Duration::from_secs(5), CLIENT_TIMEOUT)
        .expect("connect to the server");
    conn.write_request(request).expect("send the request");
    let response = conn.read_response().expect("read the response header");
    let mut body = Vec::new();
    if let Response::Chunk { length, .. } | Response::Catalog { length, .. } = response {
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
        length: None,
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
