//! The threads of one download round: one worker per missing chunk, sharing a [`Board`] of what
//! is in flight and what has arrived. Each tries its chunk's holders in the planned order; when
//! done, it helps with chunks still in flight elsewhere (endgame, `plan::EndgameView::pick`). The
//! first complete copy of a chunk wins and cancels the others.
//!
//! The decisions (who to ask, what to duplicate) are `plan.rs`'s; where files go is
//! `placement.rs`'s; the requests themselves are `fetch`'s. This module runs them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::events::Outcome;
use shared::protocol::ChunkStep;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::tags::Proto;
use shared::CHUNKS_PER_FILE;

use super::board::{Board, ChunkResult};
use super::fetch_log::FetchedLog;
use super::placement::Placement;
use super::plan;
use super::progress::Progress;
use super::receiving::Receiving;
use crate::catalog::{Holder, Target};
use crate::fetch::{
    check_pieces, fetch_chunk, CancelHandle, Delivery, Dest, Expected, FetchError, Fetched, InFile,
    Job, Network,
};

/// How often the thread that reports progress looks at the Ctrl-C flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// How often the transfers in flight are reported (`Progress::Transfers`).
const TRANSFERS_EVERY: Duration = Duration::from_millis(100);

/// How long an idle worker waits for a flight to end or age before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// A transfer is split for an idle holder only when it has this much left to receive: room
/// for its margin and a piece of twice the smallest.
const MIN_STEAL: u64 = plan::STEAL_MARGIN + 2 * plan::MIN_PIECE;

/// Why a worker's chunk did not arrive.
pub(super) enum WorkerError {
    /// No holder delivered.
    Unavailable,
    /// Ctrl-C.
    Cancelled,
    /// A local failure (a full disk): other holders would not help.
    Local {
        /// The file that could not be written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// What the workers of one round share.
pub(super) struct FetchContext<'a> {
    pub(super) target: &'a Target,
    pub(super) store: &'a ChunkStore,
    pub(super) placement: &'a Placement,
    pub(super) expected: &'a [Option<Expected>; CHUNKS_PER_FILE],
    /// Each chunk as a step of the file's SHA-256, when the manifest carries midstates.
    pub(super) steps: &'a [Option<ChunkStep<'a>>; CHUNKS_PER_FILE],
    /// The file the content is received into, each chunk at its place, when the manifest is
    /// known; otherwise chunks are received into part files and assembled.
    pub(super) receiving: Option<&'a Receiving>,
    pub(super) net: Network,
    pub(super) endgame_after: Duration,
    pub(super) shutdown: &'a Shutdown,
    /// Per holder: whether it vouches for the manifest in use (see `plan::vouching`), so that
    /// wrong bytes from it are its fault.
    pub(super) vouching: Vec<bool>,
    /// Holders caught sending wrong bytes, or not answering: written by any worker, read by
    /// all, for the rest of this download.
    pub(super) avoid: Mutex<HashSet<SocketAddr>>,
    /// Signalled whenever a flight ends, so idle endgame helpers need not poll.
    pub(super) changed: Condvar,
    /// Written by every worker under its lock; read back by the round once they are done.
    pub(super) board: Mutex<Board>,
}

/// One fetch of a chunk from one holder, already registered as a flight on the board.
struct Attempt<'a> {
    chunk: &'a ChunkName,
    /// The holder's index in the round.
    holder: usize,
    /// Where the bytes go.
    dest: Place,
    /// Whether what an earlier transfer left there may be continued (not for endgame copies).
    resume: bool,
    /// Bytes of the chunk there before the attempt (continued when `resume`): wrong bytes in
    /// a continued chunk may be this peer's own (a power cut), so they blame no holder.
    earlier: u64,
    /// Only this piece of the chunk (see [`FetchContext::steal`]).
    range: Option<(u64, u64)>,
    handle: Arc<CancelHandle>,
}

/// Where an attempt's bytes go.
enum Place {
    /// A part file of their own.
    Part(PathBuf),
    /// Their place in the file being received ([`FetchContext::receiving`]).
    InFile,
}

/// A piece of a chunk in flight, given to an idle holder ([`FetchContext::steal`]).
struct Stolen {
    /// The chunk's position.
    position: usize,
    /// The holder now fetching the piece.
    holder: usize,
    /// Its flight.
    handle: Arc<CancelHandle>,
    /// The piece: bytes `start..end` of the chunk.
    range: (u64, u64),
}

/// How one attempt ended.
enum AttemptEnd {
    /// This copy of the chunk is the one kept.
    Won,
    /// Another copy was kept first.
    Lost,
    /// A legacy holder answered with nothing: it may lack the chunk, or the chunk is empty.
    EmptyLegacyAnswer,
    /// This holder did not deliver.
    Failed(FetchError),
}

impl<'a> FetchContext<'a> {
    /// The board, locked (a worker that panicked while holding it left nothing half-written
    /// that matters: its chunk is simply missing).
    pub(super) fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_avoided(&self, addr: SocketAddr) -> bool {
        self.avoid.lock().is_ok_and(|set| set.contains(&addr))
    }

    fn avoid(&self, addr: SocketAddr) {
        if let Ok(mut avoid) = self.avoid.lock() {
            avoid.insert(addr);
        }
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
            let mut reported = Instant::now();
            loop {
                match rx.recv_timeout(CANCEL_POLL) {
                    Ok(progress) => on_progress(&progress),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if reported.elapsed() >= TRANSFERS_EVERY {
                    reported = Instant::now();
                    let transfers = self.board().transfers(&self.target.holders);
                    on_progress(&Progress::Transfers(transfers));
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

    /// Removes the legacy chunks whose lengths break the chunking rule, so they are fetched
    /// again; returns them.
    pub(super) fn discard_short_legacy_chunks(
        &self,
        names: &[ChunkName; CHUNKS_PER_FILE],
    ) -> Vec<ChunkName> {
        let short = self.board().take_short_legacy_chunks(names);
        short
            .into_iter()
            .map(|position| {
                let chunk = &names[position];
                let _ = fs::remove_file(self.placement.chunk_path(self.store, chunk));
                chunk.clone()
            })
            .collect()
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

        let mut tries = candidates.iter().map(|&h| (h, true)).collect::<Vec<_>>();
        tries.reverse();
        while let Some((h, first_try)) = tries.pop() {
            if self.is_done(chunk) {
                return Ok(());
            }
            if self.shutdown.is_triggered() {
                return Err(WorkerError::Cancelled);
            }
            if self.is_avoided(holders[h].addr) {
                continue;
            }
            let handle = {
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
                        .wait_timeout(board, IDLE_WAIT)
                        .map_or_else(|p| p.into_inner().0, |(b, _)| b);
                }
                if board.results[chunk.position()].is_some() {
                    return Ok(());
                }
                let handle = board.add_flight(chunk.position(), h, self.receiving.is_some());
                // Pieces other holders took of this chunk before an earlier attempt failed are
                // kept: this one stops where they start (and fetches any that failed).
                if let Some(start) = board.pieces[chunk.position()].iter().map(|p| p.start).min() {
                    handle.cut_at(start);
                }
                handle
            };
            let (dest, earlier) = match self.receiving {
                Some(receiving) => (Place::InFile, receiving.recorded(chunk.position())),
                None => {
                    let part = self.placement.part_path(self.store, chunk);
                    let earlier = fs::metadata(&part).map_or(0, |m| m.len());
                    (Place::Part(part), earlier)
                }
            };
            let attempt = Attempt {
                chunk,
                holder: h,
                dest,
                resume: true,
                earlier,
                range: None,
                handle,
            };
            match self.attempt(&attempt, progress) {
                AttemptEnd::Won | AttemptEnd::Lost => return Ok(()),
                AttemptEnd::EmptyLegacyAnswer => {
                    empty_from.get_or_insert(h);
                }
                AttemptEnd::Failed(FetchError::Cancelled) => {
                    if self.is_done(chunk) {
                        return Ok(());
                    }
                    return Err(WorkerError::Cancelled);
                }
                AttemptEnd::Failed(FetchError::Write { path, source }) => {
                    return Err(WorkerError::Local { path, source });
                }
                // What was continued did not match: the same holder once more, from byte 0.
                AttemptEnd::Failed(e) if e.is_bad_data() && earlier > 0 && first_try => {
                    tries.push((h, false));
                }
                AttemptEnd::Failed(_) => {}
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

    /// Runs one attempt and records how it ended on the board, in the log and in the progress.
    fn attempt(&self, attempt: &Attempt<'_>, progress: &SyncSender<Progress>) -> AttemptEnd {
        let (chunk, h) = (attempt.chunk, attempt.holder);
        let holder = &self.target.holders[h];
        let position = chunk.position();
        let expected = self.expected[position];
        let job = Job {
            holder,
            chunk,
            content_sha256: self.target.sha256,
            expected,
            step: self.steps[position].as_ref(),
            resume: attempt.resume,
            range: attempt.range,
        };
        let record = |bytes| {
            if let Some(receiving) = self.receiving {
                receiving.record(position, bytes);
            }
        };
        let in_file = match (&attempt.dest, self.receiving) {
            (Place::InFile, Some(receiving)) => Some(receiving.place(position, &record)),
            _ => None,
        };
        let dest = match (&attempt.dest, &in_file) {
            (Place::Part(part), _) => Dest::Part(part),
            (Place::InFile, Some(place)) => Dest::InFile(place),
            (Place::InFile, None) => unreachable!("received in place only with a Receiving"),
        };
        let started = Instant::now();
        let result = fetch_chunk(&job, dest, &self.net, self.shutdown, &attempt.handle);
        let (_, reached) = attempt.handle.position();
        let sent = reached.saturating_sub(attempt.handle.position().0);
        self.board()
            .rates
            .insert(h, plan::rate(sent, started.elapsed()));
        if attempt.range.is_some() {
            return self.piece_ended(attempt, result, progress);
        }
        // A transfer cut short because other holders were given the rest of the chunk: the
        // chunk is whole, and checked, once their pieces are in.
        let split = matches!(result, Ok(Delivery::Piece { .. }));
        let result = match (result, &in_file) {
            (Ok(Delivery::Chunk(fetched)), _) => Ok(fetched),
            (Ok(Delivery::Piece { end, hashed }), Some(place)) => {
                self.complete_pieces(attempt, place, end, hashed)
            }
            (Ok(Delivery::Piece { .. }), None) => {
                unreachable!("only a chunk received in place is split")
            }
            (Err(e), _) => Err(e),
        };
        let millis = started.elapsed().as_millis();
        let part = match &attempt.dest {
            Place::Part(part) => Some(part.as_path()),
            Place::InFile => None,
        };
        let discard = || {
            if let Some(part) = part {
                let _ = fs::remove_file(part);
            }
        };
        let mut board = self.board();
        board.remove_flight(position, &attempt.handle);
        // A flight ended: endgame helpers waiting for one look again.
        self.changed.notify_all();
        match result {
            Ok(fetched) if fetched.bytes == 0 && expected.is_none() => {
                drop(board);
                discard();
                AttemptEnd::EmptyLegacyAnswer
            }
            Ok(fetched) => {
                if board.results[position].is_some() {
                    drop(board);
                    discard();
                    return AttemptEnd::Lost;
                }
                let mut copy = None;
                match (part, self.receiving) {
                    // Received in place: already where it belongs.
                    (None, _) => {}
                    // A copy while the content is received in place: placed after the round.
                    (Some(part), Some(_)) => copy = Some(part.to_owned()),
                    (Some(part), None) => {
                        let dest = self.placement.chunk_path(self.store, chunk);
                        if let Err(source) = fs::rename(part, &dest) {
                            drop(board);
                            discard();
                            return AttemptEnd::Failed(FetchError::Write { path: dest, source });
                        }
                    }
                }
                board.results[position] = Some(ChunkResult {
                    fetched,
                    source: Some(holder.label()),
                    holder: Some(h),
                    copy,
                });
                // The other copies in flight are no longer needed.
                for flight in &board.flights[position] {
                    flight.handle.cancel();
                }
                drop(board);
                self.delivered(chunk, holder, fetched, millis, progress);
                AttemptEnd::Won
            }
            Err(e) => {
                let superseded = board.results[position].is_some();
                if split && e.is_bad_data() {
                    board.unsplit[position] = true;
                }
                if !superseded && !matches!(e, FetchError::Cancelled) {
                    board.failed[position].insert(h);
                }
                drop(board);
                // Keep what can be continued (our peers, a known chunk, nothing wrong in it);
                // anything else is discarded.
                let resumable = matches!(holder.proto, Proto::P2p(_))
                    && expected.is_some()
                    && attempt.resume
                    && !e.is_bad_data()
                    && !superseded;
                // What arrived before the failure, for the log.
                let received = Fetched::unverified(match part {
                    Some(part) => fs::metadata(part).map_or(0, |m| m.len()),
                    None => self.receiving.map_or(0, |r| r.recorded(position)),
                });
                if !resumable {
                    discard();
                    if part.is_none() && !superseded {
                        record(0);
                    }
                }
                if superseded {
                    // Say so: a transfer cut short by a faster copy is worth seeing in the log.
                    let attempt = self.logged(chunk, holder, &received, millis);
                    attempt.failed(Outcome::Superseded, &e);
                    return AttemptEnd::Lost;
                }
                // Wrong bytes in a chunk received in pieces, or continued, blame nobody in
                // particular.
                let continued = (attempt.resume && attempt.earlier > 0) || split;
                self.failed(chunk, (h, continued), &received, millis, &e, progress);
                AttemptEnd::Failed(e)
            }
        }
    }

    /// A holder failed to deliver `chunk`: avoided when it does not answer or, vouching for the
    /// manifest, sent wrong bytes (into a chunk it sent whole: `continued` says the attempt
    /// continued bytes already here, which may be what was wrong); logged and reported unless
    /// the fetch was cancelled.
    fn failed(
        &self,
        chunk: &ChunkName,
        (h, continued): (usize, bool),
        received: &Fetched,
        millis: u128,
        e: &FetchError,
        progress: &SyncSender<Progress>,
    ) {
        let holder = &self.target.holders[h];
        let blamed =
            e.is_bad_data() && !continued && self.vouching.get(h).copied().unwrap_or(false);
        if e.is_unresponsive() || blamed {
            self.avoid(holder.addr);
        }
        if blamed {
            log::warn!(
                "{} sent wrong data for {chunk}; not asking it again during this download",
                holder.label()
            );
        }
        if matches!(e, FetchError::Cancelled) {
            return;
        }
        // Bytes that contradict a manifest the holder never vouched for prove nothing
        // against it.
        let outcome = if e.is_bad_data() && !blamed {
            Outcome::UnconfirmedMismatch
        } else {
            e.outcome()
        };
        self.logged(chunk, holder, received, millis)
            .failed(outcome, e);
        let _ = progress.send(Progress::AttemptFailed {
            index: chunk.index(),
            holder: holder.label(),
            reason: e.to_string(),
        });
    }

    fn logged(&self, chunk: &ChunkName, holder: &Holder, got: &Fetched, ms: u128) -> FetchedLog {
        FetchedLog::new(&self.target.name, chunk, holder, got, ms)
    }

    /// A copy of `chunk` from `holder` was kept: logged and reported.
    fn delivered(
        &self,
        chunk: &ChunkName,
        holder: &Holder,
        fetched: Fetched,
        millis: u128,
        progress: &SyncSender<Progress>,
    ) {
        self.logged(chunk, holder, &fetched, millis).ok();
        let _ = progress.send(Progress::ChunkDone {
            index: chunk.index(),
            holder: holder.label(),
            bytes: fetched.bytes,
            resumed: fetched.resumed_from,
            millis,
            verified: fetched.verified,
        });
    }

    /// Endgame: while other chunks are still in flight, ask an idle holder for one of them too;
    /// the first complete copy is kept and the other cancelled.
    fn help_endgame(&self, progress: &SyncSender<Progress>) {
        let holders = &self.target.holders;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let (position, h, handle) = {
                let mut board = self.board();
                let avoided: Vec<bool> = holders.iter().map(|h| self.is_avoided(h.addr)).collect();
                if let Some(stolen) = self.steal(&mut board, &avoided) {
                    drop(board);
                    let Ok(names) = ChunkName::all_of(&self.target.name) else {
                        unreachable!("validated at the start of the download")
                    };
                    let attempt = Attempt {
                        chunk: &names[stolen.position],
                        holder: stolen.holder,
                        dest: Place::InFile,
                        resume: false,
                        earlier: 0,
                        range: Some(stolen.range),
                        handle: stolen.handle,
                    };
                    if let AttemptEnd::Failed(FetchError::Write { .. }) =
                        self.attempt(&attempt, progress)
                    {
                        return;
                    }
                    continue;
                }
                let view = board.endgame_view(holders, avoided, self.endgame_after);
                if !view.in_flight() {
                    return;
                }
                let Some((position, h)) = view.pick() else {
                    // Nothing to duplicate yet (flights are young, or no holder is idle): wait
                    // until a flight ends, or a little, for the flights to age.
                    let _ = self.changed.wait_timeout(board, IDLE_WAIT);
                    continue;
                };
                (position, h, board.add_flight(position, h, false))
            };
            let Ok(names) = ChunkName::all_of(&self.target.name) else {
                unreachable!("validated at the start of the download")
            };
            let chunk = &names[position];
            log::info!("endgame: also asking {} for {chunk}", holders[h].label());
            let attempt = Attempt {
                chunk,
                holder: h,
                dest: Place::Part(self.placement.copy_part_path(self.store, chunk, h)),
                resume: false,
                earlier: 0,
                range: None,
                handle,
            };
            if let AttemptEnd::Failed(FetchError::Write { .. }) = self.attempt(&attempt, progress) {
                return;
            }
        }
    }

    /// Splits a transfer in flight so that an idle holder fetches the end of its range
    /// (content received in place only): the transfer with the most time left (bytes left at
    /// its rate) is cut where both finish together ([`plan::split_point`]). This is how
    /// several holders share one chunk, and why a download from three holders is not held up
    /// by the last of five chunks.
    fn steal(&self, board: &mut Board, avoided: &[bool]) -> Option<Stolen> {
        self.receiving?;
        let holders = &self.target.holders;
        let idle = |h: usize| {
            matches!(holders[h].proto, Proto::P2p(_)) && !avoided[h] && !board.is_busy(h)
        };
        // The flight with the most time left: (ms left, position, flight, where, end, rate).
        let mut best: Option<(u64, usize, usize, u64, u64, u64)> = None;
        for (position, flights) in board.flights.iter().enumerate() {
            let Some(exp) = self.expected[position] else {
                continue;
            };
            if board.results[position].is_some() || board.unsplit[position] {
                continue;
            }
            for (f, flight) in flights.iter().enumerate() {
                let (start, pos) = flight.handle.position();
                let end = flight.handle.end().min(exp.len);
                let left = end.saturating_sub(pos);
                if left < MIN_STEAL || !flight.in_file || flight.handle.is_cancelled() {
                    continue;
                }
                let rate = plan::rate(pos.saturating_sub(start), flight.started.elapsed());
                let ms_left = left.saturating_mul(1000) / rate;
                if best.is_none_or(|b| ms_left > b.0) {
                    best = Some((ms_left, position, f, pos, end, rate));
                }
            }
        }
        let (_, position, f, pos, end, victim_rate) = best?;
        let index = u8::try_from(position + 1).ok()?;
        let thief = (0..holders.len())
            .filter(|&h| idle(h) && holders[h].chunks.contains(index))
            .filter(|h| !board.failed[position].contains(h))
            .max_by_key(|h| board.rates.get(h).copied().unwrap_or(0))?;
        let thief_rate = board.rates.get(&thief).copied().unwrap_or(victim_rate);
        let mid = plan::split_point(pos, end, victim_rate, thief_rate)?;
        let victim = board.flights[position][f].handle.clone();
        victim.cut_at(mid);
        let handle = board.add_flight(position, thief, true);
        board.pieces[position].push(super::board::Piece {
            start: mid,
            handle: handle.clone(),
            received: None,
        });
        log::info!(
            "{} takes bytes {mid}..{end} of {}_{} from {}",
            holders[thief].label(),
            self.target.name,
            position + 1,
            holders[board.flights[position][f].holder].label()
        );
        Some(Stolen {
            position,
            holder: thief,
            handle,
            range: (mid, end),
        })
    }

    /// A piece of a chunk ([`Self::steal`]) ended: recorded for the transfer waiting for it
    /// ([`Self::complete_pieces`]), and logged.
    fn piece_ended(
        &self,
        attempt: &Attempt<'_>,
        result: Result<Delivery, FetchError>,
        progress: &SyncSender<Progress>,
    ) -> AttemptEnd {
        let position = attempt.chunk.position();
        let mut board = self.board();
        board.remove_flight(position, &attempt.handle);
        let received = result.is_ok();
        for piece in &mut board.pieces[position] {
            if Arc::ptr_eq(&piece.handle, &attempt.handle) {
                piece.received = Some(received);
            }
        }
        drop(board);
        self.changed.notify_all();
        match result {
            Ok(_) => AttemptEnd::Won,
            Err(e) => {
                let holder = &self.target.holders[attempt.holder];
                let (start, reached) = attempt.handle.position();
                let got = Fetched::unverified(reached.saturating_sub(start));
                self.failed(attempt.chunk, (attempt.holder, true), &got, 0, &e, progress);
                log::info!(
                    "{} did not deliver its piece of {}",
                    holder.label(),
                    attempt.chunk
                );
                AttemptEnd::Failed(e)
            }
        }
    }

    /// The transfer that started a chunk was cut at `end`, other holders fetching the rest in
    /// pieces: waits for them, fetches itself any piece that failed, then checks the whole
    /// chunk (its hash up to `end` continued over the rest, read back from the file).
    fn complete_pieces(
        &self,
        attempt: &Attempt<'_>,
        place: &InFile<'_>,
        end: u64,
        hashed: Option<shared::digest::Hasher>,
    ) -> Result<Fetched, FetchError> {
        let position = attempt.chunk.position();
        let Some(expected) = self.expected[position] else {
            return Err(FetchError::Protocol(
                "a chunk of no manifest was split".into(),
            ));
        };
        let Some(hashed) = hashed else {
            return Err(FetchError::Protocol("a split chunk was not hashed".into()));
        };
        loop {
            let failed: Vec<(u64, u64)> = {
                let mut board = self.board();
                while board.pieces[position].iter().any(|p| p.received.is_none()) {
                    if self.shutdown.is_triggered() || attempt.handle.is_cancelled() {
                        return Err(FetchError::Cancelled);
                    }
                    board = self
                        .changed
                        .wait_timeout(board, IDLE_WAIT)
                        .map_or_else(|p| p.into_inner().0, |(b, _)| b);
                }
                let pieces = &mut board.pieces[position];
                let failed = (pieces.iter())
                    .filter(|p| p.received == Some(false))
                    .map(|p| (p.start, p.end(expected.len)))
                    .collect();
                pieces.retain(|p| p.received != Some(false));
                failed
            };
            if failed.is_empty() {
                break;
            }
            // What another holder did not deliver, this one fetches.
            for (start, stop) in failed {
                let handle = self.board().add_flight(position, attempt.holder, true);
                let job = Job {
                    holder: &self.target.holders[attempt.holder],
                    chunk: attempt.chunk,
                    content_sha256: self.target.sha256,
                    expected: Some(expected),
                    step: None,
                    resume: false,
                    range: Some((start, stop)),
                };
                let result =
                    fetch_chunk(&job, Dest::InFile(place), &self.net, self.shutdown, &handle);
                self.board().remove_flight(position, &handle);
                self.changed.notify_all();
                result?;
            }
        }
        self.board().pieces[position].clear();
        let fetched = check_pieces(place, hashed, end, expected, self.steps[position].as_ref())?;
        (place.record)(expected.len);
        // What this transfer continued from is what was here before it.
        let (resumed_from, _) = attempt.handle.position();
        Ok(Fetched {
            resumed_from,
            ..fetched
        })
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
        let fetched = Fetched::unverified(0);
        self.board().results[chunk.position()] = Some(ChunkResult {
            fetched,
            source: Some(holder.label()),
            holder: Some(h),
            copy: None,
        });
        self.delivered(chunk, holder, fetched, 0, progress);
        Ok(())
    }
}
