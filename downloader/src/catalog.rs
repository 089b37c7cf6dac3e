//! What can be downloaded: the contents on offer in `tags.txt`, grouped by name and digest into
//! [`Target`]s (the downloader's view of the file, which `tags.txt` itself does not group), and
//! how the user picks one.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::tags::{Proto, TagEntry, TagsIndex};
use shared::text::terminal_safe;
use shared::trust::PeerId;

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
    /// On a private network, the peer ID that announced it: its chunk server must prove to
    /// be that peer.
    pub id: Option<PeerId>,
    /// It announced under a username pinned to another peer ID: never picked by `--from`
    /// that name, and shown as such.
    pub impostor: bool,
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
            id: entry.id,
            impostor: entry.impostor,
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
    /// Whether `user` (case ignored) is one of its holders.
    pub fn held_by(&self, user: &str) -> bool {
        let user = user.to_lowercase();
        self.holders
            .iter()
            .any(|h| !h.impostor && h.user.to_lowercase() == user)
    }

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
    /// No content has that name, even ignoring case; `suggestion` is the nearest name on
    /// offer, when one is near enough to be a typo of it.
    #[error("no file named {name:?} on offer{}", match suggestion {
        Some(near) => format!("; did you mean {near:?}?"),
        None => " (see `downloader list`)".to_owned(),
    })]
    NotFound {
        /// The name asked for.
        name: String,
        /// The name on offer it is most likely a typo of.
        suggestion: Option<String>,
    },
    /// Files with that name are on offer, but none whose SHA-256 starts with the prefix given.
    #[error(
        "no file named {name:?} has a SHA-256 starting with {prefix:?} (see `downloader list`)"
    )]
    NoSuchDigest {
        /// The name.
        name: String,
        /// The digest prefix asked for.
        prefix: String,
    },
    /// No name matches exactly, and several match ignoring case.
    #[error("{name:?} matches several files whose names differ only in case: {}; type the exact name or its number", quoted(matches))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The names it matches ignoring case.
        matches: Vec<String>,
    },
    /// The number is not in the listing.
    #[error("there is no item {0} in the list (1 to {1})")]
    BadNumber(usize, usize),
}

fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
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

    /// Picks a content. By name, the exact name wins; else the one name equal to it ignoring
    /// case (`report.pdf` picks `Report.pdf`). When several different files share the name,
    /// the first (most available) wins unless `sha256_prefix` picks another; the second value
    /// counts how many contents had that name.
    ///
    /// # Errors
    /// [`SelectError`] when nothing matches (with the nearest name, for a typo), or when
    /// several names differ from it only in case.
    pub fn select(
        &self,
        selection: &Selection,
        sha256_prefix: Option<&str>,
    ) -> Result<(&Target, usize), SelectError> {
        let name = match selection {
            Selection::Number(n) => {
                return match n.checked_sub(1).and_then(|i| self.targets.get(i)) {
                    Some(target) => Ok((target, 1)),
                    None => Err(SelectError::BadNumber(*n, self.targets.len())),
                }
            }
            Selection::Name(name) => name,
        };
        let mut named: Vec<&Target> = self.targets.iter().filter(|t| &t.name == name).collect();
        if named.is_empty() {
            let folded = name.to_lowercase();
            named = self
                .targets
                .iter()
                .filter(|t| t.name.to_lowercase() == folded)
                .collect();
            // Targets are sorted by name: equal names are neighbours.
            let mut names: Vec<String> = named.iter().map(|t| t.name.clone()).collect();
            names.dedup();
            if names.len() > 1 {
                return Err(SelectError::Ambiguous {
                    name: name.clone(),
                    matches: names,
                });
            }
        }
        if named.is_empty() {
            return Err(SelectError::NotFound {
                name: name.clone(),
                suggestion: self.nearest_name(name).map(str::to_owned),
            });
        }
        let matches: Vec<&Target> = match sha256_prefix.map(str::to_ascii_lowercase) {
            None => named,
            Some(prefix) => {
                let matching: Vec<&Target> = named
                    .into_iter()
                    .filter(|t| t.sha256.is_some_and(|d| d.to_string().starts_with(&prefix)))
                    .collect();
                if matching.is_empty() {
                    return Err(SelectError::NoSuchDigest {
                        name: name.clone(),
                        prefix,
                    });
                }
                matching
            }
        };
        Ok((matches[0], matches.len()))
    }

    /// The names on offer under the folder `prefix` (ending with `/`: `photos/`), each once,
    /// sorted: the contents `get photos/` downloads.
    pub fn names_under(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .targets
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .map(|t| t.name.clone())
            .collect();
        // Targets are sorted by name: equal names are neighbours.
        names.dedup();
        names
    }

    /// The name on offer that `name` is most likely a mistyping of: one that holds it (ignoring
    /// case; `report` for `report.pdf`), else the fewest edits away when they are few for its
    /// length (`reprot.pdf`). `None` when no name is that close.
    pub fn nearest_name(&self, name: &str) -> Option<&str> {
        let wanted = name.to_lowercase();
        let wanted_len = wanted.chars().count();
        self.targets
            .iter()
            .map(|t| t.name.as_str())
            .filter_map(|candidate| {
                let folded = candidate.to_lowercase();
                let holds = wanted_len >= 3 && folded.contains(&wanted);
                let edits = strsim::osa_distance(&wanted, &folded);
                let near = edits <= 1 + wanted_len.max(folded.chars().count()) / 4;
                (holds || near).then_some(((!holds, edits), candidate))
            })
            .min_by_key(|&(rank, _)| rank)
            .map(|(_, candidate)| candidate)
    }

    /// Every target with its number in the listing (from 1).
    pub fn numbered(&self) -> impl Iterator<Item = (usize, &Target)> {
        self.targets.iter().enumerate().map(|(i, t)| (i + 1, t))
    }

    /// The listing shown by `list` and at the prompt.
    pub fn render(&self) -> String {
        let all: Vec<(usize, &Target)> = self.numbered().collect();
        self.render_some(&all)
    }

    /// The users holding something, each once, sorted ignoring case, as a terminal shows them
    /// (a legacy one marked so): what an unknown `--from USER` is told to pick from.
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<(String, String)> = self
            .targets
            .iter()
            .flat_map(|t| &t.holders)
            .filter(|h| !h.impostor)
            .map(|h| (h.user.to_lowercase(), holder_name(h)))
            .collect();
        users.sort();
        users.dedup();
        users.into_iter().map(|(_, shown)| shown).collect()
    }

    /// The listing of some of the targets, each with its number in the full listing.
    pub fn render_some(&self, shown: &[(usize, &Target)]) -> String {
        self.render_with(shown, HolderColumn::Users)
    }

    /// [`Catalog::render_some`], with the holders shown as `holders` says.
    pub fn render_with(&self, shown: &[(usize, &Target)], holders: HolderColumn) -> String {
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
                    .map(|h| match holders {
                        HolderColumn::Users => holder_name(h),
                        HolderColumn::Addresses => holder_detail(h),
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
        // Display widths, not char counts: a name with wide or combining characters keeps
        // the columns after it aligned. The number is right-aligned, the rest left-aligned.
        let header = ["#", "NAME", "SIZE", "CHUNKS", "HOLDERS", "SHA256"];
        format::table(header, &rows, &[0])
    }
}

/// How a listing names each holder of a content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderColumn {
    /// `alice, ece (legacy)`: who (`list`).
    Users,
    /// `alice@127.0.0.2:5001, ece@127.0.0.9:5001 (legacy, 123--)`: who, where and what part
    /// (`find`).
    Addresses,
}

/// A holder's name as a terminal shows it, `(legacy)` after a legacy one.
fn holder_name(h: &Holder) -> String {
    match (h.proto, h.impostor, h.id) {
        (Proto::Legacy, _, _) => format!("{} (legacy)", terminal_safe(&h.user)),
        (Proto::P2p(_), true, Some(id)) => format!("{} (impostor {id})", terminal_safe(&h.user)),
        // On a private network: the first letters of the peer ID (`find` shows it whole).
        (Proto::P2p(_), _, Some(id)) => format!("{} [{}]", terminal_safe(&h.user), id.short()),
        (Proto::P2p(_), _, None) => terminal_safe(&h.user).into_owned(),
    }
}

/// A holder as `find` shows it: `user@address`, then what sets it apart, when anything does.
fn holder_detail(h: &Holder) -> String {
    let label = format!("{}@{}", terminal_safe(&h.user), h.addr);
    let mut notes = Vec::new();
    if h.proto == Proto::Legacy {
        notes.push("legacy".to_owned());
    }
    if let Some(id) = h.id {
        notes.push(if h.impostor {
            format!("impostor {id}: the name is another peer's")
        } else {
            format!("ID {id}")
        });
    }
    if !h.chunks.is_complete() {
        notes.push(h.chunks.to_string());
    }
    if notes.is_empty() {
        label
    } else {
        format!("{label} ({})", notes.join(", "))
    }
}

/// Whether a content name matches the pattern of `downloader list PATTERN` and `find PATTERN`,
/// ignoring case: a glob over the whole name when the pattern holds `*` (any run of characters)
/// or `?` (one character), else a substring of the name. A name may be a folder path
/// (`photos/2024/a.jpg`): it is matched whole, and `*` and `?` match `/` too, as `find -path`
/// does, so `'photos/*.jpg'` takes the whole tree under `photos/` and `'*.jpg'` every JPEG
/// wherever it is (a pattern for the last component alone would miss the folder names
/// people search by).
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
            id: None,
            impostor: false,
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
        assert_eq!(
            c.select(&Selection::Name("nope".into()), None),
            Err(SelectError::NotFound {
                name: "nope".into(),
                suggestion: None
            })
        );
        assert!(matches!(
            c.select(&Selection::Name("ece".into()), Some("00")),
            Err(SelectError::NoSuchDigest { .. })
        ));
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
            ("photos/2024/A.jpg", "*.JPG", true),
            ("photos/2024/a.jpg", "photos/*.jpg", true),
            ("photos/2024/a.jpg", "2024/", true),
            ("photos/2024/a.jpg", "*/2024/*", true),
            ("photos/2024/a.jpg", "a.jpg?", false),
            ("photos/2024/a.jpg", "photos?2024?a.jpg", true),
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
    fn users_are_known_ignoring_case_and_find_shows_addresses() {
        let c = catalog();
        assert_eq!(c.users(), ["alice", "bob", "carol", "ece (legacy)"]);
        assert!(c.targets[1].held_by("BOB"));
        assert!(!c.targets[1].held_by("alice"));
        let all: Vec<(usize, &Target)> = c.numbered().collect();
        let text = c.render_with(&all, HolderColumn::Addresses);
        assert!(
            text.contains("ece@127.0.0.9:5001 (legacy, 123--)"),
            "{text}"
        );
        assert!(
            text.contains("bob@127.0.0.3:5001, carol@127.0.0.4:5001 (12---)"),
            "{text}"
        );
    }

    #[test]
    fn an_impostor_is_shown_as_such_and_never_taken_for_the_name_it_uses() {
        let alice = shared::trust::Identity::from_seed(&[1; 32]).id();
        let mallory = shared::trust::Identity::from_seed(&[2; 32]).id();
        let mut real = entry("alice", 2, "notes.txt", Some(1), "12345");
        real.id = Some(alice);
        let mut fake = entry("alice", 5, "plans.txt", Some(3), "12345");
        fake.id = Some(mallory);
        fake.impostor = true;
        let c = Catalog::from_index(
            &TagsIndex {
                updated: None,
                entries: vec![real, fake],
            },
            Utc::now(),
        );
        let plans = c.targets.iter().find(|t| t.name == "plans.txt").unwrap();
        assert!(
            !plans.held_by("alice"),
            "--from alice must not pick the impostor"
        );
        let notes = c.targets.iter().find(|t| t.name == "notes.txt").unwrap();
        assert!(notes.held_by("alice"));
        assert_eq!(c.users(), [format!("alice [{}]", alice.short())]);
        let text = c.render();
        assert!(
            text.contains(&format!("alice (impostor {mallory})")),
            "{text}"
        );
        assert!(
            text.contains(&format!("alice [{}]", alice.short())),
            "{text}"
        );
        let all: Vec<(usize, &Target)> = c.numbered().collect();
        let detail = c.render_with(&all, HolderColumn::Addresses);
        assert!(detail.contains(&format!("ID {alice}")), "{detail}");
        assert!(detail.contains(&format!("impostor {mallory}")), "{detail}");
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

    fn named(names: &[&str]) -> Catalog {
        let entries = names
            .iter()
            .zip(2u8..)
            .map(|(name, ip)| entry("alice", ip, name, Some(ip), "12345"))
            .collect();
        Catalog::from_index(
            &TagsIndex {
                updated: None,
                entries,
            },
            Utc::now(),
        )
    }

    fn pick(c: &Catalog, name: &str) -> Result<String, SelectError> {
        c.select(&Selection::Name(name.into()), None)
            .map(|(t, _)| t.name.clone())
    }

    #[test]
    fn names_match_ignoring_case_when_no_name_matches_exactly() {
        let c = named(&["Report.pdf", "notes.txt", "NOTES.txt", "Notes.TXT"]);
        assert_eq!(pick(&c, "report.pdf"), Ok("Report.pdf".into()));
        assert_eq!(pick(&c, "REPORT.PDF"), Ok("Report.pdf".into()));
        // The exact case wins over names that differ only in case...
        assert_eq!(pick(&c, "NOTES.txt"), Ok("NOTES.txt".into()));
        // ...and with none exact, several of them are a question, not a guess.
        let err = pick(&c, "notes.TXT").unwrap_err();
        assert_eq!(
            err,
            SelectError::Ambiguous {
                name: "notes.TXT".into(),
                matches: vec!["NOTES.txt".into(), "Notes.TXT".into(), "notes.txt".into()]
            }
        );
        assert!(
            err.to_string()
                .contains(r#""NOTES.txt", "Notes.TXT", "notes.txt""#),
            "{err}"
        );
    }

    #[test]
    fn a_near_miss_suggests_the_name_on_offer() {
        let c = named(&["Report.pdf", "holiday photo.png", "a.txt"]);
        for (typed, meant) in [
            ("reprot.pdf", "Report.pdf"),
            ("Report.pd", "Report.pdf"),
            ("report", "Report.pdf"),
            ("holiday photo.jpg", "holiday photo.png"),
            ("photo", "holiday photo.png"),
            ("b.txt", "a.txt"),
        ] {
            let err = pick(&c, typed).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("no file named {typed:?} on offer; did you mean {meant:?}?"),
                "{typed}"
            );
        }
        for far in ["zzz", "budget.xlsx", "x"] {
            let err = pick(&c, far).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("no file named {far:?} on offer (see `downloader list`)")
            );
        }
    }

    #[test]
    fn wide_names_keep_the_columns_aligned() {
        let c = named(&["Résumé 日本語 🎉.pdf", "plain.txt", "e\u{301}.txt"]);
        let text = c.render();
        // Where the SIZE column starts, in terminal columns, on every line.
        let starts: Vec<usize> = text
            .lines()
            .map(|line| {
                let at = line.find("SIZE").or_else(|| line.find("2.0 KiB")).unwrap();
                format::width(&line[..at])
            })
            .collect();
        assert_eq!(starts.len(), 4, "{text}");
        assert!(starts.iter().all(|&s| s == starts[0]), "{starts:?}\n{text}");
        assert_eq!(
            starts[0],
            3 + format::width("Résumé 日本語 🎉.pdf") + 2,
            "{text}"
        );
    }
}
