//! `downloader network`: make a private network (`new`), join one with its passphrase
//! (`join`), leave it (`leave`), or say which network the peer folder is on (`status`, the
//! default).
//!
//! The key itself (Argon2id of the phrase, `DIR/network.key`, mode 0600) and the peer's
//! identity are `shared::trust`'s; this module only says to the user what happened and what to
//! do next. The phrase is never stored: `new` prints it once, for the user to carry to the
//! other machines.

use std::io::Write;
use std::path::{Path, PathBuf};

use shared::trust::key::{self, PhraseError};
use shared::trust::{Identity, IdentityError, KeyFileError, NetworkKey};

use crate::bar::Feedback;
use crate::download::Config;
use crate::error::Error;
use crate::json::{write_json, Format, NetworkStatus};
use crate::wording::write_out;

/// The programs that read the key, once, when they start.
const READERS: [&str; 3] = ["chunk-server", "announcer", "listener"];

/// What to do after the key changed: the programs of the folder read it when they start, so
/// those running now (named, from their instance locks) must be restarted.
pub fn restart_note(config: &Config) -> String {
    let running: Vec<&str> = READERS
        .into_iter()
        .filter(|p| shared::instance::is_running(&config.dir, p).unwrap_or(false))
        .collect();
    match running.as_slice() {
        [] => "The chunk server, announcer and listener read the key when they start.".to_owned(),
        running => format!(
            "Restart the {} of this folder: running, {} still on the network {} started on \
             (they read the key when they start).",
            running.join(", "),
            if running.len() == 1 {
                "it is"
            } else {
                "they are"
            },
            if running.len() == 1 { "it" } else { "they" },
        ),
    }
}

/// Why a `network` command changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `new` in a folder already on a private network.
    #[error("this peer folder is already on private network {id} ({}); run `downloader network leave` first to make a new one", .path.display())]
    AlreadyPrivate {
        /// The network it is on.
        id: String,
        /// The key file.
        path: PathBuf,
    },
    /// `join` with the phrase of another network than the folder's, without `--force`.
    #[error("this peer folder is on private network {current}, and this passphrase is of network {new}; nothing changed. To move to {new}, run `downloader network join --force \"PHRASE\"` (or `downloader network leave` first)")]
    OtherNetwork {
        /// The network the folder is on.
        current: String,
        /// The network of the phrase given.
        new: String,
    },
    /// The passphrase has a typo or too few words.
    #[error("{0}; nothing changed")]
    Phrase(#[from] PhraseError),
    /// The key file exists but cannot be used.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The identity file exists but cannot be used, or cannot be made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The key file or the random source failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The folder's key file, named as absolutely as can be (the user may have typed `--dir .`).
fn key_file(dir: &Path) -> PathBuf {
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    NetworkKey::path_in(&root)
}

fn peer_id(dir: &Path) -> Result<String, NetworkError> {
    Ok(Identity::load_or_create(dir)?.id().to_string())
}

/// The key of `phrase` (normalized), saying "deriving the key…" on `ui` first when someone
/// watches (Argon2id takes a fraction of a second on purpose).
fn derive(phrase: &str, feedback: Feedback, ui: &mut dyn Write) -> NetworkKey {
    if matches!(feedback, Feedback::Bar | Feedback::ChunkBars) {
        let _ = write!(ui, "deriving the key…\r");
        let _ = ui.flush();
    }
    let key = NetworkKey::from_phrase(phrase);
    if matches!(feedback, Feedback::Bar | Feedback::ChunkBars) {
        // Clear the note: what follows is on stdout.
        let _ = write!(ui, "                  \r");
        let _ = ui.flush();
    }
    key
}

/// `network new`: makes a passphrase, stores its key, and prints the phrase with what to do
/// with it, the network id and this peer's ID.
///
/// # Errors
/// [`NetworkError::AlreadyPrivate`] when the folder has a key already (it is never replaced
/// by a new one); an unusable key or identity file; I/O.
pub fn new(
    config: &Config,
    feedback: Feedback,
    ui: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let dir = config.dir.root();
    let path = key_file(dir);
    if let Some(key) = NetworkKey::load(dir).map_err(NetworkError::from)? {
        return Err(NetworkError::AlreadyPrivate { id: key.id(), path }.into());
    }
    let phrase = key::new_phrase().map_err(|source| NetworkError::Io {
        context: "cannot make a passphrase".into(),
        source,
    })?;
    let key = derive(&phrase, feedback, ui);
    save(&key, &path)?;
    let id = peer_id(dir)?;
    write_out(
        out,
        &format!(
            "Made private network {network}. Its passphrase:\n\
             \n    {phrase}\n\n\
             On each other machine, run (with its --dir):\n\
             \n    downloader network join \"{phrase}\"\n\n\
             Keep the passphrase secret: whoever has it is a member, who can list, download\n\
             and announce on this network. It is not stored here (only the key made from it).\n\
             \n\
             network:  {network} (every member shows the same)\n\
             peer ID:  {id} (this peer)\n\
             key file: {path}\n\
             {restart}\n",
            network = key.id(),
            path = path.display(),
            restart = restart_note(config),
        ),
    )
}

fn save(key: &NetworkKey, path: &Path) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    key.save(dir).map_err(|source| NetworkError::Io {
        context: format!("cannot write {}", path.display()),
        source,
    })
}

/// What `join` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The folder had no key; it has this network's now.
    Joined,
    /// The folder had this network's key already: nothing changed.
    AlreadyMember,
    /// The folder was on another network (this id), and is on this one now (`--force`).
    Replaced(String),
}

/// `network join PHRASE`: stores the key of `typed` (normalized: any case, words separated by
/// spaces or dashes), and prints the network id and this peer's ID.
///
/// # Errors
/// [`NetworkError::Phrase`] for a typo (with the closest word) or too few words;
/// [`NetworkError::OtherNetwork`] when the folder is on another network and not `force`; an
/// unusable identity file; I/O. Nothing is written then.
pub fn join(
    config: &Config,
    typed: &str,
    force: bool,
    feedback: Feedback,
    ui: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<Joined, Error> {
    let dir = config.dir.root();
    let phrase = key::normalize_phrase(typed).map_err(NetworkError::from)?;
    let path = key_file(dir);
    // A garbled key file is replaced: that is what its message tells the user to do.
    let current = match NetworkKey::load(dir) {
        Ok(current) => current,
        Err(e @ KeyFileError::Malformed { .. }) => {
            log::warn!("{e}");
            None
        }
        Err(e) => return Err(NetworkError::from(e).into()),
    };
    let key = derive(&phrase, feedback, ui);
    let joined = match current {
        Some(current) if current == key => Joined::AlreadyMember,
        Some(current) if !force => {
            return Err(NetworkError::OtherNetwork {
                current: current.id(),
                new: key.id(),
            }
            .into())
        }
        Some(current) => Joined::Replaced(current.id()),
        None => Joined::Joined,
    };
    if joined != Joined::AlreadyMember {
        save(&key, &path)?;
    }
    let id = peer_id(dir)?;
    let network = key.id();
    let said = match &joined {
        Joined::AlreadyMember => {
            format!("Already a member of private network {network}: nothing changed.\n")
        }
        Joined::Joined => format!("Joined private network {network}.\n"),
        Joined::Replaced(old) => {
            format!("Left private network {old} and joined private network {network}.\n")
        }
    };
    let restart = match joined {
        Joined::AlreadyMember => String::new(),
        _ => format!("{}\n", restart_note(config)),
    };
    write_out(
        out,
        &format!(
            "{said}\
             network:  {network} (check that the machine that made it shows the same)\n\
             peer ID:  {id} (this peer)\n\
             key file: {path}\n\
             {restart}",
            path = path.display(),
        ),
    )?;
    Ok(joined)
}

/// `network leave`: removes the key; the folder is on an open network again. Says which
/// network was left, or that there was none.
///
/// # Errors
/// I/O.
pub fn leave(config: &Config, out: &mut dyn Write) -> Result<(), Error> {
    let dir = config.dir.root();
    let path = key_file(dir);
    let left = match NetworkKey::load(dir) {
        Ok(Some(key)) => Some(format!("private network {}", key.id())),
        Ok(None) => None,
        // Unreadable or garbled: removing it is still what the user asks.
        Err(e) => Some(format!("the network of {} ({e})", path.display())),
    };
    let removed = NetworkKey::remove(dir).map_err(|source| NetworkError::Io {
        context: format!("cannot remove {}", path.display()),
        source,
    })?;
    match (left, removed) {
        (Some(left), true) => write_out(
            out,
            &format!(
                "Left {left}: removed {}. This peer folder is on an open network now.\n\
                 {}\n",
                path.display(),
                restart_note(config)
            ),
        ),
        _ => write_out(
            out,
            &format!(
                "This peer folder is not on a private network (no {}): nothing to leave.\n",
                path.display()
            ),
        ),
    }
}

/// The folder's network: private (and which) or open, this peer's ID, the key file.
///
/// # Errors
/// An unusable key or identity file.
pub fn status_of(config: &Config) -> Result<NetworkStatus, Error> {
    let dir = config.dir.root();
    let key = NetworkKey::load(dir).map_err(NetworkError::from)?;
    Ok(NetworkStatus {
        private: key.is_some(),
        network: key.as_ref().map(NetworkKey::id),
        peer_id: peer_id(dir)?,
        key_file: key_file(dir),
    })
}

/// `network` / `network status`: [`status_of`], as lines or one JSON object.
///
/// # Errors
/// [`Error::NoPeerDir`]; an unusable key or identity file.
pub fn status(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    crate::actions::require_peer_dir(config)?;
    let status = status_of(config)?;
    if format == Format::Json {
        return write_json(out, &status);
    }
    let network = match &status.network {
        Some(id) => format!("private, {id}"),
        None => "open: anyone on the LAN can list and download what is shared here \
                 (`downloader network new` makes a private one, `network join \"PHRASE\"` \
                 joins one)"
            .to_owned(),
    };
    let kept = if status.private { "" } else { " (none)" };
    write_out(
        out,
        &format!(
            "network:  {network}\n\
             peer ID:  {}\n\
             key file: {}{kept}\n",
            status.peer_id,
            status.key_file.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::peer_dir::PeerDir;

    const PHRASE: &str = "abandon-ability-able-about-above-absent";

    fn config(dir: &Path) -> Config {
        Config {
            dir: PeerDir::new(dir),
            ..Config::default()
        }
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn new_prints_a_phrase_that_joins_the_same_network_and_refuses_a_second_time() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut out = Vec::new();
        new(
            &config(a.path()),
            Feedback::Quiet,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        let said = text(out);
        let phrase = said
            .lines()
            .find_map(|l| l.trim().strip_prefix("downloader network join \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no join line in {said}"));
        assert_eq!(phrase.split('-').count(), key::PHRASE_WORDS, "{said}");
        let made = NetworkKey::load(a.path()).unwrap().unwrap();
        assert!(said.contains(&made.id()), "{said}");
        assert!(said.contains("read the key when they start"), "{said}");

        let mut out = Vec::new();
        let typed = phrase.replace('-', " ").to_uppercase();
        let joined = join(
            &config(b.path()),
            &typed,
            false,
            Feedback::Quiet,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        assert_eq!(joined, Joined::Joined);
        assert_eq!(NetworkKey::load(b.path()).unwrap(), Some(made.clone()));
        assert!(text(out).contains(&made.id()));

        let err = new(
            &config(a.path()),
            Feedback::Quiet,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("network leave"), "{err}");
        assert_eq!(NetworkKey::load(a.path()).unwrap(), Some(made));
    }

    #[test]
    fn join_refuses_a_typo_and_another_network_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let quiet = |typed: &str, force: bool| {
            join(
                &c,
                typed,
                force,
                Feedback::Quiet,
                &mut Vec::new(),
                &mut Vec::new(),
            )
        };
        let err = quiet("abandon abilty able about above absent", false).unwrap_err();
        assert!(
            err.to_string().contains("did you mean \"ability\""),
            "{err}"
        );
        assert!(NetworkKey::load(dir.path()).unwrap().is_none());

        assert_eq!(quiet(PHRASE, false).unwrap(), Joined::Joined);
        assert_eq!(quiet(PHRASE, false).unwrap(), Joined::AlreadyMember);
        let other = "abandon-ability-able-about-above-absorb";
        let err = quiet(other, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            NetworkKey::load(dir.path()).unwrap(),
            Some(NetworkKey::from_phrase(PHRASE))
        );
        let first = NetworkKey::from_phrase(PHRASE).id();
        assert_eq!(quiet(other, true).unwrap(), Joined::Replaced(first));
        assert_eq!(
            NetworkKey::load(dir.path()).unwrap(),
            Some(NetworkKey::from_phrase(other))
        );
    }

    #[test]
    fn leave_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let mut out = Vec::new();
        leave(&c, &mut out).unwrap();
        assert!(text(out).contains("not on a private network"));

        let open = status_of(&c).unwrap();
        assert!(!open.private && open.network.is_none());
        let id = Identity::load_or_create(dir.path()).unwrap().id();
        assert_eq!(open.peer_id, id.to_string());

        NetworkKey::from_phrase(PHRASE).save(dir.path()).unwrap();
        let mut out = Vec::new();
        status(&c, Format::Json, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let network = NetworkKey::from_phrase(PHRASE).id();
        assert_eq!(json["private"], true);
        assert_eq!(json["network"], network.as_str());
        assert_eq!(json["peer_id"], id.to_string().as_str());
        assert!(json["key_file"]
            .as_str()
            .unwrap()
            .ends_with(key::NETWORK_KEY_FILE));

        let mut out = Vec::new();
        leave(&c, &mut out).unwrap();
        let said = text(out);
        assert!(
            said.contains(&format!("Left private network {network}")),
            "{said}"
        );
        assert!(NetworkKey::load(dir.path()).unwrap().is_none());
    }
}
