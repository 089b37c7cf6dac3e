//! `CatalogDecoder` on arbitrary bytes, as a listener reads a catalog from a peer's chunk
//! server: cut into pieces of arbitrary sizes, keeping an arbitrary number of entries.
//!
//! Never panics. The outcome does not depend on where the bytes were cut: the same entries,
//! count and digest as one piece, or an error for both. What it accepts: the digest is the
//! SHA-256 of the bytes, it kept at most what it was asked, its entries are valid names,
//! strictly sorted, each with chunks, and the whole catalog re-encodes to bytes that decode to
//! the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::chunk::validate_content_name;
use shared::digest::Digest;
use shared::protocol::{Catalog, CatalogDecoder};

fuzz_target!(|data: &[u8]| {
    let [keep, piece, bytes @ ..] = data else {
        return;
    };
    let keep = usize::from(*keep);
    let piece = usize::from(*piece).max(1);

    let mut whole = CatalogDecoder::new(keep);
    let whole = whole.feed(bytes).and_then(|()| whole.finish());
    let mut cut = CatalogDecoder::new(keep);
    let mut fed = Ok(());
    for part in bytes.chunks(piece) {
        fed = cut.feed(part);
        if fed.is_err() {
            break;
        }
    }
    let cut = fed.and_then(|()| cut.finish());
    assert_eq!(whole.is_ok(), cut.is_ok(), "{whole:?} / {cut:?}");
    let Ok(decoded) = whole else {
        return;
    };
    assert_eq!(Ok(&decoded), cut.as_ref());
    assert_eq!(decoded.sha256, Digest::of(bytes));
    assert!(decoded.entries.len() <= keep);
    assert!(decoded.entries.len() as u64 <= decoded.count);
    for pair in decoded.entries.windows(2) {
        assert!(pair[0].name < pair[1].name, "sorted, each once");
    }
    for entry in &decoded.entries {
        assert!(validate_content_name(&entry.name).is_ok(), "{:?}", entry.name);
        assert!(!entry.chunks.is_empty());
    }
    // The whole catalog, re-encoded, is canonical and decodes to the same entries.
    if let Ok(catalog) = Catalog::decode(bytes) {
        let (encoded, summary) = catalog.encode();
        assert_eq!(summary.count, decoded.count);
        assert_eq!(Catalog::decode(&encoded).as_ref(), Ok(&catalog));
        assert_eq!(catalog.entries()[..decoded.entries.len()], decoded.entries[..]);
    }
});
