//! Chunk names, content names and every store path derived from them: `ChunkName::parse`,
//! `validate_content_name`, `ChunkStore::{chunk_path, incoming_path, manifest_path}`, and the
//! query file names of `.queries/` (`shared::queries`).
//!
//! Never panics; a name that is accepted always yields, for every path made from it, exactly
//! one plain component inside its folder (no `..`, no `/`, no NUL, not empty, not `.`), and
//! the file names read back (when the store lists its folders) give the same name. A content
//! name may be a relative path (`photos/a.jpg`): joined to any root it stays under the root,
//! and its flattened legacy name is a valid plain name that reads back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

use p2p_fuzz::{assert_one_component, assert_one_store_component, scratch_store, text};
use shared::chunk::{
    legacy_flat_name, nested_name_of_flat, validate_component, validate_content_name, ChunkName,
    MAX_INDEX,
};
use shared::queries::{parse_query_file_name, query_file_name};
use shared::store::{content_of_stem, file_stem};
use shared::MAX_CONTENT_NAME_BYTES;

fuzz_target!(|data: &[u8]| {
    let name = text(data);
    let name = name.as_ref();

    if let Ok(chunk) = ChunkName::parse(name) {
        assert_eq!(chunk.to_string(), name, "a chunk name is canonical");
        assert!((1..=MAX_INDEX).contains(&chunk.index()));
        assert_eq!(validate_content_name(chunk.content()), Ok(()));
        check_chunk(&chunk);
    }

    if validate_content_name(name).is_ok() {
        assert!(name.len() <= MAX_CONTENT_NAME_BYTES);
        // Joined to a root, it stays under the root: plain components only.
        let root = Path::new("/srv/root");
        let joined = root.join(name);
        let rest = joined.strip_prefix(root).expect("under the root");
        assert!(
            rest.components().all(|c| matches!(c, Component::Normal(_))),
            "{name:?} escapes: {joined:?}"
        );
        assert_eq!(rest.components().count(), name.split('/').count());
        // What legacy peers see is one plain name, no longer than the limit.
        let flat = legacy_flat_name(name);
        assert_eq!(validate_component(&flat), Ok(()), "{flat:?}");
        assert!(flat.len() <= MAX_CONTENT_NAME_BYTES);
        if name.contains('/') && !name.contains("%2F") {
            assert_eq!(nested_name_of_flat(&flat).as_deref(), Some(name));
        }
        assert_eq!(content_of_stem(&file_stem(name)), name);
        check_content(name);
        let all = ChunkName::all_of(name).expect("a valid content has five chunk names");
        for (index, chunk) in (1..=MAX_INDEX).zip(&all) {
            assert_eq!(ChunkName::new(name, index).as_ref(), Ok(chunk));
            assert_eq!(chunk.content(), name);
            assert_eq!(
                ChunkName::parse(&format!("{name}_{index}")).as_ref(),
                Ok(chunk)
            );
            check_chunk(chunk);
        }
    } else {
        assert!(ChunkName::all_of(name).is_err());
        assert!(ChunkName::new(name, 1).is_err());
    }

    if let Some(addr) = parse_query_file_name(name) {
        assert_eq!(
            query_file_name(addr),
            name,
            "only canonical query file names"
        );
        assert!(addr.port() != 0);
        let dir = std::path::Path::new(".queries");
        assert_one_component(dir, &dir.join(name), name);
    }
});

/// The paths of one chunk: complete (`temp/<chunk>`) and being received
/// (`temp/.incoming/<chunk>.part`).
fn check_chunk(chunk: &ChunkName) {
    let store = scratch_store();
    let stored = format!("{}_{}", file_stem(chunk.content()), chunk.index());
    let complete = store.chunk_path(chunk);
    assert_one_store_component(store.root(), &complete, &stored);
    // `list_chunks` reads the store back by parsing the file names.
    let listed = complete
        .file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8");
    assert_eq!(
        ChunkName::parse(&content_of_stem(listed)).as_ref(),
        Ok(chunk)
    );
    let part = store.incoming_path(chunk);
    let part_name = format!("{stored}.part");
    assert_one_store_component(&store.incoming_dir(), &part, &part_name);
    assert!(
        ChunkName::parse(&part_name).is_err(),
        "a part file is never a chunk"
    );
    check_content(chunk.content());
}

/// The manifest path of one content (`temp/.manifests/<content>.json`).
fn check_content(content: &str) {
    let store = scratch_store();
    let path = store.manifest_path(content);
    let file_name = format!("{}.json", file_stem(content));
    assert_one_store_component(&store.manifests_dir(), &path, &file_name);
    // `manifests()` finds the content by stripping the extension from the file name.
    assert_eq!(
        file_name
            .strip_suffix(".json")
            .map(content_of_stem)
            .as_deref(),
        Some(content)
    );
}
