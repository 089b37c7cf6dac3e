//! The chunk server: shares this peer's files as chunks and serves chunks over TCP.
//!
//! # Layout
//! - [`Config`] and [`run`] (here): the seam between `main` (which parses flags, starts logging
//!   and binds the socket) and the server. Tests call [`run`] in a thread with a listener bound
//!   to `127.0.0.1:0`.
//! - `split` keeps the chunk store (`DIR/temp`) in step with the shared files: it splits new
//!   and changed files into five chunks with a manifest, and removes what is no longer shared.
//! - `serve` answers one connection: a legacy chunk request, or our chunk and manifest requests.
//! - [`error`]: the errors that stop the server; per-connection and per-file failures are only
//!   logged.
//!
//! # Threads
//! [`run`] scans the shares once, then runs the accept loop on the calling thread, one handler
//! thread per connection (at most [`Config::max_connections`]), and one rescan thread. All of
//! them watch the same [`Shutdown`] flag; [`run`] returns once they have stopped.
#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

pub mod error;
mod serve;
mod split;

use std::fs;
use std::io;
use std::net::{Shutdown as SocketShutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::peer_dir::PeerDir;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;

pub use crate::error::Error;
use crate::serve::ServeContext;
use crate::split::Sharer;

/// Seconds between two scans of the shared files: short, so a file dropped into the share
/// folder is announced soon; a scan of unchanged files only reads metadata.
pub const DEFAULT_RESCAN_SECS: u64 = 2;

/// Connections served at once by default. Each holds a thread and an open file; past this many,
/// newcomers wait in the kernel's accept backlog (compare mini-redis `MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How long the accept loop sleeps when no connection is waiting (or all slots are taken)
/// before it looks again, and at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// After an `accept` error (out of file descriptors, say), wait this long before retrying, so
/// the log is not flooded.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// On shutdown, transfers in progress get this long to finish before their sockets are closed
/// under them. Clients still waiting to send a request are closed at once.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// After closing the remaining sockets, how long to wait for their threads before giving up on
/// them.
const SHUTDOWN_JOIN: Duration = Duration::from_secs(2);

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
    /// Most connections served at once (at least 1).
    pub max_connections: usize,
    /// Per-connection send rate in bytes per second; `None` for unlimited.
    pub max_rate: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dir: PathBuf::from("."),
            shares: Vec::new(),
            rescan: Duration::from_secs(DEFAULT_RESCAN_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_rate: None,
        }
    }
}

/// One running connection handler.
struct Worker {
    handle: JoinHandle<()>,
    /// A second handle on the client's socket: shutdown closes it to wake the handler from a
    /// blocking read or write.
    socket: Option<TcpStream>,
    /// Set by the handler once it has a valid request: it then gets [`SHUTDOWN_GRACE`].
    busy: Arc<AtomicBool>,
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
    });
    let mut workers = accept_loop(&listener, &ctx, config.max_connections.max(1), &shutdown);
    drop(listener);
    stop_workers(&mut workers);

    let deadline = Instant::now() + SHUTDOWN_JOIN;
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

/// Accepts connections until shutdown, each served on its own thread, at most `max` at once;
/// returns the handlers still running.
fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<ServeContext>,
    max: usize,
    shutdown: &Shutdown,
) -> Vec<Worker> {
    let mut workers: Vec<Worker> = Vec::new();
    while !shutdown.is_triggered() {
        reap(&mut workers);
        if workers.len() >= max {
            // Newcomers wait in the kernel's backlog until a slot frees.
            thread::sleep(ACCEPT_POLL);
            continue;
        }
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
        // Some platforms hand out accepted sockets in the listener's non-blocking mode.
        if let Err(e) = stream.set_nonblocking(false) {
            log::warn!("dropping connection from {peer}: {e}");
            continue;
        }
        let socket = stream.try_clone().ok();
        let busy = Arc::new(AtomicBool::new(false));
        let spawned = {
            let ctx = Arc::clone(ctx);
            let busy = Arc::clone(&busy);
            thread::Builder::new()
                .name(format!("conn {peer}"))
                .spawn(move || serve::handle_connection(stream, peer, &ctx, &busy))
        };
        match spawned {
            Ok(handle) => workers.push(Worker {
                handle,
                socket,
                busy,
            }),
            Err(e) => {
                log::warn!("dropping connection from {peer}: cannot start a thread: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    workers
}

/// Shutdown of the handlers: idle clients are closed at once, transfers get [`SHUTDOWN_GRACE`],
/// then every remaining socket is closed and the threads joined within [`SHUTDOWN_JOIN`].
fn stop_workers(workers: &mut Vec<Worker>) {
    reap(workers);
    for worker in workers.iter() {
        if !worker.busy.load(Ordering::SeqCst) {
            worker.close_socket();
        }
    }
    if reap_until(workers, Instant::now() + SHUTDOWN_GRACE) {
        return;
    }
    log::info!("closing {} connection(s) still transferring", workers.len());
    for worker in workers.iter() {
        worker.close_socket();
    }
    if !reap_until(workers, Instant::now() + SHUTDOWN_JOIN) {
        log::warn!(
            "{} connection handler(s) did not stop in time; leaving them",
            workers.len()
        );
    }
}
