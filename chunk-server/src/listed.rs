//! `DIR/shares.txt` as the chunk server sees it: polled every [`shared::shares::SHARES_POLL`], and handed to
//! the [`Sharer`] when it changed, so a `downloader share` or `unshare` takes effect while the
//! server runs. The format and its combination with `--share` are [`shared::shares`]'s.

use std::collections::HashSet;

use shared::latch::Latches;
use shared::peer_dir::PeerDir;
use shared::shares::SharesWatch;

use crate::share::Sharer;

/// The watched list, and what about it was already warned of.
#[derive(Debug)]
pub(crate) struct Listed {
    watch: SharesWatch,
    warned: Latches<String>,
    /// Whether the list was read once: a missing or empty list at start is not worth a line.
    read: bool,
}

impl Listed {
    /// Watches the shares list of `dir`.
    pub(crate) fn new(dir: &PeerDir) -> Listed {
        Listed {
            watch: SharesWatch::new(dir),
            warned: Latches::default(),
            read: false,
        }
    }

    /// Gives `sharer` the list's paths and exclusions if it changed since the last poll (and
    /// at the first); returns whether it did, that is whether to scan now. A list that cannot
    /// be read keeps what was last read, with a warning once.
    pub(crate) fn poll(&mut self, sharer: &mut Sharer) -> bool {
        let path = self.watch.path().display().to_string();
        let list = match self.watch.poll() {
            Ok(None) => return false,
            Ok(Some(list)) => {
                // An edit: its bad lines are worth a word again.
                self.warned = Latches::default();
                list
            }
            Err(e) => {
                self.warn_once(format!(
                    "cannot read {path}: {e}; sharing what it last listed"
                ));
                return false;
            }
        };
        for (number, line, why) in list.problems() {
            self.warn_once(format!("{path}: ignoring line {number} {line:?}: {why}"));
        }
        let paths = list.paths();
        let excluded = list.exclusions();
        let first = !std::mem::replace(&mut self.read, true);
        if first && paths.is_empty() && excluded.is_empty() {
            sharer.set_list(paths, HashSet::new());
            return true;
        }
        log::info!(
            "{path}: {} path(s){}{}",
            paths.len(),
            if paths.is_empty() {
                String::new()
            } else {
                let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!(" ({})", shown.join(", "))
            },
            if excluded.is_empty() {
                String::new()
            } else {
                format!(", not sharing {}", excluded.join(", "))
            }
        );
        sharer.set_list(paths, excluded.into_iter().collect::<HashSet<String>>());
        true
    }

    fn warn_once(&mut self, message: String) {
        if self.warned.trip(message.clone()) {
            log::warn!("{message}");
        }
    }
}
