//! Checking a request against the chunk store, in the order the protocol gives the errors
//! (name, presence, content digest, offset), and opening what it names. A request name only
//! reaches the file system after [`ChunkName::parse`] or [`validate_content_name`] accepted
//! it, and then only through the store's path functions, so no request can name a file outside
//! `temp/` other than the file a manifest there says is served in place; and a name there is only read when it is a regular file itself, never through a
//! symbolic link ([`fsutil::open_regular`]).

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::time::SystemTime;

use shared::chunk::{chunk_ranges, nested_name_of_flat, validate_content_name, ChunkName};
use shared::digest::Digest;
use shared::events::Outcome;
use shared::fsutil::{self, OpenError};
use shared::protocol::{Manifest, Response};
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, InPlaceError, Origin, StoreError, StoredManifest};

use super::refusal::{loggable, Refusal};
use crate::digest_cache::DigestCache;

/// A chunk opened for reading.
pub(super) struct OpenedChunk {
    /// The file holding the chunk: a chunk file of the store, or the file served in place.
    pub(super) file: File,
    /// Where the chunk starts in `file` (0 for a chunk file).
    pub(super) start: u64,
    /// The chunk's length.
    pub(super) len: u64,
    /// The chunk file's metadata, for the digest cache; `None` for a file served in place,
    /// whose manifest always has the digest.
    pub(super) meta: Option<Metadata>,
    /// `file` as its digest describes it, checked again once the chunk is sent.
    pub(super) version: FileVersion,
}

/// The size and modification time of a file whose bytes a digest describes: a file served in
/// place as it was hashed, a chunk file as it was opened. A send that ends with the file no
/// longer so ([`FileVersion::still_in`]) may have sent bytes of another version (a file
/// rewritten in place while it was read), and is aborted rather than completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileVersion {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileVersion {
    fn of(meta: &Metadata) -> FileVersion {
        FileVersion {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// Whether the open `file` is still this version: one `fstat`. Pages of the file still
    /// queued in the socket after a `sendfile` could change after this check; our clients
    /// verify every chunk's digest, which catches that.
    ///
    /// # Errors
    /// When the file's metadata cannot be read.
    pub(super) fn still_in(&self, file: &File) -> io::Result<bool> {
        Ok(FileVersion::of(&file.metadata()?) == *self)
    }
}

/// The chunk a request names: `name` itself, or, when the store has no content of that name
/// and it is the flattened name legacy peers know a nested content by (`photos%2Fa.jpg_1`,
/// [`shared::chunk::legacy_flat_name`]), that nested content's chunk. A content of the exact
/// name always wins.
pub(super) fn resolve(store: &ChunkStore, name: ChunkName) -> ChunkName {
    let Some(nested) = nested_name_of_flat(name.content()) else {
        return name;
    };
    let exact = !store.chunk_files_of(name.content()).is_empty()
        || !matches!(store.load_manifest(name.content()), Ok(None));
    if exact {
        return name;
    }
    match store.load_manifest(&nested) {
        Ok(Some(_)) => ChunkName::new(&nested, name.index()).unwrap_or(name),
        _ => name,
    }
}

/// What the store's manifest lookup for a chunk's content gave.
pub(super) type Lookup = Result<Option<StoredManifest>, StoreError>;

/// Opens a chunk of the store, with the manifest of its content (looked up once).
///
/// A content served in place is read from its file, only while the file's size and
/// modification time are those it had when hashed: a file changed since is refused as missing
/// (the protocol's error for a chunk not held) until the chunk server has hashed it again.
/// Otherwise the chunk file in `temp/` is opened, only if its name there is a regular file: a
/// symbolic link planted in `temp/` (`x_1 -> /etc/passwd`) or a FIFO is refused as missing,
/// with the reason logged.
pub(super) fn open_chunk(
    store: &ChunkStore,
    name: &ChunkName,
) -> Result<(OpenedChunk, Lookup), Refusal> {
    let stored = store.load_manifest(name.content());
    if let Ok(Some(m)) = &stored {
        // A download whose whole file is not verified yet is not passed on: its manifest may
        // be forged.
        if m.origin == Origin::Downloading {
            return Err(Refusal::new(
                Outcome::NotFound,
                format!("no chunk {name} here: its download is not verified yet"),
            ));
        }
        if let Some(in_place) = m.in_place().filter(|_| m.manifest.name == name.content()) {
            let range = chunk_ranges(in_place.size)[name.position()];
            return match in_place.open_range(range.start, range.len()) {
                Ok(reader) => Ok((
                    OpenedChunk {
                        file: reader.into_inner(),
                        start: range.start,
                        len: range.len(),
                        meta: None,
                        // What `open_range` checked the file against.
                        version: FileVersion {
                            len: in_place.size,
                            modified: Some(in_place.modified),
                        },
                    },
                    stored,
                )),
                Err(e @ (InPlaceError::Changed(_) | InPlaceError::Gone(_))) => Err(Refusal::new(
                    Outcome::NotFound,
                    format!("no chunk {name} here: {e}"),
                )),
                Err(e @ InPlaceError::Io { .. }) => Err(Refusal::new(
                    Outcome::Error,
                    format!("cannot open chunk {name}: {e}"),
                )),
            };
        }
    }
    match fsutil::open_regular(&store.chunk_path(name)) {
        Ok((file, meta)) => Ok((
            OpenedChunk {
                file,
                start: 0,
                len: meta.len(),
                version: FileVersion::of(&meta),
                meta: Some(meta),
            },
            stored,
        )),
        Err(OpenError::Missing) => Err(Refusal::new(
            Outcome::NotFound,
            format!("no chunk {name} here"),
        )),
        Err(why @ (OpenError::SymbolicLink | OpenError::NotRegular)) => Err(Refusal::new(
            Outcome::NotFound,
            format!("no chunk {name} here: its name in the store is {why}"),
        )),
        Err(OpenError::Io(e)) => Err(Refusal::new(
            Outcome::Error,
            format!("cannot open chunk {name}: {e}"),
        )),
    }
}

/// A chunk ready to send: header written first, then `length` bytes of `file` from its
/// current position (the requested offset within the chunk).
pub(super) struct PreparedChunk {
    /// The chunk, as validated.
    pub(super) name: ChunkName,
    /// The chunk file, positioned at the requested offset.
    pub(super) file: File,
    /// Bytes to send after the header.
    pub(super) length: u64,
    /// The header: size, length and the chunk's digest.
    pub(super) header: Response,
    /// `file` as the digest in `header` describes it.
    pub(super) version: FileVersion,
}

/// Checks an extended chunk request against the store, in the order the protocol gives the
/// errors: name, presence, content digest, offset.
pub(super) fn prepare_chunk(
    store: &ChunkStore,
    digests: &DigestCache,
    shutdown: &Shutdown,
    filename: &str,
    content_sha256: Option<Digest>,
    offset: u64,
    length: Option<u64>,
) -> Result<PreparedChunk, Refusal> {
    let name = ChunkName::parse(filename)
        .map_err(|e| Refusal::new(Outcome::BadRequest, format!("invalid chunk name: {e}")))?;
    let name = resolve(store, name);
    let (opened, stored) = open_chunk(store, &name)?;
    let OpenedChunk {
        mut file,
        start,
        len: size,
        meta,
        version,
    } = opened;
    let stored = match stored {
        Ok(stored) => stored,
        Err(e @ StoreError::NotAFile { .. }) => {
            return Err(Refusal::new(Outcome::NotFound, e.to_string()));
        }
        Err(e) if content_sha256.is_some() => {
            return Err(Refusal::new(Outcome::Error, e.to_string()));
        }
        Err(e) => {
            log::warn!("{e}; hashing {name} instead");
            None
        }
    };
    // A manifest that implies another length for this chunk does not describe the file (the
    // content is being replaced right now, for instance), nor does one of another name.
    let described = stored.as_ref().map(|s| &s.manifest).filter(|m| {
        m.name == name.content() && chunk_ranges(m.size)[name.position()].len() == size
    });
    if let Some(wanted) = content_sha256 {
        match (&stored, described) {
            (None, _) => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!(
                        "no manifest for {}: cannot vouch for content {}",
                        name.content(),
                        wanted.short(16)
                    ),
                ))
            }
            (Some(s), _) if s.manifest.sha256 != wanted => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!(
                        "{} here is content {}, not {}",
                        name.content(),
                        s.manifest.sha256.short(16),
                        wanted.short(16)
                    ),
                ))
            }
            (Some(_), None) => {
                return Err(Refusal::new(
                    Outcome::WrongContent,
                    format!("{name} here does not match its manifest"),
                ))
            }
            (Some(_), Some(_)) => {}
        }
    }
    if offset > size {
        return Err(Refusal::new(
            Outcome::BadRequest,
            format!("offset {offset} is past the end of the {size}-byte chunk {name}"),
        ));
    }
    let sha256 = match described {
        Some(manifest) => manifest.chunks[name.position()],
        // Hashed once per version of the file, never once per request.
        None => match &meta {
            Some(meta) => digests
                .digest_of(&mut file, meta, shutdown)
                .map_err(|e| Refusal::new(Outcome::Error, format!("cannot read {name}: {e}")))?,
            // Not reached: a content served in place always has its manifest.
            None => {
                return Err(Refusal::new(
                    Outcome::Error,
                    format!("no digest for {name}"),
                ))
            }
        },
    };
    file.seek(SeekFrom::Start(start + offset))
        .map_err(|e| Refusal::new(Outcome::Error, format!("cannot read {name}: {e}")))?;
    // A range past the end is cut at the end: the header tells the client what it gets.
    let length = length.map_or(size - offset, |wanted| wanted.min(size - offset));
    Ok(PreparedChunk {
        name,
        file,
        length,
        header: Response::Chunk {
            size,
            length,
            sha256,
        },
        version,
    })
}

/// Checks a manifest request against the store.
pub(super) fn prepare_manifest(
    store: &ChunkStore,
    content: &str,
    content_sha256: Option<Digest>,
) -> Result<Manifest, Refusal> {
    validate_content_name(content)
        .map_err(|e| Refusal::new(Outcome::BadRequest, format!("invalid content name: {e}")))?;
    let stored = match store.load_manifest(content) {
        Ok(Some(stored)) if stored.origin != Origin::Downloading => stored,
        Ok(Some(_)) => {
            return Err(Refusal::new(
                Outcome::NotFound,
                "no such content here: its download is not verified yet",
            ))
        }
        Ok(None) => return Err(Refusal::new(Outcome::NotFound, "no such content here")),
        Err(e @ StoreError::NotAFile { .. }) => {
            return Err(Refusal::new(Outcome::NotFound, e.to_string()))
        }
        Err(e) => return Err(Refusal::new(Outcome::Error, e.to_string())),
    };
    // A file served in place that changed since it was hashed is not described by this
    // manifest any more; it is offered again once hashed anew.
    if stored.in_place().is_some_and(|f| !f.matches()) {
        return Err(Refusal::new(
            Outcome::NotFound,
            "no such content here: its file changed since it was hashed",
        ));
    }
    if stored.manifest.name != content {
        return Err(Refusal::new(
            Outcome::NotFound,
            format!(
                "the manifest file of {content} describes {}",
                loggable(&stored.manifest.name)
            ),
        ));
    }
    match content_sha256 {
        Some(wanted) if wanted != stored.manifest.sha256 => Err(Refusal::new(
            Outcome::WrongContent,
            format!(
                "content here is {}, not {}",
                stored.manifest.sha256.short(16),
                wanted.short(16)
            ),
        )),
        _ => Ok(stored.manifest),
    }
}
