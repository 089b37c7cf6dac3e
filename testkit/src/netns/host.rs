//! A [`Host`]: one namespace with one interface and address, and the programs of its peer
//! folder, started with their default ports as on a real machine.

use std::net::Ipv4Addr;
use std::ops::Deref;

use super::subnet::Subnet;
use crate::node::Node;
use crate::ports::established_from;
use crate::process::Program;

/// Announce interval of every test announcer (`--interval`): short, so nothing waits a minute.
pub const ANNOUNCE_INTERVAL_SECS: u64 = 2;

/// The announce port (UDP) and chunk port (TCP): the programs' defaults, never given.
pub const ANNOUNCE_PORT: u16 = shared::DEFAULT_ANNOUNCE_PORT;
/// See [`ANNOUNCE_PORT`].
pub const CHUNK_PORT: u16 = shared::DEFAULT_CHUNK_PORT;

/// One host: a namespace with one interface and address, and a [`Node`] (its peer folder and
/// programs), which it derefs to.
pub struct Host {
    pub(super) node: Node,
    /// Its namespace.
    pub ns: String,
    /// Its interface.
    pub iface: String,
    /// Its switch port, when it is on the switch.
    pub switch_port: Option<String>,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Subnet,
}

impl Deref for Host {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Host {
    /// `chunk-server --dir D [extra]`: default port, all addresses, sharing `served_files/`.
    pub fn start_chunk_server(&self, extra: &[&str]) {
        self.start(Program::ChunkServer, extra);
    }

    /// `announcer --dir D --username U --interval 2 [extra]`: default targets (the directed
    /// broadcast of each up interface), default ports.
    pub fn start_announcer(&self, username: &str, extra: &[&str]) {
        let interval = ANNOUNCE_INTERVAL_SECS.to_string();
        let mut args = vec!["--username", username, "--interval", &interval];
        args.extend_from_slice(extra);
        self.start(Program::Announcer, &args);
    }

    /// `listener --dir D [extra]`: default port and targets.
    pub fn start_listener(&self, extra: &[&str]) {
        self.start(Program::Listener, extra);
    }

    /// A full peer: chunk server, listener, announcer (the downloader runs as a command).
    pub fn start_all(&self, username: &str) {
        self.start_chunk_server(&[]);
        self.start_listener(&[]);
        self.start_announcer(username, &[]);
    }

    /// Established TCP connections of its chunk server (port 5001) whose remote end is `from`,
    /// read from `/proc/<pid>/net/tcp`: the table of the chunk server's own namespace.
    pub fn chunk_connections_from(&self, from: Ipv4Addr) -> usize {
        self.pid_of(Program::ChunkServer)
            .map_or(0, |pid| established_from(pid, CHUNK_PORT, from))
    }

    /// Whether its `tags.txt` has any entry whose chunk server is at `ip`; `Err` describes it.
    pub fn lists_no_host(&self, ip: Ipv4Addr) -> Result<(), String> {
        let Ok(tags) = self.tags() else {
            return Ok(()); // not written yet: lists nothing
        };
        match tags.entries.iter().find(|e| e.addr.ip() == ip) {
            None => Ok(()),
            Some(e) => Err(format!(
                "{}/tags.txt lists {} at {}:\n{tags}",
                self.name, e.content, e.addr
            )),
        }
    }
}
