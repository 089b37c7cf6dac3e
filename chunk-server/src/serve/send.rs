//! Sending an answer's body: a chunk file's bytes to the client's socket (to another host in
//! plaintext by `sendfile(2)`, with no copy through this process; otherwise through a buffer,
//! see [`BodyPath`]), at most at the `--max-rate` throttle, dropping a client that reads slower
//! than the [`RateFloor`].
//!
//! Only the sending: what to send was decided by `prepare`, and the event is logged by the
//! caller, from the count and the [`SendError`] returned here.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
#[cfg(target_os = "linux")]
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shared::connection::Transport;

use shared::IO_IDLE_TIMEOUT;

/// Buffer of an unthrottled copy ([`BodyPath::Copy`], and the encrypted channel): few system
/// calls, little memory per connection.
const SEND_BUFFER: usize = 128 * 1024;

/// Copies to clients on this host under way at once ([`LocalCopies`]): each holds a
/// [`SEND_BUFFER`], so together at most 2 MiB; more clients at once get `sendfile`, which holds
/// none.
const MAX_LOCAL_COPIES: usize = 16;

/// Most bytes one unthrottled `sendfile` step asks for. A non-blocking `sendfile` returns once
/// the socket's buffer is full whatever it is asked, so this only bounds one call; far more
/// than a socket buffer holds, so a fast client is fed in few calls.
#[cfg(target_os = "linux")]
const KERNEL_STEP: usize = 64 * 1024 * 1024;

/// Largest read-and-write step of a throttled transfer.
const THROTTLE_BUFFER: usize = 64 * 1024;

/// How a plaintext body reaches the socket.
///
/// To another host, `sendfile(2)`: the kernel hands the page cache to the network card, and
/// this process copies nothing. To a client on this host (a loopback address) there is no card:
/// the receiving process copies the bytes out of the socket itself, and it does that faster from
/// bytes the sender has just copied (still in the CPU's cache) than from the page cache that
/// `sendfile` passes on. Measured on loopback, a 1 GiB download (`scripts/bench.sh`, five runs
/// each): with `sendfile` the downloader used 2.52-2.89 s of CPU (median 2.61) against
/// 2.31-2.35 s (median 2.32) with a copy, while the chunk server saved about 0.14 s (1.48 s
/// against 1.62 s); the downloader is the side that limits a download. The encrypted channel
/// always copies: it must see every byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyPath {
    /// `sendfile(2)`, in plaintext (Linux).
    Kernel,
    /// A read and a write through one buffer.
    Copy,
}

impl BodyPath {
    /// The path for a client at `peer`: a copy for a client on this host, `sendfile` otherwise.
    pub(super) fn for_peer(peer: IpAddr) -> BodyPath {
        if peer.to_canonical().is_loopback() {
            BodyPath::Copy
        } else {
            BodyPath::Kernel
        }
    }
}

/// The copies to clients on this host under way ([`BodyPath::Copy`]), at most
/// [`MAX_LOCAL_COPIES`] at once: past that, a client on this host gets `sendfile` too, so that a
/// hundred of them at once cost no more memory than a hundred elsewhere.
#[derive(Debug, Default)]
pub(crate) struct LocalCopies(AtomicUsize);

impl LocalCopies {
    /// The path for a client at `peer` ([`BodyPath::for_peer`]), within the budget of copies;
    /// a copy is counted until the returned [`PathChoice`] is dropped.
    pub(super) fn choose(&self, peer: IpAddr) -> PathChoice<'_> {
        let copy = BodyPath::for_peer(peer) == BodyPath::Copy
            && self
                .0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < MAX_LOCAL_COPIES).then_some(n + 1)
                })
                .is_ok();
        PathChoice {
            path: if copy {
                BodyPath::Copy
            } else {
                BodyPath::Kernel
            },
            held: copy.then_some(&self.0),
        }
    }
}

/// The path a body takes, holding its place in [`LocalCopies`] while it is sent.
#[derive(Debug)]
pub(super) struct PathChoice<'a> {
    /// The path.
    pub(super) path: BodyPath,
    held: Option<&'a AtomicUsize>,
}

impl Drop for PathChoice<'_> {
    fn drop(&mut self) {
        if let Some(copies) = self.held {
            copies.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The slowest a client may read an answer: at least `bytes_per_sec` on average over each
/// `window` of time the server spends waiting for the client's socket to take more. Only that
/// waiting counts, never the pauses of our own `--max-rate` throttle or disk reads, so the
/// throttle cannot make an honest client look slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateFloor {
    /// Bytes per second.
    pub(crate) bytes_per_sec: u64,
    /// Over how much waiting the rate is measured.
    pub(crate) window: Duration,
}

impl RateFloor {
    /// Bytes the client must take in one window.
    fn min_bytes(&self) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * self.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// Why sending an answer's body stopped early.
#[derive(Debug)]
pub(super) enum SendError {
    /// The client read less than the [`RateFloor`] asks.
    TooSlow {
        /// Bytes it took in the last window.
        moved: u64,
        /// The time spent waiting for it in that window.
        waited: Duration,
        /// What it should have taken.
        required: u64,
    },
    /// The file or the socket failed (the client went away, say).
    Io(io::Error),
    /// The file changed while it was sent: the bytes sent may not be those its digest
    /// describes.
    Changed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooSlow {
                moved,
                waited,
                required,
            } => write!(
                f,
                "the client took {moved} bytes in {waited:.1?} of waiting, fewer than {required}"
            ),
            SendError::Io(e) => e.fmt(f),
            SendError::Changed => f.write_str("the file changed while it was sent"),
        }
    }
}

/// Whether a socket error is a timeout rather than a failure.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes to a client while keeping count of how fast it takes the bytes; see [`RateFloor`].
struct WriteWatch {
    floor: Option<RateFloor>,
    /// Bytes the socket took in the current window.
    moved: u64,
    /// Time spent waiting for the socket to take bytes (inside a blocking `write`, or in
    /// `poll`) in the current window.
    waited: Duration,
    /// When the socket last took a byte.
    last_progress: Instant,
}

impl WriteWatch {
    fn new(floor: Option<RateFloor>) -> WriteWatch {
        WriteWatch {
            floor,
            moved: 0,
            waited: Duration::ZERO,
            last_progress: Instant::now(),
        }
    }

    /// The socket write timeout: short enough that a client that takes nothing is measured
    /// within a window.
    fn write_timeout(&self) -> Duration {
        self.floor
            .map_or(IO_IDLE_TIMEOUT, |f| f.window.min(IO_IDLE_TIMEOUT))
            .max(Duration::from_millis(1))
    }

    /// Writes all of `data`, adding each byte the socket takes to `sent`. The socket blocks,
    /// at most its write timeout ([`Self::write_timeout`]) at a time.
    fn write_all(
        &mut self,
        stream: &mut Transport,
        mut data: &[u8],
        sent: &mut u64,
    ) -> Result<(), SendError> {
        while !data.is_empty() {
            let started = Instant::now();
            let result = stream.write(data);
            self.waited += started.elapsed();
            match result {
                Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    data = &data[n..];
                    self.took(n, sent);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => self.still_taking()?,
                Err(e) => return Err(SendError::Io(e)),
            }
            self.check_floor()?;
        }
        Ok(())
    }

    /// Moves `want` bytes of `file`, from its position, to the non-blocking socket `tcp` by
    /// `sendfile`, adding each byte the socket takes to `sent`; in between, waits for the
    /// socket to take more (`poll`), at most the write timeout at a time. Only that wait counts
    /// as waiting for the client, never the time the kernel spends reading the file. `length`
    /// is the whole body's, for the error when the file ends first.
    #[cfg(target_os = "linux")]
    fn sendfile_all(
        &mut self,
        tcp: &TcpStream,
        file: &File,
        mut want: usize,
        length: u64,
        sent: &mut u64,
    ) -> Result<(), SendError> {
        use nix::errno::Errno;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        // poll(2) counts whole milliseconds: round up, so a wait is never a busy loop.
        let timeout_ms = self.write_timeout().as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX);
        while want > 0 {
            match nix::sys::sendfile::sendfile64(tcp, file, None, want) {
                Ok(0) => {
                    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(SendError::Io(ended_early(eof, length)));
                }
                Ok(n) => {
                    want -= n;
                    self.took(n, sent);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let started = Instant::now();
                    let mut fds = [PollFd::new(tcp.as_fd(), PollFlags::POLLOUT)];
                    let ready = poll(&mut fds, timeout);
                    self.waited += started.elapsed();
                    match ready {
                        Ok(0) => self.still_taking()?,
                        // Writable, or an error the next `sendfile` reports.
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(SendError::Io(e.into())),
                    }
                }
                Err(e) => return Err(SendError::Io(e.into())),
            }
            self.check_floor()?;
        }
        Ok(())
    }

    /// The socket took `n` bytes.
    fn took(&mut self, n: usize, sent: &mut u64) {
        *sent += n as u64;
        self.moved += n as u64;
        self.last_progress = Instant::now();
    }

    /// After a wait that moved nothing: an error once the client took nothing for
    /// [`IO_IDLE_TIMEOUT`].
    fn still_taking(&self) -> Result<(), SendError> {
        if self.last_progress.elapsed() >= IO_IDLE_TIMEOUT {
            return Err(SendError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {IO_IDLE_TIMEOUT:?}"),
            )));
        }
        Ok(())
    }

    /// At the end of each window of waiting: an error when the client took less than the
    /// [`RateFloor`] asks.
    fn check_floor(&mut self) -> Result<(), SendError> {
        if let Some(floor) = self.floor {
            if self.waited >= floor.window {
                let required = floor.min_bytes();
                if self.moved < required {
                    return Err(SendError::TooSlow {
                        moved: self.moved,
                        waited: self.waited,
                        required,
                    });
                }
                self.moved = 0;
                self.waited = Duration::ZERO;
            }
        }
        Ok(())
    }
}

/// Sends `length` bytes of `file`, from its current position, to `stream` by `path` (in
/// plaintext; the encrypted channel always copies), at most `max_rate` bytes per second when
/// given, dropping a client that reads slower than `min_rate`. Returns how many bytes were
/// handed to the socket (a lower bound when the transfer failed) and how the transfer ended.
///
/// By `sendfile(2)` ([`Sender::Kernel`]) the bytes go from the page cache to the socket without
/// a copy through this process, the socket non-blocking so that only the wait for the client's
/// socket counts against it (`poll`), as in the copy. The standard library's `io::copy` would
/// not do it: it refuses `sendfile` from a file to a socket, since a later change to the file
/// can show in bytes already "sent" (still queued in the socket); so can ours, which is why a
/// file served in place is checked after its send (`prepare`) and every client of ours
/// verifies each chunk's digest. Otherwise a read/write loop through one buffer
/// ([`Sender::Copy`]).
pub(super) fn send_file(
    stream: &mut Transport,
    file: &mut File,
    length: u64,
    path: BodyPath,
    (max_rate, min_rate): (Option<u64>, Option<RateFloor>),
) -> (u64, Result<(), SendError>) {
    let rate = max_rate.filter(|&r| r > 0);
    let mut watch = WriteWatch::new(min_rate.filter(|f| f.bytes_per_sec > 0));
    if let Err(e) = stream.set_write_timeout(Some(watch.write_timeout())) {
        return (0, Err(SendError::Io(e)));
    }
    let mut sender = match Sender::new(stream, path, length, rate) {
        Ok(sender) => sender,
        Err(e) => return (0, Err(SendError::Io(e))),
    };
    // Throttled: about ten steps a second, so that the sleeps between them stay short.
    let step = match rate {
        Some(rate) => {
            usize::try_from(rate / 10).map_or(THROTTLE_BUFFER, |s| s.clamp(1, THROTTLE_BUFFER))
        }
        None => sender.step(),
    };
    let started = Instant::now();
    let mut sent = 0;
    while sent < length {
        let want = usize::try_from(length - sent).map_or(step, |r| r.min(step));
        if let Err(e) = sender.send(file, want, length, &mut watch, &mut sent) {
            return (sent, Err(e));
        }
        // Throttled, each step goes out at once: the encrypted channel would otherwise hold it
        // back until a whole frame (64 KiB) is due, which at a low rate is longer than the
        // client waits.
        if rate.is_some() {
            if let Err(e) = sender.flush() {
                return (sent, Err(SendError::Io(e)));
            }
        }
        // Sleep until the bytes so far are due at `rate`: the average never exceeds it.
        if let Some(due) = rate.and_then(|rate| started.checked_add(due_after(sent, rate))) {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
    }
    // The encrypted channel holds back a partial frame until flushed.
    if let Err(e) = sender.flush() {
        return (sent, Err(SendError::Io(e)));
    }
    (sent, Ok(()))
}

/// How an answer's body reaches the client's socket.
enum Sender<'a> {
    /// `sendfile(2)` from the file to the plaintext socket, made non-blocking for the body.
    #[cfg(target_os = "linux")]
    Kernel(NonBlocking<'a>),
    /// A read and a write through `buf`: the encrypted channel, which must see every byte.
    Copy {
        stream: &'a mut Transport,
        buf: Vec<u8>,
    },
}

impl<'a> Sender<'a> {
    /// The sender for `stream` by `path`, for a body of `length` bytes sent at most `rate`
    /// bytes per second.
    fn new(
        stream: &'a mut Transport,
        path: BodyPath,
        length: u64,
        rate: Option<u64>,
    ) -> io::Result<Sender<'a>> {
        #[cfg(target_os = "linux")]
        if path == BodyPath::Kernel {
            if let Transport::Plain(tcp) = stream {
                return NonBlocking::new(tcp).map(Sender::Kernel);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = path;
        let step = if rate.is_some() {
            THROTTLE_BUFFER
        } else {
            SEND_BUFFER
        };
        // Never more memory than the body needs.
        let buf = vec![0u8; usize::try_from(length).map_or(step, |l| l.min(step))];
        Ok(Sender::Copy { stream, buf })
    }

    /// The most an unthrottled step moves.
    fn step(&self) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            Sender::Kernel(_) => KERNEL_STEP,
            Sender::Copy { buf, .. } => buf.len().max(1),
        }
    }

    /// Moves exactly `want` bytes of `file`, from its position, to the socket (of a body of
    /// `length` bytes, for the error when the file ends first), adding each byte the socket
    /// takes to `sent`.
    fn send(
        &mut self,
        file: &mut File,
        want: usize,
        length: u64,
        watch: &mut WriteWatch,
        sent: &mut u64,
    ) -> Result<(), SendError> {
        match self {
            #[cfg(target_os = "linux")]
            Sender::Kernel(socket) => watch.sendfile_all(socket.0, file, want, length, sent),
            Sender::Copy { stream, buf } => {
                let buf = &mut buf[..want];
                file.read_exact(buf)
                    .map_err(|e| SendError::Io(ended_early(e, length)))?;
                watch.write_all(stream, buf, sent)
            }
        }
    }

    /// Pushes out what the transport holds back (the encrypted channel's partial frame).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Sender::Kernel(_) => Ok(()),
            Sender::Copy { stream, .. } => stream.flush(),
        }
    }
}

/// A read error, worded for a file that ended before the `length` bytes announced.
fn ended_early(e: io::Error, length: u64) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("chunk file ended before {length} bytes"),
        )
    } else {
        e
    }
}

/// A socket made non-blocking while a body is sent by `sendfile`, blocking again when dropped:
/// what follows the body (the graceful close) relies on the socket's timeouts.
#[cfg(target_os = "linux")]
struct NonBlocking<'a>(&'a TcpStream);

#[cfg(target_os = "linux")]
impl<'a> NonBlocking<'a> {
    fn new(tcp: &'a TcpStream) -> io::Result<NonBlocking<'a>> {
        tcp.set_nonblocking(true)?;
        Ok(NonBlocking(tcp))
    }
}

#[cfg(target_os = "linux")]
impl Drop for NonBlocking<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.set_nonblocking(false) {
            log::debug!("cannot make a client socket blocking again: {e}");
        }
    }
}

/// How long sending `bytes` takes at `rate` bytes per second.
fn due_after(bytes: u64, rate: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};
    use std::net::TcpListener;

    #[test]
    fn due_time_follows_the_rate_without_overflow() {
        assert_eq!(due_after(1000, 1000), Duration::from_secs(1));
        assert_eq!(due_after(500, 1000), Duration::from_millis(500));
        assert_eq!(due_after(0, 7), Duration::ZERO);
        // Saturates rather than overflowing.
        assert_eq!(due_after(u64::MAX, 1), Duration::from_nanos(u64::MAX));
    }

    use std::net::TcpStream;

    fn socket_pair() -> (Transport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (Transport::Plain(server), client)
    }

    /// A server transport over the encrypted channel, and its client.
    fn secure_pair() -> (Transport, shared::trust::channel::SecureStream) {
        use shared::trust::channel::{accept, connect, ChannelKeys};
        use shared::trust::{Identity, NetworkKey};
        use std::sync::Arc;
        let keys = |seed| {
            ChannelKeys::new(
                &NetworkKey::from_bytes([9; 32]),
                Arc::new(Identity::from_seed(&[seed; 32])),
            )
        };
        let (server, client) = socket_pair();
        let Transport::Plain(server) = server else {
            unreachable!()
        };
        let handshake = thread::spawn(move || {
            accept(
                server,
                Some(&keys(1)),
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap()
        });
        let client = connect(client, &keys(2), None, Duration::from_secs(5)).unwrap();
        (Transport::from(handshake.join().unwrap()), client)
    }

    #[test]
    fn every_sender_sends_exactly_the_requested_range() {
        use shared::digest::Digest;
        let mut source = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        source.write_all(&data).unwrap();
        // Plaintext by sendfile and by copying, unthrottled and throttled; the encrypted
        // channel (always by copying).
        let fast = Some(1_000_000_000);
        for (secure, path, rate) in [
            (false, BodyPath::Kernel, None),
            (false, BodyPath::Kernel, fast),
            (false, BodyPath::Copy, None),
            (false, BodyPath::Copy, fast),
            (true, BodyPath::Kernel, None),
        ] {
            let (mut server, reader) = if secure {
                let (server, mut client) = secure_pair();
                let reader = thread::spawn(move || {
                    let mut got = vec![0u8; 2_500_000];
                    client.read_exact(&mut got).unwrap();
                    got
                });
                (server, reader)
            } else {
                let (server, mut client) = socket_pair();
                let reader = thread::spawn(move || {
                    let mut got = Vec::new();
                    client.read_to_end(&mut got).unwrap();
                    got
                });
                (server, reader)
            };
            source.seek(SeekFrom::Start(17)).unwrap();
            let (sent, result) = send_file(&mut server, &mut source, 2_500_000, path, (rate, None));
            result.unwrap();
            drop(server);
            assert_eq!(sent, 2_500_000);
            assert_eq!(
                Digest::of(&reader.join().unwrap()),
                Digest::of(&data[17..2_500_017]),
                "secure {secure} {path:?} rate {rate:?}"
            );
            // Only the bytes sent were taken from the file.
            assert_eq!(source.stream_position().unwrap(), 2_500_017);
        }
    }

    #[test]
    fn clients_on_this_host_get_a_copy_others_sendfile_and_the_channel_always_a_copy() {
        for here in ["127.0.0.1", "127.0.0.42", "::1", "::ffff:127.0.0.3"] {
            assert_eq!(
                BodyPath::for_peer(here.parse().unwrap()),
                BodyPath::Copy,
                "{here}"
            );
        }
        for there in ["192.168.1.20", "10.0.0.7", "fe80::1", "::ffff:192.168.1.20"] {
            let path = BodyPath::for_peer(there.parse().unwrap());
            assert_eq!(path, BodyPath::Kernel, "{there}");
        }
        let (mut plain, _client) = socket_pair();
        assert!(matches!(
            Sender::new(&mut plain, BodyPath::Copy, 10, None).unwrap(),
            Sender::Copy { .. }
        ));
        let sender = Sender::new(&mut plain, BodyPath::Kernel, 10, None).unwrap();
        #[cfg(target_os = "linux")]
        assert!(matches!(sender, Sender::Kernel(_)));
        drop(sender);
        // The socket is blocking again after the body, for the graceful close.
        #[cfg(target_os = "linux")]
        {
            use nix::fcntl::{fcntl, FcntlArg, OFlag};
            let flags = fcntl(plain.tcp(), FcntlArg::F_GETFL).unwrap();
            assert!(!OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
        }
        let (mut secure, _client) = secure_pair();
        assert!(matches!(
            Sender::new(&mut secure, BodyPath::Kernel, 10, None).unwrap(),
            Sender::Copy { .. }
        ));
    }

    #[test]
    fn copies_to_this_host_are_bounded_and_sendfile_takes_the_rest() {
        let copies = LocalCopies::default();
        let here: IpAddr = "127.0.0.9".parse().unwrap();
        let held: Vec<PathChoice<'_>> =
            (0..MAX_LOCAL_COPIES).map(|_| copies.choose(here)).collect();
        assert!(held.iter().all(|c| c.path == BodyPath::Copy));
        assert_eq!(copies.choose(here).path, BodyPath::Kernel);
        // Clients elsewhere never take a copy's place.
        let there: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(copies.choose(there).path, BodyPath::Kernel);
        drop(held);
        assert_eq!(copies.choose(here).path, BodyPath::Copy);
        assert_eq!(copies.0.load(Ordering::SeqCst), 0);
    }

    /// Sends 64 MiB by `path` to a client that reads nothing, far more than the socket
    /// buffers hold, so the send must wait for it; `meanwhile` gets the server's socket first.
    /// Returns what `send_file` did and how long it took.
    fn send_to_a_client_reading_nothing(
        path: BodyPath,
        floor: Option<RateFloor>,
        meanwhile: impl FnOnce(TcpStream),
    ) -> (u64, Result<(), SendError>, Duration) {
        const LEN: u64 = 64 * 1024 * 1024;
        let mut source = tempfile::tempfile().unwrap();
        source.set_len(LEN).unwrap();
        let (mut server, _client) = socket_pair();
        meanwhile(server.tcp().try_clone().unwrap());
        let started = Instant::now();
        let (sent, result) = send_file(&mut server, &mut source, LEN, path, (None, floor));
        assert!(sent < LEN, "{path:?}: the client took everything");
        (sent, result, started.elapsed())
    }

    #[test]
    fn closing_the_socket_under_a_waiting_send_ends_it_at_once() {
        // What shutdown does to a transfer past its grace: the send waits for a client that
        // reads nothing, and must stop as soon as its socket is shut down.
        for path in [BodyPath::Kernel, BodyPath::Copy] {
            let mut closer = None;
            let (_, result, took) = send_to_a_client_reading_nothing(path, None, |socket| {
                closer = Some(thread::spawn(move || {
                    thread::sleep(Duration::from_millis(300));
                    socket.shutdown(std::net::Shutdown::Both).unwrap();
                }));
            });
            closer.unwrap().join().unwrap();
            assert!(
                matches!(result, Err(SendError::Io(_))),
                "{path:?}: {result:?}"
            );
            // Not the 15 s idle timeout.
            assert!(took < Duration::from_secs(5), "{path:?}");
        }
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error_with_the_count_sent() {
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(b"0123456789").unwrap();
        for path in [BodyPath::Kernel, BodyPath::Copy] {
            for rate in [None, Some(1_000_000)] {
                let (mut server, _client) = socket_pair();
                source.seek(SeekFrom::Start(0)).unwrap();
                let (sent, result) = send_file(&mut server, &mut source, 20, path, (rate, None));
                assert!(result.is_err(), "{path:?} rate {rate:?}");
                assert!(sent <= 10);
            }
        }
    }

    #[test]
    fn a_client_that_takes_nothing_is_dropped_as_too_slow() {
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(200),
        };
        for path in [BodyPath::Kernel, BodyPath::Copy] {
            let (sent, result, took) = send_to_a_client_reading_nothing(path, Some(floor), drop);
            assert!(
                matches!(result, Err(SendError::TooSlow { .. })),
                "{path:?}: {result:?} after {sent} bytes"
            );
            assert!(took < Duration::from_secs(5));
        }
    }

    #[test]
    fn our_own_throttle_never_counts_against_the_client() {
        // Throttled to 20 kB/s, far below a floor of 1 MB/s: only waiting on the socket counts,
        // and a client that reads at once never makes the server wait.
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(&[7u8; 30_000]).unwrap();
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(100),
        };
        for path in [BodyPath::Kernel, BodyPath::Copy] {
            source.seek(SeekFrom::Start(0)).unwrap();
            let (mut server, mut client) = socket_pair();
            let reader = thread::spawn(move || {
                let mut got = Vec::new();
                client.read_to_end(&mut got).unwrap();
                got.len()
            });
            let limits = (Some(20_000), Some(floor));
            let (sent, result) = send_file(&mut server, &mut source, 30_000, path, limits);
            assert!(result.is_ok(), "{path:?}: {result:?}");
            drop(server);
            assert_eq!((sent, reader.join().unwrap()), (30_000, 30_000));
        }
    }

    #[test]
    fn a_throttled_answer_over_the_encrypted_channel_flows_without_waiting_for_whole_frames() {
        let (mut server, mut client) = secure_pair();
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(&[3u8; 3000]).unwrap();
        source.seek(SeekFrom::Start(0)).unwrap();
        // 1.5 s at 2000 bytes/s; the client gives up after 1 s without a byte.
        client
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let reader = thread::spawn(move || {
            let mut got = vec![0u8; 3000];
            client.read_exact(&mut got).map(|()| got)
        });
        let (sent, result) = send_file(
            &mut server,
            &mut source,
            3000,
            BodyPath::Kernel,
            (Some(2000), None),
        );
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, 3000);
        assert_eq!(reader.join().unwrap().unwrap(), vec![3u8; 3000]);
    }

    #[test]
    fn the_floor_asks_its_rate_over_its_window() {
        let floor = RateFloor {
            bytes_per_sec: 1024,
            window: Duration::from_secs(10),
        };
        assert_eq!(floor.min_bytes(), 10_240);
        let tiny = RateFloor {
            bytes_per_sec: u64::MAX,
            window: Duration::from_secs(u64::MAX / 1000),
        };
        assert_eq!(tiny.min_bytes(), u64::MAX);
    }
}
