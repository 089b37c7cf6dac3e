//! A peer's whole list of contents, the *catalog*, as one of our listeners fetches it over TCP
//! instead of hearing thousands of datagrams: what a compact announcement summarises
//! ([`CatalogSummary`]: how many contents, and the SHA-256 of the catalog's bytes), and the
//! catalog's own bytes ([`Catalog::encode`]), decoded as they arrive ([`CatalogDecoder`]).
//!
//! The encoding is canonical: the same list always gives the same bytes, so the digest an
//! announcer computes from its store is the digest of what its chunk server sends, and a
//! listener checks the bytes it received against the digest it heard before believing any of
//! them. The catalog carries exactly what an inline announcement carries (chunk names and each
//! content's size and digests), nothing more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::content::ContentMeta;
use super::error::DecodeError;
use crate::chunk::{validate_content_name, ChunkName, ChunkSet, MAX_INDEX};
use crate::digest::{Digest, Hasher};

/// Longest line of a catalog, in bytes: one content, whose name is at most
/// [`MAX_CONTENT_NAME_BYTES`](crate::MAX_CONTENT_NAME_BYTES) bytes (six times that once JSON
/// escapes every byte) plus its digests. A longer line is malformed, so a decoder holds at most
/// this much of a line, whatever it is sent.
pub const MAX_CATALOG_LINE: usize = 2048;

/// Largest catalog a listener fetches, in bytes (about 250,000 contents): bounds how long a
/// fetch may take and what a hostile peer can make a listener read. The listener keeps only
/// what its index limits allow of it, so memory does not grow with it.
pub const MAX_CATALOG_BYTES: u64 = 64 << 20;

/// What a compact announcement says of the sender's catalog, in `p2p.catalog`.
///
/// # Format
/// ```text
/// "catalog":{"count":10000,"sha256":"<64 hex: SHA-256 of the catalog's bytes>"}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CatalogSummary {
    /// How many contents the catalog lists.
    pub count: u64,
    /// SHA-256 of the catalog's bytes ([`Catalog::encode`]).
    pub sha256: Digest,
}

/// One content of a catalog: its name, the chunks held, and its identity when the sender
/// vouches for one (a content downloaded from legacy peers only has none, as in an inline
/// announcement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The content name (valid: [`validate_content_name`]); a nested one with its `/`.
    pub name: String,
    /// The chunks the sender holds; never empty.
    pub chunks: ChunkSet,
    /// Size, SHA-256 and manifest root.
    pub meta: Option<ContentMeta>,
}

/// A peer's whole list of contents, sorted by name, each name once.
///
/// # Format
/// One JSON object per content and a newline (`\n`), in byte order of the names; `chunks` is
/// left out when all five are held, the three digests fields when the sender vouches for none.
/// An empty catalog is zero bytes.
/// ```text
/// {"name":"numbers.txt","size":588895,"sha256":"b2bc…","root":"3880…"}\n
/// {"name":"photos/a.jpg","chunks":[1,2,4]}\n
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

/// One line of a catalog, as on the wire.
#[derive(Serialize, Deserialize)]
struct EntryWire {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<Digest>,
}

impl Catalog {
    /// The catalog of a peer that can serve `chunks` and vouches for the contents of `metas`
    /// (what an announcer announces: [`crate::store::Snapshot`]). A content is listed when at
    /// least one of its chunks is; its meta when `metas` has one.
    pub fn from_parts(chunks: &[ChunkName], metas: &BTreeMap<String, ContentMeta>) -> Catalog {
        let mut held: BTreeMap<&str, ChunkSet> = BTreeMap::new();
        for chunk in chunks {
            held.entry(chunk.content())
                .or_insert(ChunkSet::EMPTY)
                .insert(chunk.index());
        }
        Catalog {
            entries: held
                .into_iter()
                .map(|(name, chunks)| CatalogEntry {
                    name: name.to_owned(),
                    chunks,
                    meta: metas.get(name).copied(),
                })
                .collect(),
        }
    }

    /// The contents, sorted by name.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// How many contents it lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it lists nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical bytes of this catalog, and its summary (count and digest of those bytes).
    pub fn encode(&self) -> (Vec<u8>, CatalogSummary) {
        let mut bytes = Vec::with_capacity(self.entries.len() * 180);
        for entry in &self.entries {
            let all = entry.chunks.is_complete();
            let wire = EntryWire {
                name: entry.name.clone(),
                chunks: (!all).then(|| entry.chunks.indexes().collect()),
                size: entry.meta.map(|m| m.size),
                sha256: entry.meta.map(|m| m.sha256),
                root: entry.meta.and_then(|m| m.root),
            };
            // Serializing strings, integers and digests cannot fail.
            if let Ok(line) = serde_json::to_vec(&wire) {
                bytes.extend_from_slice(&line);
                bytes.push(b'\n');
            }
        }
        let summary = CatalogSummary {
            count: self.entries.len() as u64,
            sha256: Digest::of(&bytes),
        };
        (bytes, summary)
    }

    /// Decodes a whole catalog (see [`CatalogDecoder`] to decode one as it arrives).
    ///
    /// # Errors
    /// As [`CatalogDecoder::feed`] and [`CatalogDecoder::finish`].
    pub fn decode(bytes: &[u8]) -> Result<Catalog, DecodeError> {
        let mut decoder = CatalogDecoder::new(usize::MAX);
        decoder.feed(bytes)?;
        Ok(Catalog {
            entries: decoder.finish()?.entries,
        })
    }
}

/// A catalog as a [`CatalogDecoder`] read it: the first entries (as many as it was asked to
/// keep), how many there were in all, and the SHA-256 of every byte fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCatalog {
    /// The first entries, in order.
    pub entries: Vec<CatalogEntry>,
    /// How many entries the catalog has, kept or not.
    pub count: u64,
    /// SHA-256 of the bytes.
    pub sha256: Digest,
}

/// Decodes a catalog as its bytes arrive, in pieces of any size: each line is checked as soon
/// as it is complete, the bytes are hashed as they pass, and only the first `keep` entries are
/// held, so what a decoder holds is bounded by `keep` and [`MAX_CATALOG_LINE`] whatever it is
/// fed. Pure: no I/O.
pub struct CatalogDecoder {
    keep: usize,
    entries: Vec<CatalogEntry>,
    count: u64,
    /// The line being received.
    line: Vec<u8>,
    /// The name of the last entry, which the next must follow.
    last: Option<String>,
    hasher: Hasher,
    /// The first error: once malformed, always malformed.
    failed: Option<DecodeError>,
}

impl std::fmt::Debug for CatalogDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogDecoder")
            .field("keep", &self.keep)
            .field("kept", &self.entries.len())
            .field("count", &self.count)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl CatalogDecoder {
    /// A decoder keeping at most `keep` entries (the rest are counted and checked).
    pub fn new(keep: usize) -> CatalogDecoder {
        CatalogDecoder {
            keep,
            entries: Vec::new(),
            count: 0,
            line: Vec::new(),
            last: None,
            hasher: Hasher::default(),
            failed: None,
        }
    }

    /// Takes the next bytes of the catalog.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] for a line that is not one valid entry (not JSON, an invalid
    /// name, chunk indexes out of range, unsorted or listed twice, a partial identity, longer
    /// than [`MAX_CATALOG_LINE`]); every later call fails the same way.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.hasher.update(bytes);
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            if let Err(e) = self
                .extend_line(&bytes[..end])
                .and_then(|()| self.take_line())
            {
                self.failed = Some(e.clone());
                return Err(e);
            }
            self.line.clear();
            bytes = &bytes[end + 1..];
        }
        if let Err(e) = self.extend_line(bytes) {
            self.failed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// The catalog fed.
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] when the bytes stop inside a line; the error of an earlier
    /// [`CatalogDecoder::feed`].
    pub fn finish(self) -> Result<DecodedCatalog, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.line.is_empty() {
            return Err(DecodeError::Incomplete);
        }
        Ok(DecodedCatalog {
            entries: self.entries,
            count: self.count,
            sha256: self.hasher.finish(),
        })
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.line.len() + bytes.len() > MAX_CATALOG_LINE {
            return Err(DecodeError::Malformed(format!(
                "catalog line {} is longer than {MAX_CATALOG_LINE} bytes",
                self.count + 1
            )));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Checks the complete line in `self.line` and counts it.
    fn take_line(&mut self) -> Result<(), DecodeError> {
        let n = self.count + 1;
        let bad = |why: String| DecodeError::Malformed(format!("catalog line {n}: {why}"));
        let wire: EntryWire =
            serde_json::from_slice(&self.line).map_err(|e| bad(format!("not an entry: {e}")))?;
        validate_content_name(&wire.name).map_err(|e| bad(format!("{:?}: {e}", wire.name)))?;
        if self.last.as_ref().is_some_and(|last| *last >= wire.name) {
            return Err(bad(format!(
                "{:?} is not after the previous name (sorted, each once)",
                wire.name
            )));
        }
        let chunks = match &wire.chunks {
            None => ChunkSet::ALL,
            Some(indexes) => chunk_set(indexes).ok_or_else(|| {
                bad(format!(
                    "chunks {indexes:?}: 1 to 4 increasing indexes of 1..={MAX_INDEX} \
                     (left out when all five)"
                ))
            })?,
        };
        let meta = match (wire.size, wire.sha256, wire.root) {
            (Some(size), Some(sha256), root) => Some(ContentMeta { size, sha256, root }),
            (None, None, None) => None,
            _ => return Err(bad("size and sha256 go together, root with them".into())),
        };
        self.count = n;
        if self.entries.len() < self.keep {
            self.entries.push(CatalogEntry {
                name: wire.name.clone(),
                chunks,
                meta,
            });
        }
        self.last = Some(wire.name);
        Ok(())
    }
}

/// The chunk set of an explicit `chunks` list: strictly increasing indexes of 1..=5, not all
/// five (that is written by leaving the list out), not none.
fn chunk_set(indexes: &[u8]) -> Option<ChunkSet> {
    let increasing = indexes.windows(2).all(|w| w[0] < w[1]);
    let in_range = indexes.iter().all(|i| (1..=MAX_INDEX).contains(i));
    if !increasing || !in_range || indexes.is_empty() || indexes.len() >= usize::from(MAX_INDEX) {
        return None;
    }
    let mut set = ChunkSet::EMPTY;
    for &i in indexes {
        set.insert(i);
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::content::tests::{digest, manifest};
    use crate::protocol::error::tests::assert_malformed;

    fn sample() -> Catalog {
        let mut chunks: Vec<ChunkName> = Vec::new();
        chunks.extend(ChunkName::all_of("numbers.txt").unwrap());
        chunks.extend(ChunkName::all_of("photos/2024/a.jpg").unwrap());
        for i in [1, 2, 4] {
            chunks.push(ChunkName::new("partial.bin", i).unwrap());
        }
        chunks.extend(ChunkName::all_of("from legacy peers").unwrap());
        chunks.extend(ChunkName::all_of("é ü 中文.txt").unwrap());
        let metas = BTreeMap::from([
            ("numbers.txt".to_owned(), manifest().meta()),
            ("photos/2024/a.jpg".to_owned(), manifest().meta()),
            (
                "partial.bin".to_owned(),
                ContentMeta {
                    size: 7,
                    sha256: digest(7),
                    root: None,
                },
            ),
            ("é ü 中文.txt".to_owned(), manifest().meta()),
            // Vouched for but holding no chunk: not listed.
            ("nothing held".to_owned(), manifest().meta()),
        ]);
        Catalog::from_parts(&chunks, &metas)
    }

    #[test]
    fn a_catalog_lists_each_content_once_sorted_with_its_chunks_and_identity() {
        let catalog = sample();
        let names: Vec<&str> = catalog.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "from legacy peers",
                "numbers.txt",
                "partial.bin",
                "photos/2024/a.jpg",
                "é ü 中文.txt"
            ]
        );
        let partial = &catalog.entries()[2];
        assert_eq!(partial.chunks.to_string(), "12-4-");
        assert_eq!(partial.meta.unwrap().root, None);
        assert_eq!(catalog.entries()[0].meta, None);
        assert!(catalog.entries()[1].chunks.is_complete());
        assert_eq!(catalog.len(), 5);
        assert!(!catalog.is_empty() && Catalog::default().is_empty());
    }

    #[test]
    fn the_encoding_is_canonical_and_round_trips() {
        let catalog = sample();
        let (bytes, summary) = catalog.encode();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.sha256, Digest::of(&bytes));
        assert_eq!(Catalog::decode(&bytes).unwrap(), catalog);
        // The same list, given in another order, gives the same bytes.
        let mut chunks: Vec<ChunkName> = Vec::new();
        for entry in catalog.entries().iter().rev() {
            for i in entry.chunks.indexes() {
                chunks.push(ChunkName::new(&entry.name, i).unwrap());
            }
        }
        let metas: BTreeMap<String, ContentMeta> = catalog
            .entries()
            .iter()
            .filter_map(|e| e.meta.map(|m| (e.name.clone(), m)))
            .collect();
        assert_eq!(Catalog::from_parts(&chunks, &metas).encode().0, bytes);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], r#"{"name":"from legacy peers"}"#);
        assert!(lines[2].starts_with(r#"{"name":"partial.bin","chunks":[1,2,4],"size":7,"#));
        assert!(!lines[2].contains("root"));
        assert!(lines[3].starts_with(r#"{"name":"photos/2024/a.jpg","size":1048579,"sha256":""#));
        assert!(text.ends_with('\n'));
        // Nothing is nothing.
        let (empty, summary) = Catalog::default().encode();
        assert!(empty.is_empty());
        assert_eq!(summary.count, 0);
        assert_eq!(Catalog::decode(b"").unwrap(), Catalog::default());
    }

    #[test]
    fn the_decoder_gives_the_same_result_however_the_bytes_are_cut() {
        let (bytes, summary) = sample().encode();
        for size in [1, 2, 3, 7, 64, 1000, bytes.len()] {
            let mut decoder = CatalogDecoder::new(usize::MAX);
            for piece in bytes.chunks(size) {
                decoder.feed(piece).unwrap();
            }
            let decoded = decoder.finish().unwrap();
            assert_eq!(decoded.entries, sample().entries, "pieces of {size}");
            assert_eq!((decoded.count, decoded.sha256), (5, summary.sha256));
        }
        // Cut anywhere but at a line's end: incomplete, never malformed.
        for cut in 0..bytes.len() {
            let mut decoder = CatalogDecoder::new(usize::MAX);
            decoder.feed(&bytes[..cut]).unwrap();
            let result = decoder.finish();
            if cut == 0 || bytes[cut - 1] == b'\n' {
                assert!(result.is_ok(), "cut at {cut}");
            } else {
                assert_eq!(result, Err(DecodeError::Incomplete), "cut at {cut}");
            }
        }
    }

    #[test]
    fn the_decoder_keeps_only_what_it_is_asked_to_and_counts_the_rest() {
        let (bytes, summary) = sample().encode();
        let mut decoder = CatalogDecoder::new(2);
        decoder.feed(&bytes).unwrap();
        let decoded = decoder.finish().unwrap();
        assert_eq!(decoded.entries, sample().entries[..2]);
        assert_eq!(decoded.count, 5);
        assert_eq!(decoded.sha256, summary.sha256, "every byte is hashed");
        // The entries not kept are still checked.
        let mut bad = bytes.clone();
        bad.extend_from_slice(b"{\"name\":\"../x\"}\n");
        let mut decoder = CatalogDecoder::new(1);
        assert!(decoder.feed(&bad).is_err());
    }

    #[test]
    fn hostile_catalogs_are_malformed() {
        let d = digest(1).to_string();
        for junk in [
            "\n".to_owned(),
            "not json\n".into(),
            "[]\n".into(),
            "{}\n".into(),
            "{\"name\":7}\n".into(),
            "{\"name\":\"\"}\n".into(),
            "{\"name\":\"../etc/passwd\"}\n".into(),
            "{\"name\":\"/abs\"}\n".into(),
            "{\"name\":\"a\\u001b[31m\"}\n".into(),
            "{\"name\":\"a\"}{\"name\":\"b\"}\n".into(),
            "{\"name\":\"b\"}\n{\"name\":\"a\"}\n".into(),
            "{\"name\":\"a\"}\n{\"name\":\"a\"}\n".into(),
            "{\"name\":\"a\",\"chunks\":[]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[0]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[6]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[2,1]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[1,1]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[1,2,3,4,5]}\n".into(),
            "{\"name\":\"a\",\"chunks\":[300]}\n".into(),
            "{\"name\":\"a\",\"chunks\":\"12\"}\n".into(),
            format!("{{\"name\":\"a\",\"sha256\":\"{d}\"}}\n"),
            "{\"name\":\"a\",\"size\":3}\n".into(),
            format!("{{\"name\":\"a\",\"root\":\"{d}\"}}\n"),
            format!("{{\"name\":\"a\",\"size\":-1,\"sha256\":\"{d}\"}}\n"),
            format!(
                "{{\"name\":\"a\",\"size\":1,\"sha256\":\"{}\"}}\n",
                d.to_uppercase()
            ),
            format!("{{\"name\":\"{}\"}}\n", "n".repeat(MAX_CATALOG_LINE)),
        ] {
            assert_malformed(Catalog::decode(junk.as_bytes()), junk.as_bytes());
        }
        // A line longer than the limit is refused before its end arrives, and the decoder
        // stays refused.
        let mut decoder = CatalogDecoder::new(10);
        let long = vec![b' '; MAX_CATALOG_LINE + 1];
        assert!(decoder.feed(&long[..MAX_CATALOG_LINE]).is_ok());
        assert!(decoder.feed(&long[MAX_CATALOG_LINE..]).is_err());
        assert!(decoder.feed(b"\n").is_err());
        assert!(decoder.finish().is_err());
    }

    #[test]
    fn liberal_in_spacing_and_unknown_keys() {
        let text = "{ \"name\": \"a\", \"later\": [1, 2] }\n{\"name\":\"b\",\"chunks\":[3]}\n";
        let catalog = Catalog::decode(text.as_bytes()).unwrap();
        assert_eq!(catalog.len(), 2);
        assert_eq!(catalog.entries()[1].chunks.to_string(), "--3--");
    }

    /// docs/PROTOCOL.md's example: a legacy download, `hello.txt` and `numbers.txt` whole,
    /// and three chunks of a nested content.
    #[test]
    fn the_documented_catalog_is_what_the_encoder_writes() {
        let meta = |size, sha256: &str, root: &str| ContentMeta {
            size,
            sha256: sha256.parse().unwrap(),
            root: Some(root.parse().unwrap()),
        };
        let hello = crate::protocol::Manifest {
            name: "hello.txt".into(),
            size: 12,
            sha256: "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
                .parse()
                .unwrap(),
            chunks: [
                "d6a81f224bbf2f7c22baddbd5d40730eb20cfb0b3d74e10cab61788214caceb1",
                "96d8aa58bf484b7907284fe9613729ad647c0c9f37755be0ee34350eea054cef",
                "32c044dfea70a1f4bee5e8668210707a516c20bf3493c78ae8312021d215df9c",
                "3b6cb8ae51045d062a7c7de7cc488ad8785144cfbc0a7fc9546ed52429e0d97f",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ]
            .map(|d| d.parse().unwrap()),
            states: None,
        };
        let mut chunks: Vec<ChunkName> = Vec::new();
        for name in ["numbers.txt", "ece", "hello.txt"] {
            chunks.extend(ChunkName::all_of(name).unwrap());
        }
        for i in [1, 2, 4] {
            chunks.push(ChunkName::new("photos/2024/a.jpg", i).unwrap());
        }
        let metas = BTreeMap::from([
            (
                "numbers.txt".to_owned(),
                meta(
                    588_895,
                    "b2bc7d3f8b652d2ec96865b68ad8f80e22cca174abe1aed7889e242a747d590f",
                    "388078cc9899f7c8213ffc2845cad1b5e39191e5c34f4fd6213ba847378354ac",
                ),
            ),
            ("hello.txt".to_owned(), hello.meta()),
        ]);
        let (bytes, summary) = Catalog::from_parts(&chunks, &metas).encode();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            concat!(
                "{\"name\":\"ece\"}\n",
                "{\"name\":\"hello.txt\",\"size\":12,\"sha256\":\"a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447\",\"root\":\"d6bca3114a9913000344535cd06e828a1bfcbcfe5812c068c1c3424b3cb84196\"}\n",
                "{\"name\":\"numbers.txt\",\"size\":588895,\"sha256\":\"b2bc7d3f8b652d2ec96865b68ad8f80e22cca174abe1aed7889e242a747d590f\",\"root\":\"388078cc9899f7c8213ffc2845cad1b5e39191e5c34f4fd6213ba847378354ac\"}\n",
                "{\"name\":\"photos/2024/a.jpg\",\"chunks\":[1,2,4]}\n",
            )
        );
        assert_eq!(summary.count, 4);
        assert_eq!(
            summary.sha256.to_string(),
            "d48c0d2319331575ca30f9c24e0881e0f11753a393df9fecdf807ad3cad25235"
        );
    }

    #[test]
    fn summaries_round_trip_as_json() {
        let summary = sample().encode().1;
        let json = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"count":5,"sha256":"{}"}}"#, summary.sha256)
        );
        assert_eq!(
            serde_json::from_str::<CatalogSummary>(&json).unwrap(),
            summary
        );
    }
}
