//! Deadlines: every wait in a test is a bounded poll, never a bare `sleep`, so that no test can
//! hang and none waits longer than the condition takes.
//!
//! Two shapes, for the two kinds of caller: [`wait_until`] panics with what it last saw (the
//! process-level tests, whose conditions describe themselves), [`poll_until`] returns whether the
//! condition held (the per-program tests, whose callers assert with their own message).

use std::time::{Duration, Instant};

/// How often [`wait_until`] and [`holds_for`] poll their condition.
pub const POLL: Duration = Duration::from_millis(50);

/// How often [`poll_until`] polls: the in-process tests wait for things that take milliseconds.
pub const FAST_POLL: Duration = Duration::from_millis(20);

/// How long any single wait of a per-program test may take before it counts as a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Default bound on waiting for something to appear in a whole-system test (an index entry, a
/// log line).
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` every [`POLL`] until it returns `Ok` or `deadline` passes.
///
/// # Panics
/// On timeout, with `what` and the last `Err` description `cond` gave.
pub fn wait_until<T>(
    deadline: Instant,
    what: &str,
    mut cond: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match cond() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => panic!(
                "timed out after {:?} waiting until {what}\nlast seen: {seen}",
                start.elapsed()
            ),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Checks `cond` every [`POLL`] until `end`: it must hold all along.
///
/// # Panics
/// The first time it does not, with `what` and what `cond` saw.
pub fn holds_for(end: Instant, what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    loop {
        if let Err(seen) = cond() {
            panic!("expected {what} all along, but: {seen}");
        }
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` every [`FAST_POLL`] until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(FAST_POLL);
    }
}

/// Sleeps until `stop` is set, at most `max`, in small steps (a fake server holding a connection
/// open must still let its test end).
pub fn idle(stop: &std::sync::atomic::AtomicBool, max: Duration) {
    let until = Instant::now() + max;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(FAST_POLL);
    }
}
