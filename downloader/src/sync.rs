//! Keeping subscribed contents up to date ([`crate::subscriptions`]): `downloader sync` runs
//! [`run`] until stopped, and the interactive prompt runs the same passes in the background
//! while it is open, unless a `downloader sync` runs for the folder.
//!
//! An update is an ordinary verified download of the new version (into `downloads/<name> (1)`
//! when the old one is in the way), then put in place atomically: the old file is first
//! hard-linked into `downloads/.previous/`, then the new one renamed over it, so that
//! `downloads/<name>` always holds one whole version, the old or the new. The `update` event in
//! `client.log` ([`UpdateEvent`]) is what `history` shows.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shared::digest::Digest;
use shared::events::UpdateEvent;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Origin, PlacedFile};

use crate::actions::{get, load_catalog};
use crate::bar::Feedback;
use crate::command::Selection;
use crate::download::Config;
use crate::error::Error;
use crate::subscriptions::{self, previous_path, Subscription};

/// How often `tags.txt` and `subscriptions.txt` are looked at for a change.
pub const SYNC_POLL: Duration = Duration::from_millis(250);

/// A pass runs at least this often even when neither file changed (a holder's entry expires,
/// a failed update is retried).
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// A subscribed content's file, replaced by a newer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The content.
    pub name: String,
    /// Its new version.
    pub version: Digest,
    /// Where it is: `downloads/<name>`.
    pub path: PathBuf,
    /// Where the version it replaced is kept, when there was one.
    pub kept: Option<PathBuf>,
}

impl Updated {
    /// The line the user reads.
    pub fn describe(&self) -> String {
        let hex = self.version.to_string();
        match &self.kept {
            Some(kept) => format!(
                "Updated {} to version {} (the previous one is kept as {})",
                self.path.display(),
                &hex[..16],
                kept.display()
            ),
            None => format!("Fetched {} (version {})", self.path.display(), &hex[..16]),
        }
    }
}

/// One pass: every subscription with a version due ([`Subscription::due`]) is downloaded and
/// put in place. Failures are logged and left for the next pass.
///
/// # Errors
/// When the subscriptions cannot be read, or a download was cancelled.
pub fn sync_once(
    config: &Config,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Vec<Updated>, Error> {
    let followed = subscriptions::load(&config.dir).map_err(|source| Error::Io {
        context: format!("cannot read {}", subscriptions::path(&config.dir).display()),
        source,
    })?;
    if followed.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = match load_catalog(config) {
        Ok(catalog) => catalog,
        Err(e) => {
            log::debug!("sync: {e}");
            return Ok(Vec::new());
        }
    };
    let mut updated = Vec::new();
    for subscription in &followed {
        let Some(target) = subscription.due(&catalog) else {
            continue;
        };
        let Some(version) = target.sha256 else {
            continue;
        };
        let hex = version.to_string();
        release_old_version(config, subscription, version);
        let selection = Selection::Name(subscription.name.clone());
        match get(config, &selection, Some(&hex), cancel, feedback, ui) {
            Ok(got) => match put_in_place(config, subscription, version, &got.file.path) {
                Ok(update) => updated.push(update),
                Err(e) => log::warn!("cannot update {}: {e}", subscription.name),
            },
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => log::warn!(
                "cannot fetch the new version of {} (will retry): {e}",
                subscription.name
            ),
        }
    }
    Ok(updated)
}

/// Lets the store take the new version: the chunk store holds one content per name, and a
/// verified download it serves from `downloads/` would otherwise keep the new version out of
/// it (downloaded aside, never served onward). Only a content this peer downloaded is let go;
/// one it shares stays as it is.
fn release_old_version(config: &Config, subscription: &Subscription, version: Digest) {
    let Ok(store) = ChunkStore::open(config.dir.temp()) else {
        return;
    };
    if let Ok(Some(stored)) = store.load_manifest(&subscription.name) {
        let downloaded = matches!(stored.origin, Origin::Downloaded { .. });
        if downloaded && stored.manifest.sha256 != version {
            if let Err(e) = store.remove_content(&subscription.name) {
                log::warn!(
                    "cannot make room for the new version of {}: {e}",
                    subscription.name
                );
            }
        }
    }
}

/// After the new version's file moved from `from` to `to`: the store serves it from there.
fn relocate_in_store(config: &Config, name: &str, from: &Path, to: &Path) -> io::Result<()> {
    let store = ChunkStore::open(config.dir.temp()).map_err(io::Error::other)?;
    let Ok(Some(mut stored)) = store.load_manifest(name) else {
        return Ok(());
    };
    if let Origin::Downloaded {
        file: Some(placed), ..
    } = &mut stored.origin
    {
        if placed.path == std::path::absolute(from)? {
            *placed = PlacedFile::of(to)?;
            store.save_manifest(&stored).map_err(io::Error::other)?;
        }
    }
    Ok(())
}

/// Puts the downloaded file `fetched` (version `version` of the subscribed content) at
/// `downloads/<name>`, keeping the file there before in `downloads/.previous/`, and records it.
fn put_in_place(
    config: &Config,
    subscription: &Subscription,
    version: Digest,
    fetched: &Path,
) -> io::Result<Updated> {
    let downloads = config.dir.downloads();
    let dest = downloads.join(&subscription.name);
    let mut kept = None;
    if fetched != dest {
        if dest.exists() {
            let old = match subscription.current {
                Some(old) => old,
                None => Digest::of_reader(io::BufReader::new(File::open(&dest)?))?.0,
            };
            let keep = previous_path(&downloads, &subscription.name, old);
            // A nested name keeps its folders there too (`.previous/photos/2024/`), made
            // without following any link planted in `downloads/`.
            let folder = Path::new(".previous").join(&subscription.name);
            let folder = folder
                .parent()
                .and_then(Path::to_str)
                .unwrap_or(".previous");
            crate::download::create_folders_within(&downloads, folder).map_err(io::Error::other)?;
            match fs::hard_link(&dest, &keep) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            kept = Some(keep);
        }
        fs::rename(fetched, &dest)?;
        shared::fsutil::sync_parent(&dest);
        relocate_in_store(config, &subscription.name, fetched, &dest)?;
    }
    let name = subscription.name.clone();
    subscriptions::update(&config.dir, |all| {
        let mut changed = false;
        for s in all.iter_mut().filter(|s| s.name == name) {
            s.now_at(version);
            changed = true;
        }
        (changed, ())
    })?;
    let event = UpdateEvent {
        content: subscription.name.clone(),
        sha256: version.to_string(),
        path: dest.display().to_string(),
        kept: kept.as_ref().map(|k| k.display().to_string()),
    };
    log::info!("{}", event.to_event());
    Ok(Updated {
        name: subscription.name.clone(),
        version,
        path: dest,
        kept,
    })
}

/// `downloader sync`: runs [`sync_once`] whenever `tags.txt` or `subscriptions.txt` changes
/// (and every few seconds), and accepts the offers of the users of `accept-from.txt`
/// ([`crate::offers::accept_allowed`]) whenever `offers.txt` or `accept-from.txt` changes,
/// until `shutdown`; says each update and each offer accepted on `ui`.
///
/// # Errors
/// When `ui` cannot be written or the subscriptions cannot be read.
pub fn run(config: &Config, shutdown: &Shutdown, ui: &mut dyn Write) -> Result<(), Error> {
    let mut watched = Watched::default();
    let mut retries = crate::offers::Retries::default();
    let mut next_pass = Instant::now();
    while !shutdown.is_triggered() {
        if watched.changed(config) || Instant::now() >= next_pass {
            next_pass = Instant::now() + SYNC_EVERY;
            match sync_once(config, shutdown, Feedback::Quiet, &mut io::sink()) {
                Ok(updates) => {
                    for update in updates {
                        crate::wording::write_line(ui, &update.describe())?;
                    }
                }
                Err(e) if e.is_cancelled() => break,
                Err(e) => return Err(e),
            }
            let accepted = crate::offers::accept_allowed(
                config,
                &mut retries,
                shutdown,
                Feedback::Quiet,
                &mut io::sink(),
            );
            match accepted {
                Ok(accepted) => {
                    for (offer, got) in accepted {
                        crate::wording::write_line(ui, &accepted_line(&offer, &got))?;
                    }
                }
                Err(e) if e.is_cancelled() => break,
                Err(e) => return Err(e),
            }
        }
        shutdown.sleep(SYNC_POLL);
    }
    Ok(())
}

/// What the user reads when an offer was accepted unasked.
pub fn accepted_line(offer: &shared::offers::Offer, got: &crate::Got) -> String {
    format!(
        "Accepted {} from {} (accept-from.txt): {}",
        shared::text::terminal_safe(&offer.name),
        shared::text::terminal_safe(&offer.from),
        got.file.path.display()
    )
}

/// The modification stamps of `tags.txt`, `subscriptions.txt`, `offers.txt` and
/// `accept-from.txt` last seen, to run a pass only when one changed.
#[derive(Default)]
pub struct Watched(Option<[shared::fsutil::FileStamp; 4]>);

impl Watched {
    /// Whether any of the files changed since the last call (always, the first time).
    pub fn changed(&mut self, config: &Config) -> bool {
        let stamp = |p: PathBuf| shared::fsutil::file_stamp(&p).ok().flatten();
        let now = [
            stamp(config.dir.tags()),
            stamp(subscriptions::path(&config.dir)),
            stamp(shared::offers::inbox_path(&config.dir)),
            stamp(shared::offers::accept_from_path(&config.dir)),
        ];
        self.0.replace(now) != Some(now)
    }
}

/// `downloader subscribe NAME [--from USER]`: follows `name` (replacing the user of an existing
/// subscription). A file already at `downloads/<name>` counts as the current version.
///
/// # Errors
/// When the folder is missing, the name is not a valid content name, or the file cannot be
/// written.
pub fn subscribe(
    config: &Config,
    name: &str,
    from: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    crate::actions::require_peer_dir(config)?;
    shared::chunk::validate_content_name(name).map_err(|e| Error::Invalid(format!("{e}")))?;
    let existing = config.dir.downloads().join(name);
    let current = match File::open(&existing) {
        Ok(file) => Some(
            Digest::of_reader(io::BufReader::new(file))
                .map_err(|source| io_error(&existing, source))?
                .0,
        ),
        Err(_) => None,
    };
    subscriptions::update(&config.dir, |all| {
        match all.iter_mut().find(|s| s.name == name) {
            Some(s) => s.from = from.map(str::to_owned),
            None => {
                let mut s = Subscription::new(name, from);
                if let Some(current) = current {
                    s.now_at(current);
                }
                all.push(s);
            }
        }
        (true, ())
    })
    .map_err(|source| io_error(&subscriptions::path(&config.dir), source))?;
    crate::wording::write_line(
        out,
        &format!(
            "Subscribed to {name} (versions from {}); `downloader sync`, or the prompt while it \
             is open, keeps downloads/{name} up to date.",
            from.unwrap_or("any holder")
        ),
    )
}

/// `downloader unsubscribe NAME`.
///
/// # Errors
/// When `name` is not followed, or the file cannot be written.
pub fn unsubscribe(config: &Config, name: &str, out: &mut dyn Write) -> Result<(), Error> {
    crate::actions::require_peer_dir(config)?;
    let removed = subscriptions::update(&config.dir, |all| {
        let before = all.len();
        all.retain(|s| s.name != name);
        (all.len() != before, all.len() != before)
    })
    .map_err(|source| io_error(&subscriptions::path(&config.dir), source))?;
    if !removed {
        return Err(Error::Invalid(format!(
            "not subscribed to {name:?} (see `downloader subscriptions`)"
        )));
    }
    crate::wording::write_line(out, &format!("Unsubscribed from {name}."))
}

/// `downloader subscriptions [--json]`: what is followed, from whom, and the version here.
///
/// # Errors
/// When the file cannot be read or `out` written.
pub fn list_subscriptions(
    config: &Config,
    format: crate::json::Format,
    out: &mut dyn Write,
) -> Result<(), Error> {
    crate::actions::require_peer_dir(config)?;
    let all = subscriptions::load(&config.dir)
        .map_err(|source| io_error(&subscriptions::path(&config.dir), source))?;
    if format == crate::json::Format::Json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "from": s.from,
                    "current": s.current.map(|d| d.to_string()),
                    "previous": s.had.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        return crate::wording::write_line(out, &serde_json::Value::Array(items).to_string());
    }
    if all.is_empty() {
        return crate::wording::write_line(out, "No subscriptions (downloader subscribe NAME).");
    }
    let rows: Vec<[String; 3]> = all
        .iter()
        .map(|s| {
            [
                shared::text::terminal_safe(&s.name).into_owned(),
                s.from.clone().unwrap_or_else(|| "any holder".to_owned()),
                s.current
                    .map_or_else(|| "not yet".to_owned(), |d| d.to_string()[..16].to_owned()),
            ]
        })
        .collect();
    let text = crate::format::table(["NAME", "FROM", "VERSION HERE"], &rows, &[]);
    crate::wording::write_out(out, &text)
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        context: format!("cannot use {}", path.display()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::peer_dir::PeerDir;

    #[test]
    fn a_nested_update_keeps_the_old_version_in_its_folder_under_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            dir: PeerDir::new(tmp.path()),
            ..Config::default()
        };
        let folder = config.dir.downloads().join("photos").join("2024");
        fs::create_dir_all(&folder).unwrap();
        fs::create_dir_all(tmp.path().join(".run")).unwrap();
        let (old, new) = (b"old version".as_slice(), b"new version".as_slice());
        fs::write(folder.join("a.jpg"), old).unwrap();
        let fetched = folder.join("a (1).jpg");
        fs::write(&fetched, new).unwrap();
        let mut subscription = Subscription::new("photos/2024/a.jpg", None);
        subscription.current = Some(Digest::of(old));
        let updated = put_in_place(&config, &subscription, Digest::of(new), &fetched).unwrap();
        assert_eq!(updated.path, folder.join("a.jpg"));
        assert_eq!(fs::read(&updated.path).unwrap(), new);
        let kept = updated.kept.unwrap();
        assert_eq!(
            kept,
            previous_path(
                &config.dir.downloads(),
                "photos/2024/a.jpg",
                Digest::of(old)
            )
        );
        assert!(kept.starts_with(config.dir.downloads().join(".previous/photos/2024")));
        assert_eq!(fs::read(&kept).unwrap(), old);
    }
}
