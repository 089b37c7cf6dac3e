//! `get photos/`: a whole folder, downloaded content by content.
//!
//! A content name may be a path (`photos/2024/a.jpg`); a folder is every content under a
//! prefix ending with `/`. `get photos/` (or `get photos` when no content is named exactly
//! `photos` but some are under `photos/`) downloads each of them in turn through the one
//! download path of `get NAME` ([`crate::get`]): every chunk and every file verified,
//! resumable, placed at `downloads/photos/2024/a.jpg` with its folders created (never through
//! a symbolic link: [`crate::download`]). Sequential: each download already fetches its five
//! chunks from every holder at once. Empty folders are no contents, so none is recreated.

use std::io::Write;

use serde::Serialize;
use shared::shutdown::Shutdown;

use crate::actions::{get, load_catalog, require_peer_dir, Got};
use crate::bar::Feedback;
use crate::catalog::{Catalog, SelectError};
use crate::command::Selection;
use crate::download::{Config, DownloadError};
use crate::error::Error;
use crate::format;
use crate::json::{self, Format, GetFailure, GetSuccess};
use crate::wording::write_out;

/// The folder `selection` names in `catalog`, as a prefix ending with `/`: `photos/` for
/// `photos/`, and for `photos` when no content is named `photos` (exactly or ignoring case)
/// but some are under `photos/`. `None` when it names a content, or nothing under it.
pub fn folder_of(catalog: &Catalog, selection: &Selection) -> Option<String> {
    let Selection::Name(name) = selection else {
        return None;
    };
    let prefix = if name.ends_with('/') {
        name.clone()
    } else {
        let folded = name.to_lowercase();
        if catalog
            .targets
            .iter()
            .any(|t| t.name.to_lowercase() == folded)
        {
            return None;
        }
        format!("{name}/")
    };
    (!catalog.names_under(&prefix).is_empty()).then_some(prefix)
}

/// What `get FOLDER/` did: each content under it, and how its download ended.
#[derive(Debug)]
pub struct FolderGot {
    /// The folder, ending with `/`.
    pub prefix: String,
    /// Each content under it, in name order, with its outcome.
    pub results: Vec<(String, Result<Got, Error>)>,
}

impl FolderGot {
    /// The command's outcome, for its exit status: cancelled when a download was, failed when
    /// any was.
    ///
    /// # Errors
    /// [`DownloadError::Cancelled`], or [`Error::Invalid`] saying how many failed.
    pub fn status(&self) -> Result<(), Error> {
        match self.results.iter().find_map(|(_, r)| r.as_ref().err()) {
            Some(e) if e.is_cancelled() => Err(DownloadError::Cancelled.into()),
            Some(_) => Err(Error::Invalid(format!(
                "{} of {} files under {} could not be downloaded",
                self.failures(),
                self.results.len(),
                self.prefix
            ))),
            None => Ok(()),
        }
    }

    /// How many downloads failed.
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_err()).count()
    }
}

/// `downloader get FOLDER/`: downloads every content under `prefix`, each as `get NAME` does,
/// going on after a failure (a cancel stops it), and says how it went on `ui`.
///
/// # Errors
/// When the peer folder or `tags.txt` is missing, or nothing is under `prefix`.
pub fn get_folder(
    config: &Config,
    prefix: &str,
    cancel: &Shutdown,
    feedback: Feedback,
    ui: &mut dyn Write,
) -> Result<FolderGot, Error> {
    require_peer_dir(config)?;
    let names = load_catalog(config)?.names_under(prefix);
    if names.is_empty() {
        return Err(Error::Select(SelectError::NotFound {
            name: prefix.to_owned(),
            suggestion: None,
        }));
    }
    write_out(
        ui,
        &format!("Downloading the folder {prefix}: {} files\n", names.len()),
    )?;
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let result = get(
            config,
            &Selection::Name(name.clone()),
            None,
            cancel,
            feedback,
            ui,
        );
        let cancelled = result.as_ref().is_err_and(Error::is_cancelled);
        if let Err(e) = &result {
            // The name passed validate_content_name: nothing in it a terminal would obey.
            write_out(ui, &format!("{name}: failed: {e}\n"))?;
        }
        results.push((name, result));
        if cancelled || cancel.is_triggered() {
            break;
        }
    }
    let got = FolderGot {
        prefix: prefix.to_owned(),
        results,
    };
    write_out(ui, &summary(&got))?;
    Ok(got)
}

/// The last line of `get FOLDER/`: files, bytes, failures.
fn summary(got: &FolderGot) -> String {
    let done: Vec<&Got> = got
        .results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let size: u64 = done.iter().map(|g| g.file.size).sum();
    format!(
        "Folder {}: {} of {} files downloaded and verified ({}), {} failed\n",
        got.prefix,
        done.len(),
        got.results.len(),
        format::size(size),
        got.failures()
    )
}

/// What `get FOLDER/ --json` prints: the folder, and the result of each content, as `get
/// --json` prints it.
#[derive(Debug, Serialize)]
pub struct FolderResult {
    /// Whether every content under the folder was downloaded.
    pub ok: bool,
    /// The folder, ending with `/`.
    pub folder: String,
    /// How many contents failed.
    pub failed: usize,
    /// Each content's result: a `get --json` success or failure object.
    pub files: Vec<FileResult>,
}

/// One content's result in a [`FolderResult`]: what `get NAME --json` prints for it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FileResult {
    /// Downloaded (or already there).
    Done(GetSuccess),
    /// Not downloaded.
    Failed(GetFailure),
}

impl FileResult {
    /// The result of the download of the content `name`.
    pub fn of(name: &str, result: &Result<Got, Error>) -> FileResult {
        match result {
            Ok(done) => FileResult::Done(GetSuccess::new(&done.name, &done.file)),
            Err(e) => FileResult::Failed(GetFailure::new(name, e)),
        }
    }
}

/// The path of each file downloaded among `results`, one per line: what the text forms of
/// `get FOLDER/` and `accept N N…` print on stdout.
pub fn paths_got<'a>(results: impl Iterator<Item = &'a Result<Got, Error>>) -> String {
    results
        .filter_map(|r| r.as_ref().ok())
        .map(|done| format!("{}\n", done.file.path.display()))
        .collect()
}

/// What `downloader get FOLDER/` prints on stdout: the path of each file downloaded, one per
/// line, or with [`Format::Json`] one [`FolderResult`].
///
/// # Errors
/// When `out` cannot be written.
pub fn print_folder_result(
    got: &FolderGot,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        Format::Text => write_out(out, &paths_got(got.results.iter().map(|(_, r)| r))),
        Format::Json => {
            let files = got
                .results
                .iter()
                .map(|(name, result)| FileResult::of(name, result))
                .collect();
            json::write_json(
                out,
                &FolderResult {
                    ok: got.failures() == 0,
                    folder: got.prefix.clone(),
                    failed: got.failures(),
                    files,
                },
            )
        }
    }
}
