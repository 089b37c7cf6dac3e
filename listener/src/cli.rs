//! The command line: [`Args`] (every flag, its default and its `--help` text) and how it becomes
//! the library's [`Config`]. Binary-only, so clap stays out of the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use cli_support::{peer_toml, GenerateFlag};

use listener::index::{
    Limits, DEFAULT_MAX_CHUNKS_PER_DATAGRAM, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRIES_PER_SOURCE,
};
use listener::intake::DEFAULT_SOURCE_RATE;
use listener::Config;
use shared::program::{MainError, Program};
use shared::{DEFAULT_ANNOUNCE_PORT, DEFAULT_CHUNK_PORT};

/// The end of `--help`, after the note on DIR/peer.toml: real commands, each with what it does.
const EXAMPLES: &str = "\
Examples:
  listener --dir ~/p2p                   hear announcements on UDP 5000, write ~/p2p/tags.txt
  listener --dir ~/p2p --peer 192.168.1.20
                                         also query a peer broadcasts do not reach at start
  listener --dir alice --broadcast 127.255.255.255
                                         a peer on this host beside others (loopback)";

/// Listen for peers' announcements and keep DIR/tags.txt up to date; query the network at start.
#[derive(Debug, Parser)]
#[command(name = "listener", version, about, after_help = peer_toml::after_help("listener", EXAMPLES))]
pub struct Args {
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
    /// On a private network (DIR/network.key), also list legacy peers, whose announcements
    /// nothing authenticates (by default they are ignored). No effect on an open network.
    #[arg(long)]
    allow_legacy: bool,
    #[command(flatten)]
    pub(crate) generate: GenerateFlag,
    /// Log debugging details.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    /// How the program logs (to stderr only), and the peer folder it must be alone in.
    pub fn program(&self) -> Program {
        Program::new("listener", self.verbose).alone_in(&self.dir)
    }

    /// Where the announce socket is bound: `--bind`, `--port`. The query socket takes the
    /// same address on a port of its own.
    pub fn bind(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The library's configuration; the query targets are listed from the interfaces when no
    /// `--broadcast` is given.
    ///
    /// # Errors
    /// A `--broadcast` or `--peer` that does not parse or resolve.
    pub fn into_config(self) -> Result<Config, MainError> {
        let (query_targets, peers) =
            shared::peers::resolve_flags(&self.broadcast, &self.peer, self.port)
                .map_err(MainError::msg)?;
        Ok(Config {
            dir: self.dir,
            legacy_chunk_port: self.legacy_chunk_port,
            query_targets,
            peers,
            peer_port: self.port,
            limits: Limits {
                max_entries: self.max_entries,
                max_entries_per_source: self.max_entries_per_source,
                max_chunks_per_datagram: self.max_chunks_per_datagram,
            },
            source_rate: self.max_source_rate,
            allow_legacy: self.allow_legacy,
        })
    }
}
