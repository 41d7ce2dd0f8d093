//! The embedded llama.cpp engine through the whole network, on the real default model
//! (SmolLM2-135M-Instruct). The model is fetched once into the models dir; without it the
//! tests are skipped with a loud message, except under CI, where they fail.

use std::path::PathBuf;
use std::time::Duration;

use cocoon_testkit::{chat_request, post_chat};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::harness::Net;

const MODEL: &str = "SmolLM2-135M-Instruct";

async fn model() -> Option<PathBuf> {
    let dir = cocoon_engine::models::default_models_dir();
    match cocoon_engine::models::fetch_default_model(&dir, false).await {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must have the default model: {e}"),
        Err(e) => {
            eprintln!(
                "SKIPPED: the default model is not available ({e}); run `cocoon model fetch`"
            );
            None
        }
    }
}

async fn start(name: &str) -> Option<Net> {
    let path = model().await?;
    Some(
        Net::builder()
            .model(MODEL)
            .llama_model(path)
            .start(name)
            .await,
    )
}

async fn chat(net: &Net, body: Value) -> Value {
    let r = chat_request(&reqwest::Client::new(), &net.base)
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn ask(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": content}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_generates_seeded_text_with_exact_usage() {
    let Some(net) = start("llama-gen").await else {
        return;
    };
    let models = net.json(&format!("{}/v1/models", net.base)).await;
    assert_eq!(models["data"][0]["id"], MODEL);
    let body = ask(
        "Write a haiku about the sea",
        json!({"max_tokens": 16, "temperature": 0.8, "seed": 42}),
    );
    let a = chat(&net, body.clone()).await;
    let text = a["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(!text.trim().is_empty());
    let completion = a["usage"]["completion_tokens"]
        .as_u64()
        .expect("completion");
    let prompt = a["usage"]["prompt_tokens"].as_u64().expect("prompt");
    assert!(completion > 0 && completion <= 16);
    if completion == 16 {
        assert_eq!(a["choices"][0]["finish_reason"], "length");
    }
    // Same seed, same text.
    let b = chat(&net, body).await;
    assert_eq!(
        b["choices"][0]["message"]["content"].as_str(),
        Some(text.as_str())
    );
    // The proxy charged exactly what the two answers reported.
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let b_total = b["usage"]["total_tokens"].as_u64().expect("total");
    assert_eq!(
        stats["tokens_charged"].as_u64(),
        Some(prompt + completion + b_total)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sequence_stops_and_streaming_usage_matches() {
    let Some(net) = start("llama-stop").await else {
        return;
    };
    let greedy = ask(
        "List three colors.",
        json!({"max_tokens": 24, "temperature": 0}),
    );
    let full = chat(&net, greedy.clone()).await;
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .to_string();
    // Stop at the third word of what greedy decoding produces anyway.
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 3, "too short to test stop: {text:?}");
    let stop = words[2].to_string();
    let mut with_stop = greedy.clone();
    with_stop["stop"] = json!([stop]);
    let cut = chat(&net, with_stop).await;
    let cut_text = cut["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    assert!(
        !cut_text.contains(&stop),
        "{cut_text:?} contains the stop sequence {stop:?}"
    );
    assert!(
        text.starts_with(cut_text.trim_end()) || text.starts_with(cut_text),
        "{cut_text:?} is not a prefix of {text:?}"
    );

    // Streamed: chunks arrive, the final usage chunk counts what was generated.
    let mut s = greedy;
    s["stream"] = json!(true);
    let resp = post_chat(&reqwest::Client::new(), &net.base, &s).await;
    let body = resp.text().await.expect("body");
    let events: Vec<Value> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event"))
        .collect();
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed, text,
        "streamed and non-streamed greedy text differ"
    );
    // Every chunk carries the usage so far (what a cut stream is charged by); the last one is
    // the whole answer's.
    let usage = events
        .iter()
        .rev()
        .find(|e| e["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(
        usage["usage"]["completion_tokens"],
        full["usage"]["completion_tokens"]
    );
    assert!(body.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_streams_free_their_slots_and_four_run_concurrently() {
    let Some(net) = start("llama-slots").await else {
        return;
    };
    let http = reqwest::Client::new();
    // Fill every slot with a long stream, read a chunk, then hang up.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let body = ask(
            "Tell me a very long story.",
            json!({"max_tokens": 1000, "stream": true}),
        );
        let r = post_chat(&http, &net.base, &body).await;
        let mut st = r.bytes_stream();
        let _ = st.next().await.expect("first chunk").expect("ok");
        streams.push(st);
    }
    drop(streams);
    // If cancellation did not free the slots, these would queue behind 4 × 1000 tokens.
    let futs = (0..4).map(|i| {
        let http = http.clone();
        let base = net.base.clone();
        async move {
            let body = ask(&format!("Say a number: {i}"), json!({"max_tokens": 8}));
            let r = post_chat(&http, &base, &body).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    });
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(futs))
        .await
        .expect("slots were not freed by cancellation");
    for a in all {
        assert!(a["usage"]["completion_tokens"].as_u64().expect("n") > 0);
    }
    let worker = net
        .json(&format!("{}/jsonstats", net.worker_stats[0]))
        .await;
    assert!(
        worker["requests"]["cancelled"].as_u64().expect("n") >= 4,
        "{worker}"
    );
}

/// The embedded engine serves no audio: a transcription gets its clear 501, at once, and costs
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcription_gets_the_embedded_engines_clear_refusal() {
    let Some(net) = start("llama-audio").await else {
        return;
    };
    let started = std::time::Instant::now();
    let form = crate::audio::app_form(MODEL, b"RIFF\x24\x00\x00\x00WAVEfmt ", &[]);
    let r = crate::audio::post_form(&net, form).await;
    assert_eq!(r.status(), 501);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["error"]["message"],
        "this worker's engine does not serve /v1/audio/transcriptions"
    );
    assert_eq!(v["error"]["code"], "unsupported_endpoint");
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(s["tokens_charged"], 0, "{s}");
    net.assert_books_balance(&net.proxy_stats).await;
}
