//! The last step of a download: the chunks concatenated into one file, its SHA-256 checked,
//! and the file moved into `downloads/` under a name that never overwrites a different file.
//! A content already in `downloads/`, served from there in place, is not copied again: its
//! file is hashed once more and reported as already present.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use shared::chunk::ChunkName;
use shared::digest::{Digest, HashingWriter};
use shared::store::ChunkStore;
use shared::CHUNKS_PER_FILE;

use super::error::{io_error, DownloadError};
use super::placement::Placement;
use super::receiving::Receiving;
use crate::catalog::Target;

/// Concatenates the chunks into `temp/.incoming/`, checks the digest, and moves the file into
/// `downloads/` under a name that does not overwrite a different file.
pub(super) fn assemble(
    store: &ChunkStore,
    placement: &Placement,
    target: &Target,
    names: &[ChunkName; CHUNKS_PER_FILE],
    downloads: &Path,
) -> Result<(PathBuf, u64, Digest, bool), DownloadError> {
    if let Some(found) = already_placed(store, placement, target, downloads)? {
        return Ok(found);
    }
    let assembly = store.assembly_path(&target.name);
    let result = (|| {
        let file = File::create(&assembly).map_err(io_error("create", &assembly))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
        for chunk in names {
            let mut input = placement.open_chunk(store, chunk)?;
            io::copy(&mut input, &mut out).map_err(io_error("write", &assembly))?;
        }
        let size = out.written();
        let (writer, digest) = out.finish();
        let file = writer
            .into_inner()
            .map_err(|e| io_error("write", &assembly)(e.into_error()))?;
        file.sync_all().map_err(io_error("write", &assembly))?;
        check_digest(target, digest)?;
        let (dest, already_present) = into_downloads(&assembly, downloads, &target.name, digest)?;
        Ok((dest, size, digest, already_present))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&assembly);
    }
    result
}

/// Moves a file received in place ([`Receiving`], its digest `digest` checked by the caller)
/// into `downloads/`, as [`assemble`] does with an assembled one.
pub(super) fn place_received(
    receiving: Receiving,
    target: &Target,
    downloads: &Path,
    size: u64,
    digest: Digest,
) -> Result<(PathBuf, u64, Digest, bool), DownloadError> {
    if let Err(mismatch) = check_digest(target, digest) {
        // Its chunks all matched a manifest the file contradicts: nothing to continue.
        receiving.abandon();
        return Err(mismatch);
    }
    let received = receiving.complete()?;
    let (dest, already_present) = into_downloads(&received, downloads, &target.name, digest)?;
    Ok((dest, size, digest, already_present))
}

/// Fails unless `digest` is the content's, when it has one.
fn check_digest(target: &Target, digest: Digest) -> Result<(), DownloadError> {
    match target.sha256 {
        Some(expected) if digest != expected => Err(DownloadError::WholeFileMismatch {
            expected,
            actual: digest,
        }),
        _ => Ok(()),
    }
}

/// Moves the complete, checked `file` (of content `name`, digest `digest`) to its
/// [`destination`] in `downloads/`, or removes it when an identical file is already there
/// (the flag).
fn into_downloads(
    file: &Path,
    downloads: &Path,
    name: &str,
    digest: Digest,
) -> Result<(PathBuf, bool), DownloadError> {
    let (dest, already_present) = destination(downloads, name, digest)?;
    if already_present {
        let _ = fs::remove_file(file);
    } else {
        move_into_place(file, &dest)?;
    }
    Ok((dest, already_present))
}

/// The file of `target` when it is already in `downloads/` and the store serves it from there
/// (every chunk was kept from it, none fetched): hashed whole, and found to be the content
/// announced.
fn already_placed(
    store: &ChunkStore,
    placement: &Placement,
    target: &Target,
    downloads: &Path,
) -> Result<Option<(PathBuf, u64, Digest, bool)>, DownloadError> {
    let (Some(expected), Some(file)) = (target.sha256, placement.placed_file(store, &target.name))
    else {
        return Ok(None);
    };
    let downloads = std::path::absolute(downloads).map_err(io_error("read", downloads))?;
    // A nested content is in its folder under `downloads/` (`downloads/photos/2024/`).
    let folder = downloads.join(&target.name);
    if file.path.parent() != folder.parent() || !store.chunk_files_of(&target.name).is_empty() {
        return Ok(None);
    }
    let Ok(reader) = file.open_range(0, file.size) else {
        return Ok(None);
    };
    let (digest, size) = Digest::of_reader(reader).map_err(io_error("read", &file.path))?;
    Ok((digest == expected && size == file.size).then_some((file.path, size, digest, true)))
}

/// Creates the folders of the relative path `folder` (`/`-separated components of a valid
/// content name) under `base`, and returns the deepest. Refuses to go through anything but a
/// real folder: a symbolic link planted in `downloads/` (`photos -> /etc`) must not redirect
/// where a download is written.
///
/// # Errors
/// When a component exists and is not a folder (a link to one included), or cannot be created.
pub(crate) fn create_folders_within(base: &Path, folder: &str) -> Result<PathBuf, DownloadError> {
    let mut dir = base.to_owned();
    for component in folder.split('/').filter(|c| !c.is_empty()) {
        // Content names are checked long before (`validate_content_name`); this is the last
        // line of defence before the disk.
        if component == "." || component == ".." || component.contains('\\') {
            return Err(io_error("create", &dir)(io::Error::other(format!(
                "refusing the folder name {component:?}"
            ))));
        }
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io_error("create", &dir)(io::Error::other(
                    "refusing to write through it: not a folder (a symbolic link, or a file)",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Created meanwhile by another download of the same folder: check it again.
                    if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                        return Err(io_error("create", &dir)(e));
                    }
                }
                Err(e) => return Err(io_error("create", &dir)(e)),
            },
            Err(e) => return Err(io_error("read", &dir)(e)),
        }
    }
    Ok(dir)
}

/// `downloads/<name>`, or `downloads/<stem> (n).<ext>` when a different file has that name. A
/// nested content goes to its folder, created as needed ([`create_folders_within`]):
/// `downloads/photos/2024/a.jpg`. The flag says an identical file is already there.
fn destination(
    downloads: &Path,
    name: &str,
    digest: Digest,
) -> Result<(PathBuf, bool), DownloadError> {
    let (folder, name) = name.rsplit_once('/').unwrap_or(("", name));
    let downloads = &create_folders_within(downloads, folder)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_nested_content_gets_its_folders_and_keeps_its_structure() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"x");
        let (p, same) = destination(dir.path(), "photos/2024/a b.jpg", d).unwrap();
        assert_eq!(p, dir.path().join("photos/2024/a b.jpg"));
        assert!(!same && dir.path().join("photos/2024").is_dir());
        fs::write(&p, b"other").unwrap();
        let (p, _) = destination(dir.path(), "photos/2024/a b.jpg", d).unwrap();
        assert_eq!(p, dir.path().join("photos/2024/a b (1).jpg"));
        // A dot in a folder's name is not an extension.
        let (p, _) = destination(dir.path(), "v1.2/readme", d).unwrap();
        assert_eq!(p, dir.path().join("v1.2/readme"));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_in_downloads_never_redirects_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = dir.path().join("downloads");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(&downloads).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, downloads.join("photos")).unwrap();
        fs::write(downloads.join("file"), b"x").unwrap();
        let d = Digest::of(b"x");
        assert!(destination(&downloads, "photos/a.jpg", d).is_err());
        assert!(destination(&downloads, "photos/2024/a.jpg", d).is_err());
        assert!(destination(&downloads, "file/a.jpg", d).is_err());
        assert!(destination(&downloads, "../a.jpg", d).is_err());
        assert!(destination(&downloads, "x/../../a.jpg", d).is_err());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
