//! Trust: private networks, peer identities, and what outsiders cannot do.
//!
//! - [`key`]: the network key, derived from a passphrase by Argon2id, in `DIR/network.key`.
//!   Without it the network is open, as before.
//! - [`identity`]: this peer's Ed25519 key pair in `DIR/identity.key`, and its [`PeerId`].
//! - [`envelope`]: sealed datagrams (encrypted with the network key, signed by the sender).
//! - [`replay`]: refusing datagrams sent again; [`gate`]: what a receiver lets in.
//! - [`pins`]: `DIR/known-peers.txt`, the peer ID each username was first heard with.
//! - [`channel`]: the encrypted, mutually authenticated transfer channel (Noise, keyed by the
//!   network key); [`allow`]: the allow list of peers that may download from this one.
//!
//! [`Trust::load`] reads both files of a peer folder; every program calls it at start.
//! `docs/PROTOCOL.md` ("Private networks") gives the design and the threat model.

pub mod allow;
pub mod channel;
pub mod envelope;
pub mod gate;
pub mod identity;
pub mod key;
pub mod pins;
pub mod replay;

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use allow::{AllowList, AllowWatch, ALLOW_FILE};
pub use channel::{ChannelError, ChannelKeys, SecureStream};
pub use envelope::{is_sealed, Opened, Opener, Sealer, Unsealed, MAX_SEALED_PAYLOAD};
pub use gate::{Gate, Passed, Refused};
pub use identity::{Identity, IdentityError, PeerId};
pub use key::{KeyFileError, NetworkKey};
pub use replay::{ReplayGuard, Stale};

/// What a program of a peer folder knows of trust: the network key, if the network is
/// private, and this peer's identity.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The network key; `None` on an open network.
    pub key: Option<NetworkKey>,
    /// This peer's identity.
    pub identity: Arc<Identity>,
}

/// Why [`Trust::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The network key file.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The identity file.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl Trust {
    /// The network key (if any) and the identity (made if missing) of the peer folder `dir`.
    ///
    /// # Errors
    /// [`TrustError`]: a key or identity file that exists but cannot be used is an error,
    /// never silently an open network.
    pub fn load(dir: &Path) -> Result<Trust, TrustError> {
        let key = NetworkKey::load(dir)?;
        let identity = Arc::new(Identity::load_or_create(dir)?);
        Ok(Trust { key, identity })
    }

    /// An open network with a fresh identity (tests).
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn open_with_new_identity() -> io::Result<Trust> {
        Ok(Trust {
            key: None,
            identity: Arc::new(Identity::generate()?),
        })
    }

    /// Whether the network is private.
    pub fn is_private(&self) -> bool {
        self.key.is_some()
    }

    /// The keys of the transfer channel; `None` on an open network.
    pub fn channel_keys(&self) -> Option<ChannelKeys> {
        self.key
            .as_ref()
            .map(|key| ChannelKeys::new(key, Arc::clone(&self.identity)))
    }

    /// A sealer for this program run's datagrams; `None` on an open network.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn sealer(&self) -> io::Result<Option<Sealer>> {
        self.key
            .as_ref()
            .map(|key| Sealer::new(key, Arc::clone(&self.identity)))
            .transpose()
    }

    /// An opener of the network's datagrams; `None` on an open network.
    pub fn opener(&self) -> Option<Opener> {
        self.key.as_ref().map(Opener::new)
    }

    /// One line for a program's start-up log: the network and this peer's ID.
    pub fn describe(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "private network {} (DIR/{}), peer ID {}",
                key.id(),
                key::NETWORK_KEY_FILE,
                self.identity.id()
            ),
            None => format!(
                "open network (no {}: anyone on the LAN can list and download what is shared)",
                key::NETWORK_KEY_FILE
            ),
        }
    }
}

/// How a program's datagrams leave: as they are on an open network, sealed on a private one.
#[derive(Debug)]
pub struct Wire(Option<Sealer>);

impl Wire {
    /// The wire of `trust`'s network, with a new session for this program run.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn of(trust: &Trust) -> io::Result<Wire> {
        Ok(Wire(trust.sealer()?))
    }

    /// An open network's wire (tests).
    pub fn open() -> Wire {
        Wire(None)
    }

    /// Longest payload that still leaves as one datagram of at most
    /// [`crate::MAX_ANNOUNCE_DATAGRAM`] bytes.
    pub fn payload_limit(&self) -> usize {
        if self.0.is_some() {
            MAX_SEALED_PAYLOAD
        } else {
            crate::MAX_ANNOUNCE_DATAGRAM
        }
    }

    /// The datagram carrying `payload`: itself, or sealed (each call a new sequence number, so
    /// a datagram meant to be sent again must be wrapped again).
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn wrap(&self, payload: &[u8]) -> io::Result<Vec<u8>> {
        match &self.0 {
            Some(sealer) => sealer.seal(payload),
            None => Ok(payload.to_vec()),
        }
    }

    /// Whether datagrams are sealed.
    pub fn is_sealed(&self) -> bool {
        self.0.is_some()
    }
}

/// `N` bytes from the system's random source.
///
/// # Errors
/// When it fails.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| io::Error::other("the system's random source failed"))?;
    Ok(out)
}

/// Writes a secret file: created with mode 0600 (never readable by others, even for a moment),
/// flushed, then renamed over `path`.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A random name: programs in containers sharing the folder may all be pid 1.
    let unique: [u8; 8] = random_bytes()?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.secret.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        crate::digest::to_hex(&unique)
    ));
    crate::fsutil::write_atomic_private(path, &tmp, bytes)
}
