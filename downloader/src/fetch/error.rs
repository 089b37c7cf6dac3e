//! Why one request to one holder failed, and the word the log gives it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::connection::ConnectionError;
use shared::digest::Digest;
use shared::events::Outcome;
use shared::protocol::ErrorCode;
use shared::trust::ChannelError;

/// Why a fetch from one holder failed. Each is a reason to try another holder.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The holder could not be reached.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The encrypted channel of a private network could not be opened with the holder.
    #[error("{}", channel_message(*addr, error))]
    Channel {
        /// The holder's chunk server.
        addr: SocketAddr,
        /// Why.
        error: ChannelError,
    },
    /// This peer has no network key, and the holder is on a private network.
    #[error("peer at {0} is on a private network; this peer has no network key")]
    PrivateNetwork(SocketAddr),
    /// The request could not be sent.
    #[error("cannot send the request: {0}")]
    Send(io::Error),
    /// The holder sent (or announced) more than the chunk can hold: more than the manifest
    /// says, or more than a fifth of the largest content accepted.
    #[error("sent more than the {limit} bytes the chunk can hold")]
    TooLarge {
        /// The most the chunk may hold.
        limit: u64,
    },
    /// The holder accepted the connection and the request, and said nothing in time.
    #[error("no answer within {0:?}")]
    Silent(Duration),
    /// The holder refused the request.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The holder answered with something other than a chunk.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The transfer broke off.
    #[error("transfer failed: {0}")]
    Transfer(ConnectionError),
    /// The holder sends too slowly while others could send instead.
    #[error("too slow: {bytes} bytes in {window:?}")]
    Stalled {
        /// Bytes in the last window.
        bytes: u64,
        /// The window.
        window: Duration,
    },
    /// The bytes are not the chunk the manifest describes.
    #[error("wrong data: expected {expected_len} bytes with SHA-256 {expected}, got {actual_len} bytes with {actual}")]
    BadData {
        /// Expected hash.
        expected: Digest,
        /// Expected length.
        expected_len: u64,
        /// Received hash.
        actual: Digest,
        /// Received length.
        actual_len: u64,
    },
    /// Writing the part file failed: not the holder's fault.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The part file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The fetch was cancelled (Ctrl-C, or another holder delivered the chunk first).
    #[error("cancelled")]
    Cancelled,
}

/// What the user is told when the channel with the chunk server at `addr` failed.
fn channel_message(addr: SocketAddr, error: &ChannelError) -> String {
    match error {
        ChannelError::DifferentKey => format!("peer at {addr} uses a different network key"),
        ChannelError::PeerHasNoKey => {
            format!("peer at {addr} has no network key (an open network)")
        }
        ChannelError::WrongPeer { expected, actual } => {
            format!("peer at {addr} is not {expected} (it proved to be {actual})")
        }
        other => format!("peer at {addr}: secure channel failed: {other}"),
    }
}

impl FetchError {
    /// The error of a refusal by the holder at `addr`; `keyless` when this peer has no network
    /// key, so that a private network's refusal says what to do.
    pub(crate) fn refused(
        addr: SocketAddr,
        keyless: bool,
        code: ErrorCode,
        message: String,
    ) -> FetchError {
        match code {
            ErrorCode::PrivateNetwork if keyless => FetchError::PrivateNetwork(addr),
            code => FetchError::Refused { code, message },
        }
    }

    /// The log's `outcome` field for this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            FetchError::Connect(_) => Outcome::Unreachable,
            FetchError::Channel {
                error: ChannelError::DifferentKey | ChannelError::PeerHasNoKey,
                ..
            } => Outcome::WrongKey,
            FetchError::Channel {
                error: ChannelError::Timeout(_),
                ..
            } => Outcome::Timeout,
            FetchError::Channel { .. } => Outcome::Refused,
            FetchError::PrivateNetwork(_) => Outcome::PrivateNetwork,
            FetchError::Refused {
                code: ErrorCode::PrivateNetwork,
                ..
            } => Outcome::PrivateNetwork,
            FetchError::Refused {
                code: ErrorCode::NotAllowed,
                ..
            } => Outcome::NotAllowed,
            FetchError::Send(_) => Outcome::SendFailed,
            FetchError::Silent(_) => Outcome::Timeout,
            FetchError::TooLarge { .. } => Outcome::TooLarge,
            FetchError::Refused {
                code: ErrorCode::NotFound,
                ..
            } => Outcome::NotFound,
            FetchError::Refused {
                code: ErrorCode::WrongContent,
                ..
            } => Outcome::WrongContent,
            FetchError::Refused { .. } => Outcome::Refused,
            FetchError::Protocol(_) => Outcome::ProtocolError,
            FetchError::Transfer(ConnectionError::Timeout(_)) => Outcome::Timeout,
            FetchError::Transfer(ConnectionError::Truncated) => Outcome::Truncated,
            FetchError::Transfer(_) => Outcome::TransferFailed,
            FetchError::Stalled { .. } => Outcome::TooSlow,
            FetchError::BadData { .. } => Outcome::BadData,
            FetchError::Write { .. } => Outcome::WriteFailed,
            FetchError::Cancelled => Outcome::Cancelled,
        }
    }

    /// Whether the holder is unreachable, does not answer at all, or cannot be talked to
    /// (another network key, another peer ID, not allowed): it is skipped for the rest of the
    /// download rather than asked again for every chunk.
    pub fn is_unresponsive(&self) -> bool {
        matches!(
            self,
            FetchError::Connect(_)
                | FetchError::Silent(_)
                | FetchError::Channel { .. }
                | FetchError::PrivateNetwork(_)
                | FetchError::Refused {
                    code: ErrorCode::PrivateNetwork | ErrorCode::NotAllowed,
                    ..
                }
        )
    }

    /// Whether the holder sent bytes that are provably wrong: such a holder is avoided for the
    /// rest of the download, and what it sent is discarded.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, FetchError::BadData { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::trust::Identity;

    #[test]
    fn trust_failures_say_which_peer_and_what_to_do() {
        let addr = SocketAddr::from(([127, 0, 0, 2], 5001));
        let channel = |error| FetchError::Channel { addr, error }.to_string();
        assert_eq!(
            channel(ChannelError::DifferentKey),
            "peer at 127.0.0.2:5001 uses a different network key"
        );
        assert_eq!(
            channel(ChannelError::PeerHasNoKey),
            "peer at 127.0.0.2:5001 has no network key (an open network)"
        );
        let (expected, actual) = (
            Identity::from_seed(&[1; 32]).id(),
            Identity::from_seed(&[2; 32]).id(),
        );
        assert_eq!(
            channel(ChannelError::WrongPeer { expected, actual }),
            format!("peer at 127.0.0.2:5001 is not {expected} (it proved to be {actual})")
        );
        let keyless = FetchError::refused(addr, true, ErrorCode::PrivateNetwork, "x".into());
        assert_eq!(
            keyless.to_string(),
            "peer at 127.0.0.2:5001 is on a private network; this peer has no network key"
        );
        assert_eq!(keyless.outcome(), Outcome::PrivateNetwork);
        assert!(keyless.is_unresponsive());
        let member = FetchError::refused(addr, false, ErrorCode::NotAllowed, "not listed".into());
        assert_eq!(member.outcome(), Outcome::NotAllowed);
        assert!(member.is_unresponsive());
        let other = FetchError::refused(addr, true, ErrorCode::NotFound, "gone".into());
        assert_eq!(other.outcome(), Outcome::NotFound);
        assert!(!other.is_unresponsive());
    }
}
