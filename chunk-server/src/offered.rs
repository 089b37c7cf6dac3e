//! `DIR/sends.txt` as the chunk server sees it: the files offered to one user each
//! (`downloader send`), served unlisted, under the content name recorded with each, while
//! their offer lasts. Polled with the shares list;
//! the [`Sharer`] is handed the files of the live offers whenever that set changes, because the
//! file changed or an offer expired. The format is [`shared::sends`]'s.

use std::collections::BTreeSet;
use std::path::PathBuf;

use shared::latch::Latch;
use shared::peer_dir::PeerDir;
use shared::sends::{unix_now, SendsWatch};

use crate::share::Sharer;

/// The watched outbox, and the files last handed to the sharer.
#[derive(Debug)]
pub(crate) struct Offered {
    watch: SendsWatch,
    /// The live offers last handed over (content name, file); `None` before the first poll.
    live: Option<Vec<(String, PathBuf)>>,
    unreadable: Latch,
}

impl Offered {
    /// Watches the outbox of `dir`.
    pub(crate) fn new(dir: &PeerDir) -> Offered {
        Offered {
            watch: SendsWatch::new(dir),
            live: None,
            unreadable: Latch::default(),
        }
    }

    /// Gives `sharer` the files of the offers live now if they changed since the last poll
    /// (and at the first); returns whether it did, that is whether to scan now. An outbox that
    /// cannot be read keeps what was last read, with a warning once.
    pub(crate) fn poll(&mut self, sharer: &mut Sharer) -> bool {
        match self.watch.poll() {
            Ok(_) => {
                self.unreadable.reset();
            }
            Err(e) => {
                if self.unreadable.trip_because(&e) {
                    log::warn!(
                        "cannot read {}: {e}; offering what it last listed",
                        self.watch.path().display()
                    );
                }
            }
        }
        let now = unix_now();
        // A set: a folder sent whole is a thousand offers, polled five times a second.
        let live: Vec<(String, PathBuf)> = self
            .watch
            .all()
            .iter()
            .filter(|s| s.is_live(now))
            .map(|s| (s.name.clone(), s.path.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.live.as_ref() == Some(&live) {
            return false;
        }
        if !live.is_empty() || self.live.as_ref().is_some_and(|l| !l.is_empty()) {
            log::info!(
                "{}: offering {} file(s) to one user each, unlisted",
                self.watch.path().display(),
                live.len()
            );
        }
        sharer.set_offered(live.clone());
        self.live = Some(live);
        true
    }
}
