use super::*;
use crate::test_support::{
    app_seed, hex32, network_seed, APP_PUBLIC_HEX, NETWORK_PUBLIC_HEX, NETWORK_SEED_HEX,
};

/// keys-and-secrets.json
const X25519_SHARED_HEX: &str = "b82de95201e7a6edde15e35bab163f756048515aac971ad437240b2e39926227";
const REQUEST_NONCE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const REQUEST_SECRET_HEX: &str = "9c282d20a5502090e866d462903424d5c6d58b9a68773eefec7ab337105c5129";
const ANSWER_NONCE: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const ANSWER_SECRET_HEX: &str = "306fb0d6b4786000554d197f2e5b45a72032b1b6b6b07ee8309c83053000d1ac";

#[test]
fn public_keys_of_the_vector_seeds() {
    assert_eq!(hex::encode(app_seed().public_key()), APP_PUBLIC_HEX);
    assert_eq!(hex::encode(network_seed().public_key()), NETWORK_PUBLIC_HEX);
}

#[test]
fn public_key_matches_rfc8032_test_1() {
    // RFC 8032 §7.1, TEST 1.
    let seed = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    assert_eq!(
        hex::encode(SecretSeed::from_bytes(seed).public_key()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn x25519_is_symmetric_and_matches_the_vector() {
    let app_to_net = x25519(&app_seed(), &hex32(NETWORK_PUBLIC_HEX)).unwrap();
    let net_to_app = x25519(&network_seed(), &hex32(APP_PUBLIC_HEX)).unwrap();
    assert_eq!(hex::encode(*app_to_net), X25519_SHARED_HEX);
    assert_eq!(*app_to_net, *net_to_app);
}

#[test]
fn shared_secrets_of_both_vectors_from_both_sides() {
    let net_pub = hex32(NETWORK_PUBLIC_HEX);
    let app_pub = hex32(APP_PUBLIC_HEX);
    let c = Direction::ClientToWorker;
    let w = Direction::WorkerToClient;
    let app_c = shared_secret(&app_seed(), &net_pub, REQUEST_NONCE, c).unwrap();
    let net_c = shared_secret(&network_seed(), &app_pub, REQUEST_NONCE, c).unwrap();
    assert_eq!(hex::encode(app_c.as_bytes()), REQUEST_SECRET_HEX);
    assert_eq!(app_c.as_bytes(), net_c.as_bytes());
    let net_w = shared_secret(&network_seed(), &app_pub, ANSWER_NONCE, w).unwrap();
    let app_w = shared_secret(&app_seed(), &net_pub, ANSWER_NONCE, w).unwrap();
    assert_eq!(hex::encode(net_w.as_bytes()), ANSWER_SECRET_HEX);
    assert_eq!(net_w.as_bytes(), app_w.as_bytes());
    // Same nonce, other direction: another key.
    let app_w_same_nonce = shared_secret(&app_seed(), &net_pub, REQUEST_NONCE, w).unwrap();
    assert_ne!(app_w_same_nonce.as_bytes(), app_c.as_bytes());
}

#[test]
fn the_sign_bit_of_the_peer_key_is_ignored_as_upstream() {
    // Upstream computes u from y alone; the sign bit only picks ±x, which has the same u.
    let mut flipped = hex32(NETWORK_PUBLIC_HEX);
    flipped[31] ^= 0x80;
    let d = Direction::ClientToWorker;
    let a = shared_secret(&app_seed(), &hex32(NETWORK_PUBLIC_HEX), "n", d).unwrap();
    let b = shared_secret(&app_seed(), &flipped, "n", d).unwrap();
    assert_eq!(a.as_bytes(), b.as_bytes());
}

#[test]
fn small_order_peer_keys_are_refused() {
    let d = Direction::ClientToWorker;
    // y = 0 (the all-zero key) is a point of order 4; y = 1 is the identity; y = −1 has order 2.
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for key in [[0u8; 32], identity, minus_one] {
        assert_eq!(
            shared_secret(&app_seed(), &key, "n", d).unwrap_err(),
            KeyError::ZeroSharedSecret
        );
    }
}

#[test]
fn bytes_that_are_no_curve_point_are_refused() {
    // Find a y whose x² = (y² − 1)/(d·y² + 1) has no square root (about half of all y).
    let off_curve = (2u8..=255)
        .map(|y| {
            let mut key = [0u8; 32];
            key[0] = y;
            key
        })
        .find(|key| CompressedEdwardsY(*key).decompress().is_none())
        .expect("some small y is off the curve");
    assert_eq!(
        shared_secret(&app_seed(), &off_curve, "n", Direction::ClientToWorker).unwrap_err(),
        KeyError::NotOnCurve
    );
}

#[test]
fn public_keys_parse_in_the_three_forms() {
    let key = hex32(NETWORK_PUBLIC_HEX);
    assert_eq!(parse_public_key(NETWORK_PUBLIC_HEX), Ok(key));
    assert_eq!(
        parse_public_key(&NETWORK_PUBLIC_HEX.to_uppercase()),
        Ok(key)
    );
    assert_eq!(
        parse_public_key("+2fQ/NM48g4NSVfZ6CrcEB0uNROkSKOrRgUu4biMWBg="),
        Ok(key)
    );
    let raw = "0123456789abcdefghijklmnopqrstuv";
    assert_eq!(parse_public_key(raw).unwrap().as_slice(), raw.as_bytes());
}

#[test]
fn malformed_public_keys_are_refused() {
    let bad = [
        "",
        "abc",
        &NETWORK_PUBLIC_HEX[..62],
        &format!("{NETWORK_PUBLIC_HEX}00"),
        // 64 characters, not hex.
        &"zz".repeat(32),
        // 64 bytes, but multi-byte characters.
        &"é".repeat(32),
        // 44 characters, not base64.
        &"!".repeat(44),
        // 44 characters of base64 without padding: 33 bytes.
        &"A".repeat(44),
        // url-safe alphabet.
        "-2fQ_NM48g4NSVfZ6CrcEB0uNROkSKOrRgUu4biMWBg=",
    ];
    for s in bad {
        assert_eq!(parse_public_key(s), Err(KeyError::BadFormat), "{s:?}");
    }
}

#[test]
fn debug_output_has_no_key_bytes() {
    let seed = network_seed();
    let secret = SharedSecret::from_bytes(hex32(REQUEST_SECRET_HEX));
    for shown in [format!("{seed:?}"), format!("{secret:?}")] {
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains(&NETWORK_SEED_HEX[..8]), "{shown}");
        assert!(!shown.contains(&REQUEST_SECRET_HEX[..8]), "{shown}");
        assert!(!shown.contains("7, 10"), "{shown}");
    }
}

#[test]
fn generated_seeds_differ() {
    let mut rng = rand::rng();
    let a = SecretSeed::generate(&mut rng);
    let b = SecretSeed::generate(&mut rng);
    assert_ne!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.public_key(), b.public_key());
}
