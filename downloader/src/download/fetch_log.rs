//! The `fetched` event: one line of `client.log` per attempt to fetch a chunk, whatever its
//! outcome, which `history` reads back to tell where each chunk came from.

use shared::chunk::ChunkName;
use shared::events::{Event, Outcome};

use crate::catalog::Holder;
use crate::fetch::{FetchError, Fetched};
use crate::format;

/// The `fetched` event of one attempt, up to its outcome.
pub(super) struct FetchedEvent {
    event: Event,
    verified: bool,
}

impl FetchedEvent {
    /// What the attempt at `chunk` of `content` from `holder` moved (`fetched`) in `millis`.
    pub(super) fn new(
        content: &str,
        chunk: &ChunkName,
        holder: &Holder,
        fetched: &Fetched,
        millis: u128,
    ) -> FetchedEvent {
        let sent = fetched.bytes - fetched.resumed_from;
        let mut event = Event::new("fetched")
            .with("content", content)
            .with("chunk", chunk.index())
            .with("source", holder.addr)
            .with("user", &holder.user)
            .with("bytes", fetched.bytes);
        if fetched.resumed_from > 0 {
            event = event.with("resumed_from", fetched.resumed_from);
        }
        let rate = format!("{:.1}", format::rate_mbps(sent, millis));
        FetchedEvent {
            event: event.with("ms", millis).with("rate_mbps", rate),
            verified: fetched.verified,
        }
    }

    /// Logs a kept chunk.
    pub(super) fn ok(self) {
        log::info!("{}", self.finish(Outcome::Ok));
    }

    /// Logs a failed (or superseded) attempt, a warning with its reason.
    pub(super) fn failed(self, outcome: Outcome, error: &FetchError) {
        log::warn!("{}", self.finish(outcome).with("reason", error));
    }

    fn finish(self, outcome: Outcome) -> Event {
        let verified = if self.verified { "yes" } else { "no" };
        self.event
            .with("outcome", outcome)
            .with("verified", verified)
    }
}
