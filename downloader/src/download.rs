//! Downloading one content: from many holders at once, checked chunk by chunk and as a whole.
//!
//! 1. Our peers' contents have a digest: the [`Manifest`] (chunk hashes) is taken from the store
//!    when we already have it, else asked of the holders and checked against that digest.
//! 2. Chunks go to the chunk store (`temp/`) so this peer serves them at once, unless the store
//!    already holds a different content of the same name: then they go to a private folder and
//!    are not re-served.
//! 3. The five chunks are fetched in parallel, each from the least-loaded holder that has it,
//!    falling back to the others; a chunk with a wrong hash is discarded and its sender avoided
//!    for the rest of the download, and a holder that trickles is abandoned for another. Chunks
//!    already present and correct are kept, and a chunk interrupted midway is continued from its
//!    last byte. When a worker is done while other chunks are still in flight, it asks an idle
//!    holder for one of them too and the first complete copy wins (endgame), so one slow peer
//!    cannot hold the download at 98 %.
//! 4. The file is assembled in `temp/.incoming/`, its SHA-256 checked, and only then renamed into
//!    `downloads/`: a file there is complete, or absent.
//!
//! One download of a content runs at a time per peer folder: a lock file in `temp/.locks/`
//! makes a second downloader refuse with a clear message, and lets the one holding it clean up
//! what a crashed run left behind.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use shared::chunk::{chunk_ranges, ChunkName, NameError};
use shared::digest::Digest;
use shared::events::Event;
use shared::peer_dir::PeerDir;
use shared::protocol::Manifest;
use shared::shutdown::Shutdown;
use shared::store::{remove_if_exists, ChunkStore, Origin, StoreError, StoredManifest};
use shared::CHUNKS_PER_FILE;

use crate::catalog::{Holder, Target};
use crate::fetch::{Expected, Fetched, Network};
mod assemble;
mod manifest;
mod workers;

use assemble::assemble;
use manifest::NoManifest;
use workers::{Board, ChunkResult, FetchContext, WorkerError};

/// What the downloader needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The peer folder.
    pub dir: PeerDir,
    /// Source address and timeouts of connections to chunk servers.
    pub net: Network,
    /// A chunk in flight this long may also be asked of an idle holder (endgame).
    pub endgame_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PeerDir::new("."),
            net: Network::default(),
            endgame_after: Duration::from_secs(2),
        }
    }
}

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
    Store(#[from] StoreError),
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

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Where this download keeps its chunks.
enum Placement {
    /// In the chunk store: announced and served as they arrive.
    Store,
    /// In a private folder, because the store holds another content of the same name.
    Private(PathBuf),
}

impl Placement {
    fn chunk_path(&self, store: &ChunkStore, chunk: &ChunkName) -> PathBuf {
        match self {
            Placement::Store => store.chunk_path(chunk),
            Placement::Private(dir) => dir.join(chunk.to_string()),
        }
    }

    fn part_path(&self, store: &ChunkStore, chunk: &ChunkName) -> PathBuf {
        match self {
            Placement::Store => store.incoming_path(chunk),
            Placement::Private(dir) => dir.join(format!("{chunk}.part")),
        }
    }
}

/// Orders each chunk's holders: first the least-loaded holder that has it, so the chunks are
/// spread over the holders, then the others as fallbacks. Among equally loaded holders,
/// `proven` (the holder that just answered the manifest request) comes first, so at least one
/// chunk goes to a holder known to answer, and frees it early to help with the others
/// (endgame); `seed` rotates the other ties so that several downloaders do not all start with
/// the same holder.
pub fn plan_sources(
    holders: &[Holder],
    chunks: &[ChunkName],
    seed: usize,
    proven: Option<usize>,
) -> Vec<Vec<usize>> {
    let mut load = vec![0usize; holders.len()];
    let n = holders.len().max(1);
    chunks
        .iter()
        .map(|chunk| {
            let mut candidates: Vec<usize> = (0..holders.len())
                .filter(|&h| holders[h].chunks.contains(chunk.index()))
                .collect();
            candidates.sort_by_key(|&h| (load[h], Some(h) != proven, (h + n - seed % n) % n));
            if let Some(&first) = candidates.first() {
                load[first] += 1;
            }
            // Nobody is asked for a chunk it did not announce: some legacy servers crash on
            // that (the download takes unannounced trailing chunks of a legacy file as empty).
            candidates
        })
        .collect()
}

/// The chunks whose lengths cannot come from the chunking rule (`ceil(size / 5)` bytes each, in
/// order, the rest in the last non-empty one): a chunk shorter than the longest before the
/// last non-empty chunk, and empty trailing chunks when the total needs more chunks than
/// arrived. A legacy server that closes early produces such lengths; a short last chunk
/// cannot be told from a smaller file.
pub fn short_legacy_chunks(lens: &[u64; CHUNKS_PER_FILE]) -> Vec<usize> {
    let full = lens.iter().copied().max().unwrap_or(0);
    let Some(last) = lens.iter().rposition(|&len| len > 0) else {
        return Vec::new();
    };
    let mut short: Vec<usize> = (0..last).filter(|&i| lens[i] < full).collect();
    let total: u64 = lens.iter().sum();
    if short.is_empty() && shared::chunk::chunk_len(total) != full {
        short.extend(last + 1..CHUNKS_PER_FILE);
    }
    short
}

/// Downloads `target` into the peer folder's `downloads/`.
///
/// For a content with a digest, a manifest whose chunks all verify but whose whole file does
/// not match is rolled back (its manifest and every chunk fetched under it), and the download
/// starts again with a manifest of another root, from other holders: a forged manifest costs
/// one round, blames nobody it did not come from, and never stays.
///
/// # Errors
/// [`DownloadError`]; chunks already received stay in the store for the next attempt.
pub fn download(
    config: &Config,
    target: &Target,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, DownloadError> {
    let names = ChunkName::all_of(&target.name)?;
    let store = ChunkStore::open(config.dir.temp())?;
    let downloads = config.dir.downloads();
    fs::create_dir_all(&downloads).map_err(io_error("create", &downloads))?;
    let _lock = lock_content(&store, &target.name)?;
    clean_leftovers(&store, &target.name);

    on_progress(&Progress::Started {
        holders: target.holders.len(),
        verified: target.sha256.is_some(),
    });
    let max = config.net.limits.max_size;
    if let Some(size) = target.size.filter(|&size| size > max) {
        log_download(target, None, "failed", false, None);
        return Err(DownloadError::TooLarge {
            name: target.name.clone(),
            size,
            max,
        });
    }

    let Some(digest) = target.sha256 else {
        return download_with(config, target, None, &names, &store, cancel, on_progress);
    };
    let mut rejected: HashSet<Digest> = HashSet::new();
    let mut skip: HashSet<usize> = HashSet::new();
    loop {
        let obtained = match manifest::obtain(
            &store,
            target,
            digest,
            &config.net,
            &rejected,
            &skip,
            cancel,
        ) {
            Ok(obtained) => obtained,
            Err(NoManifest::Cancelled) => return Err(DownloadError::Cancelled),
            Err(NoManifest::Unavailable) => {
                return Err(unavailable(target, names.to_vec(), on_progress))
            }
        };
        let root = obtained.manifest.root();
        // Only the holders that vouch for this manifest are asked for chunks, and held to it.
        let round = Target {
            holders: target
                .holders
                .iter()
                .filter(|h| manifest::vouched_by(h, root))
                .cloned()
                .collect(),
            ..target.clone()
        };
        let provisional = !obtained.trusted;
        let result = download_with(
            config,
            &round,
            Some(&obtained),
            &names,
            &store,
            cancel,
            on_progress,
        );
        match result {
            Err(DownloadError::WholeFileMismatch { expected, actual }) if provisional => {
                let from = obtained
                    .from
                    .map_or("an earlier run".to_owned(), |h| target.holders[h].label());
                log::warn!(
                    "the manifest of {:?} from {from} (root {}) verified every chunk, but the \
                     whole file has SHA-256 {actual}, not {expected}: discarding it and every \
                     chunk fetched under it, and asking the other holders",
                    target.name,
                    root.short(16)
                );
                roll_back(&store, &target.name, &names)?;
                rejected.insert(root);
                skip.extend(obtained.from);
            }
            other => return other,
        }
    }
}

/// Removes what a manifest that failed the whole-file check left: its manifest, chunks and part
/// files in the store when the download used the store, or the private folder it used because
/// the store holds another content of that name, which stays untouched.
fn roll_back(
    store: &ChunkStore,
    name: &str,
    names: &[ChunkName; CHUNKS_PER_FILE],
) -> Result<(), DownloadError> {
    if let Ok(Some(StoredManifest {
        origin: Origin::Downloading,
        ..
    })) = store.load_manifest(name)
    {
        store.remove_content(name)?;
        for chunk in names {
            remove_if_exists(&store.incoming_path(chunk))?;
        }
    }
    clean_leftovers(store, name);
    Ok(())
}

/// One download round: under `manifest` (for contents with a digest) or none (legacy). A
/// legacy round that fails leaves nothing behind: what arrived is unverifiable, and would
/// otherwise be announced and served.
fn download_with(
    config: &Config,
    target: &Target,
    obtained: Option<&manifest::Obtained>,
    names: &[ChunkName; CHUNKS_PER_FILE],
    store: &ChunkStore,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, DownloadError> {
    let result = download_round(config, target, obtained, names, store, cancel, on_progress);
    if obtained.is_none()
        && result.is_err()
        && !store.load_manifest(&target.name).is_ok_and(|m| m.is_some())
    {
        for chunk in names {
            let _ = remove_if_exists(&store.chunk_path(chunk));
            let _ = remove_if_exists(&store.incoming_path(chunk));
        }
    }
    result
}

/// See [`download_with`].
fn download_round(
    config: &Config,
    target: &Target,
    obtained: Option<&manifest::Obtained>,
    names: &[ChunkName; CHUNKS_PER_FILE],
    store: &ChunkStore,
    cancel: &Shutdown,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, DownloadError> {
    let downloads = config.dir.downloads();
    let manifest = obtained.map(|o| &o.manifest);
    let placement = choose_placement(store, target, obtained)?;

    let expected: [Option<Expected>; CHUNKS_PER_FILE] = match manifest {
        Some(m) => {
            let ranges = chunk_ranges(m.size);
            std::array::from_fn(|i| {
                Some(Expected {
                    len: ranges[i].len(),
                    sha256: m.chunks[i],
                })
            })
        }
        None => [None; CHUNKS_PER_FILE],
    };

    // Keep what an earlier, interrupted download left: complete chunks, and part files that
    // were fully received but not yet renamed when it stopped.
    let mut board = Board::default();
    for (i, chunk) in names.iter().enumerate() {
        let Some(exp) = expected[i] else { continue };
        let dest = placement.chunk_path(store, chunk);
        let part = placement.part_path(store, chunk);
        let kept = if file_matches(&dest, exp) {
            true
        } else {
            file_matches(&part, exp) && fs::rename(&part, &dest).is_ok()
        };
        if kept {
            board.results[i] = Some(ChunkResult {
                fetched: Fetched {
                    bytes: exp.len,
                    resumed_from: exp.len,
                    sha256: exp.sha256,
                    verified: true,
                },
                source: None,
                holder: None,
            });
            on_progress(&Progress::ChunkKept {
                index: chunk.index(),
            });
        }
    }
    let missing: Vec<ChunkName> = names
        .iter()
        .filter(|c| board.results[c.position()].is_none())
        .cloned()
        .collect();

    if let Some(m) = manifest {
        let ranges = chunk_ranges(m.size);
        let need: u64 = missing.iter().map(|c| ranges[c.position()].len()).sum();
        check_free_space(store.root(), need, config.net.limits.min_free).inspect_err(|_| {
            log_download(target, None, "failed", false, None);
        })?;
    }
    // Legacy peers keep no file for the empty trailing chunks of a small file, so nobody
    // announces them, and some legacy servers crash when asked for a chunk they lack: such
    // chunks are taken as empty without asking; the chunking rule checks that afterwards.
    let (missing, implied_empty): (Vec<ChunkName>, Vec<ChunkName>) =
        missing.into_iter().partition(|c| {
            manifest.is_some() || target.holders.iter().any(|h| h.chunks.contains(c.index()))
        });
    for chunk in &implied_empty {
        let path = placement.chunk_path(store, chunk);
        File::create(&path).map_err(io_error("create", &path))?;
        board.results[chunk.position()] = Some(ChunkResult {
            fetched: Fetched {
                bytes: 0,
                resumed_from: 0,
                sha256: Digest::of(b""),
                verified: false,
            },
            source: None,
            holder: None,
        });
    }

    // The holder that sent the manifest, as an index among this round's holders.
    let proven = obtained
        .and_then(|o| o.from_addr)
        .and_then(|addr| target.holders.iter().position(|h| h.addr == addr));
    let plan = plan_sources(
        &target.holders,
        &missing,
        std::process::id() as usize,
        proven,
    );
    let root = manifest.map(Manifest::root);
    let ctx = FetchContext {
        target,
        store,
        placement: &placement,
        expected: &expected,
        // A holder is blamed for wrong bytes only when it announced the root of this very
        // manifest: then its bytes contradict what it vouched for. Others (older peers that
        // announce no root) merely failed that chunk.
        vouching: target
            .holders
            .iter()
            .map(|h| obtained.is_some_and(|o| o.trusted) || (root.is_some() && h.root == root))
            .collect(),
        net: config.net,
        endgame_after: config.endgame_after,
        shutdown: cancel,
        avoid: Mutex::new(HashSet::new()),
        changed: Condvar::new(),
        board: Mutex::new(board),
    };
    let mut failures = ctx.run_workers(&missing, &plan, on_progress);

    // Legacy chunks carry no hash, but the chunking rule fixes their lengths: a chunk cut short
    // by a server that closed early shows, and is fetched again from another holder.
    if manifest.is_none() && failures.is_empty() {
        let short = ctx.discard_short_legacy_chunks(names);
        if !short.is_empty() {
            let replan: Vec<Vec<usize>> = short
                .iter()
                .map(|chunk| {
                    let board = ctx.board();
                    plan_sources(&target.holders, std::slice::from_ref(chunk), 0, None)
                        .remove(0)
                        .into_iter()
                        .filter(|h| !board.failed[chunk.position()].contains(h))
                        .collect()
                })
                .collect();
            failures = ctx.run_workers(&short, &replan, on_progress);
            if failures.is_empty() {
                // Still inconsistent: better no file than a wrong one.
                failures = ctx
                    .discard_short_legacy_chunks(names)
                    .into_iter()
                    .map(|chunk| (chunk, WorkerError::Unavailable))
                    .collect();
            }
        }
    }
    let board = ctx.board.into_inner().unwrap_or_else(|p| p.into_inner());

    // A worker's error matters only if no copy of its chunk arrived (an endgame duplicate may
    // have delivered it after the worker gave up).
    let mut undelivered = Vec::new();
    for (chunk, error) in failures {
        if board.results[chunk.position()].is_some() {
            continue;
        }
        match error {
            WorkerError::Cancelled => return Err(DownloadError::Cancelled),
            WorkerError::Local { path, source } => {
                log_download(target, None, "failed", false, None);
                return Err(DownloadError::Io {
                    action: "write",
                    path,
                    source,
                });
            }
            WorkerError::Unavailable => undelivered.push(chunk),
        }
    }
    if cancel.is_triggered() {
        return Err(DownloadError::Cancelled);
    }
    if !undelivered.is_empty() {
        return Err(unavailable(target, undelivered, on_progress));
    }
    let results: Vec<ChunkResult> = board.results.into_iter().flatten().collect();
    if manifest.is_none() && results.iter().all(|r| r.fetched.bytes == 0) {
        // Legacy peers cannot announce chunks of an empty file (they keep no empty chunk
        // files): five empty answers are servers that closed without sending anything.
        log::warn!(
            "every holder of {:?} answered with nothing; no file is made of that",
            target.name
        );
        return Err(unavailable(target, names.to_vec(), on_progress));
    }
    let verified = manifest.is_some() && results.iter().all(|r| r.fetched.verified);
    let sources: BTreeSet<String> = results.iter().filter_map(|r| r.source.clone()).collect();

    let outcome = match assemble(store, &placement, target, names, &downloads) {
        Ok((path, size, sha256, already_present)) => Outcome {
            path,
            size,
            sha256,
            verified,
            already_present,
            sources,
        },
        Err(e) => {
            log_download(target, None, "failed", false, None);
            return Err(e);
        }
    };

    match (&placement, manifest) {
        (Placement::Private(dir), _) => {
            let _ = fs::remove_dir_all(dir);
        }
        (Placement::Store, None) => {
            // A legacy content: record what we received, so that we can serve it to our peers
            // with chunk digests; it is announced without a file digest (legacy style), since
            // nothing vouched for it.
            let chunks: [Digest; CHUNKS_PER_FILE] =
                std::array::from_fn(|i| results[i].fetched.sha256);
            store.save_manifest(&StoredManifest {
                manifest: Manifest {
                    name: target.name.clone(),
                    size: outcome.size,
                    sha256: outcome.sha256,
                    chunks,
                },
                origin: Origin::Downloaded { verified: false },
            })?;
        }
        (Placement::Store, Some(m)) => {
            // The whole file matched: from now on this peer vouches for the content.
            store.save_manifest(&StoredManifest {
                manifest: m.clone(),
                origin: Origin::Downloaded { verified: true },
            })?;
        }
    }
    log_download(target, Some(&outcome), "ok", verified, Some(&outcome.path));
    Ok(outcome)
}

/// Reports `missing` chunks as the legacy programs did (`CHUNK … CANNOT BE DOWNLOADED FROM
/// ONLINE PEERS.`), logs the failed download, and returns its error.
fn unavailable(
    target: &Target,
    mut missing: Vec<ChunkName>,
    on_progress: &mut dyn FnMut(&Progress),
) -> DownloadError {
    missing.sort();
    for chunk in &missing {
        on_progress(&Progress::ChunkUnavailable {
            chunk: chunk.clone(),
        });
    }
    log_download(target, None, "failed", false, None);
    DownloadError::Incomplete { missing }
}

/// Fails with a "No space left" error unless `need` bytes fit on the disk of `dir` with
/// `min_free` to spare.
fn check_free_space(dir: &Path, need: u64, min_free: u64) -> Result<(), DownloadError> {
    match fs2::available_space(dir) {
        Ok(free) if free < need.saturating_add(min_free) => Err(DownloadError::Io {
            action: "write",
            path: dir.to_owned(),
            source: io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "No space left on device for this download: {need} bytes needed, {free} free, \
                     {min_free} to be kept free (--min-free)"
                ),
            ),
        }),
        _ => Ok(()),
    }
}

/// Whether `path` holds exactly the expected chunk.
fn file_matches(path: &Path, expected: Expected) -> bool {
    match File::open(path) {
        Ok(file) => {
            file.metadata().is_ok_and(|m| m.len() == expected.len)
                && Digest::of_reader(io::BufReader::new(file))
                    .is_ok_and(|(digest, _)| digest == expected.sha256)
        }
        Err(_) => false,
    }
}

/// Held while a content downloads: a second downloader in the same peer folder refuses. The
/// lock file is removed when the download ends, so `temp/.locks/` does not fill up.
///
/// Removing a lock file is safe only with care: another process may have opened it (and so
/// hold its inode) without having locked it yet. Hence the file is removed while still locked,
/// and whoever locks a file checks afterwards that its path still names that very file, else
/// it locked a removed inode and starts over ([`lock_opened`]).
struct ContentLock {
    file: File,
    path: PathBuf,
}

impl Drop for ContentLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// How many times a lock is tried again after finding its file removed under it: each retry
/// means another run ended in between, so a handful is plenty.
const LOCK_RETRIES: usize = 16;

fn lock_content(store: &ChunkStore, name: &str) -> Result<ContentLock, DownloadError> {
    let dir = store.root().join(".locks");
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    let path = dir.join(format!("{name}.lock"));
    for _ in 0..LOCK_RETRIES {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        if let Some(lock) = lock_opened(file, &path, name)? {
            return Ok(lock);
        }
    }
    Err(DownloadError::Busy {
        name: name.to_owned(),
    })
}

/// Locks `file`, opened from `path`, the lock file of content `name`: `Ok(None)` when the file
/// was removed (or replaced) before the lock was ours, so the caller must open `path` again.
///
/// # Errors
/// [`DownloadError::Busy`] when another process holds the lock.
fn lock_opened(file: File, path: &Path, name: &str) -> Result<Option<ContentLock>, DownloadError> {
    if fs2::FileExt::try_lock_exclusive(&file).is_err() {
        return Err(DownloadError::Busy {
            name: name.to_owned(),
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

/// Whether two metadata describe one file (device and inode).
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Removes what a crashed download of `name` left in `temp/.incoming/`: assembled files and
/// private folders. Part files of the store stay: they are continued. Only called under the
/// content's lock, so nothing removed here is in use. Leftovers are recognised by their exact
/// shape ([`Leftover::of`]), never by prefix: `a`'s cleanup must not touch `a.b`'s files.
fn clean_leftovers(store: &ChunkStore, name: &str) {
    let Ok(entries) = fs::read_dir(store.incoming_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        match Leftover::of(file_name, name) {
            Some(Leftover::Assembly | Leftover::Duplicate) => {
                let _ = fs::remove_file(entry.path());
            }
            Some(Leftover::PrivateDir) => {
                let _ = fs::remove_dir_all(entry.path());
            }
            None => {}
        }
    }
}

/// What a download of a content leaves in `temp/.incoming/` when it is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    /// `<name>.<pid>.download`: the file being assembled.
    Assembly,
    /// `<name>_<1-5>.part.<holder>`: an endgame copy of a chunk.
    Duplicate,
    /// `<pid>-<name>`: the private folder of a download that could not use the store.
    PrivateDir,
}

impl Leftover {
    /// Which leftover of content `name` the entry `file_name` is, if any.
    fn of(file_name: &str, name: &str) -> Option<Leftover> {
        let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some((pid, rest)) = file_name.split_once('-') {
            if is_number(pid) && rest == name {
                return Some(Leftover::PrivateDir);
            }
        }
        if let Some((content, pid)) = file_name
            .strip_suffix(".download")
            .and_then(|rest| rest.rsplit_once('.'))
        {
            if content == name && is_number(pid) {
                return Some(Leftover::Assembly);
            }
        }
        let (chunk, holder) = file_name.rsplit_once(".part.")?;
        let chunk = ChunkName::parse(chunk).ok()?;
        (chunk.content() == name && is_number(holder)).then_some(Leftover::Duplicate)
    }
}

fn choose_placement(
    store: &ChunkStore,
    target: &Target,
    obtained: Option<&manifest::Obtained>,
) -> Result<Placement, DownloadError> {
    let existing = match store.load_manifest(&target.name) {
        Ok(existing) => existing,
        Err(e) => {
            log::warn!("ignoring {e}");
            None
        }
    };
    let manifest = obtained.map(|o| &o.manifest);
    // What the store holds may be replaced: an unverified download, or a legacy cache.
    let replaceable = |m: &StoredManifest| {
        matches!(
            m.origin,
            Origin::Downloading | Origin::Downloaded { verified: false }
        )
    };
    let shared_in_store = match (manifest, &existing) {
        (Some(m), Some(e)) => e.manifest.sha256 == m.sha256 || replaceable(e),
        (None, Some(e)) => replaceable(e) && e.origin != Origin::Downloading,
        (_, None) => true,
    };
    if shared_in_store {
        match (obtained, &existing) {
            (Some(o), existing) if existing.as_ref().is_none_or(|e| e.manifest != o.manifest) => {
                store.save_manifest(&StoredManifest {
                    manifest: o.manifest.clone(),
                    origin: if o.trusted {
                        Origin::Downloaded { verified: true }
                    } else {
                        Origin::Downloading
                    },
                })?;
            }
            (None, Some(_)) => remove_if_exists(&store.manifest_path(&target.name))?,
            _ => {}
        }
        return Ok(Placement::Store);
    }
    log::info!(
        "the chunk store already holds a different {:?}; this download will not be re-served",
        target.name
    );
    let dir = store
        .incoming_dir()
        .join(format!("{}-{}", std::process::id(), target.name));
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    Ok(Placement::Private(dir))
}

fn log_download(
    target: &Target,
    outcome: Option<&Outcome>,
    result: &str,
    verified: bool,
    path: Option<&Path>,
) {
    let event = Event::new("download")
        .with("content", &target.name)
        .with("bytes", outcome.map_or(0, |o| o.size))
        .with(
            "sha256",
            outcome.map_or("-".to_owned(), |o| o.sha256.to_string()),
        )
        .with("outcome", result)
        .with("verified", if verified { "yes" } else { "no" })
        .with("path", path.map_or("-".into(), |p| p.display().to_string()));
    log::info!("{event}");
}
#[cfg(test)]
mod tests {
    use super::*;
    use shared::chunk::ChunkSet;
    use shared::tags::Proto;
    use std::net::SocketAddr;

    fn holder(ip: u8, chunks: &str) -> Holder {
        Holder {
            user: format!("u{ip}"),
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            proto: Proto::P2p(1),
            chunks: ChunkSet::parse(chunks).unwrap(),
            root: None,
        }
    }

    #[test]
    fn plan_spreads_chunks_over_holders_and_keeps_fallbacks() {
        let holders = [holder(2, "12345"), holder(3, "12345")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0, None);
        let firsts: Vec<usize> = plan.iter().map(|c| c[0]).collect();
        assert_eq!(firsts, [0, 1, 0, 1, 0]);
        assert!(plan.iter().all(|c| c.len() == 2));
        let rotated: Vec<usize> = plan_sources(&holders, &chunks, 1, None)
            .iter()
            .map(|c| c[0])
            .collect();
        assert_eq!(rotated, [1, 0, 1, 0, 1]);
    }

    #[test]
    fn the_holder_that_sent_the_manifest_gets_a_chunk_first() {
        let holders: Vec<Holder> = (2..9).map(|ip| holder(ip, "12345")).collect();
        let chunks = ChunkName::all_of("f").unwrap();
        for seed in 0..7 {
            let plan = plan_sources(&holders, &chunks, seed, Some(6));
            assert_eq!(plan[0][0], 6, "seed {seed}: {plan:?}");
        }
    }

    #[test]
    fn plan_only_names_holders_of_each_chunk() {
        let holders = [holder(2, "12---"), holder(3, "--345"), holder(4, "1---5")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0, None);
        assert_eq!(plan[0].len(), 2);
        assert_eq!(plan[1], [0]);
        assert_eq!(plan[2], [1]);
        assert_eq!(plan[4].len(), 2);
        // Chunk 5: holder 1 already has chunks 3 and 4 planned, so holder 2 goes first.
        assert_eq!(plan[4][0], 2);
        let none = plan_sources(&[], &chunks, 0, None);
        assert!(none.iter().all(Vec::is_empty));
    }

    #[test]
    fn nobody_is_asked_for_a_chunk_it_did_not_announce() {
        let mut legacy = holder(9, "123--");
        legacy.proto = Proto::Legacy;
        let chunks = ChunkName::all_of("ece").unwrap();
        let plan = plan_sources(&[legacy], &chunks, 0, None);
        assert_eq!(plan[..3], [[0], [0], [0]], "{plan:?}");
        assert!(plan[3].is_empty() && plan[4].is_empty(), "{plan:?}");
        let plan = plan_sources(&[holder(2, "123--")], &chunks, 0, None);
        assert!(plan[3].is_empty() && plan[4].is_empty());
    }

    #[test]
    fn leftovers_are_recognised_exactly_never_by_prefix() {
        let of = |file: &str| Leftover::of(file, "a");
        assert_eq!(of("a.123.download"), Some(Leftover::Assembly));
        assert_eq!(of("a_3.part.2"), Some(Leftover::Duplicate));
        assert_eq!(of("77-a"), Some(Leftover::PrivateDir));
        // Another content's files, however alike.
        for other in [
            "a.b.123.download",
            "a.b_3.part.2",
            "a_1_2.part.3",
            "77-a.b",
            "ab.123.download",
            "a_3.part",
            "a_3.part.x",
            "a.download",
            "x-a",
        ] {
            assert_eq!(of(other), None, "{other}");
        }
        assert_eq!(
            Leftover::of("a.b.99.download", "a.b"),
            Some(Leftover::Assembly)
        );
    }

    #[test]
    fn lock_files_are_removed_and_a_removed_one_is_never_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let locks = store.root().join(".locks");
        let path = locks.join("a.b.lock");
        let first = lock_content(&store, "a.b").unwrap();
        assert!(path.exists());
        assert!(matches!(
            lock_content(&store, "a.b"),
            Err(DownloadError::Busy { name }) if name == "a.b"
        ));
        // Another run opened the file, and is about to lock it, when the first one ends.
        let late = fs::File::open(&path).unwrap();
        drop(first);
        assert!(
            !path.exists(),
            "the lock file is removed when the lock ends"
        );
        // A third run takes the lock under a new file...
        let third = lock_content(&store, "a.b").unwrap();
        // ... and the late one, locking the removed file, sees that it is not the lock.
        assert!(lock_opened(late, &path, "a.b").unwrap().is_none());
        assert!(
            path.exists(),
            "the late run must not remove the third run's file"
        );
        assert!(matches!(
            lock_content(&store, "a.b"),
            Err(DownloadError::Busy { .. })
        ));
        drop(third);
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 0);
    }

    #[test]
    fn legacy_chunk_lengths_follow_the_chunking_rule() {
        for size in 0..200u64 {
            let lens = chunk_ranges(size).map(|r| r.len());
            assert!(
                short_legacy_chunks(&lens).is_empty(),
                "size {size}: {lens:?}"
            );
        }
        assert_eq!(short_legacy_chunks(&[10, 4, 10, 10, 3]), [1]);
        assert_eq!(short_legacy_chunks(&[10, 10, 0, 10, 3]), [2]);
        // Two full chunks and nothing else: 20 bytes would be cut 4 by 4.
        assert_eq!(short_legacy_chunks(&[10, 10, 0, 0, 0]), [2, 3, 4]);
        assert!(short_legacy_chunks(&[0; 5]).is_empty());
        // A short last chunk is indistinguishable from a smaller file.
        assert!(short_legacy_chunks(&[10, 10, 10, 10, 1]).is_empty());
    }
}
