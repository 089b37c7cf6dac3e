//! The lock of a content being downloaded (`temp/.locks/<name>.lock`): one download of a
//! content at a time per peer folder.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{io_err, ChunkStore, StoreError, LOCKS};

impl ChunkStore {
    /// Locks `content` for this process's download of it, until the returned guard is dropped.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds the lock; [`StoreError::Io`] when the
    /// lock file cannot be created.
    pub fn lock_content(&self, content: &str) -> Result<ContentLock, StoreError> {
        let dir = self.root.join(LOCKS);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = self.lock_path(content);
        for _ in 0..LOCK_RETRIES {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err("create", &path))?;
            if let Some(lock) = ContentLock::take(file, &path, content)? {
                return Ok(lock);
            }
        }
        Err(StoreError::Locked {
            content: content.to_owned(),
        })
    }
}

/// Held while a content downloads: a second downloader in the same peer folder refuses. The
/// lock file is removed when the download ends, so `temp/.locks/` does not fill up.
///
/// Removing a lock file is safe only with care: another process may have opened it (and so
/// hold its inode) without having locked it yet. Hence the file is removed while still locked,
/// and whoever locks a file checks afterwards that its path still names that very file, else
/// it locked a removed inode and starts over ([`ContentLock::take`]).
#[derive(Debug)]
pub struct ContentLock {
    file: File,
    path: PathBuf,
}

/// How many times a lock is tried again after finding its file removed under it: each retry
/// means another run ended in between, so a handful is plenty.
const LOCK_RETRIES: usize = 16;

impl ContentLock {
    /// Locks `file`, opened from `path`, the lock file of `content`: `Ok(None)` when the file
    /// was removed (or replaced) before the lock was ours, so the caller must open `path` again.
    fn take(file: File, path: &Path, content: &str) -> Result<Option<ContentLock>, StoreError> {
        if fs2::FileExt::try_lock_exclusive(&file).is_err() {
            return Err(StoreError::Locked {
                content: content.to_owned(),
            });
        }
        let same = match (file.metadata(), fs::metadata(path)) {
            (Ok(locked), Ok(named)) => same_file(&locked, &named),
            _ => false,
        };
        if !same {
            // Not ours to remove: unlock by dropping, and let the caller start over.
            return Ok(None);
        }
        Ok(Some(ContentLock {
            file,
            path: path.to_owned(),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_are_removed_and_a_removed_one_is_never_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let locks = store.root().join(".locks");
        let path = store.lock_path("a.b");
        let first = store.lock_content("a.b").unwrap();
        assert!(path.exists());
        assert!(matches!(
            store.lock_content("a.b"),
            Err(StoreError::Locked { content }) if content == "a.b"
        ));
        // Another run opened the file, and is about to lock it, when the first one ends.
        let late = fs::File::open(&path).unwrap();
        drop(first);
        assert!(
            !path.exists(),
            "the lock file is removed when the lock ends"
        );
        // A third run takes the lock under a new file...
        let third = store.lock_content("a.b").unwrap();
        // ... and the late one, locking the removed file, sees that it is not the lock.
        assert!(ContentLock::take(late, &path, "a.b").unwrap().is_none());
        assert!(
            path.exists(),
            "the late run must not remove the third run's file"
        );
        assert!(matches!(
            store.lock_content("a.b"),
            Err(StoreError::Locked { .. })
        ));
        drop(third);
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 0);
    }
}
