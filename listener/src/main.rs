//! `listener`: the command line around [`listener::run`].

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use listener::index::{
    Limits, DEFAULT_MAX_CHUNKS_PER_DATAGRAM, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRIES_PER_SOURCE,
};
use listener::intake::DEFAULT_SOURCE_RATE;
use listener::Config;
use shared::logging;
use shared::shutdown::{self, Shutdown};
use shared::{DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

/// Listen for peers' announcements and keep DIR/tags.txt up to date; query the network at start.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The peer folder (tags.txt is written there).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Local IP address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// UDP port announcements arrive on (shared with other listeners on this host).
    #[arg(long, default_value_t = DEFAULT_ANNOUNCE_PORT)]
    port: u16,
    /// Where the start-up query is broadcast, ADDR[:PORT] (repeatable; PORT defaults to
    /// --port); default: the directed broadcast address of every up, non-loopback IPv4
    /// interface.
    #[arg(long = "broadcast", value_name = "ADDR[:PORT]")]
    broadcast: Vec<String>,
    /// A peer that broadcasts cannot reach, HOST[:PORT] (repeatable; PORT defaults to --port):
    /// the start-up query also goes to it by unicast. DIR/peers.txt lists more, one per line.
    #[arg(long = "peer", value_name = "HOST[:PORT]")]
    peer: Vec<String>,
    /// TCP port where legacy peers, which announce no port, serve chunks.
    #[arg(long, default_value_t = DEFAULT_CHUNK_PORT)]
    legacy_chunk_port: u16,
    /// Most entries (lines of tags.txt) in all; when full, a new entry from a smaller source
    /// evicts one of the biggest source's.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_entries: usize,
    /// Most entries from one source address.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES_PER_SOURCE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_entries_per_source: usize,
    /// Most chunk names taken from one datagram; the rest of it is ignored.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CHUNKS_PER_DATAGRAM,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_chunks_per_datagram: usize,
    /// Bytes per second one source address may send; beyond that its datagrams are dropped
    /// unread (0 = no limit).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = DEFAULT_SOURCE_RATE)]
    max_source_rate: u64,
    /// Log debugging details.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let verbose = args.verbose;
    logging::run_terminal_program("listener", verbose, || start(args))
}

fn start(args: Args) -> Result<(), Box<dyn StdError>> {
    let shutdown = Shutdown::new();
    shutdown::install_ctrlc_handler(&shutdown)?;
    let resolve = |texts: &[String], flag: &str| -> Result<Vec<SocketAddr>, String> {
        texts
            .iter()
            .map(|text| shared::net::parse_host_port(text, args.port))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad {flag}: {e}"))
    };
    let query_targets = if args.broadcast.is_empty() {
        shared::net::broadcast_targets(args.port)
    } else {
        resolve(&args.broadcast, "--broadcast")?
    };
    let peers = resolve(&args.peer, "--peer")?;
    let config = Config {
        dir: args.dir,
        legacy_chunk_port: args.legacy_chunk_port,
        query_targets,
        peers,
        peer_port: args.port,
        limits: Limits {
            max_entries: args.max_entries,
            max_entries_per_source: args.max_entries_per_source,
            max_chunks_per_datagram: args.max_chunks_per_datagram,
        },
        source_rate: args.max_source_rate,
    };
    let bind = SocketAddr::new(args.bind, args.port);
    let socket = shared::net::bind_udp_shared(bind)
        .map_err(|e| format!("cannot bind a UDP socket to {bind}: {e}"))?;
    // Not shared (no SO_REUSEADDR): answers to queries come here by unicast, and the port
    // must be this listener's alone.
    let query_bind = SocketAddr::new(args.bind, 0);
    let query_socket = UdpSocket::bind(query_bind)
        .and_then(|s| s.set_broadcast(true).map(|()| s))
        .map_err(|e| format!("cannot bind a UDP socket to {query_bind}: {e}"))?;
    listener::run(socket, query_socket, config, shutdown)?;
    Ok(())
}
