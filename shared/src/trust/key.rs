//! The network key: what makes a group of peers a private network.
//!
//! `downloader network new` draws a passphrase of [`PHRASE_WORDS`] words from the BIP-39
//! English list (2048 words, 11 bits each: 66 bits); `downloader network join "PHRASE"` types
//! it on another machine. Both derive the same 32-byte key from it with Argon2id
//! ([`NetworkKey::from_phrase`]) and store it in `DIR/network.key` (mode 0600). The phrase
//! itself is never stored. Every program of the folder loads the key at start
//! ([`NetworkKey::load`]); without the file, the network is open.
//!
//! The salt is fixed (every member must derive the same key from the phrase alone): a
//! precomputed table is no threat to 66 random bits behind a slow KDF. From the key, HKDF
//! derives one subkey per use ([`NetworkKey::datagram_key`], [`NetworkKey::transfer_psk`]) and
//! a public tag ([`NetworkKey::tag`]) that datagrams carry in the clear, so that a peer of
//! another network is told apart from a forger.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ring::hkdf;

use crate::digest::{parse_hex32, to_hex};

use super::{random_bytes, write_secret};

/// Words in a passphrase made by `network new`.
pub const PHRASE_WORDS: usize = 6;

/// Fewest words `network join` accepts: a shorter phrase is too easy to guess offline.
pub const MIN_PHRASE_WORDS: usize = 5;

/// Name of the key file in the peer folder.
pub const NETWORK_KEY_FILE: &str = "network.key";

/// Argon2id cost: 64 MiB of memory, 3 passes, one lane (about a third of a second here).
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;

/// The fixed salt (see the module documentation).
const SALT: &[u8] = b"p2p-lan network key v1";

/// Bytes of [`NetworkKey::tag`].
pub const TAG_BYTES: usize = 4;

/// The key shared by the members of a private network.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey {
    master: [u8; 32],
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkKey({})", self.id())
    }
}

/// Why a passphrase was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    /// Fewer than [`MIN_PHRASE_WORDS`] words.
    #[error("a network passphrase has {PHRASE_WORDS} words (at least {MIN_PHRASE_WORDS}); this one has {0}")]
    TooShort(usize),
    /// A word that is not in the list, with the closest one that is.
    #[error("word {position} {word:?} is not in the word list (did you mean {suggestion:?}?)")]
    UnknownWord {
        /// 1-based position in the phrase.
        position: usize,
        /// The word as typed.
        word: String,
        /// The closest word of the list.
        suggestion: String,
    },
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is not a key file of ours.
    #[error("{path} is not a network key file (expected a line `key <64 hex digits>`); run `downloader network join \"PHRASE\"` again")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

fn word_list() -> &'static [&'static str; 2048] {
    bip39::Language::English.word_list()
}

/// A new random passphrase of [`PHRASE_WORDS`] words, separated by `-`.
///
/// # Errors
/// When the system's random source fails.
pub fn new_phrase() -> io::Result<String> {
    let random: [u8; 2 * PHRASE_WORDS] = random_bytes()?;
    let words: Vec<&str> = random
        .chunks(2)
        .map(|pair| word_list()[usize::from(u16::from_le_bytes([pair[0], pair[1]]) & 0x7ff)])
        .collect();
    Ok(words.join("-"))
}

/// The canonical form of a typed passphrase: lower case, its words (separated by spaces,
/// `-`, `_`, `.` or `,`) joined by `-`. Every word must be in the list; a typo gets the
/// closest word as a suggestion.
///
/// # Errors
/// [`PhraseError`].
pub fn normalize_phrase(typed: &str) -> Result<String, PhraseError> {
    let words: Vec<String> = typed
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '.' | ','))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.len() < MIN_PHRASE_WORDS {
        return Err(PhraseError::TooShort(words.len()));
    }
    for (i, word) in words.iter().enumerate() {
        if bip39::Language::English.find_word(word).is_none() {
            let suggestion = word_list()
                .iter()
                .min_by_key(|candidate| strsim::levenshtein(word, candidate))
                .map_or_else(String::new, |w| (*w).to_owned());
            return Err(PhraseError::UnknownWord {
                position: i + 1,
                word: word.clone(),
                suggestion,
            });
        }
    }
    Ok(words.join("-"))
}

/// HKDF-SHA256 expansion of `master` for one purpose.
fn derive(master: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"p2p-lan").extract(master);
    let info = [purpose];
    let okm = prk
        .expand(&info, Len32)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    let mut out = [0u8; 32];
    okm.fill(&mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

impl NetworkKey {
    /// The key of the passphrase `phrase` (already [normalized](normalize_phrase)), by
    /// Argon2id. Takes a fraction of a second and 64 MiB on purpose.
    pub fn from_phrase(phrase: &str) -> NetworkKey {
        let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(32))
            .expect("fixed Argon2 parameters are valid");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut master = [0u8; 32];
        argon
            .hash_password_into(phrase.as_bytes(), SALT, &mut master)
            .expect("fixed Argon2 parameters and a 32-byte output are valid");
        NetworkKey { master }
    }

    /// A key from its raw bytes (tests, and the key file).
    pub fn from_bytes(master: [u8; 32]) -> NetworkKey {
        NetworkKey { master }
    }

    /// The key file of the peer folder `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(NETWORK_KEY_FILE)
    }

    /// The key stored in the peer folder `dir`; `None` when there is none (an open network).
    ///
    /// # Errors
    /// When the file exists but cannot be read or is not a key file.
    pub fn load(dir: &Path) -> Result<Option<NetworkKey>, KeyFileError> {
        let path = NetworkKey::path_in(dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KeyFileError::Io { path, source }),
        };
        let hex = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("key "))
            .map(str::trim)
            .next()
            .ok_or_else(|| KeyFileError::Malformed { path: path.clone() })?;
        let master = parse_hex32(hex).ok_or(KeyFileError::Malformed { path })?;
        Ok(Some(NetworkKey { master }))
    }

    /// Stores this key in the peer folder `dir` (mode 0600, atomically).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let text = format!(
            "# p2p network key (network {}), derived from its passphrase by Argon2id.\n\
             # Secret: whoever holds this file is a member. Written by `downloader network`.\n\
             key {}\n",
            self.id(),
            to_hex(&self.master)
        );
        write_secret(&NetworkKey::path_in(dir), text.as_bytes())
    }

    /// Removes the key file of `dir`; returns whether there was one.
    ///
    /// # Errors
    /// Any I/O error but "not found".
    pub fn remove(dir: &Path) -> io::Result<bool> {
        match fs::remove_file(NetworkKey::path_in(dir)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The key that seals datagrams (XChaCha20-Poly1305).
    pub fn datagram_key(&self) -> [u8; 32] {
        derive(&self.master, b"datagram")
    }

    /// The pre-shared key of the transfer channel's Noise handshake.
    pub fn transfer_psk(&self) -> [u8; 32] {
        derive(&self.master, b"transfer psk")
    }

    /// A public tag of this network, carried in the clear by sealed datagrams: a datagram of
    /// another tag comes from another network, not from a forger.
    pub fn tag(&self) -> [u8; TAG_BYTES] {
        let full = derive(&self.master, b"tag");
        [full[0], full[1], full[2], full[3]]
    }

    /// The network's short public name, from [`NetworkKey::tag`]: `1a2b-3c4d`. Members of one
    /// network see the same; it says nothing of the key.
    pub fn id(&self) -> String {
        tag_id(self.tag())
    }
}

/// How a network [`tag`](NetworkKey::tag) is shown: `1a2b-3c4d`.
pub fn tag_id(tag: [u8; TAG_BYTES]) -> String {
    let hex = to_hex(&tag);
    format!("{}-{}", &hex[..4], &hex[4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_phrase_has_six_listed_words_and_normalizes_to_itself() {
        let phrase = new_phrase().unwrap();
        assert_eq!(phrase.split('-').count(), PHRASE_WORDS);
        assert_eq!(normalize_phrase(&phrase).unwrap(), phrase);
        assert_ne!(new_phrase().unwrap(), phrase);
    }

    #[test]
    fn typing_variants_give_one_phrase() {
        let canonical = "abandon-ability-able-about-above-absent";
        for typed in [
            "abandon ability able about above absent",
            "  Abandon  ABILITY able-about_above.absent ",
            canonical,
        ] {
            assert_eq!(normalize_phrase(typed).unwrap(), canonical, "{typed}");
        }
    }

    #[test]
    fn short_phrases_and_typos_are_refused_with_a_suggestion() {
        assert_eq!(
            normalize_phrase("abandon ability able about"),
            Err(PhraseError::TooShort(4))
        );
        let err = normalize_phrase("abandon abilty able about above absent").unwrap_err();
        assert_eq!(
            err,
            PhraseError::UnknownWord {
                position: 2,
                word: "abilty".into(),
                suggestion: "ability".into()
            }
        );
        assert!(
            err.to_string().contains("did you mean \"ability\""),
            "{err}"
        );
    }

    #[test]
    fn one_phrase_one_key_and_subkeys_differ() {
        let a = NetworkKey::from_phrase("abandon-ability-able-about-above-absent");
        let b = NetworkKey::from_phrase("abandon-ability-able-about-above-absent");
        let c = NetworkKey::from_phrase("abandon-ability-able-about-above-absorb");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a.tag(), c.tag());
        assert_ne!(a.datagram_key(), a.transfer_psk());
        assert_ne!(a.datagram_key(), a.master);
        assert_eq!(a.id().len(), 9);
    }

    #[test]
    fn the_key_file_round_trips_with_mode_0600_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(NetworkKey::load(dir.path()).unwrap().is_none());
        let key = NetworkKey::from_bytes([7; 32]);
        key.save(dir.path()).unwrap();
        assert_eq!(NetworkKey::load(dir.path()).unwrap(), Some(key.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(NetworkKey::path_in(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(NetworkKey::remove(dir.path()).unwrap());
        assert!(!NetworkKey::remove(dir.path()).unwrap());
        assert!(NetworkKey::load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_garbled_key_file_is_an_error_not_an_open_network() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(NetworkKey::path_in(dir.path()), "key 12zz\n").unwrap();
        let err = NetworkKey::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a network key file"), "{err}");
    }
}
