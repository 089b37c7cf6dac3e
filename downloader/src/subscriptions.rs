//! Subscriptions (seed 004): contents this peer follows, so that a new version announced under
//! the same name replaces the file in `downloads/` (see [`crate::sync`]).
//!
//! They are kept in `DIR/subscriptions.txt`, one per line, written only by the downloader's
//! commands (atomically, under a lock, so two commands never lose each other's change):
//!
//! ```text
//! # NAME<TAB>FROM<TAB>CURRENT<TAB>HAD   (fields separated by one tab each)
//! report.pdf  alice  3f1c…  9ab0…,77e2…
//! notes.txt   *      -      -
//! ```
//! `FROM` is the one user whose versions are taken, or `*` for any holder; `CURRENT` the SHA-256
//! of the version in `downloads/` (`-`: none yet); `HAD` the versions replaced before, which are
//! never taken again: a holder still announcing an old version cannot roll the file back.
//!
//! Which version is due ([`Subscription::due`]) is pure: it looks at the catalog only.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shared::digest::Digest;
use shared::peer_dir::PeerDir;

use shared::tags::Proto;

use crate::catalog::{Catalog, Target};

/// The first line of the file.
const HEADER: &str = "# downloader subscriptions: NAME<TAB>FROM (a user, or * for any holder)\
<TAB>CURRENT (sha256 of the version in downloads/, or -)<TAB>HAD (versions replaced, never taken again)";

/// One followed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The content's name.
    pub name: String,
    /// The only user whose versions are taken; `None`: any holder's.
    pub from: Option<String>,
    /// The version in `downloads/`, once there is one.
    pub current: Option<Digest>,
    /// Versions replaced before.
    pub had: Vec<Digest>,
}

impl Subscription {
    /// A new subscription to `name`, from `from` (any holder when `None`).
    pub fn new(name: &str, from: Option<&str>) -> Subscription {
        Subscription {
            name: name.to_owned(),
            from: from.map(str::to_owned),
            current: None,
            had: Vec::new(),
        }
    }

    /// The version to fetch now, if any: a content of this name, announced with a digest by
    /// our peers (a legacy announcement carries none, so it cannot be followed), held by the
    /// subscribed user (any holder when none), neither the current version nor one replaced
    /// before. Of several, the one the most holders have.
    pub fn due<'a>(&self, catalog: &'a Catalog) -> Option<&'a Target> {
        catalog
            .targets
            .iter()
            .filter(|t| t.name == self.name)
            .filter(|t| {
                t.sha256
                    .is_some_and(|d| Some(d) != self.current && !self.had.contains(&d))
            })
            .filter(|t| {
                t.holders.iter().any(|h| {
                    matches!(h.proto, Proto::P2p(_))
                        && self
                            .from
                            .as_deref()
                            .is_none_or(|user| h.user.eq_ignore_ascii_case(user))
                })
            })
            .max_by_key(|t| t.holders.len())
    }

    /// Records that `version` is now the one in `downloads/`.
    pub fn now_at(&mut self, version: Digest) {
        if let Some(old) = self.current.replace(version) {
            if old != version && !self.had.contains(&old) {
                self.had.push(old);
            }
        }
    }

    fn to_line(&self) -> String {
        let digest = |d: Option<Digest>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
        let had = if self.had.is_empty() {
            "-".to_owned()
        } else {
            let hexes: Vec<String> = self.had.iter().map(ToString::to_string).collect();
            hexes.join(",")
        };
        format!(
            "{}\t{}\t{}\t{had}",
            self.name,
            self.from.as_deref().unwrap_or("*"),
            digest(self.current)
        )
    }

    fn from_line(line: &str) -> Option<Subscription> {
        let mut fields = line.split('\t');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let from = fields.next().unwrap_or("*");
        let current = fields.next().unwrap_or("-");
        let had = fields.next().unwrap_or("-");
        let digest = |s: &str| (s != "-").then(|| s.parse::<Digest>().ok()).flatten();
        Some(Subscription {
            name: name.to_owned(),
            from: (from != "*" && !from.is_empty()).then(|| from.to_owned()),
            current: digest(current),
            had: had.split(',').filter_map(digest).collect(),
        })
    }
}

/// Parses the text of `subscriptions.txt`; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Subscription> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(Subscription::from_line)
        .collect()
}

/// The text of `subscriptions.txt` for `subscriptions`.
pub fn render(subscriptions: &[Subscription]) -> String {
    let mut text = format!("{HEADER}\n");
    for s in subscriptions {
        text.push_str(&s.to_line());
        text.push('\n');
    }
    text
}

/// `DIR/subscriptions.txt`.
pub fn path(dir: &PeerDir) -> PathBuf {
    dir.root().join("subscriptions.txt")
}

/// The subscriptions of the peer folder `dir`; none when the file does not exist.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load(dir: &PeerDir) -> io::Result<Vec<Subscription>> {
    match fs::read_to_string(path(dir)) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Changes the subscriptions of `dir` with `change`, under a lock (`DIR/.run/subscriptions.lock`)
/// so that two processes never lose each other's change, and writes them back atomically when
/// `change` says something changed (returns `true`).
///
/// # Errors
/// When the file or the lock cannot be read or written.
pub fn update<T>(
    dir: &PeerDir,
    change: impl FnOnce(&mut Vec<Subscription>) -> (bool, T),
) -> io::Result<T> {
    let _lock = dir.lock_for_edit("subscriptions.lock")?;
    let mut subscriptions = load(dir)?;
    let (changed, result) = change(&mut subscriptions);
    if changed {
        shared::fsutil::write_atomic(&path(dir), render(&subscriptions).as_bytes())?;
    }
    Ok(result)
}

/// Where the version replaced by an update of `name` is kept: `downloads/.previous/<name>.<the
/// first 12 hex digits of its SHA-256>`, so that every earlier version keeps its own file.
pub fn previous_path(downloads: &Path, name: &str, version: Digest) -> PathBuf {
    let hex = version.to_string();
    downloads
        .join(".previous")
        .join(format!("{name}.{}", &hex[..12]))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use shared::chunk::ChunkSet;

    use super::*;
    use crate::catalog::Holder;

    fn digest(byte: u8) -> Digest {
        Digest::of(&[byte])
    }

    fn target(name: &str, version: u8, holders: &[(&str, Proto)]) -> Target {
        Target {
            name: name.to_owned(),
            sha256: Some(digest(version)),
            size: Some(10),
            holders: holders
                .iter()
                .zip(2u8..)
                .map(|((user, proto), ip)| Holder {
                    user: (*user).to_owned(),
                    addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
                    proto: *proto,
                    chunks: ChunkSet::ALL,
                    root: None,
                    id: None,
                    impostor: false,
                })
                .collect(),
        }
    }

    #[test]
    fn the_file_round_trips_and_skips_what_does_not_parse() {
        let mut followed = Subscription::new("my report.pdf", Some("alice"));
        followed.now_at(digest(1));
        followed.now_at(digest(2));
        let any = Subscription::new("notes.txt", None);
        let text = render(&[followed.clone(), any.clone()]);
        assert!(text.starts_with("# "), "{text}");
        assert_eq!(parse(&text), [followed.clone(), any]);
        assert_eq!(followed.current, Some(digest(2)));
        assert_eq!(followed.had, [digest(1)]);
        assert_eq!(
            parse("\n\t*\t-\t-\n# comment\nx\tbob\tnot-hex\t-\n").len(),
            1
        );
    }

    #[test]
    fn a_new_version_from_the_followed_user_is_due_and_old_ones_never_again() {
        let mut s = Subscription::new("report.pdf", Some("Alice"));
        let catalog = Catalog {
            targets: vec![
                target("report.pdf", 1, &[("bob", Proto::P2p(1))]),
                target("report.pdf", 2, &[("alice", Proto::P2p(1))]),
                target("other.pdf", 3, &[("alice", Proto::P2p(1))]),
            ],
        };
        assert_eq!(s.due(&catalog).and_then(|t| t.sha256), Some(digest(2)));
        s.now_at(digest(2));
        assert_eq!(s.due(&catalog), None, "bob's version is not alice's");

        let mut any = Subscription::new("report.pdf", None);
        any.now_at(digest(1));
        any.now_at(digest(2));
        assert_eq!(
            any.due(&catalog),
            None,
            "version 1 was replaced: never taken again"
        );
        let newer = Catalog {
            targets: vec![
                target("report.pdf", 1, &[("bob", Proto::P2p(1))]),
                target("report.pdf", 3, &[("carol", Proto::P2p(1))]),
            ],
        };
        assert_eq!(any.due(&newer).and_then(|t| t.sha256), Some(digest(3)));
    }

    #[test]
    fn legacy_holders_are_not_followed() {
        let s = Subscription::new("report.pdf", None);
        let catalog = Catalog {
            targets: vec![target("report.pdf", 1, &[("old", Proto::Legacy)])],
        };
        assert_eq!(s.due(&catalog), None);
    }

    #[test]
    fn previous_versions_get_their_own_names() {
        let p = previous_path(Path::new("/d/downloads"), "a.txt", digest(1));
        let hex = digest(1).to_string();
        assert_eq!(
            p,
            Path::new("/d/downloads/.previous").join(format!("a.txt.{}", &hex[..12]))
        );
    }
}
