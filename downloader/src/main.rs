//! `downloader`: list what peers offer, find files, see the peers, download a file, show the
//! history, or (with no subcommand) an interactive prompt. Commands run in `cli.rs`.

mod cli;

use std::io;
use std::process::ExitCode;

use cli_support::peer_toml;
use shared::program::{self, MainError};
use shared::text::terminal_safe;

fn main() -> ExitCode {
    let mut args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    if let Err(message) = args.check() {
        // A wrong command line, as clap's own errors: status 2, nothing done.
        eprintln!("downloader: error: {}", terminal_safe(&message));
        return ExitCode::from(2);
    }
    program::run_main(args.program(), |shutdown| {
        let command = args.command.take();
        let feedback = args.feedback();
        let mut config = args.into_config();
        // On a private network our holders are asked only over the encrypted channel.
        config.net.keys = downloader::fetch::channel_keys(config.dir.root())?;
        let result = match command {
            Some(command) => command.run(&config, shutdown, feedback),
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
