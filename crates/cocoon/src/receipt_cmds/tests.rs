//! Document parsing and each refusal of `cocoon receipt verify`, on receipts signed here.

use cocoon_attest::Policy;
use cocoon_sealed::receipt::{ProxyStatement, Usage, WorkerStatement};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::json;

use super::*;

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed")
}

fn receipt(charge: u64) -> Receipt {
    let worker = key(1);
    let proxy = key(2);
    let mut worker_key = [0u8; 32];
    worker_key.copy_from_slice(worker.public_key().as_ref());
    let mut proxy_key = [0u8; 32];
    proxy_key.copy_from_slice(proxy.public_key().as_ref());
    WorkerStatement {
        request_hash: [3; 32],
        answer_hash: [4; 32],
        model_hash: [5; 32],
        image_hash: [6; 32],
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            ..Usage::default()
        },
        coefficient: 1000,
        started_ms: 1_000,
        ended_ms: 2_000,
        worker_key,
    }
    .sign(&worker)
    .expect("sign")
    .countersign(
        ProxyStatement {
            price_per_token: 10,
            charge,
            proxy_key,
        },
        &proxy,
    )
    .expect("countersign")
}

fn document(r: &Receipt) -> Value {
    json!({
        "format": CLIENT_RECEIPT_FORMAT,
        "receipt_id": hex::encode(r.worker.statement.request_hash),
        "proxy": "127.0.0.1:1",
        "model": "m",
        "worker_certificate": "AAAA",
        "proxy_certificate": null,
        "receipt": r.to_json(),
    })
}

fn verdicts(doc: &Value, registry: Option<&RegistrySnapshot>) -> Vec<(&'static str, bool)> {
    let any = Policy::any();
    check_document(doc, &any, registry)
        .into_iter()
        .map(|l| (l.check, l.result.is_ok()))
        .collect()
}

fn passed(doc: &Value, check: &str) -> bool {
    verdicts(doc, None)
        .into_iter()
        .find(|(c, _)| *c == check)
        .unwrap_or_else(|| panic!("no {check} line"))
        .1
}

#[test]
fn a_well_formed_document_passes_signatures_charge_and_id() {
    let doc = document(&receipt(150));
    assert!(passed(&doc, "document"));
    assert!(passed(&doc, "signatures"));
    assert!(passed(&doc, "charge"));
    assert!(
        passed(&doc, "proxy certificate"),
        "none is reported, not failed"
    );
    // "AAAA" is no certificate.
    assert!(!passed(&doc, "worker certificate"));
}

#[test]
fn an_edited_charge_breaks_the_proxy_signature() {
    let mut doc = document(&receipt(150));
    doc["receipt"]["proxy"]["charge"] = json!(149);
    // The receipt's own "id" no longer matches: the document is refused as a whole.
    assert_eq!(verdicts(&doc, None), vec![("document", false)]);
    doc["receipt"].as_object_mut().expect("object").remove("id");
    assert!(passed(&doc, "document"));
    assert!(!passed(&doc, "signatures"));
}

#[test]
fn an_overcharge_is_refused_even_when_signed() {
    let doc = document(&receipt(151));
    assert!(passed(&doc, "signatures"));
    assert!(!passed(&doc, "charge"));
}

#[test]
fn malformed_documents_are_refused() {
    let good = document(&receipt(1));
    for (member, value) in [
        ("format", json!("cocoon-receipt-v1")),
        ("worker_certificate", json!(null)),
        ("worker_certificate", json!("not base64!")),
        ("proxy_certificate", json!(7)),
        ("receipt_id", json!(null)),
        ("receipt", json!({"format": "cocoon-receipt-v1"})),
    ] {
        let mut doc = good.clone();
        doc[member] = value;
        assert_eq!(verdicts(&doc, None), vec![("document", false)], "{member}");
    }
    let mut doc = good;
    doc["receipt_id"] = json!("00".repeat(32));
    assert!(!passed(&doc, "document"), "an id that is not the request's");
}

#[test]
fn registry_snapshots_parse_and_decide_membership() {
    let doc = document(&receipt(1));
    let snap = RegistrySnapshot::parse(
        format!(
            r#"{{"worker_image_hashes": ["{}"], "model_hashes": ["{}"], "note": 1}}"#,
            hex::encode([6u8; 32]),
            hex::encode([5u8; 32])
        )
        .as_bytes(),
    )
    .expect("snapshot");
    let v = verdicts(&doc, Some(&snap));
    assert!(v.contains(&("registry: worker image", true)));
    assert!(v.contains(&("registry: model", true)));
    let other = RegistrySnapshot::parse(
        format!(
            r#"{{"worker_image_hashes": [], "model_hashes": ["{}"]}}"#,
            hex::encode([9u8; 32])
        )
        .as_bytes(),
    )
    .expect("snapshot");
    let v = verdicts(&doc, Some(&other));
    assert!(v.contains(&("registry: worker image", false)));
    assert!(v.contains(&("registry: model", false)));
    assert!(
        RegistrySnapshot::parse(br#"{"worker_image_hashes": ["zz"], "model_hashes": []}"#).is_err()
    );
    assert!(RegistrySnapshot::parse(br#"{"model_hashes": []}"#).is_err());
}

#[test]
fn policies_and_networks_parse_by_the_config_names() {
    assert_eq!(
        parse_policy("insecure-software"),
        Ok(PeerPolicyChoice::InsecureSoftware)
    );
    assert_eq!(
        parse_policy("fake_tee"),
        Ok(PeerPolicyChoice::InsecureSoftware)
    );
    assert_eq!(parse_policy("sev-snp"), Ok(PeerPolicyChoice::SevSnp));
    assert!(parse_policy("trust-me").is_err());
    assert_eq!(parse_network("dev"), Ok(NetworkKind::Dev));
    assert!(parse_network("prod").is_err());
}

#[test]
fn an_inclusion_proof_in_the_document_is_checked_offline() {
    let r = receipt(1);
    let other = [9u8; 32];
    let leaves = [other, r.id()];
    let p = cocoon_sealed::merkle::inclusion_proof(&leaves, 1).expect("proof");
    let mut doc = document(&r);
    doc["proof"] = json!({
        "root": hex::encode(cocoon_sealed::merkle::root(&leaves)),
        "tree_size": p.tree_size, "index": p.index, "path": p.path, "anchored": false,
    });
    assert!(passed(&doc, "inclusion proof"));
    doc["proof"]["index"] = json!(0);
    assert!(!passed(&doc, "inclusion proof"), "wrong index");
    doc["proof"]["index"] = json!(1);
    doc["proof"]["root"] = json!(hex::encode([0u8; 32]));
    assert!(!passed(&doc, "inclusion proof"), "wrong root");
    doc["proof"]["root"] = json!("zz");
    assert!(!passed(&doc, "inclusion proof"));
    doc["proof"]["root"] = json!(hex::encode(cocoon_sealed::merkle::root(&leaves)));
    doc["proof"]["path"] = json!(vec![hex::encode([1u8; 32]); 65]);
    assert!(!passed(&doc, "inclusion proof"), "path too long");
}
