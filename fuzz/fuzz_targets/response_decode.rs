//! `Response::decode` on arbitrary header lines, as the downloader reads them from a server.
//!
//! Never panics, neither on the input nor on the line the client would cut from it (up to the
//! first newline). What it accepts encodes to exactly one line (the client frames the header by
//! its newline) that decodes to the same response, with or without the newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::protocol::Response;

fuzz_target!(|data: &[u8]| {
    // What `Connection::read_response` hands to the decoder: the bytes up to the first newline.
    if let Some(end) = data.iter().position(|&b| b == b'\n') {
        let _ = Response::decode(&data[..=end]);
    }
    let Ok(response) = Response::decode(data) else {
        return;
    };
    let encoded = response.encode();
    assert_eq!(encoded.last(), Some(&b'\n'));
    assert_eq!(
        encoded.iter().filter(|&&b| b == b'\n').count(),
        1,
        "a header must be one line: {:?}",
        String::from_utf8_lossy(&encoded)
    );
    assert_eq!(Response::decode(&encoded).as_ref(), Ok(&response));
    assert_eq!(
        Response::decode(&encoded[..encoded.len() - 1]).as_ref(),
        Ok(&response),
        "without its newline"
    );
});
