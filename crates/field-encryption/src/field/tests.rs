use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::test_support::{hex32, VectorRng};

/// Every intermediate value of single-string encryption, recorded by upstream's cross-check tool.
const STRING_VECTORS: &str = include_str!("../../tests/data/encryption/string-vectors.json");
const REQUEST_SECRET_HEX: &str = "9c282d20a5502090e866d462903424d5c6d58b9a68773eefec7ab337105c5129";

fn request_secret() -> SharedSecret {
    SharedSecret::from_bytes(hex32(REQUEST_SECRET_HEX))
}

fn field_hex(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap()).unwrap()
}

#[test]
fn every_string_vector_with_every_intermediate_value() {
    let vectors: Vec<Value> = serde_json::from_str(STRING_VECTORS).unwrap();
    assert_eq!(vectors.len(), 6);
    for v in &vectors {
        let plaintext = v["plaintext"].as_str().unwrap();
        let secret = SharedSecret::from_bytes(hex32(v["secret_hex"].as_str().unwrap()));
        assert_eq!(plaintext.as_bytes(), field_hex(v, "plaintext_utf8_hex"));

        let p = prefix_len(plaintext.len());
        assert_eq!(p as u64, v["prefix_len"].as_u64().unwrap(), "{plaintext:?}");

        let keys = Keys::derive(&secret);
        assert_eq!(keys.enc_key.to_vec(), field_hex(v, "enc_key_hex"));
        assert_eq!(keys.mac_key.to_vec(), field_hex(v, "mac_key_hex"));

        let prefix = field_hex(v, "prefix_hex");
        assert_eq!(prefix.len(), p);
        let plain = [prefix.as_slice(), plaintext.as_bytes()].concat();
        let msg_key = keys.msg_key(&plain);
        assert_eq!(msg_key.to_vec(), field_hex(v, "msg_key_hex"));

        let (aes_key, iv) = keys.cipher(&msg_key);
        assert_eq!(aes_key.to_vec(), field_hex(v, "aes_key_hex"));
        assert_eq!(iv.to_vec(), field_hex(v, "aes_iv_hex"));

        let field = v["field"].as_str().unwrap();
        assert_eq!(
            encrypt_string(&secret, plaintext, &mut VectorRng::new(0)),
            field
        );
        assert_eq!(decrypt_string(&secret, field).unwrap(), plaintext);
    }
}

#[test]
fn prefix_makes_every_length_block_aligned() {
    for n in 0..200 {
        let p = prefix_len(n);
        assert!((16..=31).contains(&p), "n={n} p={p}");
        assert_eq!((p + n) % 16, 0, "n={n}");
    }
}

#[test]
fn dec_fields_are_taken_as_they_are() {
    let secret = request_secret();
    assert_eq!(decrypt_string(&secret, "DEC_hello").unwrap(), "hello");
    assert_eq!(decrypt_string(&secret, "DEC_").unwrap(), "");
    assert_eq!(decrypt_string(&secret, "DEC_ENC_00").unwrap(), "ENC_00");
}

#[test]
fn other_methods_are_refused() {
    let secret = request_secret();
    for field in ["", "hello", "enc_00", "ENC", "DEC", " ENC_00", "dec_x"] {
        assert_eq!(
            decrypt_string(&secret, field),
            Err(FieldError::BadMethod),
            "{field:?}"
        );
    }
}

#[test]
fn malformed_hex_and_lengths_are_refused() {
    let secret = request_secret();
    assert_eq!(decrypt_string(&secret, "ENC_0"), Err(FieldError::NotHex));
    assert_eq!(decrypt_string(&secret, "ENC_zz"), Err(FieldError::NotHex));
    let bad_lengths = [0usize, 1, 15, 17, 31, 33, 47];
    for len in bad_lengths {
        let field = format!("ENC_{}", "00".repeat(len));
        assert_eq!(
            decrypt_string(&secret, &field),
            Err(FieldError::BadLength { len }),
            "{len}"
        );
    }
}

#[test]
fn tampering_anywhere_is_a_msg_key_mismatch() {
    let secret = request_secret();
    let field = encrypt_string(&secret, "secret hello", &mut rand::rng());
    let data = hex::decode(&field[4..]).unwrap();
    for i in 0..data.len() {
        let mut tampered = data.clone();
        tampered[i] ^= 0x01;
        let tampered = format!("ENC_{}", hex::encode(tampered));
        assert_eq!(
            decrypt_string(&secret, &tampered),
            Err(FieldError::MsgKeyMismatch),
            "byte {i}"
        );
    }
    // A block more or less: still a multiple of 16, still refused.
    let shorter = format!("ENC_{}", hex::encode(&data[..data.len() - 16]));
    assert_eq!(
        decrypt_string(&secret, &shorter),
        Err(FieldError::MsgKeyMismatch)
    );
}

#[test]
fn the_wrong_secret_is_a_msg_key_mismatch() {
    let field = encrypt_string(&request_secret(), "secret hello", &mut rand::rng());
    let other = SharedSecret::from_bytes([7; 32]);
    assert_eq!(
        decrypt_string(&other, &field),
        Err(FieldError::MsgKeyMismatch)
    );
}

#[test]
fn authentic_plaintexts_with_a_bad_prefix_size_are_refused() {
    let secret = request_secret();
    let sealed = |plain: &[u8]| format!("ENC_{}", hex::encode(seal(&secret, plain)));
    // P = 15 (< 16), P = 33 (> length 32), P = 0, and an empty plaintext (upstream's C++ would
    // read past its end).
    let mut short = [0u8; 32];
    short[0] = 15;
    let mut long = [0u8; 32];
    long[0] = 33;
    for plain in [&short[..], &long[..], &[0u8; 16][..], &[][..]] {
        assert_eq!(
            decrypt_string(&secret, &sealed(plain)),
            Err(FieldError::InvalidPrefixSize),
            "{plain:?}"
        );
    }
    // P = length: an empty string, as upstream.
    let mut whole = [0u8; 32];
    whole[0] = 32;
    assert_eq!(decrypt_string(&secret, &sealed(&whole)).unwrap(), "");
}

#[test]
fn authentic_non_utf8_plaintext_is_refused() {
    let secret = request_secret();
    let mut plain = [0u8; 32];
    plain[0] = 16;
    plain[16] = 0xff;
    let field = format!("ENC_{}", hex::encode(seal(&secret, &plain)));
    assert_eq!(decrypt_string(&secret, &field), Err(FieldError::NotUtf8));
}

#[test]
fn upper_case_hex_is_read() {
    let secret = request_secret();
    let field = encrypt_string(&secret, "user", &mut rand::rng());
    let upper = format!("ENC_{}", field[4..].to_uppercase());
    assert_eq!(decrypt_string(&secret, &upper).unwrap(), "user");
}

#[test]
fn errors_carry_no_content() {
    let secret = request_secret();
    let field = encrypt_string(&secret, "do not print me", &mut rand::rng());
    let mut data = hex::decode(&field[4..]).unwrap();
    data[20] ^= 1;
    let err = decrypt_string(&secret, &format!("ENC_{}", hex::encode(&data))).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("print"), "{shown}");
    assert!(!shown.contains(&field[4..20]), "{shown}");
}

proptest! {
    #[test]
    fn strings_round_trip(s in any::<String>(), key in any::<[u8; 32]>()) {
        let secret = SharedSecret::from_bytes(key);
        let field = encrypt_string(&secret, &s, &mut rand::rng());
        prop_assert!(field.starts_with(ENC_PREFIX));
        let data_len = (field.len() - ENC_PREFIX.len()) / 2;
        prop_assert!(data_len >= 16 + 16 + s.len() && data_len <= 16 + 31 + s.len());
        prop_assert_eq!(decrypt_string(&secret, &field).unwrap(), s);
    }

    #[test]
    fn any_text_decrypts_or_is_refused_without_panicking(s in any::<String>()) {
        let _ = decrypt_string(&request_secret(), &s);
        let _ = decrypt_string(&request_secret(), &format!("ENC_{s}"));
    }

    #[test]
    fn any_bytes_decrypt_or_are_refused_without_panicking(
        data in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = decrypt_string(&request_secret(), &format!("ENC_{}", hex::encode(data)));
    }
}
