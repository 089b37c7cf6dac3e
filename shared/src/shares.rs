//! `DIR/shares.txt`: what this peer shares besides the chunk server's `--share` paths (or
//! `served_files/`), edited by `downloader share` / `unshare` while the programs run.
//!
//! # Format
//! ```text
//! # shares.txt: one absolute path per line (a file, or a folder: its whole tree); `#` comments
//! /home/me/photos
//! /home/me/notes.txt
//! # a line `-NAME` never shares the content NAME, whichever share holds it
//! -draft.txt
//! # and `-FOLDER/` no content under it
//! -photos/private/
//! ```
//! A line is a *path* when it starts with `/`, an *exclusion* when it starts with `-`; blank
//! lines and lines starting with `#` are skipped; leading and trailing spaces are ignored (so a
//! path cannot end with a space). Anything else (a relative path, an empty `-`) is a bad line:
//! the chunk server ignores it with a warning, and the downloader keeps it as it is when it
//! rewrites the file, as it keeps comments. `#` inside a line is part of the path.
//!
//! A folder of this list is shared under its own name: `/home/me/photos` shares
//! `photos/2024/a.jpg` ([`crate::tree`]); a file, under its file name.
//!
//! # How it combines with `--share` and `served_files/`
//! The chunk server shares the union: its own roots first (`--share PATH`…, or
//! `served_files/` when none is given), then the paths of this file in order; on a name
//! conflict the first root wins. `--share` folders and `served_files/` are shared by their
//! contents: their files keep their bare names (`served_files/photos/a.jpg` is `photos/a.jpg`).
//! Exclusions apply to all of them, so a file of
//! `served_files/` or of a `--share` folder, which the list cannot remove, is unshared by an
//! exclusion (`downloader unshare` writes one) until `downloader share` shares it again.
//!
//! # Writers
//! [`update`] is the only writer: it takes an exclusive lock (`.run/shares.lock`, fs2), reads,
//! edits and writes the file atomically (temporary file + rename), so two `downloader share`
//! running at once both land, and the chunk server never reads half a file. The chunk server
//! polls it ([`SharesWatch`], every [`SHARES_POLL`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsutil::{self, FileStamp};
use crate::peer_dir::PeerDir;

/// Name of the shares list in the peer folder.
pub const SHARES_FILE: &str = "shares.txt";

/// Name of the lock file, in `.run/`, that serialises writers of [`SHARES_FILE`].
pub const SHARES_LOCK: &str = "shares.lock";

/// How often the chunk server looks at `shares.txt` (one `stat`): an edit is picked up well
/// within the second a `downloader share` is promised to take.
pub const SHARES_POLL: Duration = Duration::from_millis(200);

/// The header a new shares list starts with.
const HEADER: &str = "\
# shares.txt: what the chunk server shares besides --share / served_files (see README).
# One absolute path per line (a file, or a folder: its whole tree, under the folder's name);
# '-NAME' never shares NAME, '-FOLDER/' nothing under FOLDER.
";

/// What one line of the list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A blank line or a `#` comment.
    Comment,
    /// Share this file or folder.
    Path(PathBuf),
    /// Never share the content of this name.
    Exclude(String),
    /// A line that means nothing, and why.
    Bad(String),
}

impl Line {
    /// What `text` (one line, without its newline) says.
    pub fn parse(text: &str) -> Line {
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            Line::Comment
        } else if let Some(name) = line.strip_prefix('-') {
            let name = name.trim();
            if name.is_empty() {
                Line::Bad("'-' must be followed by a content name".into())
            } else {
                Line::Exclude(name.to_owned())
            }
        } else if line.starts_with('/') {
            Line::Path(PathBuf::from(line))
        } else {
            Line::Bad("not an absolute path, a '-NAME' exclusion or a '#' comment".into())
        }
    }
}

/// The shares list: its lines as written, and what each says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharesList {
    lines: Vec<(String, Line)>,
}

impl SharesList {
    /// Parses the text of a shares list.
    pub fn parse(text: &str) -> SharesList {
        SharesList {
            lines: text
                .lines()
                .map(|l| (l.to_owned(), Line::parse(l)))
                .collect(),
        }
    }

    /// The text to write: every line kept as it was, edits included; a new list starts with a
    /// short explanation.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if self.lines.is_empty() {
            return text;
        }
        for (line, _) in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The paths to share, in order, each once.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for (_, line) in &self.lines {
            if let Line::Path(p) = line {
                if !paths.contains(p) {
                    paths.push(p.clone());
                }
            }
        }
        paths
    }

    /// The content names never shared.
    pub fn exclusions(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, line) in &self.lines {
            if let Line::Exclude(n) = line {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        names
    }

    /// The bad lines, 1-based line number, text and why.
    pub fn problems(&self) -> Vec<(usize, String, String)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, (text, line))| match line {
                Line::Bad(why) => Some((i + 1, text.trim().to_owned(), why.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether `path` is listed.
    pub fn has_path(&self, path: &Path) -> bool {
        self.lines
            .iter()
            .any(|(_, l)| matches!(l, Line::Path(p) if p == path))
    }

    /// Whether `name` is excluded.
    pub fn is_excluded(&self, name: &str) -> bool {
        self.lines
            .iter()
            .any(|(_, l)| matches!(l, Line::Exclude(n) if n == name))
    }

    fn push(&mut self, text: String) {
        if self.lines.is_empty() {
            self.lines = HEADER
                .lines()
                .map(|l| (l.to_owned(), Line::Comment))
                .collect();
        }
        let line = Line::parse(&text);
        self.lines.push((text, line));
    }

    /// Lists `path` (absolute, no newline) unless it is already; returns whether it was added.
    pub fn add_path(&mut self, path: &Path) -> bool {
        if self.has_path(path) {
            return false;
        }
        self.push(path.display().to_string());
        true
    }

    /// Removes every line listing `path`; returns whether there was one.
    pub fn remove_path(&mut self, path: &Path) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|(_, l)| !matches!(l, Line::Path(p) if p == path));
        self.lines.len() != before
    }

    /// Excludes `name` unless it is already; returns whether it was added.
    pub fn exclude(&mut self, name: &str) -> bool {
        if self.is_excluded(name) {
            return false;
        }
        self.push(format!("-{name}"));
        true
    }

    /// Removes every exclusion of `name`; returns whether there was one.
    pub fn include(&mut self, name: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|(_, l)| !matches!(l, Line::Exclude(n) if n == name));
        self.lines.len() != before
    }
}

/// Whether the exclusion `-excluded` keeps the content `name` from being shared: the name
/// itself, or, for an exclusion ending with `/` (`-photos/2024/`), every content under that
/// folder.
pub fn exclusion_covers(excluded: &str, name: &str) -> bool {
    excluded == name || (excluded.ends_with('/') && name.starts_with(excluded))
}

/// Why a path cannot be written as a line of the list.
///
/// # Errors
/// A message when `path` is not absolute, not UTF-8, holds a control character, or starts or
/// ends with a space (which the parser would trim).
pub fn check_listable(path: &Path) -> Result<(), String> {
    let Some(text) = path.to_str() else {
        return Err("its path is not valid UTF-8".into());
    };
    if !path.is_absolute() {
        return Err("its path is not absolute".into());
    }
    if text.chars().any(char::is_control) {
        return Err("its path holds a control character".into());
    }
    if text.trim() != text {
        return Err("its path ends with a space".into());
    }
    Ok(())
}

/// `DIR/shares.txt`.
pub fn path_in(dir: &PeerDir) -> PathBuf {
    dir.root().join(SHARES_FILE)
}

/// Reads the shares list of `dir`; a missing file is an empty list.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load(dir: &PeerDir) -> io::Result<SharesList> {
    match std::fs::read(path_in(dir)) {
        Ok(bytes) => Ok(SharesList::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SharesList::default()),
        Err(e) => Err(e),
    }
}

/// Edits the shares list of `dir` under its lock: reads it, lets `edit` change it, and writes
/// it back atomically when `edit` returns `Ok(true)`. Concurrent callers, in any process, run
/// one after the other.
///
/// # Errors
/// When the lock, the file or `edit` fails; the file is then left as it was.
pub fn update<T, E: From<io::Error>>(
    dir: &PeerDir,
    edit: impl FnOnce(&mut SharesList) -> Result<(T, bool), E>,
) -> Result<T, E> {
    let lock = dir.lock_for_edit(SHARES_LOCK)?;
    let mut list = load(dir)?;
    let (value, changed) = edit(&mut list)?;
    if changed {
        fsutil::write_atomic(&path_in(dir), list.render().as_bytes())?;
    }
    // The lock goes with the file descriptor.
    drop(lock);
    Ok(value)
}

/// Watches a shares list: [`SharesWatch::poll`] re-reads it when it changed.
#[derive(Debug)]
pub struct SharesWatch {
    path: PathBuf,
    /// The version last read; `None` before the first read, so the first poll always reads.
    stamp: Option<FileStamp>,
}

impl SharesWatch {
    /// Watches the shares list of `dir` (which may not exist yet).
    pub fn new(dir: &PeerDir) -> SharesWatch {
        SharesWatch {
            path: path_in(dir),
            stamp: None,
        }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list when it changed since the last poll (or at the first poll), else `None`.
    ///
    /// # Errors
    /// When the file exists but cannot be read; it is read again at the next poll.
    pub fn poll(&mut self) -> io::Result<Option<SharesList>> {
        let stamp = fsutil::file_stamp(&self.path)?;
        if self.stamp == Some(stamp) {
            return Ok(None);
        }
        let list = match std::fs::read(&self.path) {
            Ok(bytes) => SharesList::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => SharesList::default(),
            Err(e) => return Err(e),
        };
        self.stamp = Some(stamp);
        Ok(Some(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_exclusion_covers_its_subtree_only() {
        assert!(exclusion_covers("a.txt", "a.txt"));
        assert!(!exclusion_covers("a.txt", "a.txt.bak"));
        assert!(exclusion_covers("photos/", "photos/2024/a.jpg"));
        assert!(exclusion_covers("photos/2024/a.jpg", "photos/2024/a.jpg"));
        assert!(!exclusion_covers("photos/", "photos2/a.jpg"));
        assert!(!exclusion_covers("photos", "photos/a.jpg"));
    }

    const TEXT: &str = "\
# my shares
/home/me/Music

  /home/me/notes #1.txt  
-draft.txt
music
-
/home/me/Music
";

    #[test]
    fn paths_exclusions_comments_and_bad_lines() {
        let list = SharesList::parse(TEXT);
        assert_eq!(
            list.paths(),
            [
                PathBuf::from("/home/me/Music"),
                PathBuf::from("/home/me/notes #1.txt")
            ]
        );
        assert_eq!(list.exclusions(), ["draft.txt"]);
        let bad: Vec<(usize, String)> = list
            .problems()
            .into_iter()
            .map(|(n, text, _)| (n, text))
            .collect();
        assert_eq!(bad, [(6, "music".to_owned()), (7, "-".to_owned())]);
        // Unedited, the text comes back as it was.
        assert_eq!(list.render(), TEXT);
    }

    #[test]
    fn edits_keep_the_other_lines_and_are_idempotent() {
        let mut list = SharesList::parse(TEXT);
        assert!(list.add_path(Path::new("/srv/x")));
        assert!(!list.add_path(Path::new("/srv/x")));
        assert!(list.remove_path(Path::new("/home/me/Music")));
        assert!(!list.remove_path(Path::new("/home/me/Music")));
        assert!(list.exclude("a.txt"));
        assert!(!list.exclude("a.txt"));
        assert!(list.include("draft.txt"));
        assert!(!list.include("draft.txt"));
        let again = SharesList::parse(&list.render());
        assert_eq!(
            again.paths(),
            [
                PathBuf::from("/home/me/notes #1.txt"),
                PathBuf::from("/srv/x")
            ]
        );
        assert_eq!(again.exclusions(), ["a.txt"]);
        assert!(again.render().starts_with("# my shares\n"));
        assert_eq!(
            again.problems().len(),
            2,
            "bad lines are kept for their author"
        );
    }

    #[test]
    fn a_new_list_starts_with_its_explanation() {
        let mut list = SharesList::default();
        assert_eq!(list.render(), "");
        list.add_path(Path::new("/a b/c"));
        let text = list.render();
        assert!(text.starts_with("# shares.txt"), "{text}");
        assert!(text.ends_with("\n/a b/c\n"), "{text}");
        assert_eq!(SharesList::parse(&text).paths(), [PathBuf::from("/a b/c")]);
    }

    #[test]
    fn only_plain_absolute_paths_can_be_listed() {
        assert!(check_listable(Path::new("/srv/ok file.txt")).is_ok());
        assert!(check_listable(Path::new("relative")).is_err());
        assert!(check_listable(Path::new("/a\nb")).is_err());
        assert!(check_listable(Path::new("/a ")).is_err());
    }

    #[test]
    fn concurrent_updates_all_land_and_the_watch_sees_each_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        let mut watch = SharesWatch::new(&dir);
        assert_eq!(watch.poll().unwrap(), Some(SharesList::default()));
        assert_eq!(watch.poll().unwrap(), None);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    update::<_, io::Error>(&dir, |list| {
                        Ok(((), list.add_path(Path::new(&format!("/f{i}")))))
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let list = load(&dir).unwrap();
        assert_eq!(list.paths().len(), 8);
        assert_eq!(watch.poll().unwrap().map(|l| l.paths().len()), Some(8));
        update::<_, io::Error>(&dir, |list| Ok(((), list.exclude("x")))).unwrap();
        assert_eq!(
            watch.poll().unwrap().map(|l| l.exclusions()),
            Some(vec!["x".to_owned()])
        );
        // A failed edit changes nothing.
        let failed = update::<(), io::Error>(&dir, |list| {
            list.add_path(Path::new("/never"));
            Err(io::Error::other("refused"))
        });
        assert!(failed.is_err());
        assert!(!load(&dir).unwrap().has_path(Path::new("/never")));
    }
}
