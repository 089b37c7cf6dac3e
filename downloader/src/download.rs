//! Downloading one content: from many holders at once, checked chunk by chunk and as a whole.
//!
//! 1. Our peers' contents have a digest: the [`Manifest`] (chunk hashes) is taken from the store
//!    when we already have it, else asked of the holders and checked against that digest.
//! 2. Chunks go to the chunk store (`temp/`) so this peer serves them at once, unless the store
//!    already holds a different content of the same name: then they go to a private folder and
//!    are not re-served.
//! 3. The five chunks are fetched in parallel, each from the least-loaded holder that has it,
//!    falling back to the others; a chunk with a wrong hash is discarded and its sender avoided
//!    for the rest of the download. Chunks already present and correct are kept.
//! 4. The file is assembled in `temp/.incoming/`, its SHA-256 checked, and only then renamed into
//!    `downloads/`: a file there is complete, or absent.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

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
use crate::fetch::{fetch_chunk, Expected, FetchError, Fetched, Job, Network};
use crate::format;

/// What the downloader needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The peer folder.
    pub dir: PeerDir,
    /// Source address and timeouts of connections to chunk servers.
    pub net: Network,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PeerDir::new("."),
            net: Network::default(),
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
    /// Ctrl-C.
    #[error("download cancelled")]
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
            candidates
        })
        .collect()
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

    on_progress(&Progress::Started {
        holders: target.holders.len(),
        verified: target.sha256.is_some(),
    });

    let manifest = match target.sha256 {
        Some(digest) => match obtain_manifest(&store, target, digest, config.net) {
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

    // Keep what is already here and correct (an earlier, interrupted download).
    let mut results: [Option<ChunkResult>; CHUNKS_PER_FILE] = Default::default();
    for (i, chunk) in names.iter().enumerate() {
        let Some(exp) = expected[i] else { continue };
        if let Ok((digest, len)) = File::open(placement.chunk_path(&store, chunk))
            .and_then(|f| Digest::of_reader(io::BufReader::new(f)))
        {
            if digest == exp.sha256 && len == exp.len {
                results[i] = Some(ChunkResult {
                    fetched: Fetched {
                        bytes: len,
                        sha256: digest,
                        verified: true,
                    },
                    source: None,
                });
                on_progress(&Progress::ChunkKept {
                    index: chunk.index(),
                });
            }
        }
    }
    let missing: Vec<ChunkName> = names
        .iter()
        .filter(|c| results[c.position()].is_none())
        .cloned()
        .collect();

    let plan = plan_sources(&target.holders, &missing, std::process::id() as usize);
    let ctx = FetchContext {
        target,
        store: &store,
        placement: &placement,
        expected: &expected,
        net: config.net,
        cancel,
        avoid: Mutex::new(HashSet::new()),
    };
    let outcomes: Vec<(ChunkName, Result<ChunkResult, WorkerError>)> = thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Progress>(64);
        let handles: Vec<_> = missing
            .iter()
            .zip(&plan)
            .map(|(chunk, candidates)| {
                let tx = tx.clone();
                let ctx = &ctx;
                scope.spawn(move || (chunk.clone(), ctx.fetch(chunk, candidates, &tx)))
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
            .collect()
    });

    let mut unavailable = Vec::new();
    for (chunk, outcome) in outcomes {
        match outcome {
            Ok(result) => results[chunk.position()] = Some(result),
            Err(WorkerError::Cancelled) => return Err(DownloadError::Cancelled),
            Err(WorkerError::Local(e)) => {
                log_download(target, None, "failed", false, None);
                return Err(DownloadError::Io {
                    action: "write",
                    path: placement.part_path(&store, &chunk),
                    source: io::Error::other(e.to_string()),
                });
            }
            Err(WorkerError::Unavailable) => unavailable.push(chunk),
        }
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
    let results: Vec<ChunkResult> = results.into_iter().flatten().collect();
    let verified = manifest.is_some() && results.iter().all(|r| r.fetched.verified);
    let sources: BTreeSet<String> = results.iter().filter_map(|r| r.source.clone()).collect();

    let outcome = assemble(&store, &placement, target, &names, &downloads);
    let outcome = match outcome {
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

/// Gets the manifest of `target`: from the store when it already has this content, else from
/// the first holder whose answer matches the announced digest and size.
fn obtain_manifest(
    store: &ChunkStore,
    target: &Target,
    digest: Digest,
    net: Network,
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
}

enum WorkerError {
    /// No holder delivered.
    Unavailable,
    /// Ctrl-C.
    Cancelled,
    /// A local failure (disk full): other holders would not help.
    Local(FetchError),
}

struct FetchContext<'a> {
    target: &'a Target,
    store: &'a ChunkStore,
    placement: &'a Placement,
    expected: &'a [Option<Expected>; CHUNKS_PER_FILE],
    net: Network,
    cancel: &'a Shutdown,
    /// Holders caught sending wrong bytes: written by any worker, read by all, for the rest of
    /// this download.
    avoid: Mutex<HashSet<SocketAddr>>,
}

impl FetchContext<'_> {
    fn is_avoided(&self, addr: SocketAddr) -> bool {
        self.avoid.lock().is_ok_and(|set| set.contains(&addr))
    }

    /// Tries the candidates in order until one delivers the chunk.
    fn fetch(
        &self,
        chunk: &ChunkName,
        candidates: &[usize],
        progress: &SyncSender<Progress>,
    ) -> Result<ChunkResult, WorkerError> {
        let holders = &self.target.holders;
        let expected = self.expected[chunk.position()];
        let part = self.placement.part_path(self.store, chunk);
        let dest = self.placement.chunk_path(self.store, chunk);
        // A legacy server that lacks a chunk just closes, which looks like an empty chunk. Take
        // an empty answer only when no other holder sends bytes.
        let mut empty_from: Option<&Holder> = None;

        for holder in candidates.iter().map(|&h| &holders[h]) {
            if self.cancel.is_triggered() {
                return Err(WorkerError::Cancelled);
            }
            if self.is_avoided(holder.addr) {
                continue;
            }
            let started = Instant::now();
            let job = Job {
                holder,
                chunk,
                content_sha256: self.target.sha256,
                expected,
            };
            let result = fetch_chunk(&job, &part, self.net, self.cancel);
            let millis = started.elapsed().as_millis();
            match result {
                Ok(fetched) if fetched.bytes == 0 && expected.is_none() => {
                    let _ = fs::remove_file(&part);
                    empty_from.get_or_insert(holder);
                }
                Ok(fetched) => {
                    if let Err(source) = fs::rename(&part, &dest) {
                        let _ = fs::remove_file(&part);
                        return Err(WorkerError::Local(FetchError::Write {
                            path: dest.clone(),
                            source,
                        }));
                    }
                    self.log_fetch(
                        chunk,
                        holder,
                        fetched.bytes,
                        millis,
                        "ok",
                        fetched.verified,
                        None,
                    );
                    let _ = progress.send(Progress::ChunkDone {
                        index: chunk.index(),
                        holder: holder.label(),
                        bytes: fetched.bytes,
                        millis,
                        verified: fetched.verified,
                    });
                    return Ok(ChunkResult {
                        fetched,
                        source: Some(holder.label()),
                    });
                }
                Err(FetchError::Cancelled) => {
                    let _ = fs::remove_file(&part);
                    return Err(WorkerError::Cancelled);
                }
                Err(e @ FetchError::Write { .. }) => {
                    let _ = fs::remove_file(&part);
                    return Err(WorkerError::Local(e));
                }
                Err(e) => {
                    let _ = fs::remove_file(&part);
                    if e.is_bad_data() {
                        if let Ok(mut avoid) = self.avoid.lock() {
                            avoid.insert(holder.addr);
                        }
                        log::warn!(
                            "{} sent wrong data for {chunk}; not asking it again during this download",
                            holder.label()
                        );
                    }
                    self.log_fetch(chunk, holder, 0, millis, e.outcome(), false, Some(&e));
                    let _ = progress.send(Progress::AttemptFailed {
                        index: chunk.index(),
                        holder: holder.label(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if let Some(holder) = empty_from {
            File::create(&dest).map_err(|source| {
                WorkerError::Local(FetchError::Write {
                    path: dest.clone(),
                    source,
                })
            })?;
            self.log_fetch(chunk, holder, 0, 0, "ok", false, None);
            let _ = progress.send(Progress::ChunkDone {
                index: chunk.index(),
                holder: holder.label(),
                bytes: 0,
                millis: 0,
                verified: false,
            });
            return Ok(ChunkResult {
                fetched: Fetched {
                    bytes: 0,
                    sha256: Digest::of(b""),
                    verified: false,
                },
                source: Some(holder.label()),
            });
        }
        Err(WorkerError::Unavailable)
    }

    #[allow(clippy::too_many_arguments)]
    fn log_fetch(
        &self,
        chunk: &ChunkName,
        holder: &Holder,
        bytes: u64,
        millis: u128,
        outcome: &str,
        verified: bool,
        error: Option<&FetchError>,
    ) {
        let mut event = Event::new("fetched")
            .with("content", &self.target.name)
            .with("chunk", chunk.index())
            .with("source", holder.addr)
            .with("user", &holder.user)
            .with("bytes", bytes)
            .with("ms", millis)
            .with(
                "rate_mbps",
                format!("{:.1}", format::rate_mbps(bytes, millis)),
            )
            .with("outcome", outcome)
            .with("verified", if verified { "yes" } else { "no" });
        if let Some(e) = error {
            event = event.with("reason", e);
            log::warn!("{event}");
        } else {
            log::info!("{event}");
        }
    }
}

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
