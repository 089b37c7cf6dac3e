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
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shared::chunk::{chunk_ranges, ChunkName, NameError};
use shared::connection::Connection;
use shared::digest::{Digest, HashingWriter};
use shared::events::Event;
use shared::peer_dir::PeerDir;
use shared::protocol::{Manifest, Request, Response};
use shared::shutdown::Shutdown;
use shared::store::{remove_if_exists, ChunkStore, Origin, StoreError, StoredManifest};
use shared::tags::Proto;
use shared::CHUNKS_PER_FILE;

use crate::catalog::{Holder, Target};
use crate::fetch::{fetch_chunk, CancelHandle, Expected, FetchError, Fetched, Job, Network};
use crate::format;

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
    #[error("{} of {CHUNKS_PER_FILE} chunks could not be downloaded from online peers", missing.len())]
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
    /// Ctrl-C.
    #[error("download cancelled; chunks received so far are kept for the next attempt")]
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
/// spread over the holders, then the others as fallbacks. `seed` rotates ties so that several
/// downloaders do not all start with the same holder.
pub fn plan_sources(holders: &[Holder], chunks: &[ChunkName], seed: usize) -> Vec<Vec<usize>> {
    let mut load = vec![0usize; holders.len()];
    let n = holders.len().max(1);
    chunks
        .iter()
        .map(|chunk| {
            let mut candidates: Vec<usize> = (0..holders.len())
                .filter(|&h| holders[h].chunks.contains(chunk.index()))
                .collect();
            candidates.sort_by_key(|&h| (load[h], (h + n - seed % n) % n));
            if let Some(&first) = candidates.first() {
                load[first] += 1;
            }
            // Legacy peers keep no file for the empty trailing chunks of a small file, so they
            // never announce them; legacy downloaders ask anyway and take the empty answer. Ask
            // them last, for chunks nobody announced (the length rule still catches a wrong
            // empty answer).
            if candidates.is_empty() {
                candidates
                    .extend((0..holders.len()).filter(|&h| holders[h].proto == Proto::Legacy));
            }
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

    let manifest = match target.sha256 {
        Some(digest) => match obtain_manifest(&store, target, digest, &config.net) {
            Some(m) => Some(m),
            None => {
                for chunk in &names {
                    on_progress(&Progress::ChunkUnavailable {
                        chunk: chunk.clone(),
                    });
                }
                log_download(target, None, "failed", false, None);
                return Err(DownloadError::Incomplete {
                    missing: names.to_vec(),
                });
            }
        },
        None => None,
    };
    let placement = choose_placement(&store, target, manifest.as_ref())?;

    let expected: [Option<Expected>; CHUNKS_PER_FILE] = match &manifest {
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
        let dest = placement.chunk_path(&store, chunk);
        let part = placement.part_path(&store, chunk);
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

    let plan = plan_sources(&target.holders, &missing, std::process::id() as usize);
    let ctx = FetchContext {
        target,
        store: &store,
        placement: &placement,
        expected: &expected,
        net: config.net,
        endgame_after: config.endgame_after,
        shutdown: cancel,
        avoid: Mutex::new(HashSet::new()),
        board: Mutex::new(board),
    };
    let mut failures = ctx.run_workers(&missing, &plan, on_progress);

    // Legacy chunks carry no hash, but the chunking rule fixes their lengths: a chunk cut short
    // by a server that closed early shows, and is fetched again from another holder.
    if manifest.is_none() && failures.is_empty() {
        let short = ctx.discard_short_legacy_chunks(&names);
        if !short.is_empty() {
            let replan: Vec<Vec<usize>> = short
                .iter()
                .map(|chunk| {
                    let board = ctx.board();
                    plan_sources(&target.holders, std::slice::from_ref(chunk), 0)
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
                    .discard_short_legacy_chunks(&names)
                    .into_iter()
                    .map(|chunk| (chunk, WorkerError::Unavailable))
                    .collect();
            }
        }
    }
    let board = ctx.board.into_inner().unwrap_or_else(|p| p.into_inner());

    // A worker's error matters only if no copy of its chunk arrived (an endgame duplicate may
    // have delivered it after the worker gave up).
    let mut unavailable = Vec::new();
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
            WorkerError::Unavailable => unavailable.push(chunk),
        }
    }
    if cancel.is_triggered() {
        return Err(DownloadError::Cancelled);
    }
    if !unavailable.is_empty() {
        unavailable.sort();
        for chunk in &unavailable {
            on_progress(&Progress::ChunkUnavailable {
                chunk: chunk.clone(),
            });
        }
        log_download(target, None, "failed", false, None);
        return Err(DownloadError::Incomplete {
            missing: unavailable,
        });
    }
    let results: Vec<ChunkResult> = board.results.into_iter().flatten().collect();
    let verified = manifest.is_some() && results.iter().all(|r| r.fetched.verified);
    let sources: BTreeSet<String> = results.iter().filter_map(|r| r.source.clone()).collect();

    let outcome = match assemble(&store, &placement, target, &names, &downloads) {
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

    match (&placement, &manifest) {
        (Placement::Private(dir), _) => {
            let _ = fs::remove_dir_all(dir);
        }
        (Placement::Store, None) => {
            // A legacy content: record what we received, so we can serve and announce it
            // with a digest from now on.
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
        (Placement::Store, Some(_)) => {}
    }
    log_download(target, Some(&outcome), "ok", verified, Some(&outcome.path));
    Ok(outcome)
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

/// Held while a content downloads: a second downloader in the same peer folder refuses.
struct ContentLock(File);

impl Drop for ContentLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.0);
    }
}

fn lock_content(store: &ChunkStore, name: &str) -> Result<ContentLock, DownloadError> {
    // Lock files stay (removing one another process has open would break the lock); they are
    // empty and kept apart from the part files.
    let dir = store.root().join(".locks");
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    let path = dir.join(format!("{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(ContentLock(file)),
        Err(_) => Err(DownloadError::Busy {
            name: name.to_owned(),
        }),
    }
}

/// Removes what a crashed download of `name` left in `temp/.incoming/`: assembled files and
/// private folders. Part files of the store stay: they are continued. Only called under the
/// content's lock, so nothing removed here is in use.
fn clean_leftovers(store: &ChunkStore, name: &str) {
    let Ok(entries) = fs::read_dir(store.incoming_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let assembled = file_name
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| rest.ends_with(".download"));
        let private = file_name
            .split_once('-')
            .is_some_and(|(pid, rest)| rest == name && pid.parse::<u32>().is_ok());
        let duplicate = file_name
            .strip_prefix(name)
            .is_some_and(|rest| rest.contains(".part.") && rest.starts_with('_'));
        if assembled || duplicate {
            let _ = fs::remove_file(entry.path());
        } else if private {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Gets the manifest of `target`: from the store when it already has this content, else from
/// the first holder whose answer matches the announced digest and size.
fn obtain_manifest(
    store: &ChunkStore,
    target: &Target,
    digest: Digest,
    net: &Network,
) -> Option<Manifest> {
    if let Ok(Some(stored)) = store.load_manifest(&target.name) {
        if stored.manifest.sha256 == digest {
            return Some(stored.manifest);
        }
    }
    let mut holders: Vec<&Holder> = target
        .holders
        .iter()
        .filter(|h| matches!(h.proto, Proto::P2p(_)))
        .collect();
    holders.sort_by_key(|h| std::cmp::Reverse(h.chunks.count()));
    for holder in holders {
        let answer = Connection::connect_with(holder.addr, net.bind, net.connect, net.idle)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                conn.write_request(&Request::Manifest {
                    content: target.name.clone(),
                    content_sha256: Some(digest),
                })
                .map_err(|e| e.to_string())?;
                conn.read_response().map_err(|e| e.to_string())
            });
        match answer {
            Ok(Response::Manifest(m))
                if m.name == target.name
                    && m.sha256 == digest
                    && target.size.is_none_or(|s| s == m.size) =>
            {
                return Some(m)
            }
            Ok(other) => log::warn!(
                "{} answered the manifest request for {:?} with {other:?}",
                holder.label(),
                target.name
            ),
            Err(e) => log::warn!(
                "cannot get the manifest of {:?} from {}: {e}",
                target.name,
                holder.label()
            ),
        }
    }
    None
}

fn choose_placement(
    store: &ChunkStore,
    target: &Target,
    manifest: Option<&Manifest>,
) -> Result<Placement, DownloadError> {
    let existing = match store.load_manifest(&target.name) {
        Ok(existing) => existing,
        Err(e) => {
            log::warn!("ignoring {e}");
            None
        }
    };
    let legacy_cache = |m: &StoredManifest| m.origin == Origin::Downloaded { verified: false };
    let shared_in_store = match (manifest, &existing) {
        (Some(m), Some(e)) => e.manifest.sha256 == m.sha256,
        (Some(_), None) => true,
        (None, Some(e)) => legacy_cache(e),
        (None, None) => true,
    };
    if shared_in_store {
        match (manifest, &existing) {
            (Some(m), None) => store.save_manifest(&StoredManifest {
                manifest: m.clone(),
                origin: Origin::Downloaded { verified: true },
            })?,
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

/// Concatenates the chunks into `temp/.incoming/`, checks the digest, and moves the file into
/// `downloads/` under a name that does not overwrite a different file.
fn assemble(
    store: &ChunkStore,
    placement: &Placement,
    target: &Target,
    names: &[ChunkName; CHUNKS_PER_FILE],
    downloads: &Path,
) -> Result<(PathBuf, u64, Digest, bool), DownloadError> {
    let assembly =
        store
            .incoming_dir()
            .join(format!("{}.{}.download", target.name, std::process::id()));
    let result = (|| {
        let file = File::create(&assembly).map_err(io_error("create", &assembly))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
        for chunk in names {
            let path = placement.chunk_path(store, chunk);
            let mut input = File::open(&path).map_err(io_error("read", &path))?;
            io::copy(&mut input, &mut out).map_err(io_error("write", &assembly))?;
        }
        let size = out.written();
        let (writer, digest) = out.finish();
        let file = writer
            .into_inner()
            .map_err(|e| io_error("write", &assembly)(e.into_error()))?;
        file.sync_all().map_err(io_error("write", &assembly))?;
        if let Some(expected) = target.sha256 {
            if digest != expected {
                return Err(DownloadError::WholeFileMismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let (dest, already_present) = destination(downloads, &target.name, digest)?;
        if already_present {
            let _ = fs::remove_file(&assembly);
        } else {
            move_into_place(&assembly, &dest)?;
        }
        Ok((dest, size, digest, already_present))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&assembly);
    }
    result
}

/// `downloads/<name>`, or `downloads/<stem> (n).<ext>` when a different file has that name.
/// The flag says an identical file is already there.
fn destination(
    downloads: &Path,
    name: &str,
    digest: Digest,
) -> Result<(PathBuf, bool), DownloadError> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    for n in 0u32.. {
        let candidate = match (n, ext) {
            (0, _) => name.to_owned(),
            (n, Some(ext)) => format!("{stem} ({n}).{ext}"),
            (n, None) => format!("{stem} ({n})"),
        };
        let path = downloads.join(candidate);
        match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((path, false)),
            Err(e) => return Err(io_error("read", &path)(e)),
            Ok(file) => {
                let (existing, _) =
                    Digest::of_reader(io::BufReader::new(file)).map_err(io_error("read", &path))?;
                if existing == digest {
                    return Ok((path, true));
                }
            }
        }
    }
    unreachable!("u32 names run out")
}

fn move_into_place(from: &Path, to: &Path) -> Result<(), DownloadError> {
    if fs::rename(from, to).is_ok() {
        shared::fsutil::sync_parent(to);
        return Ok(());
    }
    // `downloads/` may be on another file system: copy beside the target, then rename.
    let tmp = to.with_file_name(format!(
        ".{}.{}.tmp",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let copied = fs::copy(from, &tmp)
        .and_then(|_| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, to));
    let _ = fs::remove_file(from);
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("write", to)(e));
    }
    shared::fsutil::sync_parent(to);
    Ok(())
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

struct ChunkResult {
    fetched: Fetched,
    /// `user@address` of the sender; `None` for a chunk kept from before.
    source: Option<String>,
    /// The sender's index among the target's holders.
    holder: Option<usize>,
}

enum WorkerError {
    /// No holder delivered.
    Unavailable,
    /// Ctrl-C.
    Cancelled,
    /// A local failure (a full disk): other holders would not help.
    Local { path: PathBuf, source: io::Error },
}

/// One fetch in progress.
struct Flight {
    holder: usize,
    started: Instant,
    handle: Arc<CancelHandle>,
}

/// The state of the five chunks, shared by the workers.
#[derive(Default)]
struct Board {
    /// The copy that won, per chunk.
    results: [Option<ChunkResult>; CHUNKS_PER_FILE],
    /// Fetches in progress, per chunk.
    flights: [Vec<Flight>; CHUNKS_PER_FILE],
    /// Holders that failed each chunk during this download.
    failed: [HashSet<usize>; CHUNKS_PER_FILE],
}

impl Board {
    fn is_busy(&self, holder: usize) -> bool {
        self.flights.iter().flatten().any(|f| f.holder == holder)
    }

    fn remove_flight(&mut self, position: usize, handle: &Arc<CancelHandle>) {
        self.flights[position].retain(|f| !Arc::ptr_eq(&f.handle, handle));
    }
}

struct FetchContext<'a> {
    target: &'a Target,
    store: &'a ChunkStore,
    placement: &'a Placement,
    expected: &'a [Option<Expected>; CHUNKS_PER_FILE],
    net: Network,
    endgame_after: Duration,
    shutdown: &'a Shutdown,
    /// Holders caught sending wrong bytes: written by any worker, read by all, for the rest of
    /// this download.
    avoid: Mutex<HashSet<SocketAddr>>,
    /// Written by every worker under its lock; read back by `download` once they are done.
    board: Mutex<Board>,
}

/// How one attempt ended.
enum Attempt {
    /// This copy of the chunk is the one kept.
    Won,
    /// Another copy was kept first.
    Lost,
    /// This holder did not deliver.
    Failed(FetchError),
}

impl FetchContext<'_> {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_avoided(&self, addr: SocketAddr) -> bool {
        self.avoid.lock().is_ok_and(|set| set.contains(&addr))
    }

    fn is_done(&self, chunk: &ChunkName) -> bool {
        self.board().results[chunk.position()].is_some()
    }

    /// Fetches `chunks` in parallel, one worker each (`plan` gives each worker's holders in
    /// order), reporting progress as it comes; returns the workers' errors.
    fn run_workers(
        &self,
        chunks: &[ChunkName],
        plan: &[Vec<usize>],
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Vec<(ChunkName, WorkerError)> {
        thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Progress>(64);
            let handles: Vec<_> = chunks
                .iter()
                .zip(plan)
                .map(|(chunk, candidates)| {
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let result = self.fetch(chunk, candidates, &tx);
                        if result.is_ok() {
                            self.help_endgame(&tx);
                        }
                        (chunk.clone(), result)
                    })
                })
                .collect();
            drop(tx);
            for progress in rx {
                on_progress(&progress);
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .filter_map(|(chunk, result)| result.err().map(|e| (chunk, e)))
                .collect()
        })
    }

    /// Removes the legacy chunks whose lengths break the chunking rule (see
    /// [`short_legacy_chunks`]) and marks their senders as failed for them.
    fn discard_short_legacy_chunks(&self, names: &[ChunkName; CHUNKS_PER_FILE]) -> Vec<ChunkName> {
        let mut board = self.board();
        let lens: [u64; CHUNKS_PER_FILE] =
            std::array::from_fn(|i| board.results[i].as_ref().map_or(0, |r| r.fetched.bytes));
        let mut discarded = Vec::new();
        for position in short_legacy_chunks(&lens) {
            let chunk = &names[position];
            if let Some(result) = board.results[position].take() {
                log::warn!(
                    "{chunk} from {} has {} bytes, which the chunking rule rules out ({lens:?}); fetching it again",
                    result.source.as_deref().unwrap_or("?"),
                    result.fetched.bytes
                );
                if let Some(h) = result.holder {
                    board.failed[position].insert(h);
                }
            }
            let _ = fs::remove_file(self.placement.chunk_path(self.store, chunk));
            discarded.push(chunk.clone());
        }
        discarded
    }

    /// The chunk's main worker: tries the planned holders in order until a copy is kept.
    fn fetch(
        &self,
        chunk: &ChunkName,
        candidates: &[usize],
        progress: &SyncSender<Progress>,
    ) -> Result<(), WorkerError> {
        let holders = &self.target.holders;
        // A legacy server that lacks a chunk just closes, which looks like an empty chunk. Take
        // an empty answer only when no other holder sends bytes.
        let mut empty_from: Option<usize> = None;

        for (n, &h) in candidates.iter().enumerate() {
            if self.is_done(chunk) {
                return Ok(());
            }
            if self.shutdown.is_triggered() {
                return Err(WorkerError::Cancelled);
            }
            if self.is_avoided(holders[h].addr) {
                continue;
            }
            let handle = Arc::new(CancelHandle::default());
            {
                let mut board = self.board();
                board.flights[chunk.position()].push(Flight {
                    holder: h,
                    started: Instant::now(),
                    handle: handle.clone(),
                });
            }
            let part = self.placement.part_path(self.store, chunk);
            let others_left = candidates[n + 1..]
                .iter()
                .any(|&o| !self.is_avoided(holders[o].addr));
            match self.attempt(chunk, h, &part, true, others_left, &handle, progress) {
                Attempt::Won | Attempt::Lost => return Ok(()),
                Attempt::Failed(FetchError::Cancelled) => {
                    if self.is_done(chunk) {
                        return Ok(());
                    }
                    return Err(WorkerError::Cancelled);
                }
                Attempt::Failed(FetchError::Write { path, source }) => {
                    return Err(WorkerError::Local { path, source });
                }
                Attempt::Failed(FetchError::Protocol(ref reason))
                    if reason == EMPTY_LEGACY_ANSWER =>
                {
                    empty_from.get_or_insert(h);
                }
                Attempt::Failed(_) => {}
            }
        }
        if let Some(h) = empty_from {
            if !self.is_done(chunk) {
                return self.accept_empty(chunk, h, progress);
            }
        }
        if self.is_done(chunk) {
            Ok(())
        } else {
            Err(WorkerError::Unavailable)
        }
    }

    /// One fetch of `chunk` from holder `h` into `part`, already registered as a flight.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        chunk: &ChunkName,
        h: usize,
        part: &Path,
        resume: bool,
        abandon_slow: bool,
        handle: &Arc<CancelHandle>,
        progress: &SyncSender<Progress>,
    ) -> Attempt {
        let holder = &self.target.holders[h];
        let position = chunk.position();
        let expected = self.expected[position];
        let job = Job {
            holder,
            chunk,
            content_sha256: self.target.sha256,
            expected,
            resume,
            abandon_slow,
        };
        let started = Instant::now();
        let result = fetch_chunk(&job, part, &self.net, self.shutdown, handle);
        let millis = started.elapsed().as_millis();
        let mut board = self.board();
        board.remove_flight(position, handle);
        match result {
            Ok(fetched) if fetched.bytes == 0 && expected.is_none() => {
                drop(board);
                let _ = fs::remove_file(part);
                Attempt::Failed(FetchError::Protocol(EMPTY_LEGACY_ANSWER.into()))
            }
            Ok(fetched) => {
                if board.results[position].is_some() {
                    drop(board);
                    let _ = fs::remove_file(part);
                    return Attempt::Lost;
                }
                let dest = self.placement.chunk_path(self.store, chunk);
                if let Err(source) = fs::rename(part, &dest) {
                    drop(board);
                    let _ = fs::remove_file(part);
                    return Attempt::Failed(FetchError::Write { path: dest, source });
                }
                board.results[position] = Some(ChunkResult {
                    fetched,
                    source: Some(holder.label()),
                    holder: Some(h),
                });
                // The other copies in flight are no longer needed.
                for flight in &board.flights[position] {
                    flight.handle.cancel();
                }
                drop(board);
                self.log_fetch(chunk, holder, &fetched, millis, "ok", None);
                let _ = progress.send(Progress::ChunkDone {
                    index: chunk.index(),
                    holder: holder.label(),
                    bytes: fetched.bytes,
                    millis,
                    verified: fetched.verified,
                });
                Attempt::Won
            }
            Err(e) => {
                let superseded = board.results[position].is_some();
                if !superseded && !matches!(e, FetchError::Cancelled) {
                    board.failed[position].insert(h);
                }
                drop(board);
                // Keep a part file that can be continued (our peers, a known chunk, nothing
                // wrong in it); anything else is discarded.
                let resumable = matches!(holder.proto, Proto::P2p(_))
                    && expected.is_some()
                    && resume
                    && !e.is_bad_data()
                    && !superseded;
                // What arrived before the failure, for the log.
                let received = fs::metadata(part).map_or(0, |m| m.len());
                if !resumable {
                    let _ = fs::remove_file(part);
                }
                if superseded {
                    // Say so: a transfer cut short by a faster copy is worth seeing in the log.
                    let lost = Fetched {
                        bytes: received,
                        resumed_from: 0,
                        sha256: Digest::of(b""),
                        verified: false,
                    };
                    self.log_fetch(chunk, holder, &lost, millis, "superseded", Some(&e));
                    return Attempt::Lost;
                }
                if e.is_bad_data() {
                    if let Ok(mut avoid) = self.avoid.lock() {
                        avoid.insert(holder.addr);
                    }
                    log::warn!(
                        "{} sent wrong data for {chunk}; not asking it again during this download",
                        holder.label()
                    );
                }
                if !matches!(e, FetchError::Cancelled) {
                    let failed = Fetched {
                        bytes: received,
                        resumed_from: 0,
                        sha256: Digest::of(b""),
                        verified: false,
                    };
                    self.log_fetch(chunk, holder, &failed, millis, e.outcome(), Some(&e));
                    let _ = progress.send(Progress::AttemptFailed {
                        index: chunk.index(),
                        holder: holder.label(),
                        reason: e.to_string(),
                    });
                }
                Attempt::Failed(e)
            }
        }
    }

    /// Endgame: while other chunks are still in flight, ask an idle holder for one of them too;
    /// the first complete copy is kept and the other cancelled.
    fn help_endgame(&self, progress: &SyncSender<Progress>) {
        let holders = &self.target.holders;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let pick = {
                let mut board = self.board();
                let in_flight = (0..CHUNKS_PER_FILE)
                    .any(|p| board.results[p].is_none() && !board.flights[p].is_empty());
                if !in_flight {
                    return;
                }
                let mut pick = None;
                // Chunks with the fewest copies in flight first: idle holders spread over the
                // stuck chunks instead of all piling onto the first one.
                let mut positions: Vec<usize> = (0..CHUNKS_PER_FILE).collect();
                positions.sort_by_key(|&p| board.flights[p].len());
                for position in positions {
                    let old_enough = board.flights[position]
                        .iter()
                        .any(|f| f.started.elapsed() >= self.endgame_after);
                    if board.results[position].is_some() || !old_enough {
                        continue;
                    }
                    let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
                    let idle = (0..holders.len()).find(|&h| {
                        holders[h].chunks.contains(index)
                            && !board.is_busy(h)
                            && !board.failed[position].contains(&h)
                            && !self.is_avoided(holders[h].addr)
                    });
                    if let Some(h) = idle {
                        let handle = Arc::new(CancelHandle::default());
                        board.flights[position].push(Flight {
                            holder: h,
                            started: Instant::now(),
                            handle: handle.clone(),
                        });
                        pick = Some((position, h, handle));
                        break;
                    }
                }
                pick
            };
            let Some((position, h, handle)) = pick else {
                // Nothing to duplicate yet: flights are young or no holder is idle.
                self.shutdown.sleep(Duration::from_millis(100));
                continue;
            };
            let chunk = &ChunkName::all_of(&self.target.name)
                .map(|names| names[position].clone())
                .unwrap_or_else(|_| unreachable!("validated at the start of the download"));
            let base = self.placement.part_path(self.store, chunk);
            let part = PathBuf::from(format!("{}.{h}", base.display()));
            log::info!(
                "endgame: also asking {} for {chunk}",
                self.target.holders[h].label()
            );
            if let Attempt::Failed(FetchError::Write { .. }) =
                self.attempt(chunk, h, &part, false, true, &handle, progress)
            {
                return;
            }
        }
    }

    /// Keeps an empty chunk from a legacy holder when no holder sent bytes for it.
    fn accept_empty(
        &self,
        chunk: &ChunkName,
        h: usize,
        progress: &SyncSender<Progress>,
    ) -> Result<(), WorkerError> {
        let holder = &self.target.holders[h];
        let dest = self.placement.chunk_path(self.store, chunk);
        File::create(&dest).map_err(|source| WorkerError::Local {
            path: dest.clone(),
            source,
        })?;
        let fetched = Fetched {
            bytes: 0,
            resumed_from: 0,
            sha256: Digest::of(b""),
            verified: false,
        };
        self.board().results[chunk.position()] = Some(ChunkResult {
            fetched,
            source: Some(holder.label()),
            holder: Some(h),
        });
        self.log_fetch(chunk, holder, &fetched, 0, "ok", None);
        let _ = progress.send(Progress::ChunkDone {
            index: chunk.index(),
            holder: holder.label(),
            bytes: 0,
            millis: 0,
            verified: false,
        });
        Ok(())
    }

    fn log_fetch(
        &self,
        chunk: &ChunkName,
        holder: &Holder,
        fetched: &Fetched,
        millis: u128,
        outcome: &str,
        error: Option<&FetchError>,
    ) {
        let sent = fetched.bytes - fetched.resumed_from;
        let mut event = Event::new("fetched")
            .with("content", &self.target.name)
            .with("chunk", chunk.index())
            .with("source", holder.addr)
            .with("user", &holder.user)
            .with("bytes", fetched.bytes);
        if fetched.resumed_from > 0 {
            event = event.with("resumed_from", fetched.resumed_from);
        }
        event = event
            .with("ms", millis)
            .with(
                "rate_mbps",
                format!("{:.1}", format::rate_mbps(sent, millis)),
            )
            .with("outcome", outcome)
            .with("verified", if fetched.verified { "yes" } else { "no" });
        if let Some(e) = error {
            event = event.with("reason", e);
            log::warn!("{event}");
        } else {
            log::info!("{event}");
        }
    }
}

/// The marker of an empty answer from a legacy holder (see [`FetchContext::fetch`]).
const EMPTY_LEGACY_ANSWER: &str = "empty answer from a legacy server";

#[cfg(test)]
mod tests {
    use super::*;
    use shared::chunk::ChunkSet;

    fn holder(ip: u8, chunks: &str) -> Holder {
        Holder {
            user: format!("u{ip}"),
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            proto: Proto::P2p(1),
            chunks: ChunkSet::parse(chunks).unwrap(),
        }
    }

    #[test]
    fn plan_spreads_chunks_over_holders_and_keeps_fallbacks() {
        let holders = [holder(2, "12345"), holder(3, "12345")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0);
        let firsts: Vec<usize> = plan.iter().map(|c| c[0]).collect();
        assert_eq!(firsts, [0, 1, 0, 1, 0]);
        assert!(plan.iter().all(|c| c.len() == 2));
        let rotated: Vec<usize> = plan_sources(&holders, &chunks, 1)
            .iter()
            .map(|c| c[0])
            .collect();
        assert_eq!(rotated, [1, 0, 1, 0, 1]);
    }

    #[test]
    fn plan_only_names_holders_of_each_chunk() {
        let holders = [holder(2, "12---"), holder(3, "--345"), holder(4, "1---5")];
        let chunks = ChunkName::all_of("f").unwrap();
        let plan = plan_sources(&holders, &chunks, 0);
        assert_eq!(plan[0].len(), 2);
        assert_eq!(plan[1], [0]);
        assert_eq!(plan[2], [1]);
        assert_eq!(plan[4].len(), 2);
        // Chunk 5: holder 1 already has chunks 3 and 4 planned, so holder 2 goes first.
        assert_eq!(plan[4][0], 2);
        let none = plan_sources(&[], &chunks, 0);
        assert!(none.iter().all(Vec::is_empty));
    }

    #[test]
    fn legacy_holders_are_asked_for_chunks_nobody_announced() {
        let mut legacy = holder(9, "123--");
        legacy.proto = Proto::Legacy;
        let chunks = ChunkName::all_of("ece").unwrap();
        let plan = plan_sources(&[legacy], &chunks, 0);
        assert!(plan.iter().all(|c| c == &[0]), "{plan:?}");
        // Our peers are never asked for what they did not announce.
        let plan = plan_sources(&[holder(2, "123--")], &chunks, 0);
        assert!(plan[3].is_empty() && plan[4].is_empty());
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

    #[test]
    fn destination_never_overwrites_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"new");
        let (p, same) = destination(dir.path(), "notes.txt", d).unwrap();
        assert_eq!(
            (p.file_name().unwrap().to_str().unwrap(), same),
            ("notes.txt", false)
        );
        fs::write(dir.path().join("notes.txt"), b"old").unwrap();
        let (p, same) = destination(dir.path(), "notes.txt", d).unwrap();
        assert_eq!(
            (p.file_name().unwrap().to_str().unwrap(), same),
            ("notes (1).txt", false)
        );
        fs::write(dir.path().join("notes (1).txt"), b"new").unwrap();
        let (p, same) = destination(dir.path(), "notes.txt", d).unwrap();
        assert_eq!(
            (p.file_name().unwrap().to_str().unwrap(), same),
            ("notes (1).txt", true)
        );
        let (p, _) = destination(dir.path(), ".bashrc", d).unwrap();
        assert_eq!(p.file_name().unwrap(), ".bashrc");
        fs::write(dir.path().join("ece"), b"x").unwrap();
        let (p, _) = destination(dir.path(), "ece", d).unwrap();
        assert_eq!(p.file_name().unwrap(), "ece (1)");
    }
}
