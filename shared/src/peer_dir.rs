//! The peer folder (`--dir`): every program's home, and the only thing they share on disk.

use std::io;
use std::path::{Path, PathBuf};

use crate::{
    CLIENT_LOG, DEFAULT_SHARE_DIR, DOWNLOADS_DIR, PEERS_FILE, QUERIES_DIR, RUN_DIR, SERVER_LOG,
    TAGS_FILE, TEMP_DIR, USERNAME_FILE,
};

/// Paths inside one peer folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDir {
    root: PathBuf,
}

impl PeerDir {
    /// The peer folder at `root` (not created yet: see [`PeerDir::create`]).
    pub fn new(root: impl Into<PathBuf>) -> PeerDir {
        PeerDir { root: root.into() }
    }

    /// Creates the folder itself if missing.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `temp/`: the chunk store.
    pub fn temp(&self) -> PathBuf {
        self.root.join(TEMP_DIR)
    }

    /// `downloads/`: finished, verified files.
    pub fn downloads(&self) -> PathBuf {
        self.root.join(DOWNLOADS_DIR)
    }

    /// `tags.txt`.
    pub fn tags(&self) -> PathBuf {
        self.root.join(TAGS_FILE)
    }

    /// `server.log`.
    pub fn server_log(&self) -> PathBuf {
        self.root.join(SERVER_LOG)
    }

    /// `client.log`.
    pub fn client_log(&self) -> PathBuf {
        self.root.join(CLIENT_LOG)
    }

    /// The stored username.
    pub fn username_file(&self) -> PathBuf {
        self.root.join(USERNAME_FILE)
    }

    /// `served_files/`: what the chunk server shares when no `--share` is given.
    pub fn default_share_dir(&self) -> PathBuf {
        self.root.join(DEFAULT_SHARE_DIR)
    }

    /// `peers.txt`: static peers ([`crate::peers`]).
    pub fn peers_file(&self) -> PathBuf {
        self.root.join(PEERS_FILE)
    }

    /// `.queries/`: query files from the listener to the announcer ([`crate::queries`]).
    pub fn queries_dir(&self) -> PathBuf {
        self.root.join(QUERIES_DIR)
    }

    /// `.run/`: the programs' locks and the chunk server's record ([`crate::instance`]).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join(RUN_DIR)
    }

    /// Takes the exclusive lock `.run/<name>` (created if missing), waiting for another
    /// holder to let go: what serialises the writers of one file of the folder (`shares.txt`,
    /// `subscriptions.txt`), which read, edit and rewrite it. The lock lasts as long as the
    /// returned file is open.
    ///
    /// # Errors
    /// When `.run/` or the lock file cannot be created, or the lock cannot be taken.
    pub fn lock_for_edit(&self, name: &str) -> io::Result<std::fs::File> {
        std::fs::create_dir_all(self.run_dir())?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.run_dir().join(name))?;
        fs2::FileExt::lock_exclusive(&lock)?;
        Ok(lock)
    }
}
