//! `downloader send PATH --to USER`, `sends` and `unsend ID`: offering a file to one user
//! (seed 002's upload, LocalSend's send), the sender's side. They edit the outbox
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
use shared::sends::{self, unix_now, Send, DEFAULT_OFFER_LIFETIME};
use shared::store::{ChunkStore, Origin};

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

/// The file `path` resolved, checked to be a regular file whose name can be a content name.
fn resolve_sendable(path: &Path) -> Result<(PathBuf, String, u64), Error> {
    let fail = |why: String| Error::Invalid(format!("cannot send {}: {why}", path.display()));
    let resolved = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::metadata(&resolved).map_err(|e| fail(e.to_string()))?;
    if meta.is_dir() {
        return Err(fail(
            "it is a folder; send its files one by one (or share it: downloader share)".into(),
        ));
    }
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    shared::shares::check_listable(&resolved).map_err(fail)?;
    let name = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    validate_content_name(&name)
        .map_err(|e| fail(format!("its name cannot be a content name: {e}")))?;
    std::fs::File::open(&resolved).map_err(|e| fail(format!("cannot be read: {e}")))?;
    Ok((resolved, name, meta.len()))
}

/// Where the store of `config` serves another file than `path` under `name`, if it does.
fn clash_in_store(config: &Config, name: &str, path: &Path) -> Option<String> {
    let store = ChunkStore::open(config.dir.temp()).ok()?;
    let stored = store.load_manifest(name).ok()??;
    let other = match &stored.origin {
        Origin::Shared { path: p, .. } | Origin::Offered { path: p, .. } => p.clone(),
        Origin::Downloaded { file: Some(f), .. } => f.path.clone(),
        Origin::Downloaded { file: None, .. } | Origin::Downloading => {
            config.dir.downloads().join(name)
        }
    };
    (other != path).then(|| other.display().to_string())
}

/// `downloader send PATH --to USER [--expires DURATION]`: offers the file at `path` to `to`
/// until `lifetime` from now (default one hour); prints what was offered, to whom, until when.
///
/// # Errors
/// A folder or anything but a readable regular file; a username we would not announce; a
/// name under which this peer already serves another file; a lifetime over seven days; the
/// outbox cannot be written.
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
    let (path, name, size) = resolve_sendable(path)?;
    if let Some(other) = clash_in_store(config, &name, &path) {
        return Err(Error::Invalid(format!(
            "cannot send {}: this peer already serves another file named {name:?} ({other}); \
             rename the file to send it",
            path.display()
        )));
    }
    let now = unix_now();
    let send = Send {
        id: sends::new_offer_id(),
        to: to.to_owned(),
        expires: now + lifetime.as_secs(),
        path: path.clone(),
    };
    let outbox = sends::path_in(&config.dir);
    sends::update(&config.dir, now, |all: &mut Vec<Send>| {
        if let Some(other) = all
            .iter()
            .find(|s| s.name() == Some(name.as_str()) && s.path != path)
        {
            return Err(Error::Invalid(format!(
                "cannot send {}: another file named {name:?} ({}) is on offer already; \
                 cancel it first (downloader unsend {})",
                path.display(),
                other.path.display(),
                other.id
            )));
        }
        all.push(send.clone());
        Ok(())
    })
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::Io {
            context: format!("cannot update {}", outbox.display()),
            source,
        },
        other => other,
    })?;
    write_line(
        out,
        &format!(
            "Offered {name} ({}) to {to} until {} (offer {}). Nothing reaches {to} unless \
             they accept; `downloader sends` shows it, `downloader unsend {}` cancels it.",
            format::size(size),
            utc(send.expires),
            send.id,
            &send.id[..8],
        ),
    )?;
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
            let name = s.name().unwrap_or("?").to_owned();
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

/// `downloader unsend ID`: cancels an offer (its id, or the start of it): the chunk server
/// stops serving the file (unless it is also shared) and the announcer stops offering it.
///
/// # Errors
/// When no offer, or several, match `id`, or the outbox cannot be written.
pub fn unsend(config: &Config, id: &str, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let id = id.trim();
    let outbox = sends::path_in(&config.dir);
    let removed = sends::update(&config.dir, unix_now(), |all: &mut Vec<Send>| {
        let matching: Vec<usize> = (0..all.len())
            .filter(|&i| !id.is_empty() && all[i].id.starts_with(id))
            .collect();
        match matching[..] {
            [i] => Ok(all.remove(i)),
            [] => Err(Error::Invalid(format!(
                "no offer {id:?} (see `downloader sends`; expired ones are gone already)"
            ))),
            _ => Err(Error::Invalid(format!(
                "{id:?} is the start of several offers' ids; type more of it"
            ))),
        }
    })
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::Io {
            context: format!("cannot update {}", outbox.display()),
            source,
        },
        other => other,
    })?;
    write_line(
        out,
        &format!(
            "Cancelled the offer of {} to {}.",
            removed.name().unwrap_or("?"),
            removed.to
        ),
    )
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
