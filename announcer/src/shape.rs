//! The shape of an announcement: *inline*, the chunk names and each content's identity in
//! the datagrams themselves (what every peer did before catalogs), or *compact*, one datagram
//! naming the peer's catalog by its count and digest ([`CatalogSummary`]), which our listeners
//! then fetch over TCP from the chunk server.
//!
//! A peer with few contents stays inline: a handful of datagrams a minute, understood at once
//! by every listener, legacy ones included. Beyond [`INLINE_MAX_DATAGRAMS`] it turns compact:
//! 10,000 contents inline were over 3,000 datagrams every interval, which a listener on a busy
//! host cannot all keep; compact, they are one datagram, and a fetch of about 2 MB by each of
//! our listeners only when the list changed. Legacy listeners, which know no catalog, get the
//! list apart, paced, when the policy says so ([`crate::legacy`]).

use shared::chunk::ChunkName;
use shared::protocol::{Announcement, AnnouncementExt, CatalogSummary, MAX_ANNOUNCE_INTERVAL_SECS};
use shared::store::Snapshot;

/// Most datagrams an inline announcement may take; a peer whose announcement needs more
/// announces compactly. About 50 contents of ordinary names fit in 16 datagrams.
pub const INLINE_MAX_DATAGRAMS: usize = 16;

/// How a snapshot is announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Shape {
    /// In the datagrams themselves.
    #[default]
    Inline,
    /// By the summary of the catalog.
    Compact(CatalogSummary),
}

impl Shape {
    /// How `snapshot` is announced by `username` in datagrams of at most `limit` bytes: inline
    /// when that takes at most [`INLINE_MAX_DATAGRAMS`] datagrams, else compact, with the
    /// catalog's bytes (to publish for the chunk server, [`shared::catalog_file`]).
    pub(crate) fn of(snapshot: &Snapshot, username: &str, limit: usize) -> (Shape, Vec<u8>) {
        if fits_inline(snapshot, username, limit) {
            (Shape::Inline, Vec::new())
        } else {
            let (bytes, summary) = snapshot.catalog().encode();
            (Shape::Compact(summary), bytes)
        }
    }
}

/// Whether the inline announcement of `snapshot` takes at most [`INLINE_MAX_DATAGRAMS`]
/// datagrams of `limit` bytes. Packed for real only when a lower bound on its size (each
/// chunk name quoted, and a comma) does not already say no: a store of thousands of contents
/// is not packed at every change just to learn that.
fn fits_inline(snapshot: &Snapshot, username: &str, limit: usize) -> bool {
    let at_least: usize = snapshot
        .chunks
        .iter()
        .map(|c| c.to_string().len() + 3)
        .sum();
    if at_least > INLINE_MAX_DATAGRAMS * limit {
        return false;
    }
    // The largest extension any datagram carries: the longest port, interval and instance.
    let widest = AnnouncementExt {
        instance: Some("f".repeat(16)),
        ..AnnouncementExt::new(u16::MAX, MAX_ANNOUNCE_INTERVAL_SECS)
    };
    let (datagrams, _) = Announcement::pack(
        username,
        Some(&widest),
        &snapshot.chunks,
        &snapshot.metas,
        limit,
    );
    datagrams.len() <= INLINE_MAX_DATAGRAMS
}

/// The chunks of `now` that `before` did not have (both sorted, as snapshots are).
pub(crate) fn added(before: &[ChunkName], now: &[ChunkName]) -> Vec<ChunkName> {
    now.iter()
        .filter(|c| before.binary_search(c).is_err())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::digest::Digest;
    use shared::protocol::ContentMeta;
    use shared::MAX_ANNOUNCE_DATAGRAM;

    fn snapshot(contents: usize) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for i in 0..contents {
            let name = format!("holiday-photo-{i:04}.jpg");
            snapshot.chunks.extend(ChunkName::all_of(&name).unwrap());
            snapshot.metas.insert(
                name.clone(),
                ContentMeta {
                    size: 3_000_000,
                    sha256: Digest::of(name.as_bytes()),
                    root: Some(Digest::of(b"root")),
                },
            );
        }
        snapshot.chunks.sort();
        snapshot
    }

    #[test]
    fn few_contents_stay_inline_many_turn_compact() {
        assert_eq!(
            Shape::of(&snapshot(0), "alice", MAX_ANNOUNCE_DATAGRAM),
            (Shape::Inline, Vec::new())
        );
        assert_eq!(
            Shape::of(&snapshot(20), "alice", MAX_ANNOUNCE_DATAGRAM).0,
            Shape::Inline
        );
        let many = snapshot(10_000);
        let (shape, published) = Shape::of(&many, "alice", MAX_ANNOUNCE_DATAGRAM);
        let (bytes, summary) = many.catalog().encode();
        assert_eq!(shape, Shape::Compact(summary));
        assert_eq!(published, bytes);
        assert_eq!(summary.count, 10_000);
        assert_eq!(summary.sha256, Digest::of(&bytes));
        // The threshold is the number of datagrams, whatever their limit.
        let mut threshold = 1;
        while Shape::of(&snapshot(threshold), "alice", MAX_ANNOUNCE_DATAGRAM).0 == Shape::Inline {
            threshold += 1;
        }
        let (datagrams, _) = Announcement::pack(
            "alice",
            Some(&AnnouncementExt::new(5001, 60)),
            &snapshot(threshold - 1).chunks,
            &snapshot(threshold - 1).metas,
            MAX_ANNOUNCE_DATAGRAM,
        );
        assert!(datagrams.len() <= INLINE_MAX_DATAGRAMS);
        assert!(threshold > 30, "{threshold} contents");
        // Sealed datagrams are smaller: compact sooner.
        assert!(matches!(
            Shape::of(&snapshot(threshold - 1), "alice", 549).0,
            Shape::Compact(_)
        ));
    }

    #[test]
    fn added_chunks_are_those_new_to_the_snapshot() {
        let before = snapshot(3).chunks;
        let mut now = snapshot(5).chunks;
        now.retain(|c| c.content() != "holiday-photo-0000.jpg");
        let added: Vec<String> = added(&before, &now)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(added.len(), 10);
        assert!(added.iter().all(|c| c.starts_with("holiday-photo-000")));
        assert!(!added
            .iter()
            .any(|c| c.contains("0000") || c.contains("0002")));
    }
}
