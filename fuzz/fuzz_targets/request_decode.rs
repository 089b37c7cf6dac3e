//! `Request::decode` on arbitrary bytes, as the chunk server reads them from a client.
//!
//! Never panics. When it accepts: `used` is within the input; the bytes up to `used` alone give
//! the same request (the server stops reading there); no prefix of them is `Malformed` (the
//! server decodes as bytes arrive, so a valid request split across TCP segments must only ever
//! look incomplete); and re-encoding the request decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::protocol::{DecodeError, Request};

fuzz_target!(|data: &[u8]| {
    let (request, used) = match Request::decode(data) {
        Ok(decoded) => decoded,
        Err(DecodeError::Incomplete | DecodeError::Malformed(_)) => return,
    };
    assert!(used <= data.len(), "used {used} of {} bytes", data.len());
    assert!(used > 0);
    assert_eq!(
        Request::decode(&data[..used]),
        Ok((request.clone(), used)),
        "the bytes after the request changed it"
    );
    // Every prefix of a short request, a sample of the prefixes of a long one.
    let step = (used / 256).max(1);
    for cut in (0..used).step_by(step) {
        match Request::decode(&data[..cut]) {
            Err(DecodeError::Incomplete) => {}
            other => panic!("prefix of {cut} bytes of a valid request gave {other:?}"),
        }
    }
    let encoded = request.encode();
    assert_eq!(
        Request::decode(&encoded),
        Ok((request.clone(), encoded.len())),
        "re-encoded {:?}",
        String::from_utf8_lossy(&encoded)
    );
});
