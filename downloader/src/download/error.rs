//! Why a download did not produce a file.

use std::io;
use std::path::{Path, PathBuf};

use shared::chunk::{ChunkName, NameError};
use shared::digest::Digest;
use shared::store::StoreError;
use shared::CHUNKS_PER_FILE;

/// Why a download did not produce a file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Some chunks could not be had from any online holder.
    #[error("{} of {CHUNKS_PER_FILE} chunks could not be downloaded from online peers; what did arrive is kept in temp/, and running the same command again continues from there", missing.len())]
    Incomplete {
        /// The chunks missing.
        missing: Vec<ChunkName>,
    },
    /// The assembled file does not have the announced digest.
    #[error("the assembled file has SHA-256 {actual}, not the announced {expected}; discarded")]
    WholeFileMismatch {
        /// Announced digest.
        expected: Digest,
        /// Digest of what was assembled.
        actual: Digest,
    },
    /// The content name cannot be used as a file name here.
    #[error("invalid content name: {0}")]
    Name(#[from] NameError),
    /// The chunk store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A local file operation failed (a full disk, for instance).
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another downloader is fetching this content in the same peer folder.
    #[error("another downloader is already fetching {name:?} in this peer folder; try again when it has finished")]
    Busy {
        /// The content.
        name: String,
    },
    /// The content is larger than the downloader accepts.
    #[error(
        "{name:?} is announced as {size} bytes, more than the {max} bytes accepted (--max-size)"
    )]
    TooLarge {
        /// The content.
        name: String,
        /// Its announced size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Ctrl-C.
    #[error("download cancelled; the chunks and partial chunks received so far are kept: run the same command again to resume")]
    Cancelled,
}

impl From<StoreError> for DownloadError {
    /// The store's lock held by another process means another downloader is at this content.
    fn from(error: StoreError) -> DownloadError {
        match error {
            StoreError::Locked { content } => DownloadError::Busy { name: content },
            other => DownloadError::Store(other),
        }
    }
}

/// A [`DownloadError::Io`] maker for `map_err`: `io_error("create", &path)`.
pub(super) fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
