//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets use only the public APIs of `shared`, `listener` and `downloader`. Everything that
//! depends on the exact shape of a protocol type (how a [`ContentMeta`] is built, how a digest
//! is made from raw bytes) lives here, once, so a change to those types is adapted in one place.
#![deny(missing_docs)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Component, Path};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use shared::digest::Digest;
use shared::protocol::ContentMeta;
use shared::store::ChunkStore;

/// A digest with the given 32 bytes (the type has no constructor from raw bytes: go through its
/// hex form, which is also what the wire carries).
pub fn digest_from_bytes(bytes: [u8; 32]) -> Digest {
    let mut hex = String::with_capacity(64);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex.parse().expect("64 lowercase hex digits are a digest")
}

/// A content's identity as announced. The one place the fuzz targets build a [`ContentMeta`].
pub fn content_meta(size: u64, sha256: Digest, root: Option<Digest>) -> ContentMeta {
    ContentMeta { size, sha256, root }
}

/// The arbitrary form of a [`ContentMeta`].
#[derive(Debug, Clone, Arbitrary)]
pub struct MetaInput {
    /// Size of the whole file.
    pub size: u64,
    /// Raw digest bytes.
    pub sha256: [u8; 32],
    /// Raw bytes of the manifest root, when announced.
    pub root: Option<[u8; 32]>,
}

impl MetaInput {
    /// The [`ContentMeta`] it describes.
    pub fn to_meta(&self) -> ContentMeta {
        content_meta(
            self.size,
            digest_from_bytes(self.sha256),
            self.root.map(digest_from_bytes),
        )
    }
}

/// Asserts that `path` is `dir` joined with exactly one plain file-name component, `name`:
/// not empty, not `.` or `..`, no `/`, no NUL. This is what keeps a peer's file names inside
/// the folder they belong to.
pub fn assert_one_component(dir: &Path, path: &Path, name: &str) {
    assert!(!name.contains('\\'), "{name:?} contains '\\'");
    assert_one_store_component(dir, path, name);
}

/// [`assert_one_component`] for a file name under `temp/`, where the `/` of a nested content
/// name is written `\\` (`shared::store::file_stem`): a plain character on Unix.
pub fn assert_one_store_component(dir: &Path, path: &Path, name: &str) {
    assert!(!name.is_empty(), "empty file name for {path:?}");
    assert!(name != "." && name != "..", "dot name {name:?}");
    assert!(!name.contains('/'), "{name:?} contains '/'");
    assert!(!name.contains('\0'), "{name:?} contains NUL");
    assert_eq!(
        path.parent(),
        Some(dir),
        "{path:?} is not directly in {dir:?}"
    );
    assert_eq!(path.file_name(), Some(OsStr::new(name)), "{path:?}");
    let rest = path
        .strip_prefix(dir)
        .unwrap_or_else(|_| panic!("{path:?} is outside {dir:?}"));
    let components: Vec<Component<'_>> = rest.components().collect();
    assert!(
        matches!(components.as_slice(), [Component::Normal(n)] if *n == OsStr::new(name)),
        "{path:?} is not one plain component inside {dir:?}: {components:?}"
    );
}

/// A chunk store in a throw-away folder (in `/dev/shm` when there is one, so the targets that
/// read and write files run at memory speed), created once per fuzzing process.
pub fn scratch_store() -> &'static ChunkStore {
    static STORE: OnceLock<(tempfile::TempDir, ChunkStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("p2p-fuzz-")
                .tempdir_in("/dev/shm")
                .or_else(|_| tempfile::tempdir())
                .expect("a temporary folder");
            let store = ChunkStore::open(dir.path().join("temp")).expect("a chunk store");
            (dir, store)
        })
        .1
}

/// The input as text: the bytes themselves when they are UTF-8, else their lossy decoding
/// (the programs read files with `read_to_string`, which would refuse them outright).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
