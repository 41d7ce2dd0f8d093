//! `POST /v1/audio/transcriptions` (a multipart form) through the whole network: app → client
//! → proxy → worker → engine and back, billed and booked like a chat; and a worker whose engine
//! does not serve it answers with that engine's own clear error, charged nothing. The embedded
//! engine's refusal is in `llama.rs`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Net;

/// The boundary curl uses (24 dashes and 22 characters).
const BOUNDARY: &str = "------------------------d74496d66958873e";

/// A form as curl builds it for `-F file=@<path> -F field=value ...`: the app's own file name
/// and a Content-Type on the file. Returns the body and its Content-Type.
pub fn app_form(model: &str, file: &[u8], fields: &[(&str, &str)]) -> (Vec<u8>, String) {
    let mut body = Vec::new();
    let mut part = |disposition: String, extra: &str, data: &[u8]| {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n{extra}\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    part(
        r#"name="file"; filename="/home/ada/Recordings/board meeting.wav""#.into(),
        "Content-Type: audio/x-wav\r\n",
        file,
    );
    part(r#"name="model""#.into(), "", model.as_bytes());
    for (name, value) in fields {
        part(format!(r#"name="{name}""#), "", value.as_bytes());
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={BOUNDARY}"))
}

/// POSTs a form to the client's transcription endpoint.
pub async fn post_form(net: &Net, form: (Vec<u8>, String)) -> reqwest::Response {
    let (body, content_type) = form;
    reqwest::Client::new()
        .post(format!("{}/v1/audio/transcriptions", net.base))
        .header("Content-Type", content_type)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("POST /v1/audio/transcriptions")
}

/// 400 bytes of "audio", not UTF-8.
fn audio() -> Vec<u8> {
    (0..400u32).map(|i| (i * 7 % 256) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcription_through_the_network_is_answered_billed_and_booked() {
    let net = Net::builder().mock_tokens(6).start("audio").await;
    let prompt = "Ada Lovelace"; // 12 bytes
                                 // The mock's input tokens: (400 file bytes + 12 prompt bytes) / 4.
    let input = 103u64;

    let r = post_form(&net, app_form("mock", &audio(), &[("prompt", prompt)])).await;
    assert_eq!(r.status(), 200);
    for h in ["x-cocoon-client-start", "x-cocoon-worker-start"] {
        assert!(
            r.headers().contains_key(h),
            "missing {h}: {:?}",
            r.headers()
        );
    }
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["text"], cocoon_engine::mock::completion_text(6));
    let u = &v["usage"];
    assert_eq!(u["type"], "tokens");
    assert_eq!(u["input_tokens"].as_u64(), Some(input));
    assert_eq!(u["output_tokens"], 6);
    // Cocoon's cost fields: input billed as prompt, output as completion, 2 nanoTON a token.
    assert_eq!(u["prompt_total_cost"].as_u64(), Some(2 * input));
    assert_eq!(u["completion_total_cost"], 12);
    assert_eq!(u["total_cost"].as_u64(), Some(2 * (input + 6)));
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(s["tokens_charged"].as_u64(), Some(input + 6), "{s}");

    // Streamed: vLLM's chunks, the usage the worker asked the engine for, then [DONE].
    let r = post_form(
        &net,
        app_form("mock", &audio(), &[("prompt", prompt), ("stream", "true")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let usage = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["usage"].is_object())
        .expect("a usage chunk");
    assert_eq!(usage["usage"]["prompt_tokens"].as_u64(), Some(input));
    assert_eq!(usage["usage"]["total_cost"].as_u64(), Some(2 * (input + 6)));

    // A form the client refuses never costs anything.
    let r = post_form(&net, app_form("mock", &audio(), &[("max_tokens", "9")])).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("JSON");
    assert_eq!(e["error"]["param"], "max_tokens", "{e}");

    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(s["tokens_charged"].as_u64(), Some(2 * (input + 6)), "{s}");
    net.assert_books_balance(&net.proxy_stats).await;
}

/// An OpenAI-compatible engine without an audio model, as vLLM serving a chat model answers:
/// `/v1/models` works, the transcription route is FastAPI's 404.
async fn engine_without_audio() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the head and the body it announces (bounded), then answer and close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let complete = |buf: &[u8]| {
                    let text = String::from_utf8_lossy(buf);
                    let Some((head, _)) = text.split_once("\r\n\r\n") else {
                        return false;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    buf.len() >= head.len() + 4 + length
                };
                while !complete(&buf) && buf.len() < 1 << 20 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) = if buf.starts_with(b"GET") {
                    (
                        "200 OK",
                        r#"{"object":"list","data":[{"id":"mock","object":"model"}]}"#,
                    )
                } else {
                    ("404 Not Found", r#"{"detail":"Not Found"}"#)
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_without_audio_answers_for_itself_and_nothing_is_charged() {
    let url = engine_without_audio().await;
    let net = Net::builder().engine_url(url).start("audio-404").await;
    let started = std::time::Instant::now();
    let r = post_form(&net, app_form("mock", &audio(), &[])).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.expect("the engine's own JSON");
    assert_eq!(v["detail"], "Not Found");
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(s["tokens_charged"], 0, "{s}");
    net.assert_books_balance(&net.proxy_stats).await;
}
