use proptest::prelude::*;
use ring::signature::Ed25519KeyPair;

use super::*;

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

fn statement(worker: &Ed25519KeyPair) -> WorkerStatement {
    WorkerStatement {
        request_hash: [1; 32],
        answer_hash: [2; 32],
        model_hash: [3; 32],
        image_hash: [0; 32],
        usage: Usage {
            prompt_tokens: 100,
            cached_tokens: 20,
            completion_tokens: 50,
            reasoning_tokens: 10,
            total_tokens: 150,
        },
        coefficient: 1000,
        started_ms: 1_700_000_000_000,
        ended_ms: 1_700_000_001_500,
        worker_key: Signer::public_key(worker),
    }
}

fn proxy_statement(proxy: &Ed25519KeyPair) -> ProxyStatement {
    ProxyStatement {
        price_per_token: 20,
        charge: 3000,
        proxy_key: Signer::public_key(proxy),
    }
}

fn receipt() -> Receipt {
    let (w, p) = (key(1), key(2));
    statement(&w)
        .sign(&w)
        .unwrap()
        .countersign(proxy_statement(&p), &p)
        .unwrap()
}

#[test]
fn sign_verify_countersign_round_trip() {
    let r = receipt();
    r.verify().unwrap();
    r.worker.verify().unwrap();
    assert_eq!(r.to_bytes().len(), RECEIPT_LEN);
    assert_eq!(r.worker.to_bytes().len(), WORKER_SIGNED_LEN);
    assert_eq!(Receipt::from_bytes(&r.to_bytes()).unwrap(), r);
    assert_eq!(
        WorkerSigned::from_bytes(&r.worker.to_bytes()).unwrap(),
        r.worker
    );
    assert_eq!(r.id(), crypto::sha256(&[&r.to_bytes()]));
    assert_eq!(Receipt::from_json(&r.to_json()).unwrap(), r);
}

#[test]
fn signatures_are_over_the_documented_domain_separated_messages() {
    let r = receipt();
    let st = r.worker.statement.to_bytes();
    let msg = [b"cocoon-rs worker receipt v1\0".as_slice(), &st].concat();
    signature::UnparsedPublicKey::new(&signature::ED25519, &r.worker.statement.worker_key)
        .verify(&msg, &r.worker.signature)
        .unwrap();
    let msg = [
        b"cocoon-rs proxy receipt v1\0".as_slice(),
        &r.worker.to_bytes(),
        &r.proxy.to_bytes(),
    ]
    .concat();
    signature::UnparsedPublicKey::new(&signature::ED25519, &r.proxy.proxy_key)
        .verify(&msg, &r.proxy_signature)
        .unwrap();
}

#[test]
fn byte_layout_offsets() {
    let r = receipt();
    let b = r.to_bytes();
    let s = &r.worker.statement;
    assert_eq!(WORKER_STATEMENT_LEN, 225);
    assert_eq!(PROXY_STATEMENT_LEN, 49);
    assert_eq!(RECEIPT_LEN, 402);
    assert_eq!(b[0], 1);
    assert_eq!(&b[1..33], &s.request_hash);
    assert_eq!(&b[33..65], &s.answer_hash);
    assert_eq!(&b[65..97], &s.model_hash);
    assert_eq!(&b[97..129], &s.image_hash);
    assert_eq!(&b[129..137], &100u64.to_be_bytes());
    assert_eq!(&b[161..169], &150u64.to_be_bytes());
    assert_eq!(&b[169..177], &1000u64.to_be_bytes());
    assert_eq!(&b[177..185], &s.started_ms.to_be_bytes());
    assert_eq!(&b[185..193], &s.ended_ms.to_be_bytes());
    assert_eq!(&b[193..225], &s.worker_key);
    assert_eq!(&b[225..289], &r.worker.signature);
    assert_eq!(b[289], 1);
    assert_eq!(&b[290..298], &20u64.to_be_bytes());
    assert_eq!(&b[298..306], &3000u64.to_be_bytes());
    assert_eq!(&b[306..338], &r.proxy.proxy_key);
    assert_eq!(&b[338..402], &r.proxy_signature);
}

#[test]
fn every_changed_statement_field_is_refused() {
    let r = receipt();
    let changes: Vec<fn(&mut WorkerStatement)> = vec![
        |s| s.request_hash[0] ^= 1,
        |s| s.answer_hash[31] ^= 1,
        |s| s.model_hash[5] ^= 1,
        |s| s.image_hash[9] ^= 1,
        |s| s.usage.prompt_tokens += 1,
        |s| s.usage.cached_tokens += 1,
        |s| s.usage.completion_tokens += 1,
        |s| s.usage.reasoning_tokens += 1,
        |s| s.usage.total_tokens += 1,
        |s| s.coefficient += 1,
        |s| s.started_ms += 1,
        |s| s.ended_ms += 1,
        |s| s.worker_key = Signer::public_key(&key(3)),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut bad = r.clone();
        change(&mut bad.worker.statement);
        assert_eq!(
            bad.worker.verify(),
            Err(SealError::BadSignature),
            "field {i}"
        );
        assert_eq!(bad.verify(), Err(SealError::BadSignature), "field {i}");
    }
    let proxy_changes: Vec<fn(&mut ProxyStatement)> =
        vec![|p| p.price_per_token += 1, |p| p.charge -= 1, |p| {
            p.proxy_key = Signer::public_key(&key(3))
        }];
    for (i, change) in proxy_changes.iter().enumerate() {
        let mut bad = r.clone();
        change(&mut bad.proxy);
        assert_eq!(
            bad.verify(),
            Err(SealError::BadSignature),
            "proxy field {i}"
        );
    }
    let mut bad = r.clone();
    bad.proxy_signature[0] ^= 1;
    assert_eq!(bad.verify(), Err(SealError::BadSignature));
}

#[test]
fn wrong_signers_are_refused() {
    let (w, other, p) = (key(1), key(9), key(2));
    // A signer whose key is not worker_key.
    assert_eq!(
        statement(&w).sign(&other).unwrap_err(),
        SealError::WrongSigner
    );
    // A signature by another key, presented as the worker's.
    let forged = WorkerSigned {
        statement: statement(&w),
        signature: Signer::sign(&other, &worker_message(&statement(&w).to_bytes())),
    };
    assert_eq!(forged.verify(), Err(SealError::BadSignature));
    // The proxy refuses to countersign it.
    assert_eq!(
        forged.countersign(proxy_statement(&p), &p).unwrap_err(),
        SealError::BadSignature
    );
    // A proxy signer whose key is not proxy_key.
    let signed = statement(&w).sign(&w).unwrap();
    assert_eq!(
        signed.countersign(proxy_statement(&p), &other).unwrap_err(),
        SealError::WrongSigner
    );
}

#[test]
fn a_proxy_signature_over_another_worker_signature_is_refused() {
    let r1 = receipt();
    let w = key(1);
    let mut s2 = statement(&w);
    s2.answer_hash = [7; 32];
    let w2 = s2.sign(&w).unwrap();
    w2.verify().unwrap();
    let spliced = Receipt { worker: w2, ..r1 };
    assert_eq!(spliced.verify(), Err(SealError::BadSignature));
}

/// A signer that returns garbage: signing notices.
struct BrokenSigner([u8; 32]);

impl Signer for BrokenSigner {
    fn public_key(&self) -> [u8; 32] {
        self.0
    }
    fn sign(&self, _msg: &[u8]) -> [u8; 64] {
        [0; 64]
    }
}

#[test]
fn a_broken_signer_is_noticed() {
    let w = key(1);
    let broken = BrokenSigner(Signer::public_key(&w));
    assert_eq!(
        statement(&w).sign(&broken).unwrap_err(),
        SealError::BadSignature
    );
    let p = key(2);
    let broken = BrokenSigner(Signer::public_key(&p));
    let signed = statement(&w).sign(&w).unwrap();
    assert_eq!(
        signed
            .countersign(proxy_statement(&p), &broken)
            .unwrap_err(),
        SealError::BadSignature
    );
}

#[test]
fn from_bytes_refuses_truncation_trailing_bytes_and_versions() {
    let r = receipt();
    let b = r.to_bytes();
    for cut in 0..b.len() {
        assert_eq!(
            Receipt::from_bytes(&b[..cut]).unwrap_err(),
            SealError::Truncated
        );
    }
    let mut long = b.clone();
    long.push(0);
    assert_eq!(
        Receipt::from_bytes(&long).unwrap_err(),
        SealError::TrailingBytes
    );

    let w = r.worker.to_bytes();
    for cut in 0..w.len() {
        assert_eq!(
            WorkerSigned::from_bytes(&w[..cut]).unwrap_err(),
            SealError::Truncated
        );
    }
    let mut long = w.clone();
    long.push(0);
    assert_eq!(
        WorkerSigned::from_bytes(&long).unwrap_err(),
        SealError::TrailingBytes
    );
    // A receipt is not a worker-signed statement and the other way round.
    assert_eq!(
        WorkerSigned::from_bytes(&b).unwrap_err(),
        SealError::TrailingBytes
    );
    assert_eq!(Receipt::from_bytes(&w).unwrap_err(), SealError::Truncated);

    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(
        Receipt::from_bytes(&v).unwrap_err(),
        SealError::UnsupportedVersion(2)
    );
    let mut v = b.clone();
    v[WORKER_SIGNED_LEN] = 0;
    assert_eq!(
        Receipt::from_bytes(&v).unwrap_err(),
        SealError::UnsupportedVersion(0)
    );
}

#[test]
fn json_form() {
    let r = receipt();
    let j = r.to_json();
    assert_eq!(j["format"], "cocoon-receipt-v1");
    assert_eq!(j["id"], hex::encode(r.id()));
    assert_eq!(
        j["worker"]["statement"]["request_hash"],
        hex::encode([1u8; 32])
    );
    assert_eq!(j["worker"]["statement"]["usage"]["cached_tokens"], 20);
    assert_eq!(j["worker"]["statement"]["ended_ms"], 1_700_000_001_500u64);
    assert_eq!(j["worker"]["signature"], hex::encode(r.worker.signature));
    assert_eq!(j["proxy"]["charge"], 3000);
    assert_eq!(j["proxy"]["proxy_key"], hex::encode(r.proxy.proxy_key));
    assert_eq!(j["proxy_signature"], hex::encode(r.proxy_signature));
    let text = j.to_string();
    assert_eq!(text, text.to_lowercase(), "hex is lowercase");

    // "id" is optional ...
    let mut no_id = j.clone();
    no_id.as_object_mut().unwrap().remove("id");
    assert_eq!(Receipt::from_json(&no_id).unwrap(), r);
    // ... but must match when present.
    let mut bad_id = j.clone();
    bad_id["id"] = hex::encode([0u8; 32]).into();
    assert_eq!(
        Receipt::from_json(&bad_id).unwrap_err(),
        SealError::IdMismatch
    );
    let mut changed = j.clone();
    changed["proxy"]["charge"] = 1.into();
    assert_eq!(
        Receipt::from_json(&changed).unwrap_err(),
        SealError::IdMismatch
    );

    let mut format = j.clone();
    format["format"] = "cocoon-receipt-v2".into();
    assert!(matches!(
        Receipt::from_json(&format),
        Err(SealError::BadJson(_))
    ));
    let mut unknown = j.clone();
    unknown["proxy"]["extra"] = 1.into();
    assert!(
        matches!(Receipt::from_json(&unknown), Err(SealError::BadJson(m)) if m.contains("extra"))
    );
    let mut missing = j.clone();
    missing["worker"]["statement"]
        .as_object_mut()
        .unwrap()
        .remove("model_hash");
    assert!(
        matches!(Receipt::from_json(&missing), Err(SealError::BadJson(m)) if m.contains("model_hash"))
    );
    let mut short = j.clone();
    short["worker"]["statement"]["worker_key"] = "abcd".into();
    assert!(
        matches!(Receipt::from_json(&short), Err(SealError::BadJson(m)) if m.contains("worker_key"))
    );
    let mut negative = j.clone();
    negative["proxy"]["charge"] = (-1).into();
    assert!(matches!(
        Receipt::from_json(&negative),
        Err(SealError::BadJson(_))
    ));
    assert!(matches!(
        Receipt::from_json(&Value::Null),
        Err(SealError::BadJson(_))
    ));
}

#[test]
fn error_texts_carry_no_field_values() {
    let r = receipt();
    let mut j = r.to_json();
    j["worker"]["signature"] = "zz".repeat(64).into();
    let msg = Receipt::from_json(&j).unwrap_err().to_string();
    assert!(!msg.contains("zz"), "{msg}");
    j["proxy"]["charge"] = "12345678".into();
    let msg = Receipt::from_json(&j).unwrap_err().to_string();
    assert!(!msg.contains("12345678"), "{msg}");
}

fn arr32() -> impl Strategy<Value = [u8; 32]> {
    proptest::array::uniform32(any::<u8>())
}

fn arr64() -> impl Strategy<Value = [u8; 64]> {
    proptest::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap())
}

fn any_receipt() -> impl Strategy<Value = Receipt> {
    (
        (arr32(), arr32(), arr32(), arr32(), arr32()),
        proptest::array::uniform8(any::<u64>()),
        (arr64(), arr64()),
        (any::<u64>(), any::<u64>(), arr32()),
    )
        .prop_map(
            |((rh, ah, mh, ih, wk), n, (ws, ps), (price, charge, pk))| Receipt {
                worker: WorkerSigned {
                    statement: WorkerStatement {
                        request_hash: rh,
                        answer_hash: ah,
                        model_hash: mh,
                        image_hash: ih,
                        usage: Usage {
                            prompt_tokens: n[0],
                            cached_tokens: n[1],
                            completion_tokens: n[2],
                            reasoning_tokens: n[3],
                            total_tokens: n[4],
                        },
                        coefficient: n[5],
                        started_ms: n[6],
                        ended_ms: n[7],
                        worker_key: wk,
                    },
                    signature: ws,
                },
                proxy: ProxyStatement {
                    price_per_token: price,
                    charge,
                    proxy_key: pk,
                },
                proxy_signature: ps,
            },
        )
}

proptest! {
    #[test]
    fn bytes_and_json_round_trip(r in any_receipt()) {
        prop_assert_eq!(Receipt::from_bytes(&r.to_bytes()).unwrap(), r.clone());
        prop_assert_eq!(WorkerSigned::from_bytes(&r.worker.to_bytes()).unwrap(), r.worker.clone());
        let j = r.to_json();
        prop_assert_eq!(Receipt::from_json(&j).unwrap(), r.clone());
        // Through text too, as a log line would carry it.
        let v: Value = serde_json::from_str(&j.to_string()).unwrap();
        prop_assert_eq!(Receipt::from_json(&v).unwrap(), r);
    }

    #[test]
    fn from_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..500)) {
        let _ = Receipt::from_bytes(&b);
        let _ = WorkerSigned::from_bytes(&b);
    }

    #[test]
    fn signed_round_trip_verifies(seed in any::<u8>(), n in any::<u64>()) {
        let (w, p) = (key(seed), key(seed.wrapping_add(1)));
        let mut s = statement(&w);
        s.usage.total_tokens = n;
        let r = s.sign(&w).unwrap().countersign(proxy_statement(&p), &p).unwrap();
        let back = Receipt::from_bytes(&r.to_bytes()).unwrap();
        back.verify().unwrap();
        Receipt::from_json(&r.to_json()).unwrap().verify().unwrap();
    }
}

#[test]
fn known_answer_receipt() {
    // Ed25519 is deterministic: seeds 0x01… (worker) and 0x02… (proxy) always give these bytes.
    // `tools/check_vector.py` checks both signatures from the documented layout.
    let r = receipt();
    assert_eq!(hex::encode(r.to_bytes()), KAT_RECEIPT);
    assert_eq!(hex::encode(r.id()), KAT_RECEIPT_ID);
}

const KAT_RECEIPT: &str = concat!(
    "0101010101010101010101010101010101010101010101010101010101010101",
    "0102020202020202020202020202020202020202020202020202020202020202",
    "0203030303030303030303030303030303030303030303030303030303030303",
    "0300000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000640000000000000014000000000000003200000000000000",
    "0a000000000000009600000000000003e80000018bcfe568000000018bcfe56d",
    "dc8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f",
    "5c717fe00d91de7e27310e06d69e25f8b690b3a3bdcc4eb83dfcf5239d9f9fc0",
    "13f1fd4ac59e4272fd55691e2755e08a69d2c3696dcf2353624bb1cef647d68a",
    "040100000000000000140000000000000bb88139770ea87d175f56a35466c34c",
    "7ecccb8d8a91b4ee37a25df60f5b8fc9b394638311739cf603b52ee6891fbd84",
    "633cb2839116b0468983d3c407f02453670a68274edcd67458f6dfcb1f5a987d",
    "0f59d6edaab9ac6c086960ec801b8682750b",
);
const KAT_RECEIPT_ID: &str = "7af5f41d11b9e4a1b7e278dd1897c35813eecfd81c6101a9a97147aab58ef066";
