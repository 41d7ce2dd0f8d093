use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::test_support::{
    app_seed, hex32, network_seed, VectorRng, APP_PUBLIC_HEX, NETWORK_PUBLIC_HEX,
};

const C: Direction = Direction::ClientToWorker;
const W: Direction = Direction::WorkerToClient;

fn net_pub() -> [u8; 32] {
    hex32(NETWORK_PUBLIC_HEX)
}

fn app_pub() -> [u8; 32] {
    hex32(APP_PUBLIC_HEX)
}

fn request() -> Value {
    json!({
        "model": "Qwen/Qwen3-8B",
        "messages": [
            {"role": "system", "content": "be brief", "model": "nested model stays clear"},
            {"role": "user", "content": [{"type": "text", "text": "secret hello"}]},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "stream": true,
        "stop": ["x", "y"],
        "debug": {"note": "not entered", "deeper": ["clear"]},
        "request_guid": "guid-1",
        "logit_bias": {"50256": -100},
        "user": null,
    })
}

/// Encrypts `value` from the app to the network (a request).
fn encrypt_request(value: Value) -> Value {
    encrypt_json(value, &app_seed(), &net_pub(), C, &mut rand::rng()).unwrap()
}

fn decrypt_request(value: Value) -> Result<Decrypted, JsonError> {
    decrypt_json(value, &network_seed(), C, None)
}

fn with_markers(mut plain: Value, enc: &Value) -> Value {
    for name in MARKER_FIELDS {
        plain[name] = enc[name].clone();
    }
    plain
}

#[test]
fn request_round_trip_keeps_markers_and_clear_fields() {
    let enc = encrypt_request(request());
    assert_eq!(enc["is_encrypted"], "v1");
    assert_eq!(enc["sender_public_key"], APP_PUBLIC_HEX);
    assert_eq!(enc["receiver_public_key"], NETWORK_PUBLIC_HEX);
    let nonce = enc["encryption_nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 44);

    // In clear at every depth: model (top and nested), max_tokens, debug's whole subtree,
    // request_guid; numbers, booleans, null and keys untouched.
    assert_eq!(enc["model"], "Qwen/Qwen3-8B");
    assert_eq!(enc["messages"][0]["model"], "nested model stays clear");
    assert_eq!(enc["debug"], request()["debug"]);
    assert_eq!(enc["request_guid"], "guid-1");
    assert_eq!(enc["max_tokens"], 100);
    assert_eq!(enc["temperature"], 0.5);
    assert_eq!(enc["stream"], true);
    assert_eq!(enc["logit_bias"], json!({"50256": -100}));
    assert_eq!(enc["user"], Value::Null);
    // Encrypted: object members and array elements at any depth.
    for s in [
        &enc["messages"][0]["role"],
        &enc["messages"][0]["content"],
        &enc["messages"][1]["content"][0]["text"],
        &enc["messages"][1]["content"][0]["type"],
        &enc["stop"][0],
        &enc["stop"][1],
    ] {
        assert!(s.as_str().unwrap().starts_with("ENC_"), "{s}");
    }

    let dec = decrypt_request(enc.clone()).unwrap();
    assert_eq!(dec.value, with_markers(request(), &enc));
    assert_eq!(dec.sender_public_key, app_pub());
    assert_eq!(dec.receiver_public_key, net_pub());
}

#[test]
fn answer_round_trip_with_the_expected_sender() {
    let answer = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "Hi"}}],
                        "usage": {"prompt_tokens": 3}});
    let enc = encrypt_json(
        answer.clone(),
        &network_seed(),
        &app_pub(),
        W,
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(enc["sender_public_key"], NETWORK_PUBLIC_HEX);
    assert_eq!(enc["receiver_public_key"], APP_PUBLIC_HEX);
    let dec = decrypt_json(enc.clone(), &app_seed(), W, Some(net_pub())).unwrap();
    assert_eq!(dec.value, with_markers(answer, &enc));
    assert_eq!(dec.sender_public_key, net_pub());
}

#[test]
fn the_other_direction_does_not_decrypt() {
    let enc = encrypt_request(request());
    let err = decrypt_json(enc, &network_seed(), W, None).unwrap_err();
    assert!(
        matches!(
            err,
            JsonError::Field {
                reason: FieldError::MsgKeyMismatch,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_vector_nonce_and_prefixes_come_from_the_rng() {
    let enc = encrypt_json(
        json!({"s": "user"}),
        &app_seed(),
        &net_pub(),
        C,
        &mut VectorRng::new(0),
    )
    .unwrap();
    assert_eq!(
        enc["encryption_nonce"],
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    // string-vectors.json, "user".
    assert_eq!(
        enc["s"],
        "ENC_bc97a2829a5af09bd53f9fdf9bdbbd63dfdf8b65b93fa62bbd7c728f1bda333a83bca3024d18adf8fcbef92fb8e1b5f3"
    );
}

#[test]
fn keys_in_base64_and_raw_form_are_read() {
    let enc = encrypt_request(json!({"a": "b"}));
    let b64 = |hex_key: &str| base64::engine::general_purpose::STANDARD.encode(hex32(hex_key));
    let mut alt = enc.clone();
    alt["sender_public_key"] = b64(APP_PUBLIC_HEX).into();
    alt["receiver_public_key"] = b64(NETWORK_PUBLIC_HEX).into();
    assert_eq!(decrypt_request(alt).unwrap().value["a"], "b");
    // 32 raw characters: only a key whose bytes are UTF-8 can be written so; check the parse.
    assert_eq!(
        receiver_public_key(&json!({"receiver_public_key": "0123456789abcdefghijklmnopqrstuv"}))
            .unwrap(),
        Some(*b"0123456789abcdefghijklmnopqrstuv")
    );
}

#[test]
fn dec_fields_and_other_clear_strings() {
    let mut enc = encrypt_request(json!({"a": "b", "c": "d"}));
    enc["a"] = "DEC_left in clear".into();
    assert_eq!(
        decrypt_request(enc.clone()).unwrap().value["a"],
        "left in clear"
    );
    enc["c"] = "plain".into();
    assert_eq!(
        decrypt_request(enc).unwrap_err(),
        JsonError::Field {
            path: "c".into(),
            reason: FieldError::BadMethod
        }
    );
}

#[test]
fn a_tampered_field_is_named_by_its_path_and_nothing_else() {
    let mut enc = encrypt_request(request());
    let field = enc["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered = field.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    enc["messages"][1]["content"][0]["text"] = String::from_utf8(tampered).unwrap().into();
    let err = decrypt_request(enc).unwrap_err();
    assert_eq!(
        err,
        JsonError::Field {
            path: "messages.1.content.0.text".into(),
            reason: FieldError::MsgKeyMismatch
        }
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(!shown.contains(&field[4..20]), "{shown}");
}

#[test]
fn markers_are_required_as_strings() {
    let enc = encrypt_request(request());
    for name in MARKER_FIELDS.iter().skip(1) {
        let mut missing = enc.clone();
        missing.as_object_mut().unwrap().remove(*name);
        assert_eq!(
            decrypt_request(missing).unwrap_err(),
            JsonError::MissingEncryptionFields,
            "{name}"
        );
    }
    for name in MARKER_FIELDS {
        let mut not_string = enc.clone();
        not_string[name] = json!(1);
        assert_eq!(
            decrypt_request(not_string).unwrap_err(),
            JsonError::MissingEncryptionFields,
            "{name}"
        );
    }
    let mut unencrypted = enc.clone();
    unencrypted.as_object_mut().unwrap().remove("is_encrypted");
    assert_eq!(
        decrypt_request(unencrypted).unwrap_err(),
        JsonError::NotEncrypted
    );
    // Any string in is_encrypted will do (upstream checks presence only).
    let mut other_version = enc;
    other_version["is_encrypted"] = "v9".into();
    assert!(decrypt_request(other_version).is_ok());
}

#[test]
fn only_objects_are_messages() {
    for value in [json!([1]), json!("ENC_00"), json!(null), json!(3)] {
        assert_eq!(
            decrypt_request(value.clone()).unwrap_err(),
            JsonError::NotAnObject
        );
        assert_eq!(
            encrypt_json(value, &app_seed(), &net_pub(), C, &mut rand::rng()).unwrap_err(),
            JsonError::NotAnObject
        );
    }
}

#[test]
fn the_wrong_receiver_or_sender_is_a_public_key_mismatch() {
    let enc = encrypt_request(request());
    // Decrypting with the app seed: receiver_public_key is the network's, not ours.
    assert_eq!(
        decrypt_json(enc.clone(), &app_seed(), C, None).unwrap_err(),
        JsonError::ReceiverMismatch
    );
    let stranger = SecretSeed::from_bytes([9; 32]);
    assert_eq!(
        decrypt_json(enc.clone(), &stranger, C, None).unwrap_err(),
        JsonError::ReceiverMismatch
    );
    // The receiver named is ours, but the sender is not whom we expected.
    assert_eq!(
        decrypt_json(enc.clone(), &network_seed(), C, Some(stranger.public_key())).unwrap_err(),
        JsonError::SenderMismatch
    );
    assert!(decrypt_json(enc, &network_seed(), C, Some(app_pub())).is_ok());
}

#[test]
fn a_swapped_sender_key_does_not_decrypt() {
    let mut enc = encrypt_request(request());
    enc["sender_public_key"] = hex::encode(SecretSeed::from_bytes([9; 32]).public_key()).into();
    assert!(matches!(
        decrypt_request(enc).unwrap_err(),
        JsonError::Field {
            reason: FieldError::MsgKeyMismatch,
            ..
        }
    ));
}

#[test]
fn zero_malformed_and_off_curve_keys_are_refused() {
    let enc = encrypt_request(request());
    let cases = [
        (
            SENDER_PUBLIC_KEY,
            hex::encode([0u8; 32]),
            KeyError::ZeroSharedSecret,
        ),
        (SENDER_PUBLIC_KEY, "abcd".to_owned(), KeyError::BadFormat),
        (RECEIVER_PUBLIC_KEY, "x".repeat(63), KeyError::BadFormat),
        (SENDER_PUBLIC_KEY, off_curve_hex(), KeyError::NotOnCurve),
    ];
    for (field, key, reason) in cases {
        let mut bad = enc.clone();
        bad[field] = key.into();
        assert_eq!(
            decrypt_request(bad).unwrap_err(),
            JsonError::Key { field, reason }
        );
    }
    // Encrypting to such keys fails the same way.
    assert_eq!(
        encrypt_json(request(), &app_seed(), &[0; 32], C, &mut rand::rng()).unwrap_err(),
        JsonError::Key {
            field: RECEIVER_PUBLIC_KEY,
            reason: KeyError::ZeroSharedSecret
        }
    );
}

fn off_curve_hex() -> String {
    (2u8..=255)
        .map(|y| {
            let mut key = [0u8; 32];
            key[0] = y;
            key
        })
        .find(|key| {
            curve25519_dalek::edwards::CompressedEdwardsY(*key)
                .decompress()
                .is_none()
        })
        .map(hex::encode)
        .unwrap()
}

/// `depth` arrays nested in each other, the innermost holding one string.
fn nested(depth: usize) -> Value {
    let mut v = json!("deep");
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn nesting_is_bounded_where_the_walk_goes() {
    let ok = encrypt_request(json!({"a": nested(MAX_DEPTH)}));
    let mut inner = &ok["a"];
    for _ in 0..MAX_DEPTH {
        inner = &inner[0];
    }
    assert!(inner.as_str().unwrap().starts_with("ENC_"));
    assert_eq!(decrypt_request(ok).unwrap().value["a"], nested(MAX_DEPTH));

    let err = encrypt_json(
        json!({"a": nested(MAX_DEPTH + 1)}),
        &app_seed(),
        &net_pub(),
        C,
        &mut rand::rng(),
    )
    .unwrap_err();
    let JsonError::TooDeep { path, limit } = err else {
        panic!("{err:?}");
    };
    assert_eq!(limit, MAX_DEPTH);
    assert!(path.starts_with("a.0.0."), "{path}");

    // A clear field's subtree is not entered, so its depth does not count.
    let clear = encrypt_request(json!({"debug": nested(MAX_DEPTH + 10)}));
    assert_eq!(clear["debug"], nested(MAX_DEPTH + 10));
}

#[test]
fn the_number_of_fields_is_bounded() {
    let many = json!({"a": vec![0; MAX_FIELDS]});
    let err = encrypt_json(many, &app_seed(), &net_pub(), C, &mut rand::rng()).unwrap_err();
    assert_eq!(err, JsonError::TooManyFields { limit: MAX_FIELDS });
    // Within the limit (the four markers and "a" count too).
    let fits = json!({"a": vec![0; MAX_FIELDS - 5]});
    assert!(encrypt_request_checked(fits).is_ok());
}

fn encrypt_request_checked(value: Value) -> Result<Value, JsonError> {
    encrypt_json(value, &app_seed(), &net_pub(), C, &mut rand::rng())
}

#[test]
fn long_paths_are_cut() {
    let long_key = "k".repeat(1000);
    let mut enc = encrypt_request(json!({ long_key.clone(): "v" }));
    enc[&long_key] = "plain".into();
    let JsonError::Field { path, .. } = decrypt_request(enc).unwrap_err() else {
        panic!()
    };
    assert!(path.len() <= MAX_PATH_LEN + "…".len(), "{}", path.len());
    assert!(path.ends_with('…'));
}

#[test]
fn encrypted_requests_are_recognised_and_their_key_read() {
    let enc = encrypt_request(request());
    assert!(is_encrypted(&enc));
    assert!(!is_encrypted(&request()));
    assert!(!is_encrypted(&json!(["is_encrypted"])));
    assert!(is_encrypted(&json!({"is_encrypted": 1})));
    assert_eq!(receiver_public_key(&enc).unwrap(), Some(net_pub()));
    assert_eq!(receiver_public_key(&request()).unwrap(), None);
    assert_eq!(receiver_public_key(&json!([1])).unwrap(), None);
    for bad in [
        json!({"receiver_public_key": 5}),
        json!({"receiver_public_key": "abc"}),
    ] {
        assert_eq!(
            receiver_public_key(&bad).unwrap_err(),
            JsonError::Key {
                field: RECEIVER_PUBLIC_KEY,
                reason: KeyError::BadFormat
            }
        );
    }
}

// === proptest ===

/// Member names: the marker and clear names (to exercise the exclusions below the top), short
/// arbitrary ones, and array-index look-alikes.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            MARKER_FIELDS
                .iter()
                .chain(CLEAR_FIELDS.iter())
                .copied()
                .collect::<Vec<_>>()
        )
        .prop_map(str::to_owned),
        "[a-z_]{0,8}",
        "[0-9]{1,2}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec!["", "ENC_", "DEC_x", "v1"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A top-level object without the marker fields (which encrypt_json overwrites).
fn message() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), json_value(), 0..8).prop_map(|mut m| {
        for name in MARKER_FIELDS {
            m.remove(name);
        }
        Value::Object(m.into_iter().collect())
    })
}

/// Checks `enc` against `plain`: excluded members identical, walked strings `ENC_`, everything
/// else the same shape.
fn assert_encrypted_shape(plain: &Value, enc: &Value) {
    match (plain, enc) {
        (Value::String(_), Value::String(e)) => assert!(e.starts_with("ENC_"), "{e}"),
        (Value::Object(p), Value::Object(e)) => {
            for (k, pv) in p {
                let ev = &e[k];
                if is_walked(k) {
                    assert_encrypted_shape(pv, ev);
                } else {
                    assert_eq!(pv, ev, "{k} must stay clear");
                }
            }
        }
        (Value::Array(p), Value::Array(e)) => {
            assert_eq!(p.len(), e.len());
            for (pv, ev) in p.iter().zip(e) {
                assert_encrypted_shape(pv, ev);
            }
        }
        (p, e) => assert_eq!(p, e),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn requests_round_trip(plain in message()) {
        let enc = encrypt_request(plain.clone());
        assert_encrypted_shape(&plain, &enc);
        let dec = decrypt_request(enc.clone()).unwrap();
        prop_assert_eq!(dec.value, with_markers(plain, &enc));
    }

    #[test]
    fn answers_round_trip(plain in message()) {
        let enc = encrypt_json(plain.clone(), &network_seed(), &app_pub(), W, &mut rand::rng())
            .unwrap();
        assert_encrypted_shape(&plain, &enc);
        let dec = decrypt_json(enc.clone(), &app_seed(), W, Some(net_pub())).unwrap();
        prop_assert_eq!(dec.value, with_markers(plain, &enc));
    }

    #[test]
    fn any_value_decrypts_or_is_refused_without_panicking(
        body in message(),
        sender in any::<[u8; 32]>(),
    ) {
        let mut body = body;
        body["is_encrypted"] = "v1".into();
        body["sender_public_key"] = hex::encode(sender).into();
        body["receiver_public_key"] = NETWORK_PUBLIC_HEX.into();
        body["encryption_nonce"] = "n".into();
        let _ = decrypt_request(body);
    }
}
