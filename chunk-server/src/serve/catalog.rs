//! Answering a catalog request: this peer's whole list of contents, which a listener of ours
//! fetches when a compact announcement named a catalog digest it does not hold
//! ([`shared::protocol::Request::Catalog`]).
//!
//! The catalog is what the announcer announces, computed by the same rule from the same store
//! ([`shared::store::Snapshot::catalog`]), so its digest is the announced one while the store
//! does not change. It is kept ([`CatalogCache`]) and sent again as long as it is the one asked
//! for: a listener asks for the digest it heard, and a dozen listeners hearing the same
//! announcement cost one read of the store, not a dozen. A request for another digest reads the
//! store again (one at a time: the others wait and find it kept); if the catalog still differs
//! (the store changed since the announcement), the answer is `wrong_content`, and the listener
//! fetches the new catalog when the announcer announces it, within about a second.
//!
//! Listing is not downloading: on a private network, every member reads the list in the
//! announcements already, so the allow list (which bounds downloads) does not apply here; a
//! plaintext request there is refused as any other (see `gate`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use shared::connection::Connection;
use shared::digest::Digest;
use shared::events::Outcome;
use shared::protocol::{CatalogSummary, Response};
use shared::store::ChunkStore;

use super::refusal::Refusal;
use super::{refuse_p2p, ServeContext};

/// The last catalog computed, kept to answer the listeners that ask for it.
#[derive(Debug, Default)]
pub(crate) struct CatalogCache {
    /// Held while the store is read, so that concurrent requests read it once.
    last: Mutex<Option<Kept>>,
}

/// One catalog's bytes and summary; shared, so the lock is not held while it is sent.
#[derive(Debug, Clone)]
struct Kept {
    summary: CatalogSummary,
    bytes: Arc<Vec<u8>>,
}

impl CatalogCache {
    /// The catalog whose digest is `wanted`: the one kept, or the store's now.
    ///
    /// # Errors
    /// `wrong_content` when the store's catalog is another (it changed since the
    /// announcement); `internal` when the store cannot be read.
    fn get(&self, store: &ChunkStore, wanted: Digest) -> Result<Kept, Refusal> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = last.as_ref().filter(|k| k.summary.sha256 == wanted) {
            return Ok(kept.clone());
        }
        let snapshot = store.snapshot().map_err(|e| {
            Refusal::new(Outcome::Error, format!("cannot read the chunk store: {e}"))
        })?;
        let (bytes, summary) = snapshot.catalog().encode();
        let kept = Kept {
            summary,
            bytes: Arc::new(bytes),
        };
        *last = Some(kept.clone());
        if summary.sha256 == wanted {
            Ok(kept)
        } else {
            Err(Refusal::new(
                Outcome::WrongContent,
                format!(
                    "the catalog here is {} ({} contents), not {}: it changed since it was \
                     announced",
                    summary.sha256.short(16),
                    summary.count,
                    wanted.short(16)
                ),
            ))
        }
    }
}

/// Answers a catalog request: the header, then the catalog's bytes; or an error reply. A sent
/// catalog is logged at debug level only: `served` events count chunks.
pub(super) fn serve_catalog(
    conn: &mut Connection,
    peer: SocketAddr,
    wanted: Digest,
    ctx: &ServeContext,
) {
    let started = Instant::now();
    let kept = match ctx.catalog.get(&ctx.store, wanted) {
        Ok(kept) => kept,
        Err(refusal) => {
            let refusal = Refusal {
                reason: format!("catalog: {}", refusal.reason),
                ..refusal
            };
            refuse_p2p(conn, peer, None, &refusal);
            return;
        }
    };
    let header = Response::Catalog {
        count: kept.summary.count,
        length: kept.bytes.len() as u64,
        sha256: kept.summary.sha256,
    };
    let sent = conn.write_response(&header).and_then(|()| {
        use std::io::Write;
        let stream = conn.stream();
        stream.write_all(&kept.bytes)?;
        stream.flush()
    });
    match sent {
        Ok(()) => log::debug!(
            "sent the catalog {} ({} contents, {} bytes) to {peer} in {} ms",
            kept.summary.sha256.short(16),
            kept.summary.count,
            kept.bytes.len(),
            started.elapsed().as_millis()
        ),
        Err(e) => log::debug!("cannot send the catalog to {peer}: {e}"),
    }
}
