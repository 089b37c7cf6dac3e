//! The chunk store: the `temp/` folder of a peer, and what is known about its contents.
//!
//! Layout inside `temp/`:
//! ```text
//! .manifests/photo.png.json            the manifest of each content here, and where its bytes are
//! photo.png_1 … photo.png_5            complete chunks of a content in transit (being downloaded)
//! .incoming/photo.png_3.part           a chunk being received; never announced or served
//! .incoming/photo.png_3.part.2         an endgame copy of that chunk, from holder 2
//! .incoming/photo.png.receiving        a file being received, each chunk written at its place
//! .incoming/photo.png.receiving.progress   how far each of its chunks got
//! .incoming/photo.png.4242.download    the file being assembled by downloader 4242 (from chunk files)
//! .incoming/4242-photo.png/            the private folder of a download kept out of the store
//! .locks/photo.png.lock                held while a downloader fetches photo.png
//! photos\2024\a.jpg_1                 a chunk of the nested content photos/2024/a.jpg
//! ```
//! A content name may be a path (`photos/2024/a.jpg`). Content names never hold a `\`
//! ([`crate::chunk::validate_content_name`]), so every name under `temp/` writes each `/` of
//! the content name as `\` ([`file_stem`]): one flat folder as before, no subfolder to create
//! or to clean, and the mapping is reversible and collision-free ([`content_of_stem`]).
//! No content is copied here to be served: a shared file, and a downloaded file once verified
//! and in `downloads/`, is served in place, its five chunks being byte ranges of the file, and
//! its manifest records the file's path and modification time ([`InPlace`]). Chunk files exist
//! only while a content is in transit: a download puts its chunks here, and removes them once
//! the file is assembled in `downloads/`. (A store written before contents were served in place
//! holds chunk files of finished contents too; they are served as before.)
//!
//! The chunk server and the downloader write here; the announcer and chunk server read. A chunk
//! file only ever appears by rename, so whatever has a chunk name is complete. The store holds at
//! most one content per name: the manifest says which one.
//!
//! Every name under `temp/` is made here, and recognised here ([`Leftover::of`]): the programs
//! ask for paths, they never format them, so what one run leaves the next one finds.

use std::collections::{BTreeMap, BTreeSet};
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
const LOCKS: &str = ".locks";

mod cache;
mod lock;
mod source;
pub use cache::{ManifestCache, SnapshotWatch, FULL_READ_EVERY, RACY};
pub use lock::ContentLock;
pub use source::{InPlace, InPlaceError, PlacedFile};
/// The suffix of a chunk being received.
const PART: &str = ".part";
/// The suffix of a file being assembled.
const ASSEMBLY: &str = ".download";
/// The suffix of a file being received, each chunk at its place ([`receiving_path_in`]).
const RECEIVING: &str = ".receiving";
/// The suffix of the record of how far it got.
const PROGRESS: &str = ".progress";

/// The form a content name takes in the file names under `temp/`: each `/` written `\`
/// (`photos/a.jpg` → `photos\a.jpg`). Content names never hold a `\`, so this is one to one.
pub fn file_stem(content: &str) -> String {
    content.replace('/', "\\")
}

/// The content name a [`file_stem`] stands for.
pub fn content_of_stem(stem: &str) -> String {
    stem.replace('\\', "/")
}

/// The file name of `chunk` under `temp/`: `<`[`file_stem`]`>_<index>`.
fn chunk_file_name(chunk: &ChunkName) -> String {
    format!("{}_{}", file_stem(chunk.content()), chunk.index())
}

/// The chunk a file name under `temp/` is, if any (the inverse of [`chunk_file_name`]).
fn chunk_of_file_name(file_name: &str) -> Option<ChunkName> {
    ChunkName::parse(&content_of_stem(file_name)).ok()
}

/// Where a complete `chunk` lives in the folder `dir` (the store, or a download's private
/// folder): `<`[`file_stem`]`>_<index>`, never in a subfolder.
pub fn chunk_path_in(dir: &Path, chunk: &ChunkName) -> PathBuf {
    dir.join(chunk_file_name(chunk))
}

/// Where `chunk` is received in the folder `dir` (the store's `.incoming/`, or a download's
/// private folder): `<chunk>.part`, renamed to the chunk's name once complete and checked.
pub fn part_path_in(dir: &Path, chunk: &ChunkName) -> PathBuf {
    dir.join(format!("{}{PART}", chunk_file_name(chunk)))
}

/// Where an endgame copy of `chunk`, asked of holder number `holder` while another copy is in
/// flight, is received in `dir`: `<chunk>.part.<holder>`, so the copies never share a file.
pub fn copy_part_path_in(dir: &Path, chunk: &ChunkName, holder: usize) -> PathBuf {
    dir.join(format!("{}{PART}.{holder}", chunk_file_name(chunk)))
}

/// Where a download receives `content` in the folder `dir` (the store's `.incoming/`, or its
/// private folder) when its manifest is known: `<content>.receiving`, every chunk written once,
/// at its place, then renamed into `downloads/` once verified. Not named after the process: the
/// next run (under the content's lock) continues it.
pub fn receiving_path_in(dir: &Path, content: &str) -> PathBuf {
    dir.join(format!("{}{RECEIVING}", file_stem(content)))
}

/// How far each chunk of [`receiving_path_in`] got: `<content>.receiving.progress`.
pub fn receiving_progress_path_in(dir: &Path, content: &str) -> PathBuf {
    dir.join(format!("{}{RECEIVING}{PROGRESS}", file_stem(content)))
}

/// `<content>.<pid>.download`: see [`ChunkStore::assembly_path`].
fn assembly_name(content: &str, pid: u32) -> String {
    format!("{}.{pid}{ASSEMBLY}", file_stem(content))
}

/// `<pid>-<content>`: see [`ChunkStore::private_dir`].
fn private_dir_name(content: &str, pid: u32) -> String {
    format!("{pid}-{}", file_stem(content))
}

/// What a download of a content leaves in `temp/.incoming/` when it is killed, besides the
/// part files of the store (which are continued, not removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// `<name>.<pid>.download`: the file being assembled.
    Assembly,
    /// `<name>_<1-5>.part.<holder>`: an endgame copy of a chunk.
    EndgameCopy,
    /// `<pid>-<name>`: the private folder of a download that could not use the store.
    PrivateDir,
}

impl Leftover {
    /// Which leftover of content `name` the entry `file_name` of `temp/.incoming/` is, if any.
    /// Recognised by their exact shape, never by prefix: `a`'s leftovers are not `a.b`'s.
    pub fn of(file_name: &str, name: &str) -> Option<Leftover> {
        let content = name;
        let name = file_stem(name);
        let name = name.as_str();
        let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some((pid, rest)) = file_name.split_once('-') {
            if is_number(pid) && rest == name {
                return Some(Leftover::PrivateDir);
            }
        }
        if let Some((content, pid)) = file_name
            .strip_suffix(ASSEMBLY)
            .and_then(|rest| rest.rsplit_once('.'))
        {
            if content == name && is_number(pid) {
                return Some(Leftover::Assembly);
            }
        }
        let (part, holder) = file_name.rsplit_once('.')?;
        let chunk = chunk_of_file_name(part.strip_suffix(PART)?)?;
        (chunk.content() == content && is_number(holder)).then_some(Leftover::EndgameCopy)
    }
}

/// Where a content in the store came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// Hashed by the chunk server from a file this peer shares, and served from it in place.
    Shared {
        /// The shared file.
        path: PathBuf,
        /// Its modification time when hashed; a change triggers a new hash, and until then
        /// the content is neither announced nor served.
        modified: SystemTime,
    },
    /// Hashed by the chunk server from a file this peer offers to one user (`downloader send`,
    /// [`crate::sends`]), and served from it in place while the offer lasts, but *unlisted*:
    /// never announced, so only the offer's recipient (told by an offer datagram) asks for it.
    Offered {
        /// The file offered.
        path: PathBuf,
        /// Its modification time when hashed, as for [`Origin::Shared`].
        modified: SystemTime,
    },
    /// Downloaded from other peers, complete and assembled.
    Downloaded {
        /// The file in `downloads/` the content is served from, in place; `None` in a store
        /// written before contents were served in place, whose chunk files are in `temp/`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<PlacedFile>,
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
            Origin::Shared { .. } | Origin::Downloaded { verified: true, .. }
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

/// What is read again and again of a stored manifest: the content's name, its identity as
/// announced and its origin, without the five chunk digests and the midstates, which are most of
/// a manifest's size (and 10,000 of them are kept at once: [`ManifestCache`]). Whoever needs the
/// chunk digests loads the manifest ([`ChunkStore::load_manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    /// The content (file) name.
    pub name: String,
    /// Size, SHA-256 and manifest root ([`Manifest::meta`]): the root is a digest over the size
    /// and the five chunk digests, so two summaries differ whenever the chunks announced do.
    pub meta: ContentMeta,
    /// Where the content came from.
    pub origin: Origin,
}

impl From<StoredManifest> for ManifestSummary {
    fn from(stored: StoredManifest) -> ManifestSummary {
        ManifestSummary {
            meta: stored.manifest.meta(),
            name: stored.manifest.name,
            origin: stored.origin,
        }
    }
}

/// What the announcer needs: the complete chunks it can serve, and the identity of each content
/// that has a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Chunk names servable: chunk files present, and the five chunks of each content served in
    /// place whose file is still as hashed; sorted.
    pub chunks: Vec<ChunkName>,
    /// Size and digest of each content that has a manifest.
    pub metas: BTreeMap<String, ContentMeta>,
    /// Size and digest of each content offered to one user ([`Origin::Offered`]) whose file is
    /// still as hashed: never announced, only offered.
    pub offered: BTreeMap<String, ContentMeta>,
}

impl Snapshot {
    /// The snapshot of a store holding the manifests summed up in `manifests` and the chunk
    /// files `chunk_files`, where `matches` tells whether the file a content is served from in
    /// place is still as hashed ([`ChunkStore::snapshot`] gives the rules).
    pub(crate) fn build<'a>(
        manifests: impl IntoIterator<Item = &'a ManifestSummary>,
        chunk_files: impl IntoIterator<Item = ChunkName>,
        matches: impl Fn(&ManifestSummary) -> bool,
    ) -> Snapshot {
        let manifests: Vec<&ManifestSummary> = manifests.into_iter().collect();
        let chunk_files = chunk_files.into_iter();
        // Sized at once: grown by doubling, the 50,000 chunks of 10,000 contents were copied
        // as the list grew, and a quarter of its room stayed unused.
        let mut chunks = Vec::with_capacity(
            manifests.len() * crate::CHUNKS_PER_FILE + chunk_files.size_hint().0,
        );
        let mut metas = BTreeMap::new();
        // Contents whose chunk files are not announced: unverified, or served in place.
        let mut no_files: BTreeSet<&str> = BTreeSet::new();
        let mut offered = BTreeMap::new();
        for m in manifests {
            let name = m.name.as_str();
            if matches!(m.origin, Origin::Offered { .. }) {
                // Unlisted: no chunk and no digest of it is announced.
                no_files.insert(name);
                if m.in_place().is_some() && matches(m) {
                    offered.insert(m.name.clone(), m.meta);
                }
                continue;
            }
            let servable = match m.in_place() {
                Some(_) => {
                    no_files.insert(name);
                    let matches = matches(m);
                    if matches {
                        if let Ok(names) = ChunkName::all_of(name) {
                            chunks.extend(names);
                        }
                    }
                    matches
                }
                None if m.origin == Origin::Downloading => {
                    no_files.insert(name);
                    false
                }
                None => true,
            };
            if servable && m.origin.vouches() {
                metas.insert(m.name.clone(), m.meta);
            }
        }
        chunks.extend(chunk_files.filter(|c| !no_files.contains(&c.content())));
        // Chunk names that compare equal are identical: an unstable sort gives the same order,
        // without the stable sort's scratch buffer (up to the list's own size).
        chunks.sort_unstable();
        Snapshot {
            chunks,
            metas,
            offered,
        }
    }

    /// What this snapshot announces as a [`Catalog`](crate::protocol::Catalog): the one rule
    /// by which the announcer's summary and the chunk server's answer to a catalog request
    /// agree, byte for byte, on the same store.
    pub fn catalog(&self) -> crate::protocol::Catalog {
        crate::protocol::Catalog::from_parts(&self.chunks, &self.metas)
    }
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
    /// Another process holds the lock of this content ([`ChunkStore::lock_content`]).
    #[error("{content:?} is locked by another process")]
    Locked {
        /// The content.
        content: String,
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
        chunk_path_in(&self.root, name)
    }

    /// Where a chunk is received before it is checked and renamed to [`Self::chunk_path`].
    pub fn incoming_path(&self, name: &ChunkName) -> PathBuf {
        part_path_in(&self.incoming_dir(), name)
    }

    /// Where this process assembles `content` before moving it into `downloads/`: in
    /// `.incoming/`, named after the process so two runs never write one file.
    pub fn assembly_path(&self, content: &str) -> PathBuf {
        self.incoming_dir()
            .join(assembly_name(content, std::process::id()))
    }

    /// The private folder this process downloads `content` into when the store holds another
    /// content of that name: its chunks are kept out of the store, so never re-served.
    pub fn private_dir(&self, content: &str) -> PathBuf {
        self.incoming_dir()
            .join(private_dir_name(content, std::process::id()))
    }

    /// The lock file of `content` ([`Self::lock_content`]).
    pub fn lock_path(&self, content: &str) -> PathBuf {
        self.root
            .join(LOCKS)
            .join(format!("{}.lock", file_stem(content)))
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
        self.root
            .join(MANIFESTS)
            .join(format!("{}.json", file_stem(content)))
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
            if let Some(name) = entry.file_name().to_str().and_then(chunk_of_file_name) {
                chunks.push(name);
            }
        }
        chunks.sort();
        Ok(chunks)
    }

    /// Which chunks of `content` are here to be served: all five when it is served in place from
    /// a file still as hashed, none when that file changed or went; otherwise its chunk files.
    pub fn chunks_of(&self, content: &str) -> ChunkSet {
        let stored = self.load_manifest(content).ok().flatten();
        if let Some(in_place) = stored.as_ref().and_then(StoredManifest::in_place) {
            return if in_place.matches() {
                ChunkSet::ALL
            } else {
                ChunkSet::EMPTY
            };
        }
        self.chunk_files_of(content)
    }

    /// Which chunk files of `content` are in `temp/`.
    pub fn chunk_files_of(&self, content: &str) -> ChunkSet {
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

    /// Writes the manifest of a content, atomically: readers see the old manifest or the new
    /// one, whole. That of a download is flushed to disk; that of a shared or offered file is
    /// not (after a crash it may not parse, and the file is then hashed again).
    ///
    /// # Errors
    /// When the write fails.
    pub fn save_manifest(&self, stored: &StoredManifest) -> Result<(), StoreError> {
        let path = self.manifest_path(&stored.manifest.name);
        let bytes = serde_json::to_vec_pretty(stored).unwrap_or_default();
        let write = match stored.origin {
            // Made again from the file if lost (a manifest that does not parse is hashed
            // again): not worth two `fsync`s each when 10,000 files are shared at once.
            Origin::Shared { .. } | Origin::Offered { .. } => fsutil::write_replacing,
            // What a download verified cannot be made again without downloading it again.
            Origin::Downloaded { .. } | Origin::Downloading => fsutil::write_atomic,
        };
        write(&path, &bytes).map_err(io_err("write", &path))
    }

    /// All manifests in the store, sorted by name; unreadable ones are skipped (logged at debug
    /// level).
    pub fn manifests(&self) -> Vec<StoredManifest> {
        let mut out: Vec<StoredManifest> = self.read_manifests().collect();
        out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        out
    }

    /// Each manifest in the store, read one at a time, in the order of the folder's listing;
    /// unreadable ones are skipped (logged at debug level).
    fn read_manifests(&self) -> impl Iterator<Item = StoredManifest> + '_ {
        let dir = self.root.join(MANIFESTS);
        let entries = fs::read_dir(&dir).into_iter().flatten().flatten();
        entries.filter_map(|entry| {
            let content = content_of_stem(entry.file_name().to_str()?.strip_suffix(".json")?);
            match self.load_manifest(&content) {
                Ok(Some(m)) if m.manifest.name == content => Some(m),
                Ok(_) => None,
                // Callers look often: a warning here would repeat forever.
                Err(e) => {
                    log::debug!("skipping {e}");
                    None
                }
            }
        })
    }

    /// Removes the chunks and manifest of `content`.
    ///
    /// # Errors
    /// When a file exists but cannot be removed.
    pub fn remove_content(&self, content: &str) -> Result<(), StoreError> {
        self.remove_chunk_files(content)?;
        remove_if_exists(&self.manifest_path(content))
    }

    /// Removes the chunk files of `content` from `temp/` (not its manifest): once it is served
    /// in place, they are a second copy.
    ///
    /// # Errors
    /// When a file exists but cannot be removed.
    pub fn remove_chunk_files(&self, content: &str) -> Result<(), StoreError> {
        if let Ok(names) = ChunkName::all_of(content) {
            for name in names {
                remove_if_exists(&self.chunk_path(&name))?;
            }
        }
        Ok(())
    }

    /// Removes the chunk files of every content served in place: what a store written before
    /// contents were served in place holds, or what a killed download left after placing its
    /// file. Returns the contents cleaned.
    pub fn remove_copies_of_in_place(&self) -> Vec<String> {
        let mut cleaned = Vec::new();
        let Ok(chunks) = self.list_chunks() else {
            return cleaned;
        };
        let mut contents: Vec<&str> = chunks.iter().map(ChunkName::content).collect();
        contents.dedup();
        for content in contents {
            let in_place =
                matches!(self.load_manifest(content), Ok(Some(m)) if m.in_place().is_some());
            if in_place && self.remove_chunk_files(content).is_ok() {
                cleaned.push(content.to_owned());
            }
        }
        cleaned
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

    /// What to announce: the chunks this peer can serve, and the identity of each content it
    /// vouches for ([`Origin::Downloaded`]); contents downloaded from legacy peers only are
    /// announced without one. A content served in place counts as all five chunks while its
    /// file is as hashed (one `stat` each), and is left out, digest and all, once the file
    /// changed or went: it is announced again after the chunk server hashed it anew. Chunks of
    /// contents still being downloaded under an unverified manifest are left out too.
    ///
    /// # Errors
    /// When the folder cannot be listed.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        // Summed up as read: the chunk digests and midstates of every manifest are never all
        // held at once.
        let summaries: Vec<ManifestSummary> =
            self.read_manifests().map(ManifestSummary::from).collect();
        Ok(Snapshot::build(&summaries, self.list_chunks()?, |m| {
            m.in_place().is_some_and(|f| f.matches())
        }))
    }

    /// Where the chunk server writes a chunk of a shared file while splitting it, before the
    /// rename to [`Self::chunk_path`]. `.split` rather than the downloader's `.part`
    /// ([`Self::incoming_path`]): a download and a split of the same name never write the same
    /// temporary file.
    pub fn split_path(&self, name: &ChunkName) -> PathBuf {
        self.incoming_dir()
            .join(format!("{}.split", chunk_file_name(name)))
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

/// Downloads: one at a time per content, and the cleanup of what a killed one left.
impl ChunkStore {
    /// Locks `content` for this process's download of it, until the returned guard is dropped.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds the lock; [`StoreError::Io`] when the
    /// lock file cannot be created.
    pub fn lock_content(&self, content: &str) -> Result<ContentLock, StoreError> {
        let dir = self.root.join(LOCKS);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = self.lock_path(content);
        match ContentLock::acquire(&path) {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => Err(StoreError::Locked {
                content: content.to_owned(),
            }),
            Err(e) => Err(io_err("create", &path)(e)),
        }
    }

    /// Removes what a killed download of `content` left in `.incoming/` ([`Leftover`]):
    /// assembled files, endgame copies and private folders. Part files of the store stay: they
    /// are continued. Call it only under the content's lock, so nothing removed is in use.
    pub fn clean_leftovers(&self, content: &str) {
        let Ok(entries) = fs::read_dir(self.incoming_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            match Leftover::of(file_name, content) {
                Some(Leftover::Assembly | Leftover::EndgameCopy) => {
                    let _ = fs::remove_file(entry.path());
                }
                Some(Leftover::PrivateDir) => {
                    let _ = fs::remove_dir_all(entry.path());
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock::Taken;
    use super::*;
    use crate::digest::Digest;

    fn manifest(name: &str) -> StoredManifest {
        StoredManifest {
            manifest: Manifest {
                states: None,
                name: name.into(),
                size: 3,
                sha256: Digest::of(b"abc"),
                chunks: std::array::from_fn(|i| Digest::of(&i.to_le_bytes())),
            },
            origin: Origin::Downloaded {
                verified: true,
                file: None,
            },
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
        legacy.origin = Origin::Downloaded {
            verified: false,
            file: None,
        };
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
    fn a_content_served_in_place_counts_while_its_file_is_as_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let file = dir.path().join("placed.bin");
        fs::write(&file, b"abc").unwrap();
        let mut m = manifest("placed.bin");
        m.origin = Origin::Downloaded {
            verified: true,
            file: Some(PlacedFile::of(&file).unwrap()),
        };
        store.save_manifest(&m).unwrap();
        // A stale chunk file of it (an older store's copy) is never announced.
        fs::write(store.root().join("placed.bin_1"), b"x").unwrap();
        let snap = store.snapshot().unwrap();
        let listed: Vec<String> = snap.chunks.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            listed,
            (1..=5)
                .map(|i| format!("placed.bin_{i}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(snap.metas.keys().collect::<Vec<_>>(), ["placed.bin"]);
        assert!(store.chunks_of("placed.bin").is_complete());
        assert_eq!(store.remove_copies_of_in_place(), ["placed.bin"]);
        assert!(store.chunk_files_of("placed.bin").is_empty());

        // Changed (another size): withdrawn, digest and all; deleted: the same.
        fs::write(&file, b"abcd").unwrap();
        assert_eq!(store.snapshot().unwrap(), Snapshot::default());
        assert!(store.chunks_of("placed.bin").is_empty());
        fs::remove_file(&file).unwrap();
        assert_eq!(store.snapshot().unwrap(), Snapshot::default());
        // The old layout (no file recorded) is served from chunk files, as before.
        let old = manifest("old.bin");
        store.save_manifest(&old).unwrap();
        fs::write(store.root().join("old.bin_2"), b"x").unwrap();
        assert_eq!(store.snapshot().unwrap().chunks.len(), 1);
        assert_eq!(store.remove_copies_of_in_place(), Vec::<String>::new());
    }

    #[test]
    fn an_offered_content_is_never_announced_only_offered() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let file = dir.path().join("report.pdf");
        fs::write(&file, b"abc").unwrap();
        let mut m = manifest("report.pdf");
        m.origin = Origin::Offered {
            path: file.clone(),
            modified: fs::metadata(&file).unwrap().modified().unwrap(),
        };
        store.save_manifest(&m).unwrap();
        // Not even a stray chunk file of it is announced.
        fs::write(store.root().join("report.pdf_1"), b"x").unwrap();
        let snap = store.snapshot().unwrap();
        assert!(snap.chunks.is_empty(), "{snap:?}");
        assert!(snap.metas.is_empty(), "{snap:?}");
        assert_eq!(snap.offered["report.pdf"], m.manifest.meta());
        // Served in place, from the file, like a shared one.
        assert!(store.chunks_of("report.pdf").is_complete());
        assert!(!m.origin.vouches());
        // Changed: not offered any more until hashed again.
        fs::write(&file, b"abcd").unwrap();
        assert!(store.snapshot().unwrap().offered.is_empty());
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
        assert_eq!(snap.chunks, [ChunkName::parse("my file.bin_2").unwrap()]);
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
    #[test]
    fn temp_names_are_made_and_recognised_in_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let chunk = ChunkName::parse("a_3").unwrap();
        let incoming = store.incoming_dir();
        assert_eq!(store.incoming_path(&chunk), incoming.join("a_3.part"));
        assert_eq!(
            part_path_in(dir.path(), &chunk),
            dir.path().join("a_3.part")
        );
        let copy = copy_part_path_in(&incoming, &chunk, 2);
        assert_eq!(copy, incoming.join("a_3.part.2"));
        assert_eq!(store.lock_path("a"), dir.path().join(".locks/a.lock"));
        let leftover = |path: PathBuf| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            Leftover::of(&name, "a")
        };
        assert_eq!(leftover(copy), Some(Leftover::EndgameCopy));
        assert_eq!(leftover(store.assembly_path("a")), Some(Leftover::Assembly));
        assert_eq!(leftover(store.private_dir("a")), Some(Leftover::PrivateDir));
        assert_eq!(
            leftover(store.incoming_path(&chunk)),
            None,
            "part files are continued"
        );
        assert_eq!(assembly_name("a.b", 99), "a.b.99.download");
        assert_eq!(private_dir_name("a", 77), "77-a");
    }

    #[test]
    fn nested_contents_live_in_the_flat_store_and_are_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let name = "photos/2024/a b.jpg";
        assert_eq!(file_stem(name), "photos\\2024\\a b.jpg");
        assert_eq!(content_of_stem(&file_stem(name)), name);
        let chunk = ChunkName::new(name, 2).unwrap();
        let incoming = store.incoming_dir();
        assert_eq!(
            store.chunk_path(&chunk),
            dir.path().join("photos\\2024\\a b.jpg_2")
        );
        assert_eq!(
            store.incoming_path(&chunk),
            incoming.join("photos\\2024\\a b.jpg_2.part")
        );
        assert_eq!(
            store.manifest_path(name),
            dir.path().join(".manifests/photos\\2024\\a b.jpg.json")
        );
        assert_eq!(
            store.lock_path(name),
            dir.path().join(".locks/photos\\2024\\a b.jpg.lock")
        );
        for path in [
            store.chunk_path(&chunk),
            store.incoming_path(&chunk),
            store.manifest_path(name),
            store.lock_path(name),
            store.assembly_path(name),
            store.private_dir(name),
            store.split_path(&chunk),
        ] {
            assert!(path.starts_with(dir.path()));
            let parent = path.parent().unwrap();
            assert!(
                parent == dir.path()
                    || parent == incoming
                    || parent == store.manifests_dir()
                    || parent == dir.path().join(".locks"),
                "{}",
                path.display()
            );
        }
        // What one run leaves, the next finds: chunks, manifests and leftovers.
        fs::write(store.chunk_path(&chunk), b"x").unwrap();
        store.save_manifest(&manifest(name)).unwrap();
        // A top-level content of a similar name is another content.
        store.save_manifest(&manifest("photos")).unwrap();
        assert_eq!(store.list_chunks().unwrap(), std::slice::from_ref(&chunk));
        assert_eq!(store.chunks_of(name).to_string(), "-2---");
        let names: Vec<String> = store
            .manifests()
            .into_iter()
            .map(|m| m.manifest.name)
            .collect();
        assert_eq!(names, ["photos", name]);
        let leftover = |path: PathBuf| {
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            Leftover::of(&file, name)
        };
        assert_eq!(
            leftover(store.assembly_path(name)),
            Some(Leftover::Assembly)
        );
        assert_eq!(
            leftover(store.private_dir(name)),
            Some(Leftover::PrivateDir)
        );
        assert_eq!(
            leftover(copy_part_path_in(&incoming, &chunk, 3)),
            Some(Leftover::EndgameCopy)
        );
        assert_eq!(leftover(store.assembly_path("photos")), None);
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.chunks, [chunk]);
        assert!(snap.metas.contains_key(name));
        store.remove_content(name).unwrap();
        assert_eq!(store.list_chunks().unwrap(), []);
        assert_eq!(store.load_manifest(name).unwrap(), None);
    }

    #[test]
    fn leftovers_are_recognised_exactly_never_by_prefix() {
        let of = |file: &str| Leftover::of(file, "a");
        assert_eq!(of("a.123.download"), Some(Leftover::Assembly));
        assert_eq!(of("a_3.part.2"), Some(Leftover::EndgameCopy));
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
    fn cleaning_leftovers_keeps_part_files_and_other_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let incoming = store.incoming_dir();
        for name in ["a.1.download", "a_2.part.1", "a_2.part", "a.b.1.download"] {
            fs::write(incoming.join(name), b"x").unwrap();
        }
        fs::create_dir(incoming.join("5-a")).unwrap();
        fs::write(incoming.join("5-a").join("a_1"), b"x").unwrap();
        store.clean_leftovers("a");
        let mut left: Vec<String> = fs::read_dir(&incoming)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.b.1.download", "a_2.part"]);
    }

    #[test]
    fn lock_files_are_removed_and_a_removed_one_is_never_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("temp")).unwrap();
        let locks = store.root().join(".locks");
        let path = store.lock_path("a.b");
        let first = store.lock_content("a.b").unwrap();
        assert!(path.exists());
        assert!(matches!(
            store.lock_content("a.b"),
            Err(StoreError::Locked { content }) if content == "a.b"
        ));
        // Another run opened the file, and is about to lock it, when the first one ends.
        let late = fs::File::open(&path).unwrap();
        drop(first);
        assert!(
            !path.exists(),
            "the lock file is removed when the lock ends"
        );
        // A third run takes the lock under a new file...
        let third = store.lock_content("a.b").unwrap();
        // ... and the late one, locking the removed file, sees that it is not the lock.
        assert!(matches!(ContentLock::take(late, &path), Taken::Removed));
        assert!(
            path.exists(),
            "the late run must not remove the third run's file"
        );
        assert!(matches!(
            store.lock_content("a.b"),
            Err(StoreError::Locked { .. })
        ));
        drop(third);
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 0);
    }
}
