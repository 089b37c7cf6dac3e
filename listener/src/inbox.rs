//! The inbox: the offers heard for this peer's user (`downloader send` on another peer), kept
//! in `DIR/offers.txt` ([`shared::offers`]), of which the listener is the only writer.
//!
//! An offer datagram goes to the whole LAN; only the listener whose user it names records it
//! (this peer's user is the name its running announcer announces, else `DIR/username.txt`:
//! [`offers::own_username`], looked at every [`LOOK_EVERY`], and again at once, at most every
//! [`RELOOK_GAP`], when an offer names someone else: the announcer may have just started; without
//! one, offers are ignored). Recording writes the offer's description and nothing else: nothing
//! of the content is fetched until the user accepts. The sender's chunk server is the datagram's
//! source IP and the port its extension names. Offers answered (`DIR/offers-answered.txt`,
//! written by the downloader) are dropped and their re-broadcasts ignored; expired ones are
//! dropped; the inbox is bounded ([`shared::offers::Inbox::record`]), so a hostile peer can
//! neither fill it nor alter another sender's offer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shared::fsutil::{self, FileStamp};
use shared::latch::Latch;
use shared::offers::{self, Answered, Inbox, Offer};
use shared::peer_dir::PeerDir;
use shared::protocol::OfferHeard;
use shared::sends::unix_now;

/// How often the username, the answered offers and the expiries are looked at.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Least time between two writes of `offers.txt`, so a flood of offers costs few writes.
const WRITE_GAP: Duration = Duration::from_millis(100);

/// Least time between two looks at the username prompted by offers naming someone else: an
/// announcer that started a moment ago (its name not yet seen) must not cost the offers sent
/// meanwhile, and a flood of offers for other users must not cost a file read each.
const RELOOK_GAP: Duration = Duration::from_millis(100);

/// Least time between two writes of `offers.txt` when only offers already held were refreshed
/// (their expiry, their sender's name): the inbox may hold 2000 offers, about 1 MB, and a
/// sender re-broadcasting with a shifting expiry must not have it rewritten ten times a second.
const REFRESH_GAP: Duration = Duration::from_secs(5);

/// The listener's inbox; see the module documentation.
pub(crate) struct InboxKeeper {
    dir: PeerDir,
    inbox: Inbox,
    answered: Answered,
    answered_stamp: Option<FileStamp>,
    username: Option<String>,
    /// When the username was last read.
    username_read: Instant,
    next_look: Instant,
    /// The inbox gained or lost offers since it was last written.
    dirty: bool,
    /// Offers already held were refreshed since it was last written.
    refreshed: bool,
    last_write: Option<Instant>,
    unwritable: Latch,
}

impl InboxKeeper {
    /// The inbox of `dir`, reloaded from its `offers.txt` (a restart keeps what was heard).
    pub(crate) fn new(dir: &PeerDir) -> InboxKeeper {
        let inbox = offers::load_inbox(dir).unwrap_or_else(|e| {
            log::warn!(
                "cannot read {}: {e}; starting with no offers",
                offers::inbox_path(dir).display()
            );
            Inbox::default()
        });
        let mut keeper = InboxKeeper {
            dir: dir.clone(),
            inbox,
            answered: Answered::default(),
            answered_stamp: None,
            username: None,
            username_read: Instant::now(),
            next_look: Instant::now(),
            dirty: false,
            refreshed: false,
            last_write: None,
            unwritable: Latch::default(),
        };
        keeper.tick(Instant::now());
        keeper
    }

    /// Records `offer`, heard from `user` at `from` (source IP, and the chunk-server port
    /// its extension names), if it is for this peer's user.
    pub(crate) fn hear(&mut self, offer: &OfferHeard, user: &str, from: SocketAddr) {
        let for_me = |me: &Option<String>| {
            me.as_ref()
                .is_some_and(|m| offer.to.eq_ignore_ascii_case(m))
        };
        if !for_me(&self.username) && self.username_read.elapsed() >= RELOOK_GAP {
            self.username = offers::own_username(&self.dir);
            self.username_read = Instant::now();
        }
        let Some(me) = &self.username else {
            log::debug!("ignoring an offer from {from}: this peer has no username yet");
            return;
        };
        if !offer.to.eq_ignore_ascii_case(me) {
            return;
        }
        let now = unix_now();
        let offer = Offer::heard(offer, user, from, now);
        let answered = &self.answered;
        let (id, name) = (offer.id.clone(), offer.name.clone());
        let new = !self.inbox.offers.iter().any(|o| o.id == id);
        if self.inbox.record(offer, now, |id| answered.contains(id)) {
            if new {
                log::info!("{user:?} at {from} offers {name:?} (offer {id})");
                self.dirty = true;
            } else {
                self.refreshed = true;
            }
        } else if new && !answered.contains(&id) {
            log::debug!("offer {id} from {from} refused: the inbox is full for it");
        }
    }

    /// Looks at the username, the answered offers and the expiries when due, and writes
    /// `offers.txt` when it changed (at most once per [`WRITE_GAP`], or per [`REFRESH_GAP`]
    /// when offers were only refreshed).
    pub(crate) fn tick(&mut self, now: Instant) {
        if now >= self.next_look {
            self.next_look = now + LOOK_EVERY;
            self.username = offers::own_username(&self.dir);
            self.username_read = Instant::now();
            let path = offers::answered_path(&self.dir);
            if let Ok(stamp) = fsutil::file_stamp(&path) {
                if self.answered_stamp != Some(stamp) {
                    if let Ok(answered) = offers::load_answered(&self.dir) {
                        self.answered = answered;
                        self.answered_stamp = Some(stamp);
                    }
                }
            }
            let answered = &self.answered;
            // Expired offers stay a while, so accepting one says "expired".
            let kept_since = unix_now().saturating_sub(offers::KEEP_EXPIRED_SECS);
            self.dirty |= self.inbox.prune(kept_since, |id| answered.contains(id));
            if self.last_write.is_none() {
                // Written once at start, so the file exists (and its header says what it is).
                self.dirty = true;
            }
        }
        let since = |gap| self.last_write.is_none_or(|t| now.duration_since(t) >= gap);
        if (self.dirty && since(WRITE_GAP)) || (self.refreshed && since(REFRESH_GAP)) {
            self.write(now);
        }
    }

    fn write(&mut self, now: Instant) {
        let path = offers::inbox_path(&self.dir);
        match offers::save_inbox(&self.dir, &self.inbox) {
            Ok(()) => {
                if self.unwritable.reset() {
                    log::info!("{} written again", path.display());
                }
                self.dirty = false;
                self.refreshed = false;
            }
            Err(e) => {
                if self.unwritable.trip_because(&e) {
                    log::warn!("cannot write {}: {e}; will retry", path.display());
                }
            }
        }
        self.last_write = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::digest::Digest;
    use shared::protocol::ContentMeta;

    fn heard(to: &str, id: &str) -> OfferHeard {
        OfferHeard {
            to: to.into(),
            id: id.into(),
            name: "report.pdf".into(),
            meta: ContentMeta {
                size: 3,
                sha256: Digest::of(b"abc"),
                root: None,
            },
            expires_in: 60,
        }
    }

    #[test]
    fn only_offers_for_this_user_are_recorded_and_answered_ones_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        let from = SocketAddr::from(([127, 0, 0, 2], 6001));
        let mut keeper = InboxKeeper::new(&dir);
        // No username: nothing recorded.
        keeper.hear(&heard("carol", "a"), "bob", from);
        keeper.tick(Instant::now() + WRITE_GAP);
        assert!(offers::load_inbox(&dir).unwrap().offers.is_empty());
        assert!(offers::inbox_path(&dir).exists(), "written at start");

        std::fs::write(dir.username_file(), "carol\n").unwrap();
        let t = Instant::now() + LOOK_EVERY * 2;
        keeper.tick(t);
        keeper.hear(&heard("Carol", "a"), "bob", from);
        keeper.hear(&heard("dave", "b"), "bob", from);
        keeper.tick(t + WRITE_GAP);
        let inbox = offers::load_inbox(&dir).unwrap();
        assert_eq!(inbox.offers.len(), 1);
        assert_eq!(inbox.offers[0].id, "a");
        assert_eq!(inbox.offers[0].addr, from);
        assert_eq!(inbox.offers[0].from, "bob");

        // Declined: dropped at the next look, and not brought back by a re-broadcast.
        offers::record_answer(&dir, &inbox.offers[0], offers::Answer::Declined, unix_now())
            .unwrap();
        let t = t + LOOK_EVERY * 2;
        keeper.tick(t);
        keeper.hear(&heard("carol", "a"), "bob", from);
        keeper.tick(t + WRITE_GAP);
        assert!(offers::load_inbox(&dir).unwrap().offers.is_empty());
    }

    #[test]
    fn an_offer_for_a_name_just_taken_is_recorded_without_waiting_for_the_next_look() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        std::fs::write(dir.username_file(), "carol-laptop\n").unwrap();
        let from = SocketAddr::from(([127, 0, 0, 2], 6001));
        let mut keeper = InboxKeeper::new(&dir);
        // The name changes (an announcer starting with --username carol) less than LOOK_EVERY
        // after the last look, and an offer for it comes at once: it is not lost.
        std::thread::sleep(RELOOK_GAP);
        std::fs::write(dir.username_file(), "carol\n").unwrap();
        keeper.hear(&heard("carol", "a"), "bob", from);
        keeper.tick(Instant::now() + WRITE_GAP);
        let inbox = offers::load_inbox(&dir).unwrap();
        assert_eq!(inbox.offers.len(), 1, "{inbox:?}");
    }

    #[test]
    fn a_refreshed_offer_is_written_at_most_every_few_seconds_a_new_one_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        std::fs::write(dir.username_file(), "carol\n").unwrap();
        let from = SocketAddr::from(([127, 0, 0, 2], 6001));
        let mut keeper = InboxKeeper::new(&dir);
        let t = Instant::now() + LOOK_EVERY * 2;
        keeper.tick(t);
        keeper.hear(&heard("carol", "a"), "bob", from);
        keeper.tick(t + WRITE_GAP);
        let expires = |dir: &PeerDir| offers::load_inbox(dir).unwrap().offers[0].expires;
        let first = expires(&dir);
        // Re-broadcast with another expiry: held, but not written for REFRESH_GAP.
        let mut later = heard("carol", "a");
        later.expires_in = 3600;
        keeper.hear(&later, "bob", from);
        keeper.tick(t + WRITE_GAP * 2);
        assert_eq!(expires(&dir), first, "not rewritten for a refresh at once");
        // A new offer is written at once, the refresh with it.
        keeper.hear(&heard("carol", "b"), "bob", from);
        keeper.tick(t + WRITE_GAP * 3);
        assert_eq!(offers::load_inbox(&dir).unwrap().offers.len(), 2);
        let refreshed = expires(&dir);
        assert!(refreshed > first, "{refreshed} vs {first}");
        // A refresh alone is written once REFRESH_GAP has passed.
        later.expires_in = 7200;
        keeper.hear(&later, "bob", from);
        keeper.tick(t + WRITE_GAP * 4);
        assert_eq!(expires(&dir), refreshed);
        keeper.tick(t + WRITE_GAP * 3 + REFRESH_GAP);
        assert!(expires(&dir) > refreshed);
    }
}
