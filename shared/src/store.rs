//! The chunk store: the `temp/` folder of a peer, and what is known about its contents.
//!
//! Layout inside `temp/`:
//! ```text
//! photo.png_1 … photo.png_5     complete chunks: announced and served as they are
//! .manifests/photo.png.json     the manifest of each content whose chunks are here
//! .incoming/photo.png_3.part    a chunk being received; never announced or served
//! ```
//! The chunk server and the downloader write here; the announcer and chunk server read. A chunk
//! file only ever appears by rename, so whatever has a chunk name is complete. The store holds at
//! most one content per name: the manifest says which one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkName, ChunkSet};
use crate::fsutil::{self, OpenError};
use crate::protocol::{ContentMeta, Manifest};

const MANIFESTS: &str = ".manifests";
const INCOMING: &str = ".incoming";

/// Where a content in the store came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// Split by the chunk server from a file this peer shares.
    Shared {
        /// The shared file.
        path: PathBuf,
        /// Its modification time when split; a change triggers a new split.
        modified: SystemTime,
    },
    /// Downloaded from other peers, complete and assembled.
    Downloaded {
        /// Whether the whole file matched the SHA-256 its holders announced (always, between
        /// our peers), or it came only from legacy peers and was only hashed as received: such
        /// a content is announced without a digest, legacy style, so nobody downstream takes
        /// it for verified.
        verified: bool,
    },
    /// Being downloaded: the manifest came from a holder and matches the root that holder
    /// announced, but the whole file has not been verified yet. Until it is, the content's
    /// chunks are neither announced nor served: a forged manifest must not spread.
    Downloading,
}

impl Origin {
    /// Whether this peer vouches for the content's digest when announcing it.
    pub fn vouches(&self) -> bool {
        matches!(
            self,
            Origin::Shared { .. } | Origin::Downloaded { verified: true }
        )
    }
}

/// A manifest as kept in the store, with where the content came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredManifest {
    /// The manifest served to other peers.
    pub manifest: Manifest,
    /// Where the content came from.
    pub origin: Origin,
}

/// What the announcer needs: the complete chunks present, and the identity of each content that
/// has a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Chunk names present, sorted.
    pub chunks: Vec<ChunkName>,
    /// Size and digest of each content that has a manifest.
    pub metas: BTreeMap<String, ContentMeta>,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The manifest's name in the store is a symbolic link or a special file: planted there,
    /// since the programs write only regular files. It is never followed or read.
    #[error("ignoring {path}: {why}")]
    NotAFile {
        /// The manifest's path.
        path: PathBuf,
        /// What it is.
        why: OpenError,
    },
    /// A manifest file is not valid JSON of the expected shape.
    #[error("corrupt manifest {path}: {source}")]
    CorruptManifest {
        /// The manifest file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A handle on a peer's `temp/` folder.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
}

impl ChunkStore {
    /// Opens (and creates where missing) the store at `root` (a peer's `temp/`).
    ///
    /// # Errors
    /// When the folders cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<ChunkStore, StoreError> {
        let root = root.into();
        for dir in [root.join(MANIFESTS), root.join(INCOMING)] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(ChunkStore { root })
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a complete chunk lives.
    pub fn chunk_path(&self, name: &ChunkName) -> PathBuf {
        self.root.join(name.to_string())
    }

    /// Where a chunk is received before it is checked and renamed to [`Self::chunk_path`].
    pub fn incoming_path(&self, name: &ChunkName) -> PathBuf {
        self.root.join(INCOMING).join(format!("{name}.part"))
    }

    /// The folder of chunks being received.
    pub fn incoming_dir(&self) -> PathBuf {
        self.root.join(INCOMING)
    }

    /// The folder of manifests.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join(MANIFESTS)
    }

    /// Where the manifest of `content` lives.
    pub fn manifest_path(&self, content: &str) -> PathBuf {
        self.root.join(MANIFESTS).join(format!("{content}.json"))
    }

    /// The complete chunks present, sorted. Files whose names are not chunk names are ignored.
    ///
    /// # Errors
    /// When the folder cannot be listed.
    pub fn list_chunks(&self) -> Result<Vec<ChunkName>, StoreError> {
        let mut chunks = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err("list", &self.root))? {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ChunkName::parse(n).ok())
            {
                chunks.push(name);
            }
        }
        chunks.sort();
        Ok(chunks)
    }

    /// Which chunks of `content` are present.
    pub fn chunks_of(&self, content: &str) -> ChunkSet {
        let mut set = ChunkSet::EMPTY;
        if let Ok(names) = ChunkName::all_of(content) {
            for name in names {
                if self.chunk_path(&name).is_file() {
                    set.insert(name.index());
                }
            }
        }
        set
    }

    /// The manifest of `content`, if the store has one.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed, or is not a regular file
    /// ([`StoreError::NotAFile`]: a symbolic link is never followed).
    pub fn load_manifest(&self, content: &str) -> Result<Option<StoredManifest>, StoreError> {
        let path = self.manifest_path(content);
        let mut file = match fsutil::open_regular(&path) {
            Ok((file, _)) => file,
            Err(OpenError::Missing) => return Ok(None),
            Err(OpenError::Io(e)) => return Err(io_err("read", &path)(e)),
            Err(why) => return Err(StoreError::NotAFile { path, why }),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::CorruptManifest { path, source })
    }

    /// Writes the manifest of a content, atomically.
    ///
    /// # Errors
    /// When the write fails.
    pub fn save_manifest(&self, stored: &StoredManifest) -> Result<(), StoreError> {
        let path = self.manifest_path(&stored.manifest.name);
        let bytes = serde_json::to_vec_pretty(stored).unwrap_or_default();
        fsutil::write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }

    /// All manifests in the store; unreadable ones are skipped (logged at debug level).
    pub fn manifests(&self) -> Vec<StoredManifest> {
        let dir = self.root.join(MANIFESTS);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(content) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match self.load_manifest(content) {
                Ok(Some(m)) if m.manifest.name == content => out.push(m),
                Ok(_) => {}
                // Callers poll this every second: a warning here would repeat forever.
                Err(e) => log::debug!("skipping {e}"),
            }
        }
        out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        out
    }

    /// Removes the chunks and manifest of `content`.
    ///
    /// # Errors
    /// When a file exists but cannot be removed.
    pub fn remove_content(&self, content: &str) -> Result<(), StoreError> {
        if let Ok(names) = ChunkName::all_of(content) {
            for name in names {
                remove_if_exists(&self.chunk_path(&name))?;
            }
        }
        remove_if_exists(&self.manifest_path(content))
    }

    /// Whether the chunks of `content` may be served and announced: not while a download of it
    /// is unverified ([`Origin::Downloading`]).
    pub fn is_servable(&self, content: &str) -> bool {
        !matches!(
            self.load_manifest(content),
            Ok(Some(StoredManifest {
                origin: Origin::Downloading,
                ..
            }))
        )
    }

    /// What to announce: the chunks present, except those of contents still being downloaded
    /// under an unverified manifest, and the identity of each content this peer vouches for
    /// ([`Origin::vouches`]); contents downloaded from legacy peers only are announced without
    /// one.
    ///
    /// # Errors
    /// When the folder cannot be listed.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let manifests = self.manifests();
        let unverified: Vec<&str> = manifests
            .iter()
            .filter(|m| m.origin == Origin::Downloading)
            .map(|m| m.manifest.name.as_str())
            .collect();
        let chunks = self
            .list_chunks()?
            .into_iter()
            .filter(|c| !unverified.contains(&c.content()))
            .collect();
        let metas = manifests
            .iter()
            .filter(|m| m.origin.vouches())
            .map(|m| (m.manifest.name.clone(), m.manifest.meta()))
            .collect();
        Ok(Snapshot { chunks, metas })
    }

    /// Where the chunk server writes a chunk of a shared file while splitting it, before the
    /// rename to [`Self::chunk_path`]. `.split` rather than the downloader's `.part`
    /// ([`Self::incoming_path`]): a download and a split of the same name never write the same
    /// temporary file.
    pub fn split_path(&self, name: &ChunkName) -> PathBuf {
        self.incoming_dir().join(format!("{name}.split"))
    }

    /// Whether `path` is what a chunk server killed mid-split leaves behind: a chunk at a
    /// [`Self::split_path`], or a half-written manifest (`.NAME.json.PID.tmp`, from
    /// [`fsutil::write_atomic`]). Only the chunk server removes them, at start, while no split
    /// runs (one chunk server per peer folder).
    pub fn is_split_leftover(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return false;
        };
        (dir == self.incoming_dir() && name.ends_with(".split"))
            || (dir == self.manifests_dir() && name.starts_with('.') && name.ends_with(".tmp"))
    }
}

/// Removes a file, treating "already gone" as success.
///
/// # Errors
/// Any other I/O error.
pub fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn manifest(name: &str) -> StoredManifest {
        StoredManifest {
            manifest: Manifest {
                name: name.into(),
                size: 3,
                sha256: Digest::of(b"abc"),
                chunks: std::array::from_fn(|i| Digest::of(&i.to_le_bytes())),
            },
            origin: Origin::Downloaded { verified: true },
        }
    }

    #[test]
    fn lists_only_complete_chunk_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        for name in ["a.txt_1", "a.txt_2", "b_5", "notes.txt", "x_9", "README"] {
            fs::write(store.root().join(name), b"x").unwrap();
        }
        fs::create_dir(store.root().join("dir_1")).unwrap();
        let part = ChunkName::parse("a.txt_3").unwrap();
        fs::write(store.incoming_path(&part), b"partial").unwrap();
        let listed: Vec<String> = store
            .list_chunks()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(listed, ["a.txt_1", "a.txt_2", "b_5"]);
        assert_eq!(store.chunks_of("a.txt").to_string(), "12---");
    }

    #[test]
    fn the_snapshot_hides_unverified_downloads_and_the_digest_of_legacy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let mut downloading = manifest("poison.bin");
        downloading.origin = Origin::Downloading;
        let mut legacy = manifest("ece");
        legacy.origin = Origin::Downloaded { verified: false };
        let verified = manifest("good.bin");
        for m in [&downloading, &legacy, &verified] {
            store.save_manifest(m).unwrap();
            fs::write(store.root().join(format!("{}_1", m.manifest.name)), b"x").unwrap();
        }
        let snap = store.snapshot().unwrap();
        let listed: Vec<String> = snap.chunks.iter().map(|c| c.to_string()).collect();
        assert_eq!(listed, ["ece_1", "good.bin_1"]);
        assert_eq!(snap.metas.keys().collect::<Vec<_>>(), ["good.bin"]);
        assert!(!store.is_servable("poison.bin"));
        assert!(store.is_servable("ece") && store.is_servable("good.bin"));
        assert!(store.is_servable("absent"));
    }

    #[test]
    fn manifests_round_trip_and_feed_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(store.load_manifest("x").unwrap(), None);
        let m = manifest("my file.bin");
        store.save_manifest(&m).unwrap();
        assert_eq!(store.load_manifest("my file.bin").unwrap(), Some(m.clone()));
        fs::write(store.root().join("my file.bin_2"), b"x").unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.chunks.len(), 1);
        assert_eq!(snap.metas["my file.bin"], m.manifest.meta());
        assert_eq!(store.chunks_of("my file.bin").to_string(), "-2---");
        store.remove_content("my file.bin").unwrap();
        assert_eq!(store.snapshot().unwrap(), Snapshot::default());
    }

    #[cfg(unix)]
    #[test]
    fn a_manifest_that_is_a_symbolic_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let outside = dir.path().join("outside.json");
        fs::write(&outside, serde_json::to_vec(&manifest("x")).unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, store.manifest_path("x")).unwrap();
        assert!(matches!(
            store.load_manifest("x"),
            Err(StoreError::NotAFile {
                why: OpenError::SymbolicLink,
                ..
            })
        ));
        assert!(store.manifests().is_empty());
    }

    #[test]
    fn corrupt_manifest_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        fs::write(store.manifest_path("bad"), b"{not json").unwrap();
        assert!(matches!(
            store.load_manifest("bad"),
            Err(StoreError::CorruptManifest { .. })
        ));
        assert!(store.manifests().is_empty());
    }
}
