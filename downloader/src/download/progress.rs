//! What a download tells its caller: [`Progress`] while it runs, the [`Outcome`] when the file
//! is in `downloads/`. The wording for the user is the caller's (`prompt`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use shared::chunk::ChunkName;
use shared::digest::Digest;

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
    },
    /// A chunk arrived.
    ChunkDone {
        /// Its index.
        index: u8,
        /// `user@address` of its sender.
        holder: String,
        /// Its size.
        bytes: u64,
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
    /// No online holder could deliver this chunk.
    ChunkUnavailable {
        /// The chunk.
        chunk: ChunkName,
    },
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
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
    /// `user@address` of every holder that sent a chunk.
    pub sources: BTreeSet<String>,
}
