//! The downloader: reads `tags.txt`, fetches a content's five chunks from the peers that hold
//! them, verifies and reassembles the file into `downloads/`.
//!
//! - [`catalog`]: what is on offer and how the user picks it.
//! - [`download`]: the download itself (many holders, fallbacks, verification, reassembly).
//! - [`fetch`]: one chunk from one holder.
//! - [`command`]: parsing of interactive input; [`history`]: the download history.
//!
//! User-facing text goes to the writers passed in; diagnostics go through `log` (to stderr and
//! `client.log`), so they do not break up the prompt.

pub mod catalog;
pub mod command;
pub mod download;
pub mod error;
pub mod fetch;
pub mod format;
pub mod history;

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use shared::shutdown::Shutdown;
use shared::tags::TagsIndex;
use shared::text::terminal_safe;

use crate::catalog::Catalog;
use crate::command::{Command, Selection};
pub use crate::download::Config;
use crate::download::{DownloadError, Outcome, Progress};
pub use crate::error::Error;

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
    write_out(out, &history::render(&history::parse(&text)))
}

/// `downloader get NAME`: downloads one content, telling `ui` what happens.
///
/// # Errors
/// When the content is not on offer or the download fails.
pub fn get(
    config: &Config,
    selection: &Selection,
    sha256_prefix: Option<&str>,
    cancel: &Shutdown,
    ui: &mut dyn Write,
) -> Result<Outcome, Error> {
    let catalog = load_catalog(config)?;
    let (target, same_name) = catalog.select(selection, sha256_prefix)?;
    let available = target.available();
    let digest = target.sha256.map_or(
        "unverified: announced by legacy peers only".to_owned(),
        |d| format!("sha256 {}", d.short(16)),
    );
    let size = target.size.map_or("size unknown".to_owned(), format::size);
    say(
        ui,
        &format!(
            "Downloading {} ({size}, {digest}) from {} holder(s); chunks available: {available}",
            target.name,
            target.holders.len(),
        ),
    );
    if same_name > 1 {
        say(
            ui,
            &format!(
                "Note: {same_name} different files are named \"{}\"; taking the most available \
                 one. Use --sha256 PREFIX (or the list number) to pick another.",
                target.name
            ),
        );
    }
    let mut report = |p: &Progress| {
        let line = match p {
            Progress::Started { .. } => return,
            Progress::ChunkKept { index } => format!("  chunk {index}/5 already here, verified"),
            Progress::ChunkDone {
                index,
                holder,
                bytes,
                millis,
                verified,
            } => format!(
                "  chunk {index}/5 from {holder}: {} in {millis} ms, {}",
                format::size(*bytes),
                if *verified { "verified" } else { "unverified" }
            ),
            Progress::AttemptFailed {
                index,
                holder,
                reason,
            } => format!("  chunk {index}/5: {holder} failed ({reason}); trying another holder"),
            Progress::ChunkUnavailable { chunk } => {
                format!("CHUNK {chunk} CANNOT BE DOWNLOADED FROM ONLINE PEERS.")
            }
        };
        // Holders' names and their error messages come from the network.
        say(ui, &line);
    };
    let outcome = download::download(config, target, cancel, &mut report)?;
    let check = if outcome.verified {
        "verified: every chunk and the whole file match the announced SHA-256".to_owned()
    } else {
        "unverified: legacy peers send no checksums".to_owned()
    };
    if outcome.already_present {
        say(
            ui,
            &format!("Already downloaded: {}", outcome.path.display()),
        );
    }
    say(
        ui,
        &format!(
            "Done: {} ({}), {check}.",
            outcome.path.display(),
            format::size(outcome.size)
        ),
    );
    Ok(outcome)
}

/// The interactive prompt: lists the contents, downloads what the user picks, loops until
/// `quit`, end of input or Ctrl-C.
///
/// # Errors
/// Only when the terminal cannot be written; failed downloads are reported and the loop goes
/// on.
pub fn interactive(
    config: &Config,
    input: impl BufRead + Send + 'static,
    out: &mut dyn Write,
    shutdown: &Shutdown,
) -> Result<(), Error> {
    // Read lines on a thread so that Ctrl-C can end the prompt while it waits for input.
    let (tx, rx) = mpsc::sync_channel::<io::Result<String>>(1);
    std::thread::spawn(move || {
        for line in input.lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    write_out(
        out,
        &format!(
            "Peer folder {}. Type a number or a name to download; Enter or 'list' to refresh, \
             'history', 'help', 'quit'.\n",
            config.dir.root().display()
        ),
    )?;
    let mut catalog = show_catalog(config, out)?;
    loop {
        write_out(out, "> ")?;
        let line = loop {
            if shutdown.is_triggered() {
                write_out(out, "\n")?;
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(line)) => break line,
                Ok(Err(source)) => {
                    return Err(Error::Io {
                        context: "cannot read the terminal".into(),
                        source,
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    write_out(out, "\n")?;
                    return Ok(());
                }
            }
        };
        match Command::parse(&line) {
            Command::Quit => return Ok(()),
            Command::List => catalog = show_catalog(config, out)?,
            Command::Help => write_out(out, HELP)?,
            Command::History => {
                if let Err(e) = history(config, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Download(selection) => {
                // A number means the item the user saw in the last listing: pin its digest, so
                // that of two files with the same name the one shown is fetched.
                let (selection, sha) = match selection {
                    Selection::Number(n) => match catalog.select(&Selection::Number(n), None) {
                        Ok((target, _)) => (
                            Selection::Name(target.name.clone()),
                            target.sha256.map(|d| d.to_string()),
                        ),
                        Err(_) => {
                            write_line(out, &format!("There is no item {n}; type 'list'."))?;
                            continue;
                        }
                    },
                    name => (name, None),
                };
                match get(config, &selection, sha.as_deref(), shutdown, out) {
                    Ok(_) => {}
                    Err(Error::Download(DownloadError::Cancelled)) => {
                        write_out(out, "Download cancelled.\n")?;
                        return Ok(());
                    }
                    Err(e) => write_line(out, &format!("Download failed: {e}"))?,
                }
            }
        }
    }
}

fn show_catalog(config: &Config, out: &mut dyn Write) -> Result<Catalog, Error> {
    match load_catalog(config) {
        Ok(catalog) => {
            write_out(out, &catalog.render())?;
            Ok(catalog)
        }
        Err(e) => {
            write_line(out, &format!("error: {e}"))?;
            Ok(Catalog::default())
        }
    }
}

const HELP: &str = "\
  <number>      download the item with that number in the last listing
  <name>        download the file with that name (also: get <name>)
  list, Enter   refresh the listing from tags.txt
  history       show past downloads (from client.log)
  quit          leave (also Ctrl-C or end of input)
";

/// Writes one line for the user, [`terminal_safe`]: it may quote names and messages from the
/// network or `tags.txt`.
fn write_line(out: &mut dyn Write, line: &str) -> Result<(), Error> {
    write_out(out, &format!("{}\n", terminal_safe(line)))
}

/// [`write_line`] for progress, where a terminal that went away must not stop the download.
fn say(ui: &mut dyn Write, line: &str) {
    let _ = writeln!(ui, "{}", terminal_safe(line));
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "cannot write to the terminal".into(),
            source,
        })
}
