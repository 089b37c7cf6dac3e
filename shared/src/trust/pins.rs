//! `DIR/known-peers.txt`: the peer ID each username was first heard with on a private
//! network, kept by the listener across restarts (like SSH's `known_hosts`). Another ID under
//! a known name is listed apart as an impostor; deleting a line accepts the next ID heard
//! under that name (a peer that was reinstalled and has a new identity).
//!
//! ```text
//! # known-peers.txt: the peer ID each username was first heard with. Written by `listener`.
//! network 1a2b-3c4d
//! alice  7QXM-2KD4-AB3Z-QQ5T
//! ```
//!
//! The pins belong to one network: a file of another network (after `network leave` and
//! `join`) is ignored and replaced.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::PeerId;
use crate::tags::{decode_field, encode_field};

/// Name of the file in the peer folder.
pub const KNOWN_PEERS_FILE: &str = "known-peers.txt";

/// The file of the peer folder `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(KNOWN_PEERS_FILE)
}

/// The pins of `text` if it is the file of `network`; malformed lines are skipped.
pub fn parse(text: &str, network: &str) -> BTreeMap<String, PeerId> {
    let mut pins = BTreeMap::new();
    let mut ours = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some("network"), Some(id), None) => ours = id == network,
            (Some(user), Some(id), None) if ours => {
                if let (Some(user), Ok(id)) = (decode_field(user), id.parse()) {
                    pins.entry(user).or_insert(id);
                }
            }
            _ => {}
        }
    }
    pins
}

/// The text of the file for `pins` of `network`.
pub fn render(pins: &BTreeMap<String, PeerId>, network: &str) -> String {
    let mut text = String::from(
        "# known-peers.txt: the peer ID each username was first heard with. Written by \
         `listener`.\n# Another ID under one of these names is listed apart as an impostor; \
         delete a line to accept a new ID.\n",
    );
    text.push_str(&format!("network {network}\n"));
    for (user, id) in pins {
        text.push_str(&format!("{}  {id}\n", encode_field(user)));
    }
    text
}

/// The pins kept in `dir` for `network` (none when the file is missing or another network's).
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load(dir: &Path, network: &str) -> io::Result<BTreeMap<String, PeerId>> {
    match std::fs::read_to_string(path_in(dir)) {
        Ok(text) => Ok(parse(&text, network)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Stores `pins` of `network` in `dir`, atomically.
///
/// # Errors
/// Any I/O error.
pub fn save(dir: &Path, pins: &BTreeMap<String, PeerId>, network: &str) -> io::Result<()> {
    crate::fsutil::write_atomic(&path_in(dir), render(pins, network).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Identity;

    #[test]
    fn pins_round_trip_for_their_network_only() {
        let a = Identity::from_seed(&[1; 32]).id();
        let b = Identity::from_seed(&[2; 32]).id();
        let pins = BTreeMap::from([("alice".to_owned(), a), ("bob smith".to_owned(), b)]);
        let text = render(&pins, "1a2b-3c4d");
        assert!(text.contains("bob%20smith"), "{text}");
        assert_eq!(parse(&text, "1a2b-3c4d"), pins);
        assert!(parse(&text, "ffff-0000").is_empty());
        let messy = format!("{text}garbage line here\nnot-an-id XYZ\n");
        assert_eq!(parse(&messy, "1a2b-3c4d"), pins);
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), "1a2b-3c4d").unwrap().is_empty());
        save(dir.path(), &pins, "1a2b-3c4d").unwrap();
        assert_eq!(load(dir.path(), "1a2b-3c4d").unwrap(), pins);
    }
}
