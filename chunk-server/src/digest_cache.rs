//! Digests of chunk files that no manifest describes, computed once per version of the file.
//!
//! An extended chunk answer carries the chunk's SHA-256. For a chunk split here or downloaded
//! with a manifest, the manifest has it. A chunk without one (a legacy download still in
//! progress, say) must be hashed, and hashing a 300 MB chunk on every request would let any
//! client keep a core and the disk busy at will. So the digest is remembered for that version
//! of the file, identified by what the file system says of the opened file: device, inode,
//! length, modification and change times. Chunk files only ever appear by rename (a new inode),
//! and any write changes the times, so a remembered digest never describes other bytes.
//!
//! One file is hashed at a time: requests arriving meanwhile wait, then find the digest
//! remembered instead of hashing the same file again. A hash stops when shutdown is asked.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use shared::digest::Digest;
use shared::shutdown::Shutdown;

/// Most file versions remembered; past this, the memory is cleared (each entry is ~100 bytes,
/// and a store rarely holds that many chunks without a manifest).
const MAX_ENTRIES: usize = 4096;

/// What identifies one version of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileVersion {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

impl FileVersion {
    #[cfg(unix)]
    fn of(meta: &Metadata) -> FileVersion {
        use std::os::unix::fs::MetadataExt;
        FileVersion {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(meta: &Metadata) -> FileVersion {
        FileVersion {
            device: 0,
            inode: 0,
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (0, 0),
        }
    }
}

/// The remembered digests; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct DigestCache {
    known: Mutex<HashMap<FileVersion, Digest>>,
    /// Held while hashing, so that one file is never hashed twice at once.
    hashing: Mutex<()>,
}

impl DigestCache {
    /// The SHA-256 of `file`, whose metadata is `meta`, read from its start. Hashes it only if
    /// this version of the file was not hashed before. The file's position afterwards is
    /// unspecified: the caller seeks.
    ///
    /// # Errors
    /// A read error, or [`io::ErrorKind::Interrupted`] when shutdown stopped the hash.
    pub(crate) fn digest_of(
        &self,
        file: &mut File,
        meta: &Metadata,
        shutdown: &Shutdown,
    ) -> io::Result<Digest> {
        let version = FileVersion::of(meta);
        if let Some(digest) = self.lookup(&version) {
            return Ok(digest);
        }
        let _hashing = self.hashing.lock().unwrap_or_else(PoisonError::into_inner);
        // Another request may have hashed it while this one waited.
        if let Some(digest) = self.lookup(&version) {
            return Ok(digest);
        }
        let (digest, _) = Digest::of_reader(&mut StopOnShutdown {
            inner: file,
            shutdown,
        })?;
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_ENTRIES {
            known.clear();
        }
        known.insert(version, digest);
        Ok(digest)
    }

    fn lookup(&self, version: &FileVersion) -> Option<Digest> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(version)
            .copied()
    }
}

/// A reader that fails once shutdown is asked, so a long hash does not hold up the exit.
struct StopOnShutdown<'a, R> {
    inner: R,
    shutdown: &'a Shutdown,
}

impl<R: Read> Read for StopOnShutdown<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shutdown.is_triggered() {
            // `Other`, not `Interrupted`: readers retry an interrupted read.
            return Err(io::Error::other("stopped: the server is shutting down"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn a_version_is_hashed_once_and_a_new_version_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c_1");
        fs::write(&path, b"first bytes").unwrap();
        let cache = DigestCache::default();
        let shutdown = Shutdown::new();
        let digest = |cache: &DigestCache| {
            let mut file = File::open(&path).unwrap();
            let meta = file.metadata().unwrap();
            cache.digest_of(&mut file, &meta, &shutdown).unwrap()
        };
        assert_eq!(digest(&cache), Digest::of(b"first bytes"));
        assert_eq!(digest(&cache), Digest::of(b"first bytes"));
        assert_eq!(cache.known.lock().unwrap().len(), 1);

        // Replaced by rename, as every chunk file is: a new inode, a new digest.
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, b"second bytes").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(digest(&cache), Digest::of(b"second bytes"));

        // Rewritten in place with the same length: the times change, so it is hashed again.
        let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(b"SECOND").unwrap();
        drop(file);
        assert_eq!(digest(&cache), Digest::of(b"SECOND bytes"));
    }

    #[test]
    fn shutdown_stops_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c_1");
        fs::write(&path, b"bytes").unwrap();
        let cache = DigestCache::default();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let mut file = File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        assert!(cache.digest_of(&mut file, &meta, &shutdown).is_err());
        assert!(cache.known.lock().unwrap().is_empty());
    }
}
