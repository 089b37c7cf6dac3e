//! `downloader offers`, `accept N…|all` and `decline N…|all`: the receiving side of
//! `downloader send` ([`crate::send`]). The listener keeps the inbox `DIR/offers.txt`; answers go to
//! `DIR/offers-answered.txt` ([`shared::offers`]), so an answered offer is never shown again,
//! whatever its sender re-broadcasts. Nothing of an offered content is written anywhere
//! before it is accepted: then it is downloaded like any content, by the same engine as `get`
//! (from the sender, and anyone else `tags.txt` lists with the same digest), verified,
//! resumable, into `downloads/`.
//!
//! `downloader sync` (and the prompt in the background) accepts unasked the offers of the
//! users listed in `DIR/accept-from.txt` ([`accept_allowed`]).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use shared::chunk::ChunkSet;
use shared::offers::{self, Answer, Offer};
use shared::sends::unix_now;
use shared::shutdown::Shutdown;
use shared::tags::{Proto, TagsIndex};
use shared::PROTOCOL_VERSION;

use crate::actions::{fetch_target, require_peer_dir, Got};
use crate::bar::Feedback;
use crate::catalog::{Catalog, Holder, Target};
use crate::command::Selectors;
use crate::download::Config;
use crate::download::DownloadError;
use crate::error::Error;
use crate::folder::{paths_got, FileResult};
use crate::format;
use crate::json::{self, Format};
use crate::send::{left, utc};
use crate::wording::{write_line, write_out};

fn io_error(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: format!("cannot read {what}"),
        source,
    }
}

/// The offers pending now (live, unanswered), numbered 1..n in this order.
///
/// # Errors
/// When `offers.txt` or `offers-answered.txt` exists but cannot be read.
pub fn pending(config: &Config) -> Result<Vec<Offer>, Error> {
    let inbox = offers::load_inbox(&config.dir).map_err(|e| io_error(offers::OFFERS_FILE, e))?;
    let answered =
        offers::load_answered(&config.dir).map_err(|e| io_error(offers::ANSWERED_FILE, e))?;
    Ok(offers::pending(&inbox, &answered, unix_now()))
}

/// What `offers --json` prints for each offer.
#[derive(Debug, Serialize)]
pub struct ListedOffer {
    /// Its number, for `accept N` / `decline N`.
    pub number: usize,
    /// Its id (also accepted by `accept` / `decline`).
    pub id: String,
    /// The sender's username.
    pub from: String,
    /// The sender's chunk server.
    pub address: String,
    /// The content's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// When the offer expires, Unix seconds (this peer's clock).
    pub expires_at: u64,
    /// Seconds left.
    pub expires_in: u64,
}

/// `downloader offers [--json]`: the pending offers, numbered.
///
/// # Errors
/// When the peer folder is missing, a file cannot be read, or `out` written.
pub fn list_offers(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let now = unix_now();
    let items: Vec<ListedOffer> = pending(config)?
        .into_iter()
        .enumerate()
        .map(|(i, o)| ListedOffer {
            number: i + 1,
            id: o.id.clone(),
            from: o.from.clone(),
            address: o.addr.to_string(),
            name: o.name.clone(),
            size: o.meta.size,
            sha256: o.meta.sha256.to_string(),
            expires_at: o.expires,
            expires_in: o.expires.saturating_sub(now),
        })
        .collect();
    if format == Format::Json {
        return json::write_json(out, &items);
    }
    if items.is_empty() {
        let note = if offers::own_username(&config.dir).is_none() {
            " (this peer has no username.txt, so its listener records none)"
        } else {
            ""
        };
        return write_line(out, &format!("No offers{note}."));
    }
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|o| {
            [
                o.number.to_string(),
                shared::text::terminal_safe(&o.from).into_owned(),
                o.address.clone(),
                shared::text::terminal_safe(&o.name).into_owned(),
                format::size(o.size),
                left(o.expires_in),
            ]
        })
        .collect();
    write_out(
        out,
        &format::table(
            ["#", "FROM", "ADDRESS", "NAME", "SIZE", "EXPIRES IN"],
            &rows,
            &[],
        ),
    )?;
    write_line(
        out,
        "accept N [N...] (or accept all) downloads them, decline N [N...] (or decline all) \
         refuses them.",
    )
}

/// The offer `which` names: its number among the pending ones, or its id (or the start of
/// it) among all the inbox holds, so that an expired one is told apart from a wrong number.
fn find(config: &Config, which: &str) -> Result<Offer, Error> {
    let which = which.trim();
    let now = unix_now();
    let pending = pending(config)?;
    if let Ok(n) = which.parse::<usize>() {
        return match n.checked_sub(1).and_then(|i| pending.get(i)) {
            Some(offer) => Ok(offer.clone()),
            None if pending.is_empty() => Err(Error::Invalid(format!(
                "there is no offer {n}: no offer is pending (expired ones cannot be accepted; \
                 see `downloader offers`)"
            ))),
            None => Err(Error::Invalid(format!(
                "there is no offer {n} (1 to {}; see `downloader offers`)",
                pending.len()
            ))),
        };
    }
    let inbox = offers::load_inbox(&config.dir).map_err(|e| io_error(offers::OFFERS_FILE, e))?;
    let answered =
        offers::load_answered(&config.dir).map_err(|e| io_error(offers::ANSWERED_FILE, e))?;
    let matching: Vec<&Offer> = inbox
        .offers
        .iter()
        .filter(|o| !which.is_empty() && o.id.starts_with(which))
        .collect();
    let offer = match matching[..] {
        [offer] => offer,
        [] => {
            return Err(Error::Invalid(format!(
                "no offer {which:?} (see `downloader offers`)"
            )))
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{which:?} is the start of several offers' ids; type more of it"
            )))
        }
    };
    if let Some(answer) = answered.answer(&offer.id) {
        let how = match answer {
            Answer::Accepted => "accepted",
            Answer::Declined => "declined",
        };
        return Err(Error::Invalid(format!(
            "the offer of {} from {} was {how} already",
            offer.name, offer.from
        )));
    }
    if !offer.is_live(now) {
        return Err(expired(offer));
    }
    Ok(offer.clone())
}

fn expired(offer: &Offer) -> Error {
    Error::Invalid(format!(
        "the offer of {} from {} expired at {}: it cannot be accepted; ask {} to send it again",
        offer.name,
        offer.from,
        utc(offer.expires),
        offer.from
    ))
}

/// What to download for `offer`: its content, from the sender's chunk server, and from every
/// holder `tags.txt` lists with the same name and digest.
fn target_of(config: &Config, offer: &Offer) -> Target {
    let mut holders = vec![Holder {
        user: offer.from.clone(),
        addr: offer.addr,
        proto: Proto::P2p(PROTOCOL_VERSION),
        chunks: ChunkSet::ALL,
        root: offer.meta.root,
        id: None,
        impostor: false,
    }];
    if let Ok(index) = TagsIndex::load(&config.dir.tags()) {
        let catalog = Catalog::from_index(&index, Utc::now());
        for t in catalog
            .targets
            .into_iter()
            .filter(|t| t.name == offer.name && t.sha256 == Some(offer.meta.sha256))
        {
            holders.extend(t.holders.into_iter().filter(|h| h.addr != offer.addr));
        }
    }
    Target {
        name: offer.name.clone(),
        sha256: Some(offer.meta.sha256),
        size: Some(offer.meta.size),
        holders,
    }
}

/// The offers `selectors` name, each once, checked all before any is answered: an unknown,
/// answered or expired one is an error, and nothing is done.
///
/// # Errors
/// As [`find`], and `all` when no offer is pending.
pub fn select(config: &Config, selectors: &Selectors) -> Result<Vec<Offer>, Error> {
    match selectors {
        Selectors::All => {
            let pending = pending(config)?;
            if pending.is_empty() {
                return Err(Error::Invalid(
                    "no offer is pending (expired ones cannot be accepted; see `downloader \
                     offers`)"
                        .into(),
                ));
            }
            Ok(pending)
        }
        Selectors::These(these) => {
            let mut offers: Vec<Offer> = Vec::new();
            for which in these {
                let offer = find(config, which)?;
                if !offers.iter().any(|o| o.id == offer.id) {
                    offers.push(offer);
                }
            }
            Ok(offers)
        }
    }
}

/// `downloader accept N|ID`: downloads the offered content into `downloads/` (same rules as
/// `get`), then records the offer as accepted. A failed download leaves the offer pending,
/// and what arrived in the store for the next attempt.
///
/// # Errors
/// An unknown, answered or expired offer; a failed download.
pub fn accept(
    config: &Config,
    which: &str,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Got, Error> {
    require_peer_dir(config)?;
    let offer = find(config, which)?;
    accept_offer(config, &offer, cancel, feedback, ui)
}

/// One offer of `accept N N…|all`, and how its acceptance went.
pub type Accepted = (Offer, Result<Got, Error>);

/// `downloader accept N N…|all`: accepts each offer `selectors` name, one after the other
/// (a nested name lands at `downloads/photos/2024/a.jpg`); one that fails does not stop the
/// others, and stays pending. Returns each offer's outcome, in order; stops at a cancel.
///
/// # Errors
/// When a selector names no pending offer (then nothing is accepted).
pub fn accept_many(
    config: &Config,
    selectors: &Selectors,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Vec<Accepted>, Error> {
    require_peer_dir(config)?;
    let mut outcomes = Vec::new();
    for offer in select(config, selectors)? {
        let result = accept_offer(config, &offer, cancel, feedback, ui);
        let cancelled = matches!(&result, Err(e) if e.is_cancelled());
        outcomes.push((offer, result));
        if cancelled {
            break;
        }
    }
    Ok(outcomes)
}

fn accept_offer(
    config: &Config,
    offer: &Offer,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Got, Error> {
    let target = target_of(config, offer);
    let mut starting = vec![format!(
        "Accepting {} ({}) offered by {}",
        offer.name,
        format::size(offer.meta.size),
        offer.from
    )];
    starting.extend(crate::wording::starting(&target, 1));
    let got = fetch_target(config, &target, &starting, cancel, feedback, ui)?;
    offers::record_answer(&config.dir, offer, Answer::Accepted, unix_now())
        .map_err(|e| io_error(offers::ANSWERED_FILE, e))?;
    log::info!(
        "accepted the offer {} of {} from {}: {}",
        offer.id,
        offer.name,
        offer.from,
        got.file.path.display()
    );
    Ok(got)
}

/// What `downloader accept N N…|all` prints on stdout once done: the path of each file
/// downloaded, one per line, or with [`Format::Json`] one array of `get --json` result
/// objects, one per offer; then its outcome, for the exit status.
///
/// # Errors
/// When `out` cannot be written; [`DownloadError::Cancelled`] when a download was cancelled;
/// [`Error::Invalid`] saying how many offers were not accepted when any failed.
pub fn print_accepted(
    outcomes: &[Accepted],
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        Format::Text => write_out(out, &paths_got(outcomes.iter().map(|(_, r)| r)))?,
        Format::Json => {
            let results: Vec<FileResult> = outcomes
                .iter()
                .map(|(offer, result)| FileResult::of(&offer.name, result))
                .collect();
            json::write_json(out, &results)?;
        }
    }
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    if outcomes
        .iter()
        .any(|(_, r)| matches!(r, Err(e) if e.is_cancelled()))
    {
        return Err(DownloadError::Cancelled.into());
    }
    if failed > 0 {
        return Err(Error::Invalid(format!(
            "{failed} of {} offers could not be accepted; they stay pending",
            outcomes.len()
        )));
    }
    Ok(())
}

/// `downloader decline N…|all`: records the offers `selectors` name as declined; they are
/// never shown again.
///
/// # Errors
/// An unknown or answered offer (then none is declined); the file cannot be written.
pub fn decline(config: &Config, selectors: &Selectors, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let offers = select(config, selectors)?;
    for offer in &offers {
        offers::record_answer(&config.dir, offer, Answer::Declined, unix_now())
            .map_err(|e| io_error(offers::ANSWERED_FILE, e))?;
    }
    match &offers[..] {
        [offer] => write_line(
            out,
            &format!(
                "Declined {} from {}.",
                shared::text::terminal_safe(&offer.name),
                shared::text::terminal_safe(&offer.from)
            ),
        ),
        many => write_line(out, &format!("Declined {} offers.", many.len())),
    }
}

/// Accepts every pending offer from a user of `DIR/accept-from.txt`; the others stay pending.
/// Returns what was downloaded; failures are logged and retried at the next call.
///
/// # Errors
/// When a download was cancelled.
pub fn accept_allowed(
    config: &Config,
    retries: &mut Retries,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Vec<(Offer, Got)>, Error> {
    let allowed = match offers::load_accept_from(&config.dir) {
        Ok(allowed) if allowed.is_empty() => return Ok(Vec::new()),
        Ok(allowed) => allowed,
        Err(e) => {
            log::warn!("cannot read {}: {e}", offers::ACCEPT_FROM_FILE);
            return Ok(Vec::new());
        }
    };
    let pending = match pending(config) {
        Ok(pending) => pending,
        Err(e) => {
            log::warn!("{e}");
            return Ok(Vec::new());
        }
    };
    let mut accepted = Vec::new();
    let now = Instant::now();
    let due: Vec<Offer> = pending
        .into_iter()
        .filter(|o| offers::is_allowed(&allowed, &o.from) && retries.is_due(&o.id, now))
        .collect();
    for offer in due {
        match accept_offer(config, &offer, cancel, feedback, ui) {
            Ok(got) => {
                retries.forget(&offer.id);
                accepted.push((offer, got));
            }
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => {
                let gap = retries.failed(&offer.id, Instant::now());
                log::warn!(
                    "cannot accept {} from {} (trying again in {} s): {e}",
                    offer.name,
                    offer.from,
                    gap.as_secs()
                );
            }
        }
    }
    Ok(accepted)
}

/// When each offer whose unasked acceptance failed may be tried again: after 5 s, then twice
/// as long after each failure, up to 5 min. A sender that is offline for hours costs a
/// warning every few minutes, not one per pass, and is still picked up soon after it returns.
#[derive(Debug, Default)]
pub struct Retries(HashMap<String, (Instant, Duration)>);

impl Retries {
    const FIRST: Duration = Duration::from_secs(5);
    const MOST: Duration = Duration::from_secs(300);

    /// Whether offer `id` may be tried at `now`.
    pub fn is_due(&self, id: &str, now: Instant) -> bool {
        self.0.get(id).is_none_or(|(next, _)| now >= *next)
    }

    /// Records a failure of offer `id` at `now`; returns the wait before the next try.
    pub fn failed(&mut self, id: &str, now: Instant) -> Duration {
        let gap = self
            .0
            .get(id)
            .map_or(Self::FIRST, |(_, gap)| (*gap * 2).min(Self::MOST));
        self.0.insert(id.to_owned(), (now + gap, gap));
        gap
    }

    /// Forgets offer `id` (accepted).
    pub fn forget(&mut self, id: &str) {
        self.0.remove(id);
    }
}

/// The line that tells the user of a new offer: `bob offers report.pdf (2.1 MB): accept 3 /
/// decline 3`.
pub fn notice(number: usize, offer: &Offer) -> String {
    format!(
        "{} offers {} ({}): accept {number} / decline {number}",
        shared::text::terminal_safe(&offer.from),
        shared::text::terminal_safe(&offer.name),
        format::size(offer.meta.size)
    )
}

/// How many new offers are told one per line before the rest are counted.
const SHOWN_NOTICES: usize = 5;

/// The ids of offers already told about, so each is told once ([`NewOffers::take`]).
#[derive(Debug, Default)]
pub struct NewOffers(std::collections::HashSet<String>);

impl NewOffers {
    /// The notices of the pending offers not told about before.
    pub fn take(&mut self, config: &Config) -> Vec<String> {
        let Ok(pending) = pending(config) else {
            return Vec::new();
        };
        let mut notices: Vec<String> = pending
            .iter()
            .enumerate()
            .filter(|(_, o)| self.0.insert(o.id.clone()))
            .map(|(i, o)| notice(i + 1, o))
            .collect();
        // A folder sent whole is an offer per file: a few lines, then how many more.
        if notices.len() > SHOWN_NOTICES {
            let more = notices.len() - SHOWN_NOTICES + 1;
            notices.truncate(SHOWN_NOTICES - 1);
            notices.push(format!(
                "and {more} more offers: `offers` lists them, `accept all` takes every one"
            ));
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::digest::Digest;
    use shared::peer_dir::PeerDir;
    use shared::protocol::ContentMeta;

    fn config(dir: &std::path::Path) -> Config {
        Config {
            dir: PeerDir::new(dir),
            ..Config::default()
        }
    }

    fn offer(id: &str, expires: u64) -> Offer {
        Offer {
            id: id.into(),
            from: "bob".into(),
            addr: "127.0.0.2:6001".parse().unwrap(),
            expires,
            name: format!("{id}.pdf"),
            meta: ContentMeta {
                size: 2_100_000,
                sha256: Digest::of(id.as_bytes()),
                root: None,
            },
        }
    }

    fn inbox(dir: &std::path::Path, offers_: &[Offer]) {
        let mut inbox = offers::Inbox::default();
        for o in offers_ {
            inbox.record(o.clone(), 0, |_| false);
        }
        offers::save_inbox(&PeerDir::new(dir), &inbox).unwrap();
    }

    #[test]
    fn numbers_ids_expiry_and_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let now = unix_now();
        inbox(
            tmp.path(),
            &[
                offer("aaaa1", now + 100),
                offer("gone", now - 5),
                offer("bbbb2", now + 100),
            ],
        );
        let listed: Vec<String> = pending(&c).unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(listed, ["aaaa1", "bbbb2"]);
        assert_eq!(find(&c, "2").unwrap().id, "bbbb2");
        assert_eq!(find(&c, "aaa").unwrap().id, "aaaa1");
        let e = find(&c, "3").unwrap_err().to_string();
        assert!(e.contains("no offer 3 (1 to 2"), "{e}");
        let e = find(&c, "gone").unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        let mut out = Vec::new();
        decline(&c, &Selectors::These(vec!["1".into()]), &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Declined aaaa1.pdf from bob"));
        let e = find(&c, "aaaa1").unwrap_err().to_string();
        assert!(e.contains("declined already"), "{e}");
        let listed: Vec<String> = pending(&c).unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(listed, ["bbbb2"]);
        // The notices tell each pending offer once.
        let mut told = NewOffers::default();
        assert_eq!(
            told.take(&c),
            ["bob offers bbbb2.pdf (2.0 MiB): accept 1 / decline 1"]
        );
        assert!(told.take(&c).is_empty());
    }

    #[test]
    fn several_offers_or_all_are_declined_at_once_and_a_wrong_one_declines_none() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let now = unix_now();
        let ids = ["aaaa1", "bbbb2", "cccc3", "dddd4"];
        let held: Vec<Offer> = ids.iter().map(|id| offer(id, now + 100)).collect();
        inbox(tmp.path(), &held);
        let these = |w: &[&str]| Selectors::These(w.iter().map(|w| (*w).to_owned()).collect());
        let picked: Vec<String> = select(&c, &these(&["3", "1", "cccc", "3"]))
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(picked, ["cccc3", "aaaa1"], "in order, each once");
        let mut out = Vec::new();
        let e = decline(&c, &these(&["1", "9"]), &mut out).unwrap_err();
        assert!(e.to_string().contains("no offer 9"), "{e}");
        assert_eq!(pending(&c).unwrap().len(), 4, "none declined");
        decline(&c, &these(&["1", "3"]), &mut out).unwrap();
        let left: Vec<String> = pending(&c).unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(left, ["bbbb2", "dddd4"]);
        decline(&c, &Selectors::All, &mut out).unwrap();
        assert!(pending(&c).unwrap().is_empty());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Declined 2 offers."), "{text}");
        let e = select(&c, &Selectors::All).unwrap_err();
        assert!(e.to_string().contains("no offer is pending"), "{e}");
    }

    #[test]
    fn a_failed_unasked_acceptance_waits_longer_each_time_up_to_five_minutes() {
        let mut retries = Retries::default();
        let t0 = Instant::now();
        assert!(retries.is_due("a", t0));
        assert_eq!(retries.failed("a", t0), Duration::from_secs(5));
        assert!(!retries.is_due("a", t0 + Duration::from_secs(4)));
        assert!(retries.is_due("a", t0 + Duration::from_secs(5)));
        assert!(retries.is_due("b", t0), "each offer on its own");
        let gaps: Vec<u64> = (0..8).map(|_| retries.failed("a", t0).as_secs()).collect();
        assert_eq!(gaps, [10, 20, 40, 80, 160, 300, 300, 300]);
        retries.forget("a");
        assert!(retries.is_due("a", t0));
    }

    #[test]
    fn the_sender_is_a_holder_of_the_offered_content() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let o = offer("x", unix_now() + 10);
        let t = target_of(&c, &o);
        assert_eq!(t.name, "x.pdf");
        assert_eq!(t.sha256, Some(o.meta.sha256));
        assert_eq!(t.holders.len(), 1);
        assert_eq!(t.holders[0].addr, o.addr);
        assert_eq!(t.holders[0].chunks, ChunkSet::ALL);
    }
}
