//! The file a download receives a content into when its manifest is known: each chunk written
//! once, at its place, by the thread that receives it (and hashed there), so there are no
//! chunk files to concatenate and no second pass over the file; it is flushed to disk once,
//! then renamed into `downloads/`.
//!
//! Beside it, a small progress record says how far each chunk got, so that a run killed
//! mid-download (even `kill -9`) is continued by the next: complete chunks are read back and
//! checked, a chunk cut short is continued from its last recorded byte (re-hashed first, as a
//! part file was). The record may lag the file (it is written every few MiB), never lead it:
//! it is written after the bytes it counts.
//!
//! # Format of the record
//! ```text
//! p2p receiving v1 <content sha256> <size>\n
//! 00000000000000000000\n        bytes of chunk 1 there, 20 digits, × 5 lines
//! ```
//! Each chunk's line has a fixed place, so the five receiving threads write theirs without a
//! lock. A record of another content, or one that does not parse, starts the file over.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use shared::chunk::{chunk_ranges, ChunkRange};
use shared::digest::Hasher;
use shared::protocol::Manifest;
use shared::store::{receiving_path_in, receiving_progress_path_in};
use shared::CHUNKS_PER_FILE;

use super::error::{io_error, DownloadError};
use crate::fetch::InFile;

/// The width of one chunk's line in the record: 20 digits and a newline.
const LINE: u64 = 21;

/// A content being received in place.
pub(super) struct Receiving {
    path: PathBuf,
    file: File,
    ranges: [ChunkRange; CHUNKS_PER_FILE],
    progress_path: PathBuf,
    progress: File,
    /// Where the chunks' lines start in the record.
    lines_at: u64,
    /// What the record says, per chunk.
    recorded: [AtomicU64; CHUNKS_PER_FILE],
}

impl Receiving {
    /// Opens (or creates) the file receiving `manifest`'s content in `dir`, continuing what an
    /// earlier run left when its record is of this very content. Space for the whole file is
    /// reserved at once, so a full disk shows before any byte is fetched.
    pub(super) fn open(dir: &Path, manifest: &Manifest) -> Result<Receiving, DownloadError> {
        let path = receiving_path_in(dir, &manifest.name);
        let progress_path = receiving_progress_path_in(dir, &manifest.name);
        let header = format!("p2p receiving v1 {} {}\n", manifest.sha256, manifest.size);
        let lines_at = header.len() as u64;
        let earlier = fs::read(&progress_path)
            .ok()
            .and_then(|text| parse_record(&text, header.as_bytes()));
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io_error("create", path))
        };
        let file = open(&path)?;
        let progress = open(&progress_path)?;
        let recorded = match earlier {
            Some(recorded) if file.metadata().is_ok_and(|m| m.len() == manifest.size) => recorded,
            _ => {
                // Nothing to continue: a fresh file and record.
                file.set_len(0).map_err(io_error("write", &path))?;
                progress
                    .set_len(0)
                    .map_err(io_error("write", &progress_path))?;
                let mut text = header.into_bytes();
                for _ in 0..CHUNKS_PER_FILE {
                    text.extend_from_slice(format!("{:020}\n", 0).as_bytes());
                }
                progress
                    .write_all_at(&text, 0)
                    .map_err(io_error("write", &progress_path))?;
                [0; CHUNKS_PER_FILE]
            }
        };
        if manifest.size > 0 {
            fs2::FileExt::allocate(&file, manifest.size).map_err(io_error("write", &path))?;
        }
        Ok(Receiving {
            path,
            file,
            ranges: chunk_ranges(manifest.size),
            progress_path,
            progress,
            lines_at,
            recorded: recorded.map(AtomicU64::new),
        })
    }

    /// Bytes of the disk the file receiving `content` in `dir` already takes (0 when none).
    pub(super) fn reserved(dir: &Path, content: &str) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(receiving_path_in(dir, content)).map_or(0, |m| m.blocks() * 512)
    }

    /// The file being received.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of chunk `position` the record says are there.
    pub(super) fn recorded(&self, position: usize) -> u64 {
        self.recorded[position].load(Ordering::SeqCst)
    }

    /// Records that `bytes` of chunk `position` are there. A record that cannot be written
    /// costs only a resume: warned about, not an error.
    pub(super) fn record(&self, position: usize, bytes: u64) {
        self.recorded[position].store(bytes, Ordering::SeqCst);
        let line = format!("{bytes:020}\n");
        let at = self.lines_at + LINE * position as u64;
        if let Err(e) = self.progress.write_all_at(line.as_bytes(), at) {
            log::warn!("cannot write {}: {e}", self.progress_path.display());
        }
    }

    /// Chunk `position`'s place, for a transfer (`record` is [`Self::record`] for it).
    pub(super) fn place<'a>(
        &'a self,
        position: usize,
        record: &'a (dyn Fn(u64) + Sync),
    ) -> InFile<'a> {
        InFile {
            file: &self.file,
            path: &self.path,
            offset: self.ranges[position].start,
            resumable: self.recorded(position),
            record,
        }
    }

    /// Copies a chunk received elsewhere (an endgame copy, in `from`) to its place. Called
    /// once the round's transfers are over, so nothing else writes that range meanwhile.
    pub(super) fn place_copy(&self, position: usize, from: &Path) -> Result<(), DownloadError> {
        let range = self.ranges[position];
        let source = File::open(from).map_err(io_error("read", from))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = 0u64;
        while done < range.len() {
            let n = source
                .read_at(&mut buf, done)
                .map_err(io_error("read", from))?;
            if n == 0 {
                let short = io::Error::new(io::ErrorKind::UnexpectedEof, "chunk copy too short");
                return Err(io_error("read", from)(short));
            }
            let n = n.min(usize::try_from(range.len() - done).unwrap_or(n));
            self.file
                .write_all_at(&buf[..n], range.start + done)
                .map_err(io_error("write", &self.path))?;
            done += n as u64;
        }
        let _ = fs::remove_file(from);
        self.record(position, range.len());
        Ok(())
    }

    /// The SHA-256 of the whole file, read back: for a file whose chunks were not all proven
    /// steps of its digest.
    pub(super) fn hash_whole(&self) -> Result<shared::digest::Digest, DownloadError> {
        let mut hasher = Hasher::default();
        let reader = File::open(&self.path).map_err(io_error("read", &self.path))?;
        io::copy(
            &mut io::BufReader::with_capacity(256 * 1024, reader),
            &mut hasher,
        )
        .map_err(io_error("read", &self.path))?;
        Ok(hasher.finish())
    }

    /// Flushes the file to disk (once, for the whole download) and forgets the record: the
    /// file is complete and is renamed next.
    pub(super) fn complete(self) -> Result<PathBuf, DownloadError> {
        self.file
            .sync_all()
            .map_err(io_error("write", &self.path))?;
        let _ = fs::remove_file(&self.progress_path);
        Ok(self.path)
    }

    /// Removes the file and its record.
    pub(super) fn abandon(self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.progress_path);
    }

    /// Removes the file receiving `content` in `dir` and its record (a round rolled back).
    pub(super) fn discard(dir: &Path, content: &str) {
        let _ = fs::remove_file(receiving_path_in(dir, content));
        let _ = fs::remove_file(receiving_progress_path_in(dir, content));
    }
}

/// The five counts of a record whose first line is `header` (checked against the chunk
/// lengths where they are used), or `None` when it has any other shape.
fn parse_record(text: &[u8], header: &[u8]) -> Option<[u64; CHUNKS_PER_FILE]> {
    let lines = text.strip_prefix(header)?;
    if lines.len() as u64 != LINE * CHUNKS_PER_FILE as u64 {
        return None;
    }
    let mut counts = [0u64; CHUNKS_PER_FILE];
    for (count, line) in counts.iter_mut().zip(lines.chunks_exact(21)) {
        let digits = line.strip_suffix(b"\n")?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *count = std::str::from_utf8(digits).ok()?.parse().ok()?;
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(data: &[u8]) -> Manifest {
        Manifest::of_bytes("a.bin", data)
    }

    #[test]
    fn a_record_survives_a_reopen_and_another_content_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1000];
        let m = manifest(&data);
        let r = Receiving::open(dir.path(), &m).unwrap();
        assert_eq!(fs::metadata(r.path()).unwrap().len(), 1000);
        r.record(2, 150);
        r.record(4, 200);
        drop(r);
        let r = Receiving::open(dir.path(), &m).unwrap();
        assert_eq!(
            (0..5).map(|i| r.recorded(i)).collect::<Vec<_>>(),
            [0, 0, 150, 0, 200]
        );
        drop(r);
        // Another content of the same name: nothing is continued.
        let other = manifest(&vec![8u8; 1000]);
        let r = Receiving::open(dir.path(), &other).unwrap();
        assert!((0..5).all(|i| r.recorded(i) == 0));
    }

    #[test]
    fn a_damaged_record_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(&[1u8; 500]);
        let r = Receiving::open(dir.path(), &m).unwrap();
        r.record(0, 100);
        let progress = r.progress_path.clone();
        drop(r);
        for damage in [&b"x"[..], b"", b"p2p receiving v1"] {
            let mut text = fs::read(&progress).unwrap();
            text.truncate(text.len() - 3);
            text.extend_from_slice(damage);
            fs::write(&progress, &text).unwrap();
            let r = Receiving::open(dir.path(), &m).unwrap();
            assert!((0..5).all(|i| r.recorded(i) == 0), "{damage:?}");
            r.record(0, 100);
        }
    }

    #[test]
    fn parse_record_takes_only_the_exact_shape() {
        let header = b"h\n";
        let good = [&header[..], &b"00000000000000000001\n".repeat(5)].concat();
        assert_eq!(parse_record(&good, header), Some([1; 5]));
        let signed = [&header[..], &b"+0000000000000000001\n".repeat(5)].concat();
        assert_eq!(parse_record(&signed, header), None);
        assert_eq!(parse_record(&good[..good.len() - 1], header), None);
        assert_eq!(parse_record(&good, b"x\n"), None);
    }
}
