//! The chunk server: shares this peer's files as chunks and serves chunks over TCP.
//!
//! # Layout
//! - [`Config`] and [`run`] (here): the seam between `main` (which parses flags, starts logging
//!   and binds the socket) and the server. Tests call [`run`] in a thread with a listener bound
//!   to `127.0.0.1:0`.
//! - `split` keeps the chunk store (`DIR/temp`) in step with the shared files: it splits new
//!   and changed files into five chunks with a manifest, and removes what is no longer shared.
//! - `admission` decides which connections are taken on (per source address, pending and
//!   transfer budgets); `serve` answers one connection: a legacy chunk request, or our chunk
//!   and manifest requests; `digest_cache` remembers digests of chunks no manifest describes.
//! - [`error`]: the errors that stop the server; per-connection and per-file failures are only
//!   logged.
//!
//! # Threads
//! [`run`] scans the shares once, then runs the accept loop on the calling thread, one handler
//! thread per admitted connection, and one rescan thread. The accept loop never waits for a
//! handler: a connection over a limit is closed at once. All threads watch the same
//! [`Shutdown`] flag; [`run`] returns within [`SHUTDOWN_LIMIT`] of it being set.
#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

mod admission;
mod digest_cache;
pub mod error;
mod serve;
mod split;

use std::fs;
use std::io;
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::peer_dir::PeerDir;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::REQUEST_TIMEOUT;

use crate::admission::{Admission, Limits, Turned};
use crate::digest_cache::DigestCache;
pub use crate::error::Error;
use crate::serve::{Outcome, RateFloor, ServeContext};
use crate::split::Sharer;

/// Seconds between two scans of the shared files: short, so a file dropped into the share
/// folder is announced soon; a scan of unchanged files only reads metadata.
pub const DEFAULT_RESCAN_SECS: u64 = 2;

/// Answers sent at once by default. Each holds a thread, an open file and a send buffer; a
/// complete request waits for a free one (`serve::SLOT_WAIT`, 10 s), then is refused as `busy`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

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
/// queue at once, but sleeps up to [`ACCEPT_POLL`] when it is empty; a burst of connections
/// (a flood) arriving meanwhile must not overflow it, or the kernel drops SYNs, honest ones
/// included, and their clients retry only after a second or more. The standard library's
/// default is 128; the kernel caps this at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: i32 = 1024;

/// How long the accept loop sleeps when no connection is waiting before it looks again, and
/// at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// After an `accept` error (out of file descriptors, say), wait this long before retrying, so
/// the log is not flooded.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Connections turned away at accept are logged one by one up to this many per second; the
/// rest are counted and summed up once a second, so a connection flood cannot fill the disk
/// with log lines.
const TURNED_AWAY_LOGGED_PER_SEC: u32 = 20;

/// On shutdown, transfers in progress get this long to finish before their sockets are closed
/// under them. Clients still sending a request, or waiting for a slot, are closed at once.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// [`run`] returns at most this long after shutdown is asked, whether or not every thread has
/// stopped by then (a thread still reading a slow disk is left behind; the process exits
/// anyway). Below the 3 s a user, or `docker stop`, should ever wait.
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(2500);

/// What the chunk server does, resolved from the command line by `main` (or written by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The peer folder: the chunk store is `dir/temp`, the default share folder
    /// `dir/served_files`.
    pub dir: PathBuf,
    /// Files and folders to share, in priority order (on a name conflict the first wins).
    /// Empty means `dir/served_files`, created if missing.
    pub shares: Vec<PathBuf>,
    /// Time between two scans of the shares.
    pub rescan: Duration,
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
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dir: PathBuf::from("."),
            shares: Vec::new(),
            rescan: Duration::from_secs(DEFAULT_RESCAN_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending: DEFAULT_MAX_PENDING,
            max_per_ip: DEFAULT_MAX_PER_IP,
            request_timeout: REQUEST_TIMEOUT,
            max_rate: None,
            min_rate: Some(DEFAULT_MIN_RATE),
            min_rate_window: Duration::from_secs(DEFAULT_MIN_RATE_WINDOW_SECS),
        }
    }
}

/// One running connection handler.
struct Worker {
    handle: JoinHandle<()>,
    /// A second handle on the client's socket: shutdown closes it to wake the handler from a
    /// blocking read or write.
    socket: Option<TcpStream>,
    /// Set by the handler once it answers: it then gets [`SHUTDOWN_GRACE`].
    transferring: Arc<AtomicBool>,
}

impl Worker {
    fn close_socket(&self) {
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(SocketShutdown::Both);
        }
    }
}

/// Joins the finished handlers and keeps the others.
fn reap(workers: &mut Vec<Worker>) {
    let mut i = 0;
    while i < workers.len() {
        if workers[i].handle.is_finished() {
            let worker = workers.swap_remove(i);
            if worker.handle.join().is_err() {
                log::error!("a connection handler panicked");
            }
        } else {
            i += 1;
        }
    }
}

/// Waits until every worker has finished or `deadline` passes; returns whether all finished.
fn reap_until(workers: &mut Vec<Worker>, deadline: Instant) -> bool {
    loop {
        reap(workers);
        if workers.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(ACCEPT_POLL);
    }
}

/// Binds the listening socket at `addr` with a [`LISTEN_BACKLOG`]-long accept queue (and, as
/// the standard library does, `SO_REUSEADDR` on Unix, so a restart need not wait for old
/// connections to time out).
///
/// # Errors
/// When the address cannot be bound (in use, not local).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Runs the chunk server on `listener` until `shutdown` is triggered.
///
/// Creates the peer folder, the chunk store and (when no share is given) `served_files/`,
/// splits the shared files once, then accepts connections while a background thread rescans the
/// shares every [`Config::rescan`]. On shutdown it stops accepting, gives transfers in progress
/// a short grace period, closes what is left and joins its threads (each wait bounded).
///
/// # Errors
/// [`Error`] when the folders, the store, the listener or a thread cannot be set up. Failures on
/// single connections or files are logged, never returned.
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let dir = PeerDir::new(&config.dir);
    create_dir(dir.root())?;
    let store = ChunkStore::open(dir.temp()).map_err(Error::OpenStore)?;
    let shares = if config.shares.is_empty() {
        let default = dir.default_share_dir();
        create_dir(&default)?;
        vec![default]
    } else {
        config.shares.clone()
    };

    split::remove_leftovers(&store);
    let mut sharer = Sharer::new(store.clone(), shares.clone());
    sharer.scan(&shutdown);

    listener.set_nonblocking(true).map_err(Error::Listener)?;
    let addr = listener.local_addr().map_err(Error::Listener)?;
    let shared_list: Vec<String> = shares.iter().map(|p| p.display().to_string()).collect();
    log::info!("listening on {addr}, sharing {}", shared_list.join(", "));

    let rescan = {
        let shutdown = shutdown.clone();
        let interval = config.rescan;
        thread::Builder::new()
            .name("rescan".into())
            .spawn(move || {
                while !shutdown.sleep(interval) {
                    sharer.scan(&shutdown);
                }
            })
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
    });
    let admission = Admission::new(Limits {
        max_transfers: config.max_connections,
        max_pending: config.max_pending,
        max_per_ip: config.max_per_ip,
    });
    let mut workers = accept_loop(&listener, &ctx, &admission, &shutdown);
    let stopping = Instant::now();
    drop(listener);
    stop_workers(&mut workers, stopping);

    // The rescan thread saw the flag too; it gets what is left of the same budget.
    let deadline = stopping + SHUTDOWN_LIMIT;
    while !rescan.is_finished() && Instant::now() < deadline {
        thread::sleep(ACCEPT_POLL);
    }
    if rescan.is_finished() {
        if rescan.join().is_err() {
            log::error!("the rescan thread panicked");
        }
    } else {
        log::warn!("the rescan thread did not stop in time; leaving it");
    }
    log::info!("stopped");
    Ok(())
}

fn create_dir(path: &std::path::Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::CreateDir {
        path: path.to_owned(),
        source,
    })
}

/// Accepts connections until shutdown, each admitted one served on its own thread; returns the
/// handlers still running. Never waits for a handler: a connection over a limit is closed at
/// once, with a `refused` event.
fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<ServeContext>,
    admission: &Arc<Admission>,
    shutdown: &Shutdown,
) -> Vec<Worker> {
    let mut workers: Vec<Worker> = Vec::new();
    let mut turned_away = TurnedAwayLog::new();
    while !shutdown.is_triggered() {
        reap(&mut workers);
        turned_away.sum_up();
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("cannot accept a connection: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        let accepted = Instant::now();
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(turned) => {
                // Dropping the stream closes it; nothing is read or written.
                turned_away.log(peer, turned);
                continue;
            }
        };
        // Some platforms hand out accepted sockets in the listener's non-blocking mode.
        if let Err(e) = stream.set_nonblocking(false) {
            log::warn!("dropping connection from {peer}: {e}");
            continue;
        }
        let socket = stream.try_clone().ok();
        let transferring = Arc::new(AtomicBool::new(false));
        let spawned = {
            let ctx = Arc::clone(ctx);
            let transferring = Arc::clone(&transferring);
            thread::Builder::new()
                .name(format!("conn {peer}"))
                .spawn(move || {
                    serve::handle_connection(stream, peer, accepted, ticket, &ctx, &transferring)
                })
        };
        match spawned {
            Ok(handle) => workers.push(Worker {
                handle,
                socket,
                transferring,
            }),
            Err(e) => {
                log::warn!("dropping connection from {peer}: cannot start a thread: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    workers
}

/// The `refused` events of connections turned away at accept, at most
/// [`TURNED_AWAY_LOGGED_PER_SEC`] a second; the others are counted and summed up.
struct TurnedAwayLog {
    second: Instant,
    logged: u32,
    unlogged: u64,
}

impl TurnedAwayLog {
    fn new() -> TurnedAwayLog {
        TurnedAwayLog {
            second: Instant::now(),
            logged: 0,
            unlogged: 0,
        }
    }

    fn log(&mut self, peer: SocketAddr, turned: Turned) {
        self.sum_up();
        if self.logged >= TURNED_AWAY_LOGGED_PER_SEC {
            self.unlogged += 1;
            return;
        }
        self.logged += 1;
        let outcome = match turned {
            Turned::TooManyFromAddress { .. } => Outcome::TooManyConnections,
            Turned::Busy { .. } => Outcome::Busy,
        };
        serve::log_refused(peer, outcome, None, &turned.to_string());
    }

    /// Once a second has passed: says how many refusals went unlogged, and starts a new second.
    fn sum_up(&mut self) {
        if self.second.elapsed() < Duration::from_secs(1) {
            return;
        }
        if self.unlogged > 0 {
            log::warn!(
                "turned away {} more connections in the last second without logging each \
                 (too many from one address, or too many waiting for their request)",
                self.unlogged
            );
        }
        *self = TurnedAwayLog::new();
    }
}

/// Shutdown of the handlers, counted from `stopping`: clients that have no answer under way are
/// closed at once, transfers get [`SHUTDOWN_GRACE`], then every remaining socket is closed and
/// the threads are waited for until [`SHUTDOWN_LIMIT`].
fn stop_workers(workers: &mut Vec<Worker>, stopping: Instant) {
    reap(workers);
    for worker in workers.iter() {
        if !worker.transferring.load(Ordering::SeqCst) {
            worker.close_socket();
        }
    }
    if reap_until(workers, stopping + SHUTDOWN_GRACE) {
        return;
    }
    log::info!("closing {} connection(s) still transferring", workers.len());
    for worker in workers.iter() {
        worker.close_socket();
    }
    if !reap_until(workers, stopping + SHUTDOWN_LIMIT) {
        log::warn!(
            "{} connection handler(s) did not stop in time; leaving them",
            workers.len()
        );
    }
}
