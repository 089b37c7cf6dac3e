//! Sharing: keeps the chunk store in step with the files this peer shares.
//!
//! A [`Sharer`] owns the list of share paths (`--share`, or `DIR/served_files`, then those of
//! `DIR/shares.txt`, less its excluded names: [`shared::shares`]). Each scan
//! ([`Sharer::scan_yielding`]) lists the files under them, whole trees of folders
//! ([`shared::tree`]), removes the contents whose shared file is gone or no longer shared,
//! then, file by file, makes sure the store holds a manifest whose origin is [`Origin::Shared`]
//! with the file's path, size and modification time: the file is then served in place, its
//! five chunks being byte ranges of it, from the moment its manifest is in the store. New and
//! changed files are hashed again ([`crate::split`]); until then, the store neither announces
//! nor serves a changed file ([`shared::store::InPlace`]). A file whose manifest matches is not
//! hashed again, whichever run hashed it; the manifests are read through a
//! [`ManifestCache`], so a scan of 10,000 unchanged files reads none of them. Only contents
//! that the server split itself (origin `Shared`) are ever removed: what the downloader put in
//! the store is not ours to delete, although a shared file of the same name replaces it.
//!
//! Scans repeat (on every change in the shares, and every `--rescan`), so what one finds wrong
//! (a missing share, a name conflict, a file that cannot be read) is logged once while it
//! lasts ([`Latches`]), and again if it comes back after clearing.
//!
//! This module serves nothing and runs no thread of its own: `rescan` calls it from the
//! background thread that decides when to scan.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use shared::chunk::{
    is_legacy_ambiguous, legacy_flat_name, validate_component, validate_content_name,
};
use shared::latch::Latches;
use shared::shares::exclusion_covers;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, ManifestCache, ManifestSummary, Origin};
use shared::tree::list_tree;

use crate::split::{split_file_as, SplitOutcome};

/// The origin of a file served in place: [`Origin::Offered`] when `offered`, else
/// [`Origin::Shared`].
fn origin_of(offered: bool, path: &Path, modified: SystemTime) -> Origin {
    let path = path.to_owned();
    if offered {
        Origin::Offered { path, modified }
    } else {
        Origin::Shared { path, modified }
    }
}

/// Saves the manifest summed up in `summary` again with `origin` (shared now as well as
/// offered, or no longer), loading it whole from the store: the cache keeps no chunk digests,
/// and this happens seldom. A manifest changed since the cache read it is left alone: the next
/// scan sees it.
fn relist(store: &ChunkStore, summary: &ManifestSummary, origin: Origin) {
    let name = &summary.name;
    let mut stored = match store.load_manifest(name) {
        Ok(Some(stored)) if ManifestSummary::from(stored.clone()) == *summary => stored,
        Ok(_) => {
            log::debug!("not relisting {name}: its manifest changed since it was read");
            return;
        }
        Err(e) => {
            log::warn!("cannot update the manifest of {name}: {e}");
            return;
        }
    };
    stored.origin = origin;
    if let Err(e) = store.save_manifest(&stored) {
        log::warn!("cannot update the manifest of {name}: {e}");
    }
}

/// One file to share, as listed by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    /// Content name: the file name, or its path in a shared folder's tree (`photos/a.jpg`).
    name: String,
    /// Absolute path of the file.
    path: PathBuf,
    /// Size when listed.
    size: u64,
    /// Modification time when listed.
    modified: Option<SystemTime>,
    /// Offered to one user (`DIR/sends.txt`) rather than shared: described as
    /// [`Origin::Offered`], never announced.
    offered: bool,
}

impl Candidate {
    fn of(name: String, path: PathBuf, meta: &Metadata, offered: bool) -> Candidate {
        Candidate {
            name,
            path,
            size: meta.len(),
            modified: meta.modified().ok(),
            offered,
        }
    }
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
    /// The scan stopped before the end (shutdown, or the caller asked it to yield): what it
    /// did is kept, the rest waits for the next scan.
    pub(crate) cut_short: bool,
}

/// The conditions a scan logs, each once while it lasts: the message is the key, so a
/// condition that changes (another error) is a new one.
#[derive(Debug, Default)]
struct Notes {
    /// Messages logged and still met at the last scan.
    logged: Latches<String>,
    /// Messages met during the scan under way.
    met: HashSet<String>,
    /// Every message logged, in order, for the tests to count.
    #[cfg(test)]
    history: Vec<String>,
}

impl Notes {
    /// Logs `message` at `level` unless it is already logged and still met.
    fn note(&mut self, level: log::Level, message: String) {
        if self.logged.trip(message.clone()) {
            log::log!(level, "{message}");
            #[cfg(test)]
            self.history.push(message.clone());
        }
        self.met.insert(message);
    }

    /// Ends a whole scan: a condition it did not meet has cleared, and is logged again if it
    /// comes back.
    fn end_scan(&mut self) {
        let met = std::mem::take(&mut self.met);
        self.logged.retain(|m| met.contains(m));
    }
}

/// Keeps the store in step with the shared files; see the module documentation.
#[derive(Debug)]
pub(crate) struct Sharer {
    store: ChunkStore,
    /// The store's manifests as last read: a scan reads again only those that changed, so
    /// 10,000 unchanged files cost no read at all.
    manifests: ManifestCache,
    /// The share paths, in `--share` order: on a name conflict, the first wins.
    shares: Vec<PathBuf>,
    /// The paths of `DIR/shares.txt`, after `shares` ([`Sharer::set_list`]).
    listed: Vec<PathBuf>,
    /// Content names never shared (`-NAME` lines of `DIR/shares.txt`).
    excluded: HashSet<String>,
    /// The live offers of `DIR/sends.txt` ([`Sharer::set_offered`]): the content name each
    /// is offered under, and its file.
    offered: Vec<(String, PathBuf)>,
    /// What the scans found wrong, so that a rescan every few seconds does not repeat it.
    notes: Notes,
}

impl Sharer {
    /// A sharer of `shares` into `store`.
    pub(crate) fn new(store: ChunkStore, shares: Vec<PathBuf>) -> Sharer {
        Sharer {
            manifests: ManifestCache::new(store.clone()),
            store,
            shares,
            listed: Vec::new(),
            excluded: HashSet::new(),
            offered: Vec::new(),
            notes: Notes::default(),
        }
    }

    /// Shares also `listed` (after the share paths) and never the contents named in
    /// `excluded`, from the next scan on.
    pub(crate) fn set_list(&mut self, listed: Vec<PathBuf>, excluded: HashSet<String>) {
        self.listed = listed;
        self.excluded = excluded;
    }

    /// Serves also the files `offered` (to one user each: `DIR/sends.txt`), unlisted, each
    /// under the content name recorded with it, from the next scan on; a file also shared
    /// under that name stays listed. Those no longer offered are removed by that scan (unless
    /// shared).
    pub(crate) fn set_offered(&mut self, offered: Vec<(String, PathBuf)>) {
        self.offered = offered;
    }

    /// The paths whose changes a scan would see: the share paths, those of `DIR/shares.txt`
    /// and the offered files ([`crate::watch`] watches them).
    pub(crate) fn watched_paths(&self) -> Vec<PathBuf> {
        self.shares
            .iter()
            .chain(&self.listed)
            .chain(self.offered.iter().map(|(_, path)| path))
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect()
    }

    /// Brings the store up to date with the shared files: splits new and changed files, removes
    /// contents whose file is gone. Stops early, installing nothing half-done, on shutdown.
    #[cfg(test)]
    pub(crate) fn scan(&mut self, shutdown: &Shutdown) -> ScanReport {
        self.scan_yielding(shutdown, &mut || false)
    }

    /// [`Sharer::scan`], stopping between two files when `yield_now` says so (the caller has
    /// news: the shares list changed), with [`ScanReport::cut_short`] set.
    ///
    /// Contents no longer shared are removed first, then new and changed files hashed one by
    /// one, each served and announced as soon as its manifest is in the store.
    pub(crate) fn scan_yielding(
        &mut self,
        shutdown: &Shutdown,
        yield_now: &mut dyn FnMut() -> bool,
    ) -> ScanReport {
        self.notes.met.clear();
        let mut report = ScanReport::default();
        let (candidates, complete) = self.candidates();
        self.manifests.refresh();
        // A share that could not be listed says nothing about which files are gone.
        if complete {
            self.remove_unshared(&candidates, &mut report);
        }
        for candidate in &candidates {
            if shutdown.is_triggered() || yield_now() {
                report.cut_short = true;
                return report;
            }
            let name = &candidate.name;
            if let Some(summary) = self.manifests.get(name) {
                match &summary.origin {
                    Origin::Shared { path, modified } | Origin::Offered { path, modified }
                        // The listing's `stat` of the file is the check: as hashed, or hash again.
                        if *path == candidate.path
                            && Some(*modified) == candidate.modified
                            && summary.meta.size == candidate.size =>
                    {
                        let offered = matches!(summary.origin, Origin::Offered { .. });
                        if offered != candidate.offered {
                            // Shared now as well as offered, or no longer: the same bytes,
                            // listed or not; no need to hash them again.
                            let origin = origin_of(candidate.offered, path, *modified);
                            relist(&self.store, summary, origin);
                        }
                        report.unchanged.push(name.clone());
                        continue;
                    }
                    Origin::Downloaded { .. } | Origin::Downloading => log::info!(
                        "shared file {} replaces the downloaded content {name}",
                        candidate.path.display()
                    ),
                    Origin::Shared { .. } | Origin::Offered { .. } => {}
                }
            }
            let origin = |path: &Path, modified| origin_of(candidate.offered, path, modified);
            match split_file_as(&self.store, name, &candidate.path, &origin, shutdown) {
                Ok(SplitOutcome::Done(manifest)) => report.split.push(manifest.name),
                Ok(SplitOutcome::Changed) => {
                    log::info!(
                        "{} changed while it was being split; trying again on the next scan",
                        candidate.path.display()
                    );
                    report.failed.push(name.clone());
                }
                Ok(SplitOutcome::Interrupted) => {
                    report.cut_short = true;
                    return report;
                }
                Err(e) => {
                    self.notes.note(
                        log::Level::Warn,
                        format!("cannot share {}: {e}", candidate.path.display()),
                    );
                    report.failed.push(name.clone());
                }
            }
        }
        self.notes.end_scan();
        log::debug!(
            "scan: {} split, {} unchanged, {} removed, {} failed",
            report.split.len(),
            report.unchanged.len(),
            report.removed.len(),
            report.failed.len()
        );
        report
    }

    /// Removes from the store the contents this server described (shared or offered) that
    /// are no longer among `candidates`: their file is gone, or no longer shared.
    fn remove_unshared(&mut self, candidates: &[Candidate], report: &mut ScanReport) {
        let shared: HashSet<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
        let gone: Vec<(String, PathBuf)> = self
            .manifests
            .summaries()
            .filter_map(|summary| match &summary.origin {
                Origin::Shared { path, .. } | Origin::Offered { path, .. }
                    if !shared.contains(summary.name.as_str()) =>
                {
                    Some((summary.name.clone(), path.clone()))
                }
                _ => None,
            })
            .collect();
        for (name, path) in gone {
            match self.store.remove_content(&name) {
                Ok(()) => {
                    log::info!(
                        "stopped sharing {name}: {} is gone or no longer shared",
                        path.display()
                    );
                    report.removed.push(name);
                }
                Err(e) => self.notes.note(
                    log::Level::Warn,
                    format!("cannot remove {name} from the store: {e}"),
                ),
            }
        }
    }

    /// The files to share, one per content name, and whether every share could be listed.
    ///
    /// A folder of `--share` (or `served_files/`) shares its tree under bare relative names
    /// (`2024/a.jpg`); a folder of `shares.txt` under its own name first (`photos/2024/a.jpg`),
    /// which is what someone who shares a folder expects the others to see; a file, under its
    /// file name. The rules of a tree (links, hidden entries, depth) are [`shared::tree`]'s.
    fn candidates(&mut self) -> (Vec<Candidate>, bool) {
        let mut complete = true;
        let mut found: Vec<Candidate> = Vec::new();
        let mut by_name: HashMap<String, PathBuf> = HashMap::new();
        let roots: Vec<(PathBuf, bool)> = self
            .shares
            .iter()
            .map(|p| (p.clone(), false))
            .chain(self.listed.iter().map(|p| (p.clone(), true)))
            .collect();
        for (share, under_own_name) in roots {
            let root = std::path::absolute(&share).unwrap_or(share);
            let files = match fs::metadata(&root) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.notes.note(
                        log::Level::Warn,
                        format!("shared path {} does not exist", root.display()),
                    );
                    continue;
                }
                Err(e) => {
                    complete = false;
                    self.notes.note(
                        log::Level::Warn,
                        format!("cannot read shared path {}: {e}", root.display()),
                    );
                    continue;
                }
                Ok(meta) if meta.is_dir() => {
                    let own_name = root.file_name().and_then(|n| n.to_str());
                    let prefix = if under_own_name { own_name } else { None };
                    match self.list_folder(&root, prefix) {
                        Ok(files) => files,
                        Err(e) => {
                            complete = false;
                            self.notes.note(
                                log::Level::Warn,
                                format!("cannot list shared folder {}: {e}", root.display()),
                            );
                            continue;
                        }
                    }
                }
                Ok(meta) if meta.is_file() => match self.content_name(&root) {
                    Some(name) => vec![(name, root, meta)],
                    None => continue,
                },
                Ok(_) => {
                    self.notes.note(
                        log::Level::Warn,
                        format!(
                            "shared path {} is neither a file nor a folder",
                            root.display()
                        ),
                    );
                    continue;
                }
            };
            for (name, path, meta) in files {
                if self.excluded.iter().any(|e| exclusion_covers(e, &name)) {
                    continue;
                }
                let candidate = Candidate::of(name, path, &meta, false);
                self.admit(candidate, &mut found, &mut by_name);
            }
        }
        self.offered_candidates(&mut found, &mut by_name);
        // Legacy peers know `photos/a.jpg` as `photos%2Fa.jpg`: a content really named so
        // would be asked for under the same name. The plain one keeps it.
        let names: HashSet<String> = found.iter().map(|c| c.name.clone()).collect();
        let mut kept = Vec::with_capacity(found.len());
        for candidate in found {
            let flat = legacy_flat_name(&candidate.name);
            if candidate.name.contains('/') && names.contains(flat.as_ref()) {
                let message = format!(
                    "not sharing {}: legacy peers would see it as {flat}, the name of another shared file",
                    candidate.path.display()
                );
                self.notes.note(log::Level::Warn, message);
                continue;
            }
            kept.push(candidate);
        }
        (kept, complete)
    }

    /// Adds `candidate` to `found` unless a file of the same name is there already: the same
    /// file is let be; another is warned about (once), the first one keeping the name.
    fn admit(
        &mut self,
        candidate: Candidate,
        found: &mut Vec<Candidate>,
        by_name: &mut HashMap<String, PathBuf>,
    ) {
        match by_name.entry(candidate.name.clone()) {
            Entry::Occupied(first) => {
                if *first.get() != candidate.path {
                    let (verb, first_is) = if candidate.offered {
                        ("offering", "served")
                    } else {
                        ("sharing", "shared first")
                    };
                    let message = format!(
                        "not {verb} {}: {} has the same name {} and is {first_is}",
                        candidate.path.display(),
                        first.get().display(),
                        candidate.name
                    );
                    self.notes.note(log::Level::Warn, message);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(candidate.path.clone());
                found.push(candidate);
            }
        }
    }

    /// Adds to `found` the files offered to one user, under the names `sends.txt` records,
    /// unless a shared file of the same name is listed already (the same file: then it is
    /// served listed; another: warned about, and `downloader send` refuses that in the first
    /// place). A recorded name that cannot be a content name is skipped, with a warning:
    /// `sends.txt` is a file anyone with access to the folder may edit.
    fn offered_candidates(
        &mut self,
        found: &mut Vec<Candidate>,
        by_name: &mut HashMap<String, PathBuf>,
    ) {
        for (name, path) in self.offered.clone() {
            let bad_name = match validate_content_name(&name) {
                Err(e) => Some(format!("{name:?} cannot be a content name: {e}")),
                Ok(()) if is_legacy_ambiguous(&name) => Some(format!(
                    "{name:?} holds \"%2F\" and would read as another name to legacy peers"
                )),
                Ok(()) if path.to_str().is_none() => Some("its path is not valid UTF-8".into()),
                Ok(()) => None,
            };
            if let Some(why) = bad_name {
                self.notes.note(
                    log::Level::Warn,
                    format!("not offering {}: {why}", path.display()),
                );
                continue;
            }
            let meta = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => {
                    self.notes.note(
                        log::Level::Warn,
                        format!("not offering {}: not a regular file", path.display()),
                    );
                    continue;
                }
                Err(e) => {
                    self.notes.note(
                        log::Level::Warn,
                        format!("cannot offer {}: {e}", path.display()),
                    );
                    continue;
                }
            };
            self.admit(Candidate::of(name, path, &meta, true), found, by_name);
        }
    }

    /// The files of `folder`'s tree, named after `prefix` ([`shared::tree`]); what it skips is
    /// logged once (hidden and special files at debug level, the rest as warnings).
    fn list_folder(
        &mut self,
        folder: &Path,
        prefix: Option<&str>,
    ) -> io::Result<Vec<(String, PathBuf, Metadata)>> {
        let listing = list_tree(folder, prefix)?;
        for skip in listing.skipped {
            let level = if skip.is_warning() {
                log::Level::Warn
            } else {
                log::Level::Debug
            };
            self.notes.note(level, skip.to_string());
        }
        Ok(listing
            .files
            .into_iter()
            .map(|f| (f.name, f.path, f.meta))
            .collect())
    }

    /// The content name of a file shared by itself (its file name), or `None`, with a warning
    /// once, when it cannot be one.
    fn content_name(&mut self, path: &Path) -> Option<String> {
        let file_name = path.file_name().and_then(|n| n.to_str());
        let problem = match file_name {
            // The manifest records the path as text.
            _ if path.to_str().is_none() => "its path is not valid UTF-8".to_owned(),
            None => "it has no valid UTF-8 file name".to_owned(),
            Some(name) => match validate_component(name) {
                Ok(()) => return Some(name.to_owned()),
                Err(e) => format!("its name cannot be a content name: {e}"),
            },
        };
        self.notes.note(
            log::Level::Warn,
            format!("not sharing {}: {problem}", path.display()),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::split_file;
    use crate::split::tests::{assert_stored, chunk_files, fixture, pattern, rewrite};
    use shared::store::PlacedFile;

    #[test]
    fn a_note_is_logged_once_while_it_lasts_and_again_when_it_comes_back() {
        let mut notes = Notes::default();
        for _ in 0..3 {
            notes.note(log::Level::Warn, "share gone".into());
            notes.end_scan();
        }
        assert_eq!(notes.history, ["share gone"]);
        notes.end_scan(); // a scan that did not meet it: cleared
        notes.note(log::Level::Warn, "share gone".into());
        assert_eq!(notes.history, ["share gone", "share gone"]);
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
    fn each_file_is_servable_as_soon_as_it_is_hashed_and_a_scan_cut_short_goes_on_later() {
        let f = fixture();
        let names: Vec<String> = (1..=4).map(|i| format!("f{i}.bin")).collect();
        for (i, name) in names.iter().enumerate() {
            fs::write(f.root.join("share").join(name), pattern(1000 * (i + 1))).unwrap();
        }
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        // Between two files, what is servable: the files hashed so far, and no other.
        let mut seen: Vec<Vec<bool>> = Vec::new();
        let store = f.store.clone();
        let mut look = || {
            seen.push(
                names
                    .iter()
                    .map(|n| store.chunks_of(n).is_complete())
                    .collect(),
            );
            seen.len() == 3 // cut short before the third file
        };
        let report = sharer.scan_yielding(&Shutdown::new(), &mut look);
        assert!(report.cut_short);
        assert_eq!(report.split, ["f1.bin", "f2.bin"]);
        assert_eq!(
            seen,
            [
                vec![false, false, false, false],
                vec![true, false, false, false],
                vec![true, true, false, false],
            ]
        );
        // The next scan goes on from there: nothing hashed twice.
        let report = sharer.scan(&Shutdown::new());
        assert!(!report.cut_short);
        assert_eq!(report.unchanged, ["f1.bin", "f2.bin"]);
        assert_eq!(report.split, ["f3.bin", "f4.bin"]);
        for (i, name) in names.iter().enumerate() {
            assert_stored(&f.store, name, &pattern(1000 * (i + 1)));
        }
    }

    #[test]
    fn contents_no_longer_shared_are_removed_before_anything_is_hashed() {
        let f = fixture();
        fs::write(f.root.join("share").join("old.txt"), b"old").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.scan(&Shutdown::new());
        fs::remove_file(f.root.join("share").join("old.txt")).unwrap();
        fs::write(f.root.join("share").join("new.txt"), b"new").unwrap();
        let store = f.store.clone();
        let mut old_gone_first = None;
        let report = sharer.scan_yielding(&Shutdown::new(), &mut || {
            old_gone_first.get_or_insert(store.load_manifest("old.txt").unwrap().is_none());
            false
        });
        assert_eq!(old_gone_first, Some(true));
        assert_eq!(report.removed, ["old.txt"]);
        assert_eq!(report.split, ["new.txt"]);
    }

    #[test]
    fn offered_files_are_served_unlisted_until_no_longer_offered_and_shares_win() {
        let f = fixture();
        let outside = f.root.join("outside");
        fs::create_dir(&outside).unwrap();
        let report = outside.join("report.pdf");
        fs::write(&report, pattern(5000)).unwrap();
        let clash = outside.join("same.txt");
        fs::write(&clash, b"offered").unwrap();
        fs::write(f.root.join("share").join("same.txt"), b"shared").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.set_offered(vec![
            ("report.pdf".into(), report.clone()),
            ("same.txt".into(), clash.clone()),
        ]);
        let done = sharer.scan(&Shutdown::new());
        assert_eq!(done.split.len(), 2, "{done:?}");
        let origin = |name: &str| f.store.load_manifest(name).unwrap().map(|m| m.origin);
        assert!(
            matches!(origin("report.pdf"), Some(Origin::Offered { path, .. }) if path == report)
        );
        assert!(
            matches!(origin("same.txt"), Some(Origin::Shared { .. })),
            "the share wins"
        );
        let snap = f.store.snapshot().unwrap();
        assert!(snap.offered.contains_key("report.pdf"));
        assert!(!snap.metas.contains_key("report.pdf"));
        assert!(snap.chunks.iter().all(|c| c.content() != "report.pdf"));

        // Shared as well, from the same path: listed, without hashing it again, its chunk
        // digests and midstates kept (the cache holds none of them: loaded from the store).
        let hashed = f.store.load_manifest("report.pdf").unwrap().unwrap();
        let mut both = Sharer::new(f.store.clone(), vec![f.root.join("share"), report.clone()]);
        both.set_offered(vec![("report.pdf".into(), report.clone())]);
        let done = both.scan(&Shutdown::new());
        assert!(done.split.is_empty(), "{done:?}");
        let relisted = f.store.load_manifest("report.pdf").unwrap().unwrap();
        assert!(matches!(relisted.origin, Origin::Shared { .. }));
        assert_eq!(relisted.manifest, hashed.manifest);
        assert!(relisted.manifest.states.is_some());

        // No longer offered (expired, cancelled) nor shared: removed from the store.
        sharer.set_offered(Vec::new());
        let done = sharer.scan(&Shutdown::new());
        assert_eq!(done.removed, ["report.pdf"]);
        assert_eq!(origin("report.pdf"), None);
        assert!(report.exists(), "the file itself is left alone");
    }

    #[test]
    fn an_offered_file_is_served_under_its_recorded_nested_name_and_a_bad_name_is_skipped() {
        let f = fixture();
        let deep = f.root.join("outside").join("photos").join("2024");
        fs::create_dir_all(&deep).unwrap();
        let photo = deep.join("a b.jpg");
        fs::write(&photo, pattern(70_000)).unwrap();
        let other = deep.join("b.jpg");
        fs::write(&other, pattern(10)).unwrap();
        let mut sharer = Sharer::new(f.store.clone(), Vec::new());
        sharer.set_offered(vec![
            ("photos/2024/a b.jpg".into(), photo.clone()),
            ("../escape".into(), other.clone()),
            ("/abs".into(), other.clone()),
            ("a%2Fb/c".into(), other.clone()),
        ]);
        let done = sharer.scan(&Shutdown::new());
        assert_eq!(done.split, ["photos/2024/a b.jpg"], "{done:?}");
        let chunks = chunk_files(&f.store, "photos/2024/a b.jpg");
        assert_eq!(
            chunks.concat(),
            pattern(70_000),
            "served from the file, whole"
        );
        assert!(matches!(
            f.store.load_manifest("photos/2024/a b.jpg").unwrap().map(|m| m.origin),
            Some(Origin::Offered { path, .. }) if path == photo
        ));
        assert_eq!(
            f.store.load_manifest("a b.jpg").unwrap(),
            None,
            "not its file name"
        );
        let snap = f.store.snapshot().unwrap();
        assert!(snap.offered.contains_key("photos/2024/a b.jpg"));
        assert!(snap.metas.is_empty(), "unlisted");
        assert_eq!(snap.offered.len(), 1, "the bad names are skipped");
        let warned = |what: &str| sharer.notes.history.iter().any(|m| m.contains(what));
        assert!(
            warned("\"../escape\" cannot be a content name"),
            "{:?}",
            sharer.notes.history
        );
        assert!(warned("\"/abs\" cannot be a content name"));
        assert!(warned("\"a%2Fb/c\" holds"));
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
    fn a_file_changed_with_the_same_size_is_withheld_then_hashed_again() {
        let f = fixture();
        let path = f.root.join("share").join("x.bin");
        let data = pattern(5000);
        fs::write(&path, &data).unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.scan(&Shutdown::new());
        assert_stored(&f.store, "x.bin", &data);

        let mut changed = data.clone();
        changed[4000] ^= 0xff;
        rewrite(&path, &changed);
        // Before the next scan: neither announced nor counted as held.
        assert!(f.store.chunks_of("x.bin").is_empty());
        let snapshot = f.store.snapshot().unwrap();
        assert!(snapshot.chunks.is_empty() && snapshot.metas.is_empty());
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["x.bin"]);
        assert_stored(&f.store, "x.bin", &changed);
        assert_eq!(f.store.snapshot().unwrap().chunks.len(), 5);
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
        stored.origin = Origin::Downloaded {
            verified: true,
            file: Some(PlacedFile::of(&downloaded).unwrap()),
        };
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
            .notes
            .history
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
    fn hidden_files_and_invalid_names_are_skipped_and_subfolders_shared_by_path() {
        let f = fixture();
        let share = f.root.join("share");
        fs::write(share.join(".hidden"), b"secret").unwrap();
        fs::write(share.join("bad\nname.txt"), b"x").unwrap();
        fs::create_dir(share.join("sub")).unwrap();
        fs::write(share.join("sub").join("deep.txt"), b"deep").unwrap();
        fs::create_dir(share.join(".git")).unwrap();
        fs::write(share.join(".git").join("HEAD"), b"ref").unwrap();
        fs::write(share.join("ok.txt"), b"ok").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![share]);
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(report.split, ["ok.txt", "sub/deep.txt"]);
        let contents: Vec<String> = names_in(&f.store);
        assert_eq!(contents, ["ok.txt", "sub/deep.txt"]);
        assert_stored(&f.store, "sub/deep.txt", b"deep");
    }

    #[test]
    fn a_listed_folder_is_shared_whole_under_its_own_name() {
        let f = fixture();
        let photos = f.root.join("photos");
        fs::create_dir_all(photos.join("2024").join("summer")).unwrap();
        fs::create_dir_all(photos.join("empty")).unwrap();
        fs::write(photos.join("2024").join("a.jpg"), pattern(1000)).unwrap();
        fs::write(photos.join("2024").join("summer").join("b c.jpg"), b"bc").unwrap();
        fs::write(photos.join("top.txt"), b"").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.set_list(vec![photos.clone()], HashSet::new());
        let report = sharer.scan(&Shutdown::new());
        assert_eq!(
            report.split,
            [
                "photos/2024/a.jpg",
                "photos/2024/summer/b c.jpg",
                "photos/top.txt"
            ]
        );
        assert_stored(&f.store, "photos/2024/a.jpg", &pattern(1000));
        assert_stored(&f.store, "photos/top.txt", b"");

        // A folder exclusion takes its subtree out; a file exclusion one file.
        sharer.set_list(
            vec![photos.clone()],
            HashSet::from([
                "photos/2024/summer/".to_owned(),
                "photos/top.txt".to_owned(),
            ]),
        );
        let mut removed = sharer.scan(&Shutdown::new()).removed;
        removed.sort();
        assert_eq!(removed, ["photos/2024/summer/b c.jpg", "photos/top.txt"]);
        // A file added deep in the tree is picked up by the next scan.
        fs::write(photos.join("2024").join("new.bin"), b"new").unwrap();
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["photos/2024/new.bin"]);
    }

    #[test]
    fn a_nested_name_that_legacy_peers_would_confuse_with_another_is_not_shared() {
        let f = fixture();
        let share = f.root.join("share");
        fs::create_dir(share.join("a")).unwrap();
        fs::write(share.join("a").join("b"), b"nested").unwrap();
        fs::write(share.join("a%2Fb"), b"plain").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![share]);
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["a%2Fb"]);
        assert!(sharer
            .notes
            .history
            .iter()
            .any(|m| m.contains("legacy peers would see it as a%2Fb")));
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_share_are_skipped_with_one_warning() {
        let f = fixture();
        let share = f.root.join("share");
        let secret = f.root.join("secret.txt");
        fs::write(&secret, b"secret").unwrap();
        std::os::unix::fs::symlink(&secret, share.join("leak.txt")).unwrap();
        fs::write(share.join("real.txt"), b"real").unwrap();
        std::os::unix::fs::symlink(share.join("real.txt"), share.join("alias.txt")).unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![share]);
        for _ in 0..3 {
            sharer.scan(&Shutdown::new());
        }
        assert_eq!(names_in(&f.store), ["alias.txt", "real.txt"]);
        let warnings = sharer
            .notes
            .history
            .iter()
            .filter(|m| m.contains("leak.txt") && m.contains("outside the shared folder"))
            .count();
        assert_eq!(warnings, 1);
    }

    /// The contents the store holds a manifest of.
    fn names_in(store: &ChunkStore) -> Vec<String> {
        store
            .manifests()
            .into_iter()
            .map(|m| m.manifest.name)
            .collect()
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
    fn listed_paths_add_to_the_shares_and_exclusions_remove_any_name() {
        let f = fixture();
        fs::write(f.root.join("share").join("a.txt"), b"a").unwrap();
        fs::write(f.root.join("share").join("b.txt"), b"b").unwrap();
        let extra = f.root.join("extra.txt");
        fs::write(&extra, b"extra").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        sharer.set_list(vec![extra.clone()], HashSet::new());
        assert_eq!(sharer.scan(&Shutdown::new()).split.len(), 3);
        assert_stored(&f.store, "extra.txt", b"extra");

        // Excluded: a file of the share folder, which the list cannot remove otherwise.
        sharer.set_list(vec![extra], HashSet::from(["a.txt".to_owned()]));
        assert_eq!(sharer.scan(&Shutdown::new()).removed, ["a.txt"]);
        // No longer listed.
        sharer.set_list(Vec::new(), HashSet::from(["a.txt".to_owned()]));
        assert_eq!(sharer.scan(&Shutdown::new()).removed, ["extra.txt"]);
        let names: Vec<String> = names_in(&f.store);
        assert_eq!(names, ["b.txt"]);
    }

    #[test]
    fn shared_file_replaces_downloaded_content_of_the_same_name() {
        let f = fixture();
        let elsewhere = f.root.join("elsewhere.bin");
        fs::write(&elsewhere, b"downloaded bytes").unwrap();
        split_file(&f.store, "song.mp3", &elsewhere, &Shutdown::new()).unwrap();
        let mut stored = f.store.load_manifest("song.mp3").unwrap().unwrap();
        stored.origin = Origin::Downloaded {
            verified: false,
            file: Some(PlacedFile::of(&elsewhere).unwrap()),
        };
        f.store.save_manifest(&stored).unwrap();

        fs::write(f.root.join("share").join("song.mp3"), b"our own song").unwrap();
        let mut sharer = Sharer::new(f.store.clone(), vec![f.root.join("share")]);
        assert_eq!(sharer.scan(&Shutdown::new()).split, ["song.mp3"]);
        assert_stored(&f.store, "song.mp3", b"our own song");
    }
}
