//! Sharing: keeps the chunk store in step with the files this peer shares.
//!
//! A [`Sharer`] owns the list of share paths (`--share`, or `DIR/served_files`). Each
//! [`Sharer::scan`] lists the files under them and, for each one, makes sure the store holds its
//! five chunks and a manifest whose origin is [`Origin::Shared`] with the file's path and
//! modification time. New and changed files are split again; contents whose shared file is gone
//! are removed. Only contents that the server split itself (origin `Shared`) are ever removed:
//! what the downloader put in the store is not ours to delete, although a shared file of the same
//! name replaces it.
//!
//! Splitting ([`split_file`]) streams the file once through a fixed buffer, writing each chunk to
//! the store's `.incoming/` folder while hashing it and the whole file. Chunks are renamed into
//! place only when the file did not change during the split, so the store never holds a mix of
//! two versions under one manifest. Memory use does not depend on the file's size.
//!
//! This module does not serve anything ([`crate::serve`] does) and runs no thread of its own:
//! [`crate::run`] calls [`Sharer::scan`] once before accepting and then from a background thread.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use shared::chunk::{chunk_ranges, validate_content_name, ChunkName, NameError};
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

/// The `.part` files of one split; whatever is left of them is removed on drop, so a failed or
/// abandoned split leaves nothing behind.
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

    // `.split` rather than the downloader's `.part`: a download and a split of the same name
    // must not write the same temporary file.
    let parts = PartFiles(
        names
            .iter()
            .map(|n| store.incoming_dir().join(format!("{n}.split")))
            .collect(),
    );
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

/// Removes what a chunk server killed mid-split left behind: `.split` files in
/// `temp/.incoming/` and temporary manifest files. Called once at start, before the first scan,
/// so nothing removed is in use (one chunk server per peer folder).
pub(crate) fn remove_leftovers(store: &ChunkStore) {
    for (dir, is_leftover) in [
        (
            store.incoming_dir(),
            (|name: &str| name.ends_with(".split")) as fn(&str) -> bool,
        ),
        (store.manifests_dir(), |name: &str| {
            name.starts_with('.') && name.ends_with(".tmp")
        }),
    ] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(is_leftover) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => log::info!("removed leftover {}", entry.path().display()),
                    Err(e) => log::warn!("cannot remove leftover {}: {e}", entry.path().display()),
                }
            }
        }
    }
}

/// Whether the five chunk files of `manifest` are present with the lengths it implies.
fn chunks_intact(store: &ChunkStore, manifest: &Manifest) -> bool {
    let Ok(names) = ChunkName::all_of(&manifest.name) else {
        return false;
    };
    names
        .iter()
        .zip(chunk_ranges(manifest.size))
        .all(|(name, range)| {
            fs::metadata(store.chunk_path(name))
                .is_ok_and(|m| m.is_file() && m.len() == range.len())
        })
}

/// One file to share, as listed by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    /// Content name: the file name.
    name: String,
    /// Absolute path of the file.
    path: PathBuf,
    /// Size when listed.
    size: u64,
    /// Modification time when listed.
    modified: Option<SystemTime>,
}

/// What one scan did, by content name; for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ScanReport {
    /// Contents split (new, changed, or replacing downloaded content).
    pub(crate) split: Vec<String>,
    /// Contents already up to date.
    pub(crate) unchanged: Vec<String>,
    /// Contents removed because their shared file is gone.
    pub(crate) removed: Vec<String>,
    /// Contents whose split failed or must be retried.
    pub(crate) failed: Vec<String>,
}

/// Keeps the store in step with the shared files; see the module documentation.
#[derive(Debug)]
pub(crate) struct Sharer {
    store: ChunkStore,
    /// The share paths, in `--share` order: on a name conflict, the first wins.
    shares: Vec<PathBuf>,
    /// Messages already logged, so that a rescan every few seconds does not repeat them.
    noted: HashSet<String>,
}

impl Sharer {
    /// A sharer of `shares` into `store`.
    pub(crate) fn new(store: ChunkStore, shares: Vec<PathBuf>) -> Sharer {
        Sharer {
            store,
            shares,
            noted: HashSet::new(),
        }
    }

    fn note_once(&mut self, level: log::Level, message: String) {
        if !self.noted.contains(&message) {
            log::log!(level, "{message}");
            self.noted.insert(message);
        }
    }

    /// Brings the store up to date with the shared files: splits new and changed files, removes
    /// contents whose file is gone. Stops early, installing nothing half-done, on shutdown.
    pub(crate) fn scan(&mut self, shutdown: &Shutdown) -> ScanReport {
        let mut report = ScanReport::default();
        let (candidates, complete) = self.candidates();
        for candidate in &candidates {
            if shutdown.is_triggered() {
                return report;
            }
            let name = &candidate.name;
            let existing = match self.store.load_manifest(name) {
                Ok(existing) => existing,
                Err(e) => {
                    log::warn!("{e}; splitting {name} again");
                    None
                }
            };
            if let Some(stored) = &existing {
                match &stored.origin {
                    Origin::Shared { path, modified }
                        if *path == candidate.path
                            && Some(*modified) == candidate.modified
                            && stored.manifest.size == candidate.size
                            && chunks_intact(&self.store, &stored.manifest) =>
                    {
                        report.unchanged.push(name.clone());
                        continue;
                    }
                    Origin::Downloaded { .. } | Origin::Downloading => log::info!(
                        "shared file {} replaces the downloaded content {name}",
                        candidate.path.display()
                    ),
                    Origin::Shared { .. } => {}
                }
            }
            match split_file(&self.store, name, &candidate.path, shutdown) {
                Ok(SplitOutcome::Done(manifest)) => report.split.push(manifest.name),
                Ok(SplitOutcome::Changed) => {
                    log::info!(
                        "{} changed while it was being split; trying again on the next scan",
                        candidate.path.display()
                    );
                    report.failed.push(name.clone());
                }
                Ok(SplitOutcome::Interrupted) => return report,
                Err(e) => {
                    self.note_once(
                        log::Level::Warn,
                        format!("cannot share {}: {e}", candidate.path.display()),
                    );
                    report.failed.push(name.clone());
                }
            }
        }
        // A share that could not be listed says nothing about which files are gone.
        if complete {
            let shared: HashSet<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
            for stored in self.store.manifests() {
                let Origin::Shared { path, .. } = &stored.origin else {
                    continue;
                };
                let name = &stored.manifest.name;
                if shared.contains(name.as_str()) {
                    continue;
                }
                match self.store.remove_content(name) {
                    Ok(()) => {
                        log::info!(
                            "stopped sharing {name}: {} is gone or no longer shared",
                            path.display()
                        );
                        report.removed.push(name.clone());
                    }
                    Err(e) => self.note_once(
                        log::Level::Warn,
                        format!("cannot remove {name} from the store: {e}"),
                    ),
                }
            }
        }
        log::debug!(
            "scan: {} split, {} unchanged, {} removed, {} failed",
            report.split.len(),
            report.unchanged.len(),
            report.removed.len(),
            report.failed.len()
        );
        report
    }

    /// The files to share, one per content name, and whether every share could be listed.
    fn candidates(&mut self) -> (Vec<Candidate>, bool) {
        let mut complete = true;
        let mut found: Vec<Candidate> = Vec::new();
        let mut by_name: HashMap<String, PathBuf> = HashMap::new();
        for share in self.shares.clone() {
            let root = std::path::absolute(&share).unwrap_or(share);
            let files = match fs::metadata(&root) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.note_once(
                        log::Level::Warn,
                        format!("shared path {} does not exist", root.display()),
                    );
                    continue;
                }
                Err(e) => {
                    complete = false;
                    self.note_once(
                        log::Level::Warn,
                        format!("cannot read shared path {}: {e}", root.display()),
                    );
                    continue;
                }
                Ok(meta) if meta.is_dir() => match self.list_folder(&root) {
                    Ok(files) => files,
                    Err(e) => {
                        complete = false;
                        self.note_once(
                            log::Level::Warn,
                            format!("cannot list shared folder {}: {e}", root.display()),
                        );
                        continue;
                    }
                },
                Ok(meta) if meta.is_file() => vec![(root, meta)],
                Ok(_) => {
                    self.note_once(
                        log::Level::Warn,
                        format!(
                            "shared path {} is neither a file nor a folder",
                            root.display()
                        ),
                    );
                    continue;
                }
            };
            for (path, meta) in files {
                let Some(name) = self.content_name(&path) else {
                    continue;
                };
                match by_name.entry(name.clone()) {
                    Entry::Occupied(first) => {
                        if *first.get() != path {
                            let message = format!(
                                "not sharing {}: {} has the same name {name} and is shared first",
                                path.display(),
                                first.get().display()
                            );
                            self.note_once(log::Level::Warn, message);
                        }
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(path.clone());
                        found.push(Candidate {
                            name,
                            path,
                            size: meta.len(),
                            modified: meta.modified().ok(),
                        });
                    }
                }
            }
        }
        (found, complete)
    }

    /// The regular files directly in `folder`, sorted by path; hidden files and subfolders are
    /// skipped.
    fn list_folder(&mut self, folder: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(folder)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            if path
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
            {
                self.note_once(
                    log::Level::Debug,
                    format!("skipping hidden file {}", path.display()),
                );
                continue;
            }
            // Follows symbolic links: a link to a file is shared as that file.
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => files.push((path, meta)),
                Ok(meta) if meta.is_dir() => self.note_once(
                    log::Level::Debug,
                    format!(
                        "skipping subfolder {} (shares are not recursive)",
                        path.display()
                    ),
                ),
                Ok(_) => self.note_once(
                    log::Level::Debug,
                    format!("skipping {}: not a regular file", path.display()),
                ),
                // Removed since listed: it is simply gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }

    /// The content name of a shared file (its file name), or `None`, with a warning once, when
    /// it cannot be one.
    fn content_name(&mut self, path: &Path) -> Option<String> {
        let file_name = path.file_name().and_then(|n| n.to_str());
        let problem = match file_name {
            // The manifest records the path as text.
            _ if path.to_str().is_none() => "its path is not valid UTF-8".to_owned(),
            None => "it has no valid UTF-8 file name".to_owned(),
            Some(name) => match validate_content_name(name) {
                Ok(()) => return Some(name.to_owned()),
                Err(e) => format!("its name cannot be a content name: {e}"),
            },
        };
        self.note_once(
            log::Level::Warn,
            format!("not sharing {}: {problem}", path.display()),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        store: ChunkStore,
    }

    fn fixture() -> Fixture {
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

    fn pattern(len: usize) -> Vec<u8> {
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
    fn assert_stored(store: &ChunkStore, name: &str, data: &[u8]) {
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
    fn rewrite(path: &Path, data: &[u8]) {
        let old = fs::metadata(path).unwrap().modified().unwrap();
        fs::write(path, data).unwrap();
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(old + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn split_reassembles_and_matches_the_manifest_for_awkward_sizes() {
        let f = fixture();
        let sizes = [0usize, 1, 4, 7, 10, 11, 16, 1024 * 1024 + 3];
        for size in sizes {
            let path = f.root.join("share").join(format!("file{size}.bin"));
            fs::write(&path, pattern(size)).unwrap();
        }
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.split.len(), sizes.len(), "{report:?}");
        for size in sizes {
            assert_stored(&f.store, &format!("file{size}.bin"), &pattern(size));
        }
        // A second scan finds everything up to date.
        let report = sharer.scan(&Shutdown::new());
        assert!(report.split.is_empty(), "{report:?}");
        assert_eq!(report.unchanged.len(), sizes.len());
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

    #[test]
    fn changed_file_is_split_again() {
        let f = fixture();
        let path = f.root.join("share").join("notes.txt");
        fs::write(&path, b"first version").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.scan(&Shutdown::new());
        assert_stored(&f.store, "notes.txt", b"first version");

        rewrite(&path, b"the second, longer version of the notes");
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.split, ["notes.txt"]);
        assert_stored(
            &f.store,
            "notes.txt",
            b"the second, longer version of the notes",
        );
    }

    #[test]
    fn missing_or_damaged_chunk_is_split_again() {
        let f = fixture();
        let data = pattern(5000);
        fs::write(f.root.join("share").join("x.bin"), &data).unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.scan(&Shutdown::new());
        let names = ChunkName::all_of("x.bin").unwrap();

        fs::remove_file(f.store.chunk_path(&names[2])).unwrap();
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["x.bin"]);
        assert_stored(&f.store, "x.bin", &data);

        fs::write(f.store.chunk_path(&names[4]), b"short").unwrap();
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["x.bin"]);
        assert_stored(&f.store, "x.bin", &data);
    }

    #[test]
    fn deleted_file_is_removed_but_downloaded_content_is_kept() {
        let f = fixture();
        let path = f.root.join("share").join("gone.txt");
        fs::write(&path, b"soon gone").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.scan(&Shutdown::new());
        assert_stored(&f.store, "gone.txt", b"soon gone");

        // A content the downloader put in the store.
        let downloaded = f.root.join("downloaded.bin");
        fs::write(&downloaded, b"from a peer").unwrap();
        split_file(&f.store, "downloaded.bin", &downloaded, &Shutdown::new()).unwrap();
        let mut stored = f.store.load_manifest("downloaded.bin").unwrap().unwrap();
        stored.origin = Origin::Downloaded { verified: true };
        f.store.save_manifest(&stored).unwrap();

        fs::remove_file(&path).unwrap();
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.removed, ["gone.txt"]);
        assert_eq!(f.store.load_manifest("gone.txt").unwrap(), None);
        assert!(f.store.chunks_of("gone.txt").is_empty());
        assert!(f.store.chunks_of("downloaded.bin").is_complete());
        assert!(f.store.load_manifest("downloaded.bin").unwrap().is_some());
    }

    #[test]
    fn file_no_longer_under_a_share_is_removed() {
        let f = fixture();
        let other = f.root.join("other");
        fs::create_dir(&other).unwrap();
        fs::write(f.root.join("share").join("a.txt"), b"a").unwrap();
        fs::write(other.join("b.txt"), b"b").unwrap();
        let mut both = Sharer::new(f.store.clone(), vec![f.root.join("share"), other.clone()]);
        assert_eq!(both.scan(&Shutdown::new()).split.len(), 2);

        // Restarted with only the second share.
        let mut one = Sharer::new(f.store.clone(), vec![other]);
        let report = one.scan(&Shutdown::new());
        assert_eq!(report.removed, ["a.txt"]);
        assert_eq!(report.unchanged, ["b.txt"]);
    }

    #[test]
    fn first_of_two_same_named_files_wins() {
        let f = fixture();
        let other = f.root.join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("same.txt"), b"from other").unwrap();
        fs::write(f.root.join("share").join("same.txt"), b"from share").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![other.clone(), f.root.join("share")]);
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.split, ["same.txt"]);
        assert_stored(&f.store, "same.txt", b"from other");
        assert_eq!(sharer.scan(&Shutdown::new()).unchanged, ["same.txt"]);
        // Warned once, not at every scan.
        let warnings = sharer
            .noted
            .iter()
            .filter(|m| m.contains("same name"))
            .count();
        assert_eq!(warnings, 1);

        // When the winner goes away, the other file takes the name over.
        fs::remove_file(other.join("same.txt")).unwrap();
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["same.txt"]);
        assert_stored(&f.store, "same.txt", b"from share");
    }

    #[test]
    fn hidden_files_subfolders_and_invalid_names_are_skipped() {
        let f = fixture();
        let share = f.root.join("share");
        fs::write(share.join(".hidden"), b"secret").unwrap();
        fs::write(share.join("bad\nname.txt"), b"x").unwrap();
        fs::create_dir(share.join("sub")).unwrap();
        fs::write(share.join("sub").join("deep.txt"), b"deep").unwrap();
        fs::write(share.join("ok.txt"), b"ok").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![share]);
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.split, ["ok.txt"]);
        let contents: Vec<String> = f
            .store
            .manifests()
            .into_iter()
            .map(|m| m.manifest.name)
            .collect();
        assert_eq!(contents, ["ok.txt"]);
    }

    #[test]
    fn a_single_file_can_be_shared_and_keeps_its_extension() {
        let f = fixture();
        let file = f.root.join("photo.tar.gz");
        fs::write(&file, pattern(123)).unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![file, f.root.join("missing")]);
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["photo.tar.gz"]);
        assert_stored(&f.store, "photo.tar.gz", &pattern(123));
    }

    #[test]
    fn shared_file_replaces_downloaded_content_of_the_same_name() {
        let f = fixture();
        let elsewhere = f.root.join("elsewhere.bin");
        fs::write(&elsewhere, b"downloaded bytes").unwrap();
        split_file(&f.store, "song.mp3", &elsewhere, &Shutdown::new()).unwrap();
        let mut stored = f.store.load_manifest("song.mp3").unwrap().unwrap();
        stored.origin = Origin::Downloaded { verified: false };
        f.store.save_manifest(&stored).unwrap();

        fs::write(f.root.join("share").join("song.mp3"), b"our own song").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["song.mp3"]);
        assert_stored(&f.store, "song.mp3", b"our own song");
    }
}
