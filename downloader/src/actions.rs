//! The downloader's commands, as the binary and the prompt call them: `list`, `history` and
//! `get`, each writing what the user reads to the writer it is given.

use std::io::{self, Write};

use chrono::Utc;
use shared::shutdown::Shutdown;
use shared::tags::TagsIndex;

use crate::bar::{Display, Feedback};
use crate::catalog::Catalog;
use crate::command::Selection;
use crate::download::{self, Config, DownloadedFile, Progress};
use crate::error::Error;
use crate::history as log_history;
use crate::wording::{self, write_out};

/// Loads the catalog from the peer folder's `tags.txt`.
///
/// # Errors
/// When `tags.txt` exists but cannot be read or parsed.
pub fn load_catalog(config: &Config) -> Result<Catalog, Error> {
    let index = TagsIndex::load(&config.dir.tags())?;
    Ok(Catalog::from_index(&index, Utc::now()))
}

/// `downloader list`.
///
/// # Errors
/// When `tags.txt` cannot be read.
pub fn list(config: &Config, out: &mut dyn Write) -> Result<(), Error> {
    let catalog = load_catalog(config)?;
    write_out(out, &catalog.render())
}

/// `downloader history`.
///
/// # Errors
/// When `client.log` exists but cannot be read.
pub fn history(config: &Config, out: &mut dyn Write) -> Result<(), Error> {
    let path = config.dir.client_log();
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })
        }
    };
    write_out(out, &log_history::render(&log_history::parse(&text)))
}

/// `downloader get NAME`: downloads one content, telling `ui` what happens the way `feedback`
/// says (a bar draws on stderr itself).
///
/// # Errors
/// When the content is not on offer or the download fails.
pub fn get(
    config: &Config,
    selection: &Selection,
    sha256_prefix: Option<&str>,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<DownloadedFile, Error> {
    let catalog = load_catalog(config)?;
    let (target, same_name) = catalog.select(selection, sha256_prefix)?;
    let mut display = Display::new(feedback, target, ui);
    display.starting(&wording::starting(target, same_name));
    // Holders' names and their error messages come from the network: `Display` escapes them.
    let result = download::download(config, target, cancel, &mut |p: &Progress| {
        display.progress(p);
    });
    match result {
        Ok(outcome) => {
            display.finished(&outcome);
            Ok(outcome)
        }
        Err(e) => {
            display.failed();
            Err(e.into())
        }
    }
}
