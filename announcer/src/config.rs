//! The announcer's [`Config`]: everything [`crate::run`] needs, as plain data, and this run's
//! instance id. A module of its own so that the parts of the crate that read the configuration
//! do not import it from the crate root that imports them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::digest::Digest;
use shared::{DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

use crate::legacy::LegacyPolicy;
use crate::{budget, prompt};

/// Default of [`Config::watch`]: a file served in place that is edited or deleted (a download
/// in `downloads/`, a shared file the chunk server has not hashed again yet) is withdrawn
/// within about ten seconds, for a `stat` of each such file every ten seconds (with 10,000 of
/// them, a few hundredths of a second). Changes to the store itself are seen at once.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(10);

/// Everything [`run`](crate::run) needs, resolved by `main` (or a test) beforehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder; chunks are read from its `temp/`, static peers from its `peers.txt`,
    /// query files from its `.queries/`.
    pub dir: PathBuf,
    /// The username announced.
    pub username: String,
    /// Where every datagram is sent: directed broadcast addresses in production (`main` lists
    /// the interfaces), a test's socket in tests; by default the limited broadcast address.
    pub targets: Vec<SocketAddr>,
    /// Static peers (`--peer`): every announcement and the goodbye also go to each by unicast.
    pub peers: Vec<SocketAddr>,
    /// The UDP port of a `peers.txt` line that names none (the announce port, `--port`).
    pub peer_port: u16,
    /// Time between periodic announcements; also announced (rounded up to whole seconds) so
    /// listeners know when to expire us.
    pub interval: Duration,
    /// Where the TCP port of our chunk server, announced in the `p2p` extension, comes from.
    pub chunk_port: ChunkPort,
    /// How often every file served in place is looked at again (one `stat` each), so one
    /// edited or deleted behind the store's back is withdrawn; the store's own changes are
    /// seen within [`crate::STORE_POLL`].
    pub watch: Duration,
    /// This run's identity, sent in every datagram ([`new_instance_id`]).
    pub instance: String,
    /// Bytes per second of answers to queries, all queriers together
    /// (`--max-answer-rate`; 0 = no limit). See [`budget`].
    pub answer_rate: u64,
    /// When a compact announcement is accompanied by the list of chunk names, for legacy
    /// listeners (`--legacy-list`). See [`crate::legacy`].
    pub legacy_list: LegacyPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("."),
            username: prompt::FALLBACK_USERNAME.to_owned(),
            targets: vec![SocketAddr::from((
                std::net::Ipv4Addr::BROADCAST,
                DEFAULT_ANNOUNCE_PORT,
            ))],
            peers: Vec::new(),
            peer_port: DEFAULT_ANNOUNCE_PORT,
            interval: Duration::from_secs(DEFAULT_ANNOUNCE_INTERVAL_SECS),
            chunk_port: ChunkPort::Fixed(DEFAULT_CHUNK_PORT),
            watch: DEFAULT_WATCH,
            instance: new_instance_id(),
            answer_rate: budget::DEFAULT_ANSWER_RATE,
            legacy_list: LegacyPolicy::Auto,
        }
    }
}

/// Where the announced chunk-server port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkPort {
    /// This port, whether or not a server listens there (`--chunk-port`).
    Fixed(u16),
    /// The port the folder's chunk server recorded ([`shared::instance::ServerRecord`]),
    /// followed as it changes; while no chunk server runs for the folder, nothing is announced
    /// and no query is answered, so no file is listed that nobody can serve.
    Recorded,
}

impl std::fmt::Display for ChunkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkPort::Fixed(port) => write!(f, "chunk server port {port}"),
            ChunkPort::Recorded => f.write_str("the chunk server port the folder records"),
        }
    }
}

/// A fresh instance id: 16 hex digits of the SHA-256 of this process's id, the time in
/// nanoseconds, the host name and a per-process counter. Unique enough to tell two runs (or
/// two announcers of one test process) apart; it is an identity, not a secret.
pub fn new_instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{}/{nanos}/{}/{}",
        std::process::id(),
        shared::net::host_name().unwrap_or_default(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Digest::of(seed.as_bytes()).short(16)
}
