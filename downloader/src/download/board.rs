//! The [`Board`]: the state of the five chunks of one download round, shared by its workers
//! under one lock: which copy of each chunk was kept, which fetches are in flight, which
//! holders failed which chunk. The workers write it; the round reads the results back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::chunk::ChunkName;
use shared::CHUNKS_PER_FILE;

use super::plan::{short_legacy_chunks, ChunkState, EndgameView};
use super::progress::Transfer;
use crate::catalog::Holder;
use crate::fetch::{CancelHandle, Fetched};

/// The copy of a chunk that was kept.
pub(super) struct ChunkResult {
    /// What arrived.
    pub(super) fetched: Fetched,
    /// `user@address` of the sender; `None` for a chunk kept from before.
    pub(super) source: Option<String>,
    /// The sender's index among the round's holders.
    pub(super) holder: Option<usize>,
    /// Where the chunk is when it was received into a file of its own although the content is
    /// received in place (an endgame copy): copied to its place once the round is over.
    pub(super) copy: Option<std::path::PathBuf>,
}

impl ChunkResult {
    /// A chunk that was already here (or taken as empty): no sender.
    pub(super) fn kept(fetched: Fetched) -> ChunkResult {
        ChunkResult {
            fetched,
            source: None,
            holder: None,
            copy: None,
        }
    }
}

/// One fetch in progress.
pub(super) struct Flight {
    /// Who is asked.
    pub(super) holder: usize,
    /// Since when.
    pub(super) started: Instant,
    /// Cuts it off when another copy wins, or on Ctrl-C.
    pub(super) handle: Arc<CancelHandle>,
    /// It writes the chunk at its place in the file being received, so it can be split (an
    /// endgame copy into a file of its own cannot).
    pub(super) in_file: bool,
}

impl Flight {
    /// A fetch from `holder` starting now.
    pub(super) fn start(holder: usize, in_file: bool) -> Flight {
        Flight {
            holder,
            started: Instant::now(),
            handle: Arc::new(CancelHandle::default()),
            in_file,
        }
    }
}

/// A piece of a chunk received in place, handed to another holder than the one whose transfer
/// started the chunk (see `workers::FetchContext::steal`).
pub(super) struct Piece {
    /// Where in the chunk it starts.
    pub(super) start: u64,
    /// The transfer fetching it (its `end` says where it stops).
    pub(super) handle: Arc<CancelHandle>,
    /// How it ended: `None` while in flight.
    pub(super) received: Option<bool>,
}

impl Piece {
    /// Where in the chunk it ends (moved earlier when it is split again).
    pub(super) fn end(&self, chunk_len: u64) -> u64 {
        self.handle.end().min(chunk_len)
    }
}

/// The state of the five chunks, shared by the workers.
#[derive(Default)]
pub(super) struct Board {
    /// The copy that won, per chunk.
    pub(super) results: [Option<ChunkResult>; CHUNKS_PER_FILE],
    /// Fetches in progress, per chunk.
    pub(super) flights: [Vec<Flight>; CHUNKS_PER_FILE],
    /// Holders that failed each chunk during this download.
    pub(super) failed: [HashSet<usize>; CHUNKS_PER_FILE],
    /// Pieces of each chunk handed to other holders.
    pub(super) pieces: [Vec<Piece>; CHUNKS_PER_FILE],
    /// Chunks received in pieces that did not match: fetched whole from then on, so that a
    /// holder sending wrong pieces, which cannot be told from the others, costs one fetch.
    pub(super) unsplit: [bool; CHUNKS_PER_FILE],
    /// Per holder: its rate in bytes per second over its last finished transfer.
    pub(super) rates: std::collections::HashMap<usize, u64>,
}

impl Board {
    /// The fetches in flight, as far as each got (`holders`: the round's, by index).
    pub(super) fn transfers(&self, holders: &[Holder]) -> Vec<Transfer> {
        (self.flights.iter().zip(1u8..))
            .flat_map(|(flights, index)| {
                flights.iter().map(move |flight| {
                    let (resumed, bytes) = flight.handle.position();
                    Transfer {
                        index,
                        holder: holders[flight.holder].label(),
                        resumed,
                        bytes,
                    }
                })
            })
            .collect()
    }

    /// Whether `holder` is fetching any chunk.
    pub(super) fn is_busy(&self, holder: usize) -> bool {
        self.flights.iter().flatten().any(|f| f.holder == holder)
    }

    /// Ends the flight of `handle` for the chunk at `position`.
    pub(super) fn remove_flight(&mut self, position: usize, handle: &Arc<CancelHandle>) {
        self.flights[position].retain(|f| !Arc::ptr_eq(&f.handle, handle));
    }

    /// Starts a flight for the chunk at `position`, returning its handle; `in_file` when it
    /// writes at the chunk's place in the file being received.
    pub(super) fn add_flight(
        &mut self,
        position: usize,
        holder: usize,
        in_file: bool,
    ) -> Arc<CancelHandle> {
        let flight = Flight::start(holder, in_file);
        let handle = flight.handle.clone();
        self.flights[position].push(flight);
        handle
    }

    /// What the endgame sees: see [`EndgameView::pick`].
    pub(super) fn endgame_view<'a>(
        &self,
        holders: &'a [Holder],
        avoided: Vec<bool>,
        endgame_after: Duration,
    ) -> EndgameView<'a> {
        let delivered = (0..holders.len())
            .map(|h| {
                self.results
                    .iter()
                    .flatten()
                    .filter(|r| r.holder == Some(h))
                    .count()
            })
            .collect();
        EndgameView {
            holders,
            chunks: std::array::from_fn(|p| ChunkState {
                done: self.results[p].is_some(),
                flights: self.flights[p]
                    .iter()
                    .map(|f| (f.holder, f.started.elapsed()))
                    .collect(),
                failed: self.failed[p].clone(),
            }),
            delivered,
            avoided,
            endgame_after,
        }
    }

    /// Takes back the legacy chunks whose lengths break the chunking rule (see
    /// [`short_legacy_chunks`]), marking their senders as failed for them; returns their
    /// positions.
    pub(super) fn take_short_legacy_chunks(
        &mut self,
        names: &[ChunkName; CHUNKS_PER_FILE],
    ) -> Vec<usize> {
        let lens: [u64; CHUNKS_PER_FILE] =
            std::array::from_fn(|i| self.results[i].as_ref().map_or(0, |r| r.fetched.bytes));
        let short = short_legacy_chunks(&lens);
        for &position in &short {
            if let Some(result) = self.results[position].take() {
                log::warn!(
                    "{} from {} has {} bytes, which the chunking rule rules out ({lens:?}); fetching it again",
                    names[position],
                    result.source.as_deref().unwrap_or("?"),
                    result.fetched.bytes
                );
                if let Some(h) = result.holder {
                    self.failed[position].insert(h);
                }
            }
        }
        short
    }
}
