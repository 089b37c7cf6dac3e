//! The command line: [`Args`] (every flag, its default and its `--help` text) and how it becomes
//! the library's [`Config`]. Binary-only, so clap stays out of the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use cli_support::{peer_toml, GenerateFlag};

use announcer::legacy::LegacyPolicy;
use announcer::prompt::{self, Username, UsernameError};
use announcer::{ChunkPort, Config};
use shared::peer_dir::PeerDir;
use shared::program::{MainError, Program};
use shared::protocol::MAX_ANNOUNCE_INTERVAL_SECS;
use shared::{DEFAULT_ANNOUNCE_INTERVAL_SECS, DEFAULT_ANNOUNCE_PORT};

/// The end of `--help`, after the note on DIR/peer.toml: real commands, each with what it does.
const EXAMPLES: &str = "\
Examples:
  announcer --dir ~/p2p                  announce ~/p2p/temp on every interface, once a minute
  announcer --dir ~/p2p --peer 192.168.1.20
                                         also announce to a peer broadcasts do not reach
  announcer --dir alice --bind 127.0.0.2 --broadcast 127.255.255.255 --username alice
                                         a peer on a loopback address (several on one host)";

/// Announce the chunks in DIR/temp to the LAN by UDP broadcast (and to static peers by unicast).
#[derive(Debug, Parser)]
#[command(name = "announcer", version, about, after_help = peer_toml::after_help("announcer", EXAMPLES))]
pub struct Args {
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
    /// TCP port of our chunk server, announced to our peers; default: the port the folder's
    /// chunk server recorded in DIR/.run/chunk-server.json, and nothing is announced while no
    /// chunk server runs for DIR.
    #[arg(long)]
    chunk_port: Option<u16>,
    /// Bytes per second of answers to other peers' queries, all together (0 = no limit); each
    /// address also gets at most 4 answers at once, then one a second.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = announcer::budget::DEFAULT_ANSWER_RATE)]
    max_answer_rate: u64,
    /// With many files the announcement is compact (a summary; our listeners fetch the list
    /// from the chunk server): whether legacy peers still get the list of chunk names, paced
    /// over the interval: auto = while a legacy peer has been heard in the last 5 minutes, on
    /// = always, off = never. Never on a private network.
    #[arg(long, value_name = "WHEN", default_value = "auto",
          value_parser = PossibleValuesParser::new(["auto", "on", "off"])
              .map(|s| s.parse::<LegacyPolicy>().unwrap_or_default()))]
    legacy_list: LegacyPolicy,
    #[command(flatten)]
    pub(crate) generate: GenerateFlag,
    /// Log debugging details.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    /// How the program logs (to stderr only), and the peer folder it must be alone in.
    pub fn program(&self) -> Program {
        Program::new("announcer", self.verbose).alone_in(&self.dir)
    }

    /// The address the socket is bound to: `--bind`, any port.
    pub fn bind(&self) -> SocketAddr {
        SocketAddr::new(self.bind, 0)
    }

    /// The peer folder.
    pub fn peer_dir(&self) -> PeerDir {
        PeerDir::new(&self.dir)
    }

    /// What settles the username ([`prompt::resolve`]), asking at the terminal when stdin is
    /// one; apart from the arguments, so that it can run before they are used up.
    ///
    /// The closure fails with [`UsernameError`] (see [`prompt::resolve`]).
    pub fn username_asker(&self) -> impl FnOnce() -> Result<Username, UsernameError> {
        let flag = self.username.clone();
        let peer_dir = self.peer_dir();
        move || {
            use std::io::IsTerminal;
            let terminal = std::io::stdin()
                .is_terminal()
                .then(|| (std::io::stdin().lock(), std::io::stderr()));
            prompt::resolve(flag.as_deref(), &peer_dir, terminal)
        }
    }

    /// The library's configuration, announcing as `username`; the broadcast targets are
    /// listed from the interfaces when no `--broadcast` is given.
    ///
    /// # Errors
    /// A `--broadcast` or `--peer` that does not parse or resolve.
    pub fn into_config(self, username: String) -> Result<Config, MainError> {
        let (targets, peers) = shared::peers::resolve_flags(&self.broadcast, &self.peer, self.port)
            .map_err(MainError::msg)?;
        Ok(Config {
            dir: self.dir,
            username,
            targets,
            peers,
            peer_port: self.port,
            interval: Duration::from_secs(self.interval),
            chunk_port: self
                .chunk_port
                .map_or(ChunkPort::Recorded, ChunkPort::Fixed),
            watch: announcer::DEFAULT_WATCH,
            instance: announcer::new_instance_id(),
            answer_rate: self.max_answer_rate,
            legacy_list: self.legacy_list,
        })
    }
}
