//! Reading the store again without reading all of it: the announcer looks at it several times a
//! second and the chunk server at every scan, and with 10,000 contents a full read (every
//! manifest opened and parsed, every file served in place looked at) costs a tenth of a second
//! of CPU or more.
//!
//! [`ManifestCache`] keeps a [summary](ManifestSummary) of each manifest last read (name,
//! identity as announced, origin; not the chunk digests nor the midstates, most of a
//! manifest's size), each with the stamp of its file (inode, size, modification and change
//! times). The programs only ever change a manifest by a rename into `.manifests/` or a removal
//! from it ([`crate::fsutil::write_atomic`]), which sets that folder's modification time: while
//! the folder's stamp is unchanged nothing is read (one `stat`); when it changed, the folder is
//! listed, each manifest `stat`ed, and only those whose stamp changed are read again.
//!
//! A stamp cannot tell apart two changes made within one tick of the file system's clock, so a
//! stamp less than [`RACY`] old when it was taken is not trusted: what it covers is read again
//! next time (git treats "racily clean" index entries the same way). A full read every
//! [`FULL_READ_EVERY`] covers the rest: a file system whose clock disagrees with ours, a
//! manifest edited in place by hand.
//!
//! [`SnapshotWatch`] builds the announcer's [`Snapshot`] on top of it: the chunk files of
//! `temp/` are listed again only when that folder's stamp changed, and each file served in
//! place is looked at (one `stat`) when its manifest changed, and all of them when the caller
//! asks (the announcer does every few seconds: nobody is told when a file in `downloads/` is
//! edited or deleted).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::chunk::ChunkName;

use super::{content_of_stem, ChunkStore, InPlace, ManifestSummary, Snapshot, StoreError};

/// How old a stamp must be when taken to be trusted: far more than the tick of any local file
/// system's clock (a few milliseconds), so a change made after the look gives another stamp.
pub const RACY: Duration = Duration::from_secs(1);

/// How often a [`ManifestCache`] reads every manifest whatever the stamps say.
pub const FULL_READ_EVERY: Duration = Duration::from_secs(300);

/// What a file or folder looked like: enough to tell that it changed, as long as it was
/// [settled](Stamp::settled) when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    /// The inode change time (Unix), which every write, rename and `touch` moves forward.
    changed: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        #[cfg(unix)]
        let (ino, changed) = {
            use std::os::unix::fs::MetadataExt;
            let changed = u64::try_from(meta.ctime()).ok().and_then(|secs| {
                let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            });
            (meta.ino(), changed)
        };
        #[cfg(not(unix))]
        let (ino, changed) = (0, None);
        Stamp {
            ino,
            len: meta.len(),
            modified: meta.modified().ok(),
            changed,
        }
    }

    /// The stamp of `path` (not following a symbolic link), `None` when it cannot be looked at.
    fn of_path(path: &Path) -> Option<Stamp> {
        fs::symlink_metadata(path).ok().map(|m| Stamp::of(&m))
    }

    /// Whether a change made after `taken` is sure to give another stamp: the modification
    /// time was at least [`RACY`] older than `taken`, so a write since has moved it. (A
    /// change that sets the time back moves the change time, which the stamp compares too.)
    fn settled(&self, taken: SystemTime) -> bool {
        self.modified
            .is_some_and(|t| taken.duration_since(t).is_ok_and(|age| age >= RACY))
    }
}

/// The stamp of a folder when it was last listed, if it can be trusted to change with it.
fn trusted(stamp: Option<Stamp>, taken: SystemTime) -> Option<Stamp> {
    stamp.filter(|s| s.settled(taken))
}

/// One manifest as last read, summed up.
#[derive(Debug)]
struct Entry {
    stamp: Stamp,
    /// Whether `stamp` was settled when taken: otherwise the file is read again next time.
    trusted: bool,
    /// `None` when the file could not be read or parsed, or names another content.
    summary: Option<ManifestSummary>,
}

/// The manifests of a store, read again only where they changed; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct ManifestCache {
    store: ChunkStore,
    /// The stamp of `.manifests/` when last listed, if trusted.
    listed: Option<Stamp>,
    /// By content name.
    entries: BTreeMap<String, Entry>,
    /// When every manifest was last read.
    last_full: Option<Instant>,
}

impl ManifestCache {
    /// A cache of `store`'s manifests, empty until the first [`ManifestCache::refresh`].
    pub fn new(store: ChunkStore) -> ManifestCache {
        ManifestCache {
            store,
            listed: None,
            entries: BTreeMap::new(),
            last_full: None,
        }
    }

    /// The store it reads.
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Whether the manifests may have changed since the last [`ManifestCache::refresh`]: one
    /// `stat` of `.manifests/`.
    pub fn may_have_changed(&self) -> bool {
        self.full_read_due()
            || self.listed.is_none()
            || self.listed != Stamp::of_path(&self.store.manifests_dir())
    }

    fn full_read_due(&self) -> bool {
        self.last_full
            .is_none_or(|t| t.elapsed() >= FULL_READ_EVERY)
    }

    /// Brings the cache up to date with `.manifests/`, reading only the manifests whose file
    /// changed; returns whether any manifest appeared, went or changed. A manifest that cannot
    /// be read or parsed counts as absent (logged at debug level: callers look often).
    pub fn refresh(&mut self) -> bool {
        let full = self.full_read_due();
        let dir = self.store.manifests_dir();
        // Taken before listing: a change made while listing gives another stamp next time.
        let taken = SystemTime::now();
        let stamp = Stamp::of_path(&dir);
        if !full && self.listed.is_some() && self.listed == stamp {
            return false;
        }
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) => {
                log::debug!("cannot list {}: {e}", dir.display());
                self.listed = None;
                let changed = self.entries.values().any(|e| e.summary.is_some());
                self.entries.clear();
                return changed;
            }
        };
        let mut previous = std::mem::take(&mut self.entries);
        let mut changed = false;
        for dir_entry in listing.flatten() {
            let file_name = dir_entry.file_name();
            let Some(content) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(content_of_stem)
            else {
                continue;
            };
            // Gone since listed: as if not listed.
            let Ok(meta) = dir_entry.metadata() else {
                continue;
            };
            let stamp = Stamp::of(&meta);
            let old = previous.remove(&content);
            let entry = match old {
                Some(old) if !full && old.trusted && old.stamp == stamp => old,
                old => {
                    let summary = match self.store.load_manifest(&content) {
                        Ok(Some(m)) if m.manifest.name == content => Some(m.into()),
                        Ok(_) => None,
                        Err(e) => {
                            log::debug!("skipping {e}");
                            None
                        }
                    };
                    // As strong as comparing whole manifests for all that is announced: the
                    // root in the summary is a digest over the size and the chunk digests. A
                    // change of the midstates alone is not one (no announcement carries them).
                    changed |= old.and_then(|o| o.summary) != summary;
                    Entry {
                        stamp,
                        trusted: stamp.settled(taken),
                        summary,
                    }
                }
            };
            self.entries.insert(content, entry);
        }
        changed |= previous.values().any(|e| e.summary.is_some());
        self.listed = trusted(stamp, taken);
        if full {
            self.last_full = Some(Instant::now());
        }
        changed
    }

    /// The summary of the manifest of `content` as last read.
    pub fn get(&self, content: &str) -> Option<&ManifestSummary> {
        self.entries.get(content)?.summary.as_ref()
    }

    /// The summary of every manifest as last read, by content name.
    pub fn summaries(&self) -> impl Iterator<Item = &ManifestSummary> {
        self.entries.values().filter_map(|e| e.summary.as_ref())
    }

    /// How many manifests were read.
    pub fn len(&self) -> usize {
        self.summaries().count()
    }

    /// Whether no manifest was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The announcer's view of a store: [`ChunkStore::snapshot`], read again only where the store
/// changed; see the [module documentation](self).
#[derive(Debug)]
pub struct SnapshotWatch {
    manifests: ManifestCache,
    /// The stamp of `temp/` when its chunk files were last listed, if trusted.
    listed: Option<Stamp>,
    chunk_files: Vec<ChunkName>,
    /// Each content served in place: its file as hashed, and whether the file was still so
    /// when last looked at.
    in_place: HashMap<String, (InPlace, bool)>,
    /// Whether a snapshot was handed out since the last change.
    current: bool,
}

impl SnapshotWatch {
    /// A watch on `store`; the first [`SnapshotWatch::refresh`] reads it all.
    pub fn new(store: ChunkStore) -> SnapshotWatch {
        SnapshotWatch {
            manifests: ManifestCache::new(store),
            listed: None,
            chunk_files: Vec::new(),
            in_place: HashMap::new(),
            current: false,
        }
    }

    /// Whether the store may have changed since the last [`SnapshotWatch::refresh`]: a `stat`
    /// of `temp/` and of `.manifests/`. Files served in place are not looked at.
    pub fn may_have_changed(&self) -> bool {
        self.manifests.may_have_changed()
            || self.listed.is_none()
            || self.listed != Stamp::of_path(self.manifests.store().root())
    }

    /// Reads again what changed in the store, and with `look_at_files` every file served in
    /// place (one `stat` each; otherwise only those whose manifest changed). Returns the new
    /// snapshot when it may differ from the one returned last (always, the first time), `None`
    /// when nothing it is made of changed.
    ///
    /// # Errors
    /// When `temp/` cannot be listed.
    pub fn refresh(&mut self, look_at_files: bool) -> Result<Option<Snapshot>, StoreError> {
        let manifests_changed = self.manifests.refresh();
        let mut changed = manifests_changed;
        let root = self.manifests.store().root().to_owned();
        let taken = SystemTime::now();
        let stamp = Stamp::of_path(&root);
        if self.listed.is_none() || self.listed != stamp {
            let chunk_files = self.manifests.store().list_chunks()?;
            changed |= chunk_files != self.chunk_files;
            self.chunk_files = chunk_files;
            self.listed = trusted(stamp, taken);
        }
        if manifests_changed {
            let mut in_place = HashMap::with_capacity(self.in_place.len());
            for m in self.manifests.summaries() {
                let Some(file) = m.in_place() else { continue };
                let name = &m.name;
                let matches = match self.in_place.remove(name) {
                    Some((old, matches)) if old == file && !look_at_files => matches,
                    old => {
                        let matches = file.matches();
                        changed |= old.is_none_or(|(_, was)| was != matches);
                        matches
                    }
                };
                in_place.insert(name.clone(), (file, matches));
            }
            changed |= !self.in_place.is_empty();
            self.in_place = in_place;
        } else if look_at_files {
            // The same contents as last time: only their files are looked at.
            for (file, matches) in self.in_place.values_mut() {
                let now = file.matches();
                changed |= now != *matches;
                *matches = now;
            }
        }
        if self.current && !changed {
            return Ok(None);
        }
        self.current = true;
        let in_place = &self.in_place;
        Ok(Some(Snapshot::build(
            self.manifests.summaries(),
            self.chunk_files.iter().cloned(),
            |m| in_place.get(&m.name).is_some_and(|(_, ok)| *ok),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::protocol::{ContentMeta, Manifest};
    use crate::store::{Origin, PlacedFile, StoredManifest};
    use std::fs::File;

    fn manifest(name: &str, seed: u8, origin: Origin) -> StoredManifest {
        StoredManifest {
            manifest: Manifest {
                name: name.to_owned(),
                size: 3,
                sha256: Digest::of(&[seed]),
                chunks: std::array::from_fn(|i| {
                    Digest::of(&[&[seed][..], &i.to_le_bytes()].concat())
                }),
                states: None,
            },
            origin,
        }
    }

    fn downloaded() -> Origin {
        Origin::Downloaded {
            verified: true,
            file: None,
        }
    }

    /// Makes every stamp under `dir` (the folder, and the files in it) look old, as a store
    /// left alone for a while does, so the cache trusts them.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        let set = |p: &Path| {
            if let Ok(f) = File::open(p) {
                let _ = f.set_modified(old);
            }
        };
        if path.is_dir() {
            for entry in fs::read_dir(path).unwrap().flatten() {
                if entry.path().is_file() {
                    set(&entry.path());
                }
            }
        }
        set(path);
    }

    #[test]
    fn a_settled_stamp_is_trusted_and_a_fresh_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        let now = SystemTime::now();
        let fresh = Stamp::of_path(&path).unwrap();
        assert!(!fresh.settled(now), "written just now");
        let later = now + RACY + Duration::from_millis(10);
        assert!(fresh.settled(later));
        let unknown = Stamp {
            modified: None,
            ..fresh
        };
        assert!(!unknown.settled(later), "no time: never trusted");
    }

    #[test]
    fn the_cache_reads_only_what_changed_and_sees_additions_rewrites_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        store
            .save_manifest(&manifest("a", 1, downloaded()))
            .unwrap();
        store
            .save_manifest(&manifest("b", 2, downloaded()))
            .unwrap();
        fs::write(store.manifest_path("bad"), b"{not json").unwrap();
        age(&store.manifests_dir());
        let mut cache = ManifestCache::new(store.clone());
        assert!(cache.may_have_changed());
        assert!(cache.refresh());
        let names: Vec<&str> = cache.summaries().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "the corrupt one counts as absent");
        assert!(!cache.may_have_changed(), "a settled folder, unchanged");
        assert!(!cache.refresh());

        // A manifest changed behind the cache's back, without touching the folder (an edit in
        // place, which the programs never make) is not seen: the cache really reads nothing
        // while the folder's stamp holds.
        let sneaky = store.manifest_path("a");
        let mut edited = manifest("a", 9, downloaded());
        edited.manifest.size = 4;
        fs::write(&sneaky, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
        assert!(!cache.may_have_changed());
        assert!(!cache.refresh());
        assert_eq!(cache.get("a").unwrap().meta.size, 3);

        // The programs' own changes (rename, removal) are seen at once.
        store
            .save_manifest(&manifest("c", 3, downloaded()))
            .unwrap();
        store.remove_content("b").unwrap();
        assert!(cache.may_have_changed());
        assert!(cache.refresh());
        let names: Vec<&str> = cache.summaries().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        // "a" was read again: its stamp changed when it was edited.
        assert_eq!(cache.get("a").unwrap().meta.size, 4);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_cache_sees_every_change_announced_but_keeps_no_chunk_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let mut cache = ManifestCache::new(store.clone());
        let mut stored = manifest("a", 1, downloaded());
        store.save_manifest(&stored).unwrap();
        assert!(cache.refresh());
        // Each save is within the racy window, so each refresh reads the manifest again: what
        // it returns is the comparison of the summaries alone.
        let mut seen = |stored: &StoredManifest| {
            store.save_manifest(stored).unwrap();
            cache.refresh()
        };
        stored.origin = Origin::Downloaded {
            verified: false,
            file: None,
        };
        assert!(seen(&stored), "another origin");
        stored.manifest.sha256 = Digest::of(b"other");
        assert!(seen(&stored), "another SHA-256");
        stored.manifest.size += 1;
        assert!(seen(&stored), "another size");
        stored.manifest.chunks[4] = Digest::of(b"other chunk");
        assert!(seen(&stored), "another chunk digest, through the root");
        stored.manifest.states = Manifest::of_bytes("a", b"abcdef").states;
        assert!(
            !seen(&stored),
            "midstates alone: never announced, not a change"
        );
        let summary = cache.get("a").unwrap();
        assert_eq!(
            (summary.meta, &summary.origin),
            (stored.manifest.meta(), &stored.origin)
        );
        // Every field named: a chunk digest or a midstate kept here fails to compile.
        let ManifestSummary {
            name: _,
            meta:
                ContentMeta {
                    size: _,
                    sha256: _,
                    root: _,
                },
            origin: _,
        } = summary;
    }

    #[test]
    fn changes_within_the_racy_window_are_never_missed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let mut cache = ManifestCache::new(store.clone());
        store
            .save_manifest(&manifest("a", 1, downloaded()))
            .unwrap();
        assert!(cache.refresh());
        // Rewritten at once, quite possibly within the same tick of the file system's clock:
        // the folder's stamp may not have moved, but it was too fresh to be trusted.
        store
            .save_manifest(&manifest("a", 2, downloaded()))
            .unwrap();
        assert!(cache.may_have_changed());
        assert!(cache.refresh());
        assert_eq!(cache.get("a").unwrap().meta.sha256, Digest::of(&[2]));
        // And the same in place, same size, same inode if the file system reuses it.
        let path = store.manifest_path("a");
        let third = serde_json::to_vec_pretty(&manifest("a", 3, downloaded())).unwrap();
        fs::write(&path, third).unwrap();
        assert!(cache.refresh());
        assert_eq!(cache.get("a").unwrap().meta.sha256, Digest::of(&[3]));
    }

    #[test]
    fn a_full_read_is_made_when_due_whatever_the_stamps_say() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        store
            .save_manifest(&manifest("a", 1, downloaded()))
            .unwrap();
        age(&store.manifests_dir());
        let mut cache = ManifestCache::new(store.clone());
        cache.refresh();
        fs::write(
            store.manifest_path("a"),
            serde_json::to_vec_pretty(&manifest("a", 2, downloaded())).unwrap(),
        )
        .unwrap();
        assert!(
            !cache.refresh(),
            "edited in place: the folder did not change"
        );
        cache.last_full = Instant::now().checked_sub(FULL_READ_EVERY);
        assert!(cache.may_have_changed());
        assert!(cache.refresh());
        assert_eq!(cache.get("a").unwrap().meta.sha256, Digest::of(&[2]));
    }

    #[test]
    fn the_watch_gives_the_same_snapshot_as_a_full_read_and_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let file = dir.path().join("placed.bin");
        fs::write(&file, b"abc").unwrap();
        let placed = Origin::Downloaded {
            verified: true,
            file: Some(PlacedFile::of(&file).unwrap()),
        };
        store
            .save_manifest(&manifest("placed.bin", 1, placed))
            .unwrap();
        store
            .save_manifest(&manifest("old.bin", 2, downloaded()))
            .unwrap();
        fs::write(store.root().join("old.bin_2"), b"x").unwrap();
        let mut watch = SnapshotWatch::new(store.clone());
        let first = watch.refresh(false).unwrap().expect("the first read");
        assert_eq!(first, store.snapshot().unwrap());
        assert_eq!(first.chunks.len(), 6);
        age(store.root());
        age(&store.manifests_dir());
        // Read once more (the stamps are settled now), then nothing new.
        watch.refresh(false).unwrap();
        assert!(!watch.may_have_changed());
        assert_eq!(watch.refresh(false).unwrap(), None);
        assert_eq!(watch.refresh(true).unwrap(), None, "the file is as hashed");

        // A chunk file arrives (by rename, as downloads place them).
        let part = store.incoming_dir().join("old.bin_3.part");
        fs::write(&part, b"y").unwrap();
        fs::rename(&part, store.root().join("old.bin_3")).unwrap();
        assert!(watch.may_have_changed());
        let snap = watch.refresh(false).unwrap().expect("a chunk more");
        assert_eq!(snap, store.snapshot().unwrap());
        assert_eq!(snap.chunks.len(), 7);

        // The placed file is edited: seen when files are looked at, not before.
        fs::write(&file, b"abcd").unwrap();
        age(store.root());
        age(&store.manifests_dir());
        watch.refresh(false).unwrap();
        assert_eq!(watch.refresh(false).unwrap(), None);
        let snap = watch.refresh(true).unwrap().expect("the file changed");
        assert_eq!(snap, store.snapshot().unwrap());
        assert!(!snap.metas.contains_key("placed.bin"));

        // Removed: withdrawn at once.
        store.remove_content("old.bin").unwrap();
        let snap = watch.refresh(false).unwrap().expect("a content less");
        assert_eq!(snap, store.snapshot().unwrap());
        assert!(snap.chunks.is_empty(), "{snap:?}");
    }
}
