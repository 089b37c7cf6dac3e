//! Getting the manifest of a content: from the store when an earlier run left one, else asked
//! of the holders all at once, the first answer that checks out winning.
//!
//! A manifest is taken from holder H only when its name, size and file digest are the ones
//! announced and it hashes to the root H announced ([`Manifest::root`]): H vouches for exactly
//! that manifest, and a forger announcing someone else's root cannot answer with other chunk
//! digests. Holders that did not announce a root (older peers of ours) are believed until the
//! whole file is checked. Either way the manifest stays provisional ([`Origin::Downloading`])
//! until the whole file matches its digest.
//!
//! Asking every holder at once, each with a short first-byte deadline, means silent holders
//! cost one deadline in all, not one each.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use shared::digest::Digest;
use shared::protocol::Manifest;
use shared::shutdown::Shutdown;
use shared::store::{ChunkStore, Origin};
use shared::tags::Proto;

use super::plan::vouched_by;
use crate::catalog::{Holder, Target};
use crate::fetch::{fetch_manifest, CancelHandle, Network};

/// At most this many manifest requests are in flight at once.
const PARALLEL_REQUESTS: usize = 8;

/// How often the waiting thread looks at the Ctrl-C flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// A manifest and where it came from.
pub(super) struct Obtained {
    pub(super) manifest: Manifest,
    /// Index of the holder that sent it; `None` when it came from the store.
    pub(super) from: Option<usize>,
    /// Where that holder's chunk server answers.
    pub(super) from_addr: Option<std::net::SocketAddr>,
    /// Whether the store holds it as verified (a shared file, or a download whose whole file
    /// matched): no holder needs to vouch for it.
    pub(super) trusted: bool,
}

/// Why no manifest was obtained.
pub(super) enum NoManifest {
    /// No holder answered with a manifest that checks out: each holder asked (its index in
    /// the target) with why it did not.
    Unavailable(Vec<(usize, String)>),
    /// Ctrl-C.
    Cancelled,
}

/// Gets the manifest of `target` (whose file digest is `digest`), skipping manifests whose root
/// is in `rejected` (they failed the whole-file check in this run) and the holders in
/// `skip`.
pub(super) fn obtain(
    store: &ChunkStore,
    target: &Target,
    digest: Digest,
    net: &Network,
    rejected: &HashSet<Digest>,
    skip: &HashSet<usize>,
    cancel: &Shutdown,
) -> Result<Obtained, NoManifest> {
    if let Ok(Some(stored)) = store.load_manifest(&target.name) {
        let root = stored.manifest.root();
        if stored.manifest.sha256 == digest && !rejected.contains(&root) {
            let trusted = stored.origin.vouches();
            // A provisional manifest of an interrupted run is continued only while a holder
            // still vouches for it.
            if trusted
                || (stored.origin == Origin::Downloading
                    && target.holders.iter().any(|h| h.root == Some(root)))
            {
                return Ok(Obtained {
                    manifest: stored.manifest,
                    from: None,
                    from_addr: None,
                    trusted,
                });
            }
        }
    }
    let candidates: Vec<usize> = (0..target.holders.len())
        .filter(|h| !skip.contains(h))
        .filter(|&h| matches!(target.holders[h].proto, Proto::P2p(_)))
        .filter(|&h| {
            target.holders[h]
                .root
                .is_none_or(|r| !rejected.contains(&r))
        })
        .collect();
    race(target, digest, net, rejected, &candidates, cancel)
}

/// Asks `candidates` for the manifest, [`PARALLEL_REQUESTS`] at a time; the first that checks
/// out wins and the other requests are cut off.
fn race(
    target: &Target,
    digest: Digest,
    net: &Network,
    rejected: &HashSet<Digest>,
    candidates: &[usize],
    cancel: &Shutdown,
) -> Result<Obtained, NoManifest> {
    let queue = Mutex::new(candidates.iter().copied());
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let found = AtomicBool::new(false);
    let handles: Vec<Arc<CancelHandle>> = candidates
        .iter()
        .map(|_| Arc::new(CancelHandle::default()))
        .collect();
    let cut_off = || {
        for handle in &handles {
            handle.cancel();
        }
    };
    thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Manifest)>();
        for _ in 0..PARALLEL_REQUESTS.min(candidates.len()) {
            let tx = tx.clone();
            let (queue, found, handles, failures) = (&queue, &found, &handles, &failures);
            let failed = move |h: usize, reason: String| {
                if let Ok(mut list) = failures.lock() {
                    list.push((h, reason));
                }
            };
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(h) = next else { return };
                if found.load(Ordering::SeqCst) || cancel.is_triggered() {
                    return;
                }
                let slot = candidates.iter().position(|&c| c == h).unwrap_or(0);
                let holder = &target.holders[h];
                match fetch_manifest(holder, &target.name, digest, net, &handles[slot]) {
                    Ok(m)
                        if acceptable(
                            &m,
                            target,
                            holder,
                            digest,
                            rejected,
                            net.limits.max_size,
                        ) =>
                    {
                        let _ = tx.send((h, m));
                    }
                    Ok(m) => {
                        log::warn!(
                            "{} answered the manifest request for {:?} with a manifest that \
                             does not match what it announced (size {}, sha256 {}, root {})",
                            holder.label(),
                            target.name,
                            m.size,
                            m.sha256.short(16),
                            m.root().short(16),
                        );
                        failed(h, "its manifest does not match what it announced".into());
                    }
                    Err(_) if handles[slot].is_cancelled() => {}
                    Err(e) => {
                        // For client.log; the user reads it in the failure summary, if the
                        // download fails.
                        log::info!(
                            "cannot get the manifest of {:?} from {}: {e}",
                            target.name,
                            holder.label()
                        );
                        failed(h, format!("no manifest: {e}"));
                    }
                }
            });
        }
        drop(tx);
        let outcome = loop {
            match rx.recv_timeout(CANCEL_POLL) {
                Ok((h, manifest)) => {
                    break Ok(Obtained {
                        manifest,
                        from: Some(h),
                        from_addr: Some(target.holders[h].addr),
                        trusted: false,
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) if cancel.is_triggered() => {
                    break Err(NoManifest::Cancelled)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let list = failures.lock().map(|l| l.clone()).unwrap_or_default();
                    break Err(NoManifest::Unavailable(list));
                }
            }
        };
        found.store(true, Ordering::SeqCst);
        cut_off();
        outcome
    })
}

/// Whether the manifest `holder` sent is the content announced, and the one it vouches for.
fn acceptable(
    m: &Manifest,
    target: &Target,
    holder: &Holder,
    digest: Digest,
    rejected: &HashSet<Digest>,
    max_size: u64,
) -> bool {
    let root = m.root();
    m.name == target.name
        && m.sha256 == digest
        && target.size.is_none_or(|s| s == m.size)
        && m.size <= max_size
        && vouched_by(holder, root)
        && !rejected.contains(&root)
}
