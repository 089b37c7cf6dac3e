//! The receiving side of `downloader send`: the inbox `DIR/offers.txt` that the listener keeps
//! of the offers heard for this peer's user, the offers already answered
//! (`DIR/offers-answered.txt`, written by the downloader) and the users whose offers are
//! accepted unasked (`DIR/accept-from.txt`, written by the user).
//!
//! # `offers.txt` (written only by the listener, atomically)
//! ```text
//! # offers.txt: offers heard for this peer's user (written by the listener).
//! # ID<TAB>FROM<TAB>ADDRESS<TAB>EXPIRES<TAB>SIZE<TAB>SHA256<TAB>ROOT<TAB>NAME
//! 3f9c…<TAB>bob<TAB>127.0.0.2:5001<TAB>1764027000<TAB>2100000<TAB>9f86…<TAB>77e2…<TAB>report.pdf
//! ```
//! `ADDRESS` is the sender's chunk server: the datagram's source IP and the port its extension
//! names (nothing in the payload is trusted for the IP). `EXPIRES` is in Unix seconds of this
//! peer's clock (the datagram says how many seconds are left). `ROOT` is `-` when not given.
//! The listener bounds the inbox ([`Inbox`]): hostile peers cannot fill the disk or the list.
//!
//! # `offers-answered.txt` (written only by the downloader, under `.run/offers.lock`)
//! ```text
//! 3f9c…<TAB>1764027000<TAB>accepted
//! ```
//! Each answered offer's id, until it expires (then the line is dropped at the next write):
//! the listener drops an answered offer and ignores its re-broadcasts, and `downloader offers`
//! never shows it again.
//!
//! # `accept-from.txt` (written by the user)
//! One username per line (case ignored), `#` comments: `downloader sync` accepts the offers of
//! these users unasked. A missing file is nobody.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::fsutil;
use crate::instance::UsernameRecord;
use crate::peer_dir::PeerDir;
use crate::protocol::{is_offer_id, ContentMeta, OfferHeard};

/// Name of the inbox in the peer folder.
pub const OFFERS_FILE: &str = "offers.txt";

/// Name of the file of answered offers in the peer folder.
pub const ANSWERED_FILE: &str = "offers-answered.txt";

/// Name of the file of users whose offers are accepted unasked.
pub const ACCEPT_FROM_FILE: &str = "accept-from.txt";

/// Name of the lock file, in `.run/`, that serialises writers of [`ANSWERED_FILE`].
pub const ANSWERED_LOCK: &str = "offers.lock";

/// Most offers the inbox holds. A line of `offers.txt` is at most about 500 bytes (the content
/// name at most [`crate::MAX_CONTENT_NAME_BYTES`]), so the file stays under about 1 MB.
pub const MAX_PENDING_OFFERS: usize = 2000;

/// Most offers the inbox holds from one source address: a folder sent whole is one offer per
/// file, so as many as one `downloader send` may make
/// ([`crate::sends::MAX_FILES_PER_SEND`]); half the inbox, so that one hostile address
/// cannot fill it.
pub const MAX_OFFERS_PER_SOURCE: usize = 1000;

/// How long the listener keeps an expired offer in the inbox (hidden from `downloader
/// offers`), so that accepting it says "expired" rather than "no such offer".
pub const KEEP_EXPIRED_SECS: u64 = 600;

const HEADER: &str = "\
# offers.txt: offers heard for this peer's user (written by the listener; see `downloader offers`).
# ID<TAB>FROM<TAB>ADDRESS<TAB>EXPIRES (Unix seconds)<TAB>SIZE<TAB>SHA256<TAB>ROOT<TAB>NAME";

/// One offer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Its id.
    pub id: String,
    /// The sender's username, as heard (made safe to show by the listener).
    pub from: String,
    /// The sender's chunk server.
    pub addr: SocketAddr,
    /// When it expires, in Unix seconds.
    pub expires: u64,
    /// The content's name.
    pub name: String,
    /// The content's size and digests.
    pub meta: ContentMeta,
}

impl Offer {
    /// The offer `heard` from `from` (whose chunk server is at `addr`) at `now` (Unix seconds).
    pub fn heard(heard: &OfferHeard, from: &str, addr: SocketAddr, now: u64) -> Offer {
        Offer {
            id: heard.id.clone(),
            from: from.to_owned(),
            addr,
            expires: now.saturating_add(heard.expires_in),
            name: heard.name.clone(),
            meta: heard.meta,
        }
    }

    /// Whether it is still on offer at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.expires > now
    }

    fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.id,
            self.from,
            self.addr,
            self.expires,
            self.meta.size,
            self.meta.sha256,
            self.meta
                .root
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            self.name
        )
    }

    fn from_line(line: &str) -> Option<Offer> {
        let f: Vec<&str> = line.splitn(8, '\t').collect();
        let [id, from, addr, expires, size, sha256, root, name] = f[..] else {
            return None;
        };
        if !is_offer_id(id) || crate::chunk::validate_content_name(name).is_err() {
            return None;
        }
        Some(Offer {
            id: id.to_owned(),
            from: from.to_owned(),
            addr: addr.parse().ok()?,
            expires: expires.parse().ok()?,
            name: name.to_owned(),
            meta: ContentMeta {
                size: size.parse().ok()?,
                sha256: sha256.parse().ok()?,
                root: match root {
                    "-" => None,
                    hex => Some(hex.parse::<Digest>().ok()?),
                },
            },
        })
    }
}

/// The inbox: the pending offers, in the order first heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbox {
    /// The offers.
    pub offers: Vec<Offer>,
}

impl Inbox {
    /// Parses the text of `offers.txt`; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Inbox {
        Inbox {
            offers: text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .filter_map(Offer::from_line)
                .collect(),
        }
    }

    /// The text of `offers.txt`.
    pub fn render(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for o in &self.offers {
            text.push_str(&o.to_line());
            text.push('\n');
        }
        text
    }

    /// Records `offer`, within the bounds; returns whether the inbox changed. An offer already
    /// answered (`is_answered`) is ignored; one already held is refreshed (its expiry) only
    /// when it comes from the same address with the same content, so nobody else can alter it;
    /// a new one is refused beyond [`MAX_OFFERS_PER_SOURCE`] from its IP or
    /// [`MAX_PENDING_OFFERS`] in all, once the offers expired at `now` made what room they
    /// could.
    pub fn record(&mut self, offer: Offer, now: u64, is_answered: impl Fn(&str) -> bool) -> bool {
        if is_answered(&offer.id) {
            return false;
        }
        if let Some(held) = self.offers.iter_mut().find(|o| o.id == offer.id) {
            if held.addr != offer.addr || held.name != offer.name || held.meta != offer.meta {
                return false;
            }
            let changed = held.expires != offer.expires || held.from != offer.from;
            held.expires = offer.expires;
            held.from = offer.from;
            return changed;
        }
        let ip: IpAddr = offer.addr.ip();
        let full = |offers: &[Offer]| {
            offers.iter().filter(|o| o.addr.ip() == ip).count() >= MAX_OFFERS_PER_SOURCE
                || offers.len() >= MAX_PENDING_OFFERS
        };
        if full(&self.offers) {
            self.offers.retain(|o| o.is_live(now));
            if full(&self.offers) {
                return false;
            }
        }
        self.offers.push(offer);
        true
    }

    /// Drops the offers expired at `now` and those answered; returns whether any went.
    pub fn prune(&mut self, now: u64, is_answered: impl Fn(&str) -> bool) -> bool {
        let before = self.offers.len();
        self.offers
            .retain(|o| o.is_live(now) && !is_answered(&o.id));
        self.offers.len() != before
    }
}

/// `DIR/offers.txt`.
pub fn inbox_path(dir: &PeerDir) -> PathBuf {
    dir.root().join(OFFERS_FILE)
}

/// `DIR/offers-answered.txt`.
pub fn answered_path(dir: &PeerDir) -> PathBuf {
    dir.root().join(ANSWERED_FILE)
}

/// `DIR/accept-from.txt`.
pub fn accept_from_path(dir: &PeerDir) -> PathBuf {
    dir.root().join(ACCEPT_FROM_FILE)
}

fn read_text(path: &Path) -> io::Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Reads the inbox of `dir` (all of it: expired and answered offers too); a missing file is
/// an empty inbox.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load_inbox(dir: &PeerDir) -> io::Result<Inbox> {
    Ok(Inbox::parse(&read_text(&inbox_path(dir))?))
}

/// Writes the inbox of `dir` atomically (the listener's business).
///
/// # Errors
/// When it cannot be written.
pub fn save_inbox(dir: &PeerDir, inbox: &Inbox) -> io::Result<()> {
    fsutil::write_atomic(&inbox_path(dir), inbox.render().as_bytes())
}

/// The offers of `inbox` still pending at `now`: live and not in `answered`, in order. What
/// `downloader offers` numbers 1..n.
pub fn pending(inbox: &Inbox, answered: &Answered, now: u64) -> Vec<Offer> {
    inbox
        .offers
        .iter()
        .filter(|o| o.is_live(now) && !answered.contains(&o.id))
        .cloned()
        .collect()
}

/// How an offer was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Downloaded.
    Accepted,
    /// Refused.
    Declined,
}

impl Answer {
    fn word(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Declined => "declined",
        }
    }
}

/// The offers answered: id → (expiry, answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered(HashMap<String, (u64, Answer)>);

impl Answered {
    /// Parses `offers-answered.txt`; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Answered {
        let mut map = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut f = line.split('\t');
            let (Some(id), Some(expires), Some(answer)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let answer = match answer {
                "accepted" => Answer::Accepted,
                "declined" => Answer::Declined,
                _ => continue,
            };
            if let (true, Ok(expires)) = (is_offer_id(id), expires.parse()) {
                map.insert(id.to_owned(), (expires, answer));
            }
        }
        Answered(map)
    }

    /// The text of the file, sorted by id.
    pub fn render(&self) -> String {
        let mut lines: Vec<String> = self
            .0
            .iter()
            .map(|(id, (expires, answer))| format!("{id}\t{expires}\t{}", answer.word()))
            .collect();
        lines.sort();
        let mut text =
            "# offers answered (downloader accept / decline): ID<TAB>EXPIRES<TAB>ANSWER\n"
                .to_owned();
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        text
    }

    /// Whether offer `id` was answered.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// How offer `id` was answered.
    pub fn answer(&self, id: &str) -> Option<Answer> {
        self.0.get(id).map(|(_, a)| *a)
    }

    /// Records the answer to `offer`.
    pub fn insert(&mut self, offer: &Offer, answer: Answer) {
        self.0.insert(offer.id.clone(), (offer.expires, answer));
    }

    /// Forgets the answers to offers expired at `now`: they are never re-broadcast.
    pub fn prune(&mut self, now: u64) {
        self.0.retain(|_, (expires, _)| *expires > now);
    }

    /// How many are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads the answered offers of `dir`; a missing file is none.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load_answered(dir: &PeerDir) -> io::Result<Answered> {
    Ok(Answered::parse(&read_text(&answered_path(dir))?))
}

/// Records `answer` to `offer` in `DIR/offers-answered.txt`, under its lock, dropping the
/// answers to offers expired at `now`. Returns `false`, writing nothing, when the offer was
/// already answered (by another command meanwhile).
///
/// # Errors
/// When the lock or the file fails.
pub fn record_answer(dir: &PeerDir, offer: &Offer, answer: Answer, now: u64) -> io::Result<bool> {
    let lock = dir.lock_for_edit(ANSWERED_LOCK)?;
    let mut answered = load_answered(dir)?;
    if answered.contains(&offer.id) {
        return Ok(false);
    }
    answered.prune(now);
    answered.insert(offer, answer);
    fsutil::write_atomic(&answered_path(dir), answered.render().as_bytes())?;
    drop(lock);
    Ok(true)
}

/// Parses `accept-from.txt`: the usernames listed, trimmed, without blank lines and `#`
/// comments.
pub fn parse_accept_from(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The users whose offers `dir` accepts unasked; a missing file is nobody.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load_accept_from(dir: &PeerDir) -> io::Result<Vec<String>> {
    Ok(parse_accept_from(&read_text(&accept_from_path(dir))?))
}

/// Whether `user` is in `allowed` (case ignored).
pub fn is_allowed(allowed: &[String], user: &str) -> bool {
    allowed.iter().any(|a| a.eq_ignore_ascii_case(user))
}

/// This peer's username: the one its running announcer announces ([`UsernameRecord`]), else
/// `DIR/username.txt` (first line, trimmed); `None` when there is neither: then nobody can
/// send it anything.
pub fn own_username(dir: &PeerDir) -> Option<String> {
    if let Some(name) = UsernameRecord::read_live(dir) {
        return Some(name);
    }
    let text = std::fs::read_to_string(dir.username_file()).ok()?;
    let name = text.lines().next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u8) -> ContentMeta {
        ContentMeta {
            size: 1000 + u64::from(n),
            sha256: Digest::of(&[n]),
            root: n.is_multiple_of(2).then(|| Digest::of(&[n, n])),
        }
    }

    fn offer(id: &str, ip: u8, expires: u64) -> Offer {
        Offer {
            id: id.into(),
            from: "bob".into(),
            addr: SocketAddr::from(([127, 0, 0, ip], 5001)),
            expires,
            name: format!("file {id}.pdf"),
            meta: meta(ip),
        }
    }

    #[test]
    fn the_inbox_round_trips_and_skips_bad_lines() {
        let mut inbox = Inbox::default();
        assert!(inbox.record(offer("a1", 2, 100), 0, |_| false));
        assert!(inbox.record(offer("b2", 3, 200), 0, |_| false));
        let text = inbox.render();
        assert!(text.starts_with("# offers.txt"), "{text}");
        assert_eq!(Inbox::parse(&text), inbox);
        let mut bad = text.clone();
        for line in [
            "x\tbob\t127.0.0.1:1\t5\t1\tzz\t-\tn",
            "bad id\tbob\t127.0.0.1:1\t5\t1\t-\t-\tn",
            "a\tbob\tnot-an-address\t5\t1\t-\t-\tn",
            "a\tbob\t127.0.0.1:1\t5\t1",
        ] {
            bad.push_str(line);
            bad.push('\n');
        }
        let name_escape = offer("c3", 4, 9)
            .to_line()
            .replace("file c3.pdf", "../../etc");
        bad.push_str(&name_escape);
        assert_eq!(Inbox::parse(&bad), inbox);
    }

    #[test]
    fn the_inbox_is_bounded_per_source_and_in_all() {
        let mut inbox = Inbox::default();
        for i in 0..MAX_OFFERS_PER_SOURCE + 5 {
            inbox.record(offer(&format!("s{i}"), 9, 100), 0, |_| false);
        }
        assert_eq!(inbox.offers.len(), MAX_OFFERS_PER_SOURCE);
        for ip in 10..13u8 {
            for i in 0..MAX_OFFERS_PER_SOURCE {
                inbox.record(offer(&format!("i{ip}x{i}"), ip, 100), 0, |_| false);
            }
        }
        assert_eq!(inbox.offers.len(), MAX_PENDING_OFFERS);
        // Once those offers expired, they make room.
        assert!(inbox.record(offer("late", 99, 500), 100, |_| false));
        assert_eq!(inbox.offers.len(), 1);
    }

    #[test]
    fn refreshes_come_only_from_the_sender_and_answered_offers_stay_away() {
        let mut inbox = Inbox::default();
        assert!(inbox.record(offer("a", 2, 100), 0, |_| false));
        assert!(!inbox.record(offer("a", 2, 100), 0, |_| false), "a repeat");
        assert!(inbox.record(offer("a", 2, 150), 0, |_| false), "refreshed");
        assert_eq!(inbox.offers[0].expires, 150);
        // The same id from elsewhere, or naming another content, changes nothing.
        let mut forged = offer("a", 3, 9_999);
        forged.meta = meta(2);
        forged.name = "file a.pdf".into();
        assert!(!inbox.record(forged, 0, |_| false));
        let mut other = offer("a", 2, 9_999);
        other.name = "x".into();
        assert!(!inbox.record(other, 0, |_| false));
        assert_eq!(inbox.offers.len(), 1);
        assert_eq!(inbox.offers[0].expires, 150);
        // Answered: ignored, and pruned.
        assert!(!inbox.record(offer("b", 2, 100), 0, |id| id == "b"));
        assert!(inbox.prune(10, |id| id == "a"));
        assert!(inbox.offers.is_empty());
        inbox.record(offer("c", 2, 100), 0, |_| false);
        assert!(!inbox.prune(99, |_| false));
        assert!(inbox.prune(100, |_| false), "expired");
    }

    #[test]
    fn answers_round_trip_are_pruned_and_hide_offers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        let a = offer("a", 2, 100);
        let b = offer("b", 2, 300);
        assert!(record_answer(&dir, &a, Answer::Accepted, 10).unwrap());
        assert!(!record_answer(&dir, &a, Answer::Declined, 10).unwrap());
        assert!(record_answer(&dir, &b, Answer::Declined, 10).unwrap());
        let answered = load_answered(&dir).unwrap();
        assert_eq!(answered.answer("a"), Some(Answer::Accepted));
        assert_eq!(answered.answer("b"), Some(Answer::Declined));
        assert_eq!(Answered::parse(&answered.render()), answered);
        let mut inbox = Inbox::default();
        inbox.record(a.clone(), 0, |_| false);
        inbox.record(b.clone(), 0, |_| false);
        inbox.record(offer("c", 3, 300), 0, |_| false);
        let ids: Vec<String> = pending(&inbox, &answered, 50)
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, ["c"]);
        assert!(pending(&inbox, &answered, 300).is_empty(), "all expired");
        // The next answer after a's expiry forgets it.
        record_answer(&dir, &offer("c", 3, 300), Answer::Accepted, 150).unwrap();
        let answered = load_answered(&dir).unwrap();
        assert!(!answered.contains("a"));
        assert_eq!(answered.len(), 2);
    }

    #[test]
    fn accept_from_lists_usernames_and_nobody_by_default() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        assert!(load_accept_from(&dir).unwrap().is_empty());
        let users = parse_accept_from("# friends\n bob \n\nAlice\n#mallory\n");
        assert_eq!(users, ["bob", "Alice"]);
        assert!(is_allowed(&users, "BOB"));
        assert!(is_allowed(&users, "alice"));
        assert!(!is_allowed(&users, "mallory"));
        assert!(!is_allowed(&users, ""));
    }

    #[test]
    fn the_username_is_the_first_line_of_username_txt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        assert_eq!(own_username(&dir), None);
        std::fs::write(dir.username_file(), "  carol \nx\n").unwrap();
        assert_eq!(own_username(&dir).as_deref(), Some("carol"));
        std::fs::write(dir.username_file(), "\n").unwrap();
        assert_eq!(own_username(&dir), None);
    }

    #[test]
    fn the_running_announcers_name_wins_over_username_txt_and_a_dead_ones_does_not() {
        use crate::instance::{InstanceLock, ANNOUNCER};
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        std::fs::write(dir.username_file(), "stored\n").unwrap();
        // A record without the announcer's lock is one left by an announcer that died.
        let record = UsernameRecord::of_this_process("flagged");
        let guard = record.write(&dir).unwrap();
        assert_eq!(own_username(&dir).as_deref(), Some("stored"));
        let lock = InstanceLock::acquire(&dir, ANNOUNCER).unwrap();
        assert_eq!(own_username(&dir).as_deref(), Some("flagged"));
        // Another process holding the lock (a new announcer) makes this record stale.
        std::fs::write(
            UsernameRecord::path(&dir),
            serde_json::to_vec(&UsernameRecord {
                username: "ghost".into(),
                pid: std::process::id() + 1,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(own_username(&dir).as_deref(), Some("stored"));
        let again = record.write(&dir).unwrap();
        assert_eq!(own_username(&dir).as_deref(), Some("flagged"));
        drop(lock);
        assert_eq!(own_username(&dir).as_deref(), Some("stored"), "it stopped");
        drop(again);
        assert!(
            !UsernameRecord::path(&dir).exists(),
            "removed when it stops"
        );
        drop(guard);
    }
}
