//! The TCP request a client sends a chunk server: a legacy chunk request, our chunk request
//! (with a content digest and an offset), our manifest request or our catalog request.
//! Decoded as bytes arrive, so a valid request cut anywhere is [`DecodeError::Incomplete`],
//! never malformed.

use serde::{Deserialize, Serialize};

use super::error::DecodeError;
use crate::digest::Digest;
use crate::PROTOCOL_VERSION;

/// A request to a chunk server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A legacy request for a whole chunk: answered with the raw bytes and a close, or a bare
    /// close when the chunk is missing.
    ///
    /// # Format
    /// ```text
    /// {"filename": "ece_1"}
    /// ```
    LegacyChunk {
        /// The chunk name as sent (validated by the server).
        filename: String,
    },
    /// Our request for a chunk, from `offset` on and for `length` bytes (to its end when
    /// absent), of the content with digest `content_sha256` (when the client knows it):
    /// answered by a [`Response`](super::Response) header, then the bytes.
    ///
    /// Servers older than `length` ignore it and send to the end of the chunk; their header
    /// says so (its `length`), and a client wanting less reads what it asked for and closes.
    ///
    /// # Format
    /// ```text
    /// {"filename":"photo.png_3","p2p":{"v":1,"sha256":"<content digest>","offset":0}}
    /// {"filename":"photo.png_3","p2p":{"v":1,"sha256":"<content digest>","offset":4096,"length":65536}}
    /// ```
    Chunk {
        /// The chunk name as sent (validated by the server).
        filename: String,
        /// SHA-256 of the whole content the client wants a chunk of.
        content_sha256: Option<Digest>,
        /// Where in the chunk to start (0 for the whole chunk).
        offset: u64,
        /// How many bytes from `offset` (never 0); `None` for all to the chunk's end.
        length: Option<u64>,
    },
    /// Our request for the [`Manifest`](super::Manifest) of a content: answered by a
    /// [`Response`](super::Response) header only.
    ///
    /// # Format
    /// ```text
    /// {"p2p":{"v":1,"manifest":"photo.png","sha256":"<content digest>"}}
    /// ```
    Manifest {
        /// The content name as sent (validated by the server).
        content: String,
        /// SHA-256 of the whole content, when the client knows it.
        content_sha256: Option<Digest>,
    },
    /// Our request for the server's [`Catalog`](super::Catalog), the one whose digest a
    /// compact announcement named: answered by a [`Response::Catalog`](super::Response)
    /// header and the catalog's bytes, or an error (`wrong_content` when the catalog changed
    /// since).
    ///
    /// # Format
    /// ```text
    /// {"p2p":{"v":1,"catalog":"<catalog digest>"}}
    /// ```
    Catalog {
        /// SHA-256 of the catalog wanted, as announced.
        sha256: Digest,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p2p: Option<RequestExtWire>,
}

#[derive(Serialize, Deserialize)]
struct RequestExtWire {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catalog: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether `bytes` stop inside a number that a digit would continue (`-`, `1.`, `1e`, `1e+`).
/// serde_json reports such a cut as an invalid number, not as the end of input, when the number
/// is in a value it skips (an unknown key inside `p2p`); the server decodes requests as bytes
/// arrive, so a valid request split at that byte must count as incomplete.
fn ends_inside_a_number(bytes: &[u8]) -> bool {
    if !matches!(bytes.last(), Some(b'-' | b'+' | b'.' | b'e' | b'E')) {
        return false;
    }
    let mut longer = bytes.to_vec();
    longer.push(b'0');
    Request::decode(&longer) == Err(DecodeError::Incomplete)
}

impl Request {
    /// The JSON bytes of this request. Clients send them in one write: legacy servers read a
    /// request with a single `recv(1024)`.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            Request::LegacyChunk { filename } => RequestWire {
                filename: Some(filename.clone()),
                p2p: None,
            },
            Request::Chunk {
                filename,
                content_sha256,
                offset,
                length,
            } => RequestWire {
                filename: Some(filename.clone()),
                p2p: Some(RequestExtWire {
                    v: PROTOCOL_VERSION,
                    manifest: None,
                    sha256: *content_sha256,
                    offset: *offset,
                    catalog: None,
                    length: *length,
                }),
            },
            Request::Manifest {
                content,
                content_sha256,
            } => RequestWire {
                filename: None,
                p2p: Some(RequestExtWire {
                    v: PROTOCOL_VERSION,
                    manifest: Some(content.clone()),
                    sha256: *content_sha256,
                    offset: 0,
                    catalog: None,
                    length: None,
                }),
            },
            Request::Catalog { sha256 } => RequestWire {
                filename: None,
                p2p: Some(RequestExtWire {
                    v: PROTOCOL_VERSION,
                    manifest: None,
                    sha256: None,
                    offset: 0,
                    catalog: Some(*sha256),
                    length: None,
                }),
            },
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Decodes the first JSON value in `bytes` and returns the request and how many bytes it
    /// used; bytes after it are left to the caller.
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] when `bytes` is empty, blank or a prefix of a request;
    /// [`DecodeError::Malformed`] when it is not JSON, not an object of the known keys, or an
    /// object naming neither a chunk nor a manifest.
    pub fn decode(bytes: &[u8]) -> Result<(Request, usize), DecodeError> {
        let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<RequestWire>();
        let wire = match stream.next() {
            None => return Err(DecodeError::Incomplete),
            Some(Err(e)) if !e.is_eof() && ends_inside_a_number(bytes) => {
                return Err(DecodeError::Incomplete)
            }
            Some(Err(e)) => return Err(DecodeError::from_json(&e)),
            Some(Ok(wire)) => wire,
        };
        let used = stream.byte_offset();
        let request = match wire {
            RequestWire {
                filename: Some(filename),
                p2p: None,
            } => Request::LegacyChunk { filename },
            RequestWire {
                filename: Some(filename),
                p2p: Some(ext),
            } if ext.manifest.is_none() && ext.catalog.is_none() && ext.length != Some(0) => {
                Request::Chunk {
                    filename,
                    content_sha256: ext.sha256,
                    offset: ext.offset,
                    length: ext.length,
                }
            }
            RequestWire {
                filename: None,
                p2p:
                    Some(RequestExtWire {
                        manifest: Some(content),
                        sha256,
                        catalog: None,
                        length: None,
                        ..
                    }),
            } => Request::Manifest {
                content,
                content_sha256: sha256,
            },
            RequestWire {
                filename: None,
                p2p:
                    Some(RequestExtWire {
                        manifest: None,
                        catalog: Some(sha256),
                        length: None,
                        ..
                    }),
            } => Request::Catalog { sha256 },
            _ => {
                return Err(DecodeError::Malformed(
                    "request names not exactly one of a chunk (\"filename\"), a manifest or \
                     a catalog, or asks for 0 bytes"
                        .into(),
                ))
            }
        };
        Ok((request, used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::content::tests::digest;
    use crate::protocol::error::tests::assert_malformed;

    fn every_request() -> Vec<Request> {
        vec![
            Request::LegacyChunk {
                filename: "ece_1".into(),
            },
            Request::Chunk {
                filename: "photo.png_3".into(),
                content_sha256: Some(digest(9)),
                offset: 0,
                length: None,
            },
            Request::Chunk {
                filename: "photo.png_3".into(),
                content_sha256: None,
                offset: 12_345,
                length: None,
            },
            Request::Chunk {
                filename: "photo.png_3".into(),
                content_sha256: Some(digest(9)),
                offset: 4_096,
                length: Some(65_536),
            },
            Request::Chunk {
                filename: "b_5".into(),
                content_sha256: None,
                offset: 0,
                length: Some(u64::MAX),
            },
            Request::Manifest {
                content: "photo.png".into(),
                content_sha256: Some(digest(9)),
            },
            Request::Manifest {
                content: "my notes.txt".into(),
                content_sha256: None,
            },
            Request::Catalog { sha256: digest(4) },
        ]
    }

    #[test]
    fn legacy_request_is_exactly_the_legacy_bytes() {
        let bytes = Request::LegacyChunk {
            filename: "ece_1".into(),
        }
        .encode();
        assert_eq!(bytes, br#"{"filename":"ece_1"}"#);
        // What a Python peer sends (json.dumps puts a space after the colon).
        let (req, used) = Request::decode(br#"{"filename": "ece_1"}"#).unwrap();
        assert_eq!(
            req,
            Request::LegacyChunk {
                filename: "ece_1".into()
            }
        );
        assert_eq!(used, 21);
    }

    #[test]
    fn every_request_round_trips() {
        for request in every_request() {
            let bytes = request.encode();
            assert!(bytes.len() < 1024, "requests must fit a legacy recv(1024)");
            let (decoded, used) = Request::decode(&bytes).unwrap();
            assert_eq!(decoded, request);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn every_truncated_request_is_incomplete_never_a_panic() {
        for request in every_request() {
            let bytes = request.encode();
            for cut in 0..bytes.len() {
                assert_eq!(
                    Request::decode(&bytes[..cut]),
                    Err(DecodeError::Incomplete),
                    "cut at {cut} of {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    #[test]
    fn request_cut_inside_a_number_of_an_unknown_field_is_incomplete() {
        // Found by the `request_decode` fuzz target: unknown keys inside `p2p` are skipped, and
        // serde_json reported a number cut short there (`-`, `1.`, `1e`, `1e+`) as malformed,
        // so a valid request split across TCP segments at that byte was refused.
        for bytes in [
            &br#"{"filename":"3","p2p":{"v":11,"et":-1}}"#[..],
            br#"{"filename":"a_1","p2p":{"v":1,"later":-2.5e+3}}"#,
            br#"{"p2p":{"v":1,"manifest":"a","later":[1.5,-7E-2]}}"#,
        ] {
            let (request, used) = Request::decode(bytes).unwrap();
            assert_eq!(used, bytes.len());
            for cut in 0..bytes.len() {
                assert_eq!(
                    Request::decode(&bytes[..cut]),
                    Err(DecodeError::Incomplete),
                    "cut at {cut} of {} ({request:?})",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        // A number that is wrong where it stands stays malformed.
        for junk in [
            &br#"{"filename":"a_1","p2p":{"v":1,"later":-x"#[..],
            br#"{"filename":"a_1","p2p":{"v":1,"later":1.}"#,
            br#"{"filename":"a_1","p2p":{"v":1,"later":--"#,
        ] {
            assert_malformed(Request::decode(junk), junk);
        }
    }

    #[test]
    fn a_range_request_is_the_documented_bytes() {
        let bytes = Request::Chunk {
            filename: "photo.png_3".into(),
            content_sha256: None,
            offset: 4096,
            length: Some(65536),
        }
        .encode();
        assert_eq!(
            bytes,
            br#"{"filename":"photo.png_3","p2p":{"v":1,"offset":4096,"length":65536}}"#
        );
    }

    #[test]
    fn request_leaves_trailing_bytes_to_the_caller() {
        let mut bytes = Request::LegacyChunk {
            filename: "a_1".into(),
        }
        .encode();
        let len = bytes.len();
        bytes.extend_from_slice(b"\n{\"junk");
        assert_eq!(Request::decode(&bytes).unwrap().1, len);
    }

    #[test]
    fn a_catalog_request_names_nothing_else() {
        let d = digest(4);
        let (request, _) =
            Request::decode(format!(r#"{{"p2p":{{"v":1,"catalog":"{d}"}}}}"#).as_bytes()).unwrap();
        assert_eq!(request, Request::Catalog { sha256: d });
        assert_eq!(
            Request::Catalog { sha256: d }.encode(),
            format!(r#"{{"p2p":{{"v":1,"catalog":"{d}"}}}}"#).into_bytes()
        );
        // Fields of other requests beside it are ignored, like any unknown field of `p2p`.
        let (request, _) = Request::decode(
            format!(r#"{{"p2p":{{"v":1,"catalog":"{d}","sha256":"{d}","offset":5}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(request, Request::Catalog { sha256: d });
        // With a chunk or a manifest it names two things: malformed.
        for junk in [
            format!(r#"{{"filename":"a_1","p2p":{{"v":1,"catalog":"{d}"}}}}"#),
            format!(r#"{{"p2p":{{"v":1,"catalog":"{d}","manifest":"a"}}}}"#),
            format!(
                r#"{{"p2p":{{"v":1,"catalog":"{}"}}}}"#,
                d.to_string().to_uppercase()
            ),
        ] {
            assert_malformed(Request::decode(junk.as_bytes()), junk.as_bytes());
        }
    }

    #[test]
    fn hostile_requests_are_malformed() {
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"[1,2,3]",
            b"\"ece_1\"",
            b"{}",
            b"{\"filename\": 7}",
            b"{\"filename\": null}",
            b"{\"filename\": \"a_1\", \"extra\": 1}",
            b"{\"p2p\": {\"v\": 1}}",
            b"{\"p2p\": {\"v\": 1, \"manifest\": \"x\"}, \"filename\": \"x_1\"}",
            b"{\"filename\": \"a_1\", \"p2p\": {\"v\": \"one\"}}",
            b"{\"filename\": \"a_1\", \"p2p\": {\"v\": 1, \"offset\": -1}}",
            // A catalog request names only the catalog's digest.
            b"{\"p2p\": {\"v\": 1, \"catalog\": \"x\"}}",
            b"{\"p2p\": {\"v\": 1, \"catalog\": null}}",
            b"{\"p2p\": {\"v\": 1, \"catalog\": true}}",
            b"{\"filename\": \"a_1\", \"p2p\": {\"v\": 1, \"length\": 0}}",
            b"{\"filename\": \"a_1\", \"p2p\": {\"v\": 1, \"length\": -5}}",
            b"{\"p2p\": {\"v\": 1, \"manifest\": \"x\", \"length\": 5}}",
            b"{\"p2p\": {\"v\": 1, \"catalog\": \"abababababababababababababababababababababababababababababababab\", \"length\": 5}}",
            b"\xff\xfe\x00garbage",
            b"}",
        ] {
            assert_malformed(Request::decode(junk), junk);
        }
    }
}
