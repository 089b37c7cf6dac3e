//! Downloading one content from many holders at once, checked chunk by chunk and as a whole:
//! the manifest from the store or the holders (`manifest`), chunks into the store or a private
//! folder (`placement`), five workers (`workers`) following a pure plan (`plan`: who to ask,
//! endgame) over a shared `board`, then the file assembled, checked and moved into
//! `downloads/` (`assemble`); a manifest whose file does not match is rolled back and another
//! tried (`round`). A file in `downloads/` is complete, or absent.
//!
//! One download of a content runs at a time per peer folder (the store's content lock); the
//! one holding it cleans up what a killed run left. Each download logs one `download` event.

mod assemble;
mod board;
mod config;
mod error;
mod fetch_log;
mod manifest;
mod placement;
mod plan;
mod progress;
mod receiving;
mod round;
mod workers;

use std::fs;

use shared::chunk::ChunkName;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;

pub(crate) use assemble::create_folders_within;
pub use config::Config;
pub use error::DownloadError;
pub use progress::{DownloadedFile, Progress, Transfer};

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
) -> Result<DownloadedFile, DownloadError> {
    let result = try_download(config, target, cancel, on_progress);
    if let Some(event) = progress::download_event(&target.name, &result) {
        log::info!("{event}");
    }
    result
}

fn try_download(
    config: &Config,
    target: &Target,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<DownloadedFile, DownloadError> {
    let names = ChunkName::all_of(&target.name)?;
    let store = ChunkStore::open(config.dir.temp())?;
    let downloads = config.dir.downloads();
    fs::create_dir_all(&downloads).map_err(io_error("create", &downloads))?;
    let _lock = store.lock_content(&target.name)?;
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
    let (names, store) = (&names, &store);
    let round = Round {
        config,
        target,
        names,
        store,
        cancel,
    };
    match target.sha256 {
        Some(digest) => round.with_manifests(digest, on_progress),
        None => round.run(target, None, on_progress),
    }
}
