//! `downloader`: list what peers offer, download a file, show the history, or (with no
//! subcommand) an interactive prompt.

mod cli;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use downloader::command::Selection;
use shared::program::{self, MainError};

use cli::Cmd;

fn main() -> ExitCode {
    let mut args = cli::Args::parse();
    program::run_main(args.program(), |shutdown| {
        let command = args.command.take();
        let feedback = args.feedback();
        let config = args.into_config();
        let result = match command {
            Some(Cmd::List) => downloader::list(&config, &mut io::stdout()),
            Some(Cmd::History) => downloader::history(&config, &mut io::stdout()),
            // Progress goes to stderr, the path alone to stdout: `path=$(downloader get x)`. The
            // path is printed as it is, for scripts: its content name passed
            // `validate_content_name`, so it holds nothing a terminal would obey.
            Some(Cmd::Get { name, sha256 }) => {
                let selection = Selection::parse(&name);
                let sha256 = sha256.as_deref();
                downloader::get(
                    &config,
                    &selection,
                    sha256,
                    shutdown,
                    feedback,
                    &mut io::stderr(),
                )
                .map(|outcome| println!("{}", outcome.path.display()))
            }
            None => {
                if !io::stdin().is_terminal() {
                    log::debug!("standard input is not a terminal; reading commands from it");
                }
                let input = io::BufReader::new(io::stdin());
                downloader::interactive(&config, input, &mut io::stdout(), shutdown)
            }
        };
        // Stopped by a signal: say so in the status too (130 for Ctrl-C, 143 for SIGTERM).
        result.map_err(|e| {
            let cancelled = e.is_cancelled();
            MainError::new(e, cancelled)
        })
    })
}
