//! Receipts checked offline: a dev network seals a chat completion, the client keeps the
//! worker's receipt countersigned by the proxy, and `cocoon receipt verify` accepts the document
//! it serves and refuses it once the charge is edited.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cocoon_testkit::post_chat;
use serde_json::{json, Value};

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
    let net = Net::builder().start("receipts").await;
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
    let Some(mut doc) = doc else {
        net.dump_logs();
        panic!("the client kept no receipt {id}");
    };
    assert_eq!(doc["format"], "cocoon-client-receipt-v1", "{doc}");

    let file = net.dir.path().join("receipt.json");
    std::fs::write(&file, doc.to_string()).expect("write receipt");
    let good = verify(&file, &[]);
    assert!(good.status.success(), "{}", text(&good));
    let out = text(&good);
    for check in [
        "signatures",
        "charge",
        "worker certificate",
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
