//! What a chunk server of a private network does with the first bytes of any connection:
//! `shared::trust::channel::accept` (the magic and version, the frames, the Noise handshake,
//! the peer's identity proof), over a real loopback connection.
//!
//! Never panics, never waits past its deadline, and never opens a channel: bytes that do not
//! come from a member holding the key and an identity cannot complete the handshake.
#![no_main]

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use shared::trust::channel::{accept, ChannelKeys};
use shared::trust::{Identity, NetworkKey};

fn listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
}

fn keys() -> &'static ChannelKeys {
    static KEYS: OnceLock<ChannelKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        ChannelKeys::new(
            &NetworkKey::from_bytes([7; 32]),
            Arc::new(Identity::from_seed(&[3; 32])),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let listener = listener();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // Inputs are small (libFuzzer's default max_len): they fit the socket buffers at once.
    let _ = client.write_all(data);
    let _ = client.shutdown(Shutdown::Write);
    let (server, _) = listener.accept().unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(200);
    let opened = accept(server, Some(keys()), deadline);
    assert!(opened.is_err(), "forged bytes opened a channel");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "accept overran its deadline: {:?}",
        start.elapsed()
    );
});
