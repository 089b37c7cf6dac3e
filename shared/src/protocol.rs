//! The wire messages, as pure data: encode to bytes, decode from bytes, no sockets.
//!
//! Two channels, both fixed by the legacy protocol and extended compatibly:
//!
//! - **UDP announcements** ([`Announcement`]): one JSON object per datagram with `username` and
//!   `files` (chunk names). Our peers add one key, `p2p`, that legacy peers ignore, carrying the
//!   chunk server's port, the announce interval and each content's size and SHA-256.
//! - **TCP requests** ([`Request`]) and **responses** ([`Response`]): a legacy request is
//!   `{"filename": "<chunk>"}` answered by the raw bytes and a close. A request that carries a
//!   `p2p` key (sent only to peers whose announcements carry `p2p`) is answered by one JSON header
//!   line and then, for a chunk, exactly the announced number of raw bytes.
//!
//! `docs/PROTOCOL.md` documents every message with examples; this module is its executable form.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkName;
use crate::digest::{Digest, Hasher};
use crate::{CHUNKS_PER_FILE, MAX_ANNOUNCE_DATAGRAM, PROTOCOL_VERSION};

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
    fn from_json(err: &serde_json::Error) -> DecodeError {
        if err.is_eof() {
            DecodeError::Incomplete
        } else {
            DecodeError::Malformed(err.to_string())
        }
    }
}

/// What our peers add to an announcement under the `p2p` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementExt {
    /// Extension version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// TCP port of the announcing peer's chunk server.
    pub port: u16,
    /// Seconds until the next periodic announcement; listeners expire entries after
    /// [`EXPIRY_INTERVALS`](crate::EXPIRY_INTERVALS) of these.
    pub interval: u64,
    /// Size and digest of each content whose chunks this datagram lists.
    #[serde(default)]
    pub contents: BTreeMap<String, ContentMeta>,
    /// Identifies one run of the announcing peer: a listener that sees a new instance from an
    /// address drops what the old one announced, so a restarted peer replaces its entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What this datagram is for; absent means a plain announcement.
    #[serde(default, skip_serializing_if = "Kind::is_announce")]
    pub kind: Kind,
}

/// The versions of our extension this build speaks: today only [`PROTOCOL_VERSION`].
pub const KNOWN_VERSIONS: RangeInclusive<u32> = 1..=PROTOCOL_VERSION;

impl AnnouncementExt {
    /// Whether a listener can use this extension: a query of any version (it only asks for an
    /// answer at its source address); anything else only at a version we speak and with a
    /// chunk-server port other than 0. An extension that is not usable counts as absent, like
    /// an unreadable one: the datagram is read as a legacy announcement, and nothing of it
    /// reaches `tags.txt` as `p2p/4000000000` or port 0.
    fn is_usable(&self) -> bool {
        self.kind == Kind::Query || (KNOWN_VERSIONS.contains(&self.v) && self.port != 0)
    }
}

/// The purpose of an extended datagram. Legacy listeners see every kind as an announcement;
/// queries and goodbyes carry no chunks, so to them they change nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// "These are my chunks."
    #[default]
    Announce,
    /// "Announce to me now": sent by a starting listener so it sees the network at once;
    /// announcers answer by unicast to the query's source address.
    Query,
    /// "I am leaving": listeners drop the sender's entries at once.
    Goodbye,
}

impl Kind {
    fn is_announce(&self) -> bool {
        *self == Kind::Announce
    }
}

/// The username every query is sent under: never a real peer's name (our announcers refuse
/// it), so a legacy listener that shows the last datagram of each username files a query's
/// empty `files` under it and keeps showing the querying peer's own announcement.
pub const QUERY_USERNAME: &str = "(query)";

/// Longest announce interval a listener honours, in seconds (ten minutes): a longer one is
/// taken at this value, so a peer cannot stay listed for days after it left. Our announcers
/// refuse a longer `--interval`.
pub const MAX_ANNOUNCE_INTERVAL_SECS: u64 = 600;

/// The identity of a content: its size, the SHA-256 of the whole file and the root digest of
/// its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentMeta {
    /// Size of the whole file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// [`Manifest::root`] of the announcer's manifest: a downloader takes a manifest from a
    /// holder only when it hashes to the root that holder announced, and holds every holder to
    /// the root it announced. Absent from peers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Digest>,
}

/// One announcement datagram.
///
/// # Format
/// ```text
/// {"username":"ece","files":["ece_1","ece_2"]}                        legacy
/// {"username":"alice","files":["photo.png_1","photo.png_2"],
///  "p2p":{"v":1,"port":5001,"interval":60,"instance":"5f3c9a…",
///         "contents":{"photo.png":{"size":1048579,"sha256":"9f86…"}}}} ours
/// {"username":"carol","files":[],"p2p":{…,"kind":"query"}}          ours: announce to me now
/// {"username":"alice","files":[],"p2p":{…,"kind":"goodbye"}}        ours: forget me
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The sender's username.
    pub username: String,
    /// Entries as sent. Our peers send only chunk names; legacy peers may add odd entries, which
    /// [`Announcement::chunks`] skips.
    pub files: Vec<String>,
    /// Our extension; `None` for legacy peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2p: Option<AnnouncementExt>,
}

impl Announcement {
    /// The JSON bytes of this datagram.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, integers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes one datagram, liberally: `username` must be a string and `files` an array, but
    /// non-string entries in `files`, unknown keys and an unreadable `p2p` extension (which then
    /// counts as a legacy announcement) are tolerated.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] for anything that is not such an object.
    pub fn decode(bytes: &[u8]) -> Result<Announcement, DecodeError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Malformed(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| DecodeError::Malformed("not a JSON object".into()))?;
        let username = object
            .get("username")
            .and_then(|v| v.as_str())
            .ok_or_else(|| DecodeError::Malformed("\"username\" missing or not a string".into()))?
            .to_owned();
        let files = object
            .get("files")
            .and_then(|v| v.as_array())
            .ok_or_else(|| DecodeError::Malformed("\"files\" missing or not an array".into()))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let p2p = object
            .get("p2p")
            .and_then(|v| serde_json::from_value::<AnnouncementExt>(v.clone()).ok())
            .filter(AnnouncementExt::is_usable);
        Ok(Announcement {
            username,
            files,
            p2p,
        })
    }

    /// The valid chunk names among `files`, skipping everything else.
    pub fn chunks(&self) -> Vec<ChunkName> {
        self.files
            .iter()
            .filter_map(|f| ChunkName::parse(f).ok())
            .collect()
    }

    /// Splits one peer's whole announcement into datagrams of at most
    /// [`MAX_ANNOUNCE_DATAGRAM`] bytes, each a complete announcement on its own.
    ///
    /// The chunks of one content stay in one datagram when they fit, and a datagram carries the
    /// `contents` entry of every content it lists. With no chunks at all, one datagram with an
    /// empty `files` is still produced, so the peer stays visible. A chunk that cannot fit even
    /// alone (a long username, or a long name of `"`s, which JSON escaping doubles) is left out
    /// and returned in the second list.
    pub fn pack(
        username: &str,
        ext: Option<&AnnouncementExt>,
        chunks: &[ChunkName],
        metas: &BTreeMap<String, ContentMeta>,
    ) -> (Vec<Vec<u8>>, Vec<ChunkName>) {
        let mut sorted: Vec<&ChunkName> = chunks.iter().collect();
        sorted.sort();
        sorted.dedup();

        let build = |names: &[&ChunkName]| -> Announcement {
            Announcement {
                username: username.to_owned(),
                files: names.iter().map(|n| n.to_string()).collect(),
                p2p: ext.map(|ext| AnnouncementExt {
                    contents: names
                        .iter()
                        .filter_map(|n| {
                            metas.get(n.content()).map(|m| (n.content().to_owned(), *m))
                        })
                        .collect(),
                    ..ext.clone()
                }),
            }
        };
        let fits = |names: &[&ChunkName]| build(names).encode().len() <= MAX_ANNOUNCE_DATAGRAM;

        let mut datagrams = Vec::new();
        let mut dropped = Vec::new();
        let mut current: Vec<&ChunkName> = Vec::new();
        for group in sorted.chunk_by(|a, b| a.content() == b.content()) {
            let mut candidate = current.clone();
            candidate.extend_from_slice(group);
            if fits(&candidate) {
                current = candidate;
                continue;
            }
            // The whole group does not fit beside what we have: start afresh, then place its
            // chunks one by one if even a fresh datagram cannot take them all.
            if !current.is_empty() {
                datagrams.push(build(&current).encode());
                current.clear();
            }
            for name in group {
                current.push(name);
                if !fits(&current) {
                    current.pop();
                    if current.is_empty() {
                        dropped.push((*name).clone());
                        continue;
                    }
                    datagrams.push(build(&current).encode());
                    current = vec![name];
                    if !fits(&current) {
                        dropped.push((*name).clone());
                        current.clear();
                    }
                }
            }
        }
        if !current.is_empty() || datagrams.is_empty() {
            datagrams.push(build(&current).encode());
        }
        (datagrams, dropped)
    }
}

/// The full description of one content, served on request and stored beside its chunks.
///
/// # Format
/// ```text
/// {"name":"photo.png","size":1048579,"sha256":"<64 hex>","chunks":["<64 hex>", … five]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The content (file) name.
    pub name: String,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// SHA-256 of each of the five chunks, in order.
    pub chunks: [Digest; CHUNKS_PER_FILE],
}

/// Domain separation of [`Manifest::root`], so the root can never equal the digest of a file.
const MANIFEST_ROOT_DOMAIN: &[u8] = b"p2p manifest root v1\0";

impl Manifest {
    /// The content's identity as announced.
    pub fn meta(&self) -> ContentMeta {
        ContentMeta {
            size: self.size,
            sha256: self.sha256,
            root: Some(self.root()),
        }
    }

    /// The root digest that commits to this manifest's size and five chunk digests: SHA-256 of
    /// a fixed domain string, the size as 8 big-endian bytes, and the five chunk digests in
    /// order. The file's SHA-256 cannot vouch for chunk digests before the whole file is
    /// here; the root, announced beside it, does: a manifest with other chunk digests has
    /// another root.
    pub fn root(&self) -> Digest {
        let mut hasher = Hasher::default();
        hasher.update(MANIFEST_ROOT_DOMAIN);
        hasher.update(&self.size.to_be_bytes());
        for chunk in &self.chunks {
            hasher.update(chunk.as_bytes());
        }
        hasher.finish()
    }
}

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
    /// Our request for a chunk, from `offset` on, of the content with digest `content_sha256`
    /// (when the client knows it): answered by a [`Response`] header, then the bytes.
    ///
    /// # Format
    /// ```text
    /// {"filename":"photo.png_3","p2p":{"v":1,"sha256":"<content digest>","offset":0}}
    /// ```
    Chunk {
        /// The chunk name as sent (validated by the server).
        filename: String,
        /// SHA-256 of the whole content the client wants a chunk of.
        content_sha256: Option<Digest>,
        /// Where in the chunk to start (0 for the whole chunk).
        offset: u64,
    },
    /// Our request for the [`Manifest`] of a content: answered by a [`Response`] header only.
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
            } => RequestWire {
                filename: Some(filename.clone()),
                p2p: Some(RequestExtWire {
                    v: PROTOCOL_VERSION,
                    manifest: None,
                    sha256: *content_sha256,
                    offset: *offset,
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
            } if ext.manifest.is_none() => Request::Chunk {
                filename,
                content_sha256: ext.sha256,
                offset: ext.offset,
            },
            RequestWire {
                filename: None,
                p2p:
                    Some(RequestExtWire {
                        manifest: Some(content),
                        sha256,
                        ..
                    }),
            } => Request::Manifest {
                content,
                content_sha256: sha256,
            },
            _ => {
                return Err(DecodeError::Malformed(
                    "request names neither a chunk (\"filename\") nor a manifest".into(),
                ))
            }
        };
        Ok((request, used))
    }

    /// Whether the answer is a [`Response`] header (our extension) rather than legacy raw bytes.
    pub fn expects_header(&self) -> bool {
        !matches!(self, Request::LegacyChunk { .. })
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
}

/// The header line a chunk server sends in answer to an extended request.
///
/// # Format
/// One JSON object and a newline; for `chunk`, exactly `length` raw bytes follow, then a close.
/// ```text
/// {"chunk":{"size":209716,"length":209716,"sha256":"<chunk digest>"}}\n<bytes>
/// {"manifest":{"name":"photo.png","size":1048579,"sha256":"…","chunks":["…",…]}}\n
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

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn manifest() -> Manifest {
        Manifest {
            name: "photo.png".into(),
            size: 1_048_579,
            sha256: digest(0),
            chunks: std::array::from_fn(|i| digest(u8::try_from(i + 1).unwrap())),
        }
    }

    fn ext() -> AnnouncementExt {
        AnnouncementExt {
            v: PROTOCOL_VERSION,
            port: 5001,
            interval: 60,
            contents: BTreeMap::new(),
            instance: Some("a1b2".into()),
            kind: Kind::Announce,
        }
    }

    fn every_request() -> Vec<Request> {
        vec![
            Request::LegacyChunk {
                filename: "ece_1".into(),
            },
            Request::Chunk {
                filename: "photo.png_3".into(),
                content_sha256: Some(digest(9)),
                offset: 0,
            },
            Request::Chunk {
                filename: "photo.png_3".into(),
                content_sha256: None,
                offset: 12_345,
            },
            Request::Manifest {
                content: "photo.png".into(),
                content_sha256: Some(digest(9)),
            },
            Request::Manifest {
                content: "my notes.txt".into(),
                content_sha256: None,
            },
        ]
    }

    fn every_response() -> Vec<Response> {
        vec![
            Response::Chunk {
                size: 10,
                length: 7,
                sha256: digest(3),
            },
            Response::Manifest(manifest()),
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
            assert!(
                matches!(Request::decode(junk), Err(DecodeError::Malformed(_))),
                "{:?} not malformed",
                String::from_utf8_lossy(junk)
            );
        }
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
            b"\xff\xfe\x00garbage",
            b"}",
        ] {
            assert!(
                matches!(Request::decode(junk), Err(DecodeError::Malformed(_))),
                "{:?} not malformed",
                String::from_utf8_lossy(junk)
            );
        }
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
        assert!(matches!(
            Response::decode(b"{\"chunk\":{\"size\":\"big\"}}\n"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Response::decode(
                b"{\"manifest\":{\"name\":\"x\",\"size\":1,\"sha256\":\"00\",\"chunks\":[]}}"
            ),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn legacy_announcement_decodes() {
        let a = Announcement::decode(
            br#"{"username": "ece", "files": ["ece_1", "ece_2", "ece_3", "ali_2", "ece.txt", 7]}"#,
        )
        .unwrap();
        assert_eq!(a.username, "ece");
        assert_eq!(a.p2p, None);
        assert_eq!(a.files.len(), 5);
        let chunks: Vec<String> = a.chunks().iter().map(|c| c.to_string()).collect();
        assert_eq!(chunks, ["ece_1", "ece_2", "ece_3", "ali_2"]);
    }

    #[test]
    fn our_announcement_round_trips_and_reads_as_legacy() {
        let mut ext = ext();
        ext.contents.insert("photo.png".into(), manifest().meta());
        let a = Announcement {
            username: "alice".into(),
            files: vec!["photo.png_1".into(), "photo.png_2".into()],
            p2p: Some(ext),
        };
        let bytes = a.encode();
        assert_eq!(Announcement::decode(&bytes).unwrap(), a);
        // A legacy listener only ever looks at these two keys.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["username"], "alice");
        assert_eq!(v["files"][1], "photo.png_2");
    }

    #[test]
    fn queries_and_goodbyes_round_trip_and_plain_announcements_omit_the_kind() {
        for kind in [Kind::Query, Kind::Goodbye] {
            let a = Announcement {
                username: "carol".into(),
                files: vec![],
                p2p: Some(AnnouncementExt { kind, ..ext() }),
            };
            let bytes = a.encode();
            assert_eq!(Announcement::decode(&bytes).unwrap(), a);
            assert!(Announcement::decode(&bytes).unwrap().chunks().is_empty());
        }
        let plain = Announcement {
            username: "a".into(),
            files: vec![],
            p2p: Some(ext()),
        }
        .encode();
        assert!(!String::from_utf8(plain).unwrap().contains("kind"));
        // A version-1 peer without instance or kind still decodes.
        let old = br#"{"username":"x","files":[],"p2p":{"v":1,"port":1,"interval":5}}"#;
        let ext = Announcement::decode(old).unwrap().p2p.unwrap();
        assert_eq!((ext.kind, ext.instance), (Kind::Announce, None));
    }

    #[test]
    fn the_documented_root_of_numbers_txt_is_the_one_computed() {
        // docs/PROTOCOL.md's running example: `seq 1 100000 > numbers.txt`.
        let data: Vec<u8> = (1..=100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let ranges = crate::chunk::chunk_ranges(data.len() as u64);
        let m = Manifest {
            name: "numbers.txt".into(),
            size: data.len() as u64,
            sha256: Digest::of(&data),
            chunks: std::array::from_fn(|i| {
                let r = ranges[i].as_range();
                Digest::of(
                    &data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()],
                )
            }),
        };
        assert_eq!(
            m.sha256.to_string(),
            "b2bc7d3f8b652d2ec96865b68ad8f80e22cca174abe1aed7889e242a747d590f"
        );
        assert_eq!(
            m.root().to_string(),
            "388078cc9899f7c8213ffc2845cad1b5e39191e5c34f4fd6213ba847378354ac"
        );
    }

    #[test]
    fn the_manifest_root_commits_to_size_and_every_chunk_digest() {
        let m = manifest();
        assert_eq!(m.meta().root, Some(m.root()));
        assert_ne!(m.root(), m.sha256);
        let mut other_size = m.clone();
        other_size.size += 1;
        assert_ne!(other_size.root(), m.root());
        for i in 0..CHUNKS_PER_FILE {
            let mut forged = m.clone();
            forged.chunks[i] = digest(200);
            assert_ne!(forged.root(), m.root(), "chunk {i}");
        }
        // The name is not part of it: the same bytes under another name have the same root.
        let renamed = Manifest {
            name: "other".into(),
            ..m.clone()
        };
        assert_eq!(renamed.root(), m.root());
        // An announcement of a peer without roots still decodes.
        let old = br#"{"username":"x","files":["a_1"],"p2p":{"v":1,"port":1,"interval":5,
            "contents":{"a":{"size":3,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}}}}"#;
        let ext = Announcement::decode(old).unwrap().p2p.unwrap();
        assert_eq!(ext.contents["a"].root, None);
    }

    #[test]
    fn broken_extension_degrades_to_legacy() {
        let a =
            Announcement::decode(br#"{"username":"x","files":["a_1"],"p2p":{"v":"?"}}"#).unwrap();
        assert_eq!(a.p2p, None);
        assert_eq!(a.chunks().len(), 1);
    }

    #[test]
    fn unknown_versions_and_port_0_degrade_to_legacy() {
        for text in [
            r#"{"username":"x","files":["a_1"],"p2p":{"v":4000000000,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":0,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":2,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":1,"port":0,"interval":60}}"#,
            r#"{"username":"x","files":[],"p2p":{"v":1,"port":0,"interval":60,"kind":"goodbye"}}"#,
        ] {
            let a = Announcement::decode(text.as_bytes()).unwrap();
            assert_eq!(a.p2p, None, "{text}");
        }
        // A query names no port of its own, whatever its version.
        for v in [1, 7] {
            let text = format!(
                r#"{{"username":"x","files":[],"p2p":{{"v":{v},"port":0,"interval":60,"kind":"query"}}}}"#
            );
            let a = Announcement::decode(text.as_bytes()).unwrap();
            assert_eq!(a.p2p.map(|e| e.kind), Some(Kind::Query), "{text}");
        }
    }

    #[test]
    fn malformed_announcements_are_rejected() {
        let junk_60k = vec![b'x'; 60_000];
        for junk in [
            &b""[..],
            b"not json",
            b"[]",
            b"null",
            b"{\"files\": []}",
            b"{\"username\": 3, \"files\": []}",
            b"{\"username\": \"a\"}",
            b"{\"username\": \"a\", \"files\": \"a_1\"}",
            b"{\"username\": \"a\", \"files\": [\"a_1\"]",
            &junk_60k,
        ] {
            assert!(
                matches!(Announcement::decode(junk), Err(DecodeError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(&junk[..junk.len().min(40)])
            );
        }
    }

    fn metas_for(names: &[ChunkName]) -> BTreeMap<String, ContentMeta> {
        names
            .iter()
            .map(|n| {
                (
                    n.content().to_owned(),
                    ContentMeta {
                        size: 1 << 40,
                        sha256: Digest::of(n.content().as_bytes()),
                        root: Some(Digest::of(n.content().as_bytes())),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn pack_splits_many_chunks_into_small_self_contained_datagrams() {
        let mut chunks = Vec::new();
        for i in 0..300 {
            for name in
                ChunkName::all_of(&format!("file number {i:03} with a long-ish name.dat")).unwrap()
            {
                chunks.push(name);
            }
        }
        let metas = metas_for(&chunks);
        let (datagrams, dropped) = Announcement::pack("alice", Some(&ext()), &chunks, &metas);
        assert!(dropped.is_empty());
        assert!(datagrams.len() > 10);
        let mut seen = Vec::new();
        for bytes in &datagrams {
            assert!(
                bytes.len() <= MAX_ANNOUNCE_DATAGRAM,
                "{} bytes",
                bytes.len()
            );
            let a = Announcement::decode(bytes).unwrap();
            assert_eq!(a.username, "alice");
            let ext = a.p2p.clone().unwrap();
            let names = a.chunks();
            // Each content's five chunks travel together, with their metadata.
            assert_eq!(names.len() % 5, 0);
            for name in &names {
                assert_eq!(ext.contents[name.content()], metas[name.content()]);
            }
            assert_eq!(ext.contents.len(), names.len() / 5);
            seen.extend(names);
        }
        seen.sort();
        chunks.sort();
        assert_eq!(seen, chunks);
    }

    #[test]
    fn pack_splits_a_content_whose_chunks_cannot_share_a_datagram() {
        let long = "n".repeat(crate::MAX_CONTENT_NAME_BYTES);
        let chunks: Vec<ChunkName> = ChunkName::all_of(&long).unwrap().into();
        let metas = metas_for(&chunks);
        let (datagrams, dropped) = Announcement::pack("bob", Some(&ext()), &chunks, &metas);
        assert!(dropped.is_empty());
        assert!(datagrams.len() >= 2);
        let mut total = 0;
        for bytes in &datagrams {
            assert!(bytes.len() <= MAX_ANNOUNCE_DATAGRAM);
            let a = Announcement::decode(bytes).unwrap();
            assert!(a.p2p.as_ref().unwrap().contents.contains_key(&long));
            total += a.chunks().len();
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn pack_without_chunks_still_announces_presence() {
        let (datagrams, _) = Announcement::pack("carol", Some(&ext()), &[], &BTreeMap::new());
        assert_eq!(datagrams.len(), 1);
        let a = Announcement::decode(&datagrams[0]).unwrap();
        assert!(a.files.is_empty());
        assert_eq!(a.p2p.unwrap().port, 5001);
    }

    #[test]
    fn pack_drops_what_cannot_fit_at_all() {
        let chunks: Vec<ChunkName> = ChunkName::all_of("a").unwrap().into();
        let huge_user = "u".repeat(2000);
        let (datagrams, dropped) = Announcement::pack(&huge_user, None, &chunks, &BTreeMap::new());
        assert_eq!(dropped.len(), 5);
        assert_eq!(datagrams.len(), 1);
    }
}
