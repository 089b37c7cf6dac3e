//! `downloader`: list what peers offer, download a file, show the history, or (with no
//! subcommand) an interactive prompt.

mod cli;

use std::process::ExitCode;

use cli_support::peer_toml;
use shared::program::{self, MainError};

fn main() -> ExitCode {
    let mut args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    program::run_main(args.program(), |shutdown| {
        let command = args.command.take();
        let feedback = args.feedback();
        let config = args.into_config();
        let result = cli::run(command, &config, feedback, shutdown);
        // Stopped by a signal: say so in the status too (130 for Ctrl-C, 143 for SIGTERM).
        result.map_err(|e| {
            let cancelled = e.is_cancelled();
            MainError::new(e, cancelled)
        })
    })
}
