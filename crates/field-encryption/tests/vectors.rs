//! Golden tests against upstream COCOON 9060ce5 (tests/data, copied from
//! testdata/cocoon-9060ce5; see tests/data/README.md): the deterministic request and answer
//! vectors reproduced byte for byte, and the ciphertexts upstream's own `encrypt-message` and
//! worker produced in a running network decrypted to what upstream decrypted them to.
//!
//! Upstream dumps JSON with sorted keys; serde_json's map order depends on a feature other crates
//! may turn on, so outputs are compared after sorting ([`upstream_dump`]).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::PathBuf;

use cocoon_field_encryption::{
    decrypt_json, encrypt_json, is_encrypted, receiver_public_key, Direction, JsonError,
    SecretSeed, MARKER_FIELDS,
};
use serde_json::{Map, Value};

const C: Direction = Direction::ClientToWorker;
const W: Direction = Direction::WorkerToClient;

fn data(path: &str) -> Vec<u8> {
    let full: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", path]
        .iter()
        .collect();
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn text(path: &str) -> String {
    String::from_utf8(data(path)).unwrap()
}

fn json(path: &str) -> Value {
    serde_json::from_slice(&data(path)).unwrap()
}

/// Every JSON value of a JSON-lines file.
fn json_lines(path: &str) -> Vec<Value> {
    text(path)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `value.dump()` as upstream's nlohmann::json writes it here: sorted keys, no spaces.
fn upstream_dump(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect::<Map<_, _>>(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(value)).unwrap()
}

struct Keys {
    app_seed: SecretSeed,
    app_public: [u8; 32],
    network_seed: SecretSeed,
    network_public: [u8; 32],
}

fn hex32(v: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().unwrap(), &mut out).unwrap();
    out
}

fn keys() -> Keys {
    let k = json("encryption/keys-and-secrets.json");
    let app_seed: [u8; 32] = data("encryption/app-seed.bin").try_into().unwrap();
    assert_eq!(app_seed, hex32(&k["app_seed_hex"]));
    let keys = Keys {
        app_seed: SecretSeed::from_bytes(app_seed),
        app_public: hex32(&k["app_public_hex"]),
        network_seed: SecretSeed::from_bytes(hex32(&k["network_seed_hex"])),
        network_public: hex32(&k["network_public_hex"]),
    };
    assert_eq!(keys.app_seed.public_key(), keys.app_public);
    assert_eq!(keys.network_seed.public_key(), keys.network_public);
    keys
}

/// The randomness of `tools/make_enc_vectors.py`: the first request (the nonce) gets bytes
/// `first, first+1, …`; every later one (a prefix of P bytes) gets `0, 1, …, P−1`, whose byte 0
/// the encryptor replaces by P.
struct VectorRng {
    next_start: u8,
}

impl rand::RngCore for VectorRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("the encryptor only calls fill_bytes")
    }

    fn next_u64(&mut self) -> u64 {
        unimplemented!("the encryptor only calls fill_bytes")
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.next_start.wrapping_add(i as u8);
        }
        self.next_start = 0;
    }
}

impl rand::CryptoRng for VectorRng {}

/// `plain` plus the four marker fields of `enc`: what decryption gives back.
fn with_markers(mut plain: Value, enc: &Value) -> Value {
    for name in MARKER_FIELDS {
        plain[name] = enc[name].clone();
    }
    plain
}

#[test]
fn request_vector_byte_for_byte_and_back() {
    let k = keys();
    let plain = json("encryption/request.plain.json");
    let expected = text("encryption/request.enc.json");
    let mut rng = VectorRng { next_start: 0 };
    let enc = encrypt_json(plain.clone(), &k.app_seed, &k.network_public, C, &mut rng).unwrap();
    assert_eq!(upstream_dump(&enc), expected.trim_end());

    let dec = decrypt_json(enc.clone(), &k.network_seed, C, None).unwrap();
    assert_eq!(dec.value, with_markers(plain, &enc));
    assert_eq!(dec.sender_public_key, k.app_public);
    assert_eq!(dec.receiver_public_key, k.network_public);
}

#[test]
fn answer_vector_byte_for_byte_and_back() {
    let k = keys();
    let plain = json("encryption/answer.plain.json");
    let expected = text("encryption/answer.enc.json");
    let mut rng = VectorRng { next_start: 32 };
    let enc = encrypt_json(plain.clone(), &k.network_seed, &k.app_public, W, &mut rng).unwrap();
    assert_eq!(upstream_dump(&enc), expected.trim_end());

    let dec = decrypt_json(enc, &k.app_seed, W, Some(k.network_public)).unwrap();
    // Upstream's `encrypt-message -d` gave exactly this.
    let by_upstream = text("encryption/answer.decrypted-by-encrypt-message.json");
    assert_eq!(upstream_dump(&dec.value), by_upstream.trim_end());
}

#[test]
fn request_vector_decrypts_as_the_upstream_worker_took_it() {
    let k = keys();
    let enc = json("encryption/request.enc.json");
    assert!(is_encrypted(&enc));
    assert_eq!(receiver_public_key(&enc).unwrap(), Some(k.network_public));
    let dec = decrypt_json(enc.clone(), &k.network_seed, C, None).unwrap();
    assert_eq!(
        dec.value,
        with_markers(json("encryption/request.plain.json"), &enc)
    );
    assert_eq!(dec.value["messages"][0]["content"], "secret hello");
}

#[test]
fn upstream_worker_answer_to_the_request_vector() {
    let k = keys();
    let enc = json("encryption/request.enc.via-network.response.body");
    let dec = decrypt_json(enc, &k.app_seed, W, Some(k.network_public)).unwrap();
    let v = &dec.value;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the fake backend."
    );
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["id"], "chatcmpl-fake");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["total_tokens"], 18);
}

/// Each encrypted answer line of `response` decrypts (app seed, expected sender the network key)
/// to the same line of both upstream's and the Python tool's decryption, byte for byte.
fn check_captured_answer(name: &str) {
    let k = keys();
    let encrypted = json_lines(&format!("http/{name}.response.body"));
    let by_python = text(&format!("http/{name}.response.decrypted-by-python"));
    let by_upstream = text(&format!(
        "http/{name}.response.decrypted-by-encrypt-message"
    ));
    assert_eq!(by_python, by_upstream);
    let expected: Vec<&str> = by_python.lines().collect();
    assert_eq!(encrypted.len(), expected.len());
    for (enc, want) in encrypted.into_iter().zip(expected) {
        let dec = decrypt_json(enc, &k.app_seed, W, Some(k.network_public)).unwrap();
        assert_eq!(dec.sender_public_key, k.network_public);
        assert_eq!(dec.receiver_public_key, k.app_public);
        assert_eq!(upstream_dump(&dec.value), want);
    }
}

#[test]
fn captured_non_stream_answer_req7() {
    check_captured_answer("req7-encrypted-nonstream");
}

#[test]
fn captured_json_lines_answer_req8() {
    check_captured_answer("req8-encrypted-jsonl");
}

/// The request upstream's `encrypt-message` made decrypts (network seed) to the body upstream's
/// worker forwarded to the backend, less the fields that worker adds (`max_completion_tokens`,
/// and `stream_options` for streams).
fn check_captured_request(name: &str) {
    let k = keys();
    let enc = json(&format!("http/{name}.request.json"));
    let nonce = enc["encryption_nonce"].clone();
    assert_eq!(receiver_public_key(&enc).unwrap(), Some(k.network_public));
    let dec = decrypt_json(enc, &k.network_seed, C, None).unwrap();
    assert_eq!(dec.sender_public_key, k.app_public);

    let received = json_lines("http/backend-received.jsonl")
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap())
        .find(|body| body["encryption_nonce"] == nonce)
        .expect("the backend saw this request");
    let mut forwarded = received.as_object().unwrap().clone();
    forwarded.remove("max_completion_tokens");
    forwarded.remove("stream_options");
    assert_eq!(dec.value, Value::Object(forwarded));
    assert_eq!(dec.value["messages"][0]["content"], "secret hello");
}

#[test]
fn captured_request_req7() {
    check_captured_request("req7-encrypted-nonstream");
}

#[test]
fn captured_request_req8() {
    check_captured_request("req8-encrypted-jsonl");
}

#[test]
fn captured_answers_refuse_the_wrong_key() {
    let k = keys();
    let enc = json_lines("http/req7-encrypted-nonstream.response.body").remove(0);
    // The network seed is the sender here, not the receiver.
    assert_eq!(
        decrypt_json(enc.clone(), &k.network_seed, W, None).unwrap_err(),
        JsonError::ReceiverMismatch
    );
    // Expecting another sender (an app that encrypted to some other key).
    assert_eq!(
        decrypt_json(enc, &k.app_seed, W, Some(k.app_public)).unwrap_err(),
        JsonError::SenderMismatch
    );
}
