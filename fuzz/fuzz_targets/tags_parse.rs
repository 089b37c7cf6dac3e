//! `tags.txt` as the downloader (and a restarting listener) parses it: `TagsIndex::parse`.
//!
//! Never panics, and for every index it accepts, printing it (what the listener writes) and
//! parsing that again gives the same index: parse(print(x)) == x. The percent-encoding of
//! single fields round-trips on its own too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use p2p_fuzz::text;
use shared::tags::{decode_field, encode_field, TagsIndex};

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    for field in text.split_whitespace() {
        if let Some(decoded) = decode_field(field) {
            let encoded = encode_field(&decoded);
            assert!(!encoded.is_empty() && !encoded.contains(char::is_whitespace));
            assert_eq!(decode_field(&encoded).as_deref(), Some(decoded.as_str()));
        }
    }
    let path = Path::new("tags.txt");
    let Ok(index) = TagsIndex::parse(&text, path) else {
        return;
    };
    let printed = index.to_string();
    match TagsIndex::parse(&printed, path) {
        Ok(again) => assert_eq!(again, index, "printed as:\n{printed}"),
        Err(e) => panic!("the printed index does not parse: {e}\n{printed}"),
    }
});
