//! The UDP channel: one [`Announcement`] per datagram, legacy `username` and `files` plus our
//! `p2p` extension ([`AnnouncementExt`]), decoded liberally (a legacy peer's oddities are
//! skipped, an unusable extension counts as absent) and packed into datagrams that each stand
//! on their own ([`Announcement::pack`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::catalog::CatalogSummary;
use super::content::ContentMeta;
use super::error::DecodeError;
use crate::chunk::{legacy_flat_name, validate_content_name, ChunkName};
use crate::PROTOCOL_VERSION;

/// What our peers add to an announcement under the `p2p` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementExt {
    /// Extension version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// TCP port of the announcing peer's chunk server.
    pub port: u16,
    /// Seconds until the next periodic announcement; listeners expire entries after
    /// [`EXPIRY_INTERVALS`](crate::EXPIRY_INTERVALS) of these.
    pub interval: u64,
    /// Size and digest of each content whose chunks this datagram lists.
    #[serde(default)]
    pub contents: BTreeMap<String, ContentMeta>,
    /// Identifies one run of the announcing peer: a listener that sees a new instance from an
    /// address drops what the old one announced, so a restarted peer replaces its entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What this datagram is for; absent means a plain announcement.
    #[serde(default, skip_serializing_if = "Kind::is_announce")]
    pub kind: Kind,
    /// With [`Kind::Withdraw`]: the contents the sender no longer holds (unshared, removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
    /// With [`Kind::Offer`]: the username the offered content is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// With [`Kind::Offer`]: the offer's id, chosen at random by the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// With [`Kind::Offer`]: seconds until the offer expires, relative so that the two
    /// peers' clocks need not agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// A *compact* announcement: the sender's contents are in its catalog, fetched from its
    /// chunk server ([`super::Request::Catalog`]) by a listener that does not hold a catalog
    /// of this digest yet. Our listeners then ignore `files` and `contents`: `files` is there
    /// for legacy listeners only (or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogSummary>,
}

/// The versions of our extension this build speaks: today only [`PROTOCOL_VERSION`].
pub const KNOWN_VERSIONS: RangeInclusive<u32> = 1..=PROTOCOL_VERSION;

impl AnnouncementExt {
    /// Our extension at this build's [`PROTOCOL_VERSION`] for a plain announcement: the chunk
    /// server at `port`, the next announcement in `interval` seconds, no contents yet, and no
    /// instance (set the fields for a run's instance or another [`Kind`]).
    pub fn new(port: u16, interval: u64) -> AnnouncementExt {
        AnnouncementExt {
            v: PROTOCOL_VERSION,
            port,
            interval,
            contents: BTreeMap::new(),
            instance: None,
            kind: Kind::Announce,
            withdrawn: Vec::new(),
            to: None,
            offer: None,
            expires_in: None,
            catalog: None,
        }
    }

    /// The same, also giving the size and digest of `content`.
    pub fn with_content(mut self, content: &str, meta: ContentMeta) -> AnnouncementExt {
        self.contents.insert(content.to_owned(), meta);
        self
    }

    /// Whether a listener can use this extension: a query of any version (it only asks for an
    /// answer at its source address); anything else only at a version we speak and with a
    /// chunk-server port other than 0. An extension that is not usable counts as absent, like
    /// an unreadable one: the datagram is read as a legacy announcement, and nothing of it
    /// reaches `tags.txt` as `p2p/4000000000` or port 0.
    fn is_usable(&self) -> bool {
        self.kind == Kind::Query || (KNOWN_VERSIONS.contains(&self.v) && self.port != 0)
    }
}

/// The purpose of an extended datagram. Legacy listeners see every kind as an announcement;
/// queries and goodbyes carry no chunks, so to them they change nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// "These are my chunks."
    #[default]
    Announce,
    /// "Announce to me now": sent by a starting listener so it sees the network at once;
    /// announcers answer by unicast to the query's source address.
    Query,
    /// "I am leaving": listeners drop the sender's entries at once.
    Goodbye,
    /// "I no longer hold these contents" ([`AnnouncementExt::withdrawn`]): listeners drop the
    /// sender's entries of them at once instead of waiting for them to expire. Sent when a
    /// file is unshared or removed; a listener that does not know this kind reads the datagram
    /// as an announcement without chunks, which changes nothing.
    Withdraw,
    /// "I offer you this content" ([`AnnouncementExt::to`], [`AnnouncementExt::offer`],
    /// [`AnnouncementExt::expires_in`], one entry in [`AnnouncementExt::contents`]): sent to
    /// the whole LAN, but recorded only by the listener of the user named in `to`, which
    /// downloads nothing until its user accepts ([`OfferHeard`]). A listener that does not
    /// know this kind reads the datagram as an announcement without chunks.
    Offer,
}

impl Kind {
    fn is_announce(&self) -> bool {
        *self == Kind::Announce
    }
}

/// Longest an offer lasts, in seconds (seven days): a longer `expires_in` is taken at this.
pub const MAX_OFFER_SECS: u64 = 7 * 24 * 3600;

/// Longest offer id accepted, in bytes; ours are 32 hex digits.
pub const MAX_OFFER_ID_BYTES: usize = 64;

/// Whether `id` can be an offer id: 1 to [`MAX_OFFER_ID_BYTES`] ASCII letters, digits, `-`
/// or `_` (it is written in files and typed in commands).
pub fn is_offer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_OFFER_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One offer, as sent by [`Announcement::offer`] and read back by [`Announcement::as_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferHeard {
    /// The username it is for.
    pub to: String,
    /// Its id ([`is_offer_id`]).
    pub id: String,
    /// The content's name ([`validate_content_name`]).
    pub name: String,
    /// The content's size and digests.
    pub meta: ContentMeta,
    /// Seconds until it expires, at most [`MAX_OFFER_SECS`], at least 1.
    pub expires_in: u64,
}

/// The username every query is sent under: never a real peer's name (our announcers refuse
/// it), so a legacy listener that shows the last datagram of each username files a query's
/// empty `files` under it and keeps showing the querying peer's own announcement.
pub const QUERY_USERNAME: &str = "(query)";

/// Longest datagram [`is_query`] reads as a query. Ours are about 100 bytes (no chunks, no
/// contents); anything longer is an announcement, whatever it says, and is not parsed: an
/// announcer that hears the announce port for queries also hears every announcement of the
/// LAN, and must not pay for a full JSON parse of each.
pub const MAX_QUERY_DATAGRAM: usize = 512;

/// Whether `bytes` is a query ([`Kind::Query`]) of a version we speak, cheaply: a datagram
/// longer than [`MAX_QUERY_DATAGRAM`] or without the bytes `query` is refused before any
/// parsing, so only small candidates are decoded.
pub fn is_query(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"query";
    bytes.len() <= MAX_QUERY_DATAGRAM
        && bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE)
        && Announcement::decode(bytes).is_ok_and(|a| {
            a.p2p
                .is_some_and(|e| e.kind == Kind::Query && KNOWN_VERSIONS.contains(&e.v))
        })
}

/// Longest announce interval a listener honours, in seconds (ten minutes): a longer one is
/// taken at this value, so a peer cannot stay listed for days after it left. Our announcers
/// refuse a longer `--interval`.
pub const MAX_ANNOUNCE_INTERVAL_SECS: u64 = 600;

/// One announcement datagram.
///
/// # Format
/// ```text
/// {"username":"ece","files":["ece_1","ece_2"]}                        legacy
/// {"username":"alice","files":["photo.png_1","photo.png_2"],
///  "p2p":{"v":1,"port":5001,"interval":60,"instance":"5f3c9a…",
///         "contents":{"photo.png":{"size":1048579,"sha256":"9f86…"}}}} ours
/// {"username":"carol","files":[],"p2p":{…,"kind":"query"}}          ours: announce to me now
/// {"username":"alice","files":[],"p2p":{…,"kind":"goodbye"}}        ours: forget me
/// {"username":"alice","files":[],"p2p":{…,"kind":"withdraw",
///  "withdrawn":["photo.png"]}}                                       ours: no longer held
/// {"username":"bob","files":[],"p2p":{…,"kind":"offer","to":"carol",
///  "offer":"9f0c…","expires_in":3600,
///  "contents":{"report.pdf":{"size":2100000,"sha256":"…","root":"…"}}}}  ours: for carol
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The sender's username.
    pub username: String,
    /// Entries as sent. Our peers send only chunk names; legacy peers may add odd entries, which
    /// [`Announcement::chunks`] skips.
    pub files: Vec<String>,
    /// Our extension; `None` for legacy peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2p: Option<AnnouncementExt>,
}

impl Announcement {
    /// A legacy peer's announcement: `username` holding `files`, without our extension.
    pub fn legacy(username: &str, files: &[&str]) -> Announcement {
        Announcement {
            username: username.to_owned(),
            files: files.iter().map(|f| f.to_string()).collect(),
            p2p: None,
        }
    }

    /// One of our announcements: `username` holding `files`, with our extension `p2p`.
    pub fn ours(username: &str, files: &[&str], p2p: AnnouncementExt) -> Announcement {
        Announcement {
            p2p: Some(p2p),
            ..Announcement::legacy(username, files)
        }
    }

    /// The JSON bytes of this datagram.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, integers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes one datagram, liberally: `username` must be a string and `files` an array, but
    /// non-string entries in `files`, unknown keys and an unreadable `p2p` extension (which then
    /// counts as a legacy announcement) are tolerated.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] for anything that is not such an object.
    pub fn decode(bytes: &[u8]) -> Result<Announcement, DecodeError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Malformed(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| DecodeError::Malformed("not a JSON object".into()))?;
        let username = object
            .get("username")
            .and_then(|v| v.as_str())
            .ok_or_else(|| DecodeError::Malformed("\"username\" missing or not a string".into()))?
            .to_owned();
        let files = object
            .get("files")
            .and_then(|v| v.as_array())
            .ok_or_else(|| DecodeError::Malformed("\"files\" missing or not an array".into()))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let p2p = object
            .get("p2p")
            .and_then(|v| serde_json::from_value::<AnnouncementExt>(v.clone()).ok())
            .filter(AnnouncementExt::is_usable);
        Ok(Announcement {
            username,
            files,
            p2p,
        })
    }

    /// The valid chunk names among `files`, skipping everything else.
    pub fn chunks(&self) -> Vec<ChunkName> {
        self.chunk_names().collect()
    }

    /// The valid chunk names among `files`, in order, lazily (a listener stops after its
    /// limit), each under its content's real name: a nested content is listed in `files` under
    /// its [`legacy_flat_name`] (`photos%2Fa.jpg_1`, for legacy listeners), and read back as
    /// `photos/a.jpg` when `p2p.contents` has that key. Never by decoding the `%2F`: a legacy
    /// file may be named `a%2Fb`, and stays that.
    pub fn chunk_names(&self) -> impl Iterator<Item = ChunkName> + '_ {
        let nested: BTreeMap<String, &str> = self
            .p2p
            .iter()
            .flat_map(|ext| ext.contents.keys())
            .filter(|name| name.contains('/'))
            .map(|name| (legacy_flat_name(name).into_owned(), name.as_str()))
            .collect();
        self.files.iter().filter_map(move |f| {
            let chunk = ChunkName::parse(f).ok()?;
            match nested.get(chunk.content()) {
                Some(real) => ChunkName::new(real, chunk.index()).ok(),
                None => Some(chunk),
            }
        })
    }

    /// Splits one peer's whole announcement into datagrams of at most `limit` bytes
    /// ([`MAX_ANNOUNCE_DATAGRAM`](crate::MAX_ANNOUNCE_DATAGRAM) on an open network, less on a private one, whose sealing
    /// adds bytes: `shared::trust::Wire::payload_limit`), each a complete announcement on its
    /// own.
    ///
    /// `files` lists each chunk under the name legacy peers know it by
    /// ([`ChunkName::to_legacy_string`]: a nested content's `/` written `%2F`), and
    /// `p2p.contents` is keyed by the real name, which is how our listeners read it back
    /// ([`Announcement::chunk_names`]).
    ///
    /// The chunks of one content stay in one datagram when they fit, and a datagram carries the
    /// `contents` entry of every content it lists. With no chunks at all, one datagram with an
    /// empty `files` is still produced, so the peer stays visible. A chunk that cannot fit even
    /// alone (a long username, or a long name of `"`s, which JSON escaping doubles) is left out
    /// and returned in the second list.
    pub fn pack(
        username: &str,
        ext: Option<&AnnouncementExt>,
        chunks: &[ChunkName],
        metas: &BTreeMap<String, ContentMeta>,
        limit: usize,
    ) -> (Vec<Vec<u8>>, Vec<ChunkName>) {
        let mut sorted: Vec<&ChunkName> = chunks.iter().collect();
        sorted.sort();
        sorted.dedup();

        let build = |names: &[&ChunkName]| -> Announcement {
            Announcement {
                username: username.to_owned(),
                files: names.iter().map(|n| n.to_legacy_string()).collect(),
                p2p: ext.map(|ext| AnnouncementExt {
                    contents: names
                        .iter()
                        .filter_map(|n| {
                            metas.get(n.content()).map(|m| (n.content().to_owned(), *m))
                        })
                        .collect(),
                    ..ext.clone()
                }),
            }
        };
        let fits = |names: &[&ChunkName]| build(names).encode().len() <= limit;

        let mut datagrams = Vec::new();
        let mut dropped = Vec::new();
        let mut current: Vec<&ChunkName> = Vec::new();
        for group in sorted.chunk_by(|a, b| a.content() == b.content()) {
            let mut candidate = current.clone();
            candidate.extend_from_slice(group);
            if fits(&candidate) {
                current = candidate;
                continue;
            }
            // The whole group does not fit beside what we have: start afresh, then place its
            // chunks one by one if even a fresh datagram cannot take them all.
            if !current.is_empty() {
                datagrams.push(build(&current).encode());
                current.clear();
            }
            for name in group {
                current.push(name);
                if !fits(&current) {
                    current.pop();
                    if current.is_empty() {
                        dropped.push((*name).clone());
                        continue;
                    }
                    datagrams.push(build(&current).encode());
                    current = vec![name];
                    if !fits(&current) {
                        dropped.push((*name).clone());
                        current.clear();
                    }
                }
            }
        }
        if !current.is_empty() || datagrams.is_empty() {
            datagrams.push(build(&current).encode());
        }
        (datagrams, dropped)
    }

    /// The [`Kind::Offer`] datagram offering `offer` to its user, with `ext`'s port and
    /// instance and no chunks (to a legacy listener, an announcement of nothing); `None` when
    /// it cannot fit in `limit` bytes.
    pub fn offer(
        username: &str,
        ext: &AnnouncementExt,
        offer: &OfferHeard,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let bytes = Announcement::ours(
            username,
            &[],
            AnnouncementExt {
                kind: Kind::Offer,
                contents: BTreeMap::from([(offer.name.clone(), offer.meta)]),
                withdrawn: Vec::new(),
                to: Some(offer.to.clone()),
                offer: Some(offer.id.clone()),
                expires_in: Some(offer.expires_in),
                ..ext.clone()
            },
        )
        .encode();
        (bytes.len() <= limit).then_some(bytes)
    }

    /// The offer this datagram makes, when it is a usable [`Kind::Offer`]: a recipient, a
    /// valid id, exactly one content of a valid name, and an expiry of at least one second
    /// (taken at most at [`MAX_OFFER_SECS`]); `None` for anything else.
    pub fn as_offer(&self) -> Option<OfferHeard> {
        let ext = self.p2p.as_ref().filter(|e| e.kind == Kind::Offer)?;
        let to = ext.to.clone().filter(|t| !t.is_empty())?;
        let id = ext.offer.clone().filter(|id| is_offer_id(id))?;
        let expires_in = ext.expires_in.filter(|&s| s > 0)?.min(MAX_OFFER_SECS);
        if ext.contents.len() != 1 {
            return None;
        }
        let (name, meta) = ext.contents.iter().next()?;
        validate_content_name(name).ok()?;
        Some(OfferHeard {
            to,
            id,
            name: name.clone(),
            meta: *meta,
            expires_in,
        })
    }

    /// The [`Kind::Withdraw`] datagrams saying that `username` no longer holds `names`: as
    /// few as fit in `limit` bytes each, with `ext`'s port and instance and
    /// no chunks (to a legacy listener, an announcement of nothing). A name that cannot fit
    /// alone is left out; listeners then drop it only when it expires.
    pub fn pack_withdrawals(
        username: &str,
        ext: &AnnouncementExt,
        names: &[String],
        limit: usize,
    ) -> Vec<Vec<u8>> {
        let build = |names: &[String]| {
            Announcement::ours(
                username,
                &[],
                AnnouncementExt {
                    kind: Kind::Withdraw,
                    contents: BTreeMap::new(),
                    withdrawn: names.to_vec(),
                    ..ext.clone()
                },
            )
            .encode()
        };
        let mut datagrams = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for name in names {
            current.push(name.clone());
            if build(&current).len() <= limit {
                continue;
            }
            current.pop();
            if !current.is_empty() {
                datagrams.push(build(&current));
            }
            current = vec![name.clone()];
            if build(&current).len() > limit {
                current.clear();
            }
        }
        if !current.is_empty() {
            datagrams.push(build(&current));
        }
        datagrams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::protocol::content::tests::manifest;
    use crate::protocol::error::tests::assert_malformed;
    use crate::MAX_ANNOUNCE_DATAGRAM;

    fn ext() -> AnnouncementExt {
        AnnouncementExt {
            instance: Some("a1b2".into()),
            ..AnnouncementExt::new(5001, 60)
        }
    }

    #[test]
    fn legacy_announcement_decodes() {
        let a = Announcement::decode(
            br#"{"username": "ece", "files": ["ece_1", "ece_2", "ece_3", "ali_2", "ece.txt", 7]}"#,
        )
        .unwrap();
        assert_eq!(a.username, "ece");
        assert_eq!(a.p2p, None);
        assert_eq!(a.files.len(), 5);
        let chunks: Vec<String> = a.chunks().iter().map(|c| c.to_string()).collect();
        assert_eq!(chunks, ["ece_1", "ece_2", "ece_3", "ali_2"]);
    }

    #[test]
    fn our_announcement_round_trips_and_reads_as_legacy() {
        let ext = ext().with_content("photo.png", manifest().meta());
        let a = Announcement::ours("alice", &["photo.png_1", "photo.png_2"], ext);
        let bytes = a.encode();
        assert_eq!(Announcement::decode(&bytes).unwrap(), a);
        // A legacy listener only ever looks at these two keys.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["username"], "alice");
        assert_eq!(v["files"][1], "photo.png_2");
    }

    #[test]
    fn queries_and_goodbyes_round_trip_and_plain_announcements_omit_the_kind() {
        for kind in [Kind::Query, Kind::Goodbye] {
            let a = Announcement::ours("carol", &[], AnnouncementExt { kind, ..ext() });
            let bytes = a.encode();
            assert_eq!(Announcement::decode(&bytes).unwrap(), a);
            assert!(Announcement::decode(&bytes).unwrap().chunks().is_empty());
        }
        let plain = Announcement::ours("a", &[], ext()).encode();
        assert!(!String::from_utf8(plain).unwrap().contains("kind"));
        // A version-1 peer without instance or kind still decodes.
        let old = br#"{"username":"x","files":[],"p2p":{"v":1,"port":1,"interval":5}}"#;
        let ext = Announcement::decode(old).unwrap().p2p.unwrap();
        assert_eq!((ext.kind, ext.instance), (Kind::Announce, None));
    }

    #[test]
    fn compact_announcements_round_trip_and_carry_their_legacy_list_for_legacy_listeners() {
        let summary = CatalogSummary {
            count: 10_000,
            sha256: Digest::of(b"catalog"),
        };
        let compact = AnnouncementExt {
            catalog: Some(summary),
            ..ext()
        };
        // The summary alone (what our listeners need), 300-odd bytes whatever the catalog.
        let alone = Announcement::ours("alice", &[], compact.clone());
        let bytes = alone.encode();
        assert!(bytes.len() < 300, "{} bytes", bytes.len());
        assert_eq!(Announcement::decode(&bytes).unwrap(), alone);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(&format!(
                r#""catalog":{{"count":10000,"sha256":"{}"}}"#,
                summary.sha256
            )),
            "{text}"
        );
        // With chunk names for legacy listeners: they read username and files as always.
        let chunks: Vec<ChunkName> = ChunkName::all_of("photos/a.jpg").unwrap().into();
        let (datagrams, dropped) = Announcement::pack(
            "alice",
            Some(&compact),
            &chunks,
            &BTreeMap::new(),
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert!(dropped.is_empty());
        let a = Announcement::decode(&datagrams[0]).unwrap();
        assert_eq!(a.p2p.as_ref().unwrap().catalog, Some(summary));
        assert_eq!(a.files[0], "photos%2Fa.jpg_1");
        // Without the catalog: an announcement of ours never carries it.
        assert!(
            !String::from_utf8(Announcement::ours("a", &[], ext()).encode())
                .unwrap()
                .contains("catalog")
        );
        // A summary that does not parse makes the extension unreadable, as any broken field
        // does: the datagram is a legacy one.
        let broken = text.replace(&summary.sha256.to_string(), "not a digest");
        assert_eq!(Announcement::decode(broken.as_bytes()).unwrap().p2p, None);
    }

    #[test]
    fn withdrawals_round_trip_fill_datagrams_and_read_as_empty_legacy_announcements() {
        let names: Vec<String> = (0..60).map(|i| format!("file number {i:03}.bin")).collect();
        let datagrams =
            Announcement::pack_withdrawals("alice", &ext(), &names, MAX_ANNOUNCE_DATAGRAM);
        assert!(datagrams.len() > 1, "60 names need more than one datagram");
        let mut back = Vec::new();
        for d in &datagrams {
            assert!(d.len() <= MAX_ANNOUNCE_DATAGRAM);
            let a = Announcement::decode(d).unwrap();
            assert!(a.files.is_empty());
            let p2p = a.p2p.unwrap();
            assert_eq!(p2p.kind, Kind::Withdraw);
            assert_eq!(p2p.instance.as_deref(), Some("a1b2"));
            back.extend(p2p.withdrawn);
        }
        assert_eq!(back, names);
        // A name too long to fit alone is left out, the others are not.
        let huge = "\"".repeat(600);
        let some = Announcement::pack_withdrawals(
            "alice",
            &ext(),
            &[huge, "x".into()],
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert_eq!(some.len(), 1);
        assert!(
            Announcement::pack_withdrawals("alice", &ext(), &[], MAX_ANNOUNCE_DATAGRAM).is_empty()
        );
    }

    fn an_offer() -> OfferHeard {
        OfferHeard {
            to: "carol".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "report.pdf".into(),
            meta: manifest().meta(),
            expires_in: 3600,
        }
    }

    #[test]
    fn offers_round_trip_and_read_as_empty_legacy_announcements() {
        let offer = an_offer();
        let bytes = Announcement::offer("bob", &ext(), &offer, MAX_ANNOUNCE_DATAGRAM).unwrap();
        assert!(bytes.len() <= MAX_ANNOUNCE_DATAGRAM);
        let a = Announcement::decode(&bytes).unwrap();
        assert_eq!(a.username, "bob");
        assert!(a.files.is_empty() && a.chunks().is_empty());
        let p2p = a.p2p.as_ref().unwrap();
        assert_eq!(p2p.kind, Kind::Offer);
        assert_eq!(p2p.port, 5001);
        assert_eq!(p2p.instance.as_deref(), Some("a1b2"));
        assert_eq!(a.as_offer(), Some(offer));
        // A legacy listener only looks at username and files: an announcement of nothing.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["username"], "bob");
        assert_eq!(v["files"], serde_json::json!([]));
        // A peer of ours that predates offers cannot read the kind: the extension counts as
        // absent, and the datagram as a legacy announcement without chunks.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let older = text.replace("\"offer\",\"to\"", "\"unknown\",\"to\"");
        assert_ne!(older, text);
        let a = Announcement::decode(older.as_bytes()).unwrap();
        assert_eq!(a.p2p, None);
        assert!(a.chunks().is_empty());
        // Other kinds are no offers.
        for kind in [Kind::Announce, Kind::Withdraw, Kind::Goodbye, Kind::Query] {
            let a = Announcement::ours("bob", &[], AnnouncementExt { kind, ..ext() });
            assert_eq!(a.as_offer(), None);
        }
    }

    #[test]
    fn an_offer_that_cannot_fit_is_not_made() {
        let mut offer = an_offer();
        offer.name = "\"".repeat(crate::MAX_CONTENT_NAME_BYTES);
        offer.to = "t".repeat(crate::MAX_USERNAME_BYTES);
        assert!(
            Announcement::offer(&"u".repeat(600), &ext(), &offer, MAX_ANNOUNCE_DATAGRAM).is_none()
        );
        // The longest ordinary name and usernames fit.
        let mut offer = an_offer();
        offer.name = "n".repeat(crate::MAX_CONTENT_NAME_BYTES);
        offer.to = "t".repeat(crate::MAX_USERNAME_BYTES);
        offer.id = "i".repeat(MAX_OFFER_ID_BYTES);
        offer.expires_in = MAX_OFFER_SECS;
        let bytes = Announcement::offer(
            &"u".repeat(crate::MAX_USERNAME_BYTES),
            &ext(),
            &offer,
            MAX_ANNOUNCE_DATAGRAM,
        )
        .unwrap();
        assert_eq!(
            Announcement::decode(&bytes).unwrap().as_offer(),
            Some(offer)
        );
    }

    #[test]
    fn unusable_offers_are_refused_field_by_field() {
        let good = Announcement::decode(
            &Announcement::offer("bob", &ext(), &an_offer(), MAX_ANNOUNCE_DATAGRAM).unwrap(),
        )
        .unwrap();
        let with = |edit: &dyn Fn(&mut AnnouncementExt)| {
            let mut a = good.clone();
            edit(a.p2p.as_mut().unwrap());
            Announcement::decode(&a.encode()).unwrap().as_offer()
        };
        assert!(with(&|_| {}).is_some());
        assert_eq!(with(&|e| e.to = None), None);
        assert_eq!(with(&|e| e.to = Some(String::new())), None);
        assert_eq!(with(&|e| e.offer = None), None);
        assert_eq!(with(&|e| e.offer = Some(String::new())), None);
        assert_eq!(with(&|e| e.offer = Some("a/b".into())), None);
        assert_eq!(with(&|e| e.offer = Some("x".repeat(65))), None);
        assert_eq!(with(&|e| e.expires_in = None), None);
        assert_eq!(with(&|e| e.expires_in = Some(0)), None);
        assert_eq!(with(&|e| e.contents.clear()), None);
        assert_eq!(
            with(&|e| {
                let meta = e.contents["report.pdf"];
                e.contents.insert("other.pdf".into(), meta);
            }),
            None,
            "one content per offer"
        );
        for bad_name in ["../x", "a/../../b", "", "a\u{1b}[31m"] {
            assert_eq!(
                with(&|e| {
                    let meta = e.contents.remove("report.pdf").unwrap();
                    e.contents.insert(bad_name.into(), meta);
                }),
                None,
                "{bad_name:?}"
            );
        }
        // A long expiry is capped at a week.
        let capped = with(&|e| e.expires_in = Some(u64::MAX)).unwrap();
        assert_eq!(capped.expires_in, MAX_OFFER_SECS);
        // Garbage in the offer fields makes the extension unreadable: a legacy datagram.
        let text = r#"{"username":"bob","files":[],"p2p":{"v":1,"port":5001,"interval":60,"kind":"offer","to":7,"offer":"x","expires_in":"soon"}}"#;
        let a = Announcement::decode(text.as_bytes()).unwrap();
        assert_eq!((a.as_offer(), a.p2p), (None, None));
    }

    #[test]
    fn offer_ids_are_short_plain_tokens() {
        assert!(is_offer_id("0123abcdEF-_"));
        for bad in [
            "",
            "a b",
            "a/b",
            "é",
            "a\n",
            &"x".repeat(MAX_OFFER_ID_BYTES + 1),
        ] {
            assert!(!is_offer_id(bad), "{bad:?}");
        }
        assert!(is_offer_id(&"x".repeat(MAX_OFFER_ID_BYTES)));
    }

    #[test]
    fn queries_are_told_from_everything_else_without_parsing_big_datagrams() {
        let query = Announcement::ours(
            QUERY_USERNAME,
            &[],
            AnnouncementExt {
                kind: Kind::Query,
                ..AnnouncementExt::new(0, 60)
            },
        )
        .encode();
        assert!(query.len() < MAX_QUERY_DATAGRAM / 2, "{}", query.len());
        assert!(is_query(&query));
        let announce = Announcement::ours("query", &["query_1"], ext()).encode();
        assert!(!is_query(&announce), "an announcement naming 'query'");
        let goodbye = Announcement::ours(
            "a",
            &[],
            AnnouncementExt {
                kind: Kind::Goodbye,
                ..ext()
            },
        )
        .encode();
        assert!(!is_query(&goodbye));
        assert!(!is_query(br#"{"username":"query","files":[]}"#), "legacy");
        assert!(!is_query(b"query"));
        assert!(!is_query(b""));
        let future =
            br#"{"username":"q","files":[],"p2p":{"v":99,"port":0,"interval":60,"kind":"query"}}"#;
        assert!(!is_query(future), "a version we do not speak");
        // A query padded past the limit is not even parsed.
        let mut padded = query[..query.len() - 1].to_vec();
        padded.extend_from_slice(
            format!(r#","pad":"{}"}}"#, "x".repeat(MAX_QUERY_DATAGRAM)).as_bytes(),
        );
        assert!(Announcement::decode(&padded).is_ok());
        assert!(!is_query(&padded));
    }

    #[test]
    fn broken_extension_degrades_to_legacy() {
        let a =
            Announcement::decode(br#"{"username":"x","files":["a_1"],"p2p":{"v":"?"}}"#).unwrap();
        assert_eq!(a.p2p, None);
        assert_eq!(a.chunks().len(), 1);
    }

    #[test]
    fn unknown_versions_and_port_0_degrade_to_legacy() {
        for text in [
            r#"{"username":"x","files":["a_1"],"p2p":{"v":4000000000,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":0,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":2,"port":5001,"interval":60}}"#,
            r#"{"username":"x","files":["a_1"],"p2p":{"v":1,"port":0,"interval":60}}"#,
            r#"{"username":"x","files":[],"p2p":{"v":1,"port":0,"interval":60,"kind":"goodbye"}}"#,
        ] {
            let a = Announcement::decode(text.as_bytes()).unwrap();
            assert_eq!(a.p2p, None, "{text}");
        }
        // A query names no port of its own, whatever its version.
        for v in [1, 7] {
            let text = format!(
                r#"{{"username":"x","files":[],"p2p":{{"v":{v},"port":0,"interval":60,"kind":"query"}}}}"#
            );
            let a = Announcement::decode(text.as_bytes()).unwrap();
            assert_eq!(a.p2p.map(|e| e.kind), Some(Kind::Query), "{text}");
        }
    }

    #[test]
    fn malformed_announcements_are_rejected() {
        let junk_60k = vec![b'x'; 60_000];
        for junk in [
            &b""[..],
            b"not json",
            b"[]",
            b"null",
            b"{\"files\": []}",
            b"{\"username\": 3, \"files\": []}",
            b"{\"username\": \"a\"}",
            b"{\"username\": \"a\", \"files\": \"a_1\"}",
            b"{\"username\": \"a\", \"files\": [\"a_1\"]",
            &junk_60k,
        ] {
            assert_malformed(Announcement::decode(junk), junk);
        }
    }

    fn metas_for(names: &[ChunkName]) -> BTreeMap<String, ContentMeta> {
        names
            .iter()
            .map(|n| {
                (
                    n.content().to_owned(),
                    ContentMeta {
                        size: 1 << 40,
                        sha256: Digest::of(n.content().as_bytes()),
                        root: Some(Digest::of(n.content().as_bytes())),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn pack_splits_many_chunks_into_small_self_contained_datagrams() {
        let mut chunks = Vec::new();
        for i in 0..300 {
            for name in
                ChunkName::all_of(&format!("file number {i:03} with a long-ish name.dat")).unwrap()
            {
                chunks.push(name);
            }
        }
        let metas = metas_for(&chunks);
        let (datagrams, dropped) = Announcement::pack(
            "alice",
            Some(&ext()),
            &chunks,
            &metas,
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert!(dropped.is_empty());
        assert!(datagrams.len() > 10);
        let mut seen = Vec::new();
        for bytes in &datagrams {
            assert!(
                bytes.len() <= MAX_ANNOUNCE_DATAGRAM,
                "{} bytes",
                bytes.len()
            );
            let a = Announcement::decode(bytes).unwrap();
            assert_eq!(a.username, "alice");
            let ext = a.p2p.clone().unwrap();
            let names = a.chunks();
            // Each content's five chunks travel together, with their metadata.
            assert_eq!(names.len() % 5, 0);
            for name in &names {
                assert_eq!(ext.contents[name.content()], metas[name.content()]);
            }
            assert_eq!(ext.contents.len(), names.len() / 5);
            seen.extend(names);
        }
        seen.sort();
        chunks.sort();
        assert_eq!(seen, chunks);
    }

    #[test]
    fn pack_splits_a_content_whose_chunks_cannot_share_a_datagram() {
        let long = "n".repeat(crate::MAX_CONTENT_NAME_BYTES);
        let chunks: Vec<ChunkName> = ChunkName::all_of(&long).unwrap().into();
        let metas = metas_for(&chunks);
        let (datagrams, dropped) =
            Announcement::pack("bob", Some(&ext()), &chunks, &metas, MAX_ANNOUNCE_DATAGRAM);
        assert!(dropped.is_empty());
        assert!(datagrams.len() >= 2);
        let mut total = 0;
        for bytes in &datagrams {
            assert!(bytes.len() <= MAX_ANNOUNCE_DATAGRAM);
            let a = Announcement::decode(bytes).unwrap();
            assert!(a.p2p.as_ref().unwrap().contents.contains_key(&long));
            total += a.chunks().len();
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn nested_contents_are_flattened_for_legacy_listeners_and_read_back_by_ours() {
        // The longest nested name, '/' every other byte.
        let long = "a/".repeat(crate::MAX_CONTENT_NAME_BYTES / 4 - 1) + "bcde";
        assert_eq!(legacy_flat_name(&long).len(), crate::MAX_CONTENT_NAME_BYTES);
        let mut chunks: Vec<ChunkName> = Vec::new();
        for name in ["photos/2024/a.jpg", "top.txt", long.as_str()] {
            chunks.extend(ChunkName::all_of(name).unwrap());
        }
        let metas = metas_for(&chunks);
        let user = "u".repeat(crate::MAX_USERNAME_BYTES);
        let (datagrams, dropped) =
            Announcement::pack(&user, Some(&ext()), &chunks, &metas, MAX_ANNOUNCE_DATAGRAM);
        assert!(dropped.is_empty(), "{dropped:?}");
        let mut seen = Vec::new();
        let mut legacy_seen = Vec::new();
        for bytes in &datagrams {
            assert!(
                bytes.len() <= MAX_ANNOUNCE_DATAGRAM,
                "{} bytes",
                bytes.len()
            );
            let a = Announcement::decode(bytes).unwrap();
            // What a legacy listener reads: plain file names only.
            for f in &a.files {
                assert!(!f.contains('/'), "{f}");
            }
            legacy_seen.extend(
                Announcement {
                    p2p: None,
                    ..a.clone()
                }
                .chunks(),
            );
            seen.extend(a.chunks());
        }
        seen.sort();
        chunks.sort();
        assert_eq!(seen, chunks, "ours read the real names back");
        let legacy: std::collections::BTreeSet<String> =
            legacy_seen.iter().map(|c| c.content().to_owned()).collect();
        assert!(legacy.contains("photos%2F2024%2Fa.jpg") && legacy.contains("top.txt"));
    }

    #[test]
    fn a_flat_name_is_mapped_back_only_through_the_contents_of_its_datagram() {
        let meta = manifest().meta();
        // A legacy-style file really named a%2Fb, and a nested content c/d.
        let ext = ext().with_content("c/d", meta).with_content("a%2Fb", meta);
        let a = Announcement::ours("x", &["a%2Fb_1", "c%2Fd_2", "e%2Ff_3", "g/h_4"], ext);
        let names: Vec<String> = a.chunks().iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["a%2Fb_1", "c/d_2", "e%2Ff_3", "g/h_4"]);
        // Hostile paths are no chunk names at all.
        let a = Announcement::legacy("m", &["../x_1", "a/../../x_1", "/etc/x_1", "ok_1"]);
        let names: Vec<String> = a.chunks().iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["ok_1"]);
    }

    #[test]
    fn pack_without_chunks_still_announces_presence() {
        let (datagrams, _) = Announcement::pack(
            "carol",
            Some(&ext()),
            &[],
            &BTreeMap::new(),
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert_eq!(datagrams.len(), 1);
        let a = Announcement::decode(&datagrams[0]).unwrap();
        assert!(a.files.is_empty());
        assert_eq!(a.p2p.unwrap().port, 5001);
    }

    #[test]
    fn pack_drops_what_cannot_fit_at_all() {
        let chunks: Vec<ChunkName> = ChunkName::all_of("a").unwrap().into();
        let huge_user = "u".repeat(2000);
        let (datagrams, dropped) = Announcement::pack(
            &huge_user,
            None,
            &chunks,
            &BTreeMap::new(),
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert_eq!(dropped.len(), 5);
        assert_eq!(datagrams.len(), 1);
    }
}
