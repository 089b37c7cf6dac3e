//! One program of each kind per peer folder, and where the folder's chunk server listens.
//!
//! The programs of one peer agree through the folder, not through repeated flags:
//! - each long-running program (chunk server, announcer, listener) holds an exclusive lock on
//!   `DIR/.run/<program>.lock` for as long as it runs ([`InstanceLock`]), so a second one on the
//!   same folder refuses to start. The lock is the kernel's (`flock`): a crashed or killed
//!   process's lock goes with it, so nothing stale ever blocks the next start;
//! - the chunk server, once bound, records where it actually listens in
//!   `DIR/.run/chunk-server.json` ([`ServerRecord`]), and removes it when it stops; the announcer
//!   announces exactly that port ([`ServerRecord::read_live`]). A record is believed only while
//!   the chunk server's lock is held, so one left behind by `kill -9` counts as "not running";
//! - the announcer, once it has settled on a username (its flag, `username.txt`, the terminal
//!   or the host name), records it in `DIR/.run/announcer.json` ([`UsernameRecord`]): the name
//!   the network knows this peer by, which the listener needs to tell the offers meant for it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::peer_dir::PeerDir;

/// Name of the chunk server's program (and of its lock and record files).
pub const CHUNK_SERVER: &str = "chunk-server";

/// Name of the announcer's program (and of its lock and record files).
pub const ANNOUNCER: &str = "announcer";

/// How long [`InstanceLock::acquire`] retries a lock held for a moment by a probe
/// ([`is_running`]) before it concludes another instance holds it.
const PROBE_GRACE: Duration = Duration::from_millis(500);

/// Why a program cannot be the instance of its folder.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another program of the same kind holds the folder's lock.
    #[error("another {program}{} is already serving {}",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), dir.display())]
    Busy {
        /// The program's name.
        program: String,
        /// The other instance's process id, when it could be read.
        pid: Option<u32>,
        /// The peer folder.
        dir: PathBuf,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot lock {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The lock that makes a process the only `program` of its peer folder; released when dropped
/// or when the process ends, however it ends.
#[derive(Debug)]
pub struct InstanceLock {
    /// The locked file (the lock lives as long as this handle).
    _file: File,
}

impl InstanceLock {
    /// Takes `DIR/.run/<program>.lock` (creating `.run/`) and writes this process's id in it.
    ///
    /// # Errors
    /// [`InstanceError::Busy`] when another process holds it; [`InstanceError::Io`] when it
    /// cannot be created or locked.
    pub fn acquire(dir: &PeerDir, program: &str) -> Result<InstanceLock, InstanceError> {
        let path = lock_path(dir, program);
        let io_error = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir.run_dir()).map_err(io_error)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let give_up = Instant::now() + PROBE_GRACE;
        loop {
            match FileExt::try_lock_exclusive(&file) {
                Ok(()) => break,
                Err(e) if is_contended(&e) => {
                    if Instant::now() >= give_up {
                        return Err(InstanceError::Busy {
                            program: program.to_owned(),
                            pid: read_pid(&mut file),
                            dir: dir.root().to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io_error(e)),
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_error)?;
        Ok(InstanceLock { _file: file })
    }
}

/// Whether a `program` holds the lock of the peer folder now. It tests by taking a shared lock
/// for an instant, so a process that died, even by `kill -9`, counts as not running.
///
/// # Errors
/// When the lock file exists but cannot be opened or tested.
pub fn is_running(dir: &PeerDir, program: &str) -> io::Result<bool> {
    let file = match File::open(lock_path(dir, program)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            Ok(false)
        }
        Err(e) if is_contended(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

/// `DIR/.run/<program>.lock`.
fn lock_path(dir: &PeerDir, program: &str) -> PathBuf {
    dir.run_dir().join(format!("{program}.lock"))
}

/// Whether a failed `try_lock_*` failed because another process holds the lock.
fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// The process id written in a lock file, if it can be read.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Where the folder's chunk server listens: `DIR/.run/chunk-server.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The address it is bound to (`0.0.0.0` for all addresses).
    pub address: IpAddr,
    /// The TCP port it listens on: the one the announcer announces.
    pub port: u16,
    /// Its process id, as written in its lock file too: liveness is judged by the lock
    /// ([`ServerRecord::read_live`]), never by signalling the pid.
    pub pid: u32,
}

impl ServerRecord {
    /// The record of this process listening on `addr`.
    pub fn of_this_process(addr: SocketAddr) -> ServerRecord {
        ServerRecord {
            address: addr.ip(),
            port: addr.port(),
            pid: std::process::id(),
        }
    }

    /// The record's path in `dir`.
    pub fn path(dir: &PeerDir) -> PathBuf {
        dir.run_dir().join(format!("{CHUNK_SERVER}.json"))
    }

    /// Writes the record atomically (temporary file, then rename); it is removed when the
    /// returned guard is dropped.
    ///
    /// # Errors
    /// When `.run/` or the file cannot be written.
    pub fn write(&self, dir: &PeerDir) -> io::Result<RecordGuard> {
        std::fs::create_dir_all(dir.run_dir())?;
        let path = ServerRecord::path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fsutil::write_atomic(&path, &json)?;
        Ok(RecordGuard { path })
    }

    /// The record of `dir`, or `None` when there is none or it does not parse.
    ///
    /// # Errors
    /// When it exists but cannot be read.
    pub fn read(dir: &PeerDir) -> io::Result<Option<ServerRecord>> {
        match std::fs::read(ServerRecord::path(dir)) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The record of `dir` if the chunk server that wrote it is running now: its pid is the one
    /// in the lock file, and the lock is held ([`is_running`]). `None` when there is no record,
    /// or it was left behind by a server that died.
    ///
    /// # Errors
    /// When the record or the lock cannot be read.
    pub fn read_live(dir: &PeerDir) -> io::Result<Option<ServerRecord>> {
        let Some(record) = ServerRecord::read(dir)? else {
            return Ok(None);
        };
        Ok(written_by_running(dir, CHUNK_SERVER, record.pid)?.then_some(record))
    }
}

/// Whether the record written by process `pid` is the running `program`'s: `pid` is the one in
/// its lock file, and the lock is held ([`is_running`]). The record of a program that died is
/// stale even when a new one holds the lock and has not yet written its own.
fn written_by_running(dir: &PeerDir, program: &str, pid: u32) -> io::Result<bool> {
    let holder = match File::open(lock_path(dir, program)) {
        Ok(mut file) => read_pid(&mut file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(holder == Some(pid) && is_running(dir, program)?)
}

/// The username the folder's running announcer announces: `DIR/.run/announcer.json`. It may
/// differ from `username.txt` (a `--username` flag, or the host name when nobody could be
/// asked), and it is the name other peers send offers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernameRecord {
    /// The username announced.
    pub username: String,
    /// The announcer's process id, as in its lock file.
    pub pid: u32,
}

impl UsernameRecord {
    /// The record of this process announcing as `username`.
    pub fn of_this_process(username: &str) -> UsernameRecord {
        UsernameRecord {
            username: username.to_owned(),
            pid: std::process::id(),
        }
    }

    /// The record's path in `dir`.
    pub fn path(dir: &PeerDir) -> PathBuf {
        dir.run_dir().join(format!("{ANNOUNCER}.json"))
    }

    /// Writes the record atomically; it is removed when the returned guard is dropped.
    ///
    /// # Errors
    /// When `.run/` or the file cannot be written.
    pub fn write(&self, dir: &PeerDir) -> io::Result<RecordGuard> {
        std::fs::create_dir_all(dir.run_dir())?;
        let path = UsernameRecord::path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fsutil::write_atomic(&path, &json)?;
        Ok(RecordGuard { path })
    }

    /// The username of `dir`'s announcer if it is running now and recorded one; `None` when
    /// no announcer runs, or the record is missing, unreadable or left by one that died.
    pub fn read_live(dir: &PeerDir) -> Option<String> {
        let bytes = std::fs::read(UsernameRecord::path(dir)).ok()?;
        let record: UsernameRecord = serde_json::from_slice(&bytes).ok()?;
        written_by_running(dir, ANNOUNCER, record.pid)
            .ok()?
            .then_some(record.username)
    }
}

/// Removes the [`ServerRecord`] when dropped (the chunk server stopping).
#[derive(Debug)]
pub struct RecordGuard {
    path: PathBuf,
}

impl RecordGuard {
    /// The record file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_folder_is_refused_with_the_first_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path().join("peer"));
        let first = InstanceLock::acquire(&dir, "listener").unwrap();
        assert!(is_running(&dir, "listener").unwrap());
        assert!(!is_running(&dir, "announcer").unwrap());
        let other = InstanceLock::acquire(&dir, "announcer").expect("another kind is fine");
        let err = InstanceLock::acquire(&dir, "listener").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another listener (pid {}) is already serving {}",
                std::process::id(),
                dir.root().display()
            )
        );
        drop(first);
        assert!(!is_running(&dir, "listener").unwrap());
        let _again = InstanceLock::acquire(&dir, "listener").expect("free once dropped");
        drop(other);
    }

    #[test]
    fn a_record_is_live_only_while_the_server_lock_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(tmp.path());
        assert_eq!(ServerRecord::read_live(&dir).unwrap(), None);
        let record = ServerRecord::of_this_process(SocketAddr::from(([127, 0, 0, 1], 6001)));
        let guard = record.write(&dir).unwrap();
        assert_eq!(ServerRecord::read(&dir).unwrap(), Some(record.clone()));
        assert_eq!(ServerRecord::read_live(&dir).unwrap(), None, "no lock held");
        let lock = InstanceLock::acquire(&dir, CHUNK_SERVER).unwrap();
        assert_eq!(ServerRecord::read_live(&dir).unwrap(), Some(record.clone()));
        let other = ServerRecord {
            pid: record.pid + 1,
            ..record
        };
        let _stale = other.write(&dir).unwrap();
        assert_eq!(
            ServerRecord::read_live(&dir).unwrap(),
            None,
            "a record of another pid than the lock holder's"
        );
        drop(lock);
        assert_eq!(ServerRecord::read_live(&dir).unwrap(), None, "stale record");
        let path = guard.path().to_path_buf();
        drop(guard);
        assert!(!path.exists());
    }
}
