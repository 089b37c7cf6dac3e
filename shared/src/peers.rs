//! `DIR/peers.txt`: static peers, for networks that broadcast cannot cross.
//!
//! The announcer sends every announcement (and its goodbye) by unicast to each peer listed, and
//! the listener sends its start-up query to each of them, beside the broadcasts. The file is
//! meant to be edited by hand while the programs run, so each program watches it with a
//! [`PeersFile`] and picks up changes within a poll; a line that cannot be used is warned about
//! once, not on every poll.
//!
//! # Format
//! ```text
//! # peers.txt: one HOST[:PORT] per line (PORT defaults to the announce port)
//! 192.168.7.20
//! 10.0.0.5:15000          # another subnet
//! laptop.example.org
//! ```
//!
//! Host names are resolved (to their first IPv4 address) when the file is read, with
//! [`parse_host_port`]; this module does not watch DNS for changes.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::latch::Latches;
use crate::net::{broadcast_targets, parse_host_port};

/// How often the announcer and the listener check `DIR/peers.txt` for changes (its
/// modification time and length): an edit is picked up within a second, at the cost of one
/// `stat` a second.
pub const PEERS_POLL: Duration = Duration::from_secs(1);

/// The peers listed in `text`, in order and without duplicates, and the lines that could not be
/// used (trimmed, comment removed) with why. Blank lines and `#` comments (whole-line or after
/// an address) are skipped; `default_port` applies to lines without a port.
pub fn parse_peers(text: &str, default_port: u16) -> (Vec<SocketAddr>, Vec<(String, String)>) {
    let mut peers = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match parse_host_port(line, default_port) {
            Ok(addr) => {
                if !peers.contains(&addr) {
                    peers.push(addr);
                }
            }
            Err(e) => bad.push((line.to_owned(), e)),
        }
    }
    (peers, bad)
}

/// Where a program sends to, from its command line: the `--broadcast` addresses (when none
/// are given, the directed broadcast address of every interface, [`broadcast_targets`]) and
/// the `--peer` addresses, each `HOST[:PORT]` with `port` as the default.
///
/// # Errors
/// `bad --broadcast: …` or `bad --peer: …` for an address that does not parse or resolve.
pub fn resolve_flags(
    broadcast: &[String],
    peer: &[String],
    port: u16,
) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), String> {
    let resolve = |texts: &[String], flag: &str| {
        texts
            .iter()
            .map(|text| parse_host_port(text, port))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad {flag}: {e}"))
    };
    let targets = if broadcast.is_empty() {
        broadcast_targets(port)
    } else {
        resolve(broadcast, "--broadcast")?
    };
    Ok((targets, resolve(peer, "--peer")?))
}

/// What identifies one version of the file: its modification time and length; `None` while
/// it is missing.
type Stamp = Option<(Option<SystemTime>, u64)>;

/// Watches one peers file: [`PeersFile::poll`] re-reads it when its modification time or
/// length changed.
#[derive(Debug)]
pub struct PeersFile {
    path: PathBuf,
    default_port: u16,
    /// The version last read; starts as "never read", so the first poll always reads.
    stamp: Option<Stamp>,
    peers: Vec<SocketAddr>,
    /// The bad lines and read errors already warned about, so each is logged once.
    warned: Latches<String>,
}

impl PeersFile {
    /// Watches `path` (which may not exist yet); lines without a port get `default_port`.
    pub fn new(path: impl Into<PathBuf>, default_port: u16) -> PeersFile {
        PeersFile {
            path: path.into(),
            default_port,
            stamp: None,
            peers: Vec::new(),
            warned: Latches::default(),
        }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The peers of the version last read (none while the file is missing).
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// Re-reads the file if it changed since the last poll (or was never read); returns whether
    /// the list of peers changed. A file that exists but cannot be read keeps the last list.
    pub fn poll(&mut self) -> bool {
        let stamp: Stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((meta.modified().ok(), meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.warn_once(format!("cannot read {}: {e}", self.path.display()));
                return false;
            }
        };
        if self.stamp == Some(stamp) {
            return false;
        }
        let peers = match stamp {
            None => Vec::new(),
            Some(_) => match std::fs::read(&self.path) {
                Ok(bytes) => {
                    let (peers, bad) =
                        parse_peers(&String::from_utf8_lossy(&bytes), self.default_port);
                    for (line, why) in bad {
                        self.warn_once(format!(
                            "{}: ignoring {line:?}: {why}",
                            self.path.display()
                        ));
                    }
                    peers
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    self.warn_once(format!("cannot read {}: {e}", self.path.display()));
                    return false;
                }
            },
        };
        self.stamp = Some(stamp);
        if peers == self.peers {
            return false;
        }
        log::info!(
            "{}: {} peer(s){}",
            self.path.display(),
            peers.len(),
            if peers.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
                format!(": {}", names.join(", "))
            }
        );
        self.peers = peers;
        true
    }

    fn warn_once(&mut self, message: String) {
        if self.warned.trip(message.clone()) {
            log::warn!("{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_ports_and_duplicates() {
        let text = "\
# static peers
127.0.0.2

  127.0.0.3:6000   # with a port
127.0.0.2:5000
localhost:7
no such host.invalid
127.0.0.4:99999
";
        let (peers, bad) = parse_peers(text, 5000);
        let names: Vec<String> = peers.iter().map(ToString::to_string).collect();
        assert_eq!(names[..2], ["127.0.0.2:5000", "127.0.0.3:6000"]);
        assert_eq!(peers.len(), 3, "{names:?}");
        assert_eq!(peers[2].port(), 7);
        let bad: Vec<&str> = bad.iter().map(|(line, _)| line.as_str()).collect();
        assert_eq!(bad, ["no such host.invalid", "127.0.0.4:99999"]);
    }

    #[test]
    fn flags_resolve_with_the_default_port_and_name_the_bad_one() {
        let texts = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (targets, peers) =
            resolve_flags(&texts(&["127.255.255.255"]), &texts(&["127.0.0.2:6"]), 5000).unwrap();
        assert_eq!(targets, ["127.255.255.255:5000".parse().unwrap()]);
        assert_eq!(peers, ["127.0.0.2:6".parse().unwrap()]);
        let (targets, peers) = resolve_flags(&[], &[], 5000).unwrap();
        assert_eq!(targets, broadcast_targets(5000));
        assert!(peers.is_empty());
        let bad = resolve_flags(&texts(&["x:99999"]), &[], 5000).unwrap_err();
        assert!(bad.starts_with("bad --broadcast: "), "{bad}");
        let bad = resolve_flags(&[], &texts(&["127.0.0.1:x"]), 5000).unwrap_err();
        assert!(bad.starts_with("bad --peer: "), "{bad}");
    }

    #[test]
    fn poll_notices_creation_changes_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.txt");
        let mut file = PeersFile::new(&path, 5000);
        assert!(!file.poll(), "missing file: still no peers");
        assert!(file.peers().is_empty());
        std::fs::write(&path, "127.0.0.2\n").unwrap();
        assert!(file.poll());
        assert_eq!(file.peers(), ["127.0.0.2:5000".parse().unwrap()]);
        assert!(!file.poll(), "unchanged");
        std::fs::write(&path, "127.0.0.2\n127.0.0.3:6\n# more soon\n").unwrap();
        assert!(file.poll());
        assert_eq!(file.peers().len(), 2);
        // Same peers, other text: re-read, but no change to report.
        std::fs::write(&path, "127.0.0.2  # first\n127.0.0.3:6\n").unwrap();
        assert!(!file.poll());
        std::fs::remove_file(&path).unwrap();
        assert!(file.poll());
        assert!(file.peers().is_empty());
    }

    #[test]
    fn bad_lines_are_warned_about_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.txt");
        let mut file = PeersFile::new(&path, 5000);
        std::fs::write(&path, "bad host!\n").unwrap();
        assert!(!file.poll());
        std::fs::write(&path, "bad host!\n127.0.0.9\n").unwrap();
        assert!(file.poll());
        assert_eq!(file.warned.len(), 1);
    }
}
