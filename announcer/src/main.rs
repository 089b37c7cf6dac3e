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
    // The username may be asked at the terminal: once the folder is ours, before Ctrl-C is
    // taken over (see `run_main_asking`).
    let ask = args.username_asker();
    program::run_main_asking(args.program(), ask, |shutdown, username| {
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
