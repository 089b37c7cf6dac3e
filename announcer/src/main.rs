//! `announcer`: the command line around [`announcer::run`].

use std::error::Error as StdError;
use std::io::{self, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use announcer::username::{self, Origin};
use announcer::Config;
use shared::logging;
use shared::peer_dir::PeerDir;
use shared::protocol::MAX_ANNOUNCE_INTERVAL_SECS;
use shared::shutdown::{self, Shutdown};
use shared::{DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

/// Announce the chunks in DIR/temp to the LAN by UDP broadcast (and to static peers by unicast).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The peer folder (chunks are read from DIR/temp).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Local IP address to send from.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Name to announce; default: the one stored in DIR/username.txt, else asked once at the
    /// terminal, else the host name.
    #[arg(long)]
    username: Option<String>,
    /// Where to send announcements, ADDR[:PORT] (repeatable); default: the directed broadcast
    /// address of every up, non-loopback IPv4 interface.
    #[arg(long = "broadcast", value_name = "ADDR[:PORT]")]
    broadcast: Vec<String>,
    /// A peer that broadcasts cannot reach, HOST[:PORT] (repeatable; PORT defaults to --port):
    /// every announcement and the goodbye also go to it by unicast. DIR/peers.txt lists more,
    /// one per line.
    #[arg(long = "peer", value_name = "HOST[:PORT]")]
    peer: Vec<String>,
    /// UDP port announcements are sent to.
    #[arg(long, default_value_t = DEFAULT_ANNOUNCE_PORT)]
    port: u16,
    /// Seconds between periodic announcements (at most 600: listeners honour no longer
    /// interval).
    #[arg(long, default_value_t = DEFAULT_ANNOUNCE_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_ANNOUNCE_INTERVAL_SECS))]
    interval: u64,
    /// TCP port of our chunk server, announced to our peers.
    #[arg(long, default_value_t = DEFAULT_CHUNK_PORT)]
    chunk_port: u16,
    /// Bytes per second of answers to other peers' queries, all together (0 = no limit); each
    /// address also gets at most 4 answers at once, then one a second.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = announcer::budget::DEFAULT_ANSWER_RATE)]
    max_answer_rate: u64,
    /// Log debugging details.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let verbose = args.verbose;
    logging::run_terminal_program("announcer", verbose, || start(args))
}

fn start(args: Args) -> Result<(), Box<dyn StdError>> {
    // The username is settled before the Ctrl-C handler is installed, so that Ctrl-C at the
    // prompt ends the program at once instead of waiting for the line to be entered.
    let dir = PeerDir::new(&args.dir);
    let terminal = io::stdin()
        .is_terminal()
        .then(|| (io::stdin().lock(), io::stderr()));
    let name = username::resolve(args.username.as_deref(), &dir, terminal)?;
    match name.origin {
        Origin::Prompted => log::info!(
            "username {:?} stored in {}",
            name.name,
            dir.username_file().display()
        ),
        Origin::Hostname => log::info!(
            "no terminal to ask a username at: using the host name {:?}",
            name.name
        ),
        Origin::Flag | Origin::Stored => {}
    }

    let shutdown = Shutdown::new();
    shutdown::install_ctrlc_handler(&shutdown)?;

    let targets = if args.broadcast.is_empty() {
        shared::net::broadcast_targets(args.port)
    } else {
        args.broadcast
            .iter()
            .map(|text| shared::net::parse_host_port(text, args.port))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad --broadcast: {e}"))?
    };
    let peers = args
        .peer
        .iter()
        .map(|text| shared::net::parse_host_port(text, args.port))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad --peer: {e}"))?;
    let config = Config {
        dir: args.dir,
        username: name.name,
        targets,
        peers,
        peer_port: args.port,
        interval: Duration::from_secs(args.interval),
        chunk_port: args.chunk_port,
        watch: announcer::DEFAULT_WATCH,
        instance: announcer::new_instance_id(),
        answer_rate: args.max_answer_rate,
    };
    let bind = SocketAddr::new(args.bind, 0);
    let socket = shared::net::bind_udp_shared(bind)
        .map_err(|e| format!("cannot bind a UDP socket to {bind}: {e}"))?;
    announcer::run(socket, config, shutdown)?;
    Ok(())
}
