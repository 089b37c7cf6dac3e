//! `downloader`: list, get, history, share/unshare/shared, or (no subcommand) a prompt.

mod cli;

use std::io;
use std::process::ExitCode;

use cli_support::peer_toml;
use downloader::command::Selection;
use downloader::json::Format;
use shared::program::{self, MainError};

use cli::Cmd;

fn main() -> ExitCode {
    let mut args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    program::run_main(args.program(), |shutdown| {
        let command = args.command.take();
        let feedback = args.feedback();
        let config = args.into_config();
        let result = match command {
            Some(Cmd::List { pattern, json }) => {
                let format = Format::json_if(json);
                downloader::list(&config, pattern.as_deref(), format, &mut io::stdout())
            }
            Some(Cmd::History { json }) => {
                downloader::history(&config, Format::json_if(json), &mut io::stdout())
            }
            // Progress goes to stderr, the result (the path, or JSON) to stdout.
            Some(Cmd::Get { name, sha256, json }) => {
                let selection = Selection::parse(&name);
                let sha256 = sha256.as_deref();
                let result = downloader::get(
                    &config,
                    &selection,
                    sha256,
                    shutdown,
                    feedback,
                    &mut io::stderr(),
                );
                let (format, out) = (Format::json_if(json), &mut io::stdout());
                downloader::print_get_result(&name, &result, format, out)?;
                result.map(drop)
            }
            Some(sharing) => sharing.run_sharing(&config, &mut io::stdout()),
            None => {
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
