//! Where a download's chunks go, and what becomes of them.
//!
//! Chunks go to the chunk store (`temp/`) while in transit, unless the store already holds a
//! different content of the same name: then they go to a private folder
//! ([`ChunkStore::private_dir`]) and are not re-served. Once the file is assembled, checked and
//! in `downloads/`, the store's manifest records that file ([`PlacedFile`]), the content is
//! served from it in place, and the chunk files go: one copy on disk. This module chooses
//! where chunks go, keeps what an interrupted run left (or what the store already serves in
//! place), checks the disk has room, records the manifest once the file is whole, and rolls
//! back what a failed round leaves. Every file name comes from `shared::store`.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::protocol::Manifest;
use shared::store::{
    chunk_path_in, copy_part_path_in, part_path_in, remove_if_exists, ChunkStore, InPlace, Origin,
    PlacedFile, StoredManifest,
};
use shared::CHUNKS_PER_FILE;

use super::error::{io_error, DownloadError};
use super::manifest::Obtained;
use crate::catalog::Target;
use crate::fetch::Expected;

/// Where this download keeps its chunks.
pub(super) enum Placement {
    /// In the chunk store: announced and served once verified.
    Store,
    /// In a private folder, because the store holds another content of the same name.
    Private(PathBuf),
}

impl Placement {
    /// Chooses where the chunks of `target` go, and records the manifest `obtained` (when there
    /// is one) in the store when they go there.
    pub(super) fn choose(
        store: &ChunkStore,
        target: &Target,
        obtained: Option<&Obtained>,
    ) -> Result<Placement, DownloadError> {
        let existing = match store.load_manifest(&target.name) {
            Ok(existing) => existing,
            Err(e) => {
                log::warn!("ignoring {e}");
                None
            }
        };
        let manifest = obtained.map(|o| &o.manifest);
        // What the store holds may be replaced: an unverified download, a legacy cache, or a
        // download whose file in `downloads/` was since changed or removed (it is no longer
        // served; a shared file that changed is the chunk server's to hash again).
        let replaceable = |m: &StoredManifest| match &m.origin {
            Origin::Downloading
            | Origin::Downloaded {
                verified: false, ..
            } => true,
            Origin::Downloaded { file: Some(_), .. } => m.in_place().is_some_and(|f| !f.matches()),
            _ => false,
        };
        let shared_in_store = match (manifest, &existing) {
            (Some(m), Some(e)) => e.manifest.sha256 == m.sha256 || replaceable(e),
            (None, Some(e)) => replaceable(e) && e.origin != Origin::Downloading,
            (_, None) => true,
        };
        if shared_in_store {
            match (obtained, &existing) {
                (Some(o), existing)
                    if existing.as_ref().is_none_or(|e| e.manifest != o.manifest) =>
                {
                    store.save_manifest(&StoredManifest {
                        manifest: o.manifest.clone(),
                        origin: if o.trusted {
                            Origin::Downloaded {
                                verified: true,
                                file: None,
                            }
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
        let dir = store.private_dir(&target.name);
        fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        Ok(Placement::Private(dir))
    }

    /// Where a complete chunk goes.
    pub(super) fn chunk_path(&self, store: &ChunkStore, chunk: &ChunkName) -> PathBuf {
        match self {
            Placement::Store => store.chunk_path(chunk),
            Placement::Private(dir) => chunk_path_in(dir, chunk),
        }
    }

    /// Where a chunk is received, before it is checked and renamed to [`Self::chunk_path`].
    pub(super) fn part_path(&self, store: &ChunkStore, chunk: &ChunkName) -> PathBuf {
        part_path_in(self.parts_dir(store).as_path(), chunk)
    }

    /// Where an endgame copy of a chunk, asked of holder number `holder`, is received.
    pub(super) fn copy_part_path(
        &self,
        store: &ChunkStore,
        chunk: &ChunkName,
        holder: usize,
    ) -> PathBuf {
        copy_part_path_in(self.parts_dir(store).as_path(), chunk, holder)
    }

    /// Whether chunks of this content are here in any other form than the file being
    /// received: chunk files or part files an earlier run left, or the file the store serves
    /// the content from in place. Those are kept, and the chunks assembled as before.
    pub(super) fn has_chunks(
        &self,
        store: &ChunkStore,
        names: &[ChunkName; CHUNKS_PER_FILE],
    ) -> bool {
        names.iter().any(|chunk| {
            self.chunk_path(store, chunk).exists() || self.part_path(store, chunk).exists()
        }) || (matches!(self, Placement::Store)
            && names
                .first()
                .is_some_and(|c| in_place(store, c.content()).is_some()))
    }

    /// Where parts, and the file being received, go.
    pub(super) fn parts_dir(&self, store: &ChunkStore) -> PathBuf {
        match self {
            Placement::Store => store.incoming_dir(),
            Placement::Private(dir) => dir.clone(),
        }
    }

    /// Whether the chunk is already here and correct, as an earlier, interrupted download
    /// left it: complete, or fully received but not yet renamed when that run stopped; or, in
    /// the store, as a range of the file the content is served from in place (a shared file,
    /// or this content already in `downloads/`), left where it is.
    pub(super) fn keeps(&self, store: &ChunkStore, chunk: &ChunkName, expected: Expected) -> bool {
        let dest = self.chunk_path(store, chunk);
        let part = self.part_path(store, chunk);
        file_matches(&dest, expected)
            || (file_matches(&part, expected) && fs::rename(&part, &dest).is_ok())
            || (matches!(self, Placement::Store)
                && in_place(store, chunk.content()).is_some_and(|f| {
                    f.open_chunk(chunk).is_ok_and(|reader| {
                        Digest::of_reader(reader).is_ok_and(|(digest, len)| {
                            len == expected.len && digest == expected.sha256
                        })
                    })
                }))
    }

    /// Opens a chunk for assembling: its file here, else its range of the file the store serves
    /// it from in place ([`Self::keeps`]).
    pub(super) fn open_chunk(
        &self,
        store: &ChunkStore,
        chunk: &ChunkName,
    ) -> Result<Box<dyn io::Read>, DownloadError> {
        let path = self.chunk_path(store, chunk);
        match File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && matches!(self, Placement::Store) => {
                let Some(in_place) = in_place(store, chunk.content()) else {
                    return Err(io_error("read", &path)(e));
                };
                match in_place.open_chunk(chunk) {
                    Ok(reader) => Ok(Box::new(reader)),
                    Err(e) => Err(io_error("read", &in_place.path)(io::Error::other(e))),
                }
            }
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    /// Records the finished content, now at `placed` in `downloads/`: the private folder goes;
    /// or the store's manifest says the whole file matched (`manifest`) or, for a legacy
    /// content, what arrived (chunk digests to serve our peers with, but no vouching for the
    /// file), and that the content is served from `placed`, in place; its chunk files in
    /// `temp/` go. A content the store already serves in place from a shared file stays so.
    pub(super) fn finish(
        &self,
        store: &ChunkStore,
        manifest: Option<&Manifest>,
        received: Manifest,
        placed: &Path,
    ) -> Result<(), DownloadError> {
        if let Placement::Private(dir) = self {
            let _ = fs::remove_dir_all(dir);
            return Ok(());
        }
        let served_in_place = |m: &StoredManifest| {
            matches!(m.origin, Origin::Shared { .. })
                && manifest.is_some_and(|wanted| *wanted == m.manifest)
                && m.in_place().is_some_and(|f| f.matches())
        };
        if !store
            .load_manifest(&received.name)
            .is_ok_and(|m| m.as_ref().is_some_and(served_in_place))
        {
            let file = Some(PlacedFile::of(placed).map_err(io_error("read", placed))?);
            let stored = match manifest {
                None => StoredManifest {
                    manifest: received.clone(),
                    origin: Origin::Downloaded {
                        verified: false,
                        file,
                    },
                },
                Some(m) => StoredManifest {
                    manifest: m.clone(),
                    origin: Origin::Downloaded {
                        verified: true,
                        file,
                    },
                },
            };
            store.save_manifest(&stored)?;
        }
        // The manifest now points at the file: the chunks in `temp/` are a second copy.
        store.remove_chunk_files(&received.name)?;
        if let Ok(names) = ChunkName::all_of(&received.name) {
            for chunk in &names {
                remove_if_exists(&store.incoming_path(chunk))?;
            }
        }
        Ok(())
    }

    /// The file `content` is already in, in `downloads/`, when the store serves it from there
    /// in place and it is still as verified: then it needs no fetching, and no copy.
    pub(super) fn placed_file(&self, store: &ChunkStore, content: &str) -> Option<InPlace> {
        if !matches!(self, Placement::Store) {
            return None;
        }
        let stored = store.load_manifest(content).ok().flatten()?;
        match &stored.origin {
            Origin::Downloaded { file: Some(_), .. } => {}
            _ => return None,
        }
        in_place(store, content)
    }
}

/// The file the store serves `content` from in place, if it does and that file is still as
/// hashed.
fn in_place(store: &ChunkStore, content: &str) -> Option<InPlace> {
    let stored = store.load_manifest(content).ok().flatten()?;
    if stored.manifest.name != content {
        return None;
    }
    stored.in_place().filter(InPlace::matches)
}

/// Creates an empty chunk file at `path` (a legacy chunk taken as empty).
pub(super) fn create_empty(path: &Path) -> Result<(), DownloadError> {
    File::create(path).map_err(io_error("create", path))?;
    Ok(())
}

/// Removes what a manifest that failed the whole-file check left: its manifest, chunks and part
/// files in the store when the download used the store, or the private folder it used because
/// the store holds another content of that name, which stays untouched.
pub(super) fn roll_back(
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
    super::receiving::Receiving::discard(&store.incoming_dir(), name);
    store.clean_leftovers(name);
    Ok(())
}

/// After a failed legacy round: what arrived is unverifiable, and would otherwise be announced
/// and served, so it goes, unless the store holds a manifest of that name (another content's
/// chunks, or a verified copy).
pub(super) fn discard_legacy(store: &ChunkStore, name: &str, names: &[ChunkName; CHUNKS_PER_FILE]) {
    if store.load_manifest(name).is_ok_and(|m| m.is_some()) {
        return;
    }
    for chunk in names {
        let _ = remove_if_exists(&store.chunk_path(chunk));
        let _ = remove_if_exists(&store.incoming_path(chunk));
    }
}

/// Fails with a "No space left" error unless `need` bytes fit on the disk of `dir` with
/// `min_free` to spare.
pub(super) fn check_free_space(dir: &Path, need: u64, min_free: u64) -> Result<(), DownloadError> {
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
