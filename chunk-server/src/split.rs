//! Splitting one shared file into the chunk store: five chunks and a manifest with origin
//! [`Origin::Shared`].
//!
//! [`split_file`] streams the file once through a fixed buffer, writing each chunk to the
//! store's `.incoming/` folder ([`ChunkStore::split_path`]) while hashing it and the whole file.
//! Chunks are renamed into place only when the file did not change during the split, so the
//! store never holds a mix of two versions under one manifest. Memory use does not depend on
//! the file's size. What a killed split leaves behind is removed at the next start
//! ([`remove_leftovers`]).
//!
//! Which files to split, and when, is `share`'s business; this module splits what it is given.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use shared::chunk::{chunk_ranges, ChunkName, NameError};
use shared::digest::{Digest, Hasher, HashingWriter};
use shared::protocol::Manifest;
use shared::shutdown::Shutdown;
use shared::store::{remove_if_exists, ChunkStore, Origin, StoreError, StoredManifest};
use shared::CHUNKS_PER_FILE;

/// Size of the one buffer a split reads through: large enough for few system calls, small
/// enough that splitting a file of any size uses a fixed, small amount of memory.
const SPLIT_BUFFER: usize = 256 * 1024;

/// Why a shared file could not be split into the store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SplitError {
    /// The file name is not a valid content name.
    #[error("invalid content name: {0}")]
    Name(#[from] NameError),
    /// The shared file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The shared file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A chunk could not be written to `.incoming/`.
    #[error("cannot write {path}: {source}")]
    WriteChunk {
        /// The partial chunk file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A finished chunk could not be renamed into place.
    #[error("cannot move {from} to {to}: {source}")]
    Install {
        /// The partial chunk file.
        from: PathBuf,
        /// Its final name.
        to: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The store refused the manifest.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a call to [`split_file`] achieved.
#[derive(Debug)]
pub(crate) enum SplitOutcome {
    /// The five chunks and the manifest are in the store.
    Done(Box<Manifest>),
    /// The file changed (or vanished) while being read; nothing was installed.
    Changed,
    /// Shutdown was asked; nothing was installed.
    Interrupted,
}

/// The temporary chunk files of one split; whatever is left of them is removed on drop, so a
/// failed or abandoned split leaves nothing behind.
struct PartFiles(Vec<PathBuf>);

impl Drop for PartFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            // After a successful rename the path no longer exists, which is fine.
            let _ = remove_if_exists(path);
        }
    }
}

/// Splits the file at `path` into the five chunks of content `name` and records its manifest
/// with origin [`Origin::Shared`]. Any previous content of that name is replaced.
///
/// # Errors
/// [`SplitError`] when the file cannot be read or the store written; the store then holds no
/// partial chunk of this split.
pub(crate) fn split_file(
    store: &ChunkStore,
    name: &str,
    path: &Path,
    shutdown: &Shutdown,
) -> Result<SplitOutcome, SplitError> {
    let started = Instant::now();
    let names = ChunkName::all_of(name)?;
    let read_err = |source| SplitError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let before = file.metadata().map_err(read_err)?;
    let size = before.len();
    let modified = before.modified().map_err(read_err)?;

    let parts = PartFiles(names.iter().map(|n| store.split_path(n)).collect());
    let mut whole = Hasher::default();
    let mut buf = vec![0u8; SPLIT_BUFFER];
    let mut digests = [Digest::of(b""); CHUNKS_PER_FILE];
    for ((range, part), digest) in chunk_ranges(size).iter().zip(&parts.0).zip(&mut digests) {
        let write_err = |source| SplitError::WriteChunk {
            path: part.clone(),
            source,
        };
        let mut out = HashingWriter::new(File::create(part).map_err(write_err)?);
        let mut remaining = range.len();
        while remaining > 0 {
            if shutdown.is_triggered() {
                return Ok(SplitOutcome::Interrupted);
            }
            let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
            let n = match file.read(&mut buf[..want]) {
                // The file shrank under us.
                Ok(0) => return Ok(SplitOutcome::Changed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            whole.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(write_err)?;
            remaining -= n as u64;
        }
        out.flush().map_err(write_err)?;
        *digest = out.finish().1;
    }

    match fs::metadata(path) {
        Ok(after) if after.len() == size && after.modified().ok() == Some(modified) => {}
        Ok(_) => return Ok(SplitOutcome::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SplitOutcome::Changed),
        Err(e) => return Err(read_err(e)),
    }

    // Old chunks go first, then the new manifest, then the new chunks: whenever the announcer
    // looks, every chunk it finds is described by the manifest beside it, so no peer ever sees
    // these chunks announced without their digest, or with the digest of other bytes.
    store.remove_content(name)?;
    let manifest = Manifest {
        name: name.to_owned(),
        size,
        sha256: whole.finish(),
        chunks: digests,
    };
    store.save_manifest(&StoredManifest {
        manifest: manifest.clone(),
        origin: Origin::Shared {
            path: path.to_owned(),
            modified,
        },
    })?;
    for (part, chunk) in parts.0.iter().zip(&names) {
        let to = store.chunk_path(chunk);
        fs::rename(part, &to).map_err(|source| SplitError::Install {
            from: part.clone(),
            to,
            source,
        })?;
    }
    log::info!(
        "split {name} ({size} bytes) into {CHUNKS_PER_FILE} chunks in {} ms",
        started.elapsed().as_millis()
    );
    Ok(SplitOutcome::Done(Box::new(manifest)))
}

/// Removes what a chunk server killed mid-split left behind
/// ([`ChunkStore::is_split_leftover`]). Called once at start, before the first scan, so nothing
/// removed is in use (one chunk server per peer folder).
pub(crate) fn remove_leftovers(store: &ChunkStore) {
    for dir in [store.incoming_dir(), store.manifests_dir()] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if !store.is_split_leftover(&path) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => log::info!("removed leftover {}", path.display()),
                Err(e) => log::warn!("cannot remove leftover {}: {e}", path.display()),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A peer folder with a store in `temp/` and an empty share folder `share/`.
    pub(crate) struct Fixture {
        _dir: tempfile::TempDir,
        pub(crate) root: PathBuf,
        pub(crate) store: ChunkStore,
    }

    pub(crate) fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let store = ChunkStore::open(root.join("temp")).unwrap();
        fs::create_dir(root.join("share")).unwrap();
        Fixture {
            _dir: dir,
            root,
            store,
        }
    }

    /// `len` bytes that differ from chunk to chunk.
    pub(crate) fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 31 + i / 251) % 256).unwrap())
            .collect()
    }

    fn chunk_files(store: &ChunkStore, name: &str) -> Vec<Vec<u8>> {
        ChunkName::all_of(name)
            .unwrap()
            .iter()
            .map(|c| fs::read(store.chunk_path(c)).unwrap())
            .collect()
    }

    /// Asserts that the store holds exactly `data` as content `name`, with a true manifest.
    pub(crate) fn assert_stored(store: &ChunkStore, name: &str, data: &[u8]) {
        let chunks = chunk_files(store, name);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks.concat(), data, "chunks of {name} do not reassemble");
        let stored = store.load_manifest(name).unwrap().expect("manifest saved");
        assert_eq!(stored.manifest.name, name);
        assert_eq!(stored.manifest.size, data.len() as u64);
        assert_eq!(stored.manifest.sha256, Digest::of(data));
        for (i, (chunk, range)) in chunks
            .iter()
            .zip(chunk_ranges(data.len() as u64))
            .enumerate()
        {
            assert_eq!(chunk.len() as u64, range.len(), "length of chunk {}", i + 1);
            assert_eq!(
                stored.manifest.chunks[i],
                Digest::of(chunk),
                "digest {}",
                i + 1
            );
        }
        assert!(matches!(stored.origin, Origin::Shared { .. }));
        assert_eq!(
            fs::read_dir(store.incoming_dir()).unwrap().count(),
            0,
            "partial chunks left behind"
        );
    }

    /// Changes a file's content and makes sure its modification time moves too, even on file
    /// systems with coarse timestamps.
    pub(crate) fn rewrite(path: &Path, data: &[u8]) {
        let old = fs::metadata(path).unwrap().modified().unwrap();
        fs::write(path, data).unwrap();
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(old + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn split_file_records_the_shared_origin() {
        let f = fixture();
        let path = f.root.join("share").join("a.txt");
        fs::write(&path, b"hello world").unwrap();
        let SplitOutcome::Done(manifest) =
            split_file(&f.store, "a.txt", &path, &Shutdown::new()).unwrap()
        else {
            panic!("not split");
        };
        assert_eq!(manifest.sha256, Digest::of(b"hello world"));
        let stored = f.store.load_manifest("a.txt").unwrap().unwrap();
        assert_eq!(
            stored.origin,
            Origin::Shared {
                path: path.clone(),
                modified: fs::metadata(&path).unwrap().modified().unwrap()
            }
        );
    }

    #[test]
    fn leftovers_of_a_killed_split_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let incoming = store.incoming_dir();
        fs::write(incoming.join("big.iso_3.split"), b"half").unwrap();
        fs::write(incoming.join("big.iso_3.part"), b"a download's").unwrap();
        let manifests = store.manifests_dir();
        fs::write(manifests.join(".big.iso.json.4242.tmp"), b"{").unwrap();
        fs::write(manifests.join("keep.json"), b"{}").unwrap();
        remove_leftovers(&store);
        assert!(!incoming.join("big.iso_3.split").exists());
        assert!(incoming.join("big.iso_3.part").exists());
        assert!(!manifests.join(".big.iso.json.4242.tmp").exists());
        assert!(manifests.join("keep.json").exists());
    }

    #[test]
    fn interrupted_split_installs_nothing() {
        let f = fixture();
        let path = f.root.join("share").join("big.bin");
        fs::write(&path, pattern(100_000)).unwrap();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        assert!(matches!(
            split_file(&f.store, "big.bin", &path, &shutdown).unwrap(),
            SplitOutcome::Interrupted
        ));
        assert_eq!(f.store.list_chunks().unwrap(), []);
        assert_eq!(f.store.load_manifest("big.bin").unwrap(), None);
        assert_eq!(fs::read_dir(f.store.incoming_dir()).unwrap().count(), 0);
    }
}
