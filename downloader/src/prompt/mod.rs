//! The interactive prompt: lists the contents, reads a [`Command`] per line, downloads what the
//! user picks, until `quit`, end of input or Ctrl-C. Its words are here (greeting, help, what a
//! mistyped line gets); those of a download are `wording`'s, shared with `downloader get`.
//!
//! - `input`: where lines come from (the line editor on a terminal, plain lines elsewhere),
//!   and the history file in the peer folder.
//! - `complete`: what Tab completes.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use shared::shutdown::Shutdown;

use crate::actions::{find, get, history, list, load_catalog, peers, ListFilter};
use crate::bar::Feedback;
use crate::catalog::Catalog;
use crate::command::{Command, NetworkAction, Selection};
use crate::download::{Config, DownloadError};
use crate::error::Error;
use crate::json::Format;
use crate::offers;
use crate::sharing::{share, shared, unshare};
use crate::sync;
use crate::wording::{write_line, write_out};

mod complete;
mod input;

use complete::Names;
use input::{Input, Next};

/// The prompt's history, in the peer folder: the lines typed at the line editor, kept across
/// runs (created by the first line typed at a terminal; never by other commands).
pub const HISTORY_FILE: &str = ".prompt_history";

/// The interactive prompt: lists the contents, downloads what the user picks, loops until
/// `quit`, end of input or Ctrl-C. When standard input is a terminal, the line editor reads it
/// (editing, Tab completion, history in [`HISTORY_FILE`]) and `input` is not used; otherwise
/// commands are read from `input`, a line each.
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
    let terminal = io::stdin().is_terminal();
    // Someone at a terminal gets the live bars, with a line per chunk in flight, on stderr.
    let feedback = if terminal && io::stderr().is_terminal() {
        Feedback::ChunkBars
    } else {
        Feedback::Lines
    };
    let names: Names = Arc::new(Mutex::new(Vec::new()));
    let mut input = if terminal {
        Input::editor(config.dir.root().join(HISTORY_FILE), Arc::clone(&names))
    } else {
        log::debug!("standard input is not a terminal; reading commands from it");
        Input::lines(input)
    };
    write_out(
        out,
        &format!(
            "Peer folder {}. Type a number or a name to download{}; Enter or 'list' to \
             refresh, 'find', 'peers', 'shared', 'offers', 'history', 'help', 'quit'.\n",
            config.dir.root().display(),
            if terminal { " (Tab completes)" } else { "" }
        ),
    )?;
    let mut catalog = show_catalog(config, out, &names)?;
    let notices = background_sync(config, shutdown);
    loop {
        for notice in std::mem::take(&mut *notices.lock().unwrap_or_else(PoisonError::into_inner)) {
            write_line(out, &notice)?;
        }
        let line = match input.next(out, shutdown)? {
            Next::Line(line) => line,
            Next::Quit => return Ok(()),
        };
        match Command::parse(&line) {
            Command::Quit => return Ok(()),
            Command::List => catalog = show_catalog(config, out, &names)?,
            Command::Help => write_out(out, HELP)?,
            Command::Usage(usage) => write_line(out, usage)?,
            Command::Subscribe { name, from } => {
                if let Err(e) = sync::subscribe(config, &name, from.as_deref(), out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Unsubscribe(name) => {
                if let Err(e) = sync::unsubscribe(config, &name, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Subscriptions => {
                if let Err(e) = sync::list_subscriptions(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::History => {
                if let Err(e) = history(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Peers => {
                if let Err(e) = peers(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            // The numbers shown are those of a fresh listing: `get NUMBER` then means them.
            Command::Find(pattern) => match find(config, &pattern, Format::Text, out) {
                Ok(shown) => catalog = remember(shown, &names),
                Err(e) => write_line(out, &format!("error: {e}"))?,
            },
            Command::ListFrom(user) => {
                let filter = ListFilter {
                    pattern: None,
                    from: Some(&user),
                };
                match list(config, &filter, Format::Text, out) {
                    Ok(shown) => catalog = remember(shown, &names),
                    Err(e) => write_line(out, &format!("error: {e}"))?,
                }
            }
            Command::Share(path) => {
                if let Err(e) = share(config, &[path.into()], out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Unshare(name) => {
                if let Err(e) = unshare(config, &[name], out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Shared => {
                if let Err(e) = shared(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Send { path, to, expires } => {
                let result = match expires.as_deref().map(crate::send::parse_lifetime) {
                    Some(Err(e)) => Err(Error::Invalid(e)),
                    Some(Ok(lifetime)) => {
                        crate::send::send(config, path.as_ref(), &to, Some(lifetime), out)
                    }
                    None => crate::send::send(config, path.as_ref(), &to, None, out),
                };
                if let Err(e) = result {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Sends => {
                if let Err(e) = crate::send::list_sends(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Unsend(id) => {
                if let Err(e) = crate::send::unsend(config, &id, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Offers => {
                if let Err(e) = offers::list_offers(config, Format::Text, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Decline(selectors) => {
                if let Err(e) = offers::decline(config, &selectors, out) {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Network(action) => {
                let result = match action {
                    NetworkAction::Status => crate::network::status(config, Format::Text, out),
                    NetworkAction::New => {
                        crate::network::new(config, feedback, &mut io::stderr(), out)
                    }
                    NetworkAction::Join { phrase, force } => crate::network::join(
                        config,
                        &phrase,
                        force,
                        feedback,
                        &mut io::stderr(),
                        out,
                    )
                    .map(drop),
                    NetworkAction::Leave => crate::network::leave(config, out),
                };
                if let Err(e) = result {
                    write_line(out, &format!("error: {e}"))?;
                }
            }
            Command::Accept(selectors) => {
                match offers::accept_many(config, &selectors, shutdown, feedback, out) {
                    Ok(outcomes) => {
                        for (_, result) in &outcomes {
                            match result {
                                Ok(got) => {
                                    write_line(out, &format!("{}", got.file.path.display()))?;
                                }
                                Err(Error::Download(DownloadError::Incomplete { .. })) => {}
                                Err(Error::Download(DownloadError::Cancelled)) => {
                                    write_out(out, "Download cancelled.\n")?;
                                    return Ok(());
                                }
                                Err(e) => write_line(out, &format!("error: {e}"))?,
                            }
                        }
                    }
                    Err(e) => write_line(out, &format!("error: {e}"))?,
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
                if let Some(prefix) = sha
                    .is_none()
                    .then(|| crate::folder::folder_of(&catalog, &selection))
                    .flatten()
                {
                    match crate::folder::get_folder(config, &prefix, shutdown, feedback, out) {
                        Ok(got) if got.status().is_err_and(|e| e.is_cancelled()) => {
                            write_out(out, "Download cancelled.\n")?;
                            return Ok(());
                        }
                        Ok(_) => {}
                        Err(e) => write_line(out, &e.to_string())?,
                    }
                    continue;
                }
                match get(config, &selection, sha.as_deref(), shutdown, feedback, out) {
                    Ok(_) => {}
                    // The failure summary said it all.
                    Err(Error::Download(DownloadError::Incomplete { .. })) => {}
                    Err(Error::Download(DownloadError::Cancelled)) => {
                        write_out(out, "Download cancelled.\n")?;
                        return Ok(());
                    }
                    // No such name (and maybe the one meant): nothing was downloading.
                    Err(Error::Select(e)) => write_line(out, &e.to_string())?,
                    Err(e) => write_line(out, &format!("Download failed: {e}"))?,
                }
            }
        }
    }
}

/// Makes `catalog` the one numbers refer to, and its names what Tab completes.
fn remember(catalog: Catalog, names: &Names) -> Catalog {
    *names.lock().unwrap_or_else(PoisonError::into_inner) = complete::names_of(&catalog);
    catalog
}

/// Keeps the subscribed contents up to date and accepts the offers of the users of
/// `accept-from.txt` while the prompt is open, on a thread of its own, unless a `downloader
/// sync` runs for the folder (then it does). What it updated and accepted, and the new offers
/// (`bob offers report.pdf (2.0 MiB): accept 1 / decline 1`), are left in the returned list,
/// which the prompt shows before its next line.
fn background_sync(config: &Config, shutdown: &Shutdown) -> Arc<Mutex<Vec<String>>> {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let (config, shutdown, told) = (config.clone(), shutdown.clone(), Arc::clone(&notices));
    std::thread::spawn(move || {
        let mut watched = sync::Watched::default();
        let mut new_offers = offers::NewOffers::default();
        let mut retries = offers::Retries::default();
        while !shutdown.sleep(sync::SYNC_POLL) {
            let sync_runs =
                shared::instance::is_running(&config.dir, "downloader").unwrap_or(false);
            if !watched.changed(&config) {
                continue;
            }
            let mut lines = Vec::new();
            if !sync_runs {
                match sync::sync_once(&config, &shutdown, Feedback::Quiet, &mut io::sink()) {
                    Ok(updates) => lines.extend(updates.iter().map(sync::Updated::describe)),
                    Err(e) => log::warn!("sync: {e}"),
                }
                let accepted = offers::accept_allowed(
                    &config,
                    &mut retries,
                    &shutdown,
                    Feedback::Quiet,
                    &mut io::sink(),
                );
                match accepted {
                    Ok(accepted) => lines.extend(
                        accepted
                            .iter()
                            .map(|(offer, got)| sync::accepted_line(offer, got)),
                    ),
                    Err(e) => log::warn!("sync: {e}"),
                }
            }
            lines.extend(new_offers.take(&config));
            told.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(lines);
        }
    });
    notices
}

/// Shows the listing, and makes its names what Tab completes.
fn show_catalog(config: &Config, out: &mut dyn Write, names: &Names) -> Result<Catalog, Error> {
    let catalog = match load_catalog(config) {
        Ok(catalog) => {
            write_out(out, &catalog.render())?;
            catalog
        }
        Err(e) => {
            write_line(out, &format!("error: {e}"))?;
            Catalog::default()
        }
    };
    *names.lock().unwrap_or_else(PoisonError::into_inner) = complete::names_of(&catalog);
    Ok(catalog)
}

const HELP: &str = "\
  <number>      download the item with that number in the last listing
  <name>        download the file with that name (also: get <name>); case is ignored
                when no name matches exactly
  get FOLDER/   download every file under a folder (photos/), keeping its structure
  list, Enter   refresh the listing from tags.txt
  find PATTERN  the files whose name (or folder path) holds PATTERN, or matches it as a
                glob (*.txt, photos/*), with who holds them and where
  files USER    the files USER holds (also: list --from USER)
  peers         every peer heard, its files, and whether its chunk server answers
  history       show past downloads (from client.log)
  subscribe NAME [--from USER]
                follow a file: new versions replace downloads/NAME while the prompt
                (or `downloader sync`) runs; unsubscribe NAME, subscriptions
  share PATH    share a file or folder (its whole tree) now (the rest of the line is the path)
  unshare NAME  stop sharing a content (its name, a folder photos/, or the path shared)
  shared        show what this peer shares
  send PATH --to USER [--expires 10m|2h|7d]
                offer a file, or a folder's files, to USER alone (nothing reaches them
                unless they accept); sends lists the offers sent, unsend ID|all cancels
  offers        the offers received: accept N [N...]|all downloads them, decline refuses
                (the users of accept-from.txt are accepted unasked while the prompt runs)
  network       this folder's network: open, or private (which one), and this peer's ID;
                network new makes a private one and prints its passphrase, network join
                PHRASE joins one (--force replaces another), network leave opens it again
  quit          leave (also Ctrl-C, Ctrl-D or end of input)
At a terminal: Tab completes commands and names, Up/Down recall earlier lines (kept in
the peer folder's .prompt_history).
";
