//! The lock of a content being downloaded (`temp/.locks/<name>.lock`, named by the store):
//! one download of a content at a time per peer folder, and no lock file left behind.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Held while a content downloads: a second downloader in the same peer folder refuses. The
/// lock file is removed when the download ends, so `temp/.locks/` does not fill up.
///
/// Removing a lock file is safe only with care: another process may have opened it (and so
/// hold its inode) without having locked it yet. Hence the file is removed while still locked,
/// and whoever locks a file checks afterwards that its path still names that very file, else
/// it locked a removed inode and starts over.
#[derive(Debug)]
pub struct ContentLock {
    file: File,
    path: PathBuf,
}

/// How many times a lock is tried again after finding its file removed under it: each retry
/// means another run ended in between, so a handful is plenty.
const LOCK_RETRIES: usize = 16;

/// What locking an opened lock file gave.
#[derive(Debug)]
pub(super) enum Taken {
    /// The lock is ours.
    Locked(ContentLock),
    /// Another process holds it.
    Busy,
    /// The file was removed (or replaced) before the lock was ours: open the path again.
    Removed,
}

impl ContentLock {
    /// Locks the file at `path`, creating it: `None` when another process holds it.
    pub(super) fn acquire(path: &Path) -> io::Result<Option<ContentLock>> {
        for _ in 0..LOCK_RETRIES {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            match ContentLock::take(file, path) {
                Taken::Locked(lock) => return Ok(Some(lock)),
                Taken::Busy => return Ok(None),
                Taken::Removed => {}
            }
        }
        Ok(None)
    }

    /// Locks `file`, opened from `path`.
    pub(super) fn take(file: File, path: &Path) -> Taken {
        if fs2::FileExt::try_lock_exclusive(&file).is_err() {
            return Taken::Busy;
        }
        let same = match (file.metadata(), fs::metadata(path)) {
            (Ok(locked), Ok(named)) => same_file(&locked, &named),
            _ => false,
        };
        if !same {
            // Not ours to remove: unlock by dropping, and let the caller start over.
            return Taken::Removed;
        }
        Taken::Locked(ContentLock {
            file,
            path: path.to_owned(),
        })
    }
}

impl Drop for ContentLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// Whether two metadata describe one file (device and inode).
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}
