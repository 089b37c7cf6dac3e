//! What goes wrong on the wire: bytes that do not decode ([`DecodeError`]), and the codes a
//! chunk server refuses a request with ([`ErrorCode`], carried by `Response::Error`).
//!
//! Kept apart from the messages so each message family can name them without importing another.

use serde::{Deserialize, Serialize};

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are a valid prefix of a message: read more.
    #[error("message is incomplete")]
    Incomplete,
    /// The bytes can never become a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    pub(super) fn from_json(err: &serde_json::Error) -> DecodeError {
        if err.is_eof() {
            DecodeError::Incomplete
        } else {
            DecodeError::Malformed(err.to_string())
        }
    }
}

/// Why a chunk server refused an extended request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was not understood or named something invalid.
    BadRequest,
    /// The server does not hold that chunk or content.
    NotFound,
    /// The server holds a content of that name, but not the one with the requested digest.
    WrongContent,
    /// The server failed while reading its own store.
    Internal,
    /// The server is on a private network and refuses plaintext requests: only the encrypted
    /// channel, keyed by the network key, is answered.
    PrivateNetwork,
    /// The client is a member of the network, but the server's allow list does not name it.
    NotAllowed,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Asserts that decoding `bytes` gave [`DecodeError::Malformed`], showing the start of the
    /// bytes otherwise.
    pub(in crate::protocol) fn assert_malformed<T: std::fmt::Debug>(
        decoded: Result<T, DecodeError>,
        bytes: &[u8],
    ) {
        assert!(
            matches!(decoded, Err(DecodeError::Malformed(_))),
            "{:?} not malformed: {decoded:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
    }
}
