//! What a download tells its caller: [`Progress`] while it runs, a [`DownloadedFile`] once the
//! file is in `downloads/`, and the `download` event the log keeps of it (its outcome in the
//! shared `events::Outcome` words). The wording for the user is the caller's (`wording`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::events::{self, DownloadEvent, Event};

use super::error::DownloadError;

/// What happens during a download, for the user interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The download starts.
    Started {
        /// How many holders may be asked.
        holders: usize,
        /// Whether chunks will be checked against a manifest.
        verified: bool,
    },
    /// A chunk already present and correct is kept.
    ChunkKept {
        /// Its index.
        index: u8,
        /// Its size.
        bytes: u64,
    },
    /// The transfers in flight, a few times a second while any runs.
    Transfers(Vec<Transfer>),
    /// A chunk arrived.
    ChunkDone {
        /// Its index.
        index: u8,
        /// `user@address` of its sender.
        holder: String,
        /// Its size.
        bytes: u64,
        /// Of which were already here, in a part file continued.
        resumed: u64,
        /// How long the transfer took.
        millis: u128,
        /// Whether it matched the manifest.
        verified: bool,
    },
    /// One holder failed to deliver a chunk; others may still.
    AttemptFailed {
        /// The chunk's index.
        index: u8,
        /// `user@address` of the holder.
        holder: String,
        /// Why.
        reason: String,
    },
    /// A holder could not be used for this download at all (no manifest from it).
    HolderFailed {
        /// `user@address` of the holder.
        holder: String,
        /// Why.
        reason: String,
    },
    /// No online holder could deliver this chunk.
    ChunkUnavailable {
        /// The chunk.
        chunk: ChunkName,
    },
}

/// One chunk being fetched from one holder, as far as it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The chunk's index.
    pub index: u8,
    /// `user@address` of the holder.
    pub holder: String,
    /// Bytes of the chunk already here when this transfer started (a part file continued).
    pub resumed: u64,
    /// Bytes of the chunk so far, those resumed included.
    pub bytes: u64,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    /// Where the file is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Digest,
    /// Whether every chunk and the whole file were checked against the content's digest.
    pub verified: bool,
    /// Whether an identical file was already in `downloads/`.
    pub already_present: bool,
    /// Whether the file was checked in one pass: every byte hashed once, as it arrived, each
    /// chunk a proven step of the file's SHA-256 (manifest midstates), the file not read back.
    pub hashed_once: bool,
    /// `user@address` of every holder that sent a chunk.
    pub sources: BTreeSet<String>,
}

/// The `download` event of a download of `content` that ended with `result`, logged once per
/// download and read back by `history`; `None` when another downloader held the content, so
/// this one did nothing.
pub(super) fn download_event(
    content: &str,
    result: &Result<DownloadedFile, DownloadError>,
) -> Option<Event> {
    let outcome = match result {
        Ok(_) => events::Outcome::Ok,
        Err(DownloadError::Busy { .. }) => return None,
        Err(DownloadError::Cancelled) => events::Outcome::Cancelled,
        Err(_) => events::Outcome::Failed,
    };
    let done = result.as_ref().ok();
    let event = DownloadEvent {
        content: content.to_owned(),
        bytes: done.map_or(0, |o| o.size),
        sha256: done.map(|o| o.sha256.to_string()),
        outcome: Some(outcome),
        verified: done.is_some_and(|o| o.verified),
        path: done.map(|o| o.path.display().to_string()),
    };
    Some(event.to_event())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_download_but_a_refused_one_is_one_event() {
        let done = DownloadedFile {
            path: PathBuf::from("/x/downloads/a b"),
            size: 6,
            sha256: Digest::of(b"abcdef"),
            verified: true,
            already_present: false,
            hashed_once: true,
            sources: BTreeSet::new(),
        };
        let event = download_event("a b", &Ok(done)).unwrap();
        assert_eq!(event.outcome(), Some(events::Outcome::Ok));
        assert_eq!(event.get("verified"), Some("yes"));
        assert_eq!(event.get("path"), Some("/x/downloads/a b"));
        let failed = download_event("a", &Err(DownloadError::Incomplete { missing: vec![] }));
        let failed = failed.unwrap();
        assert_eq!(failed.outcome(), Some(events::Outcome::Failed));
        assert_eq!(
            (failed.get("bytes"), failed.get("path")),
            (Some("0"), Some("-"))
        );
        let cancelled = download_event("a", &Err(DownloadError::Cancelled)).unwrap();
        assert_eq!(cancelled.outcome(), Some(events::Outcome::Cancelled));
        let busy = DownloadError::Busy { name: "a".into() };
        assert!(download_event("a", &Err(busy)).is_none());
    }
}
