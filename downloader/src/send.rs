//! `downloader send PATH --to USER`, `sends` and `unsend ID|all`: offering a file, or every
//! file of a folder's tree (one offer each, named `photos/2024/a.jpg`), to one user (seed
//! 002's upload, LocalSend's send), the sender's side. They edit the outbox
//! `DIR/sends.txt` ([`shared::sends`]): the chunk server hashes the file and serves it in place
//! but unlisted (never announced), and the announcer sends the offer to the whole LAN, where
//! only the listener of the user named records it. Nothing is written on the receiving peer
//! until its user accepts (`downloader accept`, [`crate::offers`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use shared::chunk::validate_content_name;
use shared::instance::ServerRecord;
use shared::protocol::MAX_OFFER_SECS;
use shared::sends::{self, unix_now, Send, DEFAULT_OFFER_LIFETIME, MAX_FILES_PER_SEND};
use shared::store::{ChunkStore, Origin};
use shared::tree::list_tree;

use crate::actions::require_peer_dir;
use crate::download::Config;
use crate::error::Error;
use crate::format;
use crate::json::{self, Format};
use crate::wording::{write_line, write_out};

/// `90`, `90s`, `10m`, `2h`, `7d`: a positive duration of at most seven days.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{text:?}: unknown unit (use s, m, h or d)")),
    };
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a duration (like 90s, 10m, 2h, 7d)"))?;
    if secs == 0 {
        return Err("an offer must last at least one second".into());
    }
    if secs > MAX_OFFER_SECS {
        return Err(format!(
            "{text:?} is longer than the 7 days an offer may last"
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// `2026-11-24 22:31:05 UTC`.
pub(crate) fn utc(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || unix.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// `59m 59s`, `2h 5m`, `3d 1h`: a time left, for people.
pub(crate) fn left(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// One file to offer: the content name it is offered under, its path (resolved), its size.
#[derive(Debug)]
struct Sendable {
    name: String,
    path: PathBuf,
    size: u64,
}

/// What `downloader send PATH` offers: the file, or every file of the folder's tree.
#[derive(Debug)]
struct Sending {
    files: Vec<Sendable>,
    /// The folder sent whole (its name), if it is one.
    folder: Option<String>,
    /// What the tree walk skipped: each entry, and whether the user should hear of it.
    skipped: Vec<(String, bool)>,
}

/// The file or folder `path` resolved: a regular file whose name can be a content name, or a
/// folder whose tree holds at least one file and at most [`MAX_FILES_PER_SEND`], each named
/// by its path from the folder on (`photos/2024/a.jpg`), by the rules a shared folder follows
/// ([`shared::tree`]: hidden entries, links and empty folders are not content).
fn resolve_sendable(path: &Path) -> Result<Sending, Error> {
    let fail = |why: String| Error::Invalid(format!("cannot send {}: {why}", path.display()));
    let resolved = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::metadata(&resolved).map_err(|e| fail(e.to_string()))?;
    let own_name = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    validate_content_name(&own_name)
        .map_err(|e| fail(format!("its name cannot be a content name: {e}")))?;
    if meta.is_dir() {
        return resolve_folder(&resolved, own_name, fail);
    }
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    shared::shares::check_listable(&resolved).map_err(fail)?;
    std::fs::File::open(&resolved).map_err(|e| fail(format!("cannot be read: {e}")))?;
    Ok(Sending {
        files: vec![Sendable {
            name: own_name,
            path: resolved,
            size: meta.len(),
        }],
        folder: None,
        skipped: Vec::new(),
    })
}

/// The files of the folder `folder` (resolved), named after `own_name`.
fn resolve_folder(
    folder: &Path,
    own_name: String,
    fail: impl Fn(String) -> Error,
) -> Result<Sending, Error> {
    let listing = list_tree(folder, Some(&own_name))
        .map_err(|e| fail(format!("cannot list the folder: {e}")))?;
    let mut skipped: Vec<(String, bool)> = listing
        .skipped
        .iter()
        .map(|s| (s.to_string(), s.is_warning()))
        .collect();
    let mut files = Vec::new();
    for file in listing.files {
        // sends.txt holds the path as a line's text.
        if let Err(why) = shared::shares::check_listable(&file.path) {
            skipped.push((format!("not sending {}: {why}", file.path.display()), true));
            continue;
        }
        files.push(Sendable {
            name: file.name,
            size: file.meta.len(),
            path: file.path,
        });
    }
    if files.is_empty() {
        return Err(fail(format!(
            "the folder holds no file to send ({} entr{} skipped: hidden files, links to \
             folders or outside it, and empty folders are not sent)",
            skipped.len(),
            if skipped.len() == 1 { "y" } else { "ies" }
        )));
    }
    if files.len() > MAX_FILES_PER_SEND {
        return Err(fail(format!(
            "the folder holds {} files, more than the {MAX_FILES_PER_SEND} one send may offer \
             (a receiver keeps at most that many offers from one peer); send its subfolders \
             one by one, or share it (downloader share)",
            files.len()
        )));
    }
    Ok(Sending {
        files,
        folder: Some(own_name),
        skipped,
    })
}

/// Where the store of `config` serves another file than `path` under `name`, if it does.
fn clash_in_store(
    store: Option<&ChunkStore>,
    config: &Config,
    name: &str,
    path: &Path,
) -> Option<String> {
    let stored = store?.load_manifest(name).ok()??;
    let other = match &stored.origin {
        Origin::Shared { path: p, .. } | Origin::Offered { path: p, .. } => p.clone(),
        Origin::Downloaded { file: Some(f), .. } => f.path.clone(),
        Origin::Downloaded { file: None, .. } | Origin::Downloading => {
            config.dir.downloads().join(name)
        }
    };
    (other != path).then(|| other.display().to_string())
}

/// How many lines of a list of problems are printed before "and N more".
const SHOWN_PROBLEMS: usize = 10;

/// An I/O error met while editing `outbox`, said as such.
fn in_outbox(e: Error, outbox: &Path) -> Error {
    match e {
        Error::Io { source, .. } => Error::Io {
            context: format!("cannot update {}", outbox.display()),
            source,
        },
        other => other,
    }
}

/// `downloader send PATH --to USER [--expires DURATION]`: offers the file at `path` to `to`,
/// or every file of the folder at `path` (each its own offer, named by its path from the
/// folder on), until `lifetime` from now (default one hour); prints what was offered, to
/// whom, until when, and what of a folder was skipped.
///
/// # Errors
/// Anything but a readable regular file or a folder holding 1 to [`MAX_FILES_PER_SEND`]
/// files; a username we would not announce; a name under which this peer already serves, or
/// offers, another file (then nothing is offered); a lifetime over seven days; the outbox
/// cannot be written.
pub fn send(
    config: &Config,
    path: &Path,
    to: &str,
    lifetime: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    require_peer_dir(config)?;
    let to = to.trim();
    shared::username::validate(to)
        .map_err(|e| Error::Invalid(format!("cannot send to {to:?}: {e}")))?;
    let lifetime = lifetime.unwrap_or(DEFAULT_OFFER_LIFETIME);
    if lifetime.as_secs() == 0 || lifetime.as_secs() > MAX_OFFER_SECS {
        return Err(Error::Invalid(
            "an offer lasts from one second to 7 days (--expires)".into(),
        ));
    }
    let sending = resolve_sendable(path)?;
    let what = match &sending.folder {
        Some(_) => format!("{} (a folder)", path.display()),
        None => sending.files[0].path.display().to_string(),
    };
    let store = ChunkStore::open(config.dir.temp()).ok();
    let clashes: Vec<String> = sending
        .files
        .iter()
        .filter_map(|f| {
            clash_in_store(store.as_ref(), config, &f.name, &f.path)
                .map(|other| format!("{:?} is already served for {other}", f.name))
        })
        .collect();
    if !clashes.is_empty() {
        return Err(Error::Invalid(format!(
            "cannot send {what}: this peer already serves another file under {} of its \
             name(s): {}; rename the file to send it",
            clashes.len(),
            summary(&clashes)
        )));
    }
    let now = unix_now();
    let expires = now + lifetime.as_secs();
    let offered: Vec<Send> = sending
        .files
        .iter()
        .map(|f| Send {
            id: sends::new_offer_id(),
            to: to.to_owned(),
            expires,
            name: f.name.clone(),
            path: f.path.clone(),
        })
        .collect();
    let outbox = sends::path_in(&config.dir);
    sends::update(&config.dir, now, |all: &mut Vec<Send>| {
        let on_offer: std::collections::HashMap<&str, &Send> =
            all.iter().map(|s| (s.name.as_str(), s)).collect();
        let clashes: Vec<String> = offered
            .iter()
            .filter_map(|new| {
                let other = on_offer.get(new.name.as_str())?;
                (other.path != new.path).then(|| {
                    format!(
                        "{:?} is on offer for {} (downloader unsend {})",
                        new.name,
                        other.path.display(),
                        &other.id[..8]
                    )
                })
            })
            .collect();
        if !clashes.is_empty() {
            return Err(Error::Invalid(format!(
                "cannot send {what}: another file is on offer already under {} of its \
                 name(s): {}; cancel it first",
                clashes.len(),
                summary(&clashes)
            )));
        }
        all.extend(offered.iter().cloned());
        Ok(())
    })
    .map_err(|e| in_outbox(e, &outbox))?;
    let total: u64 = sending.files.iter().map(|f| f.size).sum();
    match &sending.folder {
        None => {
            let send = &offered[0];
            write_line(
                out,
                &format!(
                    "Offered {} ({}) to {to} until {} (offer {}). Nothing reaches {to} unless \
                     they accept; `downloader sends` shows it, `downloader unsend {}` cancels it.",
                    shared::text::terminal_safe(&send.name),
                    format::size(total),
                    utc(send.expires),
                    send.id,
                    &send.id[..8],
                ),
            )?;
        }
        Some(folder) => {
            write_line(
                out,
                &format!(
                    "Offered {}/ to {to} until {}: {} file(s), {}, one offer each (named \
                     {}/...). Nothing reaches {to} unless they accept (`accept all`); \
                     `downloader sends` shows them, `downloader unsend ID` cancels one, \
                     `downloader unsend all` every offer.",
                    shared::text::terminal_safe(folder),
                    utc(expires),
                    offered.len(),
                    format::size(total),
                    shared::text::terminal_safe(folder),
                ),
            )?;
            if !sending.skipped.is_empty() {
                let warnings: Vec<String> = sending
                    .skipped
                    .iter()
                    .filter(|(_, warn)| *warn)
                    .map(|(what, _)| shared::text::terminal_safe(what).into_owned())
                    .collect();
                let quiet = sending.skipped.len() - warnings.len();
                let mut text = format!(
                    "Skipped {} entr{} of the folder",
                    sending.skipped.len(),
                    if sending.skipped.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                );
                if quiet > 0 {
                    text.push_str(&format!(
                        " ({quiet} hidden or not regular file(s): never sent)"
                    ));
                }
                text.push('.');
                for line in warnings.iter().take(SHOWN_PROBLEMS) {
                    text.push_str(&format!("\n  {line}"));
                }
                if warnings.len() > SHOWN_PROBLEMS {
                    text.push_str(&format!("\n  and {} more", warnings.len() - SHOWN_PROBLEMS));
                }
                write_line(out, &text)?;
            }
        }
    }
    if !matches!(ServerRecord::read_live(&config.dir), Ok(Some(_))) {
        write_line(
            out,
            &format!(
                "Note: no chunk server runs for {}: the offer is made once one starts (with \
                 an announcer).",
                config.dir.root().display()
            ),
        )?;
    }
    Ok(())
}

/// The first [`SHOWN_PROBLEMS`] of `problems`, then how many more.
fn summary(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(|p| shared::text::terminal_safe(p).into_owned())
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        text.push_str(&format!(" and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    text
}

/// What `sends --json` prints for each offer.
#[derive(Debug, Serialize)]
pub struct ListedSend {
    /// The offer's id.
    pub id: String,
    /// The recipient.
    pub to: String,
    /// The content name.
    pub name: String,
    /// The file.
    pub path: String,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
    /// Seconds left (0: expired).
    pub expires_in: u64,
    /// `offered` (hashed and being offered), `waiting` (the chunk server has not hashed it
    /// yet, or runs not), `expired`.
    pub state: &'static str,
}

/// `downloader sends [--json]`: the outgoing offers, and their state.
///
/// # Errors
/// When the outbox cannot be read or `out` written.
pub fn list_sends(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let all = sends::load(&config.dir).map_err(|source| Error::Io {
        context: format!("cannot read {}", sends::path_in(&config.dir).display()),
        source,
    })?;
    let offered = ChunkStore::open(config.dir.temp())
        .ok()
        .and_then(|s| s.snapshot().ok())
        .map(|snap| snap.offered)
        .unwrap_or_default();
    let now = unix_now();
    let items: Vec<ListedSend> = all
        .iter()
        .map(|s| {
            let name = s.name.clone();
            let state = if !s.is_live(now) {
                "expired"
            } else if offered.contains_key(&name) {
                "offered"
            } else {
                "waiting"
            };
            ListedSend {
                id: s.id.clone(),
                to: s.to.clone(),
                name,
                path: s.path.display().to_string(),
                expires_at: s.expires,
                expires_in: s.left(now),
                state,
            }
        })
        .collect();
    if format == Format::Json {
        return json::write_json(out, &items);
    }
    if items.is_empty() {
        return write_line(out, "No offers sent (downloader send PATH --to USER).");
    }
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|s| {
            [
                s.id[..s.id.len().min(8)].to_owned(),
                shared::text::terminal_safe(&s.to).into_owned(),
                shared::text::terminal_safe(&s.name).into_owned(),
                match s.state {
                    "expired" => "expired".to_owned(),
                    _ => left(s.expires_in),
                },
                s.state.to_owned(),
            ]
        })
        .collect();
    write_out(
        out,
        &format::table(["ID", "TO", "NAME", "EXPIRES IN", "STATE"], &rows, &[]),
    )
}

/// `downloader unsend ID|all`: cancels an offer (its id, or the start of it), or every offer
/// with `all`: the chunk server stops serving the file (unless it is also shared) and the
/// announcer stops offering it.
///
/// # Errors
/// When no offer, or several, match `id`, or the outbox cannot be written.
pub fn unsend(config: &Config, id: &str, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let id = id.trim();
    let outbox = sends::path_in(&config.dir);
    let removed = sends::update(&config.dir, unix_now(), |all: &mut Vec<Send>| {
        // An id is hex: `all` can be none's start.
        if id.eq_ignore_ascii_case("all") {
            return Ok(std::mem::take(all));
        }
        let matching: Vec<usize> = (0..all.len())
            .filter(|&i| !id.is_empty() && all[i].id.starts_with(id))
            .collect();
        match matching[..] {
            [i] => Ok(vec![all.remove(i)]),
            [] => Err(Error::Invalid(format!(
                "no offer {id:?} (see `downloader sends`; expired ones are gone already)"
            ))),
            _ => Err(Error::Invalid(format!(
                "{id:?} is the start of several offers' ids; type more of it"
            ))),
        }
    })
    .map_err(|e| in_outbox(e, &outbox))?;
    match &removed[..] {
        [] => write_line(out, "No offer to cancel."),
        [one] => write_line(
            out,
            &format!(
                "Cancelled the offer of {} to {}.",
                shared::text::terminal_safe(&one.name),
                one.to
            ),
        ),
        many => write_line(out, &format!("Cancelled {} offers.", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_units_and_stay_within_a_week() {
        assert_eq!(parse_lifetime("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_lifetime(" 2H "), Ok(Duration::from_secs(7200)));
        assert_eq!(
            parse_lifetime("7d"),
            Ok(Duration::from_secs(MAX_OFFER_SECS))
        );
        for bad in ["0", "8d", "x", "5w", "", "-1m", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_left_read_naturally() {
        assert_eq!(left(5), "5s");
        assert_eq!(left(3599), "59m 59s");
        assert_eq!(left(7500), "2h 5m");
        assert_eq!(left(90_000), "1d 1h");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
