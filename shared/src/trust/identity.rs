//! A peer's identity: an Ed25519 key pair made on first start and kept in `DIR/identity.key`
//! (mode 0600), and its short fingerprint, the [`PeerId`].
//!
//! The identity signs every sealed datagram ([`super::envelope`]) and the transcript of every
//! transfer handshake, so a listener knows which peer announced what, and a downloader knows
//! that the chunk server it talks to is the peer that announced the content.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::signature::{self, Ed25519KeyPair, KeyPair};

use super::{random_bytes, write_secret};
use crate::digest::{parse_hex32, to_hex};

/// Name of the identity file in the peer folder.
pub const IDENTITY_FILE: &str = "identity.key";

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Bytes of SHA-256 of the public key a [`PeerId`] keeps: 80 bits, shown as 16 base32 letters.
const ID_BYTES: usize = 10;

/// The short fingerprint of a peer's public key, shown as `ABCD-EFGH-IJKL-MNOP` (RFC 4648
/// base32 of the first 80 bits of its SHA-256). Finding another key with the same ID takes
/// about 2^80 tries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; ID_BYTES]);

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl PeerId {
    /// The ID of the Ed25519 public key `public`.
    pub fn of(public: &[u8; PUBLIC_KEY_BYTES]) -> PeerId {
        let digest = crate::digest::Digest::of(public);
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&digest.as_bytes()[..ID_BYTES]);
        PeerId(id)
    }
}

impl PeerId {
    /// The first group of four letters (`7QXM`), where a listing has no room for the whole
    /// ID: enough to tell a few peers apart at a glance, not to identify one.
    pub fn short(&self) -> String {
        self.to_string()[..4].to_owned()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 80 bits are exactly 16 groups of 5.
        let mut bits: u128 = 0;
        for byte in self.0 {
            bits = (bits << 8) | u128::from(byte);
        }
        for i in 0..16 {
            if i > 0 && i % 4 == 0 {
                f.write_str("-")?;
            }
            let index = usize::try_from((bits >> (5 * (15 - i))) & 0x1f).unwrap_or(0);
            write!(f, "{}", char::from(BASE32[index]))?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// Why a text is not a [`PeerId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a peer ID (16 letters A-Z and digits 2-7, as `ABCD-EFGH-IJKL-MNOP`)")]
pub struct PeerIdError(pub String);

impl FromStr for PeerId {
    type Err = PeerIdError;

    /// Parses the [`Display`](fmt::Display) form, in any case, with or without the dashes.
    fn from_str(text: &str) -> Result<PeerId, PeerIdError> {
        let err = || PeerIdError(text.to_owned());
        let letters: Vec<u8> = text
            .bytes()
            .filter(|&b| b != b'-')
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if letters.len() != 16 {
            return Err(err());
        }
        let mut bits: u128 = 0;
        for letter in letters {
            let value = BASE32.iter().position(|&c| c == letter).ok_or_else(err)?;
            bits = (bits << 5) | value as u128;
        }
        let mut id = [0u8; ID_BYTES];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::try_from((bits >> (8 * (ID_BYTES - 1 - i))) & 0xff).unwrap_or(0);
        }
        Ok(PeerId(id))
    }
}

/// This peer's key pair.
pub struct Identity {
    pair: Ed25519KeyPair,
    public: [u8; PUBLIC_KEY_BYTES],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.id())
    }
}

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The identity file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not an identity of ours.
    #[error("{path} is not a peer identity file (expected a line `seed <64 hex digits>`); move it away and a new identity is made at the next start")]
    Malformed {
        /// The identity file.
        path: PathBuf,
    },
}

impl Identity {
    /// The identity of the 32-byte Ed25519 seed `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed");
        let mut public = [0u8; PUBLIC_KEY_BYTES];
        public.copy_from_slice(pair.public_key().as_ref());
        Identity { pair, public }
    }

    /// A new random identity.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> io::Result<Identity> {
        Ok(Identity::from_seed(&random_bytes()?))
    }

    /// The identity file of the peer folder `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(IDENTITY_FILE)
    }

    /// The identity of the peer folder `dir`, made and stored (mode 0600) if it has none yet.
    /// Several programs starting at once agree on one: the file appears whole under its name
    /// by a link that fails if another program linked its own first, and then that one is
    /// read.
    ///
    /// # Errors
    /// [`IdentityError`].
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = Identity::path_in(dir);
        let io_err = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => return Identity::parse(&text).ok_or(IdentityError::Malformed { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let seed: [u8; 32] = random_bytes().map_err(io_err)?;
        let text = format!(
            "# This peer's identity (peer ID {}): an Ed25519 seed. Secret; made on first start.\n\
             seed {}\n",
            Identity::from_seed(&seed).id(),
            to_hex(&seed)
        );
        // A random name: programs in containers sharing the folder may all be pid 1.
        let unique: [u8; 8] = random_bytes().map_err(io_err)?;
        let tmp = dir.join(format!(".{IDENTITY_FILE}.{}.tmp", to_hex(&unique)));
        write_secret(&tmp, text.as_bytes()).map_err(io_err)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                crate::fsutil::sync_parent(&path);
                Ok(Identity::from_seed(&seed))
            }
            // Another program of the folder made one first: use it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&path).map_err(io_err)?;
                Identity::parse(&text).ok_or(IdentityError::Malformed { path })
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn parse(text: &str) -> Option<Identity> {
        let hex = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("seed "))
            .map(str::trim)
            .next()?;
        Some(Identity::from_seed(&parse_hex32(hex)?))
    }

    /// The public key.
    pub fn public(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.public
    }

    /// The peer ID.
    pub fn id(&self) -> PeerId {
        PeerId::of(&self.public)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        let mut out = [0u8; SIGNATURE_BYTES];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Whether `signature` is `public`'s signature of `message`.
pub fn verify(public: &[u8; PUBLIC_KEY_BYTES], message: &[u8], signature: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_print_and_parse_back() {
        let identity = Identity::from_seed(&[1; 32]);
        let id = identity.id();
        let text = id.to_string();
        assert_eq!(text.len(), 19, "{text}");
        assert_eq!(text.matches('-').count(), 3, "{text}");
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert_eq!(
            text.to_lowercase()
                .replace('-', "")
                .parse::<PeerId>()
                .unwrap(),
            id
        );
        assert_ne!(Identity::from_seed(&[2; 32]).id(), id);
        for bad in ["", "ABCD", "ABCD-EFGH-IJKL-MNO1", "ABCD-EFGH-IJKL-MNOPQ"] {
            assert!(bad.parse::<PeerId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let a = Identity::from_seed(&[1; 32]);
        let b = Identity::from_seed(&[2; 32]);
        let sig = a.sign(b"hello");
        assert!(verify(a.public(), b"hello", &sig));
        assert!(!verify(a.public(), b"hellp", &sig));
        assert!(!verify(b.public(), b"hello", &sig));
        assert!(!verify(a.public(), b"hello", &sig[..63]));
    }

    #[test]
    fn an_identity_is_made_once_then_kept_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(Identity::path_in(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn programs_starting_together_agree_on_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<PeerId> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Identity::load_or_create(dir.path()).unwrap().id()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }

    #[test]
    fn a_garbled_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(Identity::path_in(dir.path()), "seed nope\n").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
