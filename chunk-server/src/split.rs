//! Describing one shared file in the chunk store: a manifest with origin [`Origin::Shared`],
//! whose five chunks are byte ranges of the file ([`chunk_ranges`]), served in place. Nothing is
//! copied: "splitting" a file only hashes it.
//!
//! [`split_file`] reads the file once, through a few fixed buffers: this thread hashes each
//! chunk's range while another hashes the whole file from the same buffers, so hashing costs
//! one read of the file and about the time of one SHA-256 over it on two cores. No buffer spans
//! two chunks, so the whole-file hasher also records, for free, where it stands as each of
//! chunks 2 to 5 starts: the manifest's midstates ([`Manifest::states`]). The manifest is
//! recorded only when the file did not change during the read (same size and modification
//! time after as before), so the store never describes a mix of two versions. Memory use does
//! not depend on the file's size. What a killed chunk server left behind is removed at the next
//! start ([`remove_leftovers`]).
//!
//! Which files to describe, and when, is `share`'s business; this module hashes what it is
//! given.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Instant, SystemTime};

use shared::chunk::{chunk_ranges, ChunkName, NameError};
use shared::digest::{Digest, Hasher, Midstate};
use shared::protocol::Manifest;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Origin, StoreError, StoredManifest};
use shared::CHUNKS_PER_FILE;

/// Size of each buffer a hash reads through: large enough for few system calls, small enough
/// that hashing a file of any size uses a fixed, small amount of memory.
const SPLIT_BUFFER: usize = 256 * 1024;

/// Buffers in flight between the reading thread and the whole-file hasher.
const BUFFERS: usize = 4;

/// Why a shared file could not be described in the store.
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
    /// The store refused the manifest.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a call to [`split_file`] achieved.
#[derive(Debug)]
pub(crate) enum SplitOutcome {
    /// The manifest is in the store: the file is served in place.
    Done(Box<Manifest>),
    /// The file changed (or vanished) while being read; nothing was recorded.
    Changed,
    /// Shutdown was asked; nothing was recorded.
    Interrupted,
}

/// What reading the file gave: the five chunk digests, the whole file's and its midstates at
/// chunks 2 to 5, or why not.
enum Hashed {
    Done(Box<WholeFile>),
    Changed,
    Interrupted,
}

/// What hashing a whole file gives, besides the chunk digests.
struct WholeFile {
    chunks: [Digest; CHUNKS_PER_FILE],
    sha256: Digest,
    states: [Midstate; CHUNKS_PER_FILE - 1],
}

/// What the reading thread hands the whole-file hasher, in file order.
enum Piece {
    /// The next bytes of the file.
    Bytes(Vec<u8>),
    /// The next chunk starts here: record where the hash stands.
    ChunkStart,
}

/// Hashes the five chunk ranges of `file` (of `size` bytes) and the whole file, in one read,
/// noting the whole file's midstate as each chunk after the first starts.
fn hash_ranges(file: &mut File, size: u64, shutdown: &Shutdown) -> io::Result<Hashed> {
    thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Piece>(BUFFERS + 1);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = free_tx.send(Vec::with_capacity(SPLIT_BUFFER));
        }
        let whole = scope.spawn(move || {
            let mut whole = Hasher::default();
            let mut states = Vec::with_capacity(CHUNKS_PER_FILE - 1);
            for piece in full_rx {
                match piece {
                    Piece::Bytes(buf) => {
                        whole.update(&buf);
                        // The reader may have stopped early: a buffer nobody takes back is
                        // dropped.
                        let _ = free_tx.send(buf);
                    }
                    Piece::ChunkStart => states.push(whole.midstate()),
                }
            }
            (whole.finish(), states)
        });
        let mut digests = [Digest::of(b""); CHUNKS_PER_FILE];
        for (position, (range, digest)) in chunk_ranges(size).iter().zip(&mut digests).enumerate() {
            // Every buffer ends at or before its chunk's end, so this falls between buffers.
            if position > 0 && full_tx.send(Piece::ChunkStart).is_err() {
                return Err(io::Error::other("the hashing thread stopped"));
            }
            let mut chunk = Hasher::default();
            let mut remaining = range.len();
            while remaining > 0 {
                if shutdown.is_triggered() {
                    return Ok(Hashed::Interrupted);
                }
                let Ok(mut buf) = free_rx.recv() else {
                    return Err(io::Error::other("the hashing thread stopped"));
                };
                let want = usize::try_from(remaining).map_or(SPLIT_BUFFER, |r| r.min(SPLIT_BUFFER));
                buf.resize(want, 0);
                let n = match file.read(&mut buf) {
                    // The file shrank under us.
                    Ok(0) => return Ok(Hashed::Changed),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        buf.clear();
                        let _ = full_tx.send(Piece::Bytes(buf));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                buf.truncate(n);
                chunk.update(&buf);
                remaining -= n as u64;
                if full_tx.send(Piece::Bytes(buf)).is_err() {
                    return Err(io::Error::other("the hashing thread stopped"));
                }
            }
            *digest = chunk.finish();
        }
        drop(full_tx);
        let (sha256, states) = whole
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        let states = states
            .try_into()
            .map_err(|_| io::Error::other("a chunk start was not hashed"))?;
        Ok(Hashed::Done(Box::new(WholeFile {
            chunks: digests,
            sha256,
            states,
        })))
    })
}

/// Hashes the file at `path` as content `name` and records its manifest with origin
/// [`Origin::Shared`], so it is served in place. Any previous content of that name is replaced
/// (and chunk files of it in `temp/`, from a download or an older store, removed).
///
/// # Errors
/// [`SplitError`] when the file cannot be read or the store written.
#[cfg(test)]
pub(crate) fn split_file(
    store: &ChunkStore,
    name: &str,
    path: &Path,
    shutdown: &Shutdown,
) -> Result<SplitOutcome, SplitError> {
    let shared = |path: &Path, modified| Origin::Shared {
        path: path.to_owned(),
        modified,
    };
    split_file_as(store, name, path, &shared, shutdown)
}

/// [`split_file`], recording the origin `origin` makes of the file's path and modification
/// time: [`Origin::Shared`], or [`Origin::Offered`] for a file offered to one user.
///
/// # Errors
/// As [`split_file`].
pub(crate) fn split_file_as(
    store: &ChunkStore,
    name: &str,
    path: &Path,
    origin: &dyn Fn(&Path, SystemTime) -> Origin,
    shutdown: &Shutdown,
) -> Result<SplitOutcome, SplitError> {
    let started = Instant::now();
    ChunkName::all_of(name)?;
    let read_err = |source| SplitError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let before = file.metadata().map_err(read_err)?;
    let size = before.len();
    let modified = before.modified().map_err(read_err)?;

    let hashed = match hash_ranges(&mut file, size, shutdown).map_err(read_err)? {
        Hashed::Done(hashed) => *hashed,
        Hashed::Changed => return Ok(SplitOutcome::Changed),
        Hashed::Interrupted => return Ok(SplitOutcome::Interrupted),
    };

    match fs::metadata(path) {
        Ok(after) if after.len() == size && after.modified().ok() == Some(modified) => {}
        Ok(_) => return Ok(SplitOutcome::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SplitOutcome::Changed),
        Err(e) => return Err(read_err(e)),
    }

    // The new manifest replaces the old one atomically; chunk files of the name go after it.
    // Whenever the announcer looks, what it finds is described by the manifest: while the
    // manifest says "in place", chunk files of that name are never announced.
    let manifest = Manifest {
        name: name.to_owned(),
        size,
        sha256: hashed.sha256,
        chunks: hashed.chunks,
        states: Some(Box::new(hashed.states)),
    };
    store.save_manifest(&StoredManifest {
        manifest: manifest.clone(),
        origin: origin(path, modified),
    })?;
    store.remove_chunk_files(name)?;
    log::info!(
        // "split" as before (scripts read this line): the five chunks are ranges of the file.
        "split {name} ({size} bytes) into {CHUNKS_PER_FILE} chunks in {} ms, served in place",
        started.elapsed().as_millis()
    );
    Ok(SplitOutcome::Done(Box::new(manifest)))
}

/// Removes what a chunk server killed mid-split left behind
/// ([`ChunkStore::is_split_leftover`]: `.split` files of older versions, which copied shared
/// files into the store, and half-written manifests), and the chunk files of contents now
/// served in place ([`ChunkStore::remove_copies_of_in_place`]: the copies an older store
/// holds). Called once at start, before the first scan, so nothing removed is in use (one chunk
/// server per peer folder).
pub(crate) fn remove_leftovers(store: &ChunkStore) {
    for content in store.remove_copies_of_in_place() {
        log::info!("removed the chunk files of {content}: it is served in place");
    }
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

    /// The five chunks of `name` as the store serves them: byte ranges of the file in place.
    pub(crate) fn chunk_files(store: &ChunkStore, name: &str) -> Vec<Vec<u8>> {
        let stored = store.load_manifest(name).unwrap().expect("manifest saved");
        let in_place = stored.in_place().expect("served in place");
        ChunkName::all_of(name)
            .unwrap()
            .iter()
            .map(|c| {
                let mut bytes = Vec::new();
                in_place
                    .open_chunk(c)
                    .unwrap()
                    .read_to_end(&mut bytes)
                    .unwrap();
                bytes
            })
            .collect()
    }

    /// Asserts that the store holds exactly `data` as content `name`, with a true manifest,
    /// served in place: no chunk file of it in `temp/`.
    pub(crate) fn assert_stored(store: &ChunkStore, name: &str, data: &[u8]) {
        let chunks = chunk_files(store, name);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks.concat(), data, "chunks of {name} do not reassemble");
        let stored = store.load_manifest(name).unwrap().expect("manifest saved");
        assert_eq!(stored.manifest.name, name);
        assert_eq!(stored.manifest.size, data.len() as u64);
        assert_eq!(stored.manifest.sha256, Digest::of(data));
        // Midstates included: what a split streams is what the whole file in memory gives.
        assert_eq!(stored.manifest, Manifest::of_bytes(name, data));
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
        assert!(store.chunk_files_of(name).is_empty(), "a copy in temp/");
        assert!(store.chunks_of(name).is_complete());
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
        // A copy of a content served in place, as an older store kept it.
        let path = dir.path().join("shared.bin");
        fs::write(&path, b"shared").unwrap();
        split_file(&store, "shared.bin", &path, &Shutdown::new()).unwrap();
        let copy = store.chunk_path(&ChunkName::parse("shared.bin_1").unwrap());
        fs::write(&copy, b"sh").unwrap();
        // A download in transit keeps its chunk files.
        let transit = store.chunk_path(&ChunkName::parse("transit.bin_2").unwrap());
        fs::write(&transit, b"tr").unwrap();
        remove_leftovers(&store);
        assert!(!copy.exists());
        assert!(transit.exists());
        assert!(!incoming.join("big.iso_3.split").exists());
        assert!(incoming.join("big.iso_3.part").exists());
        assert!(!manifests.join(".big.iso.json.4242.tmp").exists());
        assert!(manifests.join("keep.json").exists());
    }

    #[test]
    fn hashing_reads_the_chunks_of_awkward_sizes_in_one_pass() {
        let f = fixture();
        // Sizes around the buffer, so chunk ends fall inside, on and across buffer ends; and
        // around SHA-256's 64-byte block, so midstates hold 0 to 63 unhashed bytes.
        for size in [
            0,
            1,
            4,
            5,
            64 * 5,
            64 * 5 + 1,
            64 * 5 - 1,
            1000,
            SPLIT_BUFFER * 5,
            SPLIT_BUFFER * 5 + 3,
            SPLIT_BUFFER * 11 + 7,
        ] {
            let path = f.root.join("share").join("x.bin");
            fs::write(&path, pattern(size)).unwrap();
            let SplitOutcome::Done(manifest) =
                split_file(&f.store, "x.bin", &path, &Shutdown::new()).unwrap()
            else {
                panic!("{size} bytes not split");
            };
            let expected = Manifest::of_bytes("x.bin", &pattern(size));
            assert!(expected.states.is_some());
            assert_eq!(*manifest, expected, "{size} bytes");
            assert_stored(&f.store, "x.bin", &pattern(size));
        }
    }

    #[test]
    fn the_manifests_documented_in_protocol_md_are_what_a_split_records() {
        // docs/PROTOCOL.md's examples: `seq 1 100000 > numbers.txt`, and `hello world\n`.
        let numbers: Vec<u8> = (1..=100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let doc = include_str!("../../docs/PROTOCOL.md");
        let f = fixture();
        let mut missing = Vec::new();
        for (name, data) in [
            ("numbers.txt", &numbers[..]),
            ("hello.txt", b"hello world\n"),
        ] {
            let path = f.root.join("share").join(name);
            fs::write(&path, data).unwrap();
            let SplitOutcome::Done(manifest) =
                split_file(&f.store, name, &path, &Shutdown::new()).unwrap()
            else {
                panic!("{name} not split");
            };
            let answer = shared::protocol::Response::Manifest(*manifest).encode();
            let line = String::from_utf8(answer).unwrap();
            if !doc.contains(line.trim_end()) {
                missing.push(format!("{name} ({} bytes):\n{line}", line.len()));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/PROTOCOL.md lacks the manifest of {}",
            missing.join("")
        );
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
