//! The chunk server: shares this peer's files as chunks and serves chunks over TCP.
//!
//! # Layout
//! - [`Config`], [`bind`] and [`run`] (here): the seam between `main` (which parses flags,
//!   starts logging and binds the socket) and the server. Tests call [`run`] in a thread with
//!   a listener bound to `127.0.0.1:0`.
//! - `listed` watches `DIR/shares.txt` (what `downloader share` adds to the shares);
//!   `offered` watches `DIR/sends.txt` (the files `downloader send` offers to one user each,
//!   served unlisted while the offer lasts).
//! - `share` keeps the chunk store (`DIR/temp`) in step with the shared files: it lists them,
//!   has new and changed ones split, and removes what is no longer shared; `split` splits one
//!   file into five chunks and a manifest. `rescan` decides when to scan, on a thread of its
//!   own; `watch` tells it when the shares changed.
//! - `server` runs the accept loop and one handler thread per admitted connection, and stops
//!   them on shutdown; `admission` decides which connections are taken on (per source address,
//!   pending and transfer budgets).
//! - `serve` answers one connection: a legacy chunk request, or our chunk and manifest
//!   requests, in plaintext or (on a private network) over the encrypted channel, which its
//!   `gate` opens and checks against the allow list; `digest_cache` remembers digests of
//!   chunks no manifest describes.
//! - [`error`]: the errors that stop the server; per-connection and per-file failures are only
//!   logged.
//!
//! # Threads
//! [`run`] runs the accept loop on the calling thread from the start, one handler thread per
//! admitted connection, and one rescan thread, which makes the first scan of the shares (each
//! file served as soon as it is hashed) and the later ones. The accept loop never waits for a
//! handler: a connection over a limit is closed at once. All threads watch the same
//! [`Shutdown`] flag; [`run`] returns within 2.5 s of it being set (`server::SHUTDOWN_LIMIT`).
#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

mod admission;
mod digest_cache;
pub mod error;
mod listed;
mod offered;
mod rescan;
mod serve;
mod server;
mod share;
mod split;
mod watch;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use shared::instance::{RecordGuard, ServerRecord};
use shared::peer_dir::PeerDir;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::trust::Trust;
use shared::REQUEST_TIMEOUT;

use crate::admission::{Admission, Limits};
use crate::digest_cache::DigestCache;
pub use crate::error::Error;
use crate::listed::Listed;
use crate::offered::Offered;
use crate::rescan::Rescan;
pub use crate::rescan::{ScanProgress, FALLBACK_SCAN, FIRST_SCAN_DONE, SETTLE};
use crate::serve::{Gate, LocalCopies, RateFloor, ServeContext};
use crate::share::Sharer;
use crate::watch::ShareWatch;

/// Longest time, in seconds, between two scans of the shared files by default. A change in the
/// shares is told by the operating system and scanned for at once ([`Config::watch`]); this
/// scan catches what no notification tells (a network file system changed from another
/// machine). A scan of unchanged files only reads metadata, but with 10,000 files that is a
/// few hundredths of a second of CPU: every minute, nothing at rest.
pub const DEFAULT_RESCAN_SECS: u64 = 60;

/// Answers sent at once by default. Each holds a thread and an open file (in plaintext the
/// kernel sends the bytes by `sendfile`: no buffer of ours, but for a few copies to clients on
/// this host; over the encrypted channel, its buffers); a
/// complete request waits for a free one (`serve::SLOT_WAIT`, 10 s), then is refused as `busy`.
/// Enough for 100 of our downloaders fetching from this server at once (five chunks each), so
/// that none waits: they give up on a chunk header that takes more than 5 s.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Connections accepted by default that have not yet sent a complete request (or wait for a
/// slot to answer it). Each holds a thread and two descriptors for at most the request
/// deadline; past this many, new connections are closed at once (`busy`). Kept well below the
/// common limit of 1024 open files.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// Connections one source address may hold at once by default, whatever their phase. Our
/// downloader opens at most six to one holder (five chunks and a manifest), so two downloads
/// from one host fit; past this, new connections from that address are closed at once
/// (`too_many_connections`).
pub const DEFAULT_MAX_PER_IP: usize = 16;

/// The slowest a client may read an answer by default, in bytes per second, measured over
/// [`DEFAULT_MIN_RATE_WINDOW_SECS`] of waiting on its socket: far below what our downloader
/// itself tolerates from a holder (64 KiB in 10 s), far above a slow-read attack.
pub const DEFAULT_MIN_RATE: u64 = 1024;

/// Default window of [`DEFAULT_MIN_RATE`], in seconds.
pub const DEFAULT_MIN_RATE_WINDOW_SECS: u64 = 10;

/// Connections the kernel may hold completed but not yet accepted. The accept loop drains the
/// queue at once, but sleeps up to 20 ms when it is empty; a burst of connections
/// (a flood) arriving meanwhile must not overflow it, or the kernel drops SYNs, honest ones
/// included, and their clients retry only after a second or more. The standard library's
/// default is 128; the kernel caps this at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: i32 = 1024;

/// What the chunk server does, resolved from the command line by `main` (or written by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder: the chunk store is `dir/temp`, the default share folder
    /// `dir/served_files`.
    pub dir: PathBuf,
    /// Files and folders to share, in priority order (on a name conflict the first wins).
    /// Empty means `dir/served_files`, created if missing.
    pub shares: Vec<PathBuf>,
    /// Longest time between two scans of the shares (with [`Config::watch`], scans also run
    /// as soon as the shares change; without, only this often).
    pub rescan: Duration,
    /// Watch the shares for changes (inotify on Linux) and scan soon after one; off with
    /// `--no-watch`. A share that cannot be watched is scanned every [`FALLBACK_SCAN`] at
    /// most.
    pub watch: bool,
    /// Most answers sent at once (at least 1).
    pub max_connections: usize,
    /// Most connections still sending their request, or waiting to be answered (at least 1).
    pub max_pending: usize,
    /// Most connections from one source address (at least 1).
    pub max_per_ip: usize,
    /// The whole request must have arrived this long after the connection was accepted.
    pub request_timeout: Duration,
    /// Per-connection send rate in bytes per second; `None` for unlimited.
    pub max_rate: Option<u64>,
    /// A client reading an answer slower than this many bytes per second, over
    /// [`Config::min_rate_window`] of waiting, is dropped; `None` for no floor.
    pub min_rate: Option<u64>,
    /// See [`Config::min_rate`].
    pub min_rate_window: Duration,
    /// On a private network, also answer plaintext requests (legacy peers, and our peers
    /// without the key): `--allow-legacy`. No effect on an open network, which answers them
    /// anyway.
    pub allow_legacy: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dir: PathBuf::from("."),
            shares: Vec::new(),
            rescan: Duration::from_secs(DEFAULT_RESCAN_SECS),
            watch: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending: DEFAULT_MAX_PENDING,
            max_per_ip: DEFAULT_MAX_PER_IP,
            request_timeout: REQUEST_TIMEOUT,
            max_rate: None,
            min_rate: Some(DEFAULT_MIN_RATE),
            min_rate_window: Duration::from_secs(DEFAULT_MIN_RATE_WINDOW_SECS),
            allow_legacy: false,
        }
    }
}

/// Binds the listening socket at `addr` with a [`LISTEN_BACKLOG`]-long accept queue (and, as
/// the standard library does, `SO_REUSEADDR` on Unix, so a restart need not wait for old
/// connections to time out).
///
/// # Errors
/// [`Error::Bind`] when the address cannot be bound (in use, not local).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = || -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    listen().map_err(|source| Error::Bind { addr, source })
}

/// Records where `listener` listens in the peer folder `dir` ([`ServerRecord`]), for the
/// announcer to announce that port; the record is removed when the returned guard is dropped.
///
/// # Errors
/// [`Error::Record`] when the record cannot be written.
pub fn record_address(listener: &TcpListener, dir: &Path) -> Result<RecordGuard, Error> {
    let dir = PeerDir::new(dir);
    let record_error = |source| Error::Record {
        path: ServerRecord::path(&dir),
        source,
    };
    let addr = listener.local_addr().map_err(record_error)?;
    ServerRecord::of_this_process(addr)
        .write(&dir)
        .map_err(record_error)
}

/// Runs the chunk server on `listener` until `shutdown` is triggered.
///
/// Creates the peer folder, the chunk store and (when no share is given) `served_files/`, then
/// accepts connections at once while a background thread scans the shares: each file is served
/// (and announced) as soon as it is hashed, and a file hashed by an earlier run that did not
/// change is not hashed again. Later scans run soon after the shares change (watched, unless
/// [`Config::watch`] is off), at once when `DIR/shares.txt` or `DIR/sends.txt` changes (looked
/// at every 200 ms), and every [`Config::rescan`] anyway. On shutdown it stops accepting, gives
/// transfers in progress a short grace period, closes what is left and joins its threads (each
/// wait bounded).
///
/// # Errors
/// [`Error`] when the folders, the store, the listener or a thread cannot be set up. Failures on
/// single connections or files are logged, never returned.
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    run_with_progress(listener, config, shutdown, ScanProgress::default())
}

/// [`run`], counting the completed scans of the shares in `progress`: whoever must wait until
/// the files shared at start are all servable waits for the first.
///
/// # Errors
/// As [`run`].
pub fn run_with_progress(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    progress: ScanProgress,
) -> Result<(), Error> {
    let dir = PeerDir::new(&config.dir);
    create_dir(dir.root())?;
    let trust = Trust::load(dir.root()).map_err(Error::Trust)?;
    log::info!("{}", trust.describe());
    if trust.is_private() {
        if config.allow_legacy {
            log::warn!(
                "--allow-legacy: plaintext requests are answered too, so anyone on the LAN can \
                 download what is shared here"
            );
        } else {
            log::info!("plaintext requests (legacy peers, peers without the key) are refused");
        }
    }
    raise_open_files_limit(descriptors_needed(&config));
    let store = ChunkStore::open(dir.temp()).map_err(Error::OpenStore)?;
    let shares = if config.shares.is_empty() {
        let default = dir.default_share_dir();
        create_dir(&default)?;
        vec![default]
    } else {
        config.shares.clone()
    };

    listener.set_nonblocking(true).map_err(Error::Listener)?;
    let addr = listener.local_addr().map_err(Error::Listener)?;
    let shared_list: Vec<String> = shares.iter().map(|p| p.display().to_string()).collect();
    log::info!(
        "listening on {addr}, sharing {} and what {} lists (scanning them in the background)",
        shared_list.join(", "),
        shared::shares::path_in(&dir).display()
    );

    let rescan = {
        let shutdown = shutdown.clone();
        let rescan = Rescan {
            sharer: Sharer::new(store.clone(), shares),
            listed: Listed::new(&dir),
            offered: Offered::new(&dir),
            watch: config.watch.then(|| ShareWatch::new(store.root())),
            interval: config.rescan,
            progress,
            lists: Rescan::lists_of(&dir),
            store: store.clone(),
        };
        thread::Builder::new()
            .name("rescan".into())
            .spawn(move || rescan.run(&shutdown))
            .map_err(|source| Error::SpawnThread {
                what: "rescan",
                source,
            })?
    };

    let ctx = Arc::new(ServeContext {
        store,
        max_rate: config.max_rate.filter(|&r| r > 0),
        min_rate: config.min_rate.filter(|&r| r > 0).map(|r| RateFloor {
            bytes_per_sec: r,
            window: config.min_rate_window.max(Duration::from_millis(1)),
        }),
        request_timeout: config.request_timeout.max(Duration::from_millis(1)),
        digests: DigestCache::default(),
        shutdown: shutdown.clone(),
        gate: Gate::new(&trust, dir.root(), config.allow_legacy),
        peer_dir: dir.clone(),
        local_copies: LocalCopies::default(),
    });
    let admission = Admission::new(Limits {
        max_transfers: config.max_connections,
        max_pending: config.max_pending,
        max_per_ip: config.max_per_ip,
    });
    server::run_until_shutdown(listener, &ctx, &admission, rescan, &shutdown);
    log::info!("stopped");
    Ok(())
}

/// File descriptors the connection budgets may hold at once: three per connection (its
/// socket, a second handle on it that shutdown closes, the file it sends), plus a margin for
/// the listener, the store and the logs.
fn descriptors_needed(config: &Config) -> u64 {
    let connections = config.max_connections.saturating_add(config.max_pending);
    u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(3)
        .saturating_add(64)
}

/// Raises the soft limit on open files to `needed`, as far as the hard limit allows: many
/// systems start programs with a soft limit of 1024, below what the default budgets need
/// ([`descriptors_needed`]), and a server out of descriptors cannot accept (connections then
/// wait in the listen queue until others close). Says so when even the hard limit is lower.
#[cfg(unix)]
fn raise_open_files_limit(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            log::debug!("cannot read the open-file limit: {e}");
            return;
        }
    };
    let wanted = needed.clamp(soft, hard);
    if wanted > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => log::debug!("open-file limit raised from {soft} to {wanted}"),
            Err(e) => log::debug!("cannot raise the open-file limit from {soft}: {e}"),
        }
    }
    if hard < needed {
        log::warn!(
            "the open-file limit ({hard}) is below the {needed} descriptors the connection \
             budgets may need: past it, connections wait until others close (raise it with \
             `ulimit -n`, or lower --max-connections and --max-pending)"
        );
    }
}

/// Elsewhere, the limit is left as it is.
#[cfg(not(unix))]
fn raise_open_files_limit(_needed: u64) {}

fn create_dir(path: &std::path::Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::CreateDir {
        path: path.to_owned(),
        source,
    })
}
