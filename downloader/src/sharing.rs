//! `downloader share PATH…`, `unshare NAME…` and `shared`: what this peer shares, changed while
//! the programs run. They edit `DIR/shares.txt` ([`shared::shares`]), which the folder's chunk
//! server watches: it hashes what was added and drops what was removed within a fraction of a
//! second, and the announcer tells the network (a removed content is withdrawn at once).
//!
//! - `share PATH`: lists the file or folder (its absolute, resolved path; a folder shares its
//!   whole tree under its own name, `photos/2024/a.jpg`) and lifts an exclusion of the file's
//!   content name. A path that does not exist, or that cannot be a share, is an
//!   error and nothing is changed, for any of the paths given.
//! - `unshare NAME|PATH`: a listed path is removed from the list. A shared content name (or
//!   the path of a shared file) is removed from the list when its file is listed by itself;
//!   when it is shared through a folder (`served_files/`, a `--share` folder, a listed one),
//!   which the list cannot take apart, an exclusion `-NAME` is written instead. A folder path
//!   (`photos/`): the listed folder of that name is removed from the list, or, for a folder
//!   inside a shared one, `-photos/` excludes its whole subtree. A name that is not shared is
//!   an error.
//! - `shared`: what the store holds as shared (name, size, SHA-256, path), and the files of
//!   the listed paths and `served_files/` not hashed yet.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use shared::chunk::validate_component;
use shared::instance::ServerRecord;
use shared::shares::{self, exclusion_covers, SharesList};
use shared::store::{ChunkStore, Origin};
use shared::tree;

use crate::actions::require_peer_dir;
use crate::download::Config;
use crate::error::Error;
use crate::format;
use crate::json::{self, Format};
use crate::wording::{write_line, write_out};

/// Why `share` or `unshare` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    /// The path cannot be shared (missing, unreadable, not a file or folder, a name that
    /// cannot be a content name).
    #[error("cannot share {path}: {why}")]
    NotShareable {
        /// The path as given.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Neither a shared content nor a listed path.
    #[error("{0:?} is not shared (see `downloader shared`)")]
    NotShared(String),
    /// The list could not be read or written.
    #[error("cannot update {path}: {source}")]
    List {
        /// `DIR/shares.txt`.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A path as the list records it: absolute, links resolved; checked to exist and to be a
/// file whose name can be a content name, or a folder.
fn resolve_shareable(path: &Path) -> Result<PathBuf, SharingError> {
    let fail = |why: String| SharingError::NotShareable {
        path: path.to_owned(),
        why,
    };
    let resolved = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::metadata(&resolved).map_err(|e| fail(e.to_string()))?;
    shares::check_listable(&resolved).map_err(fail)?;
    if meta.is_file() {
        let name = resolved.file_name().and_then(|n| n.to_str()).unwrap_or("");
        validate_component(name)
            .map_err(|e| fail(format!("its name cannot be a content name: {e}")))?;
    } else if !meta.is_dir() {
        return Err(fail("neither a file nor a folder".into()));
    }
    Ok(resolved)
}

/// The store's shared contents (origin `Shared`), by name; none when there is no store yet.
fn shared_contents(config: &Config) -> Vec<(String, u64, String, PathBuf)> {
    let temp = config.dir.temp();
    if !temp.is_dir() {
        return Vec::new();
    }
    let Ok(store) = ChunkStore::open(temp) else {
        return Vec::new();
    };
    store
        .manifests()
        .into_iter()
        .filter_map(|m| match m.origin {
            Origin::Shared { path, .. } => Some((
                m.manifest.name,
                m.manifest.size,
                m.manifest.sha256.to_string(),
                path,
            )),
            _ => None,
        })
        .collect()
}

/// Edits the list under its lock, turning its I/O errors into [`SharingError::List`].
fn edit<T>(
    config: &Config,
    f: impl FnOnce(&mut SharesList) -> Result<(T, bool), SharingError>,
) -> Result<T, Error> {
    let path = shares::path_in(&config.dir);
    let wrapped = |list: &mut SharesList| f(list).map_err(ListError::Sharing);
    shares::update(&config.dir, wrapped).map_err(|e| match e {
        ListError::Sharing(e) => Error::Sharing(e),
        ListError::Io(source) => Error::Sharing(SharingError::List { path, source }),
    })
}

/// An edit's error, or the list's.
enum ListError {
    Sharing(SharingError),
    Io(io::Error),
}

impl From<io::Error> for ListError {
    fn from(e: io::Error) -> ListError {
        ListError::Io(e)
    }
}

/// Whether `path` is in the tree of a folder that is shared anyway (a listed folder, or
/// `served_files/`): then the list cannot unshare it but by an exclusion.
fn in_shared_folder(config: &Config, list: &SharesList, path: &Path) -> bool {
    let served = config.dir.default_share_dir();
    let served = std::fs::canonicalize(&served).unwrap_or(served);
    let under = |folder: &Path| path != folder && path.starts_with(folder);
    under(&served) || list.paths().iter().any(|p| under(p))
}

/// The content name of the file `path` when it is in the tree of a folder that is shared
/// anyway: its path under `served_files/` (`2024/a.jpg`), or under a listed folder after that
/// folder's name (`photos/2024/a.jpg`); else its file name, as when it is listed by itself.
fn content_name_of(config: &Config, list: &SharesList, path: &Path) -> Option<String> {
    let served = config.dir.default_share_dir();
    let served = std::fs::canonicalize(&served).unwrap_or(served);
    let relative = |under: &Path| -> Option<String> {
        let rest = path.strip_prefix(under).ok()?.to_str()?;
        (!rest.is_empty()).then(|| rest.to_owned())
    };
    if let Some(name) = relative(&served) {
        return Some(name);
    }
    for folder in list.paths() {
        if let (Some(rest), Some(own)) = (
            relative(&folder),
            folder.file_name().and_then(|n| n.to_str()),
        ) {
            return Some(format!("{own}/{rest}"));
        }
    }
    path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
}

/// Says, once, when no chunk server runs for the folder: the list is read when one starts.
fn note_server(config: &Config, out: &mut dyn Write) -> Result<(), Error> {
    if matches!(ServerRecord::read_live(&config.dir), Ok(None)) {
        write_line(
            out,
            &format!(
                "No chunk server is running for {}: it shares this when it starts.",
                config.dir.root().display()
            ),
        )?;
    }
    Ok(())
}

/// `downloader share PATH…`: adds each path to `DIR/shares.txt` (see the module
/// documentation); all or nothing.
///
/// # Errors
/// When the peer folder is missing, a path cannot be shared, or the list cannot be written.
pub fn share(config: &Config, paths: &[PathBuf], out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let resolved = paths
        .iter()
        .map(|p| resolve_shareable(p))
        .collect::<Result<Vec<PathBuf>, SharingError>>()?;
    let said = edit(config, |list| {
        let mut said = Vec::new();
        let mut changed = false;
        for path in &resolved {
            let name = path
                .is_file()
                .then(|| content_name_of(config, list, path))
                .flatten();
            let mut included = name.is_some_and(|n| list.include(&n));
            if path.is_dir() {
                // A folder excluded whole (`-photos/`), where it is in a shared tree or by the
                // name it is shared under, is shared again.
                let own = path.file_name().and_then(|n| n.to_str());
                let names = [content_name_of(config, list, path), own.map(str::to_owned)];
                for folder in names.into_iter().flatten() {
                    included |= list.include(&format!("{folder}/"));
                }
            }
            changed |= included;
            if included && in_shared_folder(config, list, path) {
                said.push(format!("sharing {} again", path.display()));
            } else if list.add_path(path) {
                changed = true;
                match path.is_dir().then(|| path.file_name()).flatten() {
                    Some(folder) => said.push(format!(
                        "sharing {} (its whole tree, as {}/…)",
                        path.display(),
                        folder.to_string_lossy()
                    )),
                    None => said.push(format!("sharing {}", path.display())),
                }
            } else if included {
                said.push(format!("sharing {} again", path.display()));
            } else {
                said.push(format!("{} is already shared", path.display()));
            }
        }
        Ok((said, changed))
    })?;
    for line in said {
        write_line(out, &line)?;
    }
    // Two files of one name: the chunk server shares the first root's (its own roots, then
    // the list in order), so a file listed now may wait behind another.
    let hashed = shared_contents(config);
    for path in resolved.iter().filter(|p| p.is_file()) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some((_, _, _, other)) = hashed.iter().find(|c| c.0 == name && c.3 != *path) {
            write_line(
                out,
                &format!(
                    "note: {name} is already shared from {}; {} is shared only while that one \
                     is not",
                    other.display(),
                    path.display()
                ),
            )?;
        }
    }
    note_server(config, out)
}

/// `downloader unshare NAME|PATH…` (see the module documentation); all or nothing.
///
/// # Errors
/// When the peer folder is missing, one is not shared, or the list cannot be written.
pub fn unshare(config: &Config, names: &[String], out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let hashed = shared_contents(config);
    let said = edit(config, |list| {
        // What is shared now: hashed contents, then listed files not hashed yet.
        let mut shared: Vec<(String, PathBuf)> =
            hashed.iter().map(|c| (c.0.clone(), c.3.clone())).collect();
        shared.extend(
            listed_files(config, list)
                .into_iter()
                .map(|(n, _, p)| (n, p)),
        );
        let mut said = Vec::new();
        for arg in names {
            let as_path = std::fs::canonicalize(arg)
                .ok()
                .or_else(|| std::path::absolute(arg).ok());
            // A listed path, as given.
            if let Some(path) = as_path.as_ref().filter(|p| list.has_path(p)) {
                list.remove_path(path);
                said.push(format!("no longer sharing {}", path.display()));
                if path.is_file() && in_shared_folder(config, list, path) {
                    if let Some(name) = content_name_of(config, list, path) {
                        list.exclude(&name);
                    }
                }
                continue;
            }
            // A shared content, by name or by its file's path.
            let found = shared
                .iter()
                .find(|(name, _)| name == arg)
                .or_else(|| shared.iter().find(|(_, p)| Some(p) == as_path.as_ref()));
            let Some((name, path)) = found else {
                // A folder, by its content path (`photos/`, or `photos` naming no content).
                let folder = format!("{}/", arg.trim_end_matches('/'));
                let listed = list.paths().into_iter().find(|p| {
                    p.is_dir()
                        && p.file_name().and_then(|n| n.to_str())
                            == Some(folder.trim_end_matches('/'))
                });
                if let Some(path) = listed {
                    list.remove_path(&path);
                    said.push(format!("no longer sharing {folder} ({})", path.display()));
                    continue;
                }
                if shared.iter().any(|(name, _)| name.starts_with(&folder)) {
                    list.exclude(&folder);
                    said.push(format!("no longer sharing anything under {folder}"));
                    continue;
                }
                return Err(SharingError::NotShared(arg.clone()));
            };
            let listed_itself = list.remove_path(path);
            if !listed_itself || in_shared_folder(config, list, path) {
                list.exclude(name);
            }
            said.push(format!("no longer sharing {name} ({})", path.display()));
        }
        Ok((said, true))
    })?;
    for line in said {
        write_line(out, &line)?;
    }
    note_server(config, out)
}

/// One shared file, as `shared --json` prints it (an array of these).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SharedFile {
    /// The content name peers see.
    pub name: String,
    /// Size in bytes (when not hashed yet: as the file is now).
    pub size: u64,
    /// SHA-256 of the file in hex; `null` until the chunk server has hashed it.
    pub sha256: Option<String>,
    /// The file shared.
    pub path: PathBuf,
    /// Whether the chunk server has hashed it: only then is it announced and served.
    pub hashed: bool,
}

/// The files to share of the listed paths and `served_files/` (whole trees, by the rule the
/// chunk server shares by: [`shared::tree`]), less the excluded names.
fn listed_files(config: &Config, list: &SharesList) -> Vec<(String, u64, PathBuf)> {
    let excluded = list.exclusions();
    let mut roots = vec![(config.dir.default_share_dir(), false)];
    roots.extend(list.paths().into_iter().map(|p| (p, true)));
    let mut files = Vec::new();
    for (root, under_own_name) in roots {
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let Ok(meta) = std::fs::metadata(&root) else {
            continue;
        };
        let found: Vec<(String, u64, PathBuf)> = if meta.is_dir() {
            let prefix = root
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|_| under_own_name);
            match tree::list_tree(&root, prefix) {
                Ok(listing) => listing
                    .files
                    .into_iter()
                    .map(|f| (f.name, f.meta.len(), f.path))
                    .collect(),
                Err(_) => Vec::new(),
            }
        } else {
            let name = root.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            match name {
                Some(name) if !name.starts_with('.') && validate_component(&name).is_ok() => {
                    vec![(name, meta.len(), root.clone())]
                }
                _ => Vec::new(),
            }
        };
        files.extend(
            found
                .into_iter()
                .filter(|(name, _, _)| !excluded.iter().any(|e| exclusion_covers(e, name))),
        );
    }
    files
}

/// What this peer shares: every hashed shared content, then the listed files not hashed yet,
/// sorted by name.
///
/// # Errors
/// When the list exists but cannot be read.
pub fn shared_files(config: &Config) -> Result<Vec<SharedFile>, Error> {
    let list = shares::load(&config.dir).map_err(|source| SharingError::List {
        path: shares::path_in(&config.dir),
        source,
    })?;
    let mut by_name: BTreeMap<String, SharedFile> = BTreeMap::new();
    let contents = shared_contents(config);
    for (name, size, sha256, path) in contents {
        by_name.insert(
            name.clone(),
            SharedFile {
                name,
                size,
                sha256: Some(sha256),
                path,
                hashed: true,
            },
        );
    }
    for (name, size, path) in listed_files(config, &list) {
        by_name.entry(name.clone()).or_insert(SharedFile {
            name,
            size,
            sha256: None,
            path,
            hashed: false,
        });
    }
    Ok(by_name.into_values().collect())
}

/// `downloader shared`: a table, or with [`Format::Json`] an array of [`SharedFile`].
///
/// # Errors
/// When the peer folder is missing or the list cannot be read.
pub fn shared(config: &Config, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    require_peer_dir(config)?;
    let files = shared_files(config)?;
    if format == Format::Json {
        return json::write_json(out, &files);
    }
    if files.is_empty() {
        return write_line(
            out,
            &format!(
                "Nothing is shared: put files in {} or `downloader share PATH`.",
                config.dir.default_share_dir().display()
            ),
        );
    }
    let rows: Vec<[String; 4]> = files
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                format::size(f.size),
                f.sha256
                    .as_deref()
                    .map_or("(hashing)".to_owned(), |s| s[..16.min(s.len())].to_owned()),
                f.path.display().to_string(),
            ]
        })
        .collect();
    let rows: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            row.clone()
                .map(|cell| shared::text::terminal_safe(&cell).into_owned())
        })
        .collect();
    let text = format::table(["NAME", "SIZE", "SHA256", "PATH"], &rows, &[1]);
    write_out(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::peer_dir::PeerDir;

    fn config(root: &Path) -> Config {
        Config {
            dir: PeerDir::new(root),
            ..Config::default()
        }
    }

    #[test]
    fn share_unshare_and_shared_edit_the_list() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let config = config(&root);
        let file = root.join("a.txt");
        std::fs::write(&file, b"abc").unwrap();
        let served = root.join("served_files");
        std::fs::create_dir(&served).unwrap();
        std::fs::write(served.join("s.txt"), b"s").unwrap();
        let mut out = Vec::new();

        // A missing path: an error, and nothing written, not even the other path.
        let err = share(&config, &[file.clone(), root.join("nope")], &mut out).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!shares::path_in(&config.dir).exists());

        share(&config, std::slice::from_ref(&file), &mut out).unwrap();
        share(&config, std::slice::from_ref(&file), &mut out).unwrap();
        let list = shares::load(&config.dir).unwrap();
        assert_eq!(list.paths(), std::slice::from_ref(&file));
        let names: Vec<(String, bool)> = shared_files(&config)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.hashed))
            .collect();
        assert_eq!(names, [("a.txt".into(), false), ("s.txt".into(), false)]);

        // By name, not hashed yet: the line goes.
        unshare(&config, &["a.txt".into()], &mut out).unwrap();
        assert!(shares::load(&config.dir).unwrap().paths().is_empty());
        // A file of served_files/ by path: excluded, then shared again.
        let s = served.join("s.txt");
        unshare(&config, &[s.display().to_string()], &mut out).unwrap();
        let list = shares::load(&config.dir).unwrap();
        assert_eq!(list.exclusions(), ["s.txt"]);
        assert!(shared_files(&config).unwrap().is_empty());
        assert!(matches!(
            unshare(&config, &["zzz".into()], &mut out),
            Err(Error::Sharing(SharingError::NotShared(_)))
        ));
        share(&config, std::slice::from_ref(&s), &mut out).unwrap();
        let list = shares::load(&config.dir).unwrap();
        assert!(list.exclusions().is_empty());
        assert!(list.paths().is_empty(), "served_files/ shares it anyway");
        assert_eq!(shared_files(&config).unwrap().len(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("a.txt is already shared"), "{text}");
    }

    #[test]
    fn folders_share_their_tree_and_unshare_by_file_or_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let config = config(&root);
        let served = root.join("served_files");
        std::fs::create_dir_all(served.join("sub")).unwrap();
        std::fs::write(served.join("sub").join("x.txt"), b"x").unwrap();
        let photos = root.join("photos");
        std::fs::create_dir_all(photos.join("2024")).unwrap();
        std::fs::write(photos.join("2024").join("a.jpg"), b"a").unwrap();
        std::fs::write(photos.join("b.jpg"), b"b").unwrap();
        let names = |config: &Config| -> Vec<String> {
            shared_files(config)
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        let mut out = Vec::new();
        assert_eq!(names(&config), ["sub/x.txt"]);

        share(&config, std::slice::from_ref(&photos), &mut out).unwrap();
        assert_eq!(
            names(&config),
            ["photos/2024/a.jpg", "photos/b.jpg", "sub/x.txt"]
        );
        // One file of a listed folder: excluded by its content name.
        unshare(&config, &["photos/2024/a.jpg".into()], &mut out).unwrap();
        assert_eq!(names(&config), ["photos/b.jpg", "sub/x.txt"]);
        // Shared again by its path: the exclusion goes, nothing else is listed.
        share(&config, &[photos.join("2024").join("a.jpg")], &mut out).unwrap();
        let list = shares::load(&config.dir).unwrap();
        assert!(list.exclusions().is_empty(), "{:?}", list.exclusions());
        assert_eq!(list.paths(), std::slice::from_ref(&photos));
        // The listed folder, by its content path: its line goes.
        unshare(&config, &["photos/".into()], &mut out).unwrap();
        assert!(shares::load(&config.dir).unwrap().paths().is_empty());
        assert_eq!(names(&config), ["sub/x.txt"]);
        // A folder inside served_files/: excluded whole, then shared again.
        unshare(&config, &["sub".into()], &mut out).unwrap();
        assert_eq!(shares::load(&config.dir).unwrap().exclusions(), ["sub/"]);
        assert!(names(&config).is_empty());
        share(&config, &[served.join("sub")], &mut out).unwrap();
        let list = shares::load(&config.dir).unwrap();
        assert!(list.exclusions().is_empty() && list.paths().is_empty());
        assert_eq!(names(&config), ["sub/x.txt"]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("its whole tree, as photos/"), "{text}");
        assert!(
            text.contains("no longer sharing anything under sub/"),
            "{text}"
        );
    }
}
