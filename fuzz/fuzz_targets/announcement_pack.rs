//! `Announcement::pack`: one peer's whole announcement split into datagrams.
//!
//! The input is a username, an optional `p2p` extension, chunk names and content metas: taken
//! from the input itself when it is an announcement (the seed corpus holds real ones), else
//! built from the bytes with `arbitrary`. Checked, as docs/PROTOCOL.md promises:
//! - every datagram is at most `MAX_ANNOUNCE_DATAGRAM` bytes (unless even an empty one is
//!   larger: then all chunks are dropped) and decodes on its own, with the
//!   username and extension given, and in `p2p.contents` exactly the metas of the contents it
//!   lists;
//! - together the datagrams carry every chunk given exactly once, minus the dropped ones; a
//!   chunk is dropped only when it cannot fit even alone;
//! - with no chunk at all there is still one datagram (a sign of life);
//! - a content is spread over several datagrams only when its chunks cannot fit in one.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use p2p_fuzz::MetaInput;
use shared::chunk::ChunkName;
use shared::protocol::{Announcement, AnnouncementExt, ContentMeta, Kind};
use shared::MAX_ANNOUNCE_DATAGRAM;

/// What `pack` is given.
#[derive(Debug)]
struct PackInput {
    username: String,
    ext: Option<AnnouncementExt>,
    chunks: Vec<ChunkName>,
    metas: BTreeMap<String, ContentMeta>,
}

/// The `arbitrary` form of [`PackInput`].
#[derive(Debug, Arbitrary)]
struct RawInput {
    username: String,
    ext: Option<RawExt>,
    chunks: Vec<(String, u8)>,
    /// Metas for the contents of some of the chunks, by position in `chunks`, and for others.
    metas: Vec<(u8, MetaInput)>,
    other_metas: Vec<(String, MetaInput)>,
}

/// The `arbitrary` form of an extension. It has no version: only the one we speak is packed
/// (see `into_input`).
#[derive(Debug, Arbitrary)]
struct RawExt {
    port: u16,
    interval: u64,
    instance: Option<String>,
    kind: u8,
}

impl RawInput {
    fn into_input(self) -> PackInput {
        let chunks: Vec<ChunkName> = self
            .chunks
            .iter()
            .filter_map(|(content, index)| ChunkName::new(content, 1 + index % 5).ok())
            .collect();
        let mut metas = BTreeMap::new();
        for (at, meta) in &self.metas {
            if let Some(chunk) = chunks.get(usize::from(*at)) {
                metas.insert(chunk.content().to_owned(), meta.to_meta());
            }
        }
        for (content, meta) in &self.other_metas {
            metas.insert(content.clone(), meta.to_meta());
        }
        // Only an extension a listener reads back is packed here: the version we speak and a
        // port a chunk server can have (others decode as legacy, by design).
        let ext = self.ext.map(|e| AnnouncementExt {
            v: shared::PROTOCOL_VERSION,
            port: e.port.max(1),
            interval: e.interval,
            contents: BTreeMap::new(),
            instance: e.instance,
            kind: match e.kind % 3 {
                0 => Kind::Announce,
                1 => Kind::Query,
                _ => Kind::Goodbye,
            },
            withdrawn: Vec::new(),
            to: None,
            offer: None,
            expires_in: None,
            catalog: None,
        });
        PackInput {
            username: self.username,
            ext,
            chunks,
            metas,
        }
    }
}

impl PackInput {
    /// What an announcer that sent `announcement` (as one datagram) had to announce.
    fn from_announcement(announcement: Announcement) -> PackInput {
        let chunks = announcement.chunks();
        let (ext, metas) = match announcement.p2p {
            Some(ext) => {
                let metas = ext.contents.clone();
                let ext = AnnouncementExt {
                    contents: BTreeMap::new(),
                    ..ext
                };
                (Some(ext), metas)
            }
            None => (None, BTreeMap::new()),
        };
        PackInput {
            username: announcement.username,
            ext,
            chunks,
            metas,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = match Announcement::decode(data) {
        Ok(announcement) => PackInput::from_announcement(announcement),
        Err(_) => match RawInput::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(raw) => raw.into_input(),
            Err(_) => return,
        },
    };
    check(&input);
});

/// The one datagram that would carry exactly `names`, as `pack` builds it.
fn datagram_of(input: &PackInput, names: &[&ChunkName]) -> Announcement {
    Announcement {
        username: input.username.clone(),
        files: names.iter().map(|n| n.to_legacy_string()).collect(),
        p2p: input.ext.as_ref().map(|ext| AnnouncementExt {
            contents: names
                .iter()
                .filter_map(|n| {
                    input
                        .metas
                        .get(n.content())
                        .map(|m| (n.content().to_owned(), *m))
                })
                .collect(),
            ..ext.clone()
        }),
    }
}

/// What a listener of ours reads `chunk` back as: its real name when the datagram carries its
/// metadata (`p2p.contents` keyed by the real name), else the flattened name legacy peers see.
fn read_as(input: &PackInput, chunk: &ChunkName) -> ChunkName {
    if input.ext.is_some() && input.metas.contains_key(chunk.content()) {
        return chunk.clone();
    }
    ChunkName::parse(&chunk.to_legacy_string()).expect("a flattened chunk name is valid")
}

fn check(input: &PackInput) {
    // Two chunks that read back as one (`a/b_1` without metadata beside `a%2Fb_1`) are never
    // announced together: the chunk server does not share such a pair.
    let read: BTreeSet<ChunkName> = input.chunks.iter().map(|c| read_as(input, c)).collect();
    let distinct: BTreeSet<&ChunkName> = input.chunks.iter().collect();
    if read.len() != distinct.len() {
        return;
    }
    let (datagrams, dropped) = Announcement::pack(
        &input.username,
        input.ext.as_ref(),
        &input.chunks,
        &input.metas, shared::MAX_ANNOUNCE_DATAGRAM);
    let given: BTreeSet<&ChunkName> = input.chunks.iter().collect();
    assert!(!datagrams.is_empty(), "pack made no datagram");
    // With a username or instance so long that even a datagram without chunks is too big
    // (the announcer never sends one: it allows 64-byte usernames), nothing can be announced.
    let envelope = datagram_of(input, &[]).encode().len();
    if envelope > MAX_ANNOUNCE_DATAGRAM {
        assert_eq!(datagrams.len(), 1);
        assert!(Announcement::decode(&datagrams[0])
            .expect("decodes")
            .files
            .is_empty());
        assert_eq!(dropped.len(), given.len(), "every chunk dropped");
        return;
    }

    // Where each chunk went.
    let mut sent: BTreeMap<ChunkName, usize> = BTreeMap::new();
    for (i, bytes) in datagrams.iter().enumerate() {
        assert!(
            bytes.len() <= MAX_ANNOUNCE_DATAGRAM,
            "datagram {i} is {} bytes",
            bytes.len()
        );
        let decoded = Announcement::decode(bytes).expect("every datagram decodes");
        assert_eq!(decoded.username, input.username);
        let chunks = decoded.chunks();
        assert_eq!(
            chunks.len(),
            decoded.files.len(),
            "only chunk names are sent"
        );
        let listed: BTreeSet<&str> = chunks.iter().map(ChunkName::content).collect();
        match (&decoded.p2p, &input.ext) {
            (None, None) => {}
            (Some(got), Some(ext)) => {
                let expected_contents: BTreeMap<String, ContentMeta> = input
                    .metas
                    .iter()
                    .filter(|(name, _)| listed.contains(name.as_str()))
                    .map(|(name, meta)| (name.clone(), *meta))
                    .collect();
                assert_eq!(got.contents, expected_contents, "contents of datagram {i}");
                let without_contents = AnnouncementExt {
                    contents: BTreeMap::new(),
                    ..got.clone()
                };
                assert_eq!(&without_contents, ext);
            }
            (got, ext) => panic!("datagram {i} has p2p {got:?}, expected {ext:?}"),
        }
        for chunk in chunks {
            assert!(read.contains(&chunk), "{chunk} was never given");
            let chunk = given
                .iter()
                .find(|g| read_as(input, g) == chunk)
                .map(|g| (*g).clone())
                .expect("given");
            if let Some(before) = sent.insert(chunk.clone(), i) {
                panic!("{chunk} sent in datagrams {before} and {i}");
            }
        }
    }

    let dropped_set: BTreeSet<&ChunkName> = dropped.iter().collect();
    assert_eq!(dropped_set.len(), dropped.len(), "a chunk dropped twice");
    for chunk in &dropped {
        assert!(given.contains(chunk), "dropped {chunk}, never given");
        assert!(!sent.contains_key(chunk), "{chunk} both sent and dropped");
        let alone = datagram_of(input, &[chunk]).encode();
        assert!(
            alone.len() > MAX_ANNOUNCE_DATAGRAM,
            "{chunk} dropped although it fits alone ({} bytes)",
            alone.len()
        );
    }
    let carried: BTreeSet<&ChunkName> = sent.keys().chain(&dropped).collect();
    assert_eq!(carried, given, "chunks lost or invented");

    if input.chunks.is_empty() {
        assert_eq!(datagrams.len(), 1, "no chunks: one sign-of-life datagram");
    }

    // A content spread over several datagrams must not fit in one.
    let mut datagrams_of: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (chunk, i) in &sent {
        datagrams_of.entry(chunk.content()).or_default().insert(*i);
    }
    for (content, places) in datagrams_of {
        if places.len() > 1 {
            let group: Vec<&ChunkName> = given
                .iter()
                .copied()
                .filter(|c| c.content() == content)
                .collect();
            let whole = datagram_of(input, &group).encode();
            assert!(
                whole.len() > MAX_ANNOUNCE_DATAGRAM,
                "{content:?} split over datagrams {places:?} although it fits in one ({} bytes)",
                whole.len()
            );
        }
    }
}
