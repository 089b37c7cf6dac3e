//! What can be downloaded: the contents on offer in `tags.txt`, grouped by name and digest into
//! [`Target`]s (the downloader's view of the file, which `tags.txt` itself does not group), and
//! how the user picks one.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::tags::{Proto, TagEntry, TagsIndex};
use shared::text::terminal_safe;

use crate::command::Selection;
use crate::format;

/// A peer that holds some chunks of a content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its username.
    pub user: String,
    /// Where its chunk server answers.
    pub addr: SocketAddr,
    /// What its chunk server speaks.
    pub proto: Proto,
    /// The chunks it announced.
    pub chunks: ChunkSet,
    /// The root digest of the manifest it announced, when it announced one: the manifest it
    /// vouches for.
    pub root: Option<Digest>,
}

impl Holder {
    /// The holder an entry of `tags.txt` describes.
    fn from_entry(entry: &TagEntry) -> Holder {
        Holder {
            user: entry.user.clone(),
            addr: entry.addr,
            proto: entry.proto,
            chunks: entry.chunks,
            root: entry.root,
        }
    }

    /// `alice@127.0.0.2:5001`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.user, self.addr)
    }
}

/// One downloadable content: a name, its digest when known, and its holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The content (file) name.
    pub name: String,
    /// SHA-256 of the whole file; `None` when only legacy peers announce it.
    pub sha256: Option<Digest>,
    /// Size in bytes, when announced.
    pub size: Option<u64>,
    /// Its holders.
    pub holders: Vec<Holder>,
}

impl Target {
    /// Union of the holders' chunks.
    pub fn available(&self) -> ChunkSet {
        self.holders
            .iter()
            .fold(ChunkSet::EMPTY, |acc, h| acc.union(h.chunks))
    }
}

/// Why a selection names no single content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No content with that name (or digest prefix) is on offer.
    #[error("no peer offers {0:?} (see `downloader list`)")]
    NotFound(String),
    /// The number is not in the listing.
    #[error("there is no item {0} in the list (1 to {1})")]
    BadNumber(usize, usize),
}

/// The contents on offer, in listing order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The contents, sorted by name, the most available first among equal names.
    pub targets: Vec<Target>,
}

impl Catalog {
    /// Builds the catalog from the entries of `index` still live at `now`: grouped by name and
    /// digest, so two different files that share a name are two targets. Sorted by name; per
    /// name, complete targets first, then verified ones (a legacy copy is unverifiable), then
    /// the most available, the most held.
    pub fn from_index(index: &TagsIndex, now: DateTime<Utc>) -> Catalog {
        let mut groups: BTreeMap<(&str, Option<Digest>), Vec<&TagEntry>> = BTreeMap::new();
        for entry in index.live(now).filter(|e| !e.chunks.is_empty()) {
            groups
                .entry((entry.content.as_str(), entry.sha256))
                .or_default()
                .push(entry);
        }
        let mut targets: Vec<Target> = groups
            .into_iter()
            .map(|((name, sha256), entries)| Target {
                name: name.to_owned(),
                sha256,
                size: entries.iter().find_map(|e| e.size),
                holders: entries.into_iter().map(Holder::from_entry).collect(),
            })
            .collect();
        let rank = |t: &Target| {
            let available = t.available();
            (
                Reverse(available.is_complete()),
                Reverse(t.sha256.is_some()),
                Reverse(available.count()),
                Reverse(t.holders.len()),
            )
        };
        targets.sort_by(|a, b| (&a.name, rank(a), a.sha256).cmp(&(&b.name, rank(b), b.sha256)));
        Catalog { targets }
    }

    /// Picks a content. By name, when several different files share it, the first (most
    /// available) wins unless `sha256_prefix` picks another; the second value counts how many
    /// contents had that name.
    ///
    /// # Errors
    /// [`SelectError`] when nothing matches.
    pub fn select(
        &self,
        selection: &Selection,
        sha256_prefix: Option<&str>,
    ) -> Result<(&Target, usize), SelectError> {
        match selection {
            Selection::Number(n) => match n.checked_sub(1).and_then(|i| self.targets.get(i)) {
                Some(target) => Ok((target, 1)),
                None => Err(SelectError::BadNumber(*n, self.targets.len())),
            },
            Selection::Name(name) => {
                let prefix = sha256_prefix.map(str::to_ascii_lowercase);
                let matches: Vec<&Target> = self
                    .targets
                    .iter()
                    .filter(|t| &t.name == name)
                    .filter(|t| match (&prefix, t.sha256) {
                        (None, _) => true,
                        (Some(p), Some(d)) => d.to_string().starts_with(p.as_str()),
                        (Some(_), None) => false,
                    })
                    .collect();
                match matches.first() {
                    Some(first) => Ok((first, matches.len())),
                    None => Err(SelectError::NotFound(name.clone())),
                }
            }
        }
    }

    /// The listing shown by `list` and at the prompt.
    pub fn render(&self) -> String {
        let all: Vec<(usize, &Target)> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (i + 1, t))
            .collect();
        self.render_some(&all)
    }

    /// The listing of some of the targets, each with its number in the full listing.
    pub fn render_some(&self, shown: &[(usize, &Target)]) -> String {
        if self.targets.is_empty() {
            return "No files on offer yet: tags.txt lists no live peer. Is the listener running?\n"
                .to_owned();
        }
        let rows: Vec<[String; 6]> = shown
            .iter()
            .map(|&(number, t)| {
                let available = t.available();
                // Names come from the network (through tags.txt): shown, never obeyed.
                let mut users: Vec<String> = t
                    .holders
                    .iter()
                    .map(|h| match h.proto {
                        Proto::Legacy => format!("{} (legacy)", terminal_safe(&h.user)),
                        Proto::P2p(_) => terminal_safe(&h.user).into_owned(),
                    })
                    .collect();
                users.dedup();
                [
                    format!("{number}"),
                    terminal_safe(&t.name).into_owned(),
                    t.size.map_or("?".into(), format::size),
                    if available.is_complete() {
                        "5/5".into()
                    } else {
                        format!("{}/5 ({available})", available.count())
                    },
                    users.join(", "),
                    t.sha256.map_or("unverified".into(), |d| d.short(12)),
                ]
            })
            .collect();
        let header = ["#", "NAME", "SIZE", "CHUNKS", "HOLDERS", "SHA256"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(header.map(String::from)).chain(rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:>width$}  ");
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Whether a content name matches the pattern of `downloader list PATTERN`, ignoring case: a
/// glob over the whole name when the pattern holds `*` (any run of characters) or `?` (one
/// character), else a substring of the name.
pub fn name_matches(name: &str, pattern: &str) -> bool {
    let name: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let pattern: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    if !pattern.iter().any(|&c| c == '*' || c == '?') {
        return name
            .windows(pattern.len().max(1))
            .any(|w| w == pattern.as_slice())
            || pattern.is_empty();
    }
    glob(&name, &pattern)
}

/// `*`/`?` glob over the whole of `name`, with one backtracking point (the last `*`): linear
/// in practice, never exponential.
fn glob(name: &[char], pattern: &[char]) -> bool {
    let (mut n, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                n += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, ip: u8, content: &str, sha: Option<u8>, chunks: &str) -> TagEntry {
        TagEntry {
            user: user.into(),
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            proto: if sha.is_some() {
                Proto::P2p(1)
            } else {
                Proto::Legacy
            },
            content: content.into(),
            chunks: ChunkSet::parse(chunks).unwrap(),
            size: sha.map(|_| 2048),
            sha256: sha.map(|n| Digest::of(&[n])),
            root: sha.map(|n| Digest::of(&[n, n])),
            interval: 60,
            last_seen: Utc::now(),
        }
    }

    fn catalog() -> Catalog {
        let index = TagsIndex {
            updated: None,
            entries: vec![
                entry("alice", 2, "notes.txt", Some(1), "12345"),
                entry("bob", 3, "notes.txt", Some(2), "12345"),
                entry("carol", 4, "notes.txt", Some(2), "12---"),
                entry("ece", 9, "ece", None, "123--"),
            ],
        };
        Catalog::from_index(&index, Utc::now())
    }

    #[test]
    fn same_name_different_files_are_two_targets_most_holders_first() {
        let c = catalog();
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.targets[0].name, "ece");
        assert_eq!(c.targets[1].name, "notes.txt");
        assert_eq!(c.targets[1].holders.len(), 2);
        assert_eq!(c.targets[1].sha256, Some(Digest::of(&[2])));
        assert_eq!(c.targets[2].holders[0].user, "alice");
    }

    #[test]
    fn select_by_number_name_and_digest_prefix() {
        let c = catalog();
        let (t, n) = c.select(&Selection::Number(1), None).unwrap();
        assert_eq!((t.name.as_str(), n), ("ece", 1));
        let (t, n) = c
            .select(&Selection::Name("notes.txt".into()), None)
            .unwrap();
        assert_eq!((t.sha256, n), (Some(Digest::of(&[2])), 2));
        let alice = Digest::of(&[1]).short(6);
        let (t, _) = c
            .select(
                &Selection::Name("notes.txt".into()),
                Some(&alice.to_uppercase()),
            )
            .unwrap();
        assert_eq!(t.holders[0].user, "alice");
        assert_eq!(
            c.select(&Selection::Number(4), None),
            Err(SelectError::BadNumber(4, 3))
        );
        assert_eq!(
            c.select(&Selection::Number(0), None),
            Err(SelectError::BadNumber(0, 3))
        );
        assert!(matches!(
            c.select(&Selection::Name("nope".into()), None),
            Err(SelectError::NotFound(_))
        ));
        assert!(c
            .select(&Selection::Name("ece".into()), Some("00"))
            .is_err());
    }

    #[test]
    fn listing_escapes_what_a_terminal_would_obey() {
        let flood = format!("z{}", "\u{301}".repeat(40));
        let index = TagsIndex {
            updated: None,
            entries: vec![
                entry("mal\u{202e}lory", 2, "gnp.\u{202e}exe", Some(1), "12345"),
                entry("eve\u{1b}[31m", 3, "bell\u{7}\nline", None, "12345"),
                entry("zw\u{200b}j", 4, &flood, Some(2), "12345"),
                entry("José", 5, "Résumé 日本語 🎉.pdf", Some(3), "12345"),
            ],
        };
        let text = Catalog::from_index(&index, Utc::now()).render();
        for c in ['\u{202e}', '\u{1b}', '\u{7}', '\u{200b}'] {
            assert!(!text.contains(c), "{c:?} raw in:\n{text}");
        }
        assert_eq!(text.lines().count(), 5, "one line per item:\n{text}");
        assert!(!text.contains(&"\u{301}".repeat(9)), "{text}");
        assert!(text.contains("gnp.\\u{202e}exe"), "{text}");
        assert!(text.contains("mal\\u{202e}lory"), "{text}");
        assert!(text.contains("bell\\u{7}\\u{a}line"), "{text}");
        assert!(text.contains("Résumé 日本語 🎉.pdf"), "{text}");
        assert!(text.contains("José"), "{text}");
    }

    #[test]
    fn names_match_substrings_and_globs_ignoring_case() {
        for (name, pattern, expected) in [
            ("Holiday Photo.PNG", "photo", true),
            ("Holiday Photo.PNG", "", true),
            ("notes.txt", "photo", false),
            ("photo.png", "*.PNG", true),
            ("photo.png", "*.png.bak", false),
            ("photo.png", "p?oto.*", true),
            ("photo.png", "photo", true),
            ("photo.png", "*oto*", true),
            ("photo.png", "oto*", false),
            ("日本語.txt", "日?語*", true),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                "*a*a*a*a*a*a*a*a*c",
                false,
            ),
            ("x", "**", true),
        ] {
            assert_eq!(
                name_matches(name, pattern),
                expected,
                "{name:?} {pattern:?}"
            );
        }
    }

    #[test]
    fn a_filtered_listing_keeps_the_full_numbers() {
        let c = catalog();
        let shown: Vec<(usize, &Target)> = vec![(3, &c.targets[2])];
        let text = c.render_some(&shown);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().nth(1).unwrap().starts_with("3  notes.txt"),
            "{text}"
        );
    }

    #[test]
    fn listing_shows_availability_and_legacy_holders() {
        let text = catalog().render();
        assert!(text.contains("3/5 (123--)"), "{text}");
        assert!(text.contains("ece (legacy)"), "{text}");
        assert!(text.contains("bob, carol"), "{text}");
        assert!(text.contains("unverified"), "{text}");
        assert!(
            text.lines().next().unwrap().starts_with("#  NAME"),
            "{text}"
        );
        assert!(Catalog::default().render().contains("No files"));
    }
    #[test]
    fn targets_group_by_name_and_digest_and_skip_expired() {
        let now = Utc::now() + chrono::Duration::seconds(10);
        let mut stale = entry("old", 6, "photo.png", Some(1), "12345");
        stale.last_seen = now - chrono::Duration::seconds(181);
        let index = TagsIndex {
            updated: None,
            entries: vec![
                entry("alice", 2, "photo.png", Some(1), "12345"),
                entry("bob smith", 3, "my notes 100%.txt", Some(2), "12345"),
                entry("ece", 9, "ece", None, "12-4-"),
                // A second holder of alice's photo, and a different file with the same name.
                entry("carol", 4, "photo.png", Some(1), "12345"),
                entry("dave", 5, "photo.png", Some(9), "12345"),
                stale,
            ],
        };
        let targets = Catalog::from_index(&index, now).targets;
        let photos: Vec<&Target> = targets.iter().filter(|t| t.name == "photo.png").collect();
        assert_eq!(photos.len(), 2);
        assert_eq!(photos[0].holders.len(), 2, "most holders first");
        assert_eq!(photos[0].sha256, Some(Digest::of(&[1])));
        assert_eq!(photos[1].holders[0].user, "dave");
        let ece = targets.iter().find(|t| t.name == "ece").unwrap();
        assert_eq!(ece.available().to_string(), "12-4-");
        assert_eq!(ece.size, None);
    }

    #[test]
    fn a_verified_copy_is_preferred_to_an_equally_available_legacy_one() {
        let legacy = entry("ece", 9, "song.mp3", None, "12345");
        let ours = entry("alice", 2, "song.mp3", Some(3), "12345");
        let now = ours.last_seen + chrono::Duration::seconds(10);
        let mut index = TagsIndex {
            updated: None,
            entries: vec![legacy, ours],
        };
        let first = |index: &TagsIndex| Catalog::from_index(index, now).targets[0].sha256;
        assert_eq!(first(&index), Some(Digest::of(&[3])));
        // Even a legacy copy with more holders comes second...
        index
            .entries
            .push(entry("bob", 10, "song.mp3", None, "12345"));
        assert!(first(&index).is_some());
        // ...but a complete copy beats an incomplete verified one.
        index.entries[1].chunks = ChunkSet::parse("12---").unwrap();
        assert_eq!(first(&index), None);
    }
}
