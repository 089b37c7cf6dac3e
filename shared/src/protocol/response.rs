//! The header line a chunk server answers an extended request with: a chunk follows, a
//! manifest, a catalog follows, or a refusal with its [`ErrorCode`].

use serde::{Deserialize, Serialize};

use super::content::Manifest;
use super::error::{DecodeError, ErrorCode};
use crate::digest::Digest;

/// The header line a chunk server sends in answer to an extended request.
///
/// # Format
/// One JSON object and a newline; for `chunk`, exactly `length` raw bytes follow, then a close.
/// ```text
/// {"chunk":{"size":209716,"length":209716,"sha256":"<chunk digest>"}}\n<bytes>
/// {"manifest":{"name":"photo.png","size":1048579,"sha256":"…","chunks":["…",…]}}\n
/// {"catalog":{"count":10000,"length":1987654,"sha256":"<catalog digest>"}}\n<bytes>
/// {"error":{"code":"not_found","message":"no chunk photo.png_3 here"}}\n
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// A chunk follows.
    Chunk {
        /// Size of the whole chunk.
        size: u64,
        /// Bytes that follow this header: `size - offset`.
        length: u64,
        /// SHA-256 of the whole chunk, as the server's manifest records it.
        sha256: Digest,
    },
    /// The requested manifest.
    Manifest(Manifest),
    /// The server's catalog follows: exactly `length` bytes, then a close.
    Catalog {
        /// How many contents it lists.
        count: u64,
        /// Bytes that follow this header.
        length: u64,
        /// SHA-256 of those bytes.
        sha256: Digest,
    },
    /// The request was refused.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
}

/// Longest header line a client accepts: a manifest with a long name is well under 1 KiB.
pub const MAX_RESPONSE_HEADER: usize = 8192;

impl Response {
    /// The header line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Decodes one header line (with or without its newline).
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] for a prefix of a header, [`DecodeError::Malformed`] otherwise.
    pub fn decode(line: &[u8]) -> Result<Response, DecodeError> {
        let mut stream = serde_json::Deserializer::from_slice(line).into_iter::<Response>();
        match stream.next() {
            None => Err(DecodeError::Incomplete),
            Some(Err(e)) => Err(DecodeError::from_json(&e)),
            Some(Ok(response)) => Ok(response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::content::tests::{digest, manifest};
    use crate::protocol::error::tests::assert_malformed;

    fn every_response() -> Vec<Response> {
        vec![
            Response::Chunk {
                size: 10,
                length: 7,
                sha256: digest(3),
            },
            Response::Manifest(manifest()),
            Response::Catalog {
                count: 10_000,
                length: 1_987_654,
                sha256: digest(5),
            },
            Response::Error {
                code: ErrorCode::NotFound,
                message: "no such chunk".into(),
            },
            Response::Error {
                code: ErrorCode::WrongContent,
                message: String::new(),
            },
            Response::Error {
                code: ErrorCode::BadRequest,
                message: "x".into(),
            },
            Response::Error {
                code: ErrorCode::Internal,
                message: "y".into(),
            },
            Response::Error {
                code: ErrorCode::PrivateNetwork,
                message: "z".into(),
            },
            Response::Error {
                code: ErrorCode::NotAllowed,
                message: "w".into(),
            },
        ]
    }

    #[test]
    fn every_response_round_trips_and_truncations_are_incomplete() {
        for response in every_response() {
            let bytes = response.encode();
            assert_eq!(bytes.last(), Some(&b'\n'));
            assert!(bytes.len() < MAX_RESPONSE_HEADER);
            assert_eq!(Response::decode(&bytes).unwrap(), response);
            for cut in 0..bytes.len() - 1 {
                assert_eq!(
                    Response::decode(&bytes[..cut]),
                    Err(DecodeError::Incomplete),
                    "cut at {cut}"
                );
            }
        }
        for junk in [
            &b"{\"chunk\":{\"size\":\"big\"}}\n"[..],
            b"{\"manifest\":{\"name\":\"x\",\"size\":1,\"sha256\":\"00\",\"chunks\":[]}}",
        ] {
            assert_malformed(Response::decode(junk), junk);
        }
    }
}
