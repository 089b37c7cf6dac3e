//! Where the bytes of a content are: chunk files in `temp/`, or a file served in place.
//!
//! A shared file, and a downloaded one once it is verified and in `downloads/`, is not copied
//! into the store: its five chunks are byte ranges of the file ([`chunk_ranges`]), and the
//! manifest records the file's path and modification time ([`InPlace`]). That file can change
//! or vanish at any moment, so it is only trusted while its size and modification time are
//! still the ones it had when it was hashed: one `stat` tells ([`InPlace::matches`]), and a
//! chunk is only read through a file handle whose own metadata was checked
//! ([`InPlace::open_range`]). A change that slips in between the check and the read (same size,
//! same second) is caught by our peers, who verify every chunk against the manifest; legacy
//! peers, who verify nothing, could not be protected by any check short of re-hashing.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::chunk::{chunk_ranges, ChunkName};

use super::{ManifestSummary, Origin, StoredManifest};

/// A file served in place: the path and what it looked like when hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPlace {
    /// The file.
    pub path: PathBuf,
    /// Its size when hashed (the manifest's size).
    pub size: u64,
    /// Its modification time when hashed.
    pub modified: SystemTime,
}

/// Why [`InPlace::open_range`] gave no bytes.
#[derive(Debug, thiserror::Error)]
pub enum InPlaceError {
    /// The file is gone, or is no longer a regular file.
    #[error("{} is gone", .0.display())]
    Gone(PathBuf),
    /// The file's size or modification time changed since it was hashed: its bytes may not be
    /// those the manifest describes until it is hashed again.
    #[error("{} changed since it was hashed", .0.display())]
    Changed(PathBuf),
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl InPlace {
    /// Whether `meta` still describes the file as it was hashed.
    fn same(&self, meta: &Metadata) -> bool {
        meta.is_file() && meta.len() == self.size && meta.modified().ok() == Some(self.modified)
    }

    /// Whether the file is still as it was hashed: one `stat`, following symbolic links (a
    /// shared link is shared as the file it points to).
    pub fn matches(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| self.same(&m))
    }

    /// Opens the file, checks the opened file is still as hashed, and positions it at `start`:
    /// what it returns reads exactly the `len` bytes from there (unless the file changes
    /// meanwhile, which our peers' digests catch).
    ///
    /// # Errors
    /// [`InPlaceError`]: gone, changed, or unreadable.
    pub fn open_range(&self, start: u64, len: u64) -> Result<io::Take<File>, InPlaceError> {
        let io_err = |source| InPlaceError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(InPlaceError::Gone(self.path.clone()))
            }
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(InPlaceError::Gone(self.path.clone()));
        }
        if !self.same(&meta) {
            return Err(InPlaceError::Changed(self.path.clone()));
        }
        file.seek(SeekFrom::Start(start)).map_err(io_err)?;
        Ok(file.take(len))
    }

    /// [`Self::open_range`] for the byte range of `chunk` ([`chunk_ranges`]).
    ///
    /// # Errors
    /// As [`Self::open_range`].
    pub fn open_chunk(&self, chunk: &ChunkName) -> Result<io::Take<File>, InPlaceError> {
        let range = chunk_ranges(self.size)[chunk.position()];
        self.open_range(range.start, range.len())
    }
}

impl Origin {
    /// The file a content of `size` bytes with this origin is served from in place, if it is:
    /// a shared or offered file, or a verified download in `downloads/`. `None` for a content
    /// whose chunks are files in `temp/` (a download in progress, or a store written before
    /// contents were served in place).
    pub fn in_place(&self, size: u64) -> Option<InPlace> {
        let (path, modified) = match self {
            Origin::Shared { path, modified } | Origin::Offered { path, modified } => {
                (path, *modified)
            }
            Origin::Downloaded {
                file: Some(file), ..
            } => (&file.path, file.modified),
            Origin::Downloaded { file: None, .. } | Origin::Downloading => return None,
        };
        Some(InPlace {
            path: path.clone(),
            size,
            modified,
        })
    }
}

impl StoredManifest {
    /// The file this content is served from in place, if it is ([`Origin::in_place`]).
    pub fn in_place(&self) -> Option<InPlace> {
        self.origin.in_place(self.manifest.size)
    }
}

impl ManifestSummary {
    /// The file this content is served from in place, if it is ([`Origin::in_place`]).
    pub fn in_place(&self) -> Option<InPlace> {
        self.origin.in_place(self.meta.size)
    }
}

/// The file a download was placed in, recorded in its manifest ([`Origin::Downloaded`]) so the
/// content is served from there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacedFile {
    /// The file in `downloads/`.
    pub path: PathBuf,
    /// Its modification time when placed (and verified).
    pub modified: SystemTime,
}

impl PlacedFile {
    /// The file at `path` as it is now, its path made absolute: the chunk server that serves
    /// it may run from another working directory than the downloader that placed it.
    ///
    /// # Errors
    /// When it cannot be examined.
    pub fn of(path: &Path) -> io::Result<PlacedFile> {
        Ok(PlacedFile {
            path: std::path::absolute(path)?,
            modified: fs::metadata(path)?.modified()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_range_is_read_only_while_the_file_is_as_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        fs::write(&path, b"0123456789").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let in_place = InPlace {
            path: path.clone(),
            size: 10,
            modified: meta.modified().unwrap(),
        };
        assert!(in_place.matches());
        let mut got = String::new();
        in_place
            .open_range(3, 4)
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "3456");
        let chunk = ChunkName::parse("f.bin_5").unwrap();
        let mut last = String::new();
        in_place
            .open_chunk(&chunk)
            .unwrap()
            .read_to_string(&mut last)
            .unwrap();
        assert_eq!(last, "89");

        // Same size, new content, new modification time: refused.
        fs::write(&path, b"abcdefghij").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(meta.modified().unwrap() + Duration::from_secs(2))
            .unwrap();
        assert!(!in_place.matches());
        assert!(matches!(
            in_place.open_range(0, 1),
            Err(InPlaceError::Changed(_))
        ));
        fs::remove_file(&path).unwrap();
        assert!(!in_place.matches());
        assert!(matches!(
            in_place.open_range(0, 1),
            Err(InPlaceError::Gone(_))
        ));
    }

    #[test]
    fn a_placed_file_is_recorded_by_its_absolute_path() {
        let placed = PlacedFile::of(Path::new("Cargo.toml")).unwrap();
        assert!(placed.path.is_absolute());
        assert_eq!(
            placed.path,
            std::env::current_dir().unwrap().join("Cargo.toml")
        );
    }
}
