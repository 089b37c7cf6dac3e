//! SHA-256 digests: the identity of a content and the check on every chunk.
//!
//! Hashing is done by the `sha2` crate; this module only gives digests a type, a hex form for the
//! wire and for files, and a writer that hashes what passes through it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, written (and parsed) as exactly 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Hashes everything `reader` yields, with a fixed-size buffer.
    ///
    /// # Errors
    /// Any read error.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
        let mut hasher = Hasher::default();
        let n = io::copy(&mut reader, &mut hasher)?;
        Ok((hasher.finish(), n))
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first `n` hex digits, for compact display.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_string();
        s.truncate(n);
        s
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

/// `bytes` as lowercase hex: the one hex form of digests, keys and seeds.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The 32 bytes written as exactly 64 lowercase hex digits (what [`to_hex`] writes), or
/// `None`: no sign, no upper case (see [`Digest::from_str`]).
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    parse_hex(text)?.try_into().ok()
}

/// The bytes written as lowercase hex digits, two per byte (what [`to_hex`] writes), or `None`.
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    (bytes.chunks_exact(2))
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// Deserializes a value written as its text form (`Display`), parsed by its `FromStr`.
fn deserialize_text<'de, D: Deserializer<'de>, T: FromStr<Err: fmt::Display>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The text was not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest: expected 64 lowercase hex digits")]
pub struct ParseDigestError;

/// The value of one lowercase hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Accepts exactly the form [`Display`](fmt::Display) writes: 64 lowercase hex digits. No
    /// sign (`u8::from_str_radix` would take `+e`), no upper case, so that one digest has one
    /// spelling everywhere (on the wire, in `tags.txt`, in logs) and text comparisons hold.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(Digest).ok_or(ParseDigestError)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_text(deserializer)
    }
}

/// An incremental SHA-256 that is also a [`Write`] sink, so `io::copy` can feed it.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(..)")
    }
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Hasher {
    /// Where this computation stands: resumable by [`Midstate::resume`], anywhere.
    pub fn midstate(&self) -> Midstate {
        Midstate(self.0.serialize().to_vec())
    }
}

/// A SHA-256 computation paused after some prefix of a file: the `sha2` crate's serialized
/// state (the chaining value, the number of blocks hashed and the bytes of the unfinished
/// block), which is canonical, so two equal states serialize to equal bytes.
///
/// The manifest carries the midstate at the start of chunks 2 to 5. A downloader then checks
/// each chunk, as it arrives and in parallel with the others, as one step of the whole file's
/// SHA-256: resumed from the midstate at its start, hashing the chunk must give the midstate at
/// the next chunk's start (the file's digest, after the last chunk). When every chunk passes,
/// the file has the SHA-256 asked for, and no byte was hashed twice. Finding a chunk that
/// passes from forged midstates means finding a SHA-256 collision.
///
/// # Format
/// 208 lowercase hex digits (104 bytes), parsed strictly: a state `sha2` cannot resume is refused.
#[derive(Clone, PartialEq, Eq)]
pub struct Midstate(Vec<u8>);

impl Midstate {
    /// The state before any byte: where the first chunk starts.
    pub fn initial() -> Midstate {
        Hasher::default().midstate()
    }

    /// A hasher that continues from here.
    pub fn resume(&self) -> Hasher {
        let state = SerializedState::<Sha256>::try_from(self.0.as_slice())
            .expect("a Midstate holds a serialized state of the right length");
        Hasher(Sha256::deserialize(&state).expect("a Midstate holds a state sha2 accepted"))
    }
}

impl fmt::Display for Midstate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for Midstate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Midstate({})", to_hex(&self.0[..8]))
    }
}

/// The text was not the hex form of a SHA-256 state that can be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 midstate: expected 208 lowercase hex digits of a valid state")]
pub struct ParseMidstateError;

impl FromStr for Midstate {
    type Err = ParseMidstateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = parse_hex(s).ok_or(ParseMidstateError)?;
        let state = SerializedState::<Sha256>::try_from(bytes.as_slice())
            .map_err(|_| ParseMidstateError)?;
        Sha256::deserialize(&state).map_err(|_| ParseMidstateError)?;
        Ok(Midstate(bytes))
    }
}

impl Serialize for Midstate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Midstate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_text(deserializer)
    }
}

/// A writer that hashes and counts every byte it passes on to the inner writer.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::default(),
            written: 0,
        }
    }

    /// Wraps `inner` to continue a hash: `hasher` has already seen `written` bytes (the part of
    /// a chunk received before an interruption).
    pub fn resume(inner: W, hasher: Hasher, written: u64) -> Self {
        Self {
            inner,
            hasher,
            written,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer and the digest of everything written.
    pub fn finish(self) -> (W, Digest) {
        (self.inner, self.hasher.finish())
    }

    /// The inner writer and the hash, unfinished (to be checked against a [`Midstate`]).
    pub fn into_parts(self) -> (W, Hasher) {
        (self.inner, self.hasher)
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_known_inputs() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        for bad in [
            "",
            "e3b0",
            &EMPTY[1..],
            &format!("{EMPTY}0"),
            &EMPTY.replace('e', "g"),
            // Exactly 64 lowercase hex digits: no sign, no upper case, no spaces.
            &format!("+e{}", &EMPTY[2..]),
            &format!("-0{}", &EMPTY[2..]),
            &format!("+{}", &EMPTY[1..]),
            &format!(" e{}", &EMPTY[2..]),
            &EMPTY.to_uppercase(),
            &format!("E{}", &EMPTY[1..]),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        let multibyte = format!("é{}", &EMPTY[2..]);
        assert!(multibyte.parse::<Digest>().is_err());
    }

    #[test]
    fn serde_uses_hex_strings() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Digest>("12").is_err());
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let mut w = HashingWriter::new(Vec::new());
        for part in data.chunks(777) {
            w.write_all(part).unwrap();
        }
        assert_eq!(w.written(), data.len() as u64);
        let (inner, digest) = w.finish();
        assert_eq!(inner, data);
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(
            Digest::of_reader(&data[..]).unwrap(),
            (digest, data.len() as u64)
        );
    }

    #[test]
    fn chunks_checked_from_midstates_in_any_order_give_the_file_digest() {
        let file: Vec<u8> = (0..10_007u32).map(|i| (i * 31 % 251) as u8).collect();
        // Boundaries on and off the 64-byte block size.
        let bounds = [0, 1, 64, 2_001, 6_400, file.len()];
        let mut whole = Hasher::default();
        let mut states = Vec::new();
        for w in bounds.windows(2) {
            states.push(whole.midstate());
            whole.update(&file[w[0]..w[1]]);
        }
        let digest = whole.clone().finish();
        assert_eq!(digest, Digest::of(&file));
        // Each piece, resumed from its own start, reaches the next start; backwards on purpose.
        for i in (0..bounds.len() - 1).rev() {
            let mut step = states[i].resume();
            step.update(&file[bounds[i]..bounds[i + 1]]);
            match states.get(i + 1) {
                Some(next) => assert_eq!(&step.midstate(), next, "piece {i}"),
                None => assert_eq!(step.finish(), digest),
            }
        }
        assert_eq!(states[0], Midstate::initial());
        // One changed byte breaks the step.
        let mut forged = file[2_001..6_400].to_vec();
        forged[17] ^= 1;
        let mut step = states[3].resume();
        step.update(&forged);
        assert_ne!(step.midstate(), states[4]);
    }

    #[test]
    fn midstates_round_trip_as_hex_and_junk_is_refused() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let m = h.midstate();
        let text = m.to_string();
        assert_eq!(text.len(), 208);
        assert_eq!(text.parse::<Midstate>(), Ok(m.clone()));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Midstate>(&json).unwrap(), m);
        // Wrong lengths, non-hex, upper case.
        for bad in [
            "",
            "00",
            &text[..206],
            &format!("{text}00"),
            &text.to_uppercase(),
        ] {
            assert_eq!(bad.parse::<Midstate>(), Err(ParseMidstateError), "{bad:?}");
        }
        // A buffered-byte count beyond the block, and bytes past the count: states sha2 refuses.
        let mut bytes = text.clone();
        bytes.replace_range(80..82, "ff");
        assert_eq!(bytes.parse::<Midstate>(), Err(ParseMidstateError));
        let mut tail = text.clone();
        tail.replace_range(206..208, "01");
        assert_eq!(tail.parse::<Midstate>(), Err(ParseMidstateError));
    }
}
