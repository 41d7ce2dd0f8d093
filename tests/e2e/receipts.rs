//! Receipts checked offline: a dev network seals a chat completion, the client keeps the
//! worker's receipt countersigned by the proxy, and `cocoon receipt verify` accepts the document
//! it serves and refuses it once the charge is edited.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cocoon_testkit::post_chat;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::harness::Net;

fn verify(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "receipt",
        "verify",
        file.to_str().expect("utf-8 path"),
        "--policy",
        "insecure-software",
        "--network",
        "dev",
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(&args)
        .output()
        .expect("run cocoon receipt verify")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_answers_receipt_verifies_offline_and_an_edited_charge_does_not() {
    let net = Net::builder()
        .edit_proxy(|c| c.receipts.anchor_every = Duration::from_secs(1))
        .start("receipts")
        .await;
    let http = reqwest::Client::new();
    let body = json!({"model": net.opts.model, "max_tokens": 8,
                      "messages": [{"role": "user", "content": "count the tides"}]});
    // The client needs the candidates' certificates before it can seal: retry briefly.
    let mut id = None;
    for _ in 0..40 {
        let resp = post_chat(&http, &net.base, &body).await;
        let header = resp
            .headers()
            .get("X-Cocoon-Receipt-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = resp.status() == 200;
        let _ = resp.text().await;
        if ok && header.is_some() {
            id = header;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Some(id) = id else {
        net.dump_logs();
        panic!("no sealed answer with a receipt id");
    };
    let url = format!("{}/v1/cocoon/receipts/{id}", net.base);
    let mut doc = None;
    for _ in 0..40 {
        let resp = http.get(&url).send().await.expect("GET receipt");
        if resp.status() == 200 {
            doc = Some(resp.json::<Value>().await.expect("receipt json"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(doc) = doc else {
        net.dump_logs();
        panic!("the client kept no receipt {id}");
    };
    assert_eq!(doc["format"], "cocoon-client-receipt-v1", "{doc}");

    // The proxy logged the receipt's id; its 1 s period closed with the RFC 6962 root of it.
    let receipt_id = hex::decode(doc["receipt"]["id"].as_str().expect("id")).expect("hex");
    let want_root = hex::encode(
        Sha256::new()
            .chain_update([0u8])
            .chain_update(&receipt_id)
            .finalize(),
    );
    let log_dir = net.dir.path().join("proxy-receipts");
    let mut period = None;
    for _ in 0..100 {
        period = std::fs::read_dir(&log_dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
                .find(|m| m["leaves"] == 1)
        });
        if period.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let period = period.unwrap_or_else(|| {
        net.dump_logs();
        panic!("no closed receipts period in {}", log_dir.display())
    });
    assert_eq!(period["root"], want_root, "{period}");
    assert_eq!(period["anchored"]["kind"], "not_anchored", "{period}");

    // The client fetches the inclusion proof from the proxy and keeps it in the document.
    let resp = http
        .get(format!("{url}/proof"))
        .send()
        .await
        .expect("GET proof");
    assert_eq!(resp.status(), 200);
    let proof: Value = resp.json().await.expect("proof json");
    assert_eq!(proof["root"], want_root, "{proof}");
    assert_eq!(proof["tree_size"], 1);
    assert_eq!(proof["anchored"], false);
    let unknown = http
        .get(format!(
            "{}/v1/cocoon/receipts/{}/proof",
            net.base,
            "ab".repeat(32)
        ))
        .send()
        .await
        .expect("GET proof");
    assert_eq!(unknown.status(), 404);
    let mut doc: Value = http
        .get(&url)
        .send()
        .await
        .expect("GET receipt")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["proof"], proof, "{doc}");

    let file = net.dir.path().join("receipt.json");
    std::fs::write(&file, doc.to_string()).expect("write receipt");
    let good = verify(&file, &[]);
    assert!(good.status.success(), "{}", text(&good));
    let out = text(&good);
    for check in [
        "signatures",
        "charge",
        "worker certificate",
        "inclusion proof",
        "proxy certificate",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {out}"
        );
    }

    // A registry snapshot that lists neither the image nor the model: refused.
    let snap = net.dir.path().join("registry.json");
    std::fs::write(
        &snap,
        json!({"worker_image_hashes": [], "model_hashes": []}).to_string(),
    )
    .expect("write snapshot");
    let unregistered = verify(&file, &["--registry", snap.to_str().expect("utf-8")]);
    assert!(!unregistered.status.success(), "{}", text(&unregistered));

    // The same policy on the main network refuses software evidence.
    let main = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["receipt", "verify", file.to_str().expect("utf-8")])
        .args(["--policy", "insecure-software", "--network", "main"])
        .output()
        .expect("run");
    assert!(!main.status.success(), "{}", text(&main));

    // One nanoton less: the proxy's signature no longer covers it.
    let charge = doc["receipt"]["proxy"]["charge"].as_u64().expect("charge");
    doc["receipt"]["proxy"]["charge"] = json!(charge.wrapping_sub(1));
    if let Some(r) = doc["receipt"].as_object_mut() {
        r.remove("id");
    }
    std::fs::write(&file, doc.to_string()).expect("write edited receipt");
    let edited = verify(&file, &[]);
    assert!(!edited.status.success(), "{}", text(&edited));
    assert!(
        text(&edited)
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("signatures")),
        "{}",
        text(&edited)
    );
}

/// On a `cocoon dev` network with the local chain: the receipts period's root rides in the
/// proxy's save-state marker, the client's proof says it was seen on chain, and `cocoon receipt
/// verify --chain --proxy-contract` finds it among the proxy contract's transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_root_is_anchored_on_the_local_chain_and_verified_there() {
    let tmp = cocoon_testkit::TempDir::new("receipts-chain");
    let net = crate::paying::DevNet::start(tmp.path()).await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    let mut id = None;
    for _ in 0..60 {
        let models: Value = match http.get(format!("{base}/v1/models")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let Some(model) = models["data"][0]["id"].as_str() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let body = json!({"model": model, "max_tokens": 8,
                          "messages": [{"role": "user", "content": "anchor me"}]});
        let resp = post_chat(&http, &base, &body).await;
        let header = resp
            .headers()
            .get("X-Cocoon-Receipt-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = resp.status() == 200;
        let _ = resp.text().await;
        if ok && header.is_some() {
            id = header;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(id) = id else {
        net.dump_logs();
        panic!("no sealed answer with a receipt id");
    };
    // The dev network's periods last 5 s and markers go out every 2 s: wait for "anchored".
    let url = format!("{base}/v1/cocoon/receipts/{id}");
    let mut proof = Value::Null;
    for _ in 0..120 {
        let resp = http
            .get(format!("{url}/proof"))
            .send()
            .await
            .expect("GET proof");
        if resp.status() == 200 {
            proof = resp.json().await.expect("proof json");
            if proof["anchored"] == true {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if proof["anchored"] != true {
        net.dump_logs();
        panic!("the receipt's root was not anchored: {proof}");
    }
    let doc: Value = http
        .get(&url)
        .send()
        .await
        .expect("GET receipt")
        .json()
        .await
        .expect("json");
    let file = tmp.path().join("receipt.json");
    std::fs::write(&file, doc.to_string()).expect("write receipt");
    let st = net.proxy_status();
    let proxy_sc = st["payments"]["proxy_contract"]
        .as_str()
        .expect("proxy contract")
        .to_string();
    let chain_url = format!("http://{}", cocoon_devnet::Ports::dev_chain(net.offset));
    let out = verify(
        &file,
        &["--chain", &chain_url, "--proxy-contract", &proxy_sc],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("anchored on chain")),
        "{}",
        text(&out)
    );
}
