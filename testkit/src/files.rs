//! Test data on disk: deterministic pseudo-random files, digests, comparing a download with its
//! original, listing a folder for diagnostics, and filling a peer's chunk store by hand.

use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use shared::chunk::ChunkName;
use shared::digest::{Digest, Hasher};
use shared::protocol::Manifest;
use shared::store::{ChunkStore, Origin, StoredManifest};

/// Writes `size` deterministic pseudo-random bytes (xorshift from `seed`) to `path`, in 1 MiB
/// blocks, and returns their digest.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> Digest {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent folder");
    }
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut hasher = Hasher::default();
    let mut rng = XorShift::new(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).expect("block fits usize");
        rng.fill(&mut block[..n]);
        file.write_all(&block[..n]).expect("write random file");
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hasher.finish()
}

/// `size` deterministic pseudo-random bytes, in memory.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    XorShift::new(seed).fill(&mut bytes);
    bytes
}

/// Deterministic, non-repeating-looking test data.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 131 + i / 253) % 256).expect("below 256"))
        .collect()
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Any non-zero state works; mix the seed so that nearby seeds differ at once.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// SHA-256 and size of a file, streamed.
pub fn file_digest(path: &Path) -> (Digest, u64) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Digest::of_reader(BufReader::new(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Panics unless `actual` has the same size and SHA-256 as `expected`, showing both.
pub fn assert_same_file(expected: &Path, actual: &Path) {
    assert!(
        actual.is_file(),
        "expected a file at {} (a copy of {})",
        actual.display(),
        expected.display()
    );
    let (want, want_len) = file_digest(expected);
    let (got, got_len) = file_digest(actual);
    assert!(
        want == got && want_len == got_len,
        "file contents differ\n  expected: {} ({want_len} bytes, sha256 {want})\n  \
         actual:   {} ({got_len} bytes, sha256 {got}){}",
        expected.display(),
        actual.display(),
        small_diff(expected, actual)
    );
}

fn small_diff(expected: &Path, actual: &Path) -> String {
    let (Ok(a), Ok(b)) = (fs::read(expected), fs::read(actual)) else {
        return String::new();
    };
    if a.len().max(b.len()) > 64 {
        return String::new();
    }
    format!("\n  expected bytes: {a:02x?}\n  actual bytes:   {b:02x?}")
}

/// Files under `dir`, recursively, with their sizes, appended to `out`.
pub fn list_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => list_files(&path, out),
            Ok(m) => out.push((path, m.len())),
            Err(_) => {}
        }
    }
}

/// Regular files under `dir`, recursively, with their sizes (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    list_files(dir, &mut files);
    files
}

/// The last `max` bytes of a text file.
pub fn tail(path: &Path, max: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let mut s = String::from_utf8_lossy(&text[start..]).into_owned();
    if start > 0 {
        s.insert(0, '…');
    }
    s
}

/// A folder's files and the tails of its program output, logs and `tags.txt`: what to read
/// after a failure. `tail_bytes` bounds each tail.
pub fn folder_report(dir: &Path, tail_bytes: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let files = files_under(dir);
    for (path, len) in &files {
        let rel = path.strip_prefix(dir).unwrap_or(path);
        let _ = writeln!(out, "  {:>12}  {}", len, rel.display());
    }
    for (path, _) in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = name.ends_with(".stderr")
            || name.ends_with(".stdout")
            || name.ends_with(".log")
            || name == shared::TAGS_FILE;
        if wanted && path.parent() == Some(dir) {
            let _ = writeln!(out, "----- {name} (tail) -----\n{}", tail(path, tail_bytes));
        }
    }
    out
}

/// Writes the five chunks of `content` (made of `bytes`) as chunk files in `DIR/temp`, and its
/// manifest, as a finished download left them before contents were served in place (a layout
/// the store still serves); returns the manifest.
pub fn add_content(dir: &Path, content: &str, bytes: &[u8]) -> Manifest {
    let store = ChunkStore::open(dir.join(shared::TEMP_DIR)).expect("open the store");
    let ranges = shared::chunk::chunk_ranges(bytes.len() as u64);
    let names = ChunkName::all_of(content).expect("a valid content name");
    let mut digests = [Digest::of(b""); 5];
    for ((name, range), digest) in names.iter().zip(ranges).zip(digests.iter_mut()) {
        let part = &bytes[range.start as usize..range.end as usize];
        fs::write(store.chunk_path(name), part).expect("write a chunk");
        *digest = Digest::of(part);
    }
    let manifest = Manifest::of_bytes(content, bytes);
    store
        .save_manifest(&StoredManifest {
            manifest: manifest.clone(),
            origin: Origin::Downloaded {
                verified: true,
                file: None,
            },
        })
        .expect("save the manifest");
    manifest
}

/// What the record of a download received in place (`.incoming/<content>.receiving.progress`
/// in the store `temp`) says of each chunk: bytes of it on disk. `None` without a record.
pub fn receiving_record(temp: &Path, content: &str) -> Option<[u64; 5]> {
    let dir = temp.join(".incoming");
    let text = fs::read_to_string(shared::store::receiving_progress_path_in(&dir, content)).ok()?;
    let counts: Vec<u64> = text.lines().skip(1).map_while(|l| l.parse().ok()).collect();
    counts.try_into().ok()
}

/// Bytes received of downloads in transit under the store `temp`: part files, and what the
/// records of files received in place count.
pub fn incoming_bytes(temp: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(temp.join(".incoming")) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".part") {
                e.metadata().map_or(0, |m| m.len())
            } else if let Some(content) = name.strip_suffix(".receiving.progress") {
                receiving_record(temp, &shared::store::content_of_stem(content))
                    .map_or(0, |counts| counts.iter().sum())
            } else {
                0
            }
        })
        .sum()
}

/// The manifest of `data` named `name`: its size, digest, the digests of its five chunks and
/// the midstates between them.
pub fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    Manifest::of_bytes(name, data)
}

/// The bytes of the five chunks of `content` as the store under `dir` serves them: byte ranges
/// of the file it is served from in place (a shared file, a finished download), or chunk files.
pub fn chunk_files(dir: &Path, content: &str) -> Vec<Vec<u8>> {
    use std::io::Read as _;
    let store = ChunkStore::open(dir.join(shared::TEMP_DIR)).expect("open the store");
    let in_place = store
        .load_manifest(content)
        .ok()
        .flatten()
        .and_then(|m| m.in_place());
    ChunkName::all_of(content)
        .expect("a valid content name")
        .iter()
        .map(|c| match &in_place {
            Some(file) => {
                let mut bytes = Vec::new();
                file.open_chunk(c)
                    .expect("open a chunk in place")
                    .read_to_end(&mut bytes)
                    .expect("read a chunk in place");
                bytes
            }
            None => fs::read(store.chunk_path(c)).expect("read a chunk"),
        })
        .collect()
}

/// Reads and parses a `tags.txt`; `None` if missing or unparseable.
pub fn read_tags(path: &Path) -> Option<shared::tags::TagsIndex> {
    if !path.exists() {
        return None;
    }
    shared::tags::TagsIndex::load(path).ok()
}

/// A temporary peer folder, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temp dir")
}

/// Writes `<dir>/served_files/big.bin`, a sparse file of `size` bytes (zeros that take no
/// disk space), for tests of big shares.
pub fn share_sparse(dir: &Path, size: u64) {
    let share = dir.join(shared::DEFAULT_SHARE_DIR);
    fs::create_dir_all(&share).expect("create served_files");
    File::create(share.join("big.bin"))
        .and_then(|f| f.set_len(size))
        .expect("write a sparse big.bin");
}
