//! The downloader's commands, as the binary and the prompt call them: `list`, `history` and
//! `get`, each writing what the user reads (a table, or JSON for scripts) to the writer it is
//! given. `list` and `history` only read: they create no folder and no file.

use std::io::{self, Write};
use std::path::Path;

use chrono::Utc;
use shared::shutdown::Shutdown;
use shared::tags::TagsIndex;

use crate::bar::{Display, Feedback};
use crate::catalog::{self, Catalog};
use crate::command::Selection;
use crate::download::{self, Config, DownloadedFile, Progress};
use crate::error::Error;
use crate::history as log_history;
use crate::json::{self, Format, GetFailure, GetSuccess, HistoryEntry, ListedContent, ListedPeer};
use crate::peer_view;
use crate::wording::{self, write_out};

/// A finished `get`: the content's name as listed, and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// The content's name (the file in `downloads/` may carry another, if that one was taken).
    pub name: String,
    /// The file.
    pub file: DownloadedFile,
}

/// Checks that the peer folder exists, before a command reads it: a mistyped `--dir` is an
/// error, not an empty listing (and no command creates it).
///
/// # Errors
/// [`Error::NoPeerDir`].
pub fn require_peer_dir(config: &Config) -> Result<(), Error> {
    let root = config.dir.root();
    if root.is_dir() {
        Ok(())
    } else {
        Err(Error::NoPeerDir(root.to_owned()))
    }
}

/// Loads the catalog from the peer folder's `tags.txt`.
///
/// # Errors
/// [`Error::NoTags`] when no listener has written `tags.txt` (nothing is created then), or
/// when it exists but cannot be read or parsed.
pub fn load_catalog(config: &Config) -> Result<Catalog, Error> {
    let path = config.dir.tags();
    if !path.exists() {
        return Err(Error::NoTags(config.dir.root().to_owned()));
    }
    let index = TagsIndex::load(&path)?;
    Ok(Catalog::from_index(&index, Utc::now()))
}

/// Which contents `list` (or `find`) shows: those whose name matches `pattern` (see
/// [`catalog::name_matches`]) and, with `from`, only those that user holds (seed 002's
/// FILELIST of one peer; the username's case is ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFilter<'a> {
    /// A substring of the name, or a glob over the whole name (path included).
    pub pattern: Option<&'a str>,
    /// A holder's username.
    pub from: Option<&'a str>,
}

/// `downloader list [PATTERN] [--from USER]`: the contents on offer that `filter` keeps,
/// numbered as in the full listing. With no `tags.txt`, a note saying how to start a listener
/// (and, in JSON, an empty array).
///
/// # Errors
/// When the peer folder does not exist or `tags.txt` cannot be read, or `from` names no peer
/// heard ([`Error::UnknownUser`]).
pub fn list(
    config: &Config,
    filter: &ListFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<Catalog, Error> {
    show_contents(config, filter, Style::List, format, out)
}

/// `downloader find PATTERN`: the contents whose name (folder path included) matches
/// `pattern`, by the rule of `list PATTERN`, each with every holder's address and the chunks
/// it has, so the answer says who to fetch it from. `--json` prints what `list --json` prints.
///
/// # Errors
/// As [`list`].
pub fn find(
    config: &Config,
    pattern: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<Catalog, Error> {
    let filter = ListFilter {
        pattern: Some(pattern),
        from: None,
    };
    show_contents(config, &filter, Style::Find, format, out)
}

/// How a listing shows its holders: by name (`list`), or with addresses and chunks (`find`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    List,
    Find,
}

/// What `list` and `find` share: load, filter, print; returns the catalog loaded, whose
/// numbers the printed ones are (the prompt's `get NUMBER` then means what was shown).
fn show_contents(
    config: &Config,
    filter: &ListFilter,
    style: Style,
    format: Format,
    out: &mut dyn Write,
) -> Result<Catalog, Error> {
    require_peer_dir(config)?;
    let catalog = match (load_catalog(config), format) {
        // Nothing is on offer: said on stdout to a person, on stderr beside the `[]` of a script.
        (Err(e @ Error::NoTags(_)), _) if filter.from.is_some() => {
            log::debug!("{e}");
            Catalog::default()
        }
        (Err(e @ Error::NoTags(_)), Format::Text) => {
            write_out(out, &format!("No files on offer: {e}.\n"))?;
            return Ok(Catalog::default());
        }
        (Err(e @ Error::NoTags(_)), Format::Json) => {
            log::warn!("{e}");
            Catalog::default()
        }
        (result, _) => result?,
    };
    if let Some(user) = filter.from {
        if !catalog.targets.iter().any(|t| t.held_by(user)) {
            return Err(Error::UnknownUser {
                user: user.to_owned(),
                known: catalog.users(),
            });
        }
    }
    let numbered = catalog.numbered();
    let shown: Vec<_> = numbered
        .filter(|(_, t)| {
            filter
                .pattern
                .is_none_or(|p| catalog::name_matches(&t.name, p))
        })
        .filter(|(_, t)| filter.from.is_none_or(|user| t.held_by(user)))
        .collect();
    match format {
        Format::Json => {
            let items: Vec<ListedContent> = shown
                .into_iter()
                .map(|(n, t)| ListedContent::new(n, t))
                .collect();
            json::write_json(out, &items)?;
        }
        Format::Text
            if filter.pattern.is_some() && shown.is_empty() && !catalog.targets.is_empty() =>
        {
            write_out(out, "No file on offer matches that pattern.\n")?;
        }
        Format::Text => {
            let holders = match style {
                Style::List => catalog::HolderColumn::Users,
                Style::Find => catalog::HolderColumn::Addresses,
            };
            write_out(out, &catalog.render_with(&shown, holders))?;
        }
    }
    Ok(catalog)
}

/// `downloader peers`: every peer heard, and whether its chunk server answers now (all probed
/// at once, [`peer_view::PROBE_TIMEOUT`] each).
///
/// # Errors
/// When the peer folder does not exist or `tags.txt` cannot be read.
pub fn peers(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let path = config.dir.tags();
    let index = if path.exists() {
        TagsIndex::load(&path)?
    } else {
        if format == Format::Text {
            let e = Error::NoTags(config.dir.root().to_owned());
            return write_out(out, &format!("No peer heard: {e}.\n"));
        }
        log::warn!("{}", Error::NoTags(config.dir.root().to_owned()));
        TagsIndex::default()
    };
    let now = Utc::now();
    let mut heard = peer_view::peers_of(&index, now);
    peer_view::probe(&mut heard, &config.net, peer_view::PROBE_TIMEOUT);
    match format {
        Format::Json => {
            let items: Vec<ListedPeer> = heard.iter().map(ListedPeer::new).collect();
            json::write_json(out, &items)
        }
        Format::Text => write_out(out, &peer_view::render(&heard, now)),
    }
}

/// `downloader history`.
///
/// # Errors
/// When the peer folder does not exist, or `client.log` exists but cannot be read.
pub fn history(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
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
    let entries = log_history::parse(&text);
    match format {
        Format::Json => {
            let items: Vec<HistoryEntry> = entries.iter().map(HistoryEntry::new).collect();
            json::write_json(out, &items)
        }
        Format::Text => write_out(out, &log_history::render(&entries)),
    }
}

/// `downloader get NAME`: downloads one content, telling `ui` what happens the way `feedback`
/// says (a bar draws on stderr itself).
///
/// # Errors
/// When the peer folder or `tags.txt` is missing, the content is not on offer or the
/// download fails.
pub fn get(
    config: &Config,
    selection: &Selection,
    sha256_prefix: Option<&str>,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Got, Error> {
    require_peer_dir(config)?;
    let catalog = load_catalog(config)?;
    let (target, same_name) = catalog.select(selection, sha256_prefix)?;
    let starting = wording::starting(target, same_name);
    fetch_target(config, target, &starting, cancel, feedback, ui)
}

/// Downloads `target` (chosen by `get`, or offered: `downloader accept`), telling `ui` what
/// happens the way `feedback` says, starting with the lines `starting`.
///
/// # Errors
/// When the download fails.
pub(crate) fn fetch_target(
    config: &Config,
    target: &catalog::Target,
    starting: &[String],
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<Got, Error> {
    let mut display = Display::new(feedback, target, ui);
    display.starting(starting);
    // Holders' names and their error messages come from the network: `Display` escapes them.
    let result = download::download(config, target, cancel, &mut |p: &Progress| {
        display.progress(p);
    });
    match result {
        Ok(outcome) => {
            display.finished(&outcome);
            Ok(Got {
                name: target.name.clone(),
                file: outcome,
            })
        }
        Err(e) => {
            display.failed();
            Err(e.into())
        }
    }
}

/// What `downloader get` prints on stdout once done: the path alone (`path=$(downloader get
/// x)`), or with [`Format::Json`] one result object, also on failure (`requested` is the name
/// or number asked for). The path is printed as it is, for scripts: its content name passed
/// `validate_content_name`, so it holds nothing a terminal would obey.
///
/// # Errors
/// When `out` cannot be written.
pub fn print_get_result(
    requested: &str,
    result: &Result<Got, Error>,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match (format, result) {
        (Format::Text, Ok(got)) => write_out(out, &format!("{}\n", got.file.path.display())),
        (Format::Text, Err(_)) => Ok(()),
        (Format::Json, Ok(got)) => json::write_json(out, &GetSuccess::new(&got.name, &got.file)),
        (Format::Json, Err(e)) => json::write_json(out, &GetFailure::new(requested, e)),
    }
}

/// The message of [`Error::NoTags`]: `tags.txt` is written by the listener of the folder.
pub(crate) fn no_tags_message(dir: &Path) -> String {
    format!(
        "no tags.txt in {0}: no listener has written one in this folder; start one with \
         `listener --dir {0}`",
        dir.display()
    )
}
