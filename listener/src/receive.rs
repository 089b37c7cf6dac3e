//! Receiving: the threads between the UDP sockets and the main loop ([`crate::hearing`]).
//!
//! Each socket (the shared announce port, and this listener's own query port) has a thread
//! that receives datagrams and queues them for the main loop, within the budgets of
//! [`crate::intake`]. The threads run in the scope of [`crate::run`] and stop within one
//! [`RECV_TIMEOUT`] of the main loop's end, however it ends ([`StopOnDrop`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use shared::latch::Latch;
use shared::shutdown::Shutdown;
use shared::MAX_RECEIVE_DATAGRAM;

use crate::intake::{Drops, QueuedBytes, SourceRates, QUEUE_CAPACITY};

/// Longest a receive blocks before a reading thread looks at the stop flag again, and before
/// the main loop looks at shutdown and expiry again.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_millis(150);

/// One datagram as a reading thread hands it to the main loop.
pub(crate) struct Datagram {
    pub(crate) bytes: Vec<u8>,
    pub(crate) from: SocketAddr,
}

/// Starts one reading thread per socket in `scope`, each allowing every source `source_rate`
/// bytes per second; they run until `stop` is triggered or the returned receiver is dropped.
pub(crate) fn start<'scope>(
    scope: &'scope Scope<'scope, '_>,
    sockets: [&'scope UdpSocket; 2],
    queued: &'scope QueuedBytes,
    source_rate: u64,
    stop: &'scope Shutdown,
) -> Receiver<Datagram> {
    let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
    for socket in sockets {
        let sender = sender.clone();
        scope.spawn(move || read_loop(socket, &sender, queued, source_rate, stop));
    }
    receiver
}

/// Triggers its flag when dropped: stops the reading threads when the main loop ends, even by
/// a panic, which would otherwise leave the scope waiting for them for ever.
pub(crate) struct StopOnDrop<'a>(pub(crate) &'a Shutdown);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// Reads `socket` until `stop` is triggered or the main loop is gone, handing each datagram
/// within the budgets to the main loop.
fn read_loop(
    socket: &UdpSocket,
    sender: &SyncSender<Datagram>,
    queued: &QueuedBytes,
    source_rate: u64,
    stop: &Shutdown,
) {
    let mut buf = vec![0u8; MAX_RECEIVE_DATAGRAM];
    let mut rates = SourceRates::new(source_rate);
    let mut drops = Drops::default();
    let mut failing = Latch::default();
    while !stop.is_triggered() {
        drops.report_if_due(Instant::now(), source_rate, false);
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if failing.reset() {
                    log::info!("receiving works again");
                }
                if !rates.allow(from.ip(), n, Instant::now()) {
                    drops.over_rate(from.ip(), n);
                    continue;
                }
                if !queued.try_add(n) {
                    drops.queue_full += 1;
                    continue;
                }
                let datagram = Datagram {
                    bytes: buf[..n].to_vec(),
                    from,
                };
                match sender.try_send(datagram) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        queued.taken(n);
                        drops.queue_full += 1;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        // An ICMP "port unreachable" for an earlier query, on systems that
                        // report it: nothing wrong with this socket.
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                if failing.trip_because(&e) {
                    log::warn!("cannot receive: {e}");
                }
                // Do not spin on a socket that keeps failing.
                if stop.sleep(RECV_TIMEOUT) {
                    break;
                }
            }
        }
    }
    // What was dropped since the last warning is not lost.
    drops.report_if_due(Instant::now(), source_rate, true);
}
