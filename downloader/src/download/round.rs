//! One round of a download: under one manifest (or none, for a legacy content), the chunks
//! already here are kept, the others fetched by the workers, the file assembled and checked.
//!
//! For a content with a digest, a manifest whose chunks all verify but whose whole file does
//! not match is rolled back (its manifest and every chunk fetched under it), and a new round
//! starts with a manifest of another root, from other holders ([`Round::with_manifests`]): a
//! forged manifest costs one round, blames nobody it did not come from, and never stays.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Condvar, Mutex};

use shared::chunk::{chunk_ranges, ChunkName};
use shared::digest::Digest;
use shared::protocol::{ChunkStep, Manifest};
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;
use shared::CHUNKS_PER_FILE;

use super::assemble::{assemble, place_received};
use super::board::{Board, ChunkResult};
use super::config::Config;
use super::error::{io_error, DownloadError};
use super::manifest::{self, NoManifest, Obtained};
use super::placement::{self, Placement};
use super::plan;
use super::progress::{DownloadedFile, Progress};
use super::receiving::Receiving;
use super::workers::{FetchContext, WorkerError};
use crate::catalog::Target;
use crate::fetch::{check_in_file, Fetched};

/// What every round of one download shares.
pub(super) struct Round<'a> {
    pub(super) config: &'a Config,
    /// The content, with all its holders.
    pub(super) target: &'a Target,
    /// Its five chunk names.
    pub(super) names: &'a [ChunkName; CHUNKS_PER_FILE],
    pub(super) store: &'a ChunkStore,
    pub(super) cancel: &'a Shutdown,
}

impl Round<'_> {
    /// Downloads a content with a digest (`digest`): rounds under manifests obtained from the
    /// holders, until one gives the announced file.
    pub(super) fn with_manifests(
        &self,
        digest: Digest,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<DownloadedFile, DownloadError> {
        let target = self.target;
        let mut rejected: HashSet<Digest> = HashSet::new();
        let mut skip: HashSet<usize> = HashSet::new();
        loop {
            let net = &self.config.net;
            let obtained = match manifest::obtain(
                self.store,
                target,
                digest,
                net,
                &rejected,
                &skip,
                self.cancel,
            ) {
                Ok(obtained) => obtained,
                Err(NoManifest::Cancelled) => return Err(DownloadError::Cancelled),
                Err(NoManifest::Unavailable(failures)) => {
                    for (h, reason) in failures {
                        on_progress(&Progress::HolderFailed {
                            holder: target.holders[h].label(),
                            reason,
                        });
                    }
                    return Err(unavailable(self.names.to_vec(), on_progress));
                }
            };
            let root = obtained.manifest.root();
            // Only the holders that vouch for this manifest are asked for chunks, and held to it.
            let round = Target {
                holders: (target.holders.iter())
                    .filter(|h| plan::vouched_by(h, root))
                    .cloned()
                    .collect(),
                ..target.clone()
            };
            match self.run(&round, Some(&obtained), on_progress) {
                Err(DownloadError::WholeFileMismatch { expected, actual }) if !obtained.trusted => {
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
                    placement::roll_back(self.store, &target.name, self.names)?;
                    rejected.insert(root);
                    skip.extend(obtained.from);
                }
                other => return other,
            }
        }
    }

    /// One round with the holders of `target`, under `obtained` (for contents with a digest) or
    /// none (legacy). A legacy round that fails leaves nothing behind: what arrived is
    /// unverifiable, and would otherwise be announced and served.
    pub(super) fn run(
        &self,
        target: &Target,
        obtained: Option<&Obtained>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<DownloadedFile, DownloadError> {
        let result = self.fetch_and_assemble(target, obtained, on_progress);
        if obtained.is_none() && result.is_err() {
            placement::discard_legacy(self.store, &target.name, self.names);
        }
        result
    }

    fn fetch_and_assemble(
        &self,
        target: &Target,
        obtained: Option<&Obtained>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<DownloadedFile, DownloadError> {
        let (store, names) = (self.store, self.names);
        let manifest = obtained.map(|o| &o.manifest);
        let placement = Placement::choose(store, target, obtained)?;
        let expected = plan::expected_chunks(manifest);
        let steps: [Option<ChunkStep<'_>>; CHUNKS_PER_FILE] =
            std::array::from_fn(|i| manifest.and_then(|m| m.chunk_step(i)));
        // With a manifest, chunks go straight to their place in the file, unless an earlier
        // run left chunk files (or the store serves the content in place): those are kept.
        let min_free = self.config.net.limits.min_free;
        let receiving = match manifest {
            Some(m) if !placement.has_chunks(store, names) => {
                let dir = placement.parts_dir(store);
                // The whole file is reserved at once: room for what is not reserved yet.
                let reserved = Receiving::reserved(&dir, &m.name);
                placement::check_free_space(
                    store.root(),
                    m.size.saturating_sub(reserved),
                    min_free,
                )?;
                Some(Receiving::open(&dir, m)?)
            }
            _ => None,
        };
        let mut board = Board::default();
        for (i, chunk) in names.iter().enumerate() {
            let Some(exp) = expected[i] else { continue };
            if let Some(receiving) = &receiving {
                // (An empty chunk is asked for all the same: nothing tells it from one never begun.)
                if exp.len > 0 && receiving.recorded(i) == exp.len {
                    let record = |_| {};
                    let place = receiving.place(i, &record);
                    match check_in_file(&place, exp, steps[i].as_ref()) {
                        Ok(Some(fetched)) => {
                            board.results[i] = Some(ChunkResult::kept(Fetched {
                                resumed_from: exp.len,
                                ..fetched
                            }));
                            on_progress(&Progress::ChunkKept {
                                index: chunk.index(),
                                bytes: exp.len,
                            });
                        }
                        Ok(None) => receiving.record(i, 0),
                        Err(e) => return Err(io_error("read", receiving.path())(e)),
                    }
                }
                continue;
            }
            if placement.keeps(store, chunk, exp) {
                let fetched = Fetched {
                    bytes: exp.len,
                    resumed_from: exp.len,
                    sha256: exp.sha256,
                    verified: true,
                    step: None,
                };
                board.results[i] = Some(ChunkResult::kept(fetched));
                on_progress(&Progress::ChunkKept {
                    index: chunk.index(),
                    bytes: exp.len,
                });
            }
        }
        let missing: Vec<ChunkName> = (names.iter())
            .filter(|c| board.results[c.position()].is_none())
            .cloned()
            .collect();
        if let (Some(m), None) = (manifest, &receiving) {
            let ranges = chunk_ranges(m.size);
            let need: u64 = missing.iter().map(|c| ranges[c.position()].len()).sum();
            placement::check_free_space(store.root(), need, min_free)?;
        }
        let (implied_empty, missing): (Vec<ChunkName>, Vec<ChunkName>) = (missing.into_iter())
            .partition(|c| plan::implied_empty(&target.holders, c, manifest.is_some()));
        for chunk in &implied_empty {
            placement::create_empty(&placement.chunk_path(store, chunk))?;
            board.results[chunk.position()] = Some(ChunkResult::kept(Fetched::unverified(0)));
        }

        // The holder that sent the manifest, as an index among this round's holders.
        let proven = (obtained.and_then(|o| o.from_addr))
            .and_then(|addr| target.holders.iter().position(|h| h.addr == addr));
        let seed = usize::try_from(std::process::id()).unwrap_or(0);
        let plan = plan::plan_sources(&target.holders, &missing, seed, proven);
        let root = manifest.map(Manifest::root);
        let trusted = obtained.is_some_and(|o| o.trusted);
        let ctx = FetchContext {
            target,
            store,
            placement: &placement,
            expected: &expected,
            steps: &steps,
            receiving: receiving.as_ref(),
            vouching: plan::vouching(&target.holders, root, trusted),
            net: self.config.net.clone(),
            endgame_after: self.config.endgame_after,
            shutdown: self.cancel,
            avoid: Mutex::new(HashSet::new()),
            changed: Condvar::new(),
            board: Mutex::new(board),
        };
        let mut failures = ctx.run_workers(&missing, &plan, on_progress);
        if manifest.is_none() && failures.is_empty() {
            failures = refetch_short_legacy_chunks(&ctx, names, on_progress);
        }
        let board = ctx.board.into_inner().unwrap_or_else(|p| p.into_inner());
        let results = self.kept_chunks(board, failures, on_progress)?;
        if manifest.is_none() && results.iter().all(|r| r.fetched.bytes == 0) {
            // Legacy peers cannot announce chunks of an empty file (they keep no empty chunk
            // files): five empty answers are servers that closed without sending anything.
            log::warn!(
                "every holder of {:?} answered with nothing; no file is made of that",
                target.name
            );
            return Err(unavailable(names.to_vec(), on_progress));
        }
        let verified = manifest.is_some() && results.iter().all(|r| r.fetched.verified);
        let sources: BTreeSet<String> = results.iter().filter_map(|r| r.source.clone()).collect();
        let downloads = self.config.dir.downloads();
        let mut hashed_once = false;
        let (path, size, sha256, already_present) = match receiving {
            Some(receiving) => {
                for (i, result) in results.iter().enumerate() {
                    if let Some(copy) = &result.copy {
                        receiving.place_copy(i, copy)?;
                    }
                }
                // Every chunk a proven step of the file's SHA-256: the file has it, and is
                // not read again. Otherwise it is hashed whole, as assembled files are.
                let proven = results.iter().all(|r| r.fetched.step == Some(true));
                hashed_once = proven;
                if !proven {
                    log::info!(
                        "{:?}: its chunks were not all checked as steps of the file's SHA-256 \
                         (a manifest without midstates, or wrong ones); hashing the whole file",
                        target.name
                    );
                }
                let digest = match (proven, manifest) {
                    (true, Some(m)) => m.sha256,
                    _ => receiving.hash_whole()?,
                };
                let size = manifest.map_or(0, |m| m.size);
                place_received(receiving, target, &downloads, size, digest)?
            }
            None => assemble(store, &placement, target, names, &downloads)?,
        };
        let received = Manifest {
            states: None,
            name: target.name.clone(),
            size,
            sha256,
            chunks: std::array::from_fn(|i| results[i].fetched.sha256),
        };
        placement.finish(store, manifest, received, &path)?;
        Ok(DownloadedFile {
            path,
            size,
            sha256,
            verified,
            already_present,
            hashed_once,
            sources,
        })
    }

    /// The five chunks kept, or why some did not arrive. A worker's error matters only if no
    /// copy of its chunk arrived (an endgame duplicate may have delivered it after the worker
    /// gave up).
    fn kept_chunks(
        &self,
        board: Board,
        failures: Vec<(ChunkName, WorkerError)>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<ChunkResult>, DownloadError> {
        let mut undelivered = Vec::new();
        for (chunk, error) in failures {
            if board.results[chunk.position()].is_some() {
                continue;
            }
            match error {
                WorkerError::Cancelled => return Err(DownloadError::Cancelled),
                WorkerError::Local { path, source } => {
                    let action = "write";
                    return Err(DownloadError::Io {
                        action,
                        path,
                        source,
                    });
                }
                WorkerError::Unavailable => undelivered.push(chunk),
            }
        }
        if self.cancel.is_triggered() {
            return Err(DownloadError::Cancelled);
        }
        if !undelivered.is_empty() {
            return Err(unavailable(undelivered, on_progress));
        }
        Ok(board.results.into_iter().flatten().collect())
    }
}

/// Legacy chunks carry no hash, but the chunking rule fixes their lengths: a chunk cut short by
/// a server that closed early shows, and is fetched again from another holder. Returns the
/// chunks still missing.
fn refetch_short_legacy_chunks(
    ctx: &FetchContext<'_>,
    names: &[ChunkName; CHUNKS_PER_FILE],
    on_progress: &mut dyn FnMut(&Progress),
) -> Vec<(ChunkName, WorkerError)> {
    let short = ctx.discard_short_legacy_chunks(names);
    if short.is_empty() {
        return Vec::new();
    }
    let replan: Vec<Vec<usize>> = (short.iter())
        .map(|chunk| {
            let board = ctx.board();
            plan::replan(&ctx.target.holders, chunk, &board.failed[chunk.position()])
        })
        .collect();
    let failures = ctx.run_workers(&short, &replan, on_progress);
    if !failures.is_empty() {
        return failures;
    }
    // Still inconsistent: better no file than a wrong one.
    (ctx.discard_short_legacy_chunks(names).into_iter())
        .map(|chunk| (chunk, WorkerError::Unavailable))
        .collect()
}

/// Reports `missing` chunks as the legacy programs did (`CHUNK … CANNOT BE DOWNLOADED FROM
/// ONLINE PEERS.`), and returns the download's error.
pub(super) fn unavailable(
    mut missing: Vec<ChunkName>,
    on_progress: &mut dyn FnMut(&Progress),
) -> DownloadError {
    missing.sort();
    for chunk in &missing {
        on_progress(&Progress::ChunkUnavailable {
            chunk: chunk.clone(),
        });
    }
    DownloadError::Incomplete { missing }
}
