//! The allow list `DIR/allowed-peers.txt`: the peer IDs that may download from this peer's
//! chunk server on a private network. Absent or empty, every member may.
//!
//! # Format
//! One peer ID per line, as `peers` shows it; `#` starts a comment (a whole line, or after
//! the ID); blank lines are ignored. A line that is no peer ID is reported and skipped, never
//! fatal: the rest of the list still applies.
//! ```text
//! # who may download from me
//! ABCD-EFGH-IJKL-MNOP   # alice's laptop
//! qrst-uvwx-yz23-4567
//! ```
//!
//! This module parses and watches the file; the chunk server decides what a refusal looks
//! like. An allow list that exists but cannot be read allows nobody (never, by accident,
//! everybody) until it can be read again.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::identity::PeerId;
use crate::fsutil::{self, FileStamp};

/// Name of the allow list in a peer folder.
pub const ALLOW_FILE: &str = "allowed-peers.txt";

/// Who may download: everyone, the listed IDs, or (the file being unreadable) nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ids: BTreeSet<PeerId>,
    /// Set when the file exists but could not be read.
    nobody: bool,
}

/// A line of the allow list that is no peer ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Its number, from 1.
    pub number: usize,
    /// Its text, trimmed.
    pub text: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {:?} is not a peer ID (ABCD-EFGH-IJKL-MNOP); skipped",
            self.number,
            self.text.chars().take(80).collect::<String>()
        )
    }
}

impl AllowList {
    /// The list of `text`, and the lines that are no peer ID.
    pub fn parse(text: &str) -> (AllowList, Vec<BadLine>) {
        let mut list = AllowList::default();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            match entry.parse::<PeerId>() {
                Ok(id) => {
                    list.ids.insert(id);
                }
                Err(_) => bad.push(BadLine {
                    number: i + 1,
                    text: entry.to_owned(),
                }),
            }
        }
        (list, bad)
    }

    /// A list that allows nobody: for a file that exists but cannot be read.
    pub fn nobody() -> AllowList {
        AllowList {
            ids: BTreeSet::new(),
            nobody: true,
        }
    }

    /// Whether `id` may download.
    pub fn allows(&self, id: &PeerId) -> bool {
        !self.nobody && (self.ids.is_empty() || self.ids.contains(id))
    }

    /// Whether every member may download (no list, or an empty one).
    pub fn allows_everyone(&self) -> bool {
        !self.nobody && self.ids.is_empty()
    }

    /// How many IDs are listed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no ID is listed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The allow list of the peer folder `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(ALLOW_FILE)
    }

    /// One line for the log: what the list allows.
    pub fn describe(&self) -> String {
        if self.nobody {
            format!("{ALLOW_FILE} cannot be read: no member may download until it can")
        } else if self.ids.is_empty() {
            "every member of the network may download".to_owned()
        } else {
            format!(
                "only the {} peer ID(s) of {ALLOW_FILE} may download",
                self.ids.len()
            )
        }
    }
}

/// Watches the allow list: [`AllowWatch::current`] re-reads it when it changed (one `stat`
/// otherwise), logging what it now allows and any bad line.
#[derive(Debug)]
pub struct AllowWatch {
    path: PathBuf,
    /// The version last read; `None` before the first read.
    stamp: Option<FileStamp>,
    list: AllowList,
}

impl AllowWatch {
    /// Watches the allow list of the peer folder `dir` (which may not exist).
    pub fn new(dir: &Path) -> AllowWatch {
        AllowWatch {
            path: AllowList::path_in(dir),
            stamp: None,
            list: AllowList::default(),
        }
    }

    /// The list as the file says now.
    pub fn current(&mut self) -> &AllowList {
        let stamp = match fsutil::file_stamp(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => {
                if self.stamp.is_some() || !self.list.nobody {
                    log::warn!("cannot look at {}: {e}", self.path.display());
                }
                self.stamp = None;
                self.list = AllowList::nobody();
                return &self.list;
            }
        };
        if self.stamp == Some(stamp) {
            return &self.list;
        }
        self.stamp = Some(stamp);
        self.list = match std::fs::read(&self.path) {
            Ok(bytes) => {
                let (list, bad) = AllowList::parse(&String::from_utf8_lossy(&bytes));
                for line in bad {
                    log::warn!("{}: {line}", self.path.display());
                }
                list
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => AllowList::default(),
            Err(e) => {
                log::warn!("cannot read {}: {e}", self.path.display());
                // Read again at the next look.
                self.stamp = None;
                AllowList::nobody()
            }
        };
        log::info!("allow list: {}", self.list.describe());
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Identity;

    fn id(seed: u8) -> PeerId {
        Identity::from_seed(&[seed; 32]).id()
    }

    #[test]
    fn ids_comments_blank_and_bad_lines() {
        let text = format!(
            "# who may download\n\n{}   # alice\n  {}\nnot-an-id\n{}-extra\n",
            id(1),
            id(2).to_string().to_lowercase(),
            id(3)
        );
        let (list, bad) = AllowList::parse(&text);
        assert_eq!(list.len(), 2);
        assert!(list.allows(&id(1)));
        assert!(list.allows(&id(2)), "any case");
        assert!(!list.allows(&id(3)));
        assert!(!list.allows_everyone());
        assert_eq!(bad.iter().map(|b| b.number).collect::<Vec<_>>(), vec![5, 6]);
        assert!(bad[0].to_string().contains("not-an-id"));
    }

    #[test]
    fn an_absent_or_empty_list_allows_every_member_and_an_unreadable_one_nobody() {
        let (empty, bad) = AllowList::parse("# nobody listed yet\n\n");
        assert!(bad.is_empty());
        assert!(empty.allows_everyone());
        assert!(empty.allows(&id(9)));
        assert!(AllowList::default().allows(&id(9)));
        assert!(!AllowList::nobody().allows(&id(9)));
        assert!(!AllowList::nobody().allows_everyone());
    }

    #[test]
    fn the_watch_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = AllowWatch::new(dir.path());
        assert!(watch.current().allows_everyone());
        let path = AllowList::path_in(dir.path());
        fsutil::write_atomic(&path, format!("{}\n", id(1)).as_bytes()).unwrap();
        assert!(watch.current().allows(&id(1)));
        assert!(!watch.current().allows(&id(2)));
        fsutil::write_atomic(&path, format!("{}\n", id(2)).as_bytes()).unwrap();
        assert!(watch.current().allows(&id(2)));
        assert!(!watch.current().allows(&id(1)));
        std::fs::remove_file(&path).unwrap();
        assert!(watch.current().allows_everyone());
        // A folder where the file should be: unreadable, so nobody.
        std::fs::create_dir(&path).unwrap();
        assert!(!watch.current().allows(&id(1)));
    }
}
