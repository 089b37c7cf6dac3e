//! What a listener or announcer of a private network does with any datagram:
//! `shared::trust::Gate::admit` (and under it `Opener::open`, the base64 and the AEAD).
//!
//! Never panics. Anything let in was sealed by the test's own member: bytes that do not come
//! from it are never admitted, however they are built. A datagram sealed from the input opens
//! back to exactly its payload, once (the second time it is a replay).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shared::trust::envelope::now_ms;
use shared::trust::{Gate, Identity, NetworkKey, Passed, Sealer};

fuzz_target!(|data: &[u8]| {
    let key = NetworkKey::from_bytes([7; 32]);
    let mut gate = Gate::new(Some(&key), false);
    // Arbitrary bytes, and the same bytes wrapped in the sealed form's JSON.
    let wrapped = [
        br#"{"username":"(sealed)","files":[],"sealed":""#.as_slice(),
        data,
        br#""}"#.as_slice(),
    ]
    .concat();
    for bytes in [data, &wrapped[..]] {
        assert!(
            !matches!(gate.admit(bytes, now_ms()), Ok(Passed::Sealed(_))),
            "forged bytes were let in"
        );
    }
    let sealer = Sealer::new(&key, Arc::new(Identity::from_seed(&[3; 32]))).unwrap();
    let sealed = sealer.seal(data).unwrap();
    match gate.admit(&sealed, now_ms()) {
        Ok(Passed::Sealed(opened)) => assert_eq!(opened.payload, data),
        other => panic!("our own datagram was refused: {other:?}"),
    }
    assert!(gate.admit(&sealed, now_ms()).is_err(), "a replay was let in");
    // An open network never lets a sealed datagram in.
    assert!(Gate::new(None, true).admit(&sealed, now_ms()).is_err());
});
