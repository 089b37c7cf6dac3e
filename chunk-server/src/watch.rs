//! Watching the shares, so that a file added, changed or removed is hashed or dropped at once
//! without scanning every shared file every few seconds (with 10,000 of them, a scan costs a
//! few hundredths of a second of CPU: every two seconds, more than one percent of a core at
//! rest).
//!
//! A [`ShareWatch`] asks the operating system (inotify on Linux, through the `notify` crate)
//! to tell of changes in each shared folder's tree, and in the folder of each shared or
//! offered file; for a share that does not exist yet, in its nearest existing parent folder,
//! so its appearance is told too. [`ShareWatch::wait`] returns as soon as a change that a scan
//! would see happened: not one of the store (which may lie inside a share), not one under a
//! hidden folder (never shared), not a mere read (our own hashing and serving open the files).
//!
//! A notification only says when to scan; the scan decides what changed, so a notification too
//! many costs one scan and nothing else. What cannot be watched (the watcher cannot be created,
//! the system's limit of watched folders is reached: `fs.inotify.max_user_watches`) makes
//! [`ShareWatch::is_complete`] false, with a warning, and the caller then scans often, as before
//! there were notifications. A change no notification tells of (a network file system changed
//! from another machine) is caught by the next periodic scan.
//!
//! This module reads no file and scans nothing: `rescan` decides when to scan, `share` scans.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use shared::latch::Latches;

/// What one path is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A shared folder: its whole tree.
    Tree,
    /// The folder of a shared file, or the nearest existing parent of a missing share: its
    /// own entries only.
    Entries,
}

impl Mode {
    fn recursive(self) -> RecursiveMode {
        match self {
            Mode::Tree => RecursiveMode::Recursive,
            Mode::Entries => RecursiveMode::NonRecursive,
        }
    }
}

/// A path being watched, and the folder it was when the watch was set (a folder removed and
/// made again is another one, which must be watched anew).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watched {
    mode: Mode,
    ino: Option<u64>,
}

/// A share as the watch sees it: a folder, whose whole tree counts, or anything else (a file,
/// a missing path), which counts itself only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Root {
    path: PathBuf,
    folder: bool,
}

/// Tells when the shares changed; see the [module documentation](self).
pub(crate) struct ShareWatch {
    /// `None` when it could not be created: nothing is watched.
    watcher: Option<RecommendedWatcher>,
    events: Receiver<notify::Result<Event>>,
    /// What is watched now.
    watched: BTreeMap<PathBuf, Watched>,
    /// The shares of the last [`ShareWatch::set_shares`].
    roots: Vec<Root>,
    /// Changes under this folder (the chunk store) are never news.
    ignored: PathBuf,
    /// Whether every share is watched.
    complete: bool,
    warned: Latches<String>,
}

impl ShareWatch {
    /// A watch that ignores what happens under `store` (the chunk store's folder); nothing is
    /// watched until [`ShareWatch::set_shares`].
    pub(crate) fn new(store: &Path) -> ShareWatch {
        let (tx, events) = mpsc::channel();
        // Links to folders are never shared (`shared::tree`): never watched either.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut warned = Latches::default();
        let watcher = match RecommendedWatcher::new(tx, config) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                let message = format!(
                    "cannot watch the shares for changes ({e}): scanning them every few seconds"
                );
                if warned.trip(message.clone()) {
                    log::warn!("{message}");
                }
                None
            }
        };
        ShareWatch {
            complete: watcher.is_some(),
            watcher,
            events,
            watched: BTreeMap::new(),
            roots: Vec::new(),
            ignored: std::path::absolute(store).unwrap_or_else(|_| store.to_owned()),
            warned,
        }
    }

    /// Whether every share is watched: otherwise the caller must scan often.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Watches `shares` (absolute paths: folders, files, missing paths) and nothing else.
    /// Cheap when nothing changed: one `stat` per share. Call it before each scan, so a change
    /// made during the scan is told.
    pub(crate) fn set_shares(&mut self, shares: &[PathBuf]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let roots: Vec<Root> = shares
            .iter()
            .map(|path| Root {
                path: path.clone(),
                folder: path.is_dir(),
            })
            .collect();
        let wanted = wanted_watches(&roots);
        let mut complete = true;
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(path, watched)| wanted.get(*path) != Some(*watched))
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            self.watched.remove(&path);
            // Already gone when the folder was removed: nothing to undo.
            let _ = watcher.unwatch(&path);
        }
        for (path, watched) in wanted {
            if self.watched.contains_key(&path) {
                continue;
            }
            match watcher.watch(&path, watched.mode.recursive()) {
                Ok(()) => {
                    self.watched.insert(path, watched);
                }
                Err(e) => {
                    complete = false;
                    // A partly watched tree: what was set is undone, the path is retried at the
                    // next call.
                    let _ = watcher.unwatch(&path);
                    let message = format!(
                        "cannot watch {} for changes ({e}{}): scanning the shares every few \
                         seconds",
                        path.display(),
                        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                            ": the system's limit of watched folders, fs.inotify.max_user_watches"
                        } else {
                            ""
                        }
                    );
                    if self.warned.trip(message.clone()) {
                        log::warn!("{message}");
                    }
                }
            }
        }
        if complete {
            self.warned = Latches::default();
        }
        self.complete = complete;
        self.roots = roots;
    }

    /// Waits up to `timeout` for a change a scan would see; returns whether one came. Every
    /// notification queued is taken, so a burst of changes wakes the caller once.
    pub(crate) fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut news = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if news {
                self.events
                    .try_recv()
                    .map_err(|_| RecvTimeoutError::Timeout)
            } else {
                self.events.recv_timeout(left)
            };
            match next {
                Ok(Ok(event)) => news |= self.matters(&event),
                Ok(Err(e)) => {
                    // A folder created in a watched tree could not be watched (the limit).
                    if self.warned.trip(e.to_string()) {
                        log::warn!("watching the shares: {e}; scanning them every few seconds");
                    }
                    self.complete = false;
                    news = true;
                }
                Err(RecvTimeoutError::Timeout) => return news,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    return news;
                }
            }
        }
    }

    /// Whether `event` is a change a scan would see; a share removed or moved away is also
    /// forgotten, so the next [`ShareWatch::set_shares`] watches for its return.
    fn matters(&mut self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        match event.kind {
            // Our own hashing and serving open the files.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return false,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                for path in &event.paths {
                    if self.watched.remove(path).is_some() {
                        if let Some(watcher) = self.watcher.as_mut() {
                            // Moved away, the watch would follow it elsewhere.
                            let _ = watcher.unwatch(path);
                        }
                    }
                }
            }
            _ => {}
        }
        event.paths.iter().any(|path| self.concerns(path))
    }

    /// Whether a change at `path` may change what a scan finds.
    fn concerns(&self, path: &Path) -> bool {
        if path.starts_with(&self.ignored) {
            return false;
        }
        self.roots.iter().any(|root| {
            if root.folder {
                path.strip_prefix(&root.path)
                    .is_ok_and(|inside| !is_hidden(inside))
            } else {
                // The file itself, or a folder on the way to a missing share.
                root.path.starts_with(path)
            }
        })
    }
}

/// Whether a path under a share goes through a hidden entry (never shared).
fn is_hidden(inside: &Path) -> bool {
    inside.components().any(|c| match c {
        Component::Normal(name) => name.as_encoded_bytes().starts_with(b"."),
        _ => false,
    })
}

/// What to watch for `roots`: each folder's tree, once (not a tree inside another); the folder
/// of each file, or the nearest existing parent of a missing share, unless a watched tree
/// holds it already.
fn wanted_watches(roots: &[Root]) -> BTreeMap<PathBuf, Watched> {
    let ino = |path: &Path| -> Option<u64> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| m.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    };
    let trees: Vec<&Path> = roots
        .iter()
        .filter(|r| r.folder)
        .map(|r| r.path.as_path())
        .collect();
    let in_a_tree = |path: &Path, but: Option<&Path>| {
        trees
            .iter()
            .any(|tree| Some(*tree) != but && path.starts_with(tree))
    };
    let mut wanted = BTreeMap::new();
    for root in roots {
        if root.folder {
            if !in_a_tree(&root.path, Some(&root.path)) {
                let watched = Watched {
                    mode: Mode::Tree,
                    ino: ino(&root.path),
                };
                wanted.insert(root.path.clone(), watched);
            }
            continue;
        }
        let Some(parent) = root.path.ancestors().skip(1).find(|p| p.is_dir()) else {
            continue;
        };
        if in_a_tree(parent, None) {
            continue;
        }
        let watched = Watched {
            mode: Mode::Entries,
            ino: ino(parent),
        };
        wanted.entry(parent.to_owned()).or_insert(watched);
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Waits for news for up to `secs` seconds.
    fn news_within(watch: &mut ShareWatch, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if watch.wait(Duration::from_millis(100)) {
                return true;
            }
        }
        false
    }

    /// Whatever was pending (the set-up) is taken.
    fn drain(watch: &mut ShareWatch) {
        while watch.wait(Duration::from_millis(200)) {}
    }

    #[test]
    fn changes_in_a_shared_tree_are_told_but_reads_hidden_entries_and_the_store_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        let store = share.join("peer").join("temp");
        fs::create_dir_all(share.join("deep").join("er")).unwrap();
        fs::create_dir_all(share.join(".git")).unwrap();
        fs::create_dir_all(&store).unwrap();
        fs::write(share.join("deep").join("er").join("a.txt"), b"a").unwrap();
        let mut watch = ShareWatch::new(&store);
        watch.set_shares(std::slice::from_ref(&share));
        assert!(watch.is_complete());
        drain(&mut watch);

        // Read, as hashing and serving do: no news.
        let _ = fs::read(share.join("deep").join("er").join("a.txt")).unwrap();
        // The store and hidden folders change all the time: no news.
        fs::write(store.join("x.json"), b"{}").unwrap();
        fs::write(share.join(".git").join("index"), b"x").unwrap();
        assert!(!news_within(&mut watch, 1));

        // A file changed deep in the tree, added, removed; a folder made, and a file in it.
        fs::write(share.join("deep").join("er").join("a.txt"), b"changed").unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);
        fs::write(share.join("new.txt"), b"new").unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);
        fs::remove_file(share.join("new.txt")).unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);
        fs::create_dir(share.join("later")).unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);
        fs::write(share.join("later").join("b.txt"), b"b").unwrap();
        assert!(
            news_within(&mut watch, 10),
            "a folder made later is watched too"
        );
    }

    #[test]
    fn a_shared_file_is_watched_alone_and_a_missing_share_is_told_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("report.pdf");
        fs::write(&file, b"v1").unwrap();
        let missing = dir.path().join("photos");
        let mut watch = ShareWatch::new(&dir.path().join("temp"));
        watch.set_shares(&[file.clone(), missing.clone()]);
        assert!(watch.is_complete());
        drain(&mut watch);

        // A neighbour of the shared file: no news.
        fs::write(dir.path().join("other.txt"), b"x").unwrap();
        assert!(!news_within(&mut watch, 1));
        fs::write(&file, b"v2").unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);

        // The missing share appears: news; then it is watched as a tree.
        fs::create_dir(&missing).unwrap();
        assert!(news_within(&mut watch, 10));
        watch.set_shares(&[file, missing.clone()]);
        drain(&mut watch);
        fs::write(missing.join("a.jpg"), b"jpg").unwrap();
        assert!(news_within(&mut watch, 10));
        drain(&mut watch);

        // Removed and made again: watched anew.
        fs::remove_dir_all(&missing).unwrap();
        assert!(news_within(&mut watch, 10));
        watch.set_shares(std::slice::from_ref(&missing));
        drain(&mut watch);
        fs::create_dir(&missing).unwrap();
        assert!(news_within(&mut watch, 10));
        watch.set_shares(std::slice::from_ref(&missing));
        drain(&mut watch);
        fs::write(missing.join("b.jpg"), b"jpg").unwrap();
        assert!(news_within(&mut watch, 10));
    }

    #[test]
    fn trees_inside_trees_and_files_inside_trees_are_watched_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s");
        fs::create_dir_all(s.join("sub")).unwrap();
        fs::write(s.join("sub").join("f.txt"), b"f").unwrap();
        let root = |path: PathBuf| Root {
            folder: path.is_dir(),
            path,
        };
        let roots = [
            root(s.clone()),
            root(s.join("sub")),
            root(s.join("sub").join("f.txt")),
        ];
        let wanted = wanted_watches(&roots);
        assert_eq!(wanted.keys().collect::<Vec<_>>(), [&s]);
        assert!(is_hidden(Path::new("a/.git/x")));
        assert!(!is_hidden(Path::new("a/b.txt")));
    }
}
