//! Writing `tags.txt`, on a thread of its own and at a bounded rate.
//!
//! The main loop hands the writer a snapshot of the index (`TagsWriter::submit`) when the
//! index changed and the writer is ready (`TagsWriter::ready`); changes made meanwhile are
//! coalesced into the next snapshot. Two rules bound the cost, however busy the network:
//!
//! - after a write, the next one waits at least [`MIN_WRITE_GAP`], longer for a big file (at
//!   most [`WRITE_BYTES_PER_SEC`] on average), but never more than [`MAX_WRITE_GAP`], so a new
//!   peer still appears within a second;
//! - a write happens off the main loop, so neither a slow disk nor a reader that holds the
//!   `tags.txt` lock for a long time stops datagrams from being handled, or the listener from
//!   stopping: at shutdown, the last write is given [`FINAL_WRITE_WAIT`], then abandoned.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shared::shutdown::Shutdown;
use shared::tags::{TagsError, TagsIndex};

/// Shortest time between the end of a write of `tags.txt` and the start of the next.
pub const MIN_WRITE_GAP: Duration = Duration::from_millis(250);

/// Longest time between two writes the size of the file can impose.
pub const MAX_WRITE_GAP: Duration = Duration::from_millis(750);

/// The average rate `tags.txt` is written at, at most, in bytes per second, within the gaps
/// above: a 1 MB file is written at most every 500 ms.
pub const WRITE_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;

/// How long to wait before retrying a write that failed.
pub const WRITE_RETRY: Duration = Duration::from_secs(1);

/// How long a starting listener waits for its first write (which tells whether `tags.txt` can
/// be written at all) before it starts listening anyway, the write still pending (a reader may
/// hold the lock).
pub const FIRST_WRITE_WAIT: Duration = Duration::from_secs(5);

/// How long a stopping listener waits for its last write (for instance while a reader holds
/// the lock of `tags.txt`) before it leaves without it.
pub const FINAL_WRITE_WAIT: Duration = Duration::from_millis(1500);

/// The pause after writing a file of `bytes` bytes.
pub fn write_gap(bytes: u64) -> Duration {
    #[allow(clippy::cast_precision_loss)] // file sizes far below 2^52
    let by_rate = Duration::from_secs_f64(bytes as f64 / WRITE_BYTES_PER_SEC as f64);
    by_rate.clamp(MIN_WRITE_GAP, MAX_WRITE_GAP)
}

/// The writer thread and what the main loop knows of it.
pub(crate) struct TagsWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The snapshot to write next.
    pending: Option<TagsIndex>,
    /// A snapshot was submitted and is not written yet.
    busy: bool,
    /// When the next write may start.
    next: Option<Instant>,
    /// The result of the last write (entries written), not yet taken by the main loop.
    outcome: Option<Result<usize, TagsError>>,
    /// The main loop is stopping: write what is pending, then end.
    stop: bool,
    /// The thread has ended.
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TagsWriter {
    /// Starts the writer thread for `path`.
    pub(crate) fn start(path: PathBuf) -> std::io::Result<TagsWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tags-writer".into())
                .spawn(move || write_loop(&shared, &path))?
        };
        Ok(TagsWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether a snapshot may be submitted at `now`: the last one is written and the pause
    /// after it is over.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        let state = self.shared.lock();
        !state.busy && state.next.is_none_or(|t| now >= t)
    }

    /// How long until [`TagsWriter::ready`], if that depends only on time.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        let state = self.shared.lock();
        (!state.busy).then(|| {
            state
                .next
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
        })
    }

    /// Hands a snapshot to write, replacing one not written yet.
    pub(crate) fn submit(&self, tags: TagsIndex) {
        let mut state = self.shared.lock();
        state.pending = Some(tags);
        state.busy = true;
        self.shared.changed.notify_all();
    }

    /// The result of the last write, if not taken yet: the number of entries written.
    pub(crate) fn take_outcome(&self) -> Option<Result<usize, TagsError>> {
        self.shared.lock().outcome.take()
    }

    /// Waits for the result of the write submitted last, at most `patience`, or until
    /// `shutdown` is triggered.
    pub(crate) fn wait_outcome(
        &self,
        shutdown: &Shutdown,
        patience: Duration,
    ) -> Option<Result<usize, TagsError>> {
        let deadline = Instant::now() + patience;
        let mut state = self.shared.lock();
        loop {
            if !state.busy {
                if let Some(outcome) = state.outcome.take() {
                    return Some(outcome);
                }
            }
            if shutdown.is_triggered() || state.done || Instant::now() >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops the thread once what is pending is written, waiting at most `patience`; returns
    /// whether it ended in time. If not (a write is stuck, say on a lock a reader holds), the
    /// thread is left behind: it ends with the process.
    pub(crate) fn finish(mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut state = self.shared.lock();
        state.stop = true;
        self.shared.changed.notify_all();
        while !state.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        true
    }
}

impl Drop for TagsWriter {
    fn drop(&mut self) {
        // Not finished (the main loop panicked): let the thread end on its own.
        let mut state = self.shared.lock();
        state.stop = true;
        self.shared.changed.notify_all();
    }
}

/// The writer thread: writes each snapshot handed over, until told to stop with nothing left.
fn write_loop(shared: &Shared, path: &std::path::Path) {
    loop {
        let tags = {
            let mut state = shared.lock();
            loop {
                if let Some(tags) = state.pending.take() {
                    break tags;
                }
                if state.stop {
                    state.done = true;
                    shared.changed.notify_all();
                    return;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let result = tags.save(path);
        let gap = match &result {
            Ok(()) => write_gap(std::fs::metadata(path).map_or(0, |m| m.len())),
            Err(_) => WRITE_RETRY,
        };
        let mut state = shared.lock();
        state.next = Some(Instant::now() + gap);
        state.outcome = Some(result.map(|()| tags.entries.len()));
        state.busy = state.pending.is_some();
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_grows_with_the_file_within_its_bounds() {
        assert_eq!(write_gap(0), MIN_WRITE_GAP);
        assert_eq!(write_gap(10_000), MIN_WRITE_GAP);
        assert_eq!(
            write_gap(WRITE_BYTES_PER_SEC / 2),
            Duration::from_millis(500)
        );
        assert_eq!(write_gap(100 * WRITE_BYTES_PER_SEC), MAX_WRITE_GAP);
        assert!(
            MAX_WRITE_GAP < Duration::from_secs(1),
            "a new peer shows within 1 s"
        );
    }

    #[test]
    fn snapshots_are_written_and_their_outcome_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.txt");
        let writer = TagsWriter::start(path.clone()).unwrap();
        assert!(writer.ready(Instant::now()));
        writer.submit(TagsIndex::default());
        let outcome = writer.wait_outcome(&Shutdown::new(), Duration::from_secs(10));
        assert!(matches!(outcome, Some(Ok(0))));
        assert!(path.exists());
        assert!(!writer.ready(Instant::now()), "the pause after a write");
        assert!(writer.wait(Instant::now()).unwrap() <= MIN_WRITE_GAP);
        assert!(writer.finish(Duration::from_secs(5)));
    }

    #[test]
    fn a_failed_write_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let writer = TagsWriter::start(dir.path().join("missing/tags.txt")).unwrap();
        writer.submit(TagsIndex::default());
        assert!(matches!(
            writer.wait_outcome(&Shutdown::new(), Duration::from_secs(10)),
            Some(Err(_))
        ));
        assert!(writer.finish(Duration::from_secs(5)));
    }
}
