//! v1 field encryption end to end (upstream 9060ce5's `"is_encrypted":"v1"`): an app encrypts
//! its request to the network key the dev network's key manager serves (upstream's fixed test
//! key), our client forwards it unread, our proxy routes it with the key manager's private key,
//! our worker opens it and seals the answer to the app's key. The bytes our client and proxy
//! handled never contain the prompt or the answer.

use base64::Engine as _;
use cocoon_field_encryption::{decrypt_json, encrypt_json, Direction, SecretSeed};
use cocoon_testkit::post_chat;
use serde_json::{json, Value};

use crate::harness::Net;

/// Upstream's fixed test network key (its key manager serves it in test mode).
const TEST_KEY_SEED_B64: &str = "BwrYLmEy2rMgZ/tyCv0AYFVaZPkFu+wNwoSQiJUbOmM=";

fn network_seed() -> SecretSeed {
    let seed = base64::engine::general_purpose::STANDARD
        .decode(TEST_KEY_SEED_B64)
        .expect("base64");
    SecretSeed::from_bytes(seed.try_into().expect("32 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_request_is_answered_sealed_to_the_app_and_unknown_keys_are_refused() {
    let net = Net::builder().start("encrypted").await;
    let network = network_seed().public_key();
    let app = SecretSeed::from_bytes([0x42; 32]);
    let prompt = "the secret prompt about tides";
    let body = |stream: bool| {
        encrypt_json(
            json!({"model": net.opts.model, "stream": stream, "max_tokens": 8,
                   "messages": [{"role": "user", "content": prompt}]}),
            &app,
            &network,
            Direction::ClientToWorker,
            &mut rand::rng(),
        )
        .expect("encrypt")
    };
    let http = reqwest::Client::new();
    // The proxy fetches the key from the key manager within seconds of starting.
    let mut answer = None;
    for _ in 0..60 {
        let resp = post_chat(&http, &net.base, &body(false)).await;
        let status = resp.status();
        let text = resp.text().await.expect("body");
        if status == 200 {
            answer = Some(text);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let text = answer.unwrap_or_else(|| {
        net.dump_logs();
        panic!("no encrypted request was answered")
    });
    let sealed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(sealed["is_encrypted"], "v1", "{sealed}");
    let opened = decrypt_json(sealed, &app, Direction::WorkerToClient, Some(network))
        .expect("the answer opens with the app's key, from the network key");
    let content = opened.value["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(!content.is_empty());
    assert!(!text.contains(content), "the answer travelled sealed");

    // Streamed: every SSE event's JSON is sealed, [DONE] ends it.
    let resp = post_chat(&http, &net.base, &body(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    let mut deltas = 0;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).expect("event json");
        let opened = decrypt_json(v, &app, Direction::WorkerToClient, Some(network))
            .expect("each event opens");
        if opened.value["choices"][0]["delta"]["content"].is_string() {
            deltas += 1;
        }
    }
    assert!(deltas > 0, "{text}");
    assert!(text.contains("data: [DONE]"));

    // Sealed to a key no key manager serves: upstream's refusal, from the proxy.
    let stranger = SecretSeed::from_bytes([0x17; 32]).public_key();
    let bad = encrypt_json(
        json!({"model": net.opts.model, "messages": [{"role": "user", "content": prompt}]}),
        &app,
        &stranger,
        Direction::ClientToWorker,
        &mut rand::rng(),
    )
    .expect("encrypt");
    let resp = post_chat(&http, &net.base, &bad).await;
    assert_eq!(resp.status(), 500);
    let err = resp.text().await.expect("body");
    assert!(err.contains("unknown public key"), "{err}");
}
