//! `downloader`: list what peers offer, download a file, show the history, or (with no
//! subcommand) an interactive prompt.

use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use downloader::command::Selection;
use downloader::fetch::{Limits, Network};
use downloader::Config;
use log::LevelFilter;
use shared::logging::{self, LogOptions};
use shared::peer_dir::PeerDir;
use shared::shutdown::{self, Shutdown};

/// Download files from the peers on this network (reads tags.txt, written by `listener`).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The peer folder: tags.txt is read here, chunks go to temp/, files to downloads/.
    #[arg(long, default_value = ".", global = true)]
    dir: PathBuf,
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
    /// Log debug details on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the files on offer: name, size, holders, whether all 5 chunks are available.
    List,
    /// Download a file by name (or list number); prints its path when complete and verified.
    Get {
        /// The file's name as listed, or its number in `list`.
        name: String,
        /// Of several different files with this name, take the one whose SHA-256 starts so.
        #[arg(long, value_name = "PREFIX")]
        sha256: Option<String>,
    },
    /// Show past downloads, from client.log.
    History,
}

/// `123`, `10K`, `64M`, `1G`, `2T` (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, String> {
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

fn positive_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs < 1e9 => Ok(secs),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = PeerDir::new(&args.dir);
    if let Err(e) = dir.create() {
        eprintln!(
            "error: cannot create the peer folder {}: {e}",
            args.dir.display()
        );
        return ExitCode::FAILURE;
    }
    let interactive = args.command.is_none();
    // At the prompt only warnings reach the terminal, so log lines do not break up the dialogue.
    let terminal = match (args.verbose, interactive) {
        (true, _) => LevelFilter::Debug,
        (false, true) => LevelFilter::Error,
        (false, false) => LevelFilter::Warn,
    };
    if let Err(e) = logging::init(LogOptions {
        terminal,
        file: Some((dir.client_log(), LevelFilter::Info)),
    }) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown::install_ctrlc_handler(&shutdown) {
        eprintln!("error: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    let idle = Duration::from_secs_f64(args.idle_timeout);
    let config = Config {
        dir,
        net: Network {
            bind: args.bind,
            idle,
            stall_window: idle.min(Network::default().stall_window),
            limits: Limits {
                max_size: args.max_size,
                min_free: args.min_free,
            },
            ..Network::default()
        },
        endgame_after: Duration::from_secs_f64(args.endgame_after),
    };

    let result = match args.command {
        Some(Cmd::List) => downloader::list(&config, &mut io::stdout()),
        Some(Cmd::History) => downloader::history(&config, &mut io::stdout()),
        Some(Cmd::Get { name, sha256 }) => {
            // Progress goes to stderr, the path alone to stdout: `path=$(downloader get x)`.
            downloader::get(
                &config,
                &Selection::parse(&name),
                sha256.as_deref(),
                &shutdown,
                &mut io::stderr(),
            )
            // The path as it is, for scripts: the content name in it passed
            // `validate_content_name`, so it holds nothing a terminal would obey.
            .map(|outcome| println!("{}", outcome.path.display()))
        }
        None => {
            if !io::stdin().is_terminal() {
                log::debug!("standard input is not a terminal; reading commands from it");
            }
            downloader::interactive(
                &config,
                io::BufReader::new(io::stdin()),
                &mut io::stdout(),
                &shutdown,
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote names and peers' messages: shown, never obeyed.
            eprintln!(
                "error: {}",
                shared::text::terminal_safe(&logging::describe_error(&e))
            );
            // Stopped by a signal: say so in the status too (130 for Ctrl-C, 143 for SIGTERM).
            shutdown
                .exit_status()
                .filter(|_| e.is_cancelled())
                .map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}
