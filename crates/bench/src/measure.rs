//! One measured request: send, read the body as it arrives, time content chunks.
//!
//! Only what the report needs is kept (timestamps and token counts); response text is parsed to
//! find content and usage and then dropped, never logged.

use std::fmt;
use std::time::Duration;

use cocoon_engine::sse::SseParser;
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::{Job, MAX_RESPONSE_BYTES, MAX_SSE_LINE};

/// Timings and counts of one successful request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    pub(crate) latency: Duration,
    pub(crate) ttft: Option<Duration>,
    pub(crate) gaps: Vec<Duration>,
    pub(crate) completion_tokens: u64,
}

/// Why a request did not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Status(u16),
    Connect,
    Transport,
    Timeout,
    BodyTooLarge,
    BadSse,
    NoDone,
    BadJson,
    NotSent,
}

/// Content and usage seen so far in one response.
#[derive(Default)]
struct Progress {
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    gaps: Vec<Duration>,
    content_chunks: u64,
    usage_tokens: Option<u64>,
    done: bool,
}

// === impl Failure ===

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "status {s}"),
            Self::Connect => f.write_str("connect error"),
            Self::Transport => f.write_str("transport error"),
            Self::Timeout => f.write_str("timeout"),
            Self::BodyTooLarge => f.write_str("body too large"),
            Self::BadSse => f.write_str("invalid SSE"),
            Self::NoDone => f.write_str("stream ended without [DONE]"),
            Self::BadJson => f.write_str("invalid JSON body"),
            Self::NotSent => f.write_str("not sent before the timeout"),
        }
    }
}

fn classify(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_connect() {
        Failure::Connect
    } else {
        Failure::Transport
    }
}

// === impl Progress ===

impl Progress {
    fn on_frame(&mut self, v: &Value, at: Instant) {
        if let Some(n) = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
        {
            self.usage_tokens = Some(self.usage_tokens.map_or(n, |u| u.max(n)));
        }
        if !has_content(v) {
            return;
        }
        self.content_chunks += 1;
        if self.first_content.is_none() {
            self.first_content = Some(at);
        }
        if let Some(prev) = self.last_content.replace(at) {
            self.gaps.push(at.saturating_duration_since(prev));
        }
    }

    fn tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(self.content_chunks)
    }
}

/// Whether a response object carries generated text (chat delta/message, or completions text).
fn has_content(v: &Value) -> bool {
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return false;
    };
    const PATHS: [&str; 5] = [
        "/delta/content",
        "/delta/reasoning_content",
        "/delta/tool_calls",
        "/text",
        "/message/content",
    ];
    choices.iter().any(|c| {
        PATHS.iter().any(|p| match c.pointer(p) {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            _ => false,
        })
    })
}

/// Sends one request and measures it. The caller bounds the whole call by `deadline` too.
pub(crate) async fn one(job: &Job, deadline: Instant) -> Result<Sample, Failure> {
    let start = Instant::now();
    let remaining = deadline.saturating_duration_since(start);
    if remaining.is_zero() {
        return Err(Failure::NotSent);
    }
    let resp = job
        .client
        .post(&job.endpoint)
        .timeout(remaining)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(job.body.clone())
        .send()
        .await
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let mut progress = Progress::default();
    let mut body = resp.bytes_stream();
    let mut total = 0usize;
    let mut parser = SseParser::new(MAX_SSE_LINE);
    let mut whole = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| classify(&e))?;
        let at = Instant::now();
        total += chunk.len();
        if total > MAX_RESPONSE_BYTES {
            return Err(Failure::BodyTooLarge);
        }
        if job.stream {
            let mut bad = false;
            parser
                .feed(&chunk, |ev| {
                    let data = ev.data.trim();
                    if data == "[DONE]" {
                        progress.done = true;
                    } else if let Ok(v) = serde_json::from_str::<Value>(data) {
                        progress.on_frame(&v, at);
                    } else {
                        bad = true;
                    }
                })
                .map_err(|_| Failure::BadSse)?;
            if bad {
                return Err(Failure::BadSse);
            }
        } else {
            whole.extend_from_slice(&chunk);
        }
    }
    let end = Instant::now();
    if job.stream {
        if let Some(ev) = parser.finish() {
            if ev.data.trim() == "[DONE]" {
                progress.done = true;
            }
        }
        if !progress.done {
            return Err(Failure::NoDone);
        }
    } else {
        let v: Value = serde_json::from_slice(&whole).map_err(|_| Failure::BadJson)?;
        progress.on_frame(&v, end);
    }
    Ok(Sample {
        latency: end.saturating_duration_since(start),
        ttft: progress
            .first_content
            .map(|t| t.saturating_duration_since(start)),
        completion_tokens: progress.tokens(),
        gaps: progress.gaps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_detection() {
        assert!(has_content(&json!({"choices":[{"delta":{"content":"x"}}]})));
        assert!(has_content(&json!({"choices":[{"text":"x"}]})));
        assert!(has_content(
            &json!({"choices":[{"message":{"content":"x"}}]})
        ));
        assert!(!has_content(&json!({"choices":[{"delta":{"content":""}}]})));
        assert!(!has_content(&json!({"choices":[],"usage":{}})));
    }

    #[test]
    fn progress_tokens_prefer_usage() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.on_frame(&json!({"choices":[{"delta":{"content":"a"}}]}), t0);
        p.on_frame(
            &json!({"choices":[{"delta":{"content":"b"}}]}),
            t0 + Duration::from_millis(5),
        );
        assert_eq!(p.tokens(), 2);
        assert_eq!(p.gaps, vec![Duration::from_millis(5)]);
        p.on_frame(&json!({"choices":[],"usage":{"completion_tokens":9}}), t0);
        assert_eq!(p.tokens(), 9);
        assert_eq!(p.first_content, Some(t0));
    }

    #[test]
    fn failure_reasons_render() {
        assert_eq!(Failure::Status(502).to_string(), "status 502");
        assert_eq!(Failure::NotSent.to_string(), "not sent before the timeout");
    }
}
