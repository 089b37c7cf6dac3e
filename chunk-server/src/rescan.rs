//! When to scan the shares: the chunk server's background thread.
//!
//! The server accepts connections from its first moment; the first scan runs here, in the
//! background, and every file it hashes is served and announced as soon as its manifest is in
//! the store, so a peer sharing 10,000 files is reachable at once and its files appear one by
//! one (those hashed by an earlier run, whose manifest still matches the file's path, size and
//! modification time, at once, without hashing them again). Then a scan runs:
//!
//! - soon after a change in the shares ([`crate::watch`] tells; the scan waits [`SETTLE`], so a
//!   burst of changes, a folder being copied in, costs few scans);
//! - at once when `DIR/shares.txt` or `DIR/sends.txt` changed (a `stat` of each every
//!   [`SHARES_POLL`]); a scan under way yields to such a change between two files;
//! - every [`Config::rescan`](crate::Config::rescan) anyway, to catch what no notification
//!   tells (a network file system changed from another machine); every [`FALLBACK_SCAN`] at
//!   most while a share cannot be watched, and every `rescan` exactly without watching
//!   (`--no-watch`).
//!
//! [`ScanProgress`] counts the completed scans, for whoever must know that the files shared at
//! start are all servable (tests; the log says it too: [`FIRST_SCAN_DONE`]).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::fsutil::{file_stamp, FileStamp};
use shared::peer_dir::PeerDir;
use shared::shares::SHARES_POLL;
use shared::shutdown::Shutdown;
use shared::store::ChunkStore;

use crate::listed::Listed;
use crate::offered::Offered;
use crate::share::Sharer;
use crate::split;
use crate::watch::ShareWatch;

/// How long a scan waits after a change in the shares, so that a burst of changes costs one
/// scan, not one per file.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Longest time between two scans while some share cannot be watched: the scan interval
/// before the shares were watched.
pub const FALLBACK_SCAN: Duration = Duration::from_secs(2);

/// The start of the line the chunk server logs when its first scan is complete: every file
/// shared at start is then served (or was found unreadable).
pub const FIRST_SCAN_DONE: &str = "first scan of the shares done";

/// How many scans of the shares the chunk server completed; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct ScanProgress(Arc<(Mutex<u64>, Condvar)>);

impl ScanProgress {
    /// How many scans went to their end (a scan that yielded to news does not count).
    pub fn scans_done(&self) -> u64 {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until more than `done` scans are complete, for at most `timeout`; returns whether
    /// they are.
    pub fn wait_beyond(&self, done: u64, timeout: Duration) -> bool {
        let (count, changed) = &*self.0;
        let count = count.lock().unwrap_or_else(PoisonError::into_inner);
        let (count, _) = changed
            .wait_timeout_while(count, timeout, |n| *n <= done)
            .unwrap_or_else(PoisonError::into_inner);
        *count > done
    }

    fn add_one(&self) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        changed.notify_all();
    }
}

/// What the rescan thread works with.
pub(crate) struct Rescan {
    pub(crate) store: ChunkStore,
    pub(crate) sharer: Sharer,
    pub(crate) listed: Listed,
    pub(crate) offered: Offered,
    /// `None` without watching (`--no-watch`).
    pub(crate) watch: Option<ShareWatch>,
    /// Longest time between two scans ([`Config::rescan`](crate::Config::rescan)).
    pub(crate) interval: Duration,
    pub(crate) progress: ScanProgress,
    /// `DIR/shares.txt` and `DIR/sends.txt`, whose changes a scan yields to.
    pub(crate) lists: [PathBuf; 2],
}

impl Rescan {
    /// The lists a scan yields to, of the peer folder `dir`.
    pub(crate) fn lists_of(dir: &PeerDir) -> [PathBuf; 2] {
        [shared::shares::path_in(dir), shared::sends::path_in(dir)]
    }

    /// Runs until `shutdown`: the first scan at once, then as the [module
    /// documentation](self) says.
    pub(crate) fn run(mut self, shutdown: &Shutdown) {
        let started = Instant::now();
        split::remove_leftovers(&self.store);
        let mut next_scan = Instant::now();
        let mut first = true;
        while !shutdown.is_triggered() {
            // Both lists are polled each time (`|`, not `||`).
            if self.listed.poll(&mut self.sharer) | self.offered.poll(&mut self.sharer) {
                next_scan = Instant::now();
            }
            if Instant::now() >= next_scan {
                let cut_short = self.scan(shutdown, first, started);
                if shutdown.is_triggered() {
                    break;
                }
                first &= cut_short;
                next_scan = if cut_short {
                    Instant::now()
                } else {
                    Instant::now() + self.period()
                };
            }
            let wait = SHARES_POLL.min(next_scan.saturating_duration_since(Instant::now()));
            match self.watch.as_mut() {
                Some(watch) => {
                    if watch.wait(wait) {
                        next_scan = next_scan.min(Instant::now() + SETTLE);
                    }
                }
                None => {
                    shutdown.sleep(wait);
                }
            }
        }
    }

    /// Time until the next scan when nothing is told.
    fn period(&self) -> Duration {
        match &self.watch {
            Some(watch) if !watch.is_complete() => self.interval.min(FALLBACK_SCAN),
            _ => self.interval,
        }
    }

    /// One scan, the watches set first so that a change made during it is told; returns
    /// whether it was cut short.
    fn scan(&mut self, shutdown: &Shutdown, first: bool, started: Instant) -> bool {
        if let Some(watch) = self.watch.as_mut() {
            watch.set_shares(&self.sharer.watched_paths());
        }
        let stamps = |lists: &[PathBuf; 2]| lists.clone().map(|p| file_stamp(&p).ok().flatten());
        let before: [FileStamp; 2] = stamps(&self.lists);
        let mut next_look = Instant::now() + SHARES_POLL;
        let lists = self.lists.clone();
        let mut lists_changed = || {
            if Instant::now() < next_look {
                return false;
            }
            next_look = Instant::now() + SHARES_POLL;
            stamps(&lists) != before
        };
        let report = self.sharer.scan_yielding(shutdown, &mut lists_changed);
        if report.cut_short {
            return true;
        }
        if first {
            log::info!(
                "{FIRST_SCAN_DONE} in {:.1} s: {} files shared, {} hashed ({} served as hashed \
                 before), {} not readable{}",
                started.elapsed().as_secs_f64(),
                report.split.len() + report.unchanged.len(),
                report.split.len(),
                report.unchanged.len(),
                report.failed.len(),
                match &self.watch {
                    None => format!("; scanning every {} s", self.interval.as_secs()),
                    Some(w) if w.is_complete() => "; watching them for changes".to_owned(),
                    Some(_) => format!(
                        "; scanning every {} s",
                        self.interval.min(FALLBACK_SCAN).as_secs()
                    ),
                }
            );
        }
        self.progress.add_one();
        false
    }
}
