//! One line typed at the interactive prompt, turned into a [`Command`]: pure parsing, no I/O.

/// How the user names a content to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Its number in the last listing (1-based).
    Number(usize),
    /// Its name.
    Name(String),
}

/// Which offers `accept` and `decline` name: every pending one, or a list of numbers (as
/// `offers` shows them) and ids (or their start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selectors {
    /// `all`: every pending offer.
    All,
    /// `1 3 4`, `3f9c`, `1,3`: these, in this order, each once.
    These(Vec<String>),
}

impl Selectors {
    /// The selectors of `words` (each may hold several, separated by commas or spaces).
    ///
    /// # Errors
    /// A message when there is none, or `all` comes with others.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Selectors, String> {
        let mut these: Vec<String> = Vec::new();
        for word in words
            .iter()
            .flat_map(|w| w.as_ref().split([',', ' ', '\t']))
            .filter(|w| !w.is_empty())
        {
            let word = if word.eq_ignore_ascii_case("all") {
                "all"
            } else {
                word
            };
            if !these.iter().any(|t| t == word) {
                these.push(word.to_owned());
            }
        }
        let all = these.iter().any(|w| w == "all");
        match (all, these.len()) {
            (_, 0) => Err("name an offer: its number in `offers`, its id, or all".into()),
            (true, 1) => Ok(Selectors::All),
            (true, _) => Err("`all` names every pending offer: give it alone".into()),
            (false, _) => Ok(Selectors::These(these)),
        }
    }

    /// Whether they name one offer only (not `all`).
    pub fn is_one(&self) -> bool {
        matches!(self, Selectors::These(these) if these.len() == 1)
    }
}

/// What the user asked for at the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Download a content.
    Download(Selection),
    /// Show the contents on offer again (also an empty line).
    List,
    /// Show the download history.
    History,
    /// Show every peer heard (`peers`).
    Peers,
    /// Show the contents whose name matches a pattern, with their holders (`find PATTERN`).
    Find(String),
    /// Show the contents one user holds (`list --from USER`, `files USER`).
    ListFrom(String),
    /// Share a file or folder (the rest of the line is one path, spaces included).
    Share(String),
    /// Stop sharing a content, by name or path (the rest of the line).
    Unshare(String),
    /// Show what this peer shares.
    Shared,
    /// Show the commands.
    Help,
    /// Leave the prompt.
    Quit,
    /// Follow a content (`subscribe NAME [--from USER]`).
    Subscribe {
        /// The content.
        name: String,
        /// The only user whose versions are taken.
        from: Option<String>,
    },
    /// Stop following a content.
    Unsubscribe(String),
    /// List the contents followed.
    Subscriptions,
    /// Offer a file to one user (`send PATH --to USER [--expires DURATION]`).
    Send {
        /// The file (the text before ` --to `, spaces included).
        path: String,
        /// The recipient.
        to: String,
        /// How long the offer lasts, as typed (`10m`); the default when `None`.
        expires: Option<String>,
    },
    /// List the offers sent.
    Sends,
    /// Cancel an offer sent, by id.
    Unsend(String),
    /// List the offers received and pending.
    Offers,
    /// Accept offers received (numbers, ids, or all).
    Accept(Selectors),
    /// Decline offers received (numbers, ids, or all).
    Decline(Selectors),
    /// `network`, `network status|new|join PHRASE|leave`: the peer folder's network.
    Network(NetworkAction),
    /// A command word typed without the argument it needs: the line to show instead (a bare
    /// `get` is never taken for a file named "get").
    Usage(&'static str),
}

/// What `network` does at the prompt (as `downloader network …` on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkAction {
    /// Open or private, the network id, this peer's ID (also a bare `network`).
    Status,
    /// Make a private network and print its passphrase.
    New,
    /// Join the network of a passphrase.
    Join {
        /// The passphrase as typed (normalized when used).
        phrase: String,
        /// Replace another network's key.
        force: bool,
    },
    /// Remove the key: an open network again.
    Leave,
}

/// The words Tab offers after `network `.
pub const NETWORK_WORDS: [&str; 4] = ["status", "new", "join", "leave"];

/// The command words offered by Tab at the start of a line, as `help` lists them.
pub const WORDS: [&str; 21] = [
    "get",
    "list",
    "find",
    "files",
    "peers",
    "history",
    "share",
    "unshare",
    "shared",
    "subscribe",
    "unsubscribe",
    "subscriptions",
    "send",
    "sends",
    "unsend",
    "offers",
    "accept",
    "decline",
    "network",
    "help",
    "quit",
];

/// What a bare `get` (or `download`, `d`) answers.
pub const GET_USAGE: &str = "usage: get NAME|NUMBER";

/// What a bare `find` answers.
pub const FIND_USAGE: &str = "usage: find PATTERN (a part of the name, or a glob: *.txt)";

/// What a bare `files` (or `list --from`) answers.
pub const FILES_USAGE: &str = "usage: files USER (or: list --from USER)";

/// What a bare `subscribe` answers.
pub const SUBSCRIBE_USAGE: &str = "usage: subscribe NAME [--from USER]";

/// What a bare or incomplete `send` answers.
pub const SEND_USAGE: &str = "usage: send PATH --to USER [--expires 10m|2h|7d]";

/// What a bare `accept` answers.
pub const ACCEPT_USAGE: &str =
    "usage: accept N [N...] | all (the numbers `offers` shows, or the offers' ids)";

/// What a bare `decline` answers.
pub const DECLINE_USAGE: &str =
    "usage: decline N [N...] | all (the numbers `offers` shows, or the offers' ids)";

/// What `network` with an unknown subcommand, or `network join` without a phrase, answers.
pub const NETWORK_USAGE: &str =
    "usage: network [status] | network new | network join [--force] PHRASE | network leave";

/// What a bare `unsubscribe` answers.
pub const UNSUBSCRIBE_USAGE: &str = "usage: unsubscribe NAME";

impl Command {
    /// Parses one input line. Anything that is not a keyword is a content number or name, so a
    /// file called `list` can still be fetched with `get list`; `get` alone is a usage hint.
    pub fn parse(line: &str) -> Command {
        let line = line.trim();
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((word, rest)) => (word, rest.trim()),
            None => (line, ""),
        };
        match (word.to_ascii_lowercase().as_str(), rest) {
            ("", _) | ("l" | "ls" | "list" | "r" | "refresh", "") => Command::List,
            ("h" | "history", "") => Command::History,
            ("peers", "") => Command::Peers,
            ("find", "") => Command::Usage(FIND_USAGE),
            ("find", pattern) => Command::Find(pattern.to_owned()),
            ("files", "") => Command::Usage(FILES_USAGE),
            ("files", user) => Command::ListFrom(user.to_owned()),
            ("l" | "ls" | "list", rest) if rest.starts_with("--from") => {
                match rest["--from".len()..].trim_start_matches('=').trim() {
                    "" => Command::Usage(FILES_USAGE),
                    user => Command::ListFrom(user.to_owned()),
                }
            }
            ("?" | "help", "") => Command::Help,
            ("q" | "quit" | "exit", "") => Command::Quit,
            ("get" | "download" | "d", "") => Command::Usage(GET_USAGE),
            ("share", "") => Command::Usage("usage: share PATH"),
            ("share", rest) => Command::Share(rest.to_owned()),
            ("unshare", "") => Command::Usage("usage: unshare NAME|PATH"),
            ("unshare", rest) => Command::Unshare(rest.to_owned()),
            ("shared", "") => Command::Shared,
            ("get" | "download" | "d", rest) => Command::Download(Selection::parse(rest)),
            ("subscriptions", "") => Command::Subscriptions,
            ("subscribe", "") => Command::Usage(SUBSCRIBE_USAGE),
            ("subscribe", rest) => match rest.rsplit_once(" --from ") {
                Some((name, user)) if !name.trim().is_empty() && !user.trim().is_empty() => {
                    Command::Subscribe {
                        name: name.trim().to_owned(),
                        from: Some(user.trim().to_owned()),
                    }
                }
                _ => Command::Subscribe {
                    name: rest.to_owned(),
                    from: None,
                },
            },
            ("send", rest) => parse_send(rest),
            ("sends", "") => Command::Sends,
            ("unsend", "") => Command::Usage("usage: unsend ID|all (as `sends` shows it)"),
            ("unsend", id) => Command::Unsend(id.to_owned()),
            ("offers", "") => Command::Offers,
            ("accept", which) => match Selectors::parse(&[which]) {
                Ok(selectors) => Command::Accept(selectors),
                Err(_) => Command::Usage(ACCEPT_USAGE),
            },
            ("decline", which) => match Selectors::parse(&[which]) {
                Ok(selectors) => Command::Decline(selectors),
                Err(_) => Command::Usage(DECLINE_USAGE),
            },
            ("network", rest) => parse_network(rest),
            ("unsubscribe", "") => Command::Usage(UNSUBSCRIBE_USAGE),
            ("unsubscribe", rest) => Command::Unsubscribe(rest.to_owned()),
            _ => Command::Download(Selection::parse(line)),
        }
    }
}

/// `PATH --to USER [--expires DURATION]` (the path may hold spaces; the last ` --to ` ends it).
fn parse_send(rest: &str) -> Command {
    let Some((path, after)) = rest.rsplit_once(" --to ") else {
        return Command::Usage(SEND_USAGE);
    };
    let mut words = after.split_whitespace();
    let (path, to) = (path.trim(), words.next().unwrap_or(""));
    let expires = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some("--expires"), Some(d), None) => Some(d.to_owned()),
        _ => return Command::Usage(SEND_USAGE),
    };
    if path.is_empty() || to.is_empty() {
        return Command::Usage(SEND_USAGE);
    }
    Command::Send {
        path: path.to_owned(),
        to: to.to_owned(),
        expires,
    }
}

/// What follows `network`: a subcommand (any case), and for `join` the phrase, with
/// `--force` anywhere among its words.
fn parse_network(rest: &str) -> Command {
    let (word, rest) = match rest.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (rest, ""),
    };
    let action = match (word.to_ascii_lowercase().as_str(), rest) {
        ("" | "status", "") => NetworkAction::Status,
        ("new", "") => NetworkAction::New,
        ("leave", "") => NetworkAction::Leave,
        ("join", rest) => {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let force = words.contains(&"--force");
            let phrase: Vec<&str> = words.into_iter().filter(|w| *w != "--force").collect();
            if phrase.is_empty() {
                return Command::Usage(NETWORK_USAGE);
            }
            // Quotes copied along with the phrase are not part of it.
            let phrase = phrase.join(" ").replace(['"', '\''], "");
            NetworkAction::Join { phrase, force }
        }
        _ => return Command::Usage(NETWORK_USAGE),
    };
    Command::Network(action)
}

impl Selection {
    /// A number when the text is all digits, else a name.
    pub fn parse(text: &str) -> Selection {
        match text.parse::<usize>() {
            Ok(n) if !text.starts_with('+') => Selection::Number(n),
            _ => Selection::Name(text.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Command {
        Command::Download(Selection::Name(s.into()))
    }

    fn these(words: &[&str]) -> Selectors {
        Selectors::These(words.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn offer_selectors_are_numbers_ids_or_all_alone() {
        assert_eq!(Selectors::parse(&["3"]), Ok(these(&["3"])));
        assert_eq!(
            Selectors::parse(&["1", "3 4", "1,3f9c", ""]),
            Ok(these(&["1", "3", "4", "3f9c"])),
            "split on commas and spaces, each once, in order"
        );
        assert_eq!(Selectors::parse(&["all"]), Ok(Selectors::All));
        assert_eq!(Selectors::parse(&["All", "all"]), Ok(Selectors::All));
        assert!(Selectors::parse(&["all", "2"]).is_err());
        assert!(Selectors::parse::<&str>(&[]).is_err());
        assert!(Selectors::parse(&[" , "]).is_err());
        assert!(these(&["1"]).is_one());
        assert!(!these(&["1", "2"]).is_one());
        assert!(!Selectors::All.is_one());
    }

    #[test]
    fn subscriptions() {
        for (line, expected) in [
            (
                "subscribe my report.pdf",
                Command::Subscribe {
                    name: "my report.pdf".into(),
                    from: None,
                },
            ),
            (
                "subscribe report.pdf --from alice",
                Command::Subscribe {
                    name: "report.pdf".into(),
                    from: Some("alice".into()),
                },
            ),
            ("subscribe", Command::Usage(SUBSCRIBE_USAGE)),
            ("unsubscribe  a b ", Command::Unsubscribe("a b".into())),
            ("unsubscribe", Command::Usage(UNSUBSCRIBE_USAGE)),
            ("subscriptions", Command::Subscriptions),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn sending_and_offers() {
        let send = |path: &str, to: &str, expires: Option<&str>| Command::Send {
            path: path.into(),
            to: to.into(),
            expires: expires.map(str::to_owned),
        };
        for (line, expected) in [
            (
                "send /tmp/a b.pdf --to carol",
                send("/tmp/a b.pdf", "carol", None),
            ),
            (
                "send x --to bob --expires 10m",
                send("x", "bob", Some("10m")),
            ),
            ("send", Command::Usage(SEND_USAGE)),
            ("send x", Command::Usage(SEND_USAGE)),
            ("send x --to ", Command::Usage(SEND_USAGE)),
            ("send x --to bob --expires", Command::Usage(SEND_USAGE)),
            ("send x --to bob extra", Command::Usage(SEND_USAGE)),
            ("sends", Command::Sends),
            ("unsend 3f9c", Command::Unsend("3f9c".into())),
            ("offers", Command::Offers),
            ("accept 2", Command::Accept(these(&["2"]))),
            ("accept 1 3  4", Command::Accept(these(&["1", "3", "4"]))),
            ("accept 1,3", Command::Accept(these(&["1", "3"]))),
            ("accept all", Command::Accept(Selectors::All)),
            ("accept ALL", Command::Accept(Selectors::All)),
            ("accept all 2", Command::Usage(ACCEPT_USAGE)),
            ("accept", Command::Usage(ACCEPT_USAGE)),
            ("decline 1", Command::Decline(these(&["1"]))),
            ("decline all", Command::Decline(Selectors::All)),
            ("decline", Command::Usage(DECLINE_USAGE)),
            ("unsend all", Command::Unsend("all".into())),
            ("get offers", name("offers")),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn network() {
        let join = |phrase: &str, force| {
            Command::Network(NetworkAction::Join {
                phrase: phrase.into(),
                force,
            })
        };
        for (line, expected) in [
            ("network", Command::Network(NetworkAction::Status)),
            ("NETWORK status", Command::Network(NetworkAction::Status)),
            ("network new", Command::Network(NetworkAction::New)),
            ("network Leave", Command::Network(NetworkAction::Leave)),
            ("network join a b c", join("a b c", false)),
            ("network join \"a-b-c\"", join("a-b-c", false)),
            ("network join --force a b", join("a b", true)),
            ("network join a b --force", join("a b", true)),
            ("network join", Command::Usage(NETWORK_USAGE)),
            ("network join --force", Command::Usage(NETWORK_USAGE)),
            ("network new x", Command::Usage(NETWORK_USAGE)),
            ("network lave", Command::Usage(NETWORK_USAGE)),
            ("get network", name("network")),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn keywords() {
        for (line, expected) in [
            ("", Command::List),
            ("   ", Command::List),
            ("list", Command::List),
            ("LS", Command::List),
            ("r", Command::List),
            ("history", Command::History),
            ("h", Command::History),
            ("?", Command::Help),
            ("help", Command::Help),
            ("q", Command::Quit),
            ("quit\n", Command::Quit),
            ("exit", Command::Quit),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn network_views() {
        for (line, expected) in [
            ("peers", Command::Peers),
            ("PEERS ", Command::Peers),
            ("find photo", Command::Find("photo".into())),
            ("find  *.JPG ", Command::Find("*.JPG".into())),
            ("find photos/2024/*", Command::Find("photos/2024/*".into())),
            ("find", Command::Usage(FIND_USAGE)),
            ("files alice", Command::ListFrom("alice".into())),
            ("files", Command::Usage(FILES_USAGE)),
            ("list --from Bob", Command::ListFrom("Bob".into())),
            ("ls --from=bob", Command::ListFrom("bob".into())),
            ("list --from", Command::Usage(FILES_USAGE)),
            // A file named like a command is still fetched with `get`.
            ("get peers", name("peers")),
            ("get find x", name("find x")),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn numbers_and_names() {
        let number = |n| Command::Download(Selection::Number(n));
        for (line, expected) in [
            ("3", number(3)),
            (" 12 ", number(12)),
            ("photo.png", name("photo.png")),
            ("my notes.txt", name("my notes.txt")),
            ("+3", name("+3")),
            ("get 2", number(2)),
            ("get list", name("list")),
            ("download my file", name("my file")),
            ("get", Command::Usage(GET_USAGE)),
            ("GET  ", Command::Usage(GET_USAGE)),
            ("d", Command::Usage(GET_USAGE)),
            ("get get", name("get")),
            ("list files", name("list files")),
            ("share /tmp/my file", Command::Share("/tmp/my file".into())),
            ("unshare a.txt", Command::Unshare("a.txt".into())),
            ("shared", Command::Shared),
            ("share", Command::Usage("usage: share PATH")),
            ("get shared", name("shared")),
        ] {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }
}
