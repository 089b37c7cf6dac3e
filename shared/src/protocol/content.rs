//! The identity of a content: [`ContentMeta`] (size, file digest, manifest root), announced with
//! its chunks, and the [`Manifest`] (the five chunk digests), served on request and stored
//! beside the chunks.
//!
//! Both announcements and responses carry these; neither owns them.

use serde::{Deserialize, Serialize};

use crate::chunk::chunk_ranges;
use crate::digest::{Digest, Hasher, Midstate};
use crate::CHUNKS_PER_FILE;

/// The identity of a content: its size, the SHA-256 of the whole file and the root digest of
/// its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentMeta {
    /// Size of the whole file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// [`Manifest::root`] of the announcer's manifest: a downloader takes a manifest from a
    /// holder only when it hashes to the root that holder announced, and holds every holder to
    /// the root it announced. Absent from peers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Digest>,
}

/// The full description of one content, served on request and stored beside its chunks.
///
/// # Format
/// ```text
/// {"name":"photo.png","size":1048579,"sha256":"<64 hex>","chunks":["<64 hex>", … five],
///  "states":["<208 hex>", … four]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The content (file) name.
    pub name: String,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// SHA-256 of each of the five chunks, in order.
    pub chunks: [Digest; CHUNKS_PER_FILE],
    /// The whole file's SHA-256 computation paused at the start of chunks 2 to 5
    /// ([`Midstate`]), so that a downloader proves the file's digest chunk by chunk, in one
    /// pass. Not covered by [`Manifest::root`] (a forged state cannot make wrong bytes reach
    /// `sha256`; it can only make right ones fail, which the chunk digests then tell apart).
    /// Absent from peers older than this field, and from manifests of contents hashed before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Box<[Midstate; CHUNKS_PER_FILE - 1]>>,
}

/// Domain separation of [`Manifest::root`], so the root can never equal the digest of a file.
const MANIFEST_ROOT_DOMAIN: &[u8] = b"p2p manifest root v1\0";

impl Manifest {
    /// The manifest, with midstates, of `data` named `name` (what a split computes as it
    /// streams a file; this one holds the file in memory, for tests and small contents).
    pub fn of_bytes(name: &str, data: &[u8]) -> Manifest {
        let ranges = chunk_ranges(data.len() as u64);
        let mut whole = Hasher::default();
        let mut states = Vec::with_capacity(CHUNKS_PER_FILE - 1);
        let chunks = std::array::from_fn(|i| {
            let range = ranges[i].as_range();
            let bytes = &data[usize::try_from(range.start).expect("in memory")
                ..usize::try_from(range.end).expect("in memory")];
            if i > 0 {
                states.push(whole.midstate());
            }
            whole.update(bytes);
            Digest::of(bytes)
        });
        Manifest {
            name: name.into(),
            size: data.len() as u64,
            sha256: whole.finish(),
            chunks,
            states: states.try_into().ok(),
        }
    }

    /// The content's identity as announced.
    pub fn meta(&self) -> ContentMeta {
        ContentMeta {
            size: self.size,
            sha256: self.sha256,
            root: Some(self.root()),
        }
    }

    /// The check that proves chunk `position` (0 to 4) one step of the file's SHA-256, when
    /// this manifest carries midstates: hash the chunk from [`ChunkStep::start`], then ask
    /// [`ChunkStep::reached_by`].
    pub fn chunk_step(&self, position: usize) -> Option<ChunkStep<'_>> {
        let states = self.states.as_deref()?;
        let start = match position.checked_sub(1) {
            None => Midstate::initial(),
            Some(before) => states.get(before)?.clone(),
        };
        let end = match states.get(position) {
            Some(next) => StepEnd::Midstate(next),
            None if position == CHUNKS_PER_FILE - 1 => StepEnd::File(self.sha256),
            None => return None,
        };
        Some(ChunkStep { start, end })
    }

    /// The root digest that commits to this manifest's size and five chunk digests: SHA-256 of
    /// a fixed domain string, the size as 8 big-endian bytes, and the five chunk digests in
    /// order. The file's SHA-256 cannot vouch for chunk digests before the whole file is
    /// here; the root, announced beside it, does: a manifest with other chunk digests has
    /// another root.
    pub fn root(&self) -> Digest {
        let mut hasher = Hasher::default();
        hasher.update(MANIFEST_ROOT_DOMAIN);
        hasher.update(&self.size.to_be_bytes());
        for chunk in &self.chunks {
            hasher.update(chunk.as_bytes());
        }
        hasher.finish()
    }
}

/// One chunk as one step of the whole file's SHA-256 ([`Manifest::chunk_step`]).
#[derive(Debug, Clone)]
pub struct ChunkStep<'a> {
    /// Where the file's SHA-256 stands when the chunk starts.
    pub start: Midstate,
    end: StepEnd<'a>,
}

#[derive(Debug, Clone)]
enum StepEnd<'a> {
    /// Where it stands when the next chunk starts.
    Midstate(&'a Midstate),
    /// The file's digest, after the last chunk.
    File(Digest),
}

impl ChunkStep<'_> {
    /// Whether `hasher`, resumed from [`ChunkStep::start`] and fed the chunk, ends where the
    /// manifest says the chunk ends.
    pub fn reached_by(&self, hasher: Hasher) -> bool {
        match self.end {
            StepEnd::Midstate(next) => hasher.midstate() == *next,
            StepEnd::File(digest) => hasher.finish() == digest,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::announcement::Announcement;

    /// A digest to fill test messages with.
    pub(in crate::protocol) fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    /// A manifest to fill test messages with.
    pub(in crate::protocol) fn manifest() -> Manifest {
        Manifest {
            name: "photo.png".into(),
            size: 1_048_579,
            sha256: digest(0),
            chunks: std::array::from_fn(|i| digest(u8::try_from(i + 1).unwrap())),
            states: None,
        }
    }

    #[test]
    fn every_chunk_of_a_manifest_with_midstates_is_one_step_to_the_file_digest() {
        for size in [0usize, 1, 4, 5, 63, 64, 321, 1000, 70_001] {
            let data: Vec<u8> = (0..size)
                .map(|i| u8::try_from(i * 7 % 256).unwrap())
                .collect();
            let at = |n: u64| usize::try_from(n).unwrap();
            let m = Manifest::of_bytes("f", &data);
            assert_eq!(m.sha256, Digest::of(&data));
            let ranges = chunk_ranges(size as u64);
            for (i, r) in ranges.iter().enumerate() {
                let step = m.chunk_step(i).expect("midstates");
                let chunk = &data[at(r.start)..at(r.end)];
                let mut h = step.start.resume();
                h.update(chunk);
                assert!(step.reached_by(h), "size {size} chunk {i}");
                if !chunk.is_empty() {
                    let mut forged = chunk.to_vec();
                    forged[0] ^= 0x80;
                    let mut h = step.start.resume();
                    h.update(&forged);
                    assert!(!step.reached_by(h), "size {size} chunk {i} forged");
                }
            }
            assert!(m.chunk_step(5).is_none());
            // Midstates survive the wire; a manifest without them has no steps.
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
            let bare = Manifest { states: None, ..m };
            assert!(bare.chunk_step(0).is_none());
            assert!(!serde_json::to_string(&bare).unwrap().contains("states"));
        }
    }

    #[test]
    fn the_documented_root_of_numbers_txt_is_the_one_computed() {
        // docs/PROTOCOL.md's running example: `seq 1 100000 > numbers.txt`.
        let data: Vec<u8> = (1..=100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let ranges = crate::chunk::chunk_ranges(data.len() as u64);
        let m = Manifest {
            states: None,
            name: "numbers.txt".into(),
            size: data.len() as u64,
            sha256: Digest::of(&data),
            chunks: std::array::from_fn(|i| {
                let r = ranges[i].as_range();
                Digest::of(
                    &data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()],
                )
            }),
        };
        assert_eq!(
            m.sha256.to_string(),
            "b2bc7d3f8b652d2ec96865b68ad8f80e22cca174abe1aed7889e242a747d590f"
        );
        assert_eq!(
            m.root().to_string(),
            "388078cc9899f7c8213ffc2845cad1b5e39191e5c34f4fd6213ba847378354ac"
        );
    }

    #[test]
    fn the_manifest_root_commits_to_size_and_every_chunk_digest() {
        let m = manifest();
        assert_eq!(m.meta().root, Some(m.root()));
        assert_ne!(m.root(), m.sha256);
        let mut other_size = m.clone();
        other_size.size += 1;
        assert_ne!(other_size.root(), m.root());
        for i in 0..CHUNKS_PER_FILE {
            let mut forged = m.clone();
            forged.chunks[i] = digest(200);
            assert_ne!(forged.root(), m.root(), "chunk {i}");
        }
        // The name is not part of it: the same bytes under another name have the same root.
        let renamed = Manifest {
            name: "other".into(),
            ..m.clone()
        };
        assert_eq!(renamed.root(), m.root());
        // An announcement of a peer without roots still decodes.
        let old = br#"{"username":"x","files":["a_1"],"p2p":{"v":1,"port":1,"interval":5,
            "contents":{"a":{"size":3,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}}}}"#;
        let ext = Announcement::decode(old).unwrap().p2p.unwrap();
        assert_eq!(ext.contents["a"].root, None);
    }
}
