//! `Announcement::decode` on arbitrary datagrams, as the listener receives them.
//!
//! Never panics; what it accepts re-encodes to something that decodes to the same announcement
//! (so a decoded announcement is always one we could have sent), and `chunks()` yields only
//! canonical chunk names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::chunk::ChunkName;
use shared::protocol::Announcement;

fuzz_target!(|data: &[u8]| {
    let Ok(announcement) = Announcement::decode(data) else {
        return;
    };
    let again =
        Announcement::decode(&announcement.encode()).expect("an encoded announcement decodes");
    assert_eq!(again, announcement);
    for chunk in announcement.chunks() {
        // Listed as it is, or flattened for legacy peers and named back through `p2p.contents`.
        let text = chunk.to_string();
        assert!(
            announcement.files.contains(&text)
                || announcement.files.contains(&chunk.to_legacy_string()),
            "{text:?} not among the files"
        );
        assert_eq!(ChunkName::parse(&text).as_ref(), Ok(&chunk));
    }
});
