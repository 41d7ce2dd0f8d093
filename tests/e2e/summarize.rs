//! `cocoon summarize` on a synthetic Telegram Desktop export of several thousand messages,
//! through a real client, proxy and worker (mock engine): the transcript is cut into parts, each
//! part is one request, the partial summaries are combined in a last streamed request, the cost
//! is added up, and no message text reaches any node's log.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::Net;

/// A phrase in every message: it must reach no log.
const CANARY: &str = "purple-elephant-canary";

/// An export of `n` messages of one chat, one a minute from 2024-01-31 00:00 UTC.
fn export(n: usize) -> Value {
    let messages: Vec<Value> = (0..n)
        .map(|i| {
            let t = 1_706_659_200 + 60 * i as i64;
            json!({
                "id": i, "type": "message", "date": "2024-01-31T00:00:00",
                "date_unixtime": t.to_string(), "from": format!("user{}", i % 7),
                "text": ["message ", {"type": "bold", "text": format!("{i}")}, format!(" about the {CANARY} plan")],
            })
        })
        .collect();
    json!({"name": "Synthetic", "type": "private_group", "id": 1, "messages": messages})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_several_thousand_message_export_is_summarized_in_parts_then_combined() {
    let net = Net::builder().mock_tokens(12).start("summarize").await;
    let dir = std::env::temp_dir().join(format!("cocoon-summarize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("result.json");
    std::fs::write(&file, export(3000).to_string()).expect("write export");
    let before = net.json(&format!("{}/jsonstats", net.base)).await["requests"]["total"]
        .as_u64()
        .unwrap_or(0);
    let base = net.base.clone();
    let f = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(["summarize", &f.to_string_lossy(), "--client", &base])
            .args(["--since", "2024-01-31T01:00:00", "--chunk-chars", "8000"])
            .output()
            .expect("run cocoon summarize")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.trim().is_empty(), "no summary printed: {stderr}");
    // 3000 messages, the first 60 before --since: 2940 lines of about 60 characters.
    assert!(stderr.contains("2940 messages"), "{stderr}");
    let parts: u64 = stderr
        .split("messages, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the part count");
    assert!(parts >= 15, "{stderr}");
    // Each part, then the combined summary: one request each, all answered.
    let after = net.json(&format!("{}/jsonstats", net.base)).await;
    assert_eq!(
        after["requests"]["total"].as_u64().unwrap_or(0) - before,
        parts + 1,
        "{after}"
    );
    assert!(
        stderr.contains(&format!("{} request(s)", parts + 1)) && stderr.contains("TON"),
        "the total cost line: {stderr}"
    );
    // The test network prices tokens: the run cost something.
    assert!(!stderr.contains("cost 0 TON"), "{stderr}");
    for p in [&net.client, &net.proxy]
        .into_iter()
        .chain(net.workers.iter())
    {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        assert!(!log.contains(CANARY), "{} logged a message", p.name);
    }
    // A clear error for an export without the chat asked for.
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["summarize", &file.to_string_lossy(), "--client", &net.base])
        .args(["--since", "2030-01-01"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no messages to summarize"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The defaults fit the embedded engine: a real model (SmolLM2-135M) summarizes a small
/// export in parts and combines them, with no option but the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_summarize_an_export_on_the_embedded_model() {
    let dir = cocoon_engine::models::default_models_dir();
    let path = match cocoon_engine::models::fetch_default_model(&dir, false).await {
        Ok(p) => p,
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must have the default model: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: the default model is not available ({e})");
            return;
        }
    };
    let net = Net::builder()
        .model("SmolLM2-135M-Instruct")
        .llama_model(path)
        .start("summarize-llama")
        .await;
    let dir = std::env::temp_dir().join(format!("cocoon-summarize-llama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("result.json");
    std::fs::write(&file, export(60).to_string()).expect("write export");
    let base = net.base.clone();
    let f = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(["summarize", &f.to_string_lossy(), "--client", &base])
            .output()
            .expect("run cocoon summarize")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.trim().is_empty(), "{stderr}");
    assert!(stderr.contains("60 messages"), "{stderr}");
    eprintln!("{stderr}");
    assert!(
        !stderr.contains(" 1 part(s)"),
        "the export should need several parts: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
