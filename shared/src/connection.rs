//! Framing over a `TcpStream`: the only place where the wire protocol meets socket I/O.
//!
//! A [`Connection`] owns the stream behind a buffered reader. Reads that parse a message (a
//! request on the server side, a response header on the client side) go through the buffer, so
//! body bytes that arrived with the header are never lost; body bytes are then copied from the
//! same buffer. Writes go straight to the socket, unbuffered, so large bodies are not copied
//! twice. Every read is bounded by a socket timeout: nothing here blocks forever.
//!
//! The bytes travel over a [`Transport`]: the plain socket, or on a private network the
//! encrypted channel ([`SecureStream`]) that carries the same protocol unchanged; the socket
//! beneath either gives the timeouts and the shutdowns.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::protocol::{DecodeError, Request, Response, MAX_RESPONSE_HEADER};
use crate::trust::channel::{self, ChannelError, ChannelKeys, SecureStream};
use crate::trust::PeerId;
use crate::{IO_IDLE_TIMEOUT, MAX_REQUEST_BYTES};

/// Why a read or write on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The peer closed the connection before sending anything.
    #[error("peer closed the connection without sending a request")]
    Empty,
    /// The peer stopped sending before the message was complete.
    #[error("peer closed the connection in the middle of a message")]
    Truncated,
    /// No data arrived within the timeout.
    #[error("peer sent nothing for {0:?}")]
    Timeout(Duration),
    /// The message is longer than allowed.
    #[error("message longer than {0} bytes")]
    TooLarge(usize),
    /// The bytes are not a valid message.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// Writing received bytes to the caller's sink failed (a full disk, say): not the peer's
    /// fault, and no other peer would do better.
    #[error("cannot store the received bytes: {0}")]
    Sink(io::Error),
    /// Another I/O error on the socket.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What a [`Connection`] carries its bytes over.
#[derive(Debug)]
pub enum Transport {
    /// The socket itself: an open network, or a legacy peer.
    Plain(TcpStream),
    /// The encrypted channel of a private network.
    Secure(Box<SecureStream>),
}

impl Transport {
    /// The socket beneath, for its options and shutdowns.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Secure(secure) => secure.get_ref(),
        }
    }

    /// The peer ID the other side proved, on the encrypted channel.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self {
            Transport::Plain(_) => None,
            Transport::Secure(secure) => Some(secure.peer_id()),
        }
    }

    /// Sets the socket's write timeout.
    ///
    /// # Errors
    /// When the socket option cannot be set.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
}

impl From<TcpStream> for Transport {
    fn from(tcp: TcpStream) -> Transport {
        Transport::Plain(tcp)
    }
}

impl From<SecureStream> for Transport {
    fn from(secure: SecureStream) -> Transport {
        Transport::Secure(Box::new(secure))
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Secure(secure) => secure.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Secure(secure) => secure.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Secure(secure) => secure.flush(),
        }
    }
}

/// Connects to `addr` from the source address `bind` (see [`Connection::connect_with`])
/// within `connect_timeout`.
///
/// # Errors
/// When the source address cannot be bound or the server cannot be reached.
pub fn dial(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    connect_timeout: Duration,
) -> io::Result<TcpStream> {
    match bind {
        None => TcpStream::connect_timeout(&addr, connect_timeout),
        Some(ip) => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&addr.into(), connect_timeout)?;
            Ok(socket.into())
        }
    }
}

/// Why [`Connection::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The encrypted channel could not be opened (another key, another peer, no answer…).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The socket options could not be set.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A TCP connection with protocol-aware reads.
pub struct Connection {
    reader: BufReader<Transport>,
}

/// What one wait for bytes gave ([`Connection::fill`]).
enum Filled {
    /// The read buffer holds bytes.
    Data,
    /// The peer closed its side.
    Eof,
    /// The wait ended with nothing new.
    Idle,
}

/// The read buffer of a client's connection ([`Connection::open`]): a chunk's bytes are
/// received, hashed and written in steps of at most this much, so larger steps than the 64 KiB
/// of [`Connection::new`] mean fewer system calls, and fewer turns at the lock the file system
/// takes for each write into the file being received. Measured on a 1 GiB download from one
/// source over loopback (2 cores, medians of 5, twice): 1.00-1.03 s with 64 KiB, 0.83-0.85 s
/// with 256 KiB, 0.87-0.91 s with 1 MiB (whose steps no longer stay in the CPU's cache between
/// receiving and hashing).
const CLIENT_READ_BUFFER: usize = 256 * 1024;

impl Connection {
    /// Wraps an accepted or connected stream and sets its read and write timeouts.
    ///
    /// # Errors
    /// When the socket options cannot be set.
    pub fn new(stream: impl Into<Transport>, timeout: Duration) -> io::Result<Connection> {
        Connection::with_read_buffer(stream, timeout, 64 * 1024)
    }

    /// [`Connection::new`] with a read buffer of `capacity` bytes. A server, which reads only
    /// a request of at most [`MAX_REQUEST_BYTES`], wants a small one: the whole buffer is
    /// written (zeroed) on the first read, so each of hundreds of connections would otherwise
    /// hold 64 KiB of resident memory.
    ///
    /// # Errors
    /// When the socket options cannot be set.
    pub fn with_read_buffer(
        stream: impl Into<Transport>,
        timeout: Duration,
        capacity: usize,
    ) -> io::Result<Connection> {
        let stream = stream.into();
        let tcp = stream.tcp();
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        // Requests and headers are small single writes; do not let Nagle delay them.
        tcp.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::with_capacity(capacity.max(1), stream),
        })
    }

    /// Client side: the connection to one of our chunk servers over the connected `stream`,
    /// the one way every client of ours reaches one (the downloader for chunks and manifests,
    /// the listener for catalogs). With `secure` (a private network: the channel keys, and the
    /// peer ID the server announced with, when known) the encrypted channel is opened first,
    /// within `handshake`, and the server must prove that ID; without, the stream is used as
    /// it is (an open network, or a legacy server, which knows nothing else). Reads then wait
    /// at most `read_timeout`.
    ///
    /// # Errors
    /// [`OpenError::Channel`] when the handshake fails, [`OpenError::Io`] when the socket
    /// options cannot be set.
    pub fn open(
        stream: TcpStream,
        secure: Option<(&ChannelKeys, Option<PeerId>)>,
        handshake: Duration,
        read_timeout: Duration,
    ) -> Result<Connection, OpenError> {
        let transport = match secure {
            Some((keys, expected)) => channel::connect(stream, keys, expected, handshake)?.into(),
            None => Transport::from(stream),
        };
        Ok(Connection::with_read_buffer(
            transport,
            read_timeout,
            CLIENT_READ_BUFFER,
        )?)
    }

    /// Connects to a chunk server from a chosen source address (`bind`: several peers on one
    /// host each use their own 127.0.0.x, so servers log who really asked) and with explicit
    /// timeouts.
    ///
    /// # Errors
    /// When the source address cannot be bound or the server cannot be reached.
    pub fn connect_with(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> io::Result<Connection> {
        Self::new(dial(addr, bind, connect_timeout)?, io_timeout)
    }

    /// Changes the read timeout.
    ///
    /// # Errors
    /// When the socket option cannot be set.
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().tcp().set_read_timeout(Some(timeout))
    }

    /// The socket's read timeout now.
    fn read_timeout(&self) -> io::Result<Duration> {
        Ok(self
            .reader
            .get_ref()
            .tcp()
            .read_timeout()?
            .unwrap_or(IO_IDLE_TIMEOUT))
    }

    /// A second handle on the socket, so another thread can shut it down to interrupt a
    /// blocked read.
    ///
    /// # Errors
    /// When the handle cannot be duplicated.
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().tcp().try_clone()
    }

    /// The transport, for writing body bytes directly.
    pub fn stream(&mut self) -> &mut Transport {
        self.reader.get_mut()
    }

    /// The peer ID the other side proved, on the encrypted channel.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.reader.get_ref().peer_id()
    }

    /// The one read loop under every read here: waits until the buffer holds bytes, the peer
    /// closes, or the wait ends. With a `deadline`, each read may only wait for what is left of
    /// it (and none is made once it has passed); without, the socket's read timeout bounds the
    /// wait. The bytes are then taken from `self.reader.buffer()` and consumed.
    fn fill(&mut self, deadline: Option<Instant>) -> io::Result<Filled> {
        loop {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Filled::Idle);
                }
                self.set_read_timeout(left)?;
            }
            return match self.reader.fill_buf() {
                Ok([]) => Ok(Filled::Eof),
                Ok(_) => Ok(Filled::Data),
                Err(e) if is_timeout(&e) => Ok(Filled::Idle),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Server side: reads one request, which must be complete within the connection's read
    /// timeout as a whole (see [`Connection::read_request_until`]).
    ///
    /// # Errors
    /// As [`Connection::read_request_until`].
    pub fn read_request(&mut self) -> Result<Request, ConnectionError> {
        let timeout = self.read_timeout()?;
        self.read_request_until(Instant::now() + timeout)
    }

    /// Server side: reads one request, which must be complete by `deadline`. Legacy clients send
    /// the JSON object without a newline and then wait, so the object is parsed as bytes arrive,
    /// not at end of stream. The deadline bounds the whole request, not each read: a client
    /// that sends one byte of white space at a time is cut off like a silent one.
    ///
    /// # Errors
    /// [`ConnectionError::Empty`] when the client closes without sending anything,
    /// [`ConnectionError::Timeout`] when the request is not complete by `deadline`,
    /// [`ConnectionError::TooLarge`] past [`MAX_REQUEST_BYTES`], and
    /// [`ConnectionError::Malformed`] or [`ConnectionError::Truncated`] for bad bytes.
    pub fn read_request_until(&mut self, deadline: Instant) -> Result<Request, ConnectionError> {
        let started = Instant::now();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match self.fill(Some(deadline))? {
                Filled::Data => {}
                Filled::Idle => return Err(ConnectionError::Timeout(started.elapsed())),
                Filled::Eof if buf.iter().all(u8::is_ascii_whitespace) => {
                    return Err(ConnectionError::Empty)
                }
                Filled::Eof => return Err(ConnectionError::Truncated),
            }
            let available = self.reader.buffer();
            let take = available.len().min(MAX_REQUEST_BYTES + 1 - buf.len());
            buf.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            match Request::decode(&buf) {
                Ok((request, _)) => return Ok(request),
                Err(DecodeError::Incomplete) if buf.len() > MAX_REQUEST_BYTES => {
                    return Err(ConnectionError::TooLarge(MAX_REQUEST_BYTES))
                }
                Err(DecodeError::Incomplete) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Client side: sends a request in a single write.
    ///
    /// # Errors
    /// Any write error.
    pub fn write_request(&mut self, request: &Request) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(&request.encode())?;
        stream.flush()
    }

    /// Server side: sends a response header.
    ///
    /// # Errors
    /// Any write error.
    pub fn write_response(&mut self, response: &Response) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(&response.encode())?;
        stream.flush()
    }

    /// Client side: reads one response header line. The whole line must arrive within the
    /// connection's read timeout, counted from this call: a server that trickles its header a
    /// byte at a time cannot stretch it out.
    ///
    /// # Errors
    /// [`ConnectionError::Truncated`] when the server closes first (a legacy server that does not
    /// know the chunk, for instance), [`ConnectionError::Timeout`], [`ConnectionError::TooLarge`]
    /// or [`ConnectionError::Malformed`].
    pub fn read_response(&mut self) -> Result<Response, ConnectionError> {
        let timeout = self.read_timeout()?;
        let result = self.read_response_until(Instant::now() + timeout, timeout);
        // Body reads that follow get the per-read timeout back.
        self.set_read_timeout(timeout)?;
        result
    }

    fn read_response_until(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response, ConnectionError> {
        let mut line = Vec::new();
        loop {
            match self.fill(Some(deadline))? {
                Filled::Data => {}
                Filled::Idle => return Err(ConnectionError::Timeout(timeout)),
                Filled::Eof => return Err(ConnectionError::Truncated),
            }
            let available = self.reader.buffer();
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            if line.len() > MAX_RESPONSE_HEADER {
                return Err(ConnectionError::TooLarge(MAX_RESPONSE_HEADER));
            }
            if done {
                return Ok(Response::decode(&line)?);
            }
        }
    }

    /// Client side: copies exactly `length` body bytes into `out`.
    ///
    /// # Errors
    /// [`ConnectionError::Truncated`] when the server closes early, [`ConnectionError::Timeout`]
    /// when it stalls, or a write error from `out`.
    pub fn read_body_exact(
        &mut self,
        length: u64,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ConnectionError> {
        let mut remaining = length;
        while remaining > 0 {
            match self.fill(None)? {
                Filled::Data => remaining -= self.copy_buffered(out, remaining, progress)?,
                Filled::Eof => return Err(ConnectionError::Truncated),
                Filled::Idle => return Err(ConnectionError::Timeout(self.read_timeout()?)),
            }
        }
        Ok(length)
    }

    /// Client side, legacy servers: copies body bytes into `out` until the server closes.
    /// Servers that never close are handled by silence: once some data has arrived,
    /// `end_idle` without more ends the chunk; before any data, the connection's own read
    /// timeout applies and is an error.
    ///
    /// # Errors
    /// [`ConnectionError::Timeout`] when nothing at all arrives, or an I/O error.
    pub fn read_body_to_end(
        &mut self,
        end_idle: Duration,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ConnectionError> {
        let mut total = 0u64;
        let started = Instant::now();
        loop {
            match self.fill(None)? {
                Filled::Data => {
                    if total == 0 {
                        self.set_read_timeout(end_idle)?;
                    }
                    total += self.copy_buffered(out, u64::MAX, progress)?;
                }
                Filled::Eof => return Ok(total),
                Filled::Idle if total > 0 => return Ok(total),
                Filled::Idle => return Err(ConnectionError::Timeout(started.elapsed())),
            }
        }
    }

    /// Moves up to `limit` buffered bytes into `out`; returns how many.
    fn copy_buffered(
        &mut self,
        out: &mut impl Write,
        limit: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ConnectionError> {
        let available = self.reader.buffer();
        let take = usize::try_from(limit).map_or(available.len(), |l| l.min(available.len()));
        out.write_all(&available[..take])
            .map_err(ConnectionError::Sink)?;
        self.reader.consume(take);
        progress(take as u64);
        Ok(take as u64)
    }

    /// Half-closes the write side: the peer sees end of stream, we can still read.
    pub fn shutdown_write(&mut self) {
        // Sealed bytes still buffered go out first.
        let _ = self.reader.get_mut().flush();
        let _ = self.reader.get_ref().tcp().shutdown(Shutdown::Write);
    }

    /// Reads and discards whatever is already buffered or arrives within the read timeout, up to
    /// `limit` bytes; used before closing so the client does not get a reset.
    pub fn drain(&mut self, limit: usize) {
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < limit {
            match self.reader.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        (
            Connection::new(server, Duration::from_millis(300)).unwrap(),
            client,
        )
    }

    #[test]
    fn reads_a_request_sent_in_pieces_without_waiting_for_close() {
        let (mut server, mut client) = pair();
        let writer = thread::spawn(move || {
            client.write_all(b"{\"filename\"").unwrap();
            thread::sleep(Duration::from_millis(50));
            client.write_all(b": \"ece_1\"}").unwrap();
            // Keep the socket open, as a legacy client does while it waits for data.
            thread::sleep(Duration::from_millis(200));
            client
        });
        let request = server.read_request().unwrap();
        assert_eq!(
            request,
            Request::LegacyChunk {
                filename: "ece_1".into()
            }
        );
        writer.join().unwrap();
    }

    #[test]
    fn silent_client_times_out_and_closed_client_is_empty() {
        let (mut server, client) = pair();
        assert!(matches!(
            server.read_request(),
            Err(ConnectionError::Timeout(_))
        ));
        drop(client);
        let (mut server, client) = pair();
        drop(client);
        assert!(matches!(server.read_request(), Err(ConnectionError::Empty)));
    }

    #[test]
    fn a_request_trickling_in_is_cut_off_at_the_deadline_for_the_whole_request() {
        let (mut server, mut client) = pair();
        let trickle = thread::spawn(move || {
            // Each byte comes well within the 300 ms read timeout; the request never ends.
            let _ = client.write_all(b"{\"filename\"");
            for _ in 0..20 {
                thread::sleep(Duration::from_millis(100));
                if client.write_all(b" ").is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let result = server.read_request_until(started + Duration::from_millis(500));
        assert!(
            matches!(result, Err(ConnectionError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500));
        drop(server);
        trickle.join().unwrap();
    }

    #[test]
    fn oversized_and_junk_requests_are_refused() {
        let (mut server, mut client) = pair();
        let junk = thread::spawn(move || {
            let mut long = b"{\"filename\": \"".to_vec();
            long.extend_from_slice(&[b'a'; 10_000]);
            let _ = client.write_all(&long);
            client
        });
        assert!(matches!(
            server.read_request(),
            Err(ConnectionError::TooLarge(_))
        ));
        drop(junk.join());

        let (mut server, mut client) = pair();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(matches!(
            server.read_request(),
            Err(ConnectionError::Malformed(_))
        ));

        let (mut server, mut client) = pair();
        client.write_all(b"{\"filename\": \"a").unwrap();
        drop(client);
        assert!(matches!(
            server.read_request(),
            Err(ConnectionError::Truncated)
        ));
    }

    #[test]
    fn header_then_body_survive_arriving_in_one_segment() {
        let (mut server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(500)).unwrap();
        let body: Vec<u8> = (0..70_000u32)
            .map(|i| u8::try_from(i % 256).unwrap())
            .collect();
        let expected = body.clone();
        let t = thread::spawn(move || {
            let header = Response::Chunk {
                size: body.len() as u64,
                length: body.len() as u64,
                sha256: crate::digest::Digest::of(&body),
            };
            let mut all = header.encode();
            all.extend_from_slice(&body);
            server.stream().write_all(&all).unwrap();
        });
        let Response::Chunk { length, .. } = client.read_response().unwrap() else {
            panic!("not a chunk header")
        };
        let mut out = Vec::new();
        let mut seen = 0;
        client
            .read_body_exact(length, &mut out, &mut |n| seen += n)
            .unwrap();
        assert_eq!(out, expected);
        assert_eq!(seen, length);
        t.join().unwrap();
    }

    #[test]
    fn legacy_body_ends_at_close_or_at_silence_after_data() {
        let (mut server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(500)).unwrap();
        server.stream().write_all(b"hello").unwrap();
        drop(server);
        let mut out = Vec::new();
        let n = client
            .read_body_to_end(Duration::from_millis(100), &mut out, &mut |_| {})
            .unwrap();
        assert_eq!((n, &out[..]), (5, &b"hello"[..]));

        // A server that never closes: silence after data ends the chunk.
        let (mut server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(500)).unwrap();
        server.stream().write_all(b"abc").unwrap();
        let mut out = Vec::new();
        let n = client
            .read_body_to_end(Duration::from_millis(100), &mut out, &mut |_| {})
            .unwrap();
        assert_eq!(n, 3);
        // Silence before any data is an error, not an empty chunk.
        let (_server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(100)).unwrap();
        assert!(matches!(
            client.read_body_to_end(Duration::from_millis(50), &mut Vec::new(), &mut |_| {}),
            Err(ConnectionError::Timeout(_))
        ));
        drop(server);
    }

    #[test]
    fn a_header_trickled_a_byte_at_a_time_times_out_as_a_whole() {
        let (server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(300)).unwrap();
        let header = Response::Error {
            code: crate::protocol::ErrorCode::NotFound,
            message: "slowly".into(),
        }
        .encode();
        let trickle = thread::spawn(move || {
            let mut stream = server.reader.into_inner();
            for byte in header {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        // Each byte comes well within the 300 ms timeout; the whole header would take 3 s.
        assert!(matches!(
            client.read_response(),
            Err(ConnectionError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
        trickle.join().unwrap();
    }

    #[test]
    fn exact_body_reports_truncation() {
        let (mut server, client) = pair();
        let mut client = Connection::new(client, Duration::from_millis(500)).unwrap();
        server.stream().write_all(b"12345").unwrap();
        drop(server);
        assert!(matches!(
            client.read_body_exact(10, &mut Vec::new(), &mut |_| {}),
            Err(ConnectionError::Truncated)
        ));
    }
}
