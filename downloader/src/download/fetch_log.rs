//! The `fetched` event: one line of `client.log` per attempt to fetch a chunk, whatever its
//! outcome, which `history` reads back to tell where each chunk came from.

use shared::chunk::ChunkName;
use shared::events::{FetchedEvent, Outcome};

use crate::catalog::Holder;
use crate::fetch::{FetchError, Fetched};
use crate::format;

/// The `fetched` event of one attempt, up to its outcome.
pub(super) struct FetchedLog(FetchedEvent);

impl FetchedLog {
    /// What the attempt at `chunk` of `content` from `holder` moved (`fetched`) in `millis`.
    pub(super) fn new(
        content: &str,
        chunk: &ChunkName,
        holder: &Holder,
        fetched: &Fetched,
        millis: u128,
    ) -> FetchedLog {
        let sent = fetched.bytes - fetched.resumed_from;
        FetchedLog(FetchedEvent {
            content: content.to_owned(),
            chunk: chunk.index(),
            source: holder.addr.to_string(),
            user: holder.user.clone(),
            bytes: fetched.bytes,
            resumed_from: fetched.resumed_from,
            ms: millis,
            rate_mbps: format::rate_mbps(sent, millis),
            outcome: Outcome::Ok,
            verified: fetched.verified,
            reason: None,
        })
    }

    /// Logs a kept chunk.
    pub(super) fn ok(self) {
        log::info!("{}", self.0.to_event());
    }

    /// Logs a failed (or superseded) attempt with its reason: to `client.log` only (info), as
    /// the user reads a summary of the failures instead (`wording::failure_summary`).
    pub(super) fn failed(mut self, outcome: Outcome, error: &FetchError) {
        self.0.outcome = outcome;
        self.0.reason = Some(error.to_string());
        log::info!("{}", self.0.to_event());
    }
}
