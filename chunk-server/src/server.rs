//! The accept loop and the handlers it starts: one thread per admitted connection, each
//! running [`serve::handle_connection`], and the orderly stop of them all on shutdown.
//!
//! The accept loop never waits for a handler: a connection over a limit ([`crate::admission`])
//! is closed at once, with a `refused` event (at most [`TURNED_AWAY_LOGGED_PER_SEC`] a second).
//! On shutdown it stops accepting; clients with no answer under way are closed at once,
//! transfers get [`SHUTDOWN_GRACE`], and [`run_until_shutdown`] returns within
//! [`SHUTDOWN_LIMIT`] whatever is left.
//!
//! What a connection is answered is `serve`'s business; this module only runs the threads.

use std::io;
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::events::Outcome;
use shared::shutdown::Shutdown;

use crate::admission::{Admission, Turned};
use crate::serve::{self, ServeContext};

/// How long the accept loop waits for a connection before it looks at the shutdown flag (and
/// reaps finished handlers). A connection that arrives ends the wait at once.
const ACCEPT_WAIT: Duration = Duration::from_millis(100);

/// While shutting down, how often the threads left are looked at.
const REAP_POLL: Duration = Duration::from_millis(20);

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

/// [`crate::run`] returns at most this long after shutdown is asked, whether or not every
/// thread has stopped by then (a thread still reading a slow disk is left behind; the process
/// exits anyway). Below the 3 s a user, or `docker stop`, should ever wait.
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(2500);

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
        thread::sleep(REAP_POLL);
    }
}

/// Accepts on `listener` (non-blocking) until `shutdown`, then stops the handlers and waits for
/// `rescan`, each wait bounded: returns at most [`SHUTDOWN_LIMIT`] after shutdown is asked.
pub(crate) fn run_until_shutdown(
    listener: TcpListener,
    ctx: &Arc<ServeContext>,
    admission: &Arc<Admission>,
    rescan: JoinHandle<()>,
    shutdown: &Shutdown,
) {
    let mut workers = accept_loop(&listener, ctx, admission, shutdown);
    let stopping = Instant::now();
    drop(listener);
    stop_workers(&mut workers, stopping);

    // The rescan thread saw the flag too; it gets what is left of the same budget.
    let deadline = stopping + SHUTDOWN_LIMIT;
    while !rescan.is_finished() && Instant::now() < deadline {
        thread::sleep(REAP_POLL);
    }
    if rescan.is_finished() {
        if rescan.join().is_err() {
            log::error!("the rescan thread panicked");
        }
    } else {
        log::warn!("the rescan thread did not stop in time; leaving it");
    }
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
                wait_for_connection(listener, ACCEPT_WAIT);
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

/// Waits until a connection is ready to be accepted on the non-blocking `listener`, or
/// `timeout` passes: a burst of connections is taken as it arrives, never after a sleep (the
/// accept loop then accepts until the queue is empty).
#[cfg(unix)]
fn wait_for_connection(listener: &TcpListener, timeout: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let wait = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    if let Err(e) = poll(&mut fds, wait) {
        if e != nix::errno::Errno::EINTR {
            // Not expected; never spin on it.
            log::debug!("cannot wait for connections: {e}");
            thread::sleep(timeout);
        }
    }
}

/// Without `poll`, the accept loop looks again after a short sleep.
#[cfg(not(unix))]
fn wait_for_connection(_listener: &TcpListener, timeout: Duration) {
    thread::sleep(timeout.min(Duration::from_millis(20)));
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
