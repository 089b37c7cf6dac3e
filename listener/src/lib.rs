//! The listener: hears peers' UDP announcements and keeps `DIR/tags.txt` up to date.
//!
//! # Layout
//! - [`run`] is the whole program once `main` has parsed flags and bound the UDP socket: it
//!   receives datagrams, records them in an [`Index`], expires what peers stopped announcing and
//!   rewrites `tags.txt` when what it shows changed.
//! - [`index`] holds the pure logic (apply, expire, render) with an injected clock.
//!
//! The datagram's source address names the holder; nothing in the payload is trusted for that.
//! Any datagram, however malformed, is logged and skipped: a listener shares its port with every
//! legacy implementation on the LAN and must outlive their mistakes. `tags.txt` itself, its
//! format and its locking, belong to `shared::tags`.

#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod index;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;

use shared::peer_dir::PeerDir;
use shared::protocol::Announcement;
use shared::shutdown::Shutdown;
use shared::tags::{TagsError, TagsIndex};
use shared::{DEFAULT_CHUNK_PORT, MAX_RECEIVE_DATAGRAM};

pub use index::Index;

/// Longest a receive blocks before the loop looks at shutdown and expiry again.
const RECV_TIMEOUT: Duration = Duration::from_millis(150);

/// Shortest time between two writes of `tags.txt`: at most ten writes a second, however busy
/// the network.
const MIN_WRITE_GAP: Duration = Duration::from_millis(100);

/// How long to wait before retrying a write of `tags.txt` that failed.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Most datagrams handled in one batch before `tags.txt` gets a chance to be written.
const MAX_BATCH: usize = 1024;

/// How many bytes of a malformed datagram a warning quotes.
const EXCERPT_BYTES: usize = 60;

/// Everything [`run`] needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; `tags.txt` is written there.
    pub dir: PathBuf,
    /// The TCP port where legacy peers, which announce no port, serve chunks.
    pub legacy_chunk_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            legacy_chunk_port: DEFAULT_CHUNK_PORT,
        }
    }
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer folder could not be created.
    #[error("cannot create the peer folder {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The socket could not be configured (timeouts, blocking mode).
    #[error("cannot configure the UDP socket")]
    Socket(#[source] io::Error),
    /// The first write of `tags.txt` failed: later ones would too.
    #[error("cannot write the index")]
    WriteTags(#[source] TagsError),
}

/// Listens on `socket` until `shutdown` is triggered, keeping `config.dir/tags.txt` current.
///
/// An existing `tags.txt` is reloaded first (a file that does not parse is warned about and
/// replaced), then written at once so that it exists with its header while the listener runs.
/// Malformed datagrams and later write failures are logged and the loop carries on.
///
/// # Errors
/// [`Error`] when the peer folder cannot be created, the socket cannot be configured or the
/// first write of `tags.txt` fails.
pub fn run(socket: UdpSocket, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let peer = PeerDir::new(&config.dir);
    peer.create().map_err(|source| Error::CreateDir {
        path: peer.root().to_owned(),
        source,
    })?;
    let path = peer.tags();
    let mut index = match TagsIndex::load(&path) {
        Ok(tags) => {
            if !tags.entries.is_empty() {
                log::info!(
                    "reloaded {} entries from {}",
                    tags.entries.len(),
                    path.display()
                );
            }
            Index::from_tags(&tags)
        }
        Err(e) => {
            log::warn!("{e}; starting with an empty index");
            Index::new()
        }
    };
    index.expire(Utc::now());
    log::info!(
        "listening on {}; writing {}",
        socket
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string()),
        path.display()
    );
    let mut writer = Writer::new(path);
    writer.write(&index).map_err(Error::WriteTags)?;

    let mut receiver = Receiver {
        socket,
        buf: vec![0; MAX_RECEIVE_DATAGRAM],
        legacy_chunk_port: config.legacy_chunk_port,
        recv_error: None,
    };
    let mut dirty = false;
    while !shutdown.is_triggered() {
        let timeout = if dirty {
            writer.wait().clamp(Duration::from_millis(1), RECV_TIMEOUT)
        } else {
            RECV_TIMEOUT
        };
        match receiver.batch(&mut index, timeout) {
            Ok(changed) => dirty |= changed,
            Err(e) => return Err(Error::Socket(e)),
        }
        dirty |= index.expire(Utc::now());
        if dirty && writer.wait().is_zero() {
            dirty = !writer.write_logged(&index);
        }
    }
    if dirty {
        writer.write_logged(&index);
    }
    log::info!("listener stopped");
    Ok(())
}

/// Receives datagrams into the index. Only [`run`]'s thread uses it.
struct Receiver {
    socket: UdpSocket,
    buf: Vec<u8>,
    legacy_chunk_port: u16,
    /// The last receive error warned about, so a lasting failure is logged once.
    recv_error: Option<String>,
}

impl Receiver {
    /// Waits up to `timeout` for a datagram, then takes whatever else is already queued (up to
    /// [`MAX_BATCH`]), so a burst of datagrams leads to one write. Returns whether the index
    /// changed.
    ///
    /// # Errors
    /// Only when the socket's timeout or blocking mode cannot be set.
    fn batch(&mut self, index: &mut Index, timeout: Duration) -> io::Result<bool> {
        self.socket.set_read_timeout(Some(timeout))?;
        let mut changed = match self.receive(index) {
            Some(changed) => changed,
            None => return Ok(false),
        };
        self.socket.set_nonblocking(true)?;
        let mut count = 1;
        while count < MAX_BATCH {
            match self.receive(index) {
                Some(c) => changed |= c,
                None => break,
            }
            count += 1;
        }
        self.socket.set_nonblocking(false)?;
        Ok(changed)
    }

    /// Receives and applies one datagram; `None` when there was none to receive.
    fn receive(&mut self, index: &mut Index) -> Option<bool> {
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                if self.recv_error.take().is_some() {
                    log::info!("receiving works again");
                }
                Some(self.handle(index, n, from))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Some(false),
            Err(e) => {
                let text = e.to_string();
                if self.recv_error.as_ref() != Some(&text) {
                    log::warn!("cannot receive: {text}");
                    self.recv_error = Some(text);
                }
                // Do not spin on a socket that keeps failing.
                std::thread::sleep(RECV_TIMEOUT);
                None
            }
        }
    }

    /// Decodes `buf[..n]`, sent by `from`, into the index; returns whether the index changed.
    fn handle(&self, index: &mut Index, n: usize, from: SocketAddr) -> bool {
        let bytes = &self.buf[..n];
        match Announcement::decode(bytes) {
            Ok(announcement) => {
                log::debug!(
                    "{from}: {:?} announced {} chunks ({})",
                    announcement.username,
                    announcement.chunks().len(),
                    announcement
                        .p2p
                        .as_ref()
                        .map_or_else(|| "legacy".to_owned(), |e| format!("p2p/{}", e.v)),
                );
                index.apply(from.ip(), &announcement, self.legacy_chunk_port, Utc::now())
            }
            Err(e) => {
                log::warn!(
                    "ignoring a {n}-byte datagram from {from}: {e}: \"{}\"{}",
                    bytes[..n.min(EXCERPT_BYTES)].escape_ascii(),
                    if n > EXCERPT_BYTES { "…" } else { "" }
                );
                false
            }
        }
    }
}

/// Writes `tags.txt`, no more often than [`MIN_WRITE_GAP`].
struct Writer {
    path: PathBuf,
    /// When the next write may happen.
    next: Instant,
    /// The last write error warned about, so a lasting failure is logged once.
    error: Option<String>,
}

impl Writer {
    fn new(path: PathBuf) -> Writer {
        Writer {
            path,
            next: Instant::now(),
            error: None,
        }
    }

    /// How long until a write is allowed.
    fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    fn write(&mut self, index: &Index) -> Result<(), TagsError> {
        let tags = index.to_tags(Utc::now());
        let result = tags.save(&self.path);
        self.next = Instant::now()
            + if result.is_ok() {
                MIN_WRITE_GAP
            } else {
                WRITE_RETRY
            };
        if result.is_ok() {
            log::debug!(
                "wrote {} entries to {}",
                tags.entries.len(),
                self.path.display()
            );
        }
        result
    }

    /// [`Writer::write`], warning about a failure (once while it lasts); returns whether the
    /// file was written.
    fn write_logged(&mut self, index: &Index) -> bool {
        match self.write(index) {
            Ok(()) => {
                if self.error.take().is_some() {
                    log::info!("{} written again", self.path.display());
                }
                true
            }
            Err(e) => {
                let text = e.to_string();
                if self.error.as_ref() != Some(&text) {
                    log::warn!("{text}; will retry");
                    self.error = Some(text);
                }
                false
            }
        }
    }
}
