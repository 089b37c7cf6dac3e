//! Small file-system helpers for the rules every program follows: a file another program may
//! read appears complete under its final name, or not at all; and what a program reads from its
//! own store is a regular file there, never something a symbolic link points to.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `tmp`, flushes it to disk and renames it to `path`.
///
/// # Errors
/// Any I/O error; `tmp` is removed on failure.
pub fn write_atomic_via(path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, tmp, bytes, None, true)
}

/// [`write_atomic_via`] for a secret: `tmp` is created with mode 0600 (on Unix), so the bytes
/// are never readable by others, not even for a moment.
///
/// # Errors
/// Any I/O error; `tmp` is removed on failure.
pub fn write_atomic_private(path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, tmp, bytes, Some(0o600), true)
}

fn write_atomic_mode(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    durable: bool,
) -> io::Result<()> {
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(tmp, path)?;
        if durable {
            sync_parent(path);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// [`write_atomic_via`] with a temporary name unique to this process, beside `path`.
///
/// # Errors
/// Any I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    write_atomic_via(path, &tmp, bytes)
}

/// [`write_atomic`] without flushing anything to disk: readers still see the old file or the
/// new one, whole, but after a crash the file may be empty or torn. For what can be made again
/// (a shared file's manifest, hashed again when it does not parse), where two `fsync`s per file
/// would cost far more than the writing: 10,000 files shared at once would take tens of
/// seconds on a slow disk.
///
/// # Errors
/// Any I/O error; the temporary file is removed on failure.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    write_atomic_mode(path, &tmp, bytes, None, false)
}

/// What identifies one version of a file another program rewrites by rename: modification
/// time, length and inode; `None` while it is missing. The inode changes with every rename, so
/// two edits of the same length within one clock tick still differ.
pub type FileStamp = Option<(Option<std::time::SystemTime>, u64, u64)>;

/// The [`FileStamp`] of `path` (one `stat`).
///
/// # Errors
/// When it exists but cannot be looked at.
pub fn file_stamp(path: &Path) -> io::Result<FileStamp> {
    match fs::metadata(path) {
        #[cfg(unix)]
        Ok(meta) => Ok(Some((
            meta.modified().ok(),
            meta.len(),
            std::os::unix::fs::MetadataExt::ino(&meta),
        ))),
        #[cfg(not(unix))]
        Ok(meta) => Ok(Some((meta.modified().ok(), meta.len(), 0))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Starts writing `len` bytes of `file` from `offset` to disk, without waiting
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): a file written over many seconds is then
/// mostly on disk when it is `fsync`ed, instead of all of it being written at that moment. A
/// hint: where it is not supported, nothing happens, and the `fsync` does it all.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let Some((offset, len)) = writeback_range(offset, len) else {
            return;
        };
        // SAFETY: a valid open descriptor and plain integers; the call only schedules I/O.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// The arguments of `sync_file_range` for `len` bytes from `offset`; `None` when there is
/// nothing to write (`sync_file_range` reads a length of 0 as "to the end of the file") or the
/// range does not fit its types.
#[cfg(target_os = "linux")]
fn writeback_range(offset: u64, len: u64) -> Option<(libc::off64_t, libc::off64_t)> {
    if len == 0 {
        return None;
    }
    Some((offset.try_into().ok()?, len.try_into().ok()?))
}

/// Flushes a directory entry change (a rename) to disk; best effort, as not every file system
/// supports syncing a directory.
pub fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(dir) = File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        }) {
            let _ = dir.sync_all();
        }
    }
}

/// Why [`open_regular`] gave no file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing of that name.
    #[error("no such file")]
    Missing,
    /// The name is a symbolic link. Our programs never make links in their stores, so one was
    /// planted there (`temp/x_1 -> /etc/passwd`): it is not followed.
    #[error("a symbolic link, not followed")]
    SymbolicLink,
    /// A folder, a FIFO, a device or a socket: never something to serve or parse.
    #[error("not a regular file")]
    NotRegular,
    /// Another I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Opens `path` for reading only if it is a regular file itself: a symbolic link as its last
/// component is refused rather than followed (`O_NOFOLLOW`), and a FIFO is refused rather than
/// waited on (`O_NONBLOCK` makes the open return at once; it changes nothing for reads of a
/// regular file). The checks are made on the opened file, so the name cannot be swapped between
/// a check and the open. Returns the file and its metadata.
///
/// # Errors
/// [`OpenError`] says why there is no file to read.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
        // What O_NOFOLLOW answers for a link.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(OpenError::SymbolicLink),
        Err(e) => return Err(OpenError::Io(e)),
    };
    // Without O_NOFOLLOW (not on Unix), the name is checked after the open instead.
    #[cfg(not(unix))]
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(OpenError::SymbolicLink);
    }
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_empty_writeback_range_writes_nothing_rather_than_the_rest_of_the_file() {
        assert_eq!(writeback_range(4096, 0), None);
        assert_eq!(writeback_range(4096, 8192), Some((4096, 8192)));
        assert_eq!(writeback_range(u64::MAX, 1), None);
    }

    #[cfg(unix)]
    #[test]
    fn open_regular_refuses_links_folders_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let (_, meta) = open_regular(&target).unwrap();
        assert_eq!(meta.len(), 6);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(open_regular(&link), Err(OpenError::SymbolicLink)));
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        assert!(matches!(
            open_regular(&dangling),
            Err(OpenError::SymbolicLink)
        ));
        assert!(matches!(
            open_regular(&dir.path().join("nothing")),
            Err(OpenError::Missing)
        ));
        assert!(matches!(
            open_regular(dir.path()),
            Err(OpenError::NotRegular)
        ));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Returns at once instead of waiting for a writer.
        assert!(matches!(open_regular(&fifo), Err(OpenError::NotRegular)));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_leaves_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        write_atomic(&path, b"old").unwrap();
        let missing = dir.path().join("no/such/dir/tmp");
        assert!(write_atomic_via(&path, &missing, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
