//! What a download needs to know about its environment: the peer folder and how to talk to
//! holders. Plain data; the command line fills it in (`cli.rs`), tests use `..Default::default()`.

use std::time::Duration;

use shared::peer_dir::PeerDir;

use crate::fetch::Network;

/// What the downloader needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The peer folder.
    pub dir: PeerDir,
    /// Source address and timeouts of connections to chunk servers.
    pub net: Network,
    /// A chunk in flight this long may also be asked of an idle holder (endgame).
    pub endgame_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PeerDir::new("."),
            net: Network::default(),
            endgame_after: Duration::from_secs(2),
        }
    }
}
