//! What sharing a folder shares: the rule the chunk server shares by and `downloader shared`
//! shows by, kept here once.
//!
//! A shared folder shares its whole tree, each regular file as one content named by its path
//! relative to the folder, `/`-separated (`2024/a.jpg`), after a prefix the caller gives (the
//! folder's own name, `photos/2024/a.jpg`, for a folder of `shares.txt`; none for `--share` and
//! `served_files/`, whose files keep their bare names). Deliberately:
//!
//! - **Symbolic links to folders are never followed**: no loop, no tree from elsewhere.
//! - **A symbolic link to a file** is shared (as the file it points to) only when its target,
//!   links resolved, lies inside the shared folder, also resolved; one pointing outside is
//!   skipped ([`Skip::OutsideLink`]), so a link cannot publish `/etc/passwd` or `~/.ssh`.
//! - **Hidden entries** (names starting with `.`: `.git/`, `.DS_Store`) are skipped at every
//!   depth, as hidden files at the top level always were.
//! - **Empty folders** are no content (there is nothing to verify) and are not recreated by a
//!   download; a folder is only seen through the files under it.
//! - Deeper than [`MAX_SHARE_DEPTH`] folders, or a path that cannot be a content name (too
//!   long, a character a terminal would obey, not UTF-8), is skipped with a reason.
//!
//! This module only lists; it reads no file's contents and never writes.

use std::fmt;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use crate::chunk::{is_legacy_ambiguous, validate_content_name};

/// How many folders deep a shared tree is followed (the files of the shared folder itself are
/// at depth 0): far beyond any photo or music library, short of a runaway tree.
pub const MAX_SHARE_DEPTH: usize = 32;

/// One file of a shared tree.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Its content name: the prefix, then its path under the folder, `/`-separated.
    pub name: String,
    /// Its path (the link's own path, for a symbolic link to a file inside the folder).
    pub path: PathBuf,
    /// Its metadata, links followed, when listed.
    pub meta: Metadata,
}

/// An entry of a shared tree that is not shared, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A hidden file or folder (its name starts with `.`).
    Hidden(PathBuf),
    /// A symbolic link to a folder: never followed.
    LinkedFolder(PathBuf),
    /// A symbolic link whose target lies outside the shared folder.
    OutsideLink {
        /// The link.
        path: PathBuf,
        /// Where it points, resolved.
        target: PathBuf,
    },
    /// A folder deeper than [`MAX_SHARE_DEPTH`].
    TooDeep(PathBuf),
    /// A file whose path cannot be a content name.
    BadName {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Neither a regular file nor a folder (a FIFO, a socket, a dangling link).
    NotRegular(PathBuf),
}

impl Skip {
    /// Whether the user should hear of it (a warning), rather than only a debug line: hidden
    /// and special files are skipped as a matter of course.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Skip::Hidden(_) | Skip::NotRegular(_))
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Hidden(p) => write!(f, "skipping hidden {}", p.display()),
            Skip::LinkedFolder(p) => write!(
                f,
                "not sharing {}: a symbolic link to a folder (never followed)",
                p.display()
            ),
            Skip::OutsideLink { path, target } => write!(
                f,
                "not sharing {}: a symbolic link to {}, outside the shared folder",
                path.display(),
                target.display()
            ),
            Skip::TooDeep(p) => write!(
                f,
                "not sharing {}: more than {MAX_SHARE_DEPTH} folders deep",
                p.display()
            ),
            Skip::BadName { path, why } => write!(f, "not sharing {}: {why}", path.display()),
            Skip::NotRegular(p) => write!(f, "skipping {}: not a regular file", p.display()),
        }
    }
}

/// What [`list_tree`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The files shared, sorted by path.
    pub files: Vec<TreeFile>,
    /// What was not, and why.
    pub skipped: Vec<Skip>,
}

/// The content name of the file at `relative` (components under the shared folder) after
/// `prefix`, or why it cannot be one.
fn content_name(prefix: Option<&str>, relative: &[String]) -> Result<String, String> {
    let mut name = prefix.map(|p| format!("{p}/")).unwrap_or_default();
    name.push_str(&relative.join("/"));
    validate_content_name(&name).map_err(|e| format!("its name cannot be a content name: {e}"))?;
    if is_legacy_ambiguous(&name) {
        return Err(
            "a nested name holding \"%2F\" would read as another name to legacy peers".into(),
        );
    }
    Ok(name)
}

/// Lists the files `folder`'s tree shares ([module documentation](self)), each named after
/// `prefix` (`None`: the bare relative path).
///
/// # Errors
/// When `folder` or one of its subfolders cannot be listed: the listing would be incomplete,
/// and a caller must not take a missing file for a removed one.
pub fn list_tree(folder: &Path, prefix: Option<&str>) -> io::Result<Listing> {
    let root = fs::canonicalize(folder)?;
    let mut listing = Listing::default();
    // (folder, its components under the shared folder); depth = components.len().
    let mut pending: Vec<(PathBuf, Vec<String>)> = vec![(folder.to_owned(), Vec::new())];
    while let Some((dir, relative)) = pending.pop() {
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        let mut subfolders = Vec::new();
        for path in paths {
            let Some(file_name) = path.file_name() else {
                continue;
            };
            if file_name.as_encoded_bytes().starts_with(b".") {
                listing.skipped.push(Skip::Hidden(path));
                continue;
            }
            let Some(file_name) = file_name.to_str().map(str::to_owned) else {
                let why = "its name is not valid UTF-8".to_owned();
                listing.skipped.push(Skip::BadName { path, why });
                continue;
            };
            let own = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Removed since listed: it is simply gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let meta = if own.file_type().is_symlink() {
                match fs::metadata(&path) {
                    Ok(meta) if meta.is_dir() => {
                        listing.skipped.push(Skip::LinkedFolder(path));
                        continue;
                    }
                    Ok(meta) => {
                        let target = fs::canonicalize(&path).unwrap_or_default();
                        if !target.starts_with(&root) {
                            listing.skipped.push(Skip::OutsideLink { path, target });
                            continue;
                        }
                        meta
                    }
                    // A dangling link shares nothing.
                    Err(_) => {
                        listing.skipped.push(Skip::NotRegular(path));
                        continue;
                    }
                }
            } else {
                own
            };
            let mut components = relative.clone();
            components.push(file_name);
            if meta.is_dir() {
                if components.len() > MAX_SHARE_DEPTH {
                    listing.skipped.push(Skip::TooDeep(path));
                } else {
                    subfolders.push((path, components));
                }
            } else if meta.is_file() {
                match content_name(prefix, &components) {
                    Ok(name) => listing.files.push(TreeFile { name, path, meta }),
                    Err(why) => listing.skipped.push(Skip::BadName { path, why }),
                }
            } else {
                listing.skipped.push(Skip::NotRegular(path));
            }
        }
        // Popped last first: push in reverse so the tree is walked in path order.
        pending.extend(subfolders.into_iter().rev());
    }
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listing: &Listing) -> Vec<&str> {
        listing.files.iter().map(|f| f.name.as_str()).collect()
    }

    #[cfg(unix)]
    #[test]
    fn a_tree_is_shared_whole_with_links_hidden_and_empty_folders_handled() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        let deep = photos.join("2024").join("summer");
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(photos.join("empty")).unwrap();
        fs::create_dir_all(photos.join(".git")).unwrap();
        fs::write(photos.join(".git").join("config"), b"x").unwrap();
        fs::write(photos.join("top.txt"), b"top").unwrap();
        fs::write(photos.join("2024").join("a b.jpg"), b"ab").unwrap();
        fs::write(deep.join("c.jpg"), b"c").unwrap();
        fs::write(deep.join(".hidden"), b"h").unwrap();
        let secret = dir.path().join("secret.txt");
        fs::write(&secret, b"secret").unwrap();
        symlink(&secret, photos.join("outside.txt")).unwrap();
        symlink(
            photos.join("top.txt"),
            photos.join("2024").join("inside.txt"),
        )
        .unwrap();
        symlink(&photos, photos.join("loop")).unwrap();
        symlink(dir.path().join("nowhere"), photos.join("dangling")).unwrap();

        let listing = list_tree(&photos, Some("photos")).unwrap();
        assert_eq!(
            names(&listing),
            [
                "photos/2024/a b.jpg",
                "photos/2024/inside.txt",
                "photos/2024/summer/c.jpg",
                "photos/top.txt"
            ]
        );
        let bare = list_tree(&photos, None).unwrap();
        assert_eq!(names(&bare)[3], "top.txt");
        let warned: Vec<&Skip> = listing.skipped.iter().filter(|s| s.is_warning()).collect();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(matches!(warned[0], Skip::LinkedFolder(p) if p.ends_with("loop")));
        assert!(
            matches!(warned[1], Skip::OutsideLink { path, .. } if path.ends_with("outside.txt"))
        );
        assert!(warned[1].to_string().contains("outside the shared folder"));
    }

    #[test]
    fn too_deep_and_unnameable_entries_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_owned();
        for _ in 0..=MAX_SHARE_DEPTH {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("x"), b"x").unwrap();
        fs::write(dir.path().join("bad\nname"), b"x").unwrap();
        fs::write(dir.path().join("a%2Fb"), b"x").unwrap();
        fs::create_dir(dir.path().join("c%2Fd")).unwrap();
        fs::write(dir.path().join("c%2Fd").join("e"), b"x").unwrap();
        let listing = list_tree(dir.path(), None).unwrap();
        assert_eq!(names(&listing), ["a%2Fb"], "a top-level name is its own");
        let reasons: Vec<String> = listing.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(listing.skipped.len(), 3, "{reasons:?}");
        assert!(listing
            .skipped
            .iter()
            .any(|s| matches!(s, Skip::TooDeep(_))));
        // The deepest folder allowed is still listed.
        let mut ok = dir.path().join("ok");
        for _ in 1..MAX_SHARE_DEPTH {
            ok.push("o");
        }
        fs::create_dir_all(&ok).unwrap();
        fs::write(ok.join("y"), b"y").unwrap();
        let listing = list_tree(dir.path(), None).unwrap();
        assert!(names(&listing).iter().any(|n| n.ends_with("/o/y")));
    }
}
