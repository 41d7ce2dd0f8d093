//! Tokens per second of the embedded engine with a `json_schema` grammar vs unconstrained,
//! same model, prompt and `max_tokens`, interleaved repetitions in one run (issue 16).
//!
//! `cargo run --release -p cocoon-engine --features llama --example grammar_speed -- [REPS] [THREADS]`
//!
//! Uses the default model in the default models dir (`cocoon model fetch`). Decode rate is
//! measured on the stream: completion tokens after the first chunk over the time after it, so
//! prefill is left out. Prints no prompt or completion text.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cocoon_engine::{Endpoint, Engine, EngineRequest, LlamaConfig, LlamaEngine};
use futures::StreamExt;
use serde_json::{json, Value};

async fn one(e: &LlamaEngine, body: &Value) -> (u64, f64) {
    let req = EngineRequest {
        endpoint: Endpoint::ChatCompletions,
        body: Bytes::from(body.to_string()),
        content_type: None,
        request_id: "bench".into(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(600),
    };
    let resp = e.start(req).await.expect("start");
    assert_eq!(resp.status, 200);
    let mut body = resp.body;
    let mut first: Option<Instant> = None;
    let mut tokens = 0;
    let mut buf = Vec::new();
    while let Some(c) = body.next().await {
        first.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&c.expect("chunk"));
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    for ev in String::from_utf8_lossy(&buf).split("\n\n") {
        if let Some(v) = ev
            .strip_prefix("data: ")
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        {
            if let Some(n) = v
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
            {
                tokens = n;
            }
        }
    }
    (tokens, secs)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let threads: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let cfg = LlamaConfig {
        threads,
        slots: 1,
        context_size: 1024,
        ..LlamaConfig::default()
    };
    let e = tokio::task::spawn_blocking(move || LlamaEngine::load(cfg))
        .await
        .expect("join")
        .expect("load the default model (cocoon model fetch)");
    let base = json!({"model": "m", "max_tokens": 64, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "List twenty fruits and their colours."}]});
    let mut schema = base.clone();
    schema["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "fruits",
        "schema": {"type": "object", "properties": {"fruits": {"type": "array", "maxItems": 64,
            "items": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 40},
                "colour": {"type": "string", "maxLength": 40}},
                "required": ["name", "colour"], "additionalProperties": false}}},
        "required": ["fruits"], "additionalProperties": false}}});
    // Warm-up.
    one(&e, &base).await;
    one(&e, &schema).await;
    // Rates per repetition; the machine may be shared, so report the best (least disturbed)
    // and the median of each.
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    let mut tokens = (0, 0);
    for _ in 0..reps {
        let rate = |(t, s): (u64, f64)| {
            if s > 0.0 {
                t.saturating_sub(1) as f64 / s
            } else {
                0.0
            }
        };
        let r = one(&e, &base).await;
        tokens.0 += r.0;
        free.push(rate(r));
        let r = one(&e, &schema).await;
        tokens.1 += r.0;
        constrained.push(rate(r));
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            v.last().copied().unwrap_or(0.0),
            v.get(v.len() / 2).copied().unwrap_or(0.0),
        )
    };
    let (fb, fm) = stats(&mut free);
    let (cb, cm) = stats(&mut constrained);
    println!("reps {reps}, max_tokens 64, greedy, one slot; tokens/s after the first chunk");
    println!(
        "unconstrained : {:>4} tokens, best {fb:>6.1}, median {fm:>6.1}",
        tokens.0
    );
    println!(
        "json_schema   : {:>4} tokens, best {cb:>6.1}, median {cm:>6.1}",
        tokens.1
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "ratio json_schema / unconstrained: best {:.2}, median {:.2}",
        ratio(cb, fb),
        ratio(cm, fm)
    );
}
