//! `chunk-server`: shares files with the peers of the LAN, five chunks each, over TCP.
//!
//! A thin wrapper: parses the flags (`cli`); [`program::run_main`] creates the peer folder,
//! starts logging (stderr and `DIR/server.log`) and installs the signal handler; then this binds
//! the listening socket, records where it listens (`DIR/.run/chunk-server.json`) and hands over
//! to [`chunk_server::run`].

mod cli;

use std::process::ExitCode;

use cli_support::peer_toml;
use shared::program;

fn main() -> ExitCode {
    let args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    program::run_main(args.program(), |shutdown| {
        let listener = chunk_server::bind(args.listen_addr())?;
        let config = args.into_config();
        // Removed when the server stops: the announcer announces this port while it exists.
        let _record = chunk_server::record_address(&listener, &config.dir)?;
        chunk_server::run(listener, config, shutdown.clone())?;
        Ok(())
    })
}
