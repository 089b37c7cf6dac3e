//! The interactive prompt: lists the contents, reads a [`Command`] per line, downloads what the
//! user picks, until `quit`, end of input or Ctrl-C. Its words are here (greeting, help, what a
//! mistyped line gets); those of a download are `wording`'s, shared with `downloader get`.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc;
use std::time::Duration;

use shared::shutdown::Shutdown;

use crate::actions::{get, history, load_catalog};
use crate::bar::Feedback;
use crate::catalog::Catalog;
use crate::command::{Command, Selection};
use crate::download::{Config, DownloadError};
use crate::error::Error;
use crate::json::Format;
use crate::wording::{write_line, write_out};

/// How often the prompt looks at the Ctrl-C flag while it waits for input.
const INPUT_POLL: Duration = Duration::from_millis(100);

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
    if !io::stdin().is_terminal() {
        log::debug!("standard input is not a terminal; reading commands from it");
    }
    // Someone at a terminal gets the live bars, with a line per chunk in flight, on stderr.
    let feedback = if io::stdin().is_terminal() && io::stderr().is_terminal() {
        Feedback::ChunkBars
    } else {
        Feedback::Lines
    };
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
            match rx.recv_timeout(INPUT_POLL) {
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
                if let Err(e) = history(config, Format::Text, out) {
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
                match get(config, &selection, sha.as_deref(), shutdown, feedback, out) {
                    Ok(_) => {}
                    // The failure summary said it all.
                    Err(Error::Download(DownloadError::Incomplete { .. })) => {}
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
