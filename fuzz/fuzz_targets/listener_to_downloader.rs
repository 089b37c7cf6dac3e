//! The listener -> `tags.txt` -> downloader contract.
//!
//! Arbitrary datagrams from a few source addresses, at advancing times, go into the listener's
//! index as the listener's main loop applies them (decode, queries skipped, `Index::apply`,
//! periodic `Index::expire`). After each one, the index is rendered as `tags.txt` text, parsed
//! back with the shared parser, and loaded into the downloader's catalog. Checked:
//! - nothing panics;
//! - the parsed file equals what the listener wrote (`TagsIndex` equality), and a listener
//!   restarting from it (`Index::from_tags`) would write the same file;
//! - the downloader's catalog holds exactly the written entries: each as one holder of the
//!   target of its name and digest, with its user, address, protocol and chunks, and every
//!   target's name is a valid content name.
//!
//! Input format (so the seed corpus holds real datagrams): records separated by the byte 0xFF
//! (never in UTF-8 JSON); each record is one byte choosing the source address (low 3 bits; bit 7
//! also runs an expiry pass), one byte of seconds to advance the clock, then the datagram.
#![no_main]

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use downloader::catalog::Catalog;
use libfuzzer_sys::fuzz_target;
use listener::index::Index;
use shared::chunk::validate_content_name;
use shared::protocol::{Announcement, Kind};
use shared::tags::TagsIndex;

/// Where legacy peers (which announce no port) serve chunks: `listener --legacy-chunk-port`.
const LEGACY_CHUNK_PORT: u16 = 5001;

/// The source addresses a record can choose from: loopback and LAN IPv4, IPv6, and the
/// IPv4-mapped form of an address also present as IPv4 (the index must treat them as one).
const SOURCES: [&str; 8] = [
    "127.0.0.2",
    "127.0.0.3",
    "192.168.1.20",
    "192.168.1.21",
    "::1",
    "::ffff:127.0.0.2",
    "fe80::1",
    "10.0.0.1",
];

fuzz_target!(|data: &[u8]| {
    let sources: Vec<IpAddr> = SOURCES
        .iter()
        .map(|s| s.parse().expect("a valid address"))
        .collect();
    // Whole seconds, as tags.txt writes them.
    let mut now: DateTime<Utc> = "2026-11-21T18:00:00Z".parse().expect("a valid time");
    let mut index = Index::new();
    for record in data.split(|&b| b == 0xFF).take(64) {
        let [selector, seconds, datagram @ ..] = record else {
            continue;
        };
        now += Duration::seconds(i64::from(*seconds));
        if selector & 0x80 != 0 {
            index.expire(now);
        }
        let source = sources[usize::from(selector & 0x07)];
        // What the listener's `handle` does with a datagram.
        if let Ok(announcement) = Announcement::decode(datagram) {
            let kind = announcement.p2p.as_ref().map_or(Kind::Announce, |e| e.kind);
            if kind != Kind::Query {
                index.apply(source, &announcement, LEGACY_CHUNK_PORT, now);
            }
        }
        check_contract(&index, now);
    }
});

fn check_contract(index: &Index, now: DateTime<Utc>) {
    let written = index.to_tags(now);
    let text = written.to_string();
    let path = Path::new("tags.txt");
    let read = match TagsIndex::parse(&text, path) {
        Ok(read) => read,
        Err(e) => panic!("the downloader cannot read what the listener wrote: {e}\n{text}"),
    };
    assert_eq!(read, written, "tags.txt changed on the way:\n{text}");
    assert_eq!(
        Index::from_tags(&read).to_tags(now),
        written,
        "a listener restarted from tags.txt would write another file"
    );

    let catalog = Catalog::from_index(&read, now);
    let holders: usize = catalog.targets.iter().map(|t| t.holders.len()).sum();
    assert_eq!(
        holders,
        written.entries.len(),
        "every written entry is one holder the downloader sees:\n{text}"
    );
    for entry in &written.entries {
        assert!(!entry.chunks.is_empty(), "an entry without chunks:\n{text}");
        assert!(
            entry.expires_at() > now,
            "an expired entry was written:\n{text}"
        );
        assert!(!entry.user.contains(char::is_control), "{:?}", entry.user);
        let target = catalog
            .targets
            .iter()
            .find(|t| t.name == entry.content && t.sha256 == entry.sha256)
            .unwrap_or_else(|| panic!("no target for {entry:?}"));
        assert!(
            target.holders.iter().any(|h| h.user == entry.user
                && h.addr == entry.addr
                && h.proto == entry.proto
                && h.chunks == entry.chunks),
            "{entry:?} is not a holder of {target:?}"
        );
    }
    for target in &catalog.targets {
        assert_eq!(
            validate_content_name(&target.name),
            Ok(()),
            "{:?}",
            target.name
        );
        let mut addrs: Vec<_> = target.holders.iter().map(|h| h.addr).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(
            addrs.len(),
            target.holders.len(),
            "one holder per address: {target:?}"
        );
    }
}
