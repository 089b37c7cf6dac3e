//! The workers of one download: one per missing chunk, sharing a [`Board`] of what is in
//! flight and what has arrived. Each tries its chunk's holders in order; when done, it helps
//! with chunks still in flight elsewhere (endgame). The first complete copy of a chunk wins and
//! cancels the others.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::events::Event;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::tags::Proto;
use shared::CHUNKS_PER_FILE;

use super::{short_legacy_chunks, Placement, Progress};
use crate::catalog::{Holder, Target};
use crate::fetch::{fetch_chunk, CancelHandle, Expected, FetchError, Fetched, Job, Network};
use crate::format;

/// How often the thread that reports progress looks at the Ctrl-C flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

pub(super) struct ChunkResult {
    pub(super) fetched: Fetched,
    /// `user@address` of the sender; `None` for a chunk kept from before.
    pub(super) source: Option<String>,
    /// The sender's index among the target's holders.
    pub(super) holder: Option<usize>,
}

pub(super) enum WorkerError {
    /// No holder delivered.
    Unavailable,
    /// Ctrl-C.
    Cancelled,
    /// A local failure (a full disk): other holders would not help.
    Local { path: PathBuf, source: io::Error },
}

/// One fetch in progress.
struct Flight {
    holder: usize,
    started: Instant,
    handle: Arc<CancelHandle>,
}

/// The state of the five chunks, shared by the workers.
#[derive(Default)]
pub(super) struct Board {
    /// The copy that won, per chunk.
    pub(super) results: [Option<ChunkResult>; CHUNKS_PER_FILE],
    /// Fetches in progress, per chunk.
    flights: [Vec<Flight>; CHUNKS_PER_FILE],
    /// Holders that failed each chunk during this download.
    pub(super) failed: [HashSet<usize>; CHUNKS_PER_FILE],
}

impl Board {
    fn is_busy(&self, holder: usize) -> bool {
        self.flights.iter().flatten().any(|f| f.holder == holder)
    }

    /// How many chunks `holder` delivered in this download.
    fn delivered(&self, holder: usize) -> usize {
        self.results
            .iter()
            .flatten()
            .filter(|r| r.holder == Some(holder))
            .count()
    }

    fn remove_flight(&mut self, position: usize, handle: &Arc<CancelHandle>) {
        self.flights[position].retain(|f| !Arc::ptr_eq(&f.handle, handle));
    }
}

pub(super) struct FetchContext<'a> {
    pub(super) target: &'a Target,
    pub(super) store: &'a ChunkStore,
    pub(super) placement: &'a Placement,
    pub(super) expected: &'a [Option<Expected>; CHUNKS_PER_FILE],
    pub(super) net: Network,
    pub(super) endgame_after: Duration,
    pub(super) shutdown: &'a Shutdown,
    /// Per holder: whether it vouches for the manifest in use (announced its root, or the
    /// manifest is one this peer verified before), so that wrong bytes from it are its fault.
    pub(super) vouching: Vec<bool>,
    /// Holders caught sending wrong bytes: written by any worker, read by all, for the rest of
    /// this download.
    pub(super) avoid: Mutex<HashSet<SocketAddr>>,
    /// Signalled whenever a flight ends, so idle endgame helpers need not poll.
    pub(super) changed: Condvar,
    /// Written by every worker under its lock; read back by `download` once they are done.
    pub(super) board: Mutex<Board>,
}

/// How one attempt ended.
enum Attempt {
    /// This copy of the chunk is the one kept.
    Won,
    /// Another copy was kept first.
    Lost,
    /// This holder did not deliver.
    Failed(FetchError),
}

impl FetchContext<'_> {
    pub(super) fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_avoided(&self, addr: SocketAddr) -> bool {
        self.avoid.lock().is_ok_and(|set| set.contains(&addr))
    }

    fn is_done(&self, chunk: &ChunkName) -> bool {
        self.board().results[chunk.position()].is_some()
    }

    /// Fetches `chunks` in parallel, one worker each (`plan` gives each worker's holders in
    /// order), reporting progress as it comes; returns the workers' errors.
    pub(super) fn run_workers(
        &self,
        chunks: &[ChunkName],
        plan: &[Vec<usize>],
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Vec<(ChunkName, WorkerError)> {
        thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Progress>(64);
            let handles: Vec<_> = chunks
                .iter()
                .zip(plan)
                .map(|(chunk, candidates)| {
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let result = self.fetch(chunk, candidates, &tx);
                        if result.is_ok() {
                            self.help_endgame(&tx);
                        }
                        (chunk.clone(), result)
                    })
                })
                .collect();
            drop(tx);
            // Wake up now and then to pass Ctrl-C on to the transfers: a read blocked on a
            // silent holder only returns when its socket is shut down.
            let mut cancelled = false;
            loop {
                match rx.recv_timeout(CANCEL_POLL) {
                    Ok(progress) => on_progress(&progress),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if self.shutdown.is_triggered() && !cancelled {
                    cancelled = true;
                    self.cancel_all_flights();
                }
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .filter_map(|(chunk, result)| result.err().map(|e| (chunk, e)))
                .collect()
        })
    }

    /// Cancels every fetch in flight, and wakes the endgame helpers so they see the flag.
    fn cancel_all_flights(&self) {
        let board = self.board();
        for flight in board.flights.iter().flatten() {
            flight.handle.cancel();
        }
        self.changed.notify_all();
    }

    /// Removes the legacy chunks whose lengths break the chunking rule (see
    /// [`short_legacy_chunks`]) and marks their senders as failed for them.
    pub(super) fn discard_short_legacy_chunks(
        &self,
        names: &[ChunkName; CHUNKS_PER_FILE],
    ) -> Vec<ChunkName> {
        let mut board = self.board();
        let lens: [u64; CHUNKS_PER_FILE] =
            std::array::from_fn(|i| board.results[i].as_ref().map_or(0, |r| r.fetched.bytes));
        let mut discarded = Vec::new();
        for position in short_legacy_chunks(&lens) {
            let chunk = &names[position];
            if let Some(result) = board.results[position].take() {
                log::warn!(
                    "{chunk} from {} has {} bytes, which the chunking rule rules out ({lens:?}); fetching it again",
                    result.source.as_deref().unwrap_or("?"),
                    result.fetched.bytes
                );
                if let Some(h) = result.holder {
                    board.failed[position].insert(h);
                }
            }
            let _ = fs::remove_file(self.placement.chunk_path(self.store, chunk));
            discarded.push(chunk.clone());
        }
        discarded
    }

    /// The chunk's main worker: tries the planned holders in order until a copy is kept.
    fn fetch(
        &self,
        chunk: &ChunkName,
        candidates: &[usize],
        progress: &SyncSender<Progress>,
    ) -> Result<(), WorkerError> {
        let holders = &self.target.holders;
        // A legacy server that lacks a chunk just closes, which looks like an empty chunk. Take
        // an empty answer only when no other holder sends bytes.
        let mut empty_from: Option<usize> = None;

        for &h in candidates {
            if self.is_done(chunk) {
                return Ok(());
            }
            if self.shutdown.is_triggered() {
                return Err(WorkerError::Cancelled);
            }
            if self.is_avoided(holders[h].addr) {
                continue;
            }
            let handle = Arc::new(CancelHandle::default());
            {
                let mut board = self.board();
                // One request at a time to a legacy server: many of them serve one connection
                // at a time, and some crash when asked for several at once.
                while holders[h].proto == Proto::Legacy
                    && board.is_busy(h)
                    && !self.shutdown.is_triggered()
                    && board.results[chunk.position()].is_none()
                {
                    board = self
                        .changed
                        .wait_timeout(board, Duration::from_millis(100))
                        .map_or_else(|p| p.into_inner().0, |(b, _)| b);
                }
                if board.results[chunk.position()].is_some() {
                    return Ok(());
                }
                board.flights[chunk.position()].push(Flight {
                    holder: h,
                    started: Instant::now(),
                    handle: handle.clone(),
                });
            }
            let part = self.placement.part_path(self.store, chunk);
            match self.attempt(chunk, h, &part, true, &handle, progress) {
                Attempt::Won | Attempt::Lost => return Ok(()),
                Attempt::Failed(FetchError::Cancelled) => {
                    if self.is_done(chunk) {
                        return Ok(());
                    }
                    return Err(WorkerError::Cancelled);
                }
                Attempt::Failed(FetchError::Write { path, source }) => {
                    return Err(WorkerError::Local { path, source });
                }
                Attempt::Failed(FetchError::Protocol(ref reason))
                    if reason == EMPTY_LEGACY_ANSWER =>
                {
                    empty_from.get_or_insert(h);
                }
                Attempt::Failed(_) => {}
            }
        }
        if let Some(h) = empty_from {
            if !self.is_done(chunk) {
                return self.accept_empty(chunk, h, progress);
            }
        }
        if self.is_done(chunk) {
            Ok(())
        } else {
            Err(WorkerError::Unavailable)
        }
    }

    /// One fetch of `chunk` from holder `h` into `part`, already registered as a flight.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        chunk: &ChunkName,
        h: usize,
        part: &Path,
        resume: bool,
        handle: &Arc<CancelHandle>,
        progress: &SyncSender<Progress>,
    ) -> Attempt {
        let holder = &self.target.holders[h];
        let position = chunk.position();
        let expected = self.expected[position];
        let job = Job {
            holder,
            chunk,
            content_sha256: self.target.sha256,
            expected,
            resume,
        };
        let started = Instant::now();
        let result = fetch_chunk(&job, part, &self.net, self.shutdown, handle);
        let millis = started.elapsed().as_millis();
        let mut board = self.board();
        board.remove_flight(position, handle);
        // A flight ended: endgame helpers waiting for one look again.
        self.changed.notify_all();
        match result {
            Ok(fetched) if fetched.bytes == 0 && expected.is_none() => {
                drop(board);
                let _ = fs::remove_file(part);
                Attempt::Failed(FetchError::Protocol(EMPTY_LEGACY_ANSWER.into()))
            }
            Ok(fetched) => {
                if board.results[position].is_some() {
                    drop(board);
                    let _ = fs::remove_file(part);
                    return Attempt::Lost;
                }
                let dest = self.placement.chunk_path(self.store, chunk);
                if let Err(source) = fs::rename(part, &dest) {
                    drop(board);
                    let _ = fs::remove_file(part);
                    return Attempt::Failed(FetchError::Write { path: dest, source });
                }
                board.results[position] = Some(ChunkResult {
                    fetched,
                    source: Some(holder.label()),
                    holder: Some(h),
                });
                // The other copies in flight are no longer needed.
                for flight in &board.flights[position] {
                    flight.handle.cancel();
                }
                drop(board);
                self.log_fetch(chunk, holder, &fetched, millis, "ok", None);
                let _ = progress.send(Progress::ChunkDone {
                    index: chunk.index(),
                    holder: holder.label(),
                    bytes: fetched.bytes,
                    millis,
                    verified: fetched.verified,
                });
                Attempt::Won
            }
            Err(e) => {
                let superseded = board.results[position].is_some();
                if !superseded && !matches!(e, FetchError::Cancelled) {
                    board.failed[position].insert(h);
                }
                drop(board);
                // Keep a part file that can be continued (our peers, a known chunk, nothing
                // wrong in it); anything else is discarded.
                let resumable = matches!(holder.proto, Proto::P2p(_))
                    && expected.is_some()
                    && resume
                    && !e.is_bad_data()
                    && !superseded;
                // What arrived before the failure, for the log.
                let received = fs::metadata(part).map_or(0, |m| m.len());
                if !resumable {
                    let _ = fs::remove_file(part);
                }
                if superseded {
                    // Say so: a transfer cut short by a faster copy is worth seeing in the log.
                    let lost = Fetched {
                        bytes: received,
                        resumed_from: 0,
                        sha256: Digest::of(b""),
                        verified: false,
                    };
                    self.log_fetch(chunk, holder, &lost, millis, "superseded", Some(&e));
                    return Attempt::Lost;
                }
                let blamed = e.is_bad_data() && self.vouching.get(h).copied().unwrap_or(false);
                if e.is_unresponsive() {
                    if let Ok(mut avoid) = self.avoid.lock() {
                        avoid.insert(holder.addr);
                    }
                }
                if blamed {
                    if let Ok(mut avoid) = self.avoid.lock() {
                        avoid.insert(holder.addr);
                    }
                    log::warn!(
                        "{} sent wrong data for {chunk}; not asking it again during this download",
                        holder.label()
                    );
                }
                if !matches!(e, FetchError::Cancelled) {
                    let failed = Fetched {
                        bytes: received,
                        resumed_from: 0,
                        sha256: Digest::of(b""),
                        verified: false,
                    };
                    // Bytes that contradict a manifest the holder never vouched for prove
                    // nothing against it.
                    let outcome = if e.is_bad_data() && !blamed {
                        "unconfirmed_mismatch"
                    } else {
                        e.outcome()
                    };
                    self.log_fetch(chunk, holder, &failed, millis, outcome, Some(&e));
                    let _ = progress.send(Progress::AttemptFailed {
                        index: chunk.index(),
                        holder: holder.label(),
                        reason: e.to_string(),
                    });
                }
                Attempt::Failed(e)
            }
        }
    }

    /// Endgame: while other chunks are still in flight, ask an idle holder for one of them too;
    /// the first complete copy is kept and the other cancelled.
    fn help_endgame(&self, progress: &SyncSender<Progress>) {
        let holders = &self.target.holders;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let pick = {
                let mut board = self.board();
                let in_flight = (0..CHUNKS_PER_FILE)
                    .any(|p| board.results[p].is_none() && !board.flights[p].is_empty());
                if !in_flight {
                    return;
                }
                let mut pick = None;
                // Chunks with the fewest copies in flight first: idle holders spread over the
                // stuck chunks instead of all piling onto the first one.
                let mut positions: Vec<usize> = (0..CHUNKS_PER_FILE).collect();
                positions.sort_by_key(|&p| board.flights[p].len());
                for position in positions {
                    let old_enough = board.flights[position]
                        .iter()
                        .any(|f| f.started.elapsed() >= self.endgame_after);
                    if board.results[position].is_some() || !old_enough {
                        continue;
                    }
                    let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
                    // Holders that have delivered first: an untried one may be silent.
                    let idle = (0..holders.len())
                        .filter(|&h| {
                            holders[h].chunks.contains(index)
                                && !board.is_busy(h)
                                && !board.failed[position].contains(&h)
                                && !self.is_avoided(holders[h].addr)
                        })
                        .max_by_key(|&h| (board.delivered(h), std::cmp::Reverse(h)));
                    if let Some(h) = idle {
                        let handle = Arc::new(CancelHandle::default());
                        board.flights[position].push(Flight {
                            holder: h,
                            started: Instant::now(),
                            handle: handle.clone(),
                        });
                        pick = Some((position, h, handle));
                        break;
                    }
                }
                if pick.is_none() {
                    // Nothing to duplicate yet (flights are young, or no holder is idle): wait
                    // until a flight ends, or a little, for the flights to age.
                    let _ = self.changed.wait_timeout(board, Duration::from_millis(100));
                    continue;
                }
                pick
            };
            let Some((position, h, handle)) = pick else {
                continue;
            };
            let chunk = &ChunkName::all_of(&self.target.name)
                .map(|names| names[position].clone())
                .unwrap_or_else(|_| unreachable!("validated at the start of the download"));
            let base = self.placement.part_path(self.store, chunk);
            let part = PathBuf::from(format!("{}.{h}", base.display()));
            log::info!(
                "endgame: also asking {} for {chunk}",
                self.target.holders[h].label()
            );
            if let Attempt::Failed(FetchError::Write { .. }) =
                self.attempt(chunk, h, &part, false, &handle, progress)
            {
                return;
            }
        }
    }

    /// Keeps an empty chunk from a legacy holder when no holder sent bytes for it.
    fn accept_empty(
        &self,
        chunk: &ChunkName,
        h: usize,
        progress: &SyncSender<Progress>,
    ) -> Result<(), WorkerError> {
        let holder = &self.target.holders[h];
        let dest = self.placement.chunk_path(self.store, chunk);
        File::create(&dest).map_err(|source| WorkerError::Local {
            path: dest.clone(),
            source,
        })?;
        let fetched = Fetched {
            bytes: 0,
            resumed_from: 0,
            sha256: Digest::of(b""),
            verified: false,
        };
        self.board().results[chunk.position()] = Some(ChunkResult {
            fetched,
            source: Some(holder.label()),
            holder: Some(h),
        });
        self.log_fetch(chunk, holder, &fetched, 0, "ok", None);
        let _ = progress.send(Progress::ChunkDone {
            index: chunk.index(),
            holder: holder.label(),
            bytes: 0,
            millis: 0,
            verified: false,
        });
        Ok(())
    }

    fn log_fetch(
        &self,
        chunk: &ChunkName,
        holder: &Holder,
        fetched: &Fetched,
        millis: u128,
        outcome: &str,
        error: Option<&FetchError>,
    ) {
        let sent = fetched.bytes - fetched.resumed_from;
        let mut event = Event::new("fetched")
            .with("content", &self.target.name)
            .with("chunk", chunk.index())
            .with("source", holder.addr)
            .with("user", &holder.user)
            .with("bytes", fetched.bytes);
        if fetched.resumed_from > 0 {
            event = event.with("resumed_from", fetched.resumed_from);
        }
        event = event
            .with("ms", millis)
            .with(
                "rate_mbps",
                format!("{:.1}", format::rate_mbps(sent, millis)),
            )
            .with("outcome", outcome)
            .with("verified", if fetched.verified { "yes" } else { "no" });
        if let Some(e) = error {
            event = event.with("reason", e);
            log::warn!("{event}");
        } else {
            log::info!("{event}");
        }
    }
}

/// The marker of an empty answer from a legacy holder (see [`FetchContext::fetch`]).
const EMPTY_LEGACY_ANSWER: &str = "empty answer from a legacy server";
