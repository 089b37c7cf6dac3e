//! Cooperative shutdown: a flag set by Ctrl-C (or by a test) that every loop checks.
//!
//! Blocking calls are given short timeouts so loops wake up to look at the flag; nothing waits
//! forever on a socket.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clonable shutdown flag.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

/// How often [`Shutdown::sleep`] wakes up to look at the flag.
const POLL: Duration = Duration::from_millis(50);

impl Shutdown {
    /// A flag not yet set.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder of a clone to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
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

/// Installs the process's Ctrl-C handler (also SIGTERM and SIGHUP, so `docker stop` and a
/// closed terminal stop cleanly): the first signal triggers `shutdown`, a second one exits at
/// once with status 130. Only `main` calls this: a process can have one handler.
///
/// # Errors
/// When a handler is already installed.
pub fn install_ctrlc_handler(shutdown: &Shutdown) -> Result<(), ctrlc::Error> {
    let shutdown = shutdown.clone();
    let presses = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) > 0 {
            std::process::exit(130);
        }
        shutdown.trigger();
    })
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
}
