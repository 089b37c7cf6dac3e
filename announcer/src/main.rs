//! `announcer`: the command line around [`announcer::run`].

mod cli;

use std::process::ExitCode;

use cli_support::peer_toml;

use announcer::prompt::UsernameSource;
use shared::program::{self, MainError};

fn main() -> ExitCode {
    let args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    // The username is settled before the signal handler is installed, so that Ctrl-C at the
    // prompt ends the program at once instead of waiting for the line to be entered.
    let username = args.username();
    program::run_main(args.program(), |shutdown| {
        let username = username?;
        match username.source {
            UsernameSource::Prompted => log::info!(
                "username {:?} stored in {}",
                username.name,
                args.peer_dir().username_file().display()
            ),
            UsernameSource::Hostname => log::info!(
                "no terminal to ask a username at: using the host name {:?}",
                username.name
            ),
            UsernameSource::Flag | UsernameSource::Stored => {}
        }
        let bind = args.bind();
        let config = args.into_config(username.name)?;
        let socket = shared::net::bind_udp_shared(bind)
            .map_err(|e| MainError::msg(format!("cannot bind a UDP socket to {bind}: {e}")))?;
        let query_sockets = announcer::ears::bind_query_sockets(&config);
        announcer::run(socket, query_sockets, config, shutdown.clone())?;
        Ok(())
    })
}
