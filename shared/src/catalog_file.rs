//! `DIR/.run/catalog-<digest>.txt`: the catalog the announcer announces, published in the peer
//! folder for the chunk server to serve ([`crate::protocol::Catalog`]).
//!
//! The announcer, which reads the store and announces its summary, writes the catalog's bytes
//! under their own digest before it announces it; the chunk server answers a request for a
//! digest with the file of that name, or with `wrong_content` when there is none (the catalog
//! changed since). So what is served is, byte for byte, what was announced, and the chunk
//! server never reads the whole store to answer.
//!
//! One file at a time: publishing a catalog removes the others (a transfer of one already
//! open goes on: on Unix a removed file lives while it is open). Written without `fsync`:
//! the file is derived from the store, and written again whenever the announcer starts.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::digest::Digest;
use crate::fsutil::{open_regular, OpenError};
use crate::peer_dir::PeerDir;

const PREFIX: &str = "catalog-";
const SUFFIX: &str = ".txt";

/// Where the catalog of digest `sha256` is published.
pub fn path(dir: &PeerDir, sha256: &Digest) -> PathBuf {
    dir.run_dir().join(format!("{PREFIX}{sha256}{SUFFIX}"))
}

/// Publishes `bytes`, the catalog of digest `sha256` (computed by the caller from them), and
/// removes every other catalog published. Nothing is written when it is published already.
///
/// # Errors
/// When `.run/` cannot be created or the file cannot be written.
pub fn publish(dir: &PeerDir, bytes: &[u8], sha256: &Digest) -> io::Result<()> {
    let target = path(dir, sha256);
    if !fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
        fs::create_dir_all(dir.run_dir())?;
        let tmp = dir.run_dir().join(format!(
            ".{PREFIX}{}.{}.tmp",
            sha256.short(16),
            std::process::id()
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(bytes)?;
            drop(file);
            fs::rename(&tmp, &target)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
    }
    remove_all_but(dir, Some(sha256));
    Ok(())
}

/// Removes every catalog published: the peer announces inline now, or stopped.
pub fn withdraw(dir: &PeerDir) {
    remove_all_but(dir, None);
}

/// The published catalog of digest `sha256`, opened (never through a symbolic link).
///
/// # Errors
/// [`OpenError`]; [`OpenError::Missing`] when no such catalog is published.
pub fn open(dir: &PeerDir, sha256: &Digest) -> Result<(File, Metadata), OpenError> {
    open_regular(&path(dir, sha256))
}

/// Removes the published catalogs other than `keep`'s; a failure is left for the next time.
fn remove_all_but(dir: &PeerDir, keep: Option<&Digest>) {
    let Ok(entries) = fs::read_dir(dir.run_dir()) else {
        return;
    };
    let kept = keep.map(|sha256| format!("{PREFIX}{sha256}{SUFFIX}"));
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) && Some(name) != kept.as_deref() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn one_catalog_is_published_at_a_time_under_its_digest() {
        let root = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(root.path());
        let (a, b) = (
            b"{\"name\":\"a\"}\n".to_vec(),
            b"{\"name\":\"b\"}\n".to_vec(),
        );
        let (da, db) = (Digest::of(&a), Digest::of(&b));
        publish(&dir, &a, &da).unwrap();
        let mut text = Vec::new();
        open(&dir, &da).unwrap().0.read_to_end(&mut text).unwrap();
        assert_eq!(text, a);
        // Another catalog replaces it; one already open can still be read.
        let (mut opened, _) = open(&dir, &da).unwrap();
        publish(&dir, &b, &db).unwrap();
        assert!(matches!(open(&dir, &da), Err(OpenError::Missing)));
        let mut text = Vec::new();
        opened.read_to_end(&mut text).unwrap();
        assert_eq!(text, a);
        // Publishing again is harmless; withdrawing removes it, and nothing else of .run/.
        publish(&dir, &b, &db).unwrap();
        assert!(open(&dir, &db).is_ok());
        fs::write(dir.run_dir().join("chunk-server.json"), "{}").unwrap();
        withdraw(&dir);
        assert!(open(&dir, &db).is_err());
        let left: Vec<_> = fs::read_dir(dir.run_dir()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_in_its_place_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = PeerDir::new(root.path());
        let secret = root.path().join("secret");
        fs::write(&secret, "x").unwrap();
        let digest = Digest::of(b"x");
        fs::create_dir_all(dir.run_dir()).unwrap();
        std::os::unix::fs::symlink(&secret, path(&dir, &digest)).unwrap();
        assert!(matches!(open(&dir, &digest), Err(OpenError::SymbolicLink)));
    }
}
