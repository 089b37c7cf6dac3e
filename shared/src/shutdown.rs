//! Cooperative shutdown: a flag set by Ctrl-C (or by a test) that every loop checks.
//!
//! Blocking calls are given short timeouts so loops wake up to look at the flag; nothing waits
//! forever on a socket.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clonable shutdown flag, which also remembers the signal that set it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Flag>);

#[derive(Debug, Default)]
struct Flag {
    triggered: AtomicBool,
    /// The signal number that triggered the shutdown; 0 when it came from elsewhere.
    signal: AtomicI32,
}

/// How often [`Shutdown::sleep`] wakes up to look at the flag.
const POLL: Duration = Duration::from_millis(50);

impl Shutdown {
    /// A flag not yet set.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder of a clone to stop.
    pub fn trigger(&self) {
        self.0.triggered.store(true, Ordering::SeqCst);
    }

    /// [`Shutdown::trigger`], recording that signal `signal` asked for it.
    pub fn trigger_by_signal(&self, signal: i32) {
        let _ = self
            .0
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.trigger();
    }

    /// Whether stopping was asked.
    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::SeqCst)
    }

    /// The signal that asked to stop, if a signal did.
    pub fn signal(&self) -> Option<i32> {
        Some(self.0.signal.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }

    /// The conventional exit status of a program stopped by that signal: 128 + its number
    /// (130 for SIGINT, 143 for SIGTERM), or `None` when no signal asked.
    pub fn exit_status(&self) -> Option<u8> {
        self.signal().and_then(|s| u8::try_from(128 + s).ok())
    }

    /// Sleeps for `duration` or until triggered; returns `true` when triggered.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.is_triggered() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }
}

/// Installs the process's handler of SIGINT (Ctrl-C), SIGTERM (`docker stop`, `kill`) and SIGHUP
/// (a closed terminal): the first signal triggers `shutdown`, recording which signal it was, so
/// the program can exit with the matching status; a second one exits at once with 128 + its
/// number. Only `main` calls this.
///
/// The signals are received on a thread of their own (`signal-hook`'s iterator), never in a
/// signal handler, so the rest of the program sees no interrupted system calls.
///
/// # Errors
/// When the handler cannot be registered or its thread started.
pub fn install_ctrlc_handler(shutdown: &Shutdown) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if shutdown.is_triggered() {
                    std::process::exit(128 + signal);
                }
                shutdown.trigger_by_signal(signal);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_returns_early_when_triggered() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.sleep(Duration::from_millis(10)));
        let other = shutdown.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.trigger();
        });
        let start = Instant::now();
        assert!(shutdown.sleep(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }

    #[test]
    fn the_first_signal_is_remembered_with_its_exit_status() {
        let shutdown = Shutdown::new();
        assert_eq!((shutdown.signal(), shutdown.exit_status()), (None, None));
        shutdown.trigger_by_signal(SIGTERM);
        shutdown.trigger_by_signal(SIGINT);
        assert!(shutdown.is_triggered());
        assert_eq!(shutdown.signal(), Some(SIGTERM));
        assert_eq!(shutdown.exit_status(), Some(143));
    }
}
