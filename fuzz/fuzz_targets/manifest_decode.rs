//! Manifests: the JSON a holder sends in a `manifest` response, and the stored manifest
//! (`temp/.manifests/<name>.json`) exactly as the store reads it from disk
//! (`ChunkStore::load_manifest`, which every program calls on files other programs wrote).
//!
//! Never panics. A manifest that decodes re-encodes to one that decodes the same; a stored
//! manifest that loads is written back by `save_manifest` (for a valid content name) and loads
//! again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_fuzz::scratch_store;
use shared::chunk::validate_content_name;
use shared::protocol::Manifest;
use shared::store::StoredManifest;

/// The content name the fuzzed file is stored under.
const NAME: &str = "fuzzed";

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let encoded = serde_json::to_vec(&manifest).expect("a manifest encodes");
        let again: Manifest = serde_json::from_slice(&encoded).expect("and decodes");
        assert_eq!(again, manifest);
        assert_eq!(
            (again.meta().size, again.meta().sha256),
            (manifest.size, manifest.sha256)
        );
    }

    let store = scratch_store();
    let path = store.manifest_path(NAME);
    std::fs::write(&path, data).expect("write the fuzzed manifest");
    let loaded = store.load_manifest(NAME);
    let Ok(Some(stored)) = loaded else {
        return;
    };
    // What `save_manifest` writes, read back without touching the disk...
    let pretty = serde_json::to_vec_pretty(&stored).expect("a stored manifest encodes");
    let again: StoredManifest = serde_json::from_slice(&pretty).expect("and decodes");
    assert_eq!(again, stored);
    // ... and through the store itself, for names the programs would ever save under.
    if validate_content_name(&stored.manifest.name).is_ok() {
        store.save_manifest(&stored).expect("save the manifest");
        let reloaded = store
            .load_manifest(&stored.manifest.name)
            .expect("load the saved manifest");
        assert_eq!(reloaded.as_ref(), Some(&stored));
        if stored.manifest.name != NAME {
            let _ = std::fs::remove_file(store.manifest_path(&stored.manifest.name));
        }
    }
});
