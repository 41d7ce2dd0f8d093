//! COCOON field encryption (`"is_encrypted":"v1"`) as the worker meets it: any bytes, parsed as
//! JSON, decrypted with a fixed seed (upstream's fixed test key, so the committed request vector
//! decrypts and mutations of it reach every check). Nothing panics; whatever decrypts names our
//! key as receiver, keeps its four marker fields, and survives a round trip through
//! `encrypt_json`/`decrypt_json` to ourselves unchanged.
#![no_main]

use cocoon_field_encryption::{
    decrypt_json, encrypt_json, is_encrypted, receiver_public_key, Direction, SecretSeed,
    MARKER_FIELDS,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use serde_json::Value;

/// Upstream's fixed key-manager test key (`BwrYLmEy…OmM=`), public key `fb67d0fc…5818`.
const NETWORK_SEED: [u8; 32] = [
    0x07, 0x0a, 0xd8, 0x2e, 0x61, 0x32, 0xda, 0xb3, 0x20, 0x67, 0xfb, 0x72, 0x0a, 0xfd, 0x00, 0x60,
    0x55, 0x5a, 0x64, 0xf9, 0x05, 0xbb, 0xec, 0x0d, 0xc2, 0x84, 0x90, 0x88, 0x95, 0x1b, 0x3a, 0x63,
];

fn without_markers(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for name in MARKER_FIELDS {
            obj.remove(name);
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let seed = SecretSeed::from_bytes(NETWORK_SEED);
    let _ = receiver_public_key(&value);
    let encrypted = is_encrypted(&value);
    let Ok(dec) = decrypt_json(value, &seed, Direction::ClientToWorker, None) else {
        return;
    };
    assert!(encrypted);
    assert_eq!(dec.receiver_public_key, seed.public_key());
    for name in MARKER_FIELDS {
        assert!(dec.value[name].is_string(), "{name} kept");
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let own = seed.public_key();
    let again = encrypt_json(
        dec.value.clone(),
        &seed,
        &own,
        Direction::WorkerToClient,
        &mut rng,
    )
    .expect("what decrypted re-encrypts");
    let back = decrypt_json(again, &seed, Direction::WorkerToClient, Some(own))
        .expect("and decrypts again");
    assert_eq!(without_markers(back.value), without_markers(dec.value));
});
