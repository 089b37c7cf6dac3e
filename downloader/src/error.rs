//! The downloader's error type.

use std::path::PathBuf;

use shared::tags::TagsError;

use crate::catalog::SelectError;
use crate::download::DownloadError;

/// Why a downloader command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer folder (`--dir`) does not exist; no command creates it but the prompt.
    #[error("no peer folder at {} (--dir)", .0.display())]
    NoPeerDir(PathBuf),
    /// No listener has written `tags.txt` in the peer folder: nothing is on offer.
    #[error("{}", crate::actions::no_tags_message(.0))]
    NoTags(PathBuf),
    /// `tags.txt` could not be read.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// The requested content is not on offer.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// `list --from USER` names no peer heard (ignoring case); `known` are the users heard.
    #[error("no peer named {user:?} is heard{}", match known.as_slice() {
        [] => " (no peer is heard at all; is the listener running?)".to_owned(),
        known => format!("; known users: {}", known.join(", ")),
    })]
    UnknownUser {
        /// The name asked for.
        user: String,
        /// The users heard, as `peers` lists them (terminal-safe).
        known: Vec<String>,
    },
    /// The download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// A request that cannot be carried out as given (a name that is not a content name, an
    /// unknown subscription); the message says what to do instead.
    #[error("{0}")]
    Invalid(String),
    /// `share` or `unshare` changed nothing.
    #[error(transparent)]
    Sharing(#[from] crate::sharing::SharingError),
    /// A `network` command changed nothing.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// Reading the log or the terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// An I/O error met while editing a file of the peer folder under its lock (the callers that
/// know which file replace the context).
impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Error {
        Error::Io {
            context: "cannot use the peer folder".into(),
            source,
        }
    }
}

impl Error {
    /// Whether the command stopped because the user asked it to (Ctrl-C, SIGTERM).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Download(DownloadError::Cancelled))
    }
}
