//! The command line of `chunk-server`: [`Args`] (every flag, its default and its `--help`
//! text) and its conversion into the library's [`Config`]. Binary-only, so clap stays out of
//! the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use cli_support::{peer_toml, GenerateFlag};
use log::LevelFilter;

use chunk_server::{
    Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING, DEFAULT_MAX_PER_IP, DEFAULT_MIN_RATE,
    DEFAULT_MIN_RATE_WINDOW_SECS, DEFAULT_RESCAN_SECS,
};
use shared::peer_dir::PeerDir;
use shared::program::Program;
use shared::{DEFAULT_CHUNK_PORT, REQUEST_TIMEOUT};

/// The end of `--help`, after the note on DIR/peer.toml: real commands, each with what it does.
const EXAMPLES: &str = "\
Examples:
  chunk-server --dir ~/p2p               share ~/p2p/served_files on TCP 5001
  chunk-server --dir alice --share ~/Music --share notes.txt
                                         share a folder's files and one file instead
  chunk-server --dir alice --bind 127.0.0.2 --max-rate 1000000
                                         a peer on a loopback address, sending at most 1 MB/s";

/// Shares files with LAN peers: splits each into 5 chunks and serves the chunks over TCP.
#[derive(Debug, Parser)]
#[command(name = "chunk-server", version, after_help = peer_toml::after_help("chunk-server", EXAMPLES))]
pub(crate) struct Args {
    /// Peer folder: chunk store in DIR/temp, log in DIR/server.log.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Local address to listen on.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// TCP port to listen on.
    #[arg(long, default_value_t = DEFAULT_CHUNK_PORT)]
    port: u16,
    /// File or folder to share (a folder's whole tree, each file named by its path in it:
    /// 2024/a.jpg); repeatable. Default: DIR/served_files.
    #[arg(long = "share", value_name = "PATH")]
    shares: Vec<PathBuf>,
    /// Longest time in seconds between two scans of the shared files. Changes are noticed at
    /// once (the shares are watched) unless --no-watch; a share that cannot be watched is
    /// scanned every 2 s at most.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RESCAN_SECS,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    rescan: u64,
    /// Do not watch the shares for changes: scan them only every --rescan seconds (for file
    /// systems whose change notifications are missing or costly).
    #[arg(long)]
    no_watch: bool,
    /// Most answers sent at once; a complete request waits up to 10 s for a free slot, then is
    /// refused as busy. Clients still sending their request do not count here.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Most connections still sending their request (or waiting for a slot); more are closed
    /// at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PENDING,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_pending: usize,
    /// Most connections from one source address at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PER_IP,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_per_ip: usize,
    /// Seconds from accepting a connection by which its whole request must have arrived.
    #[arg(long, value_name = "SECS", default_value_t = REQUEST_TIMEOUT.as_secs(),
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    request_timeout: u64,
    /// Highest send rate per connection, in bytes per second; 0 for unlimited.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    max_rate: u64,
    /// Clients that read an answer slower than this, in bytes per second over
    /// --min-rate-window seconds of waiting for them, are dropped; 0 for no floor.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = DEFAULT_MIN_RATE)]
    min_rate: u64,
    /// The window of --min-rate, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_MIN_RATE_WINDOW_SECS,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    min_rate_window: u64,
    /// On a private network (DIR/network.key), also answer plaintext requests: legacy peers
    /// and peers without the key can then download what is shared here.
    #[arg(long)]
    allow_legacy: bool,
    #[command(flatten)]
    pub(crate) generate: GenerateFlag,
    /// Log debug messages on stderr.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    /// How the program runs: the peer folder is created first, the log goes to stderr (debug
    /// with `--verbose`) and to `DIR/server.log` at info level; it must be the folder's only
    /// chunk server.
    pub(crate) fn program(&self) -> Program {
        Program {
            create_dir: Some(self.dir.clone()),
            log_file: Some((PeerDir::new(&self.dir).server_log(), LevelFilter::Info)),
            ..Program::new("chunk-server", self.verbose)
        }
        .alone_in(&self.dir)
    }

    /// The address to listen on.
    pub(crate) fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The server's configuration; clap has already checked every value.
    pub(crate) fn into_config(self) -> Config {
        Config {
            dir: self.dir,
            shares: self.shares,
            rescan: Duration::from_secs(self.rescan),
            watch: !self.no_watch,
            max_connections: self.max_connections,
            max_pending: self.max_pending,
            max_per_ip: self.max_per_ip,
            request_timeout: Duration::from_secs(self.request_timeout),
            max_rate: (self.max_rate > 0).then_some(self.max_rate),
            min_rate: (self.min_rate > 0).then_some(self.min_rate),
            min_rate_window: Duration::from_secs(self.min_rate_window),
            allow_legacy: self.allow_legacy,
        }
    }
}
