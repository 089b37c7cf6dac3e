//! `chunk-server`: shares files with the peers of the LAN, five chunks each, over TCP.
//!
//! A thin wrapper: parses the flags, starts logging (stderr and `DIR/server.log`), installs the
//! Ctrl-C handler, binds the listening socket and hands over to [`chunk_server::run`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use log::LevelFilter;

use chunk_server::{
    Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING, DEFAULT_MAX_PER_IP, DEFAULT_MIN_RATE,
    DEFAULT_MIN_RATE_WINDOW_SECS, DEFAULT_RESCAN_SECS,
};
use shared::logging::{self, LogOptions};
use shared::peer_dir::PeerDir;
use shared::shutdown::{install_ctrlc_handler, Shutdown};
use shared::{DEFAULT_CHUNK_PORT, REQUEST_TIMEOUT};

/// Shares files with LAN peers: splits each into 5 chunks and serves the chunks over TCP.
#[derive(Debug, Parser)]
#[command(name = "chunk-server", version)]
struct Args {
    /// Peer folder: chunk store in DIR/temp, log in DIR/server.log.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Local address to listen on.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// TCP port to listen on.
    #[arg(long, default_value_t = DEFAULT_CHUNK_PORT)]
    port: u16,
    /// File or folder to share (a folder's files, not its subfolders); repeatable. Default:
    /// DIR/served_files.
    #[arg(long = "share", value_name = "PATH")]
    shares: Vec<PathBuf>,
    /// Seconds between two scans of the shared files.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RESCAN_SECS,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    rescan: u64,
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
    /// Log debug messages on stderr.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    fn to_config(&self) -> Config {
        Config {
            dir: self.dir.clone(),
            shares: self.shares.clone(),
            rescan: Duration::from_secs(self.rescan),
            max_connections: self.max_connections,
            max_pending: self.max_pending,
            max_per_ip: self.max_per_ip,
            request_timeout: Duration::from_secs(self.request_timeout),
            max_rate: (self.max_rate > 0).then_some(self.max_rate),
            min_rate: (self.min_rate > 0).then_some(self.min_rate),
            min_rate_window: Duration::from_secs(self.min_rate_window),
        }
    }
}

/// Why the program stopped with an error.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot create the peer folder {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot start logging")]
    Logging(#[source] io::Error),
    #[error("cannot install the Ctrl-C handler: {0}")]
    CtrlC(String),
    #[error("cannot listen on {addr}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Server(#[from] chunk_server::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "chunk-server: error: {}",
                shared::logging::describe_error(&e)
            );
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), MainError> {
    let dir = PeerDir::new(&args.dir);
    dir.create().map_err(|source| MainError::CreateDir {
        path: args.dir.clone(),
        source,
    })?;
    logging::init(LogOptions {
        terminal: if args.verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        },
        file: Some((dir.server_log(), LevelFilter::Info)),
    })
    .map_err(MainError::Logging)?;
    let shutdown = Shutdown::new();
    install_ctrlc_handler(&shutdown).map_err(|e| MainError::CtrlC(e.to_string()))?;
    let config = args.to_config();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = chunk_server::bind(addr).map_err(|source| MainError::Bind { addr, source })?;
    chunk_server::run(listener, config, shutdown)?;
    Ok(())
}
