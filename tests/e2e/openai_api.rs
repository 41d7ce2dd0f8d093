//! The happy paths of the OpenAI API through the whole network.

use std::time::Duration;

use cocoon_testkit::{chat_body, eventually, post_chat};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::harness::Net;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_non_streamed_has_usage_cost_and_timing_headers() {
    let net = Net::builder().mock_tokens(8).start("chat").await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    for h in [
        "x-cocoon-client-start",
        "x-cocoon-client-end",
        "x-cocoon-proxy-start",
        "x-cocoon-worker-start",
    ] {
        assert!(
            resp.headers().contains_key(h),
            "missing header {h}: {:?}",
            resp.headers()
        );
    }
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("application/json"));
    // Whatever framing the client chose, it must describe the body it sends (Cocoon forwards the
    // engine's stale Content-Length and truncates rewritten JSON).
    let declared = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let raw = resp.bytes().await.expect("body");
    if let Some(n) = declared {
        assert_eq!(n, raw.len(), "Content-Length does not match the body");
    }
    let body: Value = serde_json::from_slice(&raw).expect("complete JSON body");
    assert_eq!(body["object"], "chat.completion");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], 8);
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt tokens");
    assert!(prompt > 0);
    // Coefficient 1000, multipliers 1.0, price 2 nanoTON per token.
    assert_eq!(usage["completion_total_cost"], 16);
    assert_eq!(usage["prompt_total_cost"].as_u64(), Some(2 * prompt));
    assert_eq!(usage["total_cost"].as_u64(), Some(2 * (prompt + 8)));
    // The proxy charged exactly that.
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(stats["tokens_charged"].as_u64(), Some(prompt + 8));
    assert_eq!(
        stats["money_nanoton"]["client_cost"].as_u64(),
        Some(2 * (prompt + 8))
    );
    assert_eq!(
        stats["money_nanoton"]["worker_fee"].as_u64(),
        Some(prompt + 8)
    );
    // A dev network seals by default: the proxy routed it unread and countersigned its receipt,
    // which the client verified and keeps.
    assert_eq!(stats["queries"]["sealed"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["receipts_countersigned"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["receipt_log"]["dropped"].as_u64(), Some(0), "{stats}");
    let client = net.json(&format!("{}/jsonstats", net.base)).await;
    assert_eq!(client["privacy"]["sealed"].as_u64(), Some(1), "{client}");
    assert_eq!(
        client["privacy"]["receipts"]["verified"].as_u64(),
        Some(1),
        "{client}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_streams_sse_chunks_with_usage_and_done() {
    let net = Net::builder()
        .mock_tokens(5)
        .mock_delay_ms(30)
        .start("sse")
        .await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut arrivals = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        if !chunk.is_empty() {
            arrivals += 1;
        }
        text.push_str(std::str::from_utf8(&chunk).expect("utf8"));
    }
    // Streamed as produced, not held back and delivered at the end (Cocoon's bug).
    assert!(
        arrivals >= 3,
        "expected incremental delivery, got {arrivals} chunk(s)"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect();
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.is_empty());
    let usage = events
        .iter()
        .find(|e| e["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert!(usage["usage"]["total_cost"].as_u64().expect("cost") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_models_endpoints() {
    let net = Net::builder().start("compl").await;
    let http = reqwest::Client::new();
    let models = http
        .get(format!("{}/v1/models", net.base))
        .send()
        .await
        .expect("models");
    assert!(models.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("application/json"));
    let models: Value = models.json().await.expect("json");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "mock");
    assert_eq!(models["data"][0]["workers"][0]["coefficient"], 1000);

    let resp = http
        .post(format!("{}/v1/completions", net.base))
        .json(&json!({"model": "mock", "prompt": "Once upon a time", "max_tokens": 4}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let resp = http
        .post(format!("{}/v1/completions", net.base))
        .json(&json!({"model": "mock", "prompt": "x", "stream": true}))
        .send()
        .await
        .expect("request");
    let text = resp.text().await.expect("body");
    assert!(text.contains("\"usage\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coefficient_cap_is_respected() {
    let net = Net::builder()
        .workers(1)
        .worker_coefficients(vec![3000])
        .start("coef")
        .await;
    let http = reqwest::Client::new();
    let mut body = chat_body(false);
    body["max_coefficient"] = json!(2000);
    let resp = post_chat(&http, &net.base, &body).await;
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.expect("json");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("coefficient=3000"),
        "{err}"
    );
    body["max_coefficient"] = json!(3000);
    let resp = post_chat(&http, &net.base, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    // 3.0× coefficient: costs triple.
    let prompt = v["usage"]["prompt_tokens"].as_u64().expect("prompt");
    let completion = v["usage"]["completion_tokens"]
        .as_u64()
        .expect("completion");
    assert_eq!(
        v["usage"]["total_cost"].as_u64(),
        Some(2 * 3 * (prompt + completion))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_exhaustion_is_402() {
    // Each request reserves max_tokens + prompt bytes (~250) and is charged its usage (~13).
    let net = Net::builder().client_credit(600).start("credit").await;
    let http = reqwest::Client::new();
    let mut body = chat_body(false);
    // A reservation larger than the whole credit is refused at once.
    body["max_tokens"] = json!(1000);
    let resp = post_chat(&http, &net.base, &body).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["type"], "insufficient_quota");
    // Small requests succeed until their usage has eaten the credit.
    body["max_tokens"] = json!(8);
    let mut served = 0;
    let mut refused = false;
    for _ in 0..80 {
        let resp = post_chat(&http, &net.base, &body).await;
        match resp.status().as_u16() {
            200 => {
                let v: Value = resp.json().await.expect("json");
                assert_eq!(v["object"], "chat.completion");
                served += 1;
            }
            402 => {
                refused = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused, "credit never ran out after {served} requests");
    assert!(served >= 10, "only {served} requests fitted in the credit");
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let client = &stats["clients"][0];
    assert!(client["used"].as_u64().expect("used") <= 600, "{client}");
    assert_eq!(client["reserved"], 0, "{client}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_load() {
    let net = Net::builder()
        .workers(2)
        .mock_tokens(4)
        .mock_delay_ms(20)
        .start("share")
        .await;
    let results = net.chat_wave(16, false).await;
    assert!(results.iter().all(|r| matches!(r, Ok(200))), "{results:?}");
    for w in &net.worker_stats {
        let s = net.json(&format!("{w}/jsonstats")).await;
        let n = s["requests"]["succeeded"].as_u64().expect("count");
        assert!(n >= 2, "worker {w} served only {n} of 16 requests: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_disconnect_cancels_at_the_engine() {
    let net = Net::builder()
        .external_engine()
        .mock_tokens(400)
        .mock_delay_ms(50)
        .start("cancel")
        .await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(true)).await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("first chunk").expect("ok");
    assert!(!first.is_empty());
    drop(stream);
    let engine = net.engine_urls[0].clone();
    let aborted = eventually(Duration::from_secs(5), || {
        let url = format!("{engine}/mock/stats");
        async move {
            match reqwest::get(url).await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v["aborted"].as_u64().unwrap_or(0) >= 1)
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(aborted, "the engine never saw the abort");
    // The proxy released the request and charged only what was delivered (< 400 tokens).
    let proxy = net.proxy_stats.clone();
    let settled = eventually(Duration::from_secs(5), || {
        let url = format!("{proxy}/jsonstats");
        async move {
            reqwest::get(url)
                .await
                .expect("stats")
                .json::<Value>()
                .await
                .map(|v| v["queries"]["running"] == 0)
                .unwrap_or(false)
        }
    })
    .await;
    assert!(settled);
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert!(stats["tokens_charged"].as_u64().expect("charged") < 400);
}

/// An app that leaves a stream after a few tokens pays for what it received (the engine reports
/// usage only in its last chunk, which never came), and the worker is credited the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_leaving_mid_stream_pays_what_it_received_and_the_worker_earns_it() {
    const K: u64 = 5;
    let net = Net::builder()
        .mock_tokens(400)
        .mock_delay_ms(50)
        .start("leave-paid")
        .await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let content_events = |t: &str| {
        t.lines()
            .filter(|l| {
                l.starts_with("data: {")
                    && l.contains("\"content\":\"")
                    && !l.contains("\"content\":\"\"")
            })
            .count() as u64
    };
    while content_events(&text) < K {
        let chunk = stream.next().await.expect("a chunk").expect("ok");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!text.contains("\"usage\""), "no usage reached the app yet");
    drop(stream);
    let proxy = net.proxy_stats.clone();
    let settled = eventually(Duration::from_secs(10), || {
        let url = format!("{proxy}/jsonstats");
        async move {
            match reqwest::get(url).await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v["queries"]["running"] == 0 && v["queries"]["total"] == 1)
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(settled, "the request never ended");
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let charged = s["tokens_charged"].as_u64().expect("charged");
    // The prompt as the reservation estimates it (the request's bytes, more than its body's)
    // and at least the K tokens the app read; less than the reservation (1000 completion
    // tokens and the prompt).
    let body_bytes = serde_json::to_vec(&chat_body(true)).expect("json").len() as u64;
    assert!(charged > body_bytes + K, "charged {charged}: {s}");
    assert!(charged < 1000, "charged {charged}: {s}");
    assert_eq!(
        s["workers"][0]["earned_tokens"].as_u64(),
        Some(charged),
        "{s}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_endpoints_on_every_role() {
    let net = Net::builder().start("stats").await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(true)).await;
    // One framing header only (Cocoon duplicates Transfer-Encoding).
    assert!(resp.headers().get_all("transfer-encoding").iter().count() <= 1);
    let _ = resp.text().await.expect("body");
    for base in [
        net.base.clone(),
        net.proxy_stats.clone(),
        net.worker_stats[0].clone(),
    ] {
        let json: Value = reqwest::get(format!("{base}/jsonstats"))
            .await
            .expect("jsonstats")
            .json()
            .await
            .expect("json");
        assert!(json["role"].is_string(), "{json}");
        let text = reqwest::get(format!("{base}/stats"))
            .await
            .expect("stats")
            .text()
            .await
            .expect("text");
        assert!(text.contains("role:"), "{text}");
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(metrics.contains("# TYPE cocoon_"), "{metrics}");
        assert!(metrics.trim_end().ends_with("# EOF"));
    }
    let client: Value = reqwest::get(format!("{}/jsonstats", net.base))
        .await
        .expect("s")
        .json()
        .await
        .expect("j");
    assert_eq!(client["requests"]["succeeded"], 1, "{client}");
    assert!(
        client["tokens"]["completion"].as_u64().expect("tokens") > 0,
        "{client}"
    );
    let worker: Value = reqwest::get(format!("{}/jsonstats", net.worker_stats[0]))
        .await
        .expect("s")
        .json()
        .await
        .expect("j");
    assert_eq!(worker["requests"]["succeeded"], 1, "{worker}");
}
