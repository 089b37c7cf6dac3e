//! `DIR/sends.txt`: the outbox, the files this peer offers to one user each (`downloader send
//! PATH --to USER`), which the chunk server serves unlisted and the announcer offers to that
//! user until the offer expires or is cancelled.
//!
//! # Format
//! ```text
//! # sends.txt: files offered with `downloader send`: ID<TAB>TO<TAB>EXPIRES<TAB>NAME<TAB>PATH
//! 3f9c0a…<TAB>carol<TAB>1764027000<TAB>report.pdf<TAB>/home/bob/report.pdf
//! 8d21b7…<TAB>carol<TAB>1764027000<TAB>photos/2024/a.jpg<TAB>/home/bob/photos/2024/a.jpg
//! ```
//! `ID` is the offer's id (32 random hex digits: [`new_offer_id`]), `TO` the recipient's
//! username, `EXPIRES` the offer's end in seconds since the Unix epoch (this peer's clock: the
//! announcer sends the time left, so clocks need not agree), `NAME` the content name the file
//! is offered under (its file name, or its path under a folder sent whole), `PATH` the absolute
//! path of the file, served in place. `PATH` is last and taken whole, so it may hold tabs; a
//! content name never holds a tab (a control character) nor starts with `/`, which is how a
//! line of the first form, `ID<TAB>TO<TAB>EXPIRES<TAB>PATH` (no `NAME`: the file name), is told
//! apart and still read. The chunk server checks `NAME` ([`crate::chunk::validate_content_name`])
//! before serving under it. Blank lines and `#` comments are skipped; a line that does not parse
//! is skipped too (and dropped at the next edit).
//!
//! # Writers
//! Only the downloader writes it ([`update`]: under the lock `.run/sends.lock`, atomically),
//! and drops expired offers whenever it does. The chunk server and the announcer poll it
//! ([`SendsWatch`]) and ignore the expired lines meanwhile.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsutil::{self, FileStamp};
use crate::peer_dir::PeerDir;
use crate::protocol::is_offer_id;

/// Name of the outbox in the peer folder.
pub const SENDS_FILE: &str = "sends.txt";

/// Name of the lock file, in `.run/`, that serialises writers of [`SENDS_FILE`].
pub const SENDS_LOCK: &str = "sends.lock";

/// How often the chunk server and the announcer look at `sends.txt` (one `stat`), and at the
/// clock for offers that expired.
pub const SENDS_POLL: Duration = Duration::from_millis(200);

/// Most files one `downloader send` offers (a folder sent whole: one offer per file), as
/// many as the receiver's inbox holds from one address
/// ([`crate::offers::MAX_OFFERS_PER_SOURCE`]).
pub const MAX_FILES_PER_SEND: usize = crate::offers::MAX_OFFERS_PER_SOURCE;

/// How long an offer lasts unless `--expires` says otherwise.
pub const DEFAULT_OFFER_LIFETIME: Duration = Duration::from_secs(3600);

const HEADER: &str = "\
# sends.txt: files offered with `downloader send` (see README), written by the downloader.
# ID<TAB>TO<TAB>EXPIRES (Unix seconds)<TAB>NAME<TAB>PATH";

/// One outgoing offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The offer's id.
    pub id: String,
    /// The recipient's username.
    pub to: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires: u64,
    /// The content name it is offered under: the file name, or for a file of a folder sent
    /// whole its path from the folder on (`photos/2024/a.jpg`). Checked by whoever serves it.
    pub name: String,
    /// The file offered (absolute).
    pub path: PathBuf,
}

impl Send {
    /// Whether it is still on offer at `now` (Unix seconds).
    pub fn is_live(&self, now: u64) -> bool {
        self.expires > now
    }

    /// Seconds left at `now`; 0 once expired.
    pub fn left(&self, now: u64) -> u64 {
        self.expires.saturating_sub(now)
    }

    fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.id,
            self.to,
            self.expires,
            self.name,
            self.path.display()
        )
    }

    fn from_line(line: &str) -> Option<Send> {
        let mut fields = line.splitn(4, '\t');
        let id = fields.next().filter(|id| is_offer_id(id))?;
        let to = fields.next().filter(|to| !to.is_empty())?;
        let expires = fields.next()?.parse().ok()?;
        let rest = fields.next()?;
        // A content name never starts with `/`: an absolute path here is the first form.
        let (name, path) = if rest.starts_with('/') {
            let path = PathBuf::from(rest);
            let name = path.file_name()?.to_str()?.to_owned();
            // It could never be a content name, and would not be read back from NAME.
            if name.contains('\t') {
                return None;
            }
            (name, path)
        } else {
            let (name, path) = rest.split_once('\t')?;
            (name.to_owned(), PathBuf::from(path))
        };
        if name.is_empty() || !path.is_absolute() {
            return None;
        }
        Some(Send {
            id: id.to_owned(),
            to: to.to_owned(),
            expires,
            name,
            path,
        })
    }
}

/// Parses the text of `sends.txt`; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Send> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(Send::from_line)
        .collect()
}

/// The text of `sends.txt` for `sends`.
pub fn render(sends: &[Send]) -> String {
    let mut text = format!("{HEADER}\n");
    for s in sends {
        text.push_str(&s.to_line());
        text.push('\n');
    }
    text
}

/// `DIR/sends.txt`.
pub fn path_in(dir: &PeerDir) -> PathBuf {
    dir.root().join(SENDS_FILE)
}

/// Reads the outbox of `dir`; a missing file is an empty one.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load(dir: &PeerDir) -> io::Result<Vec<Send>> {
    read(&path_in(dir))
}

fn read(path: &Path) -> io::Result<Vec<Send>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Edits the outbox of `dir` under its lock: reads it, drops the offers expired at `now`,
/// lets `edit` change it, and writes it back atomically when anything changed.
///
/// # Errors
/// When the lock, the file or `edit` fails; the file is then left as it was.
pub fn update<T, E: From<io::Error>>(
    dir: &PeerDir,
    now: u64,
    edit: impl FnOnce(&mut Vec<Send>) -> Result<T, E>,
) -> Result<T, E> {
    let lock = dir.lock_for_edit(SENDS_LOCK)?;
    let before = load(dir)?;
    let mut sends: Vec<Send> = before.iter().filter(|s| s.is_live(now)).cloned().collect();
    let value = edit(&mut sends)?;
    if sends != before {
        fsutil::write_atomic(&path_in(dir), render(&sends).as_bytes())?;
    }
    drop(lock);
    Ok(value)
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new offer id: 32 hex digits from the system's random source, or, should it fail, from a
/// hash of the time, the process and a counter. Not a secret: it only has to never collide.
pub fn new_offer_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Ok(random) = crate::trust::random_bytes::<16>() {
        return crate::digest::to_hex(&random);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}/{}/{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    crate::digest::Digest::of(seed.as_bytes()).short(32)
}

/// Watches an outbox: [`SendsWatch::poll`] re-reads it when it changed.
#[derive(Debug)]
pub struct SendsWatch {
    path: PathBuf,
    stamp: Option<FileStamp>,
    sends: Vec<Send>,
}

impl SendsWatch {
    /// Watches the outbox of `dir` (which may not exist yet).
    pub fn new(dir: &PeerDir) -> SendsWatch {
        SendsWatch {
            path: path_in(dir),
            stamp: None,
            sends: Vec::new(),
        }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every offer of the file as last read, expired or not.
    pub fn all(&self) -> &[Send] {
        &self.sends
    }

    /// Re-reads the file if it changed since the last poll; returns whether it did.
    ///
    /// # Errors
    /// When the file exists but cannot be read; it is read again at the next poll, and what
    /// was last read is kept meanwhile.
    pub fn poll(&mut self) -> io::Result<bool> {
        let stamp = fsutil::file_stamp(&self.path)?;
        if self.stamp == Some(stamp) {
            return Ok(false);
        }
        self.sends = read(&self.path)?;
        self.stamp = Some(stamp);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(id: &str, expires: u64, path: &str) -> Send {
        let path = PathBuf::from(path);
        Send {
            id: id.into(),
            to: "carol".into(),
            expires,
            name: path.file_name().unwrap().to_str().unwrap().into(),
            path,
        }
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_skipped() {
        let mut nested = send("c3", 300, "/home/bob/photos/2024/a b.jpg");
        nested.name = "photos/2024/a b.jpg".into();
        let mut tabbed = send("b2", 200, "/x/tab\there");
        tabbed.name = "there".into();
        let sends = vec![send("a1", 100, "/home/bob/report 2024.pdf"), tabbed, nested];
        let text = render(&sends);
        assert!(text.starts_with("# sends.txt"), "{text}");
        assert!(
            text.contains("c3\tcarol\t300\tphotos/2024/a b.jpg\t/home/bob/photos/2024/a b.jpg\n"),
            "{text}"
        );
        assert_eq!(parse(&text), sends, "a tab in the path stays in the path");
        assert_eq!(sends[0].name, "report 2024.pdf");
        let bad = "\
# comment
a1\tcarol\t100\trelative/path
a1\tcarol\t100\tname\trelative/path
a1\tcarol\t100\tname-but-no-path
a1\tcarol\t100\t\t/p
bad id\tcarol\t100\t/p
a1\t\t100\t/p
a1\tcarol\tsoon\t/p
a1\tcarol\t100
a1\tcarol\t100\t/
ok\tdave\t5\t/p
";
        assert_eq!(
            parse(bad),
            [Send {
                id: "ok".into(),
                to: "dave".into(),
                expires: 5,
                name: "p".into(),
                path: "/p".into()
            }]
        );
    }

    #[test]
    fn lines_of_the_first_form_are_named_after_their_file_and_rewritten_in_the_new_one() {
        // Written by a downloader from before folders could be sent: no NAME column.
        let old = "# old header\n\
                   a1\tcarol\t100\t/home/bob/report.pdf\n\
                   b2\tdave\t200\t/x/with\ttab/file.txt\n\
                   c3\tdave\t200\t/x/never\tserved\n";
        let read = parse(old);
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(read[0].name, "report.pdf");
        assert_eq!(read[0].path, PathBuf::from("/home/bob/report.pdf"));
        assert_eq!(read[1].name, "file.txt");
        assert_eq!(read[1].path, PathBuf::from("/x/with\ttab/file.txt"));
        let rewritten = render(&read);
        assert!(rewritten.contains("a1\tcarol\t100\treport.pdf\t/home/bob/report.pdf\n"));
        assert_eq!(parse(&rewritten), read);
    }

    #[test]
    fn liveness_and_time_left() {
        let s = send("a", 100, "/p");
        assert!(s.is_live(99));
        assert!(!s.is_live(100));
        assert_eq!(s.left(40), 60);
        assert_eq!(s.left(140), 0);
    }

    #[test]
    fn updates_drop_expired_offers_and_the_watch_sees_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        let mut watch = SendsWatch::new(&dir);
        assert!(watch.poll().unwrap());
        assert!(!watch.poll().unwrap());
        update::<_, io::Error>(&dir, 10, |all| {
            all.push(send("old", 20, "/a"));
            all.push(send("new", 50, "/b"));
            Ok(())
        })
        .unwrap();
        assert!(watch.poll().unwrap());
        assert_eq!(watch.all().len(), 2);
        // At 30 the first has expired: the next edit drops it.
        update::<_, io::Error>(&dir, 30, |_| Ok(())).unwrap();
        let left: Vec<String> = load(&dir).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(left, ["new"]);
        // A failed edit changes nothing.
        assert!(update::<(), io::Error>(&dir, 30, |all| {
            all.clear();
            Err(io::Error::other("no"))
        })
        .is_err());
        assert_eq!(load(&dir).unwrap().len(), 1);
    }

    #[test]
    fn offer_ids_are_32_hex_digits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..200).map(|_| new_offer_id()).collect();
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(is_offer_id(id));
        }
    }
}
