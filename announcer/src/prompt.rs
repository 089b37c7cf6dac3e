//! The username question: which name the announcer sends, and asking for it at the terminal.
//!
//! The legacy design asks the user for a name once and keeps it. The order of preference is:
//! the `--username` flag; the name stored in `DIR/username.txt`; a name asked at the terminal
//! (and then stored); and, when nobody can be asked (no terminal, as under a service manager),
//! the host name, which is not stored so that a later interactive start still asks.
//!
//! The terminal is passed in as a reader and a writer so that the prompt can be tested without
//! one. This module does not log: it returns where the name came from and lets `main` say so.
//! What makes a name acceptable is [`shared::username`]'s rule, which the listeners share.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use shared::peer_dir::PeerDir;
use shared::username::{validate, Problem};

/// Name used when even the host name cannot be read.
pub const FALLBACK_USERNAME: &str = "anonymous";

/// Why no username could be settled on.
#[derive(Debug, thiserror::Error)]
pub enum UsernameError {
    /// The `--username` flag holds a name we would refuse at the prompt.
    #[error("invalid username {name:?}: {problem}")]
    InvalidFlag {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// `username.txt` exists but cannot be read.
    #[error("cannot read the stored username {path}")]
    ReadStored {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Talking to the terminal failed.
    #[error("cannot ask for a username at the terminal")]
    Prompt(#[source] io::Error),
    /// The terminal closed (end of input) before a valid name was typed.
    #[error("no username given at the terminal (end of input)")]
    NoInput,
    /// The name typed could not be stored.
    #[error("cannot store the username in {path}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Where the username came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameSource {
    /// The `--username` flag.
    Flag,
    /// `username.txt`.
    Stored,
    /// Typed at the terminal just now (and stored).
    Prompted,
    /// The host name, for lack of a terminal to ask at.
    Hostname,
}

/// A settled username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// The name to announce.
    pub name: String,
    /// Where it came from.
    pub source: UsernameSource,
}

/// Settles on the username: `flag`, else `DIR/username.txt`, else asks once at `terminal` (and
/// stores the answer atomically), else the host name.
///
/// `terminal` is the user's input and where the prompt goes (stderr in `main`); pass `None` when
/// stdin is not a terminal. A stored name that is empty or invalid counts as absent.
///
/// # Errors
/// [`UsernameError`] for an invalid flag, an unreadable `username.txt`, a terminal that fails or
/// closes before a valid name is typed, or a name that cannot be stored.
pub fn resolve<R: BufRead, W: Write>(
    flag: Option<&str>,
    dir: &PeerDir,
    terminal: Option<(R, W)>,
) -> Result<Username, UsernameError> {
    if let Some(name) = flag {
        validate(name).map_err(|problem| UsernameError::InvalidFlag {
            name: name.to_owned(),
            problem,
        })?;
        return Ok(Username {
            name: name.to_owned(),
            source: UsernameSource::Flag,
        });
    }
    if let Some(name) = read_stored(dir)? {
        return Ok(Username {
            name,
            source: UsernameSource::Stored,
        });
    }
    if let Some((input, output)) = terminal {
        let name = ask(input, output)?;
        let path = dir.username_file();
        dir.create()
            .and_then(|()| shared::fsutil::write_atomic(&path, format!("{name}\n").as_bytes()))
            .map_err(|source| UsernameError::Store { path, source })?;
        return Ok(Username {
            name,
            source: UsernameSource::Prompted,
        });
    }
    Ok(Username {
        name: host_name(),
        source: UsernameSource::Hostname,
    })
}

/// The stored name, if there is a valid one.
fn read_stored(dir: &PeerDir) -> Result<Option<String>, UsernameError> {
    let path = dir.username_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let name = text.trim();
            Ok(validate(name).is_ok().then(|| name.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // A username.txt that is not UTF-8 is as good as absent: ask again.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(source) => Err(UsernameError::ReadStored { path, source }),
    }
}

/// Asks until a valid name is typed.
fn ask<R: BufRead, W: Write>(mut input: R, mut output: W) -> Result<String, UsernameError> {
    loop {
        write!(output, "Username: ")
            .and_then(|()| output.flush())
            .map_err(UsernameError::Prompt)?;
        let mut line = String::new();
        if input.read_line(&mut line).map_err(UsernameError::Prompt)? == 0 {
            return Err(UsernameError::NoInput);
        }
        let name = line.trim();
        match validate(name) {
            Ok(()) => return Ok(name.to_owned()),
            Err(problem) => {
                writeln!(
                    output,
                    "That username cannot be used: {problem}. Try again."
                )
                .map_err(UsernameError::Prompt)?;
            }
        }
    }
}

/// The host name, made into a valid username, else [`FALLBACK_USERNAME`].
fn host_name() -> String {
    shared::net::host_name()
        .and_then(|host| shared::username::from_host_name(&host))
        .unwrap_or_else(|| FALLBACK_USERNAME.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::QUERY_USERNAME;
    use shared::text::UnsafeText;
    use shared::MAX_USERNAME_BYTES;
    use std::io::Cursor;

    type Terminal<'a> = Option<(Cursor<&'a [u8]>, &'a mut Vec<u8>)>;

    fn no_terminal() -> Terminal<'static> {
        None
    }

    #[test]
    fn flag_wins_over_everything() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        std::fs::write(peer.username_file(), "stored\n").unwrap();
        let mut out = Vec::new();
        let got = resolve(
            Some("alice"),
            &peer,
            Some((Cursor::new(&b"typed\n"[..]), &mut out)),
        )
        .unwrap();
        assert_eq!(
            got,
            Username {
                name: "alice".into(),
                source: UsernameSource::Flag
            }
        );
        assert!(out.is_empty(), "nothing asked");
    }

    #[test]
    fn invalid_flag_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        let long = "x".repeat(MAX_USERNAME_BYTES + 1);
        for (bad, problem) in [
            ("", Problem::Empty),
            (long.as_str(), Problem::TooLong),
            ("a\nb", Problem::Unshowable(UnsafeText::Hidden('\n'))),
            (
                "mal\u{202e}yrol",
                Problem::Unshowable(UnsafeText::Hidden('\u{202e}')),
            ),
        ] {
            match resolve(Some(bad), &peer, no_terminal()) {
                Err(UsernameError::InvalidFlag { problem: p, .. }) => assert_eq!(p, problem),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn stored_file_wins_over_terminal_and_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        std::fs::write(peer.username_file(), "  bob the builder \n").unwrap();
        let expected = Username {
            name: "bob the builder".into(),
            source: UsernameSource::Stored,
        };
        assert_eq!(resolve(None, &peer, no_terminal()).unwrap(), expected);
        let mut out = Vec::new();
        let got = resolve(None, &peer, Some((Cursor::new(&b"x\n"[..]), &mut out))).unwrap();
        assert_eq!(got, expected);
        assert!(out.is_empty(), "nothing asked");
    }

    #[test]
    fn without_terminal_the_hostname_is_used_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        // An empty stored file counts as absent.
        std::fs::write(peer.username_file(), "\n").unwrap();
        let got = resolve(None, &peer, no_terminal()).unwrap();
        assert_eq!(got.source, UsernameSource::Hostname);
        assert!(validate(&got.name).is_ok(), "{:?}", got.name);
        let host = shared::net::host_name().unwrap_or_default();
        if !host.trim().is_empty() && host.len() <= MAX_USERNAME_BYTES {
            assert_eq!(got.name, host.trim());
        }
        assert_eq!(std::fs::read_to_string(peer.username_file()).unwrap(), "\n");
    }

    #[test]
    fn terminal_prompt_reasks_on_bad_input_and_stores_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        // The peer folder does not exist yet: storing creates it.
        let peer = PeerDir::new(dir.path().join("peer"));
        let long = "y".repeat(MAX_USERNAME_BYTES + 1);
        let typed = format!("\n   \n{long}\nbell\x07\n  carol  \nignored\n");
        let mut out = Vec::new();
        let got = resolve(None, &peer, Some((Cursor::new(typed.as_bytes()), &mut out))).unwrap();
        assert_eq!(
            got,
            Username {
                name: "carol".into(),
                source: UsernameSource::Prompted
            }
        );
        let shown = String::from_utf8(out).unwrap();
        assert_eq!(shown.matches("Username: ").count(), 5, "{shown}");
        assert_eq!(shown.matches("cannot be used").count(), 4, "{shown}");
        assert_eq!(
            std::fs::read_to_string(peer.username_file()).unwrap(),
            "carol\n"
        );
        // Asked once: the next start reads it back without asking.
        let mut out = Vec::new();
        let again = resolve(None, &peer, Some((Cursor::new(&b"dave\n"[..]), &mut out))).unwrap();
        assert_eq!(again.name, "carol");
        assert_eq!(again.source, UsernameSource::Stored);
        assert!(out.is_empty());
    }

    #[test]
    fn end_of_input_at_the_prompt_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        let mut out = Vec::new();
        let got = resolve(None, &peer, Some((Cursor::new(&b"\n"[..]), &mut out)));
        assert!(matches!(got, Err(UsernameError::NoInput)), "{got:?}");
        assert!(!peer.username_file().exists());
    }

    #[test]
    fn the_name_queries_are_sent_under_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerDir::new(dir.path());
        assert!(matches!(
            resolve::<&[u8], Vec<u8>>(Some(QUERY_USERNAME), &peer, None),
            Err(UsernameError::InvalidFlag {
                problem: Problem::Reserved,
                ..
            })
        ));
        // Stored by hand, it counts as absent.
        std::fs::write(peer.username_file(), format!("{QUERY_USERNAME}\n")).unwrap();
        let got = resolve::<&[u8], Vec<u8>>(None, &peer, None).unwrap();
        assert_ne!(got.name, QUERY_USERNAME);
    }
}
