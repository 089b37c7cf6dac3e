//! The command line: [`Args`] (clap; each field's `///` is its `--help` text), turned into the
//! library's [`Config`] and the [`Program`] settings of `run_main`. Binary-only: clap stays out
//! of the library.

use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cli_support::{peer_toml, GenerateFlag};
use downloader::command::{Selection, Selectors};
use downloader::fetch::{Limits, Network};
use downloader::json::Format;
use downloader::{folder, network, sync};
use downloader::{Config, Feedback, ListFilter};
use log::LevelFilter;
use shared::peer_dir::PeerDir;
use shared::program::Program;
use shared::shutdown::Shutdown;

/// The end of `--help`, after the note on DIR/peer.toml: real commands, each with what it does.
const EXAMPLES: &str = "\
Examples:
  downloader --dir bob                   the interactive prompt: list, get NAME, history, quit
  downloader --dir bob list              what the peers offer, numbered
  downloader --dir bob get photo.png     download it; prints its path when complete and verified";

/// Download files from the peers on this network (reads tags.txt, written by `listener`).
#[derive(Debug, Parser)]
#[command(version, about, after_help = peer_toml::after_help("downloader", EXAMPLES))]
pub(crate) struct Args {
    /// The peer folder: tags.txt is read here, chunks go to temp/, files to downloads/.
    #[arg(long, default_value = ".", global = true)]
    pub(crate) dir: PathBuf,
    /// Source address for connections to chunk servers (several peers on one host: 127.0.0.x).
    #[arg(long, value_name = "IP", global = true)]
    bind: Option<IpAddr>,
    /// Seconds of silence after which a holder is given up (and a trickling holder is
    /// abandoned for another when it moved under 64 KiB in this long).
    #[arg(long, value_name = "SECS", default_value_t = shared::IO_IDLE_TIMEOUT.as_secs_f64(), global = true, value_parser = positive_secs)]
    idle_timeout: f64,
    /// Seconds after which a chunk still in flight is also asked of an idle holder (endgame).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, global = true, value_parser = positive_secs)]
    endgame_after: f64,
    /// Largest file accepted, in bytes (suffixes K, M, G, T: powers of 1024); a file announced
    /// larger is refused, and a legacy peer cannot send more than a fifth of it per chunk.
    #[arg(long, value_name = "BYTES", default_value = "64G", global = true, value_parser = parse_bytes)]
    max_size: u64,
    /// Free space to keep on the disk of temp/, checked before and while downloading.
    #[arg(long, value_name = "BYTES", default_value = "64M", global = true, value_parser = parse_bytes)]
    min_free: u64,
    #[command(flatten)]
    pub(crate) generate: GenerateFlag,
    /// Log debug details on stderr; but `get` on a terminal shows a bar per chunk (with its
    /// holder) under the progress bar instead, as log lines would tear the bars.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Print nothing on stderr but errors: no progress (`get`), no warnings.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// List the files on offer: name, size, holders, whether all 5 chunks are available.
    List {
        /// Show only the names that contain this text, or match it as a glob when it holds
        /// `*` or `?` (`'*.mkv'`); case is ignored. Numbers stay those of the full list.
        pattern: Option<String>,
        /// Show only the files this user holds (case ignored); an unknown user is an error
        /// that lists the users heard.
        #[arg(long, value_name = "USER")]
        from: Option<String>,
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Find files by name across all peers: who holds each match, where, and which chunks.
    Find {
        /// A part of the name (folder path included), or a glob over the whole name when it
        /// holds `*` or `?` (`*` also matches `/`: `'photos/*'` is the whole tree); case is
        /// ignored.
        pattern: String,
        /// Print one JSON array on stdout (the shape of `list --json`; docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// List every peer heard: username, address, protocol, files, last heard, and whether
    /// its chunk server answers (all peers asked at once, 500 ms each).
    Peers {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Download a file by name (or list number), or a whole folder (`photos/`); prints the
    /// path of each file when complete and verified.
    Get {
        /// The file's name as listed, its number in `list`, or a folder (`photos/`).
        name: String,
        /// Of several different files with this name, take the one whose SHA-256 starts so.
        #[arg(long, value_name = "PREFIX")]
        sha256: Option<String>,
        /// Print one JSON result object on stdout, also on failure, instead of the path
        /// (progress stays on stderr; shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Show past downloads, from client.log.
    History {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Follow a file: each new version announced under its name replaces downloads/NAME
    /// (the old one is kept in downloads/.previous/), while `sync` or the prompt runs.
    Subscribe {
        /// The file's name as listed.
        name: String,
        /// Take only the versions this user announces (default: any holder's).
        #[arg(long, value_name = "USER")]
        from: Option<String>,
    },
    /// Stop following a file.
    Unsubscribe {
        /// The file's name.
        name: String,
    },
    /// List the files followed, from whom, and the version here.
    Subscriptions {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Keep the followed files up to date until stopped (Ctrl-C, SIGTERM): one per folder.
    Sync,
    /// Share files or folders now (added to DIR/shares.txt, which the chunk server watches).
    Share {
        /// Files or folders to share (a folder: its whole tree, under the folder's name).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Stop sharing a content, by its name or path (removed from DIR/shares.txt, or excluded).
    Unshare {
        /// Content names as `shared` lists them, folders (`photos/`), or paths that were shared.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// List what this peer shares: name, size, SHA-256 (once hashed), path.
    Shared {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Offer a file, or a folder's files, to one user: nothing reaches them unless they accept
    /// (DIR/sends.txt).
    Send {
        /// The file to offer, or a folder: each file of its tree is offered, named by its
        /// path from the folder on (at most 1000; served in place, unlisted, while the offer
        /// lasts).
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// The username to offer it to.
        #[arg(long, value_name = "USER")]
        to: String,
        /// How long the offer lasts: 90s, 10m, 2h, 7d (at most 7 days).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = downloader::send::parse_lifetime)]
        expires: Duration,
    },
    /// List the offers this peer sent: id, recipient, name, time left, state.
    Sends {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Cancel an offer sent (its id as `sends` shows it, or the start of it), or `all`.
    Unsend {
        /// The offer's id, or `all`.
        id: String,
    },
    /// List the offers received and pending, numbered for `accept N` / `decline N`.
    Offers {
        /// Print one JSON array on stdout instead of the table (shapes: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Accept offers: download each into downloads/ (from the sender and any other holder),
    /// verified; prints their paths.
    Accept {
        /// Their numbers in `offers`, or ids, or `all`.
        #[arg(required = true, value_name = "N|ID|all")]
        offers: Vec<String>,
        /// Print JSON on stdout: for one offer the result object of `get --json`, for
        /// several (or all) an array of them.
        #[arg(long)]
        json: bool,
    },
    /// Decline offers: they are never shown again, and nothing of them is written.
    Decline {
        /// Their numbers in `offers`, or ids, or `all`.
        #[arg(required = true, value_name = "N|ID|all")]
        offers: Vec<String>,
    },
    /// This folder's network: open (anyone on the LAN), or private (the machines that typed
    /// one passphrase); with no subcommand, which one it is (`status`).
    #[command(args_conflicts_with_subcommands = true, after_help = NETWORK_EXAMPLES)]
    Network {
        /// What to do; `status` when none.
        #[command(subcommand)]
        action: Option<NetworkCmd>,
        /// Print the status as one JSON object on stdout (shape: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
}

/// The end of `downloader network --help`.
const NETWORK_EXAMPLES: &str = "\
Examples:
  downloader --dir alice network new                 make one; prints its passphrase
  downloader --dir bob network join \"PHRASE\"         on each other machine
  downloader --dir bob network                       open or private, network id, peer ID";

/// `downloader network …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCmd {
    /// Make a private network: prints a new passphrase (6 words) for the other machines to
    /// join with, and keeps the key made from it in DIR/network.key (mode 0600).
    New,
    /// Join a private network with its passphrase (from `network new` on another machine):
    /// its key goes to DIR/network.key; a typo gets the closest word, and nothing is written.
    Join {
        /// The passphrase, quoted or as separate words; case, spaces and dashes do not matter.
        #[arg(required = true, value_name = "PHRASE")]
        phrase: Vec<String>,
        /// Replace the key of another private network this folder is on.
        #[arg(long)]
        force: bool,
    },
    /// Leave the private network: removes DIR/network.key; the network is open again.
    Leave,
    /// Open or private (and which network), this peer's ID, and the key file.
    Status {
        /// Print one JSON object on stdout (shape: docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
}

impl Cmd {
    /// Runs the command: results (a table, a path, or JSON) on stdout; `get`'s progress on
    /// stderr.
    pub(crate) fn run(
        self,
        config: &Config,
        shutdown: &Shutdown,
        feedback: Feedback,
    ) -> Result<(), downloader::Error> {
        let out = &mut io::stdout();
        match self {
            Cmd::List {
                pattern,
                from,
                json,
            } => {
                let filter = ListFilter {
                    pattern: pattern.as_deref(),
                    from: from.as_deref(),
                };
                downloader::list(config, &filter, Format::json_if(json), out).map(drop)
            }
            Cmd::Find { pattern, json } => {
                downloader::find(config, &pattern, Format::json_if(json), out).map(drop)
            }
            Cmd::Peers { json } => downloader::peers(config, Format::json_if(json), out),
            Cmd::History { json } => downloader::history(config, Format::json_if(json), out),
            Cmd::Get { name, sha256, json } => {
                let selection = Selection::parse(&name);
                let folder = match &sha256 {
                    None => downloader::load_catalog(config)
                        .ok()
                        .and_then(|catalog| folder::folder_of(&catalog, &selection)),
                    Some(_) => None,
                };
                if let Some(prefix) = folder {
                    let got =
                        folder::get_folder(config, &prefix, shutdown, feedback, &mut io::stderr())?;
                    folder::print_folder_result(&got, Format::json_if(json), out)?;
                    return got.status();
                }
                let sha256 = sha256.as_deref();
                let result = downloader::get(
                    config,
                    &selection,
                    sha256,
                    shutdown,
                    feedback,
                    &mut io::stderr(),
                );
                downloader::print_get_result(&name, &result, Format::json_if(json), out)?;
                result.map(drop)
            }
            Cmd::Subscribe { name, from } => sync::subscribe(config, &name, from.as_deref(), out),
            Cmd::Unsubscribe { name } => sync::unsubscribe(config, &name, out),
            Cmd::Subscriptions { json } => {
                sync::list_subscriptions(config, Format::json_if(json), out)
            }
            Cmd::Sync => sync::run(config, shutdown, out),
            Cmd::Share { paths } => downloader::share(config, &paths, out),
            Cmd::Unshare { names } => downloader::unshare(config, &names, out),
            Cmd::Shared { json } => downloader::shared(config, Format::json_if(json), out),
            Cmd::Send { path, to, expires } => {
                downloader::send::send(config, &path, &to, Some(expires), out)
            }
            Cmd::Sends { json } => downloader::send::list_sends(config, Format::json_if(json), out),
            Cmd::Unsend { id } => downloader::send::unsend(config, &id, out),
            Cmd::Offers { json } => {
                downloader::offers::list_offers(config, Format::json_if(json), out)
            }
            Cmd::Accept { offers, json } => {
                let selectors = Selectors::parse(&offers).map_err(downloader::Error::Invalid)?;
                if let (true, [offer]) = (selectors.is_one(), &offers[..]) {
                    let result = downloader::offers::accept(
                        config,
                        offer,
                        shutdown,
                        feedback,
                        &mut io::stderr(),
                    );
                    downloader::print_get_result(offer, &result, Format::json_if(json), out)?;
                    return result.map(drop);
                }
                let outcomes = downloader::offers::accept_many(
                    config,
                    &selectors,
                    shutdown,
                    feedback,
                    &mut io::stderr(),
                )?;
                downloader::offers::print_accepted(&outcomes, Format::json_if(json), out)
            }
            Cmd::Decline { offers } => {
                let selectors = Selectors::parse(&offers).map_err(downloader::Error::Invalid)?;
                downloader::offers::decline(config, &selectors, out)
            }
            Cmd::Network { action, json } => match action {
                None => network::status(config, Format::json_if(json), out),
                Some(NetworkCmd::Status { json }) => {
                    network::status(config, Format::json_if(json), out)
                }
                Some(NetworkCmd::New) => network::new(config, feedback, &mut io::stderr(), out),
                Some(NetworkCmd::Join { phrase, force }) => network::join(
                    config,
                    &phrase.join(" "),
                    force,
                    feedback,
                    &mut io::stderr(),
                    out,
                )
                .map(drop),
                Some(NetworkCmd::Leave) => network::leave(config, out),
            },
        }
    }
}

impl Args {
    /// The checks clap cannot make: a passphrase given to `network join` must be one (every
    /// word in the list, enough of them). Like any wrong command line, a failure is exit status
    /// 2, with the closest word to a typo.
    pub(crate) fn check(&self) -> Result<(), String> {
        match &self.command {
            Some(Cmd::Network {
                action: Some(NetworkCmd::Join { phrase, .. }),
                ..
            }) => shared::trust::key::normalize_phrase(&phrase.join(" "))
                .map(drop)
                .map_err(|e| format!("network join: {e}; nothing changed")),
            _ => Ok(()),
        }
    }
}

/// `123`, `10K`, `64M`, `1G`, `2T` (powers of 1024).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (use K, M, G or T)")),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{text:?} is not a number of bytes"))
}

pub(crate) fn positive_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs < 1e9 => Ok(secs),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

impl Args {
    /// How the program runs. The prompt creates the peer folder and logs to its `client.log`;
    /// `get` logs there too when the folder exists (a missing one is an error it reports);
    /// `list` and `history` only read, so they create nothing and log to stderr alone. At the
    /// prompt only errors reach the terminal, so log lines do not break up the dialogue.
    pub(crate) fn program(&self) -> Program {
        let dir = PeerDir::new(&self.dir);
        let (create_dir, log_file) = match &self.command {
            None => (Some(self.dir.clone()), true),
            Some(Cmd::Get { .. }) => (None, self.dir.is_dir()),
            // `new` and `join` are how a machine starts: they make the folder for the key.
            Some(Cmd::Network {
                action: Some(NetworkCmd::New | NetworkCmd::Join { .. }),
                ..
            }) => (Some(self.dir.clone()), false),
            Some(
                Cmd::Sync
                | Cmd::Subscribe { .. }
                | Cmd::Unsubscribe { .. }
                | Cmd::Accept { .. }
                | Cmd::Decline { .. }
                | Cmd::Send { .. }
                | Cmd::Unsend { .. },
            ) => (None, self.dir.is_dir()),
            Some(
                Cmd::List { .. }
                | Cmd::History { .. }
                | Cmd::Find { .. }
                | Cmd::Peers { .. }
                | Cmd::Subscriptions { .. }
                | Cmd::Share { .. }
                | Cmd::Unshare { .. }
                | Cmd::Shared { .. }
                | Cmd::Sends { .. }
                | Cmd::Offers { .. }
                | Cmd::Network { .. },
            ) => (None, false),
        };
        // `get -v` on a terminal draws the chunks' bars, which log lines would tear.
        let chunk_bars = matches!(self.command, Some(Cmd::Get { .. } | Cmd::Accept { .. }))
            && self.feedback() == Feedback::ChunkBars;
        let terminal = match (self.verbose, self.quiet || self.command.is_none()) {
            (true, _) if chunk_bars => LevelFilter::Warn,
            (true, _) => LevelFilter::Debug,
            (false, true) => LevelFilter::Error,
            (false, false) => LevelFilter::Warn,
        };
        Program {
            name: "downloader",
            create_dir,
            terminal,
            log_file: log_file.then(|| (dir.client_log(), LevelFilter::Info)),
            // One `sync` per folder; the prompt leaves the syncing to it while it runs.
            single_in: matches!(self.command, Some(Cmd::Sync)).then(|| self.dir.clone()),
        }
    }

    /// How `get` shows its progress on stderr: a bar on a terminal (with `--verbose`, and a
    /// bar per chunk), plain lines elsewhere, nothing with `--quiet`.
    pub(crate) fn feedback(&self) -> Feedback {
        if self.quiet {
            Feedback::Quiet
        } else if std::io::stderr().is_terminal() && self.verbose {
            Feedback::ChunkBars
        } else if std::io::stderr().is_terminal() {
            Feedback::Bar
        } else {
            Feedback::Lines
        }
    }

    /// The library's settings.
    pub(crate) fn into_config(self) -> Config {
        let idle = Duration::from_secs_f64(self.idle_timeout);
        Config {
            dir: PeerDir::new(&self.dir),
            net: Network {
                bind: self.bind,
                idle,
                stall_window: idle.min(Network::default().stall_window),
                limits: Limits {
                    max_size: self.max_size,
                    min_free: self.min_free,
                },
                ..Network::default()
            },
            endgame_after: Duration::from_secs_f64(self.endgame_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("10K"), Ok(10 << 10));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes(" 2T "), Ok(2 << 40));
        assert!(parse_bytes("5X").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("99999999999T").is_err(), "overflow");
    }

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert_eq!(positive_secs("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "1e10", "x"] {
            assert!(positive_secs(bad).is_err(), "{bad}");
        }
    }
}
