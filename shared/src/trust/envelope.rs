//! Sealed datagrams: how every announcement, query, goodbye, withdrawal and offer of a private
//! network travels.
//!
//! # Format
//! ```text
//! {"username":"(sealed)","files":[],"sealed":"<base64 of the box>"}
//!
//! box       = version (1 byte, 1) | network tag (4) | nonce (24) | XChaCha20-Poly1305 ciphertext
//!             of the inner message, with version | tag as associated data
//! inner     = signer's Ed25519 public key (32) | session (8) | sequence (8) | time in ms (8)
//!             | signature (64) | payload (the datagram an open network would send, JSON)
//! signature = Ed25519 over "p2p-lan datagram v1" | tag | public key | session | sequence
//!             | time | payload
//! ```
//!
//! The outer JSON is what a legacy listener sees: an announcement of no files by `(sealed)`,
//! which changes nothing for it (a binary datagram might crash the naive ones). Whoever lacks
//! the key learns only that some member of the network with that tag sent something: the
//! username, the file names, the signer, everything is inside the box. The key proves the
//! sender is a member; the signature says which member, so one member cannot speak for another.
//! Session, sequence and time let a receiver refuse replays ([`super::replay`]).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::identity::{verify, Identity, PeerId, PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
use super::key::{NetworkKey, TAG_BYTES};
use super::random_bytes;

/// The username a sealed datagram shows legacy peers.
pub const SEALED_USERNAME: &str = "(sealed)";

const PREFIX: &[u8] = b"{\"username\":\"(sealed)\",\"files\":[],\"sealed\":\"";
const SUFFIX: &[u8] = b"\"}";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const AEAD_TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 1 + TAG_BYTES + NONCE_BYTES;
/// Signer, session, sequence and time.
const FIELDS_BYTES: usize = PUBLIC_KEY_BYTES + 8 + 8 + 8;
const INNER_OVERHEAD: usize = FIELDS_BYTES + SIGNATURE_BYTES;
const SIGN_CONTEXT: &[u8] = b"p2p-lan datagram v1";

/// Longest payload whose sealed datagram stays within [`crate::MAX_ANNOUNCE_DATAGRAM`] bytes.
pub const MAX_SEALED_PAYLOAD: usize = {
    let base64_chars = crate::MAX_ANNOUNCE_DATAGRAM - PREFIX.len() - SUFFIX.len();
    base64_chars / 4 * 3 - HEADER_BYTES - AEAD_TAG_BYTES - INNER_OVERHEAD
};

/// Seals this peer's datagrams. One per program run: its session is new each time.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    tag: [u8; TAG_BYTES],
    identity: Arc<Identity>,
    session: u64,
    sequence: AtomicU64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({:?}, session {:x})", self.identity, self.session)
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Sealer {
    /// A sealer for the network of `key`, signing as `identity`, with a new random session.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn new(key: &NetworkKey, identity: Arc<Identity>) -> io::Result<Sealer> {
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new(&key.datagram_key().into()),
            tag: key.tag(),
            identity,
            session: u64::from_le_bytes(random_bytes()?),
            sequence: AtomicU64::new(0),
        })
    }

    /// The sealed datagram of `payload` (at most [`MAX_SEALED_PAYLOAD`] bytes for it to fit a
    /// datagram), stamped now.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn seal(&self, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.seal_at(payload, now_ms())
    }

    /// [`Sealer::seal`], stamped `time_ms`.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn seal_at(&self, payload: &[u8], time_ms: u64) -> io::Result<Vec<u8>> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut inner = Vec::with_capacity(INNER_OVERHEAD + payload.len());
        inner.extend_from_slice(self.identity.public());
        inner.extend_from_slice(&self.session.to_be_bytes());
        inner.extend_from_slice(&sequence.to_be_bytes());
        inner.extend_from_slice(&time_ms.to_be_bytes());
        let signature =
            self.identity
                .sign(&signed_message(self.tag, &inner[..FIELDS_BYTES], payload));
        inner.extend_from_slice(&signature);
        inner.extend_from_slice(payload);

        let nonce: [u8; NONCE_BYTES] = random_bytes()?;
        let mut boxed = Vec::with_capacity(HEADER_BYTES + AEAD_TAG_BYTES + inner.len());
        boxed.push(VERSION);
        boxed.extend_from_slice(&self.tag);
        boxed.extend_from_slice(&nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &inner,
                    aad: &boxed[..1 + TAG_BYTES],
                },
            )
            .map_err(|_| io::Error::other("datagram too long to seal"))?;
        boxed.extend_from_slice(&ciphertext);

        let mut datagram = PREFIX.to_vec();
        datagram.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&boxed)
                .as_bytes(),
        );
        datagram.extend_from_slice(SUFFIX);
        Ok(datagram)
    }

    /// The peer ID datagrams are signed as.
    pub fn peer_id(&self) -> PeerId {
        self.identity.id()
    }
}

fn signed_message(tag: [u8; TAG_BYTES], fields: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(SIGN_CONTEXT.len() + TAG_BYTES + fields.len() + payload.len());
    message.extend_from_slice(SIGN_CONTEXT);
    message.extend_from_slice(&tag);
    message.extend_from_slice(fields);
    message.extend_from_slice(payload);
    message
}

/// Whether `bytes` is a sealed datagram (of any network), by its outer form only.
pub fn is_sealed(bytes: &[u8]) -> bool {
    // The prefix and the suffix must not overlap: `…"sealed":"}` ends with `"}` too.
    bytes.len() >= PREFIX.len() + SUFFIX.len()
        && bytes.starts_with(PREFIX)
        && bytes.ends_with(SUFFIX)
}

/// A datagram opened: who sent it, when, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The signer's public key.
    pub signer: [u8; PUBLIC_KEY_BYTES],
    /// The sender's session (one per program run).
    pub session: u64,
    /// The datagram's number in its session.
    pub sequence: u64,
    /// When it was sealed, in ms since the Unix epoch, by the sender's clock.
    pub time_ms: u64,
    /// The datagram as an open network would have carried it.
    pub payload: Vec<u8>,
}

impl Opened {
    /// The signer's peer ID.
    pub fn peer_id(&self) -> PeerId {
        PeerId::of(&self.signer)
    }
}

/// Why a datagram did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsealed {
    /// Not sealed at all: a legacy peer's, or one of an open network.
    #[error("not sealed (a legacy peer, or a peer without a network key)")]
    Plain,
    /// Sealed for another network (its tag).
    #[error("sealed with a different network key (network {})", super::key::tag_id(*.0))]
    OtherNetwork([u8; TAG_BYTES]),
    /// Sealed under our network's tag but not by its key, or altered, or badly signed: forged.
    #[error("forged or damaged: it fails authentication")]
    Forged,
}

/// Opens the datagrams of one network.
pub struct Opener {
    cipher: XChaCha20Poly1305,
    tag: [u8; TAG_BYTES],
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener({})", super::key::tag_id(self.tag))
    }
}

impl Opener {
    /// An opener for the network of `key`.
    pub fn new(key: &NetworkKey) -> Opener {
        Opener {
            cipher: XChaCha20Poly1305::new(&key.datagram_key().into()),
            tag: key.tag(),
        }
    }

    /// Opens `datagram`: decrypts it, checks the signature, and returns what it says.
    ///
    /// # Errors
    /// [`Unsealed`].
    pub fn open(&self, datagram: &[u8]) -> Result<Opened, Unsealed> {
        if !is_sealed(datagram) {
            return Err(Unsealed::Plain);
        }
        let encoded = &datagram[PREFIX.len()..datagram.len() - SUFFIX.len()];
        let boxed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Unsealed::Forged)?;
        if boxed.len() < HEADER_BYTES + AEAD_TAG_BYTES + INNER_OVERHEAD || boxed[0] != VERSION {
            return Err(Unsealed::Forged);
        }
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&boxed[1..=TAG_BYTES]);
        if tag != self.tag {
            return Err(Unsealed::OtherNetwork(tag));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&boxed[1 + TAG_BYTES..HEADER_BYTES]);
        let inner = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &boxed[HEADER_BYTES..],
                    aad: &boxed[..1 + TAG_BYTES],
                },
            )
            .map_err(|_| Unsealed::Forged)?;
        let (fields, rest) = inner.split_at(FIELDS_BYTES);
        let (signature, payload) = rest.split_at(SIGNATURE_BYTES);
        let mut signer = [0u8; PUBLIC_KEY_BYTES];
        signer.copy_from_slice(&fields[..PUBLIC_KEY_BYTES]);
        if !verify(&signer, &signed_message(tag, fields, payload), signature) {
            return Err(Unsealed::Forged);
        }
        let number = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&fields[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        Ok(Opened {
            signer,
            session: number(PUBLIC_KEY_BYTES),
            sequence: number(PUBLIC_KEY_BYTES + 8),
            time_ms: number(PUBLIC_KEY_BYTES + 16),
            payload: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> NetworkKey {
        NetworkKey::from_bytes([byte; 32])
    }

    fn sealer(key: &NetworkKey, seed: u8) -> Sealer {
        Sealer::new(key, Arc::new(Identity::from_seed(&[seed; 32]))).unwrap()
    }

    #[test]
    fn a_sealed_datagram_opens_with_its_signer_and_payload_and_hides_them() {
        let k = key(1);
        let s = sealer(&k, 9);
        let payload = br#"{"username":"alice","files":["secret-plans.pdf_1"]}"#;
        let datagram = s.seal_at(payload, 1234).unwrap();
        assert!(is_sealed(&datagram));
        let text = String::from_utf8(datagram.clone()).unwrap();
        assert!(
            !text.contains("alice") && !text.contains("secret"),
            "{text}"
        );
        // A legacy peer reads it as an announcement of nothing.
        let legacy: serde_json::Value = serde_json::from_slice(&datagram).unwrap();
        assert_eq!(legacy["username"], SEALED_USERNAME);
        assert_eq!(legacy["files"], serde_json::json!([]));

        let opened = Opener::new(&k).open(&datagram).unwrap();
        assert_eq!(opened.payload, payload);
        assert_eq!(opened.time_ms, 1234);
        assert_eq!(opened.peer_id(), Identity::from_seed(&[9; 32]).id());
        assert_eq!(opened.sequence, 0);
        let next = Opener::new(&k).open(&s.seal(b"{}").unwrap()).unwrap();
        assert_eq!((next.sequence, next.session), (1, opened.session));
    }

    #[test]
    fn another_network_plain_json_and_forgeries_are_told_apart() {
        let ours = Opener::new(&key(1));
        let theirs = sealer(&key(2), 9).seal(b"{}").unwrap();
        assert_eq!(
            ours.open(&theirs),
            Err(Unsealed::OtherNetwork(key(2).tag()))
        );
        assert!(ours
            .open(&theirs)
            .unwrap_err()
            .to_string()
            .contains("different network key"));
        assert_eq!(
            ours.open(br#"{"username":"x","files":[]}"#),
            Err(Unsealed::Plain)
        );

        // Every single-byte change inside the base64 is refused (or reads as another network).
        let good = sealer(&key(1), 9).seal(b"{\"a\":1}").unwrap();
        for i in PREFIX.len()..good.len() - SUFFIX.len() {
            let mut bad = good.clone();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(ours.open(&bad).is_err(), "byte {i}");
        }
        // The prefix and the suffix overlapping (found by fuzzing: it used to panic).
        let overlap = [PREFIX, b"}"].concat();
        assert!(overlap.ends_with(SUFFIX) && !is_sealed(&overlap));
        assert_eq!(ours.open(&overlap), Err(Unsealed::Plain));
        // Truncated, and garbage between the prefix and the suffix.
        assert_eq!(
            ours.open(&[PREFIX, b"AAAA", SUFFIX].concat()),
            Err(Unsealed::Forged)
        );
        assert_eq!(
            ours.open(&[PREFIX, b"!!", SUFFIX].concat()),
            Err(Unsealed::Forged)
        );
    }

    #[test]
    fn a_member_cannot_sign_for_another() {
        // Re-encrypting another member's inner message with a swapped signer key fails the
        // signature, even though the box is sealed with the right network key.
        let k = key(1);
        let alice = Identity::from_seed(&[1; 32]);
        let mallory = Identity::from_seed(&[2; 32]);
        let mut fields = alice.public().to_vec();
        fields.extend_from_slice(&[0u8; 24]);
        let payload = b"{}";
        let signature = mallory.sign(&signed_message(k.tag(), &fields, payload));
        let mut inner = fields;
        inner.extend_from_slice(&signature);
        inner.extend_from_slice(payload);
        let cipher = XChaCha20Poly1305::new(&k.datagram_key().into());
        let mut boxed = vec![VERSION];
        boxed.extend_from_slice(&k.tag());
        boxed.extend_from_slice(&[0u8; NONCE_BYTES]);
        let aad = boxed.clone();
        boxed.extend(
            cipher
                .encrypt(
                    &XNonce::from([0u8; NONCE_BYTES]),
                    Payload {
                        msg: &inner,
                        aad: &aad,
                    },
                )
                .unwrap(),
        );
        let datagram = [
            PREFIX,
            base64::engine::general_purpose::STANDARD
                .encode(&boxed)
                .as_bytes(),
            SUFFIX,
        ]
        .concat();
        assert_eq!(Opener::new(&k).open(&datagram), Err(Unsealed::Forged));
    }

    #[test]
    fn the_largest_payload_fits_one_datagram() {
        let payload = vec![b'x'; MAX_SEALED_PAYLOAD];
        let datagram = sealer(&key(1), 9).seal(&payload).unwrap();
        assert!(
            datagram.len() <= crate::MAX_ANNOUNCE_DATAGRAM,
            "{}",
            datagram.len()
        );
        let one_more = sealer(&key(1), 9)
            .seal(&vec![b'x'; MAX_SEALED_PAYLOAD + 3])
            .unwrap();
        assert!(one_more.len() > crate::MAX_ANNOUNCE_DATAGRAM);
        const { assert!(MAX_SEALED_PAYLOAD > 500) };
    }
}
