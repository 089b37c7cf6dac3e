//! The connection to a holder, made the same way for every request (manifest or chunk): one
//! bind rule ([`Network::source_for`]), one connect timeout, and a [`CancelHandle`] that can cut
//! it off from another thread. On a private network (the network has [`Network::keys`]) a
//! holder of ours is reached only through the encrypted channel, which must prove the peer ID
//! the holder announced with; a legacy holder (listed only when the listener allows legacy
//! peers) stays plaintext, as it knows nothing else.

use std::net::{Shutdown as SocketShutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use shared::connection::{self, Connection, OpenError};
use shared::tags::Proto;

use super::error::FetchError;
use super::network::Network;
use crate::catalog::Holder;

/// Cancels one fetch from another thread, and tells it how far the fetch got (for the
/// progress bar: one relaxed store per write, read a few times a second).
#[derive(Debug)]
pub struct CancelHandle {
    cancelled: AtomicBool,
    /// Bytes of the chunk already in the part file when the transfer started.
    resumed: AtomicU64,
    /// Bytes of the chunk so far, those resumed from included (for a range of the chunk: where
    /// in the chunk the transfer has got to).
    written: AtomicU64,
    /// Where in the chunk the transfer stops: its end, or earlier once another holder was
    /// given the rest ([`CancelHandle::cut_at`]). `u64::MAX` until cut.
    end: AtomicU64,
    /// A clone of the fetch's socket, written by the fetching thread once connected, taken by
    /// [`CancelHandle::cancel`] to shut it down.
    stream: Mutex<Option<TcpStream>>,
}

impl Default for CancelHandle {
    fn default() -> CancelHandle {
        CancelHandle {
            cancelled: AtomicBool::new(false),
            resumed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            end: AtomicU64::new(u64::MAX),
            stream: Mutex::new(None),
        }
    }
}

impl CancelHandle {
    /// Stops the fetch: its next write fails and a blocked read returns.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Ok(mut stream) = self.stream.lock() {
            if let Some(stream) = stream.take() {
                let _ = stream.shutdown(SocketShutdown::Both);
            }
        }
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// How far the fetch got: bytes resumed from a part file, and bytes of the chunk so far
    /// (those resumed from included).
    pub fn position(&self) -> (u64, u64) {
        (
            self.resumed.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }

    /// Ends the transfer at byte `end` of the chunk, another holder fetching the rest. The
    /// receiving thread reads it before every write, so it never writes past `end` once this
    /// returns (a write under way ends below `end` when `end` leaves it room: see the caller).
    pub fn cut_at(&self, end: u64) {
        self.end.fetch_min(end, Ordering::SeqCst);
    }

    /// Where the transfer stops ([`CancelHandle::cut_at`]); `u64::MAX` when not cut.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::SeqCst)
    }

    /// The transfer continues a part file of `bytes`.
    pub(crate) fn resume_at(&self, bytes: u64) {
        self.resumed.store(bytes, Ordering::Relaxed);
        self.written.store(bytes, Ordering::Relaxed);
    }

    /// The chunk has `bytes` so far.
    pub(crate) fn wrote(&self, bytes: u64) {
        self.written.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn register(&self, stream: TcpStream) {
        if let Ok(mut slot) = self.stream.lock() {
            if self.is_cancelled() {
                let _ = stream.shutdown(SocketShutdown::Both);
            } else {
                *slot = Some(stream);
            }
        }
    }
}

/// Connects to `holder` with `read_timeout` for the first answer, and registers the connection
/// with `handle` so that [`CancelHandle::cancel`] shuts it down.
///
/// # Errors
/// [`FetchError::Cancelled`] when `handle` was cancelled already; [`FetchError::Connect`].
pub(crate) fn connect(
    holder: &Holder,
    net: &Network,
    read_timeout: Duration,
    handle: &CancelHandle,
) -> Result<Connection, FetchError> {
    if handle.is_cancelled() {
        return Err(FetchError::Cancelled);
    }
    let stream = connection::dial(holder.addr, net.source_for(holder.addr), net.connect)
        .map_err(FetchError::Connect)?;
    if let Ok(clone) = stream.try_clone() {
        handle.register(clone);
    }
    // The handshake is answered at once by our servers, like a request. The holder must
    // prove the peer ID it announced with (`None`, any member, for a holder known otherwise:
    // an offer's sender, a probe).
    let secure = match (&net.keys, holder.proto) {
        (Some(keys), Proto::P2p(_)) => Some((keys, holder.id)),
        _ => None,
    };
    Connection::open(stream, secure, net.first_byte, read_timeout).map_err(|e| match e {
        OpenError::Channel(_) if handle.is_cancelled() => FetchError::Cancelled,
        OpenError::Channel(error) => FetchError::Channel {
            addr: holder.addr,
            error,
        },
        OpenError::Io(e) => FetchError::Connect(e),
    })
}
