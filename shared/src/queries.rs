//! The `.queries/` mailbox: how a listener asks its own peer's announcer to answer a query.
//!
//! A starting listener broadcasts a `query` datagram ([`Kind::Query`]) from an ephemeral UDP
//! port. The datagram reaches the *listeners* of the other peers, which own the announce port;
//! but the announcement it asks for is the announcer's to send. The two programs of one peer
//! coordinate through the peer folder, like everything else: the listener [posts](QueryBox::post)
//! an empty file `DIR/.queries/<ip>_<port>` named after the query's source address, and the
//! announcer, which polls that folder, [takes](QueryBox::take) it (the file is deleted) and
//! sends its whole announcement by unicast to that address.
//!
//! This module owns both halves, so the two programs agree on the names, on how old a query may
//! get ([`QUERY_FILE_MAX_AGE`]) and on what is never answered (stray names, stale files). How
//! often to post and whom to answer (rates, budgets) stay each program's business.
//!
//! # Format
//! ```text
//! DIR/.queries/192.168.1.17_40321        IPv4 source 192.168.1.17, port 40321
//! DIR/.queries/fe80--1_40321             IPv6 source fe80::1 (':' is written '-')
//! ```
//!
//! [`Kind::Query`]: crate::protocol::Kind::Query

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::QUERY_FILE_MAX_AGE;

/// The `.queries/` folder of one peer folder, seen by one program.
#[derive(Debug)]
pub struct QueryBox {
    dir: PathBuf,
    /// Query files taken but that could not be deleted, with their modification time: not
    /// taken again unless they are touched anew (the announcer polls ten times a second).
    undeletable: HashMap<PathBuf, Option<SystemTime>>,
    /// When stale files were last cleared away by [`QueryBox::post`].
    last_prune: Instant,
}

impl QueryBox {
    /// The mailbox in `dir` (`DIR/.queries`), which need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> QueryBox {
        QueryBox {
            dir: dir.into(),
            undeletable: HashMap::new(),
            last_prune: Instant::now(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that asks for an answer to `addr`.
    pub fn file_for(&self, addr: SocketAddr) -> PathBuf {
        self.dir.join(query_file_name(addr))
    }

    /// The listener's half: asks the announcer to answer `addr`, creating the folder if need
    /// be. Every [`QUERY_FILE_MAX_AGE`] it also deletes the files older than that, which no
    /// announcer would answer any more: without an announcer running, they would pile up.
    ///
    /// # Errors
    /// The folder or the file cannot be created.
    pub fn post(&mut self, addr: SocketAddr) -> io::Result<()> {
        if self.last_prune.elapsed() >= QUERY_FILE_MAX_AGE {
            self.last_prune = Instant::now();
            self.prune();
        }
        std::fs::create_dir_all(&self.dir)?;
        std::fs::File::create(self.file_for(addr)).map(drop)
    }

    /// Deletes the files older than [`QUERY_FILE_MAX_AGE`].
    pub fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            if age(modified) > QUERY_FILE_MAX_AGE {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The announcer's half: the addresses asking for an answer, looking at `max` files at
    /// most (so a flood of them cannot stall the caller; the rest wait for the next call).
    /// Every file looked at is deleted: a query is answered once. Names [`query_file_name`]
    /// would not have made and files older than [`QUERY_FILE_MAX_AGE`] are deleted without
    /// being returned. A missing folder holds no query.
    ///
    /// # Errors
    /// The folder exists but cannot be read.
    pub fn take(&mut self, max: usize) -> io::Result<Vec<SocketAddr>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut queries = Vec::new();
        let mut seen = HashSet::new();
        for entry in entries.filter_map(Result::ok).take(max) {
            let path = entry.path();
            seen.insert(path.clone());
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            if self.undeletable.get(&path) == Some(&modified) {
                continue;
            }
            let name = entry.file_name();
            match name.to_str().and_then(parse_query_file_name) {
                None => log::debug!("deleting {}: not a query file", path.display()),
                Some(addr) if age(modified) > QUERY_FILE_MAX_AGE => log::debug!(
                    "deleting the query of {addr} unanswered: {:?} old",
                    age(modified)
                ),
                Some(addr) => queries.push(addr),
            }
            self.delete(path, modified);
        }
        self.undeletable.retain(|path, _| seen.contains(path));
        Ok(queries)
    }

    /// Deletes a query file; one that cannot be deleted is remembered, so it is not taken
    /// again on every poll.
    fn delete(&mut self, path: PathBuf, modified: Option<SystemTime>) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                if !self.undeletable.contains_key(&path) {
                    log::warn!("cannot delete {}: {e}", path.display());
                }
                self.undeletable.insert(path, modified);
            }
        }
    }
}

/// How old a file modified at `modified` is; a time in the future (a clock step) or an
/// unknown one counts as fresh.
fn age(modified: Option<SystemTime>) -> std::time::Duration {
    modified
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// The file name that asks for an answer to `addr`. IPv4-mapped IPv6 addresses are written as
/// plain IPv4, and a port of 0 (which cannot be answered) gives a name that
/// [`parse_query_file_name`] rejects.
pub fn query_file_name(addr: SocketAddr) -> String {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => format!("{ip}_{}", addr.port()),
        IpAddr::V6(ip) => format!("{}_{}", ip.to_string().replace(':', "-"), addr.port()),
    }
}

/// The address a query file asks an answer for; `None` for any name [`query_file_name`] would
/// not have produced (so stray files, temporary files and hostile names are never answered).
pub fn parse_query_file_name(name: &str) -> Option<SocketAddr> {
    let (ip_text, port_text) = name.rsplit_once('_')?;
    let port: u16 = port_text.parse().ok()?;
    if port == 0 {
        return None;
    }
    let ip = if ip_text.contains('-') {
        IpAddr::V6(ip_text.replace('-', ":").parse::<Ipv6Addr>().ok()?)
    } else {
        IpAddr::V4(ip_text.parse::<Ipv4Addr>().ok()?)
    };
    let addr = SocketAddr::new(ip, port);
    // Only the canonical spelling: no "+80", no leading zeros, no mapped IPv4 in IPv6 form.
    (query_file_name(addr) == name).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A query file for `to` that is older than any announcer would answer.
    fn post_stale(mailbox: &QueryBox, to: SocketAddr) {
        std::fs::File::create(mailbox.file_for(to))
            .unwrap()
            .set_modified(SystemTime::now() - QUERY_FILE_MAX_AGE - Duration::from_secs(1))
            .unwrap();
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_posted_query_is_taken_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".queries");
        let mut listener = QueryBox::new(&dir);
        let mut announcer = QueryBox::new(&dir);
        assert_eq!(announcer.take(64).unwrap(), [], "no folder yet: no query");
        listener.post(addr("127.0.0.2:4000")).unwrap();
        listener.post(addr("[fe80::1]:4001")).unwrap();
        assert_eq!(names_in(&dir), ["127.0.0.2_4000", "fe80--1_4001"]);
        let mut taken = announcer.take(64).unwrap();
        taken.sort();
        assert_eq!(taken, [addr("127.0.0.2:4000"), addr("[fe80::1]:4001")]);
        assert!(names_in(&dir).is_empty(), "taken files are deleted");
        assert_eq!(announcer.take(64).unwrap(), []);
    }

    #[test]
    fn stray_and_stale_files_are_deleted_unanswered() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".queries");
        let mut mailbox = QueryBox::new(&dir);
        mailbox.post(addr("127.0.0.3:5000")).unwrap();
        post_stale(&mailbox, addr("127.0.0.4:5000"));
        std::fs::write(dir.join("not-a-query"), b"x").unwrap();
        assert_eq!(mailbox.take(64).unwrap(), [addr("127.0.0.3:5000")]);
        assert!(names_in(&dir).is_empty());
    }

    #[test]
    fn take_looks_at_max_files_per_call() {
        let root = tempfile::tempdir().unwrap();
        let mut mailbox = QueryBox::new(root.path());
        for port in 1..=5 {
            mailbox.post(addr(&format!("127.0.0.1:{port}"))).unwrap();
        }
        assert_eq!(mailbox.take(2).unwrap().len(), 2);
        assert_eq!(mailbox.take(64).unwrap().len(), 3);
    }

    #[test]
    fn prune_deletes_only_stale_files() {
        let root = tempfile::tempdir().unwrap();
        let mut mailbox = QueryBox::new(root.path());
        mailbox.post(addr("127.0.0.1:1")).unwrap();
        post_stale(&mailbox, addr("127.0.0.1:2"));
        mailbox.prune();
        assert_eq!(names_in(root.path()), ["127.0.0.1_1"]);
    }

    #[test]
    fn names_round_trip() {
        for text in [
            "127.0.0.1:40321",
            "192.168.1.17:1",
            "10.255.255.255:65535",
            "[fe80::1]:5000",
            "[2001:db8::42:1]:123",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let name = query_file_name(addr);
            assert!(!name.contains(['/', ':', '\\']), "{name}");
            assert_eq!(parse_query_file_name(&name), Some(addr), "{name}");
        }
        assert_eq!(
            query_file_name("192.168.1.17:40321".parse().unwrap()),
            "192.168.1.17_40321"
        );
        assert_eq!(
            query_file_name("[fe80::1]:40321".parse().unwrap()),
            "fe80--1_40321"
        );
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:7000".parse().unwrap();
        assert_eq!(query_file_name(mapped), "127.0.0.2_7000");
        assert_eq!(
            parse_query_file_name("127.0.0.2_7000"),
            Some("127.0.0.2:7000".parse().unwrap())
        );
    }

    #[test]
    fn anything_else_is_rejected() {
        for name in [
            "",
            "_",
            "127.0.0.1",
            "127.0.0.1_",
            "_5000",
            "127.0.0.1_0",
            "127.0.0.1_65536",
            "127.0.0.1_+80",
            "127.0.0.1_080",
            "127.0.0.01_80",
            "127.0.0.1_80_80",
            "127.0.0.1:80",
            "localhost_80",
            ".127.0.0.1_80.tmp",
            "127.0.0.1_80 ",
            "--ffff-127.0.0.1_80",
            "fe80::1_80",
            "FE80--1_80",
            "../../etc/passwd_1",
        ] {
            assert_eq!(parse_query_file_name(name), None, "{name:?}");
        }
    }
}
