//! Everything the four programs (announcer, listener, chunk-server, downloader) agree on.
//!
//! # Layout
//! - [`chunk`]: pure arithmetic and naming of the 5 chunks of a file.
//! - [`digest`]: SHA-256 digests as they appear on the wire and on disk.
//! - [`protocol`]: the wire messages (UDP announcements, TCP requests and responses), as pure
//!   data with `encode`/`decode`; no sockets.
//! - [`connection`]: framing over a `TcpStream`; the only place where the protocol meets I/O.
//! - [`tags`]: the `tags.txt` index the listener writes and the downloader reads.
//! - [`store`]: the chunk store (`temp/`) and the manifests that describe its contents.
//! - [`catalog_file`]: the catalog the announcer announces, published in `.run/` for the chunk
//!   server to serve.
//! - [`peer_dir`]: where each file of a peer folder lives.
//! - [`events`]: the structured lines of `server.log` and `client.log`.
//! - [`text`]: which characters never reach a terminal raw, and how they are escaped.
//! - [`queries`]: the `.queries/` mailbox through which a listener asks its announcer to
//!   answer a query; [`peers`]: the static peers of `peers.txt`; [`shares`]: the shares list
//!   `shares.txt` that `downloader share` edits and the chunk server watches; [`sends`]: the
//!   outbox `sends.txt` of `downloader send`; [`offers`]: the inbox `offers.txt` the listener
//!   keeps, the offers answered and `accept-from.txt`.
//! - [`username`]: which usernames may be announced, and how a heard one is made safe to show.
//! - [`ratelimit`]: token buckets, per source address and overall.
//! - [`instance`]: one chunk server, announcer and listener per peer folder, and the record
//!   of where the folder's chunk server listens (`.run/`).
//! - [`latch`]: "warn once while a failure lasts".
//! - [`program`]: the `main` all four programs share ([`program::run_main`]).
//! - [`trust`]: private networks (the network key, sealed datagrams) and peer identities.
//! - [`fsutil`], [`net`], [`logging`], [`shutdown`]: small edges shared by every binary.
//!
//! The programs coordinate only through the network and the files of the peer folder, so every
//! format they exchange is defined here, once.
#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod catalog_file;
pub mod chunk;
pub mod connection;
pub mod digest;
pub mod events;
pub mod fsutil;
pub mod instance;
pub mod latch;
pub mod logging;
pub mod net;
pub mod offers;
pub mod peer_dir;
pub mod peers;
pub mod program;
pub mod protocol;
pub mod queries;
pub mod ratelimit;
pub mod sends;
pub mod shares;
pub mod shutdown;
pub mod store;
pub mod tags;
pub mod text;
pub mod tree;
pub mod trust;
pub mod username;

use std::time::Duration;

/// Every file is split into exactly this many chunks: fixed by the legacy protocol.
pub const CHUNKS_PER_FILE: usize = 5;

/// UDP port for announcements: the legacy protocol's port 5000.
pub const DEFAULT_ANNOUNCE_PORT: u16 = 5000;

/// TCP port of the chunk server: the legacy protocol's port 5001.
pub const DEFAULT_CHUNK_PORT: u16 = 5001;

/// Seconds between periodic announcements: the legacy protocol announces once per minute.
pub const DEFAULT_ANNOUNCE_INTERVAL_SECS: u64 = 60;

/// An index entry expires after this many announce intervals without being re-announced, so one
/// or two lost datagrams do not make a peer vanish.
pub const EXPIRY_INTERVALS: u64 = 3;

/// Largest announcement datagram we send. Some legacy listeners read at most 1024 bytes per
/// datagram; staying below that with a margin keeps every datagram whole for them.
pub const MAX_ANNOUNCE_DATAGRAM: usize = 1000;

/// Largest datagram a listener accepts; anything longer is truncated by the kernel and rejected.
pub const MAX_RECEIVE_DATAGRAM: usize = 65_536;

/// Largest TCP request the chunk server reads. Legacy clients send well under 1024 bytes; this
/// bounds the memory a hostile client can make the server hold.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Longest content name we share or accept, in bytes. Keeps a chunk name plus the announcement
/// envelope inside one datagram, except for names of characters JSON must escape (a name of
/// 200 `"` doubles): `Announcement::pack` leaves out and reports what cannot fit.
pub const MAX_CONTENT_NAME_BYTES: usize = 200;

/// Longest username we announce or accept, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Version of our protocol extension, sent in every extended message.
pub const PROTOCOL_VERSION: u32 = 1;

/// How long a connect to a chunk server may take before the holder counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after accepting a connection the chunk server waits for the client's whole request
/// before dropping it, so a silent client, or one that trickles its request a byte at a time,
/// cannot hold a worker (`chunk-server --request-timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long either side of a transfer may go without progress before giving up.
pub const IO_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Legacy servers mark the end of a chunk only by closing; some never close. Once data has
/// arrived, this much silence from a legacy server is taken as the end of the chunk.
pub const LEGACY_END_IDLE: Duration = Duration::from_secs(3);

/// Name of the chunk store folder inside a peer folder.
pub const TEMP_DIR: &str = "temp";

/// Name of the folder of finished downloads inside a peer folder.
pub const DOWNLOADS_DIR: &str = "downloads";

/// Name of the index file the listener writes.
pub const TAGS_FILE: &str = "tags.txt";

/// Name of the chunk server's log file.
pub const SERVER_LOG: &str = "server.log";

/// Name of the downloader's log file.
pub const CLIENT_LOG: &str = "client.log";

/// Name of the file holding the username asked at the terminal.
pub const USERNAME_FILE: &str = "username.txt";

/// Name of the default folder of files to share.
pub const DEFAULT_SHARE_DIR: &str = "served_files";

/// Name of the file of static peers (`HOST[:PORT]` per line) that announcer and listener also
/// send to, for networks broadcast cannot cross.
pub const PEERS_FILE: &str = "peers.txt";

/// Name of the folder where the listener leaves query files for the announcer
/// ([`queries`]). Hidden: it is plumbing, not something the user looks at.
pub const QUERIES_DIR: &str = ".queries";

/// Name of the folder of run-time state inside a peer folder: each running program's lock and
/// the chunk server's record of where it listens ([`instance`]). Hidden: plumbing.
pub const RUN_DIR: &str = ".run";

/// A query file older than this is deleted unanswered: the listener that asked has long since
/// re-asked or heard the periodic announcement, and an answer now would be noise.
pub const QUERY_FILE_MAX_AGE: Duration = Duration::from_secs(10);

/// A querier (one source address) is answered at most once per this long, however many of
/// its queries arrive meanwhile: the listener passes on at most one per querier per this long
/// (`DIR/.queries/`), and the announcer, which hears broadcast queries itself as well, answers
/// a query that reached it both ways once. A starting listener's three queries are spaced so
/// that the last falls after it (UDP may have lost the first answer).
pub const QUERY_ANSWER_GAP: Duration = Duration::from_secs(1);
