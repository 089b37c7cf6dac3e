//! `listener`: the command line around [`listener::run`].

mod cli;

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;

use cli_support::peer_toml;

use shared::program::{self, MainError};

fn main() -> ExitCode {
    let args: cli::Args = peer_toml::parse(); // flags, then DIR/peer.toml
    if let Some(exit) = args.generate.print::<cli::Args>() {
        return exit; // --generate: printed, nothing else done
    }
    program::run_main(args.program(), |shutdown| {
        let bind = args.bind();
        let config = args.into_config()?;
        let cannot_bind = |addr: SocketAddr, e| {
            MainError::msg(format!("cannot bind a UDP socket to {addr}: {e}"))
        };
        let socket = shared::net::bind_udp_shared(bind).map_err(|e| cannot_bind(bind, e))?;
        // Not shared (no SO_REUSEADDR): answers to queries come here by unicast, and the port
        // must be this listener's alone.
        let query_bind = SocketAddr::new(bind.ip(), 0);
        let query_socket = UdpSocket::bind(query_bind)
            .and_then(|s| s.set_broadcast(true).map(|()| s))
            .map_err(|e| cannot_bind(query_bind, e))?;
        listener::run(socket, query_socket, config, shutdown.clone())?;
        Ok(())
    })
}
