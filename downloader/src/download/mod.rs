//! Downloading one content: from many holders at once, checked chunk by chunk and as a whole.
//!
//! 1. Our peers' contents have a digest: the manifest (chunk hashes) is taken from the store
//!    when we already have it, else asked of the holders and checked (`manifest.rs`).
//! 2. Chunks go to the chunk store (`temp/`) so this peer serves them once verified, or to a
//!    private folder when the store holds another content of that name (`placement.rs`).
//! 3. The five chunks are fetched in parallel (`workers.rs`), each from the least-loaded holder
//!    that has it, falling back to the others (`plan.rs`); a chunk with a wrong hash is
//!    discarded and its sender avoided, a holder that trickles is abandoned for another, chunks
//!    already present are kept and a chunk interrupted midway is continued. When a worker is
//!    done while other chunks are still in flight, it asks an idle holder for one of them too
//!    (endgame), so one slow peer cannot hold the download at 98 %.
//! 4. The file is assembled in `temp/.incoming/`, its SHA-256 checked, and only then moved into
//!    `downloads/` (`assemble.rs`): a file there is complete, or absent. A manifest whose file
//!    does not match is rolled back and another asked for (`round.rs`).
//!
//! One download of a content runs at a time per peer folder (the store's content lock), and
//! the one holding it cleans up what a killed run left. Each download logs one `download` event.

mod assemble;
mod board;
mod config;
mod error;
mod manifest;
mod placement;
mod plan;
mod progress;
mod round;
mod workers;

use std::fs;

use shared::chunk::ChunkName;
use shared::events::{Event, Outcome as LogOutcome};
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, StoreError};

pub use config::Config;
pub use error::DownloadError;
pub use plan::{plan_sources, short_legacy_chunks};
pub use progress::{Outcome, Progress};

use crate::catalog::Target;
use error::io_error;
use round::Round;

/// Downloads `target` into the peer folder's `downloads/`, and logs the `download` event.
///
/// # Errors
/// [`DownloadError`]; chunks already received stay in the store for the next attempt.
pub fn download(
    config: &Config,
    target: &Target,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, DownloadError> {
    let result = try_download(config, target, cancel, on_progress);
    let outcome = match &result {
        Ok(_) => LogOutcome::Ok,
        // Another downloader is at it: this one did nothing, that one logs.
        Err(DownloadError::Busy { .. }) => return result,
        Err(DownloadError::Cancelled) => LogOutcome::Cancelled,
        Err(_) => LogOutcome::Failed,
    };
    let done = result.as_ref().ok();
    let event = Event::new("download")
        .with("content", &target.name)
        .with("bytes", done.map_or(0, |o| o.size))
        .with(
            "sha256",
            done.map_or("-".to_owned(), |o| o.sha256.to_string()),
        )
        .with("outcome", outcome)
        .with(
            "verified",
            if done.is_some_and(|o| o.verified) {
                "yes"
            } else {
                "no"
            },
        )
        .with(
            "path",
            done.map_or("-".into(), |o| o.path.display().to_string()),
        );
    log::info!("{event}");
    result
}

fn try_download(
    config: &Config,
    target: &Target,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, DownloadError> {
    let names = ChunkName::all_of(&target.name)?;
    let store = ChunkStore::open(config.dir.temp())?;
    let downloads = config.dir.downloads();
    fs::create_dir_all(&downloads).map_err(io_error("create", &downloads))?;
    let _lock = store.lock_content(&target.name).map_err(|e| match e {
        StoreError::Locked { content } => DownloadError::Busy { name: content },
        e => e.into(),
    })?;
    store.clean_leftovers(&target.name);
    on_progress(&Progress::Started {
        holders: target.holders.len(),
        verified: target.sha256.is_some(),
    });
    let max = config.net.limits.max_size;
    if let Some(size) = target.size.filter(|&size| size > max) {
        let name = target.name.clone();
        return Err(DownloadError::TooLarge { name, size, max });
    }
    let round = Round {
        config,
        target,
        names: &names,
        store: &store,
        cancel,
    };
    match target.sha256 {
        Some(digest) => round.with_manifests(digest, on_progress),
        None => round.run(target, None, on_progress),
    }
}
