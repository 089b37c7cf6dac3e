//! Chunk arithmetic and chunk names: pure functions, no I/O.
//!
//! Every file is cut into exactly [`CHUNKS_PER_FILE`] chunks of `ceil(size / 5)` bytes, read in
//! order, the last ones taking what is left. For some small sizes (0-4, 6-8, 11, 12, 16 bytes) this
//! leaves trailing chunks empty; we still keep and serve all five so that legacy downloaders, which
//! always ask for five names, succeed.
//!
//! A chunk is named `<content>_<index>` with index 1..=5 (`photo.png_3`). A content name is a
//! relative path of one or more components joined by `/` (`photo.png`, `photos/2024/a.jpg`):
//! each component a plain file name (never `.`, `..` or empty, never a `\`), so no name can
//! lead out of the folder it is joined to. Names are checked here before any of them touches
//! the file system ([`validate_content_name`], [`validate_component`]).
//!
//! Legacy peers know no folders: a nested content is shown to them under one flat name,
//! [`legacy_flat_name`] (`photos%2F2024%2Fa.jpg`), which is the name it has in the `files` of
//! our announcements and one of the two names our chunk servers answer to.

use std::fmt;
use std::ops::Range;

use crate::text::{self, UnsafeText};
use crate::{CHUNKS_PER_FILE, MAX_CONTENT_NAME_BYTES};

/// The highest chunk index: chunks are numbered 1..=5.
#[allow(clippy::cast_possible_truncation)] // CHUNKS_PER_FILE is 5
pub const MAX_INDEX: u8 = CHUNKS_PER_FILE as u8;

/// The 1-based index of the chunk at 0-based position `i` (< 5).
#[allow(clippy::cast_possible_truncation)] // callers pass positions below CHUNKS_PER_FILE
fn index_at(i: usize) -> u8 {
    i as u8 + 1
}

/// The byte range `[start, end)` of one chunk within its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// Offset of the chunk's first byte in the file.
    pub start: u64,
    /// Offset one past the chunk's last byte.
    pub end: u64,
}

impl ChunkRange {
    /// Length of the chunk in bytes (0 for the empty trailing chunks of tiny files).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the chunk holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The range as a `Range<u64>`.
    pub fn as_range(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// Size of a full chunk of a file of `file_size` bytes: `ceil(file_size / 5)`.
pub fn chunk_len(file_size: u64) -> u64 {
    file_size.div_ceil(CHUNKS_PER_FILE as u64)
}

/// The byte ranges of the five chunks of a file of `file_size` bytes, in order.
pub fn chunk_ranges(file_size: u64) -> [ChunkRange; CHUNKS_PER_FILE] {
    let len = chunk_len(file_size);
    std::array::from_fn(|i| {
        let start = (len * i as u64).min(file_size);
        let end = (start + len).min(file_size);
        ChunkRange { start, end }
    })
}

/// Why a name was refused as a content or chunk name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_CONTENT_NAME_BYTES`].
    #[error("name is {0} bytes long, more than the {MAX_CONTENT_NAME_BYTES} allowed")]
    TooLong(usize),
    /// The name, or one of its path components, is `.` or `..`.
    #[error("name is or holds a relative path component (. or ..)")]
    DotName,
    /// The name starts or ends with `/`, or holds `//`: an empty path component.
    #[error("name has an empty path component (a leading, trailing or doubled /)")]
    EmptyComponent,
    /// The name contains a path separator.
    #[error("name contains the forbidden character {0:?}")]
    ForbiddenChar(char),
    /// The name holds a control, bidi or invisible character, or a flood of combining marks:
    /// it could not be shown as it is ([`text::validate`]).
    #[error("name {0}")]
    Unsafe(#[from] UnsafeText),
    /// A chunk name without the `_<1..5>` suffix.
    #[error("not a chunk name: expected <name>_<1..5>")]
    NotAChunk,
}

/// Checks that `name` can be used as a content name: a relative path of one or more components
/// joined by `/`, each a plain file name ([`validate_component`]), no leading, trailing or
/// doubled `/`, at most [`MAX_CONTENT_NAME_BYTES`] in all *as legacy peers see it*
/// ([`legacy_flat_name`]: each `/` counts 3 bytes), so the flattened name is a valid plain name
/// too, for our chunk servers and listeners as for legacy peers. Joined to any folder, such a
/// name stays inside it, on every platform, and a terminal shows it as it is.
///
/// # Errors
/// The [`NameError`] saying what is wrong.
pub fn validate_content_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let flat_len = name.len() + name.matches('/').count() * (LEGACY_SEPARATOR.len() - 1);
    if flat_len > MAX_CONTENT_NAME_BYTES {
        return Err(NameError::TooLong(flat_len));
    }
    for component in name.split('/') {
        match validate_component(component) {
            Err(NameError::Empty) => return Err(NameError::EmptyComponent),
            other => other?,
        }
    }
    Ok(())
}

/// Checks that `name` is a plain file name, one component of a content name: not empty, not
/// `.` or `..`, no `/` or `\`, at most [`MAX_CONTENT_NAME_BYTES`], and nothing a terminal
/// would not show as it is (no control, bidi or invisible character, no flood of combining
/// marks: [`text::validate`]).
///
/// # Errors
/// The [`NameError`] saying what is wrong.
pub fn validate_component(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_CONTENT_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c == '\\') {
        return Err(NameError::ForbiddenChar(c));
    }
    text::validate(name)?;
    Ok(())
}

/// What a legacy peer sees a content named `name` as: every `/` written `%2F`
/// (`photos/2024/a.jpg` → `photos%2F2024%2Fa.jpg`), a plain file name it can store and ask
/// for; a top-level name is unchanged. Our peers read it back through the `p2p.contents` of the
/// same announcement, never by decoding it: a legacy file may be named `a%2Fb` too.
pub fn legacy_flat_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('/') {
        std::borrow::Cow::Owned(name.replace('/', LEGACY_SEPARATOR))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The nested content name whose [`legacy_flat_name`] is `flat`, if `flat` holds a `%2F` and
/// reads as a valid nested name (`photos%2Fa.jpg` → `photos/a.jpg`). It is only a guess, for a
/// chunk server answering a legacy request: a name such as `a%2Fb` may be a plain file's own;
/// the server looks for that first, and shares no nested content whose components hold `%2F`
/// ([`is_legacy_ambiguous`]), so the guess is right whenever such a content is shared.
pub fn nested_name_of_flat(flat: &str) -> Option<String> {
    if !flat.contains(LEGACY_SEPARATOR) {
        return None;
    }
    let nested = flat.replace(LEGACY_SEPARATOR, "/");
    validate_content_name(&nested).ok()?;
    (legacy_flat_name(&nested) == flat).then_some(nested)
}

/// Whether a nested content name could not be told from another by its [`legacy_flat_name`]:
/// one of its components holds `%2F` itself (`a%2Fb/c` and `a/b/c` flatten alike). Such a
/// name is not shared.
pub fn is_legacy_ambiguous(name: &str) -> bool {
    name.contains('/') && name.contains(LEGACY_SEPARATOR)
}

/// What stands for `/` in [`legacy_flat_name`]: its percent-encoding.
pub const LEGACY_SEPARATOR: &str = "%2F";

/// One chunk's name: the content it belongs to and its index, 1..=5.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkName {
    content: String,
    index: u8,
}

impl ChunkName {
    /// Builds the name of chunk `index` (1..=5) of `content`.
    ///
    /// # Errors
    /// [`NameError`] when the content name is not valid or the index is out of range.
    pub fn new(content: &str, index: u8) -> Result<Self, NameError> {
        validate_content_name(content)?;
        if !(1..=MAX_INDEX).contains(&index) {
            return Err(NameError::NotAChunk);
        }
        Ok(Self {
            content: content.to_owned(),
            index,
        })
    }

    /// Parses `<content>_<index>`. The index is exactly one digit 1..=5; the content is what
    /// precedes the last underscore and must be a valid content name.
    ///
    /// # Errors
    /// [`NameError`] for anything else, including `ece.txt`, `a_6`, `_3` and `../x_1`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let (content, index) = name.rsplit_once('_').ok_or(NameError::NotAChunk)?;
        let index = match index {
            "1" => 1,
            "2" => 2,
            "3" => 3,
            "4" => 4,
            "5" => 5,
            _ => return Err(NameError::NotAChunk),
        };
        Self::new(content, index)
    }

    /// The five chunk names of `content`, in order.
    ///
    /// # Errors
    /// [`NameError`] when the content name is not valid.
    pub fn all_of(content: &str) -> Result<[ChunkName; CHUNKS_PER_FILE], NameError> {
        validate_content_name(content)?;
        Ok(std::array::from_fn(|i| ChunkName {
            content: content.to_owned(),
            index: index_at(i),
        }))
    }

    /// The content name (`photo.png` for `photo.png_3`).
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The 1-based index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The name legacy peers know this chunk by: `<`[`legacy_flat_name`]`>_<index>`
    /// (`photos%2Fa.jpg_3`); the name itself for a top-level content.
    pub fn to_legacy_string(&self) -> String {
        format!("{}_{}", legacy_flat_name(&self.content), self.index)
    }

    /// The 0-based position, for indexing arrays of five.
    pub fn position(&self) -> usize {
        usize::from(self.index - 1)
    }
}

impl fmt::Display for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.content, self.index)
    }
}

/// Which of the five chunks of a content a peer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChunkSet(u8);

impl ChunkSet {
    /// No chunk.
    pub const EMPTY: ChunkSet = ChunkSet(0);
    /// All five chunks.
    pub const ALL: ChunkSet = ChunkSet(0b1_1111);

    /// Adds chunk `index` (1..=5); other indexes are ignored.
    pub fn insert(&mut self, index: u8) {
        if (1..=MAX_INDEX).contains(&index) {
            self.0 |= 1 << (index - 1);
        }
    }

    /// Whether chunk `index` (1..=5) is present.
    pub fn contains(&self, index: u8) -> bool {
        (1..=MAX_INDEX).contains(&index) && self.0 & (1 << (index - 1)) != 0
    }

    /// Union of two sets.
    pub fn union(self, other: ChunkSet) -> ChunkSet {
        ChunkSet(self.0 | other.0)
    }

    /// Whether all five chunks are present.
    pub fn is_complete(&self) -> bool {
        *self == Self::ALL
    }

    /// Whether no chunk is present.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// How many chunks are present.
    pub fn count(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The present indexes, ascending.
    pub fn indexes(&self) -> impl Iterator<Item = u8> + '_ {
        (1..=MAX_INDEX).filter(|&i| self.contains(i))
    }

    /// Parses the five-character form written by [`Display`](fmt::Display): a digit where the
    /// chunk is present, `-` where it is not (`12-45`).
    pub fn parse(text: &str) -> Option<ChunkSet> {
        if text.len() != CHUNKS_PER_FILE {
            return None;
        }
        let mut set = ChunkSet::EMPTY;
        for (i, c) in text.bytes().enumerate() {
            let index = index_at(i);
            match c {
                b'-' => {}
                c if c == b'0' + index => set.insert(index),
                _ => return None,
            }
        }
        Some(set)
    }
}

impl fmt::Display for ChunkSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for index in 1..=MAX_INDEX {
            if self.contains(index) {
                write!(f, "{index}")?;
            } else {
                f.write_str("-")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(size: u64) -> Vec<u64> {
        chunk_ranges(size).iter().map(|r| r.len()).collect()
    }

    #[test]
    fn ranges_cover_the_file_in_order_for_every_small_size() {
        for size in 0..200u64 {
            let ranges = chunk_ranges(size);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[4].end, size, "size {size}");
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "size {size}");
            }
            for r in &ranges {
                assert!(r.len() <= chunk_len(size));
            }
        }
    }

    #[test]
    fn tiny_files_leave_trailing_chunks_empty() {
        assert_eq!(lens(0), [0, 0, 0, 0, 0]);
        assert_eq!(lens(1), [1, 0, 0, 0, 0]);
        assert_eq!(lens(4), [1, 1, 1, 1, 0]);
        assert_eq!(lens(6), [2, 2, 2, 0, 0]);
        assert_eq!(lens(7), [2, 2, 2, 1, 0]);
        assert_eq!(lens(16), [4, 4, 4, 4, 0]);
        assert_eq!(lens(10), [2, 2, 2, 2, 2]);
        assert_eq!(lens(11), [3, 3, 3, 2, 0]);
    }

    #[test]
    fn last_chunk_takes_the_remainder_of_large_files() {
        let size = 1024 * 1024 + 3;
        assert_eq!(chunk_len(size), 209_716);
        assert_eq!(lens(size), [209_716, 209_716, 209_716, 209_716, 209_715]);
        let huge = 5 * (u32::MAX as u64) + 7;
        assert_eq!(chunk_ranges(huge)[4].end, huge);
    }

    #[test]
    fn chunk_name_round_trips() {
        for text in ["photo.png_3", "ece_1", "a_b_5", "my file.tar.gz_2", "ü_4"] {
            let name = ChunkName::parse(text).unwrap();
            assert_eq!(name.to_string(), text);
        }
        let name = ChunkName::parse("a_b_5").unwrap();
        assert_eq!(name.content(), "a_b");
        assert_eq!(name.index(), 5);
        assert_eq!(name.position(), 4);
    }

    #[test]
    fn chunk_name_rejects_non_chunks_and_hostile_names() {
        for text in [
            "",
            "ece",
            "ece.txt",
            "ece_0",
            "ece_6",
            "ece_10",
            "ece_01",
            "ece_",
            "_3",
            "../x_1",
            "a\\b_1",
            "..\\_1",
            "/etc/passwd_1",
            "x\0y_1",
            "x\ny_2",
            "._1",
            ".._1",
            "esc\u{1b}[31m_1",
            "del\u{7f}_1",
            "csi\u{9b}_1",
            "gnp.\u{202e}exe_1",
            "iso\u{2066}late_1",
            "zero\u{200b}width_1",
            "bom\u{feff}_1",
            "line\u{2028}sep_1",
            "\u{301}stray_1",
        ] {
            assert!(ChunkName::parse(text).is_err(), "{text:?} accepted");
        }
        let flood = format!("z{}_1", "\u{301}".repeat(40));
        assert_eq!(
            ChunkName::parse(&flood),
            Err(NameError::Unsafe(UnsafeText::MarkFlood))
        );
        assert_eq!(
            validate_content_name("a\u{202e}b"),
            Err(NameError::Unsafe(UnsafeText::Hidden('\u{202e}')))
        );
        for fine in [
            "Résumé.pdf_1",
            "日本語.txt_2",
            "🎉 party.png_3",
            "e\u{301}t\u{301}e\u{301}_4",
        ] {
            assert!(ChunkName::parse(fine).is_ok(), "{fine:?} refused");
        }
        let long = format!("{}_1", "a".repeat(MAX_CONTENT_NAME_BYTES + 1));
        assert!(matches!(
            ChunkName::parse(&long),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn content_names_are_relative_paths_that_cannot_escape() {
        for fine in [
            "a",
            "photos/2024/a.jpg",
            "a/b",
            "my photos/a b.jpg",
            "日本/語.txt",
            ".hidden/x",
            "a/.b",
            "a/...",
            "a%2Fb",
            "x/y/z/w/v/u/t",
        ] {
            assert_eq!(validate_content_name(fine), Ok(()), "{fine:?}");
        }
        let refused = [
            ("", NameError::Empty),
            ("a/../b", NameError::DotName),
            ("../x", NameError::DotName),
            ("a/../../x", NameError::DotName),
            ("./a", NameError::DotName),
            ("a/.", NameError::DotName),
            ("..", NameError::DotName),
            ("/a", NameError::EmptyComponent),
            ("/etc/x", NameError::EmptyComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("/", NameError::EmptyComponent),
            ("a\\b", NameError::ForbiddenChar('\\')),
            ("a/b\\..\\c", NameError::ForbiddenChar('\\')),
            ("C:\\x", NameError::ForbiddenChar('\\')),
        ];
        for (name, why) in refused {
            assert_eq!(validate_content_name(name), Err(why), "{name:?}");
        }
        for control in [
            "a/b\nc",
            "a\0/b",
            "a/\u{1b}[31m",
            "dir\u{202e}/x",
            "a/\u{7f}",
        ] {
            assert!(
                matches!(validate_content_name(control), Err(NameError::Unsafe(_))),
                "{control:?}"
            );
        }
        // The length limit is on the whole path as legacy peers see it (each '/' is "%2F").
        let long_path = vec!["abcd"; MAX_CONTENT_NAME_BYTES / 5 + 1].join("/");
        assert!(matches!(
            validate_content_name(&long_path),
            Err(NameError::TooLong(_))
        ));
        let just = "a/".repeat(MAX_CONTENT_NAME_BYTES / 4 - 1) + "bcde";
        assert_eq!(legacy_flat_name(&just).len(), MAX_CONTENT_NAME_BYTES);
        assert_eq!(validate_content_name(&just), Ok(()));
        let over = "a/".repeat(MAX_CONTENT_NAME_BYTES / 4) + "b";
        assert_eq!(
            validate_content_name(&over),
            Err(NameError::TooLong(MAX_CONTENT_NAME_BYTES + 1))
        );
        assert!(ChunkName::parse(&format!("{}_1", legacy_flat_name(&just))).is_ok());
        // One component is a plain file name: no '/' at all.
        assert_eq!(validate_component("a.jpg"), Ok(()));
        assert_eq!(
            validate_component("a/b"),
            Err(NameError::ForbiddenChar('/'))
        );
        assert_eq!(validate_component(".."), Err(NameError::DotName));
        assert_eq!(validate_component(""), Err(NameError::Empty));
    }

    #[test]
    fn every_accepted_name_joined_to_a_root_stays_under_it() {
        use std::path::{Component, Path};
        let root = Path::new("/srv/root");
        for name in ["a", "photos/2024/a.jpg", "a/.b/c", "x y/z"] {
            validate_content_name(name).unwrap();
            let joined = root.join(name);
            assert!(joined.starts_with(root));
            assert!(joined
                .strip_prefix(root)
                .unwrap()
                .components()
                .all(|c| matches!(c, Component::Normal(_))));
        }
    }

    #[test]
    fn legacy_peers_see_nested_names_flattened() {
        assert_eq!(legacy_flat_name("a.jpg"), "a.jpg");
        assert_eq!(
            legacy_flat_name("photos/2024/a.jpg"),
            "photos%2F2024%2Fa.jpg"
        );
        let flat = legacy_flat_name("photos/2024/a.jpg");
        assert_eq!(validate_component(&flat), Ok(()), "a plain file name");
        let chunk = ChunkName::new("photos/2024/a.jpg", 3).unwrap();
        assert_eq!(chunk.to_string(), "photos/2024/a.jpg_3");
        assert_eq!(chunk.to_legacy_string(), "photos%2F2024%2Fa.jpg_3");
        assert_eq!(
            nested_name_of_flat("photos%2F2024%2Fa.jpg").as_deref(),
            Some("photos/2024/a.jpg")
        );
        for not_nested in ["top.txt", "%2Fa", "a%2F", "a%2F..%2Fb", "a%2F%2Fb"] {
            assert_eq!(nested_name_of_flat(not_nested), None, "{not_nested}");
        }
        assert!(is_legacy_ambiguous("a%2Fb/c"));
        assert!(!is_legacy_ambiguous("a%2Fb") && !is_legacy_ambiguous("a/b"));
        let parsed = ChunkName::parse("photos/2024/a.jpg_3").unwrap();
        assert_eq!(parsed.content(), "photos/2024/a.jpg");
        assert_eq!(
            ChunkName::parse("top.txt_1").unwrap().to_legacy_string(),
            "top.txt_1"
        );
        for hostile in ["../x_1", "a/../../x_2", "/etc/x_3", "a//b_4", "a/_5"] {
            assert!(ChunkName::parse(hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn all_of_names_the_five_chunks() {
        let names = ChunkName::all_of("x.bin").unwrap();
        let text: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            ["x.bin_1", "x.bin_2", "x.bin_3", "x.bin_4", "x.bin_5"]
        );
        assert!(ChunkName::all_of("..").is_err());
    }

    #[test]
    fn chunk_set_displays_and_parses() {
        let mut set = ChunkSet::EMPTY;
        assert_eq!(set.to_string(), "-----");
        set.insert(1);
        set.insert(3);
        set.insert(9);
        assert_eq!(set.to_string(), "1-3--");
        assert_eq!(set.count(), 2);
        assert_eq!(ChunkSet::parse("1-3--"), Some(set));
        assert_eq!(ChunkSet::parse("12345"), Some(ChunkSet::ALL));
        assert!(ChunkSet::ALL.is_complete());
        for bad in ["", "1234", "123456", "21345", "1x345"] {
            assert_eq!(ChunkSet::parse(bad), None, "{bad:?}");
        }
        assert_eq!(set.indexes().collect::<Vec<_>>(), [1, 3]);
    }
}
