//! `Announcement::decode` on arbitrary datagrams, as the listener receives them.
//!
//! Never panics; what it accepts re-encodes to something that decodes to the same announcement
//! (so a decoded announcement is always one we could have sent), and `chunks()` yields only
//! canonical chunk names. An offer it reads (`as_offer`) has a valid id, content name and
//! expiry, and the offer datagram made from it reads back as the same offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::chunk::ChunkName;
use shared::protocol::{is_offer_id, Announcement, MAX_OFFER_SECS};

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
    if let (Some(offer), Some(ext)) = (announcement.as_offer(), announcement.p2p.as_ref()) {
        assert!(is_offer_id(&offer.id), "{:?}", offer.id);
        assert!(shared::chunk::validate_content_name(&offer.name).is_ok());
        assert!((1..=MAX_OFFER_SECS).contains(&offer.expires_in));
        assert!(!offer.to.is_empty());
        if let Some(bytes) = Announcement::offer(&announcement.username, ext, &offer, shared::MAX_ANNOUNCE_DATAGRAM) {
            let back = Announcement::decode(&bytes).expect("an offer we make decodes");
            assert_eq!(back.as_offer(), Some(offer));
        }
    }
});
