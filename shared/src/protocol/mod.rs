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
//!
//! # Layout
//! One file per message family; every type is re-exported here, so callers name
//! `shared::protocol::X` whatever file it lives in.
//! - `announcement`: [`Announcement`], [`AnnouncementExt`], [`Kind`] and their limits.
//! - `request`: [`Request`], what a client asks a chunk server.
//! - `response`: [`Response`], the header line a chunk server answers with.
//! - `content`: [`ContentMeta`] and [`Manifest`], the identity of a content, carried by both
//!   channels.
//! - `catalog`: [`Catalog`], a peer's whole list of contents, fetched over TCP when a compact
//!   announcement ([`CatalogSummary`]) says it changed.
//! - `error`: [`DecodeError`] (bytes that are no message) and [`ErrorCode`] (why a server
//!   refused).

mod announcement;
mod catalog;
mod content;
mod error;
mod request;
mod response;

pub use announcement::{
    is_offer_id, is_query, Announcement, AnnouncementExt, Kind, OfferHeard, KNOWN_VERSIONS,
    MAX_ANNOUNCE_INTERVAL_SECS, MAX_OFFER_ID_BYTES, MAX_OFFER_SECS, MAX_QUERY_DATAGRAM,
    QUERY_USERNAME,
};
pub use catalog::{
    Catalog, CatalogDecoder, CatalogEntry, CatalogSummary, DecodedCatalog, MAX_CATALOG_BYTES,
    MAX_CATALOG_LINE,
};
pub use content::{ChunkStep, ContentMeta, Manifest};
pub use error::{DecodeError, ErrorCode};
pub use request::Request;
pub use response::{Response, MAX_RESPONSE_HEADER};
