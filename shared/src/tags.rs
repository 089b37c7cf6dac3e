//! `tags.txt`: the index of who holds which chunk of which content, and where.
//!
//! The listener is its only writer; the downloader reads it. The file is meant to be read by
//! people too: a header, then one aligned line per peer and content. Names are percent-encoded
//! where they contain spaces, `%` or characters never shown raw ([`text::must_escape`]), so
//! every line splits on white space. A reader refuses a line whose names a terminal could not
//! show as they are, whose port is 0, or whose version we do not speak: whatever the file holds,
//! nothing in it reaches the downloader's terminal raw.
//!
//! ```text
//! # tags.txt: peers and the chunks they serve. Written by `listener`; read by `downloader`.
//! # updated 2026-11-21T18:00:00Z; an entry expires 3 announce intervals after LAST_SEEN.
//! # USER  PEER_ID               ADDRESS         PROTO   CONTENT    CHUNKS  SIZE     SHA256  ROOT  EVERY  LAST_SEEN
//! alice   7QXM-2KD4-AB3Z-QQ5T   127.0.0.2:5001  p2p/1   photo.png  12345   1048579  9f86…   …     60     2026-11-21T17:59:58Z
//! alice   !K3PA-JJ2W-9ZXC-M4D7  127.0.0.5:5001  p2p/1   photo.png  12345   1048579  9f86…   …     60     2026-11-21T17:59:58Z
//! ece     -                     127.0.0.9:5001  legacy  ece        123--   -        -       -     60     2026-11-21T17:59:40Z
//! ```
//!
//! `PEER_ID` is, on a private network, the ID that signed the holder's announcements (`-` on an
//! open network and for legacy peers); `!` marks an ID announcing under a username first seen
//! with another ID (an impostor, or a reinstalled peer): listed apart, never merged. A file
//! from before this column (ten fields per line) still reads, every `PEER_ID` being `-`.
//!
//! Writes go to `tags.txt.tmp` and are renamed over `tags.txt`, so a reader sees the old file or
//! the new one, never a torn one. Readers and the writer also take an fs2 lock on
//! `tags.txt.lock`: a lock held on `tags.txt` itself would stay on the replaced inode.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Utc};
use fs2::FileExt;

use crate::chunk::{validate_content_name, ChunkSet};
use crate::digest::Digest;
use crate::protocol::KNOWN_VERSIONS;
use crate::text::{self, terminal_safe};
use crate::trust::PeerId;
use crate::{fsutil, EXPIRY_INTERVALS};

/// Which protocol a holder's chunk server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// Only the legacy protocol: raw bytes, no verification.
    Legacy,
    /// Our extension, at this version.
    P2p(u32),
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Legacy => f.write_str("legacy"),
            Proto::P2p(v) => write!(f, "p2p/{v}"),
        }
    }
}

impl Proto {
    /// Parses `legacy` or `p2p/<v>` with `v` a version we speak ([`KNOWN_VERSIONS`]), written
    /// as [`Display`](fmt::Display) writes it (no sign, no leading zero). The listener records
    /// no other version (an announcement with another counts as legacy), so `p2p/0` or
    /// `p2p/4000000000` can only come from a hand-edited or corrupt file.
    fn parse(text: &str) -> Option<Proto> {
        if text == "legacy" {
            return Some(Proto::Legacy);
        }
        let digits = text.strip_prefix("p2p/")?;
        let v: u32 = digits.parse().ok()?;
        (KNOWN_VERSIONS.contains(&v) && digits == v.to_string()).then_some(Proto::P2p(v))
    }
}

/// One line of `tags.txt`: one peer's holdings of one content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    /// The holder's username.
    pub user: String,
    /// On a private network, the peer ID that signed the holder's announcements; `None` on an
    /// open network and for legacy peers (nothing proves who they are).
    pub id: Option<PeerId>,
    /// The holder announced under a username the listener had pinned to another peer ID: it is
    /// listed apart (written `!ID`), never merged with the peer whose name it uses.
    pub impostor: bool,
    /// Where the holder's chunk server answers.
    pub addr: SocketAddr,
    /// What that chunk server speaks.
    pub proto: Proto,
    /// The content name.
    pub content: String,
    /// Which chunks the holder announced.
    pub chunks: ChunkSet,
    /// Size of the whole file, when announced (never by legacy peers).
    pub size: Option<u64>,
    /// SHA-256 of the whole file, when announced (never by legacy peers).
    pub sha256: Option<Digest>,
    /// Root digest of the holder's manifest ([`crate::protocol::Manifest::root`]), when
    /// announced: the manifest this holder vouches for.
    pub root: Option<Digest>,
    /// The holder's announce interval in seconds.
    pub interval: u64,
    /// When the holder last announced this content.
    pub last_seen: DateTime<Utc>,
}

impl TagEntry {
    /// When this entry stops counting: [`expires_at`] of its `last_seen` and `interval`.
    pub fn expires_at(&self) -> DateTime<Utc> {
        expires_at(self.last_seen, self.interval)
    }
}

/// The expiry rule, the one the listener forgets by and the downloader trusts by: something
/// last announced at `last_seen` by a peer announcing every `interval_secs` stops counting
/// [`EXPIRY_INTERVALS`] intervals later.
pub fn expires_at(last_seen: DateTime<Utc>, interval_secs: u64) -> DateTime<Utc> {
    // A hostile interval must not overflow the date arithmetic: saturate instead.
    let secs = i64::try_from(interval_secs.saturating_mul(EXPIRY_INTERVALS)).unwrap_or(i64::MAX);
    chrono::Duration::try_seconds(secs)
        .and_then(|d| last_seen.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Why `tags.txt` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TagsError {
    /// A line that does not have the expected fields.
    #[error("{path}: line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Taking the lock failed.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The whole of `tags.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagsIndex {
    /// When the listener last wrote the file.
    pub updated: Option<DateTime<Utc>>,
    /// The entries, sorted by content, then user, then address.
    pub entries: Vec<TagEntry>,
}

const COLUMNS: [&str; 11] = [
    "USER",
    "PEER_ID",
    "ADDRESS",
    "PROTO",
    "CONTENT",
    "CHUNKS",
    "SIZE",
    "SHA256",
    "ROOT",
    "EVERY",
    "LAST_SEEN",
];

/// Percent-encodes what would break a white-space separated line, or a terminal showing it.
pub fn encode_field(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    if text == "-" {
        return "%2D".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || c.is_whitespace() || text::must_escape(c) || (out.is_empty() && c == '#') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`encode_field`].
pub fn decode_field(text: &str) -> Option<String> {
    if text == "%" {
        return Some(String::new());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl TagsIndex {
    /// Parses the text of `tags.txt`. Comment (`#`) and blank lines are skipped.
    ///
    /// # Errors
    /// The line number and what is wrong with the first bad line; `path` only labels the error.
    pub fn parse(text: &str, path: &Path) -> Result<TagsIndex, TagsError> {
        let mut index = TagsIndex::default();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some(stamp) = comment.trim().strip_prefix("updated ") {
                    let stamp = stamp.split(';').next().unwrap_or_default();
                    index.updated = parse_time(stamp.trim());
                }
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            let entry = parse_line(trimmed)
                .and_then(check_entry)
                .map_err(|message| TagsError::Parse {
                    path: path.to_owned(),
                    line: i + 1,
                    message,
                })?;
            index.entries.push(entry);
        }
        Ok(index)
    }

    /// Reads `path` under a shared lock; a missing file is an empty index.
    ///
    /// # Errors
    /// [`TagsError`] when the file cannot be locked, read or parsed.
    pub fn load(path: &Path) -> Result<TagsIndex, TagsError> {
        let _lock = lock(path, false)?;
        match std::fs::read_to_string(path) {
            Ok(text) => TagsIndex::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TagsIndex::default()),
            Err(source) => Err(TagsError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the index to `path` atomically (via `<path>.tmp` and a rename) under an exclusive
    /// lock.
    ///
    /// # Errors
    /// [`TagsError`] when the lock or the write fails.
    pub fn save(&self, path: &Path) -> Result<(), TagsError> {
        let _lock = lock(path, true)?;
        let tmp = sibling(path, ".tmp");
        fsutil::write_atomic_via(path, &tmp, self.to_string().as_bytes()).map_err(|source| {
            TagsError::Io {
                action: "write",
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Sorts entries into the order the file shows them.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (&a.content, a.sha256, &a.user, a.addr).cmp(&(&b.content, b.sha256, &b.user, b.addr))
        });
    }

    /// Entries still valid at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> impl Iterator<Item = &TagEntry> {
        self.entries.iter().filter(move |e| e.expires_at() > now)
    }
}

fn parse_line(line: &str) -> Result<TagEntry, String> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    // A file of a listener from before peer IDs has no PEER_ID column.
    if fields.len() == COLUMNS.len() - 1 {
        fields.insert(1, "-");
    }
    if fields.len() != COLUMNS.len() {
        return Err(format!(
            "expected {} fields, found {}",
            COLUMNS.len(),
            fields.len()
        ));
    }
    let bad = |column: &str, value: &str| format!("bad {column} {value:?}");
    fn optional(value: &str) -> Option<&str> {
        (value != "-").then_some(value)
    }
    let impostor = fields[1].starts_with('!');
    let id = optional(fields[1].trim_start_matches('!'))
        .map(|v| v.parse::<PeerId>().map_err(|_| bad("PEER_ID", fields[1])))
        .transpose()?;
    // The columns after PEER_ID, by their old positions.
    fields.remove(1);
    Ok(TagEntry {
        user: decode_field(fields[0]).ok_or_else(|| bad("USER", fields[0]))?,
        id,
        impostor: impostor && id.is_some(),
        addr: fields[1].parse().map_err(|_| bad("ADDRESS", fields[1]))?,
        proto: Proto::parse(fields[2]).ok_or_else(|| bad("PROTO", fields[2]))?,
        content: decode_field(fields[3]).ok_or_else(|| bad("CONTENT", fields[3]))?,
        chunks: ChunkSet::parse(fields[4]).ok_or_else(|| bad("CHUNKS", fields[4]))?,
        size: optional(fields[5])
            .map(|v| v.parse().map_err(|_| bad("SIZE", v)))
            .transpose()?,
        sha256: optional(fields[6])
            .map(|v| v.parse().map_err(|_| bad("SHA256", v)))
            .transpose()?,
        root: optional(fields[7])
            .map(|v| v.parse().map_err(|_| bad("ROOT", v)))
            .transpose()?,
        interval: fields[8].parse().map_err(|_| bad("EVERY", fields[8]))?,
        last_seen: parse_time(fields[9]).ok_or_else(|| bad("LAST_SEEN", fields[9]))?,
    })
}

/// What [`parse_line`] cannot see field by field: a name that a terminal would not show as it
/// is, or that no peer could hold, and a port nobody serves on. The listener writes no such
/// line; a hand-edited or hostile `tags.txt` must not bring one to the downloader's terminal.
fn check_entry(entry: TagEntry) -> Result<TagEntry, String> {
    if entry.addr.port() == 0 {
        return Err(format!("bad ADDRESS {}: port 0", entry.addr));
    }
    if let Err(e) = text::validate(&entry.user) {
        return Err(format!(
            "USER \"{}\" refused: it {e}",
            terminal_safe(&entry.user)
        ));
    }
    if let Err(e) = validate_content_name(&entry.content) {
        return Err(format!(
            "CONTENT \"{}\" refused: {e}",
            terminal_safe(&entry.content)
        ));
    }
    Ok(entry)
}

/// An RFC 3339 time as the file holds it: whole seconds in UTC. A fraction is dropped (the
/// listener writes none), and a time whose UTC year RFC 3339 cannot write (an offset pushing
/// `0000-01-01` or `9999-12-31` across the range) is refused, so that every time read prints
/// back to one that reads the same.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (0..=9999)
        .contains(&time.year())
        .then(|| time.trunc_subsecs(0))
}

impl fmt::Display for TagsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# tags.txt: peers and the chunks they serve. Written by `listener`; read by `downloader`."
        )?;
        if let Some(updated) = self.updated {
            writeln!(
                f,
                "# updated {}; an entry expires {EXPIRY_INTERVALS} announce intervals (EVERY, seconds) after LAST_SEEN.",
                updated.to_rfc3339_opts(SecondsFormat::Secs, true)
            )?;
        }
        let rows: Vec<[String; 11]> = self
            .entries
            .iter()
            .map(|e| {
                [
                    encode_field(&e.user),
                    match (e.id, e.impostor) {
                        (None, _) => "-".into(),
                        (Some(id), false) => id.to_string(),
                        (Some(id), true) => format!("!{id}"),
                    },
                    e.addr.to_string(),
                    e.proto.to_string(),
                    encode_field(&e.content),
                    e.chunks.to_string(),
                    e.size.map_or("-".into(), |s| s.to_string()),
                    e.sha256.map_or("-".into(), |d| d.to_string()),
                    e.root.map_or("-".into(), |d| d.to_string()),
                    e.interval.to_string(),
                    e.last_seen.to_rfc3339_opts(SecondsFormat::Secs, true),
                ]
            })
            .collect();
        let mut widths = COLUMNS.map(str::len);
        widths[0] += 2; // room for the "# " before the header's first column
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut header = String::from("# ");
        for (i, name) in COLUMNS.iter().enumerate() {
            let width = if i == 0 { widths[0] - 2 } else { widths[i] };
            let _ = write!(header, "{name:<width$}  ");
        }
        writeln!(f, "{}", header.trim_end())?;
        for row in rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The lock guard; unlocks on drop.
struct TagsLock(File);

impl Drop for TagsLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.0);
    }
}

fn lock(path: &Path, exclusive: bool) -> Result<TagsLock, TagsError> {
    let lock_path = sibling(path, ".lock");
    let err = |source| TagsError::Lock {
        path: lock_path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(err)?;
    if exclusive {
        file.lock_exclusive().map_err(err)?;
    } else {
        FileExt::lock_shared(&file).map_err(err)?;
    }
    Ok(TagsLock(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, ip: &str, content: &str, sha: Option<u8>) -> TagEntry {
        TagEntry {
            user: user.into(),
            id: None,
            impostor: false,
            addr: format!("{ip}:5001").parse().unwrap(),
            proto: if sha.is_some() {
                Proto::P2p(1)
            } else {
                Proto::Legacy
            },
            content: content.into(),
            chunks: ChunkSet::ALL,
            size: sha.map(|_| 1_048_579),
            sha256: sha.map(|n| Digest::of(&[n])),
            root: sha.map(|n| Digest::of(&[n, n])),
            interval: 60,
            last_seen: DateTime::parse_from_rfc3339("2026-11-21T17:59:58Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn sample() -> TagsIndex {
        let mut partial = entry("ece", "127.0.0.9", "ece", None);
        partial.chunks = ChunkSet::parse("12-4-").unwrap();
        TagsIndex {
            updated: Some(Utc::now().with_nanosecond_zero()),
            entries: vec![
                entry("alice", "127.0.0.2", "photo.png", Some(1)),
                entry("bob smith", "127.0.0.3", "my notes 100%.txt", Some(2)),
                partial,
                entry("-", "10.1.2.3", "#hash", Some(3)),
                entry("", "10.1.2.4", "ünï code", Some(3)),
            ],
        }
    }

    trait NanoZero {
        fn with_nanosecond_zero(self) -> Self;
    }
    impl NanoZero for DateTime<Utc> {
        fn with_nanosecond_zero(self) -> Self {
            DateTime::from_timestamp(self.timestamp(), 0).unwrap()
        }
    }

    #[test]
    fn display_then_parse_round_trips() {
        let index = sample();
        let text = index.to_string();
        let parsed = TagsIndex::parse(&text, Path::new("tags.txt")).unwrap();
        assert_eq!(parsed, index, "text was:\n{text}");
    }

    #[test]
    fn every_parsed_index_prints_back_to_itself() {
        // Found by the `tags_parse` fuzz target: the file holds whole seconds in UTC, but the
        // parser took fractions (dropped when printed) and offsets that put the time in a UTC
        // year RFC 3339 cannot write (printed as `-0001-…` or `+10000-…`, which no reader
        // parses, so one such line made the whole file unreadable for the downloader).
        let text = "# updated 2026-11-21T18:00:04.3Z; ...\n\
                    alice 127.0.0.2:5001 p2p/1 x 12345 1 - - 60 2026-11-21T18:59:58.5+01:00\n";
        let index = TagsIndex::parse(text, Path::new("t")).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(index.updated, Some(at("2026-11-21T18:00:04Z")));
        assert_eq!(index.entries[0].last_seen, at("2026-11-21T17:59:58Z"));
        let printed = index.to_string();
        assert_eq!(TagsIndex::parse(&printed, Path::new("t")).unwrap(), index);

        for stamp in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"] {
            let line = format!("alice 127.0.0.2:5001 p2p/1 x 12345 1 - 60 {stamp}\n");
            assert!(
                matches!(
                    TagsIndex::parse(&line, Path::new("t")),
                    Err(TagsError::Parse { line: 1, .. })
                ),
                "{stamp} accepted"
            );
            let header = format!("# updated {stamp}; ...\n");
            let index = TagsIndex::parse(&header, Path::new("t")).unwrap();
            assert_eq!(index.updated, None, "{stamp} accepted");
        }
    }

    #[test]
    fn lines_are_aligned_and_readable() {
        let text = sample().to_string();
        assert!(text.contains("alice"));
        assert!(text.contains("bob%20smith"));
        assert!(text.contains("my%20notes%20100%25.txt"));
        assert!(text.contains("12-4-"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let col = |l: &str| l.find("127.0.0").or_else(|| l.find("10.1.2"));
        let first = col(lines[0]);
        assert!(lines.iter().all(|l| col(l) == first), "{text}");
        let header = text.lines().find(|l| l.starts_with("# USER")).unwrap();
        assert_eq!(header.find("ADDRESS"), first, "{text}");
    }

    #[test]
    fn huge_intervals_saturate_instead_of_overflowing() {
        let mut e = entry("x", "127.0.0.2", "c", None);
        e.interval = u64::MAX;
        assert_eq!(e.expires_at(), DateTime::<Utc>::MAX_UTC);
        e.interval = i64::MAX as u64 / 2;
        assert!(e.expires_at() > e.last_seen);
    }

    #[test]
    fn field_encoding_round_trips() {
        for s in [
            "",
            "-",
            "a b",
            "%",
            "%20",
            "#x",
            "x#",
            "tab\there",
            "ü",
            "a\u{85}b",
        ] {
            let enc = encode_field(s);
            assert!(!enc.contains(char::is_whitespace), "{enc:?}");
            assert_ne!(enc, "-");
            assert_eq!(decode_field(&enc).as_deref(), Some(s), "{enc:?}");
        }
        assert_eq!(decode_field("%zz"), None);
        assert_eq!(decode_field("%4"), None);
        assert_eq!(decode_field("%FF"), None);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let good = sample().to_string();
        for bad in [
            "alice 127.0.0.2:5001 p2p/1 x 12345 1 - - 60",
            "alice nowhere p2p/1 x 12345 1 - - 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/x x 12345 1 - - 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/1 x 54321 1 - - 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/1 x 12345 big - - 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/1 x 12345 1 abc - 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/1 x 12345 1 - abc 60 2026-11-21T17:59:58Z",
            "alice 127.0.0.2:5001 p2p/1 x 12345 1 - - 60 yesterday",
        ] {
            let text = format!("{good}{bad}\n");
            match TagsIndex::parse(&text, Path::new("t")) {
                Err(TagsError::Parse { line, .. }) => assert_eq!(line, good.lines().count() + 1),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_names_ports_and_versions_are_refused() {
        let line = |user: &str, addr: &str, proto: &str, content: &str| {
            format!("{user} {addr} {proto} {content} 12345 1 - - 60 2026-11-21T17:59:58Z\n")
        };
        let good = line("alice", "127.0.0.2:5001", "p2p/1", "x");
        TagsIndex::parse(&good, Path::new("t")).expect("the good line parses");
        let flood = format!("z{}", "%CC%81".repeat(40));
        for bad in [
            // Names a terminal would obey, or not show.
            line("alice", "127.0.0.2:5001", "p2p/1", "%1B[31mred"),
            line("alice", "127.0.0.2:5001", "p2p/1", "bell%07"),
            line("alice", "127.0.0.2:5001", "p2p/1", "new%0Aline"),
            line("alice", "127.0.0.2:5001", "p2p/1", "gnp.%E2%80%AEexe"),
            line("alice", "127.0.0.2:5001", "p2p/1", "gnp.\u{202e}exe"),
            line("alice", "127.0.0.2:5001", "p2p/1", "zero%E2%80%8Bwidth"),
            line("alice", "127.0.0.2:5001", "p2p/1", &flood),
            line("%1B]0;pwned%07", "127.0.0.2:5001", "p2p/1", "x"),
            line("a%E2%81%A6b", "127.0.0.2:5001", "p2p/1", "x"),
            line("a%C2%9Bb", "127.0.0.2:5001", "p2p/1", "x"),
            // Names no peer can hold.
            line("alice", "127.0.0.2:5001", "p2p/1", "%"),
            line("alice", "127.0.0.2:5001", "p2p/1", ".."),
            line("alice", "127.0.0.2:5001", "p2p/1", "a/../b"),
            line("alice", "127.0.0.2:5001", "p2p/1", "/etc/x"),
            line("alice", "127.0.0.2:5001", "p2p/1", "a//b"),
            // Nobody serves on port 0.
            line("alice", "127.0.0.2:0", "p2p/1", "x"),
            line("alice", "127.0.0.2:0", "legacy", "x"),
            // Versions we do not know.
            line("alice", "127.0.0.2:5001", "p2p/4000000000", "x"),
            line("alice", "127.0.0.2:5001", "p2p/0", "x"),
            line("alice", "127.0.0.2:5001", "p2p/2", "x"),
            line("alice", "127.0.0.2:5001", "p2p/+1", "x"),
            line("alice", "127.0.0.2:5001", "p2p/01", "x"),
        ] {
            let text = format!("{good}{bad}");
            match TagsIndex::parse(&text, Path::new("t")) {
                Err(TagsError::Parse { line, message, .. }) => {
                    assert_eq!(line, 2, "{bad:?}");
                    assert!(
                        !message.contains(['\u{1b}', '\u{7}', '\n', '\u{202e}']),
                        "the message must be safe to print: {message:?}"
                    );
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn plain_unicode_names_are_kept() {
        let mut index = sample();
        index.entries.push(entry(
            "José 山田 🎉",
            "127.0.0.7",
            "Résumé – 日本語 ❤️ 👍🏽.pdf",
            Some(4),
        ));
        let text = index.to_string();
        assert!(text.contains("Résumé%20–%20日本語%20❤️%20👍🏽.pdf"), "{text}");
        assert_eq!(TagsIndex::parse(&text, Path::new("t")).unwrap(), index);
    }

    #[test]
    fn save_and_load_through_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.txt");
        assert_eq!(TagsIndex::load(&path).unwrap(), TagsIndex::default());
        let index = sample();
        index.save(&path).unwrap();
        assert_eq!(TagsIndex::load(&path).unwrap(), index);
        assert!(!dir.path().join("tags.txt.tmp").exists());
        assert!(dir.path().join("tags.txt.lock").exists());
    }
}
