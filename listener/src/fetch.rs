//! Fetching one catalog from a peer's chunk server, on a thread of its own
//! ([`spawn`]), and checking it: the bytes must hash to the digest the peer announced before
//! any entry of it is believed.
//!
//! The connection is made the way every client of ours makes one
//! ([`Connection::open`]): plaintext on an open network; on a private one through the
//! encrypted channel, where the chunk server must prove the peer ID that signed the summary.
//! A hostile or broken peer is bounded at every step: the connect and the header wait at most
//! [`CONNECT_TIMEOUT`] and [`HEADER_TIMEOUT`], the whole fetch ends by [`FETCH_DEADLINE`]
//! however slowly bytes trickle in, a catalog announced longer than [`MAX_CATALOG_BYTES`] is
//! not read, and only the first entries the index could hold from one source are kept
//! ([`CatalogDecoder`]): memory does not grow with what the peer sends.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use shared::connection::{self, Connection, ConnectionError, OpenError};
use shared::digest::Digest;
use shared::protocol::{
    CatalogDecoder, DecodeError, DecodedCatalog, ErrorCode, Request, Response, MAX_CATALOG_BYTES,
};
use shared::trust::{ChannelError, ChannelKeys};

use crate::index::CatalogWanted;

/// Longest a connect to a chunk server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for the answer's header (and for the channel's handshake), counted from the
/// request: our chunk servers answer from a catalog they keep, or after one read of their
/// store.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest silence while the catalog's bytes arrive.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a whole fetch may take, from the connect to the last byte.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(30);

/// Why a catalog could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The chunk server could not be reached.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The encrypted channel could not be opened.
    #[error("secure channel: {0}")]
    Channel(ChannelError),
    /// The server refused.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Its words.
        message: String,
    },
    /// The server answered something else than a catalog of the digest announced.
    #[error("{0}")]
    Protocol(String),
    /// The catalog is longer than a listener reads.
    #[error(
        "a catalog of {0} bytes is longer than the {MAX_CATALOG_BYTES} bytes a listener reads"
    )]
    TooLarge(u64),
    /// The bytes do not hash to the digest announced.
    #[error("the catalog received hashes to {got}, not to the {wanted} announced")]
    Mismatch {
        /// The digest announced.
        wanted: Digest,
        /// The digest of what came.
        got: Digest,
    },
    /// A line of the catalog is not an entry.
    #[error("{0}")]
    Malformed(DecodeError),
    /// The fetch took longer than [`FETCH_DEADLINE`].
    #[error("not complete within {FETCH_DEADLINE:?}")]
    TooSlow,
    /// The connection failed while reading.
    #[error("{0}")]
    Transfer(ConnectionError),
    /// The request could not be sent.
    #[error("cannot send the request: {0}")]
    Send(io::Error),
}

/// The outcome of one fetch, as a fetching thread hands it to the main loop.
pub(crate) struct Fetched {
    /// What was fetched.
    pub(crate) wanted: CatalogWanted,
    /// The catalog (its first entries), or why not.
    pub(crate) result: Result<DecodedCatalog, FetchError>,
    /// How long it took.
    pub(crate) took: Duration,
}

/// Fetches `wanted` on a thread of its own, keeping at most `keep` entries, and sends the
/// outcome to `done`. The thread ends by [`FETCH_DEADLINE`] whatever the peer does; a send
/// to a main loop that has stopped is dropped.
///
/// # Errors
/// When the thread cannot be started.
pub(crate) fn spawn(
    wanted: CatalogWanted,
    keys: Option<ChannelKeys>,
    keep: usize,
    done: Sender<Fetched>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("catalog-fetch".into())
        .spawn(move || {
            let started = Instant::now();
            let result = fetch(&wanted, keys.as_ref(), keep);
            let _ = done.send(Fetched {
                wanted,
                result,
                took: started.elapsed(),
            });
        })
        .map(drop)
}

/// Fetches and checks the catalog `wanted` names, keeping at most `keep` entries; `keys`
/// on a private network.
///
/// # Errors
/// [`FetchError`]: unreachable, refused, too large, too slow, not matching the digest.
pub(crate) fn fetch(
    wanted: &CatalogWanted,
    keys: Option<&ChannelKeys>,
    keep: usize,
) -> Result<DecodedCatalog, FetchError> {
    let deadline = Instant::now() + FETCH_DEADLINE;
    let left = || deadline.saturating_duration_since(Instant::now());
    let addr = SocketAddr::new(wanted.peer.ip, wanted.peer.port);
    let stream =
        connection::dial(addr, None, CONNECT_TIMEOUT.min(left())).map_err(FetchError::Connect)?;
    let secure = keys.map(|keys| (keys, wanted.peer.id));
    let mut conn = Connection::open(stream, secure, HEADER_TIMEOUT.min(left()), HEADER_TIMEOUT)
        .map_err(|e| match e {
            OpenError::Channel(e) => FetchError::Channel(e),
            OpenError::Io(e) => FetchError::Connect(e),
        })?;
    let sha256 = wanted.summary.sha256;
    conn.write_request(&Request::Catalog { sha256 })
        .map_err(FetchError::Send)?;
    conn.set_read_timeout(HEADER_TIMEOUT.min(left()).max(Duration::from_millis(1)))
        .map_err(FetchError::Send)?;
    let (count, length) = match conn.read_response() {
        Ok(Response::Catalog {
            count,
            length,
            sha256: said,
        }) if said == sha256 && count == wanted.summary.count => (count, length),
        Ok(Response::Catalog { sha256: said, .. }) if said != sha256 => {
            return Err(FetchError::Mismatch {
                wanted: sha256,
                got: said,
            })
        }
        Ok(Response::Catalog { count, .. }) => {
            return Err(FetchError::Protocol(format!(
                "a catalog of {count} contents, not the {} announced",
                wanted.summary.count
            )))
        }
        Ok(Response::Error { code, message }) => return Err(FetchError::Refused { code, message }),
        Ok(other) => return Err(FetchError::Protocol(format!("answered {other:?}"))),
        Err(ConnectionError::Timeout(_)) if left().is_zero() => return Err(FetchError::TooSlow),
        Err(e) => return Err(FetchError::Transfer(e)),
    };
    if length > MAX_CATALOG_BYTES {
        return Err(FetchError::TooLarge(length));
    }
    conn.set_read_timeout(IDLE_TIMEOUT.min(left()).max(Duration::from_millis(1)))
        .map_err(FetchError::Send)?;
    let mut sink = DecoderSink {
        decoder: CatalogDecoder::new(keep),
        deadline,
        failure: None,
    };
    if let Err(e) = conn.read_body_exact(length, &mut sink, &mut |_| {}) {
        return Err(match (sink.failure, e) {
            (Some(failure), _) => failure,
            (None, ConnectionError::Timeout(_)) if left().is_zero() => FetchError::TooSlow,
            (None, e) => FetchError::Transfer(e),
        });
    }
    let decoded = sink.decoder.finish().map_err(FetchError::Malformed)?;
    if decoded.sha256 != sha256 {
        return Err(FetchError::Mismatch {
            wanted: sha256,
            got: decoded.sha256,
        });
    }
    if decoded.count != count {
        return Err(FetchError::Protocol(format!(
            "{} contents received, {count} said",
            decoded.count
        )));
    }
    Ok(decoded)
}

/// Where the catalog's bytes go as they arrive: into the decoder, until the deadline.
struct DecoderSink {
    decoder: CatalogDecoder,
    deadline: Instant,
    /// Why the sink refused bytes, which the connection reports only as an I/O error.
    failure: Option<FetchError>,
}

impl Write for DecoderSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if Instant::now() > self.deadline {
            self.failure = Some(FetchError::TooSlow);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "past the deadline"));
        }
        if let Err(e) = self.decoder.feed(buf) {
            self.failure = Some(FetchError::Malformed(e));
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a catalog"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
