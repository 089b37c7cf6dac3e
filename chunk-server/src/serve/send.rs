//! Sending an answer's body: a chunk file's bytes to the client's socket, at most at the
//! `--max-rate` throttle, dropping a client that reads slower than the [`RateFloor`].
//!
//! Only the sending: what to send was decided by `prepare`, and the event is logged by the
//! caller, from the count and the [`SendError`] returned here.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};

use shared::connection::Transport;
use std::thread;
use std::time::{Duration, Instant};

use shared::IO_IDLE_TIMEOUT;

/// Buffer of an unthrottled transfer: few system calls, little memory per connection.
const SEND_BUFFER: usize = 128 * 1024;

/// Largest read-and-write step of a throttled transfer.
const THROTTLE_BUFFER: usize = 64 * 1024;

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
    /// Time spent inside `write` in the current window.
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

    /// Writes all of `data`, adding each byte the socket takes to `sent`.
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
                    *sent += n as u64;
                    self.moved += n as u64;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if self.last_progress.elapsed() >= IO_IDLE_TIMEOUT {
                        return Err(SendError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client took nothing for {IO_IDLE_TIMEOUT:?}"),
                        )));
                    }
                }
                Err(e) => return Err(SendError::Io(e)),
            }
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
        }
        Ok(())
    }
}

/// Sends `length` bytes of `file`, from its current position, to `stream`, at most `max_rate`
/// bytes per second when given, dropping a client that reads slower than `min_rate`. Returns
/// how many bytes were handed to the socket (a lower bound when the transfer failed) and how
/// the transfer ended.
///
/// This is a plain read/write loop through one buffer rather than `io::copy`: the standard
/// library no longer uses `sendfile` from a file to a socket (its `safe_kernel_copy` refuses,
/// since later changes to the file could show in bytes already "sent"), and its fallback copies
/// through an 8 KiB buffer. Our own loop uses a larger buffer and counts exactly what was sent.
pub(super) fn send_file(
    stream: &mut Transport,
    file: &mut File,
    length: u64,
    max_rate: Option<u64>,
    min_rate: Option<RateFloor>,
) -> (u64, Result<(), SendError>) {
    let rate = max_rate.filter(|&r| r > 0);
    // Throttled: about ten steps a second, so that the sleeps between them stay short.
    let step = match rate {
        Some(rate) => {
            usize::try_from(rate / 10).map_or(THROTTLE_BUFFER, |s| s.clamp(1, THROTTLE_BUFFER))
        }
        None => SEND_BUFFER,
    };
    let mut watch = WriteWatch::new(min_rate.filter(|f| f.bytes_per_sec > 0));
    if let Err(e) = stream.set_write_timeout(Some(watch.write_timeout())) {
        return (0, Err(SendError::Io(e)));
    }
    let mut buf = vec![0u8; usize::try_from(length).map_or(step, |l| l.min(step))];
    let step = buf.len();
    let started = Instant::now();
    let mut sent = 0;
    while sent < length {
        let want = usize::try_from(length - sent).map_or(step, |r| r.min(step));
        if let Err(e) = file.read_exact(&mut buf[..want]) {
            let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("chunk file ended before {length} bytes"),
                )
            } else {
                e
            };
            return (sent, Err(SendError::Io(e)));
        }
        if let Err(e) = watch.write_all(stream, &buf[..want], &mut sent) {
            return (sent, Err(e));
        }
        // Throttled, each step goes out at once: the encrypted channel would otherwise hold it
        // back until a whole frame (64 KiB) is due, which at a low rate is longer than the
        // client waits.
        if rate.is_some() {
            if let Err(e) = stream.flush() {
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
    if let Err(e) = stream.flush() {
        return (sent, Err(SendError::Io(e)));
    }
    (sent, Ok(()))
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

    #[test]
    fn both_senders_send_exactly_the_requested_range() {
        let mut source = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        source.write_all(&data).unwrap();
        for rate in [None, Some(1_000_000_000)] {
            let (mut server, mut client) = socket_pair();
            source.seek(SeekFrom::Start(17)).unwrap();
            let reader = thread::spawn(move || {
                let mut got = Vec::new();
                client.read_to_end(&mut got).unwrap();
                got
            });
            let (sent, result) = send_file(&mut server, &mut source, 2_500_000, rate, None);
            result.unwrap();
            drop(server);
            assert_eq!(sent, 2_500_000);
            assert!(
                reader.join().unwrap() == data[17..2_500_017],
                "rate {rate:?}"
            );
        }
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error_with_the_count_sent() {
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(b"0123456789").unwrap();
        for rate in [None, Some(1_000_000)] {
            let (mut server, _client) = socket_pair();
            source.seek(SeekFrom::Start(0)).unwrap();
            let (sent, result) = send_file(&mut server, &mut source, 20, rate, None);
            assert!(result.is_err(), "rate {rate:?}");
            assert!(sent <= 10);
        }
    }

    #[test]
    fn a_client_that_takes_nothing_is_dropped_as_too_slow() {
        // Far more than the socket buffers hold, so the writes must wait for the client.
        let source = tempfile::tempfile().unwrap();
        source.set_len(64 * 1024 * 1024).unwrap();
        let (mut server, _client) = socket_pair();
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(200),
        };
        let started = Instant::now();
        let (sent, result) = send_file(
            &mut server,
            &mut source.try_clone().unwrap(),
            64 * 1024 * 1024,
            None,
            Some(floor),
        );
        assert!(
            matches!(result, Err(SendError::TooSlow { .. })),
            "{result:?} after {sent} bytes"
        );
        assert!(sent < 64 * 1024 * 1024);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn our_own_throttle_never_counts_against_the_client() {
        // Throttled to 20 kB/s, far below a floor of 1 MB/s: only waiting on the socket counts,
        // and a client that reads at once never makes the server wait.
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(&[7u8; 30_000]).unwrap();
        source.seek(SeekFrom::Start(0)).unwrap();
        let (mut server, mut client) = socket_pair();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got.len()
        });
        let floor = RateFloor {
            bytes_per_sec: 1_000_000,
            window: Duration::from_millis(100),
        };
        let (sent, result) = send_file(&mut server, &mut source, 30_000, Some(20_000), Some(floor));
        assert!(result.is_ok(), "{result:?}");
        drop(server);
        assert_eq!((sent, reader.join().unwrap()), (30_000, 30_000));
    }

    #[test]
    fn a_throttled_answer_over_the_encrypted_channel_flows_without_waiting_for_whole_frames() {
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
        let mut client = connect(client, &keys(2), None, Duration::from_secs(5)).unwrap();
        let mut server = Transport::from(handshake.join().unwrap());
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
        let (sent, result) = send_file(&mut server, &mut source, 3000, Some(2000), None);
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
