//! The listener's [`Config`]: everything [`crate::run`] needs, as plain data. A module of its
//! own so that the parts of the crate that read the configuration do not import it from the
//! crate root that imports them.

use std::net::SocketAddr;
use std::path::PathBuf;

use shared::{DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

use crate::index::Limits;
use crate::intake;

/// Everything [`run`](crate::run) needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; `tags.txt` is written there, `peers.txt` read from there, query files
    /// left in its `.queries/`.
    pub dir: PathBuf,
    /// The TCP port where legacy peers, which announce no port, serve chunks.
    pub legacy_chunk_port: u16,
    /// Where the start-up query is broadcast (`--broadcast`; `main` lists the directed
    /// broadcast address of every interface; by default the limited broadcast address).
    pub query_targets: Vec<SocketAddr>,
    /// Static peers (`--peer`): the start-up query also goes to each by unicast.
    pub peers: Vec<SocketAddr>,
    /// The UDP port of a `peers.txt` line that names none (the announce port, `--port`).
    pub peer_port: u16,
    /// How big the index may grow (`--max-entries`, `--max-entries-per-source`,
    /// `--max-chunks-per-datagram`).
    pub limits: Limits,
    /// Bytes per second one source address may send before its datagrams are dropped
    /// unread (`--max-source-rate`; 0 = no limit). See [`intake`].
    pub source_rate: u64,
    /// On a private network, also take unauthenticated datagrams, as a legacy peer's
    /// (`--allow-legacy`): their entries carry no peer ID, and their `p2p` extension, which
    /// nothing vouches for, is ignored.
    pub allow_legacy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            legacy_chunk_port: DEFAULT_CHUNK_PORT,
            query_targets: vec![SocketAddr::from((
                std::net::Ipv4Addr::BROADCAST,
                DEFAULT_ANNOUNCE_PORT,
            ))],
            peers: Vec::new(),
            peer_port: DEFAULT_ANNOUNCE_PORT,
            limits: Limits::default(),
            source_rate: intake::DEFAULT_SOURCE_RATE,
            allow_legacy: false,
        }
    }
}
