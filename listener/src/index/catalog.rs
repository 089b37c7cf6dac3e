//! Compact announcements in the index: a peer that announces a summary of its catalog
//! instead of its chunk names ([`shared::protocol::CatalogSummary`]).
//!
//! A summary lists nothing by itself. When the index holds the catalog it names (same peer,
//! same digest, same run), the summary refreshes that peer's entries, as re-announcing every
//! chunk would; otherwise it is a catalog *wanted* ([`Index::catalog_wanted`]), which the
//! caller fetches from the peer's chunk server and, once its bytes match the digest, applies
//! ([`Index::apply_catalog`]). A catalog is the peer's whole list: applying it replaces that
//! peer's entries, so a content it no longer lists is gone at once. What a summary cannot do:
//! list anything unverified, or touch the entries of anyone but the peer it names (its
//! address, chunk-server port, username and, on a private network, peer ID).
//!
//! Refreshing visits the peer's entries, so it is done at most once per half interval of the
//! peer ([`refresh_gap`]): a peer that also sends its legacy list, every datagram carrying the
//! summary, costs one visit, not one per datagram, and `tags.txt` is not rewritten for each.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::protocol::{Announcement, CatalogEntry, CatalogSummary, Kind};
use shared::tags::Proto;
use shared::trust::PeerId;
use shared::username::sanitize as sanitize_username;
use shared::CHUNKS_PER_FILE;

use super::holding::{clamp_interval, readable_extension, truncate_instance, Holding, Key};
use super::{Index, Who};

/// Whose catalog: the holder's address, chunk-server port, username and peer ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CatalogPeer {
    /// Source address of the summary, where the chunk server is.
    pub ip: IpAddr,
    /// The chunk server's port.
    pub port: u16,
    /// The username announced (sanitized).
    pub user: String,
    /// The peer ID that signed the summary (private network only): the chunk server must
    /// prove it.
    pub id: Option<PeerId>,
}

/// A catalog to fetch: whose, which (its summary), and what the summary said of the run and
/// the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogWanted {
    /// Whose catalog.
    pub peer: CatalogPeer,
    /// Its count and digest, as announced.
    pub summary: CatalogSummary,
    /// The run that announced it.
    pub instance: Option<String>,
    /// The announced interval (clamped), which the entries will carry.
    pub interval: u64,
    /// The extension's version, which the entries will carry.
    pub version: u32,
}

/// The catalog the index holds for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogRecord {
    sha256: Digest,
    instance: Option<String>,
    interval: u64,
    /// When its entries were last refreshed (or the catalog applied).
    refreshed: DateTime<Utc>,
}

/// The shortest time between two refreshes of a peer's entries by its summaries: half its
/// interval, at least a second. Their last-seen times then lag by less than half an interval,
/// far from the three intervals after which they expire.
pub(crate) fn refresh_gap(interval: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from((interval / 2).max(1)).unwrap_or(i64::MAX))
}

/// The summary `announcement` carries, if it is a compact announcement of ours (a usable
/// extension of kind announce, with `catalog`); with it our listeners ignore `files`.
pub fn compact_summary(announcement: &Announcement) -> Option<CatalogSummary> {
    readable_extension(announcement)
        .filter(|e| e.kind == Kind::Announce)
        .and_then(|e| e.catalog)
}

impl CatalogPeer {
    fn who(&self) -> Who {
        Who::new(&self.user, self.id)
    }
}

impl Index {
    /// The catalog `announcement` (from `source`, signed by `signer` on a private network)
    /// names, when it is a compact announcement whose catalog this index does not hold (or
    /// holds from another run): what the caller is to fetch. `None` for anything else.
    pub fn catalog_wanted(
        &self,
        source: IpAddr,
        announcement: &Announcement,
        signer: Option<PeerId>,
    ) -> Option<CatalogWanted> {
        let summary = compact_summary(announcement)?;
        let ext = readable_extension(announcement)?;
        let peer = CatalogPeer {
            ip: source.to_canonical(),
            port: ext.port,
            user: sanitize_username(&announcement.username),
            id: signer,
        };
        let instance = ext
            .instance
            .as_deref()
            .map(|i| truncate_instance(i).to_owned());
        let held = self
            .catalogs
            .get(&peer)
            .is_some_and(|r| r.sha256 == summary.sha256 && r.instance == instance);
        (!held).then(|| CatalogWanted {
            peer,
            summary,
            instance,
            interval: clamp_interval(ext.interval),
            version: ext.v,
        })
    }

    /// A compact announcement heard at `now`: refreshes the entries of the catalog it names,
    /// if the index holds it and did not refresh them within [`refresh_gap`]. Returns whether
    /// anything `tags.txt` shows changed.
    pub(super) fn hear_summary(
        &mut self,
        source: IpAddr,
        announcement: &Announcement,
        signer: Option<PeerId>,
        now: DateTime<Utc>,
    ) -> bool {
        let (Some(ext), None) = (
            readable_extension(announcement),
            self.catalog_wanted(source, announcement, signer),
        ) else {
            return false;
        };
        let peer = CatalogPeer {
            ip: source.to_canonical(),
            port: ext.port,
            user: sanitize_username(&announcement.username),
            id: signer,
        };
        let Some(record) = self.catalogs.get_mut(&peer) else {
            return false;
        };
        if now - record.refreshed < refresh_gap(record.interval) {
            return false;
        }
        record.refreshed = now;
        let who = peer.who();
        let mut changed = false;
        let ip = peer.ip;
        for (key, holding) in self.holdings.range_mut(Key::first_of(ip)..) {
            if key.ip != ip {
                break;
            }
            if key.port != peer.port || !holding.is(&who) || holding.proto == Proto::Legacy {
                continue;
            }
            for slot in holding.seen.iter_mut().filter(|s| s.is_some()) {
                *slot = Some(now);
                changed = true;
            }
        }
        if changed {
            self.pending.refreshed(now, record.interval);
        }
        changed
    }

    /// Applies the catalog `wanted` named, fetched and checked against its digest: `entries`
    /// (the first of it: as many as the caller kept, see [`super::Limits`]) become the peer's
    /// entries, seen at `now`; its other `p2p` entries at that port are dropped. A new run
    /// (another instance than the one recorded) first drops all its `p2p` entries, as an
    /// announcement of a new run does. Returns whether anything `tags.txt` shows changed.
    pub fn apply_catalog(
        &mut self,
        wanted: &CatalogWanted,
        entries: &[CatalogEntry],
        now: DateTime<Utc>,
    ) -> bool {
        let peer = &wanted.peer;
        let who = peer.who();
        let ip = peer.ip;
        let impostor = match who.id {
            Some(id) if !entries.is_empty() => self.check_pin(&who.user, id),
            _ => false,
        };
        let mut changed = false;
        if let Some(instance) = &wanted.instance {
            if !entries.is_empty() {
                changed |= self.note_instance(ip, &who, instance);
            }
        }
        let listed: BTreeSet<(&str, Option<Digest>)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.meta.map(|m| m.sha256)))
            .collect();
        let gone: Vec<Key> = self
            .entries_of(ip)
            .filter(|(key, holding)| {
                key.port == peer.port
                    && holding.is(&who)
                    && holding.proto != Proto::Legacy
                    && !listed.contains(&(key.content.as_str(), key.sha256))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &gone {
            changed |= self.remove(key);
        }
        let proto = Proto::P2p(wanted.version);
        for entry in entries {
            let key = Key {
                ip,
                port: peer.port,
                content: entry.name.clone(),
                sha256: entry.meta.map(|m| m.sha256),
            };
            if self.holdings.get(&key).is_some_and(|h| h.id != who.id) {
                self.refusals.foreign += 1;
                continue;
            }
            self.drop_other_versions(&key, who.id);
            if !self.holdings.contains_key(&key) {
                if !self.admit(ip) {
                    continue;
                }
                self.insert_new(key.clone(), Holding::new(&who, proto, wanted.interval));
            }
            let Some(holding) = self.holdings.get_mut(&key) else {
                continue;
            };
            let before = holding.shown(now);
            holding.user.clone_from(&who.user);
            holding.impostor = impostor;
            holding.proto = proto;
            holding.size = entry.meta.map(|m| m.size);
            holding.root = entry.meta.and_then(|m| m.root);
            holding.interval = wanted.interval;
            holding.observed = false;
            holding.seen = seen_at(entry.chunks, now);
            if holding.shown(now) == before {
                self.pending.refreshed(now, wanted.interval);
            } else {
                self.pending.shown();
            }
            changed = true;
        }
        self.catalogs.insert(
            peer.clone(),
            CatalogRecord {
                sha256: wanted.summary.sha256,
                instance: wanted.instance.clone(),
                interval: wanted.interval,
                refreshed: now,
            },
        );
        changed
    }

    /// Forgets the catalogs recorded for `ip` and `who` (at `port` only, when given): their
    /// entries went (a goodbye, a new run) or are announced inline now.
    pub(super) fn forget_catalogs(&mut self, ip: IpAddr, who: &Who, port: Option<u16>) {
        self.catalogs.retain(|peer, _| {
            !(peer.ip == ip
                && peer.user == who.user
                && peer.id == who.id
                && port.is_none_or(|p| p == peer.port))
        });
    }

    /// Forgets the catalogs none of whose entries is left (all expired or evicted): the next
    /// summary fetches the catalog again.
    pub(super) fn forget_empty_catalogs(&mut self) {
        if self.catalogs.is_empty() {
            return;
        }
        let live: BTreeSet<(IpAddr, u16, &str, Option<PeerId>)> = self
            .holdings
            .iter()
            .filter(|(_, h)| h.proto != Proto::Legacy)
            .map(|(k, h)| (k.ip, k.port, h.user.as_str(), h.id))
            .collect();
        self.catalogs
            .retain(|peer, _| live.contains(&(peer.ip, peer.port, peer.user.as_str(), peer.id)));
    }

    /// How many catalogs the index holds.
    pub fn catalogs_held(&self) -> usize {
        self.catalogs.len()
    }
}

/// Each chunk of `chunks` seen at `now`, the others not at all.
fn seen_at(chunks: ChunkSet, now: DateTime<Utc>) -> [Option<DateTime<Utc>>; CHUNKS_PER_FILE] {
    let mut seen = [None; CHUNKS_PER_FILE];
    for i in chunks.indexes() {
        seen[usize::from(i - 1)] = Some(now);
    }
    seen
}
