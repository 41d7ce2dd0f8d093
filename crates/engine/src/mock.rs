//! A deterministic in-process engine: the benchmark backend and the test double.
//!
//! Given the same request and [`MockConfig`], [`MockEngine`] produces the same bytes (fixed `id`
//! and `created`), in real OpenAI shapes: `chat.completion` / `text_completion` JSON, or SSE
//! `chat.completion.chunk` / `text_completion` events, a final chunk with `finish_reason`, a usage
//! chunk with empty `choices` when `stream_options.include_usage` is set, then `data: [DONE]`.
//!
//! Rules (so tests can predict every number):
//! - Token `i` (from 0) is the text `" tok{i}"`; see [`token_text`].
//! - Completion tokens = `min(limit, completion_tokens)` where `limit` is
//!   `max_completion_tokens`, else `max_tokens` (vLLM's precedence); `finish_reason` is
//!   `"length"` when the limit cut the output, else `"stop"`.
//! - Prompt tokens, unless [`MockConfig::prompt_tokens`] fixes them: chat = `ceil(B / 4) + 4 × M`
//!   where `B` is the byte length of all message contents (string contents, plus the `text` of
//!   content parts) and `M` the number of messages; completions = `ceil(B / 4)` over the prompt
//!   string(s), or the number of token ids when the prompt is given as ids. See
//!   [`derive_prompt_tokens`].
//! - `cached_tokens` is capped at the prompt tokens and `reasoning_tokens` at the completion
//!   tokens; both are only reported in `usage` (no reasoning text is generated).
//! - Streaming sends `chunk_tokens` tokens per content chunk and sleeps `token_delay` before each
//!   content chunk; a non-streamed answer sleeps once for the same total.
//! - Transcriptions (`/v1/audio/transcriptions`, a multipart form): prompt tokens =
//!   `ceil((F + P) / 4)` where `F` is the byte length of the `file` part and `P` of the
//!   `prompt` field; the text is [`completion_text`] of the completion tokens (no limit field
//!   applies). Non-streamed: `{"text": ..., "usage": {"type": "tokens", "input_tokens",
//!   "output_tokens", "total_tokens"}}` (OpenAI's shape); streamed (`stream=true`): vLLM's
//!   `transcription.chunk` SSE events, a usage chunk (`prompt_tokens`/`completion_tokens`)
//!   when the form has `stream_include_usage=true`, then `data: [DONE]`.
//! - Echo (for tests that follow a marker through the network): when the last chat message's
//!   text (or a completions prompt string) contains [`ECHO_MARKER`] followed by ASCII letters and
//!   digits (at most [`MAX_ECHO`] of them), the answer's text starts with `" "` and those
//!   characters **reversed** (so the answer carries a string the prompt does not), then the
//!   tokens as usual; token counts are unchanged (the echo rides on the first content chunk,
//!   and is dropped when no token is generated). Without the marker nothing changes.
//! - Any model name is accepted; responses name [`MockConfig::model`].
//! - A body that is not a JSON object with `messages` (chat) or `prompt` (completions), or a
//!   form without a `file`, gets a 400 OpenAI error JSON (counted as `rejected`).
//!
//! Counting ([`MockEngine::stats`], shared by clones): `started` when generation begins,
//! `completed` once the last body byte has been handed out, `aborted` when the body stream is
//! dropped (or its deadline passes) before that. The HTTP face is [`server::serve_mock`].

pub mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::{Endpoint, Engine, EngineError, EngineRequest, EngineResponse};
use crate::validate::ValidationLimits;

/// Fixed `created` timestamp, so output bytes are reproducible.
pub const MOCK_CREATED: u64 = 1_700_000_000;

/// The marker in a prompt that makes the mock echo what follows it (see the module docs).
pub const ECHO_MARKER: &str = "ECHO:";
/// Most characters echoed after [`ECHO_MARKER`].
pub const MAX_ECHO: usize = 64;

/// Behaviour of a [`MockEngine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// Tokens generated when the request sets no lower limit. Default: 16.
    pub completion_tokens: u32,
    /// Tokens per SSE content chunk (0 is treated as 1). Default: 1.
    pub chunk_tokens: u32,
    /// Delay before each content chunk. Default: 0.
    pub token_delay: Duration,
    /// Fixed prompt token count; `None` derives it from the input (see module docs). Default: None.
    pub prompt_tokens: Option<u32>,
    /// Cached prompt tokens reported. Default: 0.
    pub cached_tokens: u32,
    /// Reasoning tokens reported. Default: 0.
    pub reasoning_tokens: u32,
    /// Model name in responses and in `/v1/models`. Default: `"mock"`.
    pub model: String,
}

/// A snapshot of a mock engine's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// Generations begun.
    pub started: u64,
    /// Generations whose whole body was handed out.
    pub completed: u64,
    /// Generations whose body was dropped (or timed out) before the end.
    pub aborted: u64,
    /// Requests refused with a 400 (not counted in `started`).
    pub rejected: u64,
    /// Completion tokens handed out by completed generations.
    pub completion_tokens: u64,
}

/// The deterministic engine; cheap to clone (clones share counters and health).
#[derive(Clone, Debug)]
pub struct MockEngine {
    cfg: Arc<MockConfig>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    started: AtomicU64,
    completed: AtomicU64,
    aborted: AtomicU64,
    rejected: AtomicU64,
    completion_tokens: AtomicU64,
    unhealthy: AtomicBool,
}

/// What one request will produce.
#[derive(Debug, Clone)]
struct Plan {
    endpoint: Endpoint,
    stream: bool,
    include_usage: bool,
    prompt: u64,
    cached: u64,
    completion: u64,
    reasoning: u64,
    finish_reason: &'static str,
    /// Text the answer starts with ([`echo_of`]); empty without the marker.
    echo: String,
}

/// Marks the end of a generation exactly once; an unfinished drop counts as an abort.
struct Outcome {
    shared: Arc<Shared>,
    tokens: u64,
    finished: bool,
}

/// The text of token `i`.
pub fn token_text(i: u64) -> String {
    format!(" tok{i}")
}

/// What the mock echoes for a prompt `text`: `" "` and the ASCII letters and digits right
/// after the first [`ECHO_MARKER`] (at most [`MAX_ECHO`]), reversed; empty when there are none.
pub fn echo_of(text: &str) -> String {
    let Some(at) = text.find(ECHO_MARKER) else {
        return String::new();
    };
    let word: String = text[at + ECHO_MARKER.len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .take(MAX_ECHO)
        .collect();
    if word.is_empty() {
        return String::new();
    }
    std::iter::once(' ').chain(word.chars().rev()).collect()
}

/// The text of a chat message's `content` (a string, or the `text` of its parts).
fn message_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The full completion text of `n` tokens.
pub fn completion_text(n: u64) -> String {
    (0..n).map(token_text).collect()
}

// === impl MockConfig ===

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            completion_tokens: 16,
            chunk_tokens: 1,
            token_delay: Duration::ZERO,
            prompt_tokens: None,
            cached_tokens: 0,
            reasoning_tokens: 0,
            model: "mock".to_owned(),
        }
    }
}

// === impl MockEngine ===

impl MockEngine {
    /// A new engine with fresh counters.
    pub fn new(cfg: MockConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            shared: Arc::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MockConfig {
        &self.cfg
    }

    /// Current counters (shared by all clones).
    pub fn stats(&self) -> MockStats {
        let s = &self.shared;
        MockStats {
            started: s.started.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            aborted: s.aborted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            completion_tokens: s.completion_tokens.load(Ordering::Relaxed),
        }
    }

    /// Makes [`Engine::health`] (and the server's `/v1/models`) fail or succeed, to test
    /// the worker's liveness handling.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.unhealthy.store(!healthy, Ordering::Relaxed);
    }

    /// Whether the engine currently reports itself healthy.
    pub fn is_healthy(&self) -> bool {
        !self.shared.unhealthy.load(Ordering::Relaxed)
    }

    fn plan(
        &self,
        endpoint: Endpoint,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Plan, String> {
        if endpoint == Endpoint::AudioTranscriptions {
            return self.plan_transcription(content_type, body);
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| "body is not valid JSON")?;
        let obj = v.as_object().ok_or("body must be a JSON object")?;
        let (derived, echo) = match endpoint {
            Endpoint::ChatCompletions => {
                let msgs = obj
                    .get("messages")
                    .and_then(Value::as_array)
                    .ok_or("'messages' must be an array")?;
                let last = msgs.last().map(|m| message_text(m.get("content")));
                (
                    derive_prompt_tokens(endpoint, msgs),
                    echo_of(last.as_deref().unwrap_or_default()),
                )
            }
            Endpoint::Completions => {
                let prompt = obj.get("prompt").ok_or("'prompt' is required")?;
                (
                    derive_prompt_tokens(endpoint, std::slice::from_ref(prompt)),
                    echo_of(prompt.as_str().unwrap_or_default()),
                )
            }
            Endpoint::AudioTranscriptions => (0, String::new()), // planned above
        };
        let prompt = self.cfg.prompt_tokens.map_or(derived, u64::from);
        let limit = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_u64));
        let configured = u64::from(self.cfg.completion_tokens);
        let (completion, finish_reason) = match limit {
            Some(l) if l < configured => (l, "length"),
            _ => (configured, "stop"),
        };
        let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Plan {
            endpoint,
            stream,
            include_usage,
            prompt,
            cached: u64::from(self.cfg.cached_tokens).min(prompt),
            completion,
            reasoning: u64::from(self.cfg.reasoning_tokens).min(completion),
            finish_reason,
            echo,
        })
    }

    /// A transcription's plan, from its form (see the module docs).
    fn plan_transcription(&self, content_type: Option<&str>, body: &[u8]) -> Result<Plan, String> {
        // The worker checked the form; the mock only reads it (its HTTP face bounds the body).
        let limits = ValidationLimits {
            max_body_bytes: usize::MAX,
            max_form_parts: 1024,
            max_form_text_bytes: usize::MAX,
            ..ValidationLimits::default()
        };
        let form =
            crate::multipart::parse_form(content_type, body, &limits).map_err(|e| e.message)?;
        let file = form
            .parts()
            .iter()
            .find(|p| p.name == "file" && p.filename.is_some())
            .ok_or("'file' is required")?;
        let bytes = file.data.len() as u64 + form.text("prompt").map_or(0, |p| p.len() as u64);
        let prompt = self.cfg.prompt_tokens.map_or(bytes.div_ceil(4), u64::from);
        let flag = |name: &str| {
            form.text(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        };
        Ok(Plan {
            endpoint: Endpoint::AudioTranscriptions,
            stream: flag("stream"),
            include_usage: flag("stream_include_usage"),
            prompt,
            cached: 0,
            completion: u64::from(self.cfg.completion_tokens),
            reasoning: 0,
            finish_reason: "stop",
            echo: String::new(),
        })
    }

    fn reject(&self, message: &str) -> EngineResponse {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
        EngineResponse {
            status: 400,
            headers: vec![("content-type".into(), "application/json".into())],
            body: stream::once(async move { Ok(Bytes::from(body.to_string())) }).boxed(),
        }
    }
}

#[async_trait::async_trait]
impl Engine for MockEngine {
    async fn start(&self, req: EngineRequest) -> Result<EngineResponse, EngineError> {
        let plan = match self.plan(req.endpoint, req.content_type.as_deref(), &req.body) {
            Ok(p) => p,
            Err(msg) => return Ok(self.reject(msg.as_ref())),
        };
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            request_id = %req.request_id,
            endpoint = %req.endpoint,
            stream = plan.stream,
            completion_tokens = plan.completion,
            "mock generation started"
        );
        let outcome = Outcome {
            shared: self.shared.clone(),
            tokens: plan.completion,
            finished: false,
        };
        let chunks = render(&plan, &self.cfg);
        let content_type = if plan.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
        if plan.stream {
            headers.push(("cache-control".to_owned(), "no-cache".to_owned()));
        }
        Ok(EngineResponse {
            status: 200,
            headers,
            body: body_stream(chunks, self.cfg.token_delay, req.deadline, outcome),
        })
    }

    async fn health(&self) -> Result<(), EngineError> {
        if self.is_healthy() {
            Ok(())
        } else {
            Err(EngineError::Unhealthy("mock engine set unhealthy".into()))
        }
    }
}

// === impl Outcome ===

impl Outcome {
    fn complete(&mut self) {
        if !self.finished {
            self.finished = true;
            self.shared.completed.fetch_add(1, Ordering::Relaxed);
            self.shared
                .completion_tokens
                .fetch_add(self.tokens, Ordering::Relaxed);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === generation ===

/// One body chunk and whether a token delay precedes it.
struct Chunk {
    delay_before: u32,
    bytes: Bytes,
}

/// Derives prompt tokens from chat messages or completion prompts (see the module docs); for
/// transcriptions, `ceil(B / 4)` over the bytes of the string `items`.
pub fn derive_prompt_tokens(endpoint: Endpoint, items: &[Value]) -> u64 {
    fn text_bytes(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Array(parts) => parts
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.len() as u64,
                    _ => p
                        .get("text")
                        .and_then(Value::as_str)
                        .map_or(0, |s| s.len() as u64),
                })
                .sum(),
            _ => 0,
        }
    }
    match endpoint {
        Endpoint::ChatCompletions => {
            let bytes: u64 = items
                .iter()
                .map(|m| m.get("content").map_or(0, text_bytes))
                .sum();
            bytes.div_ceil(4) + 4 * items.len() as u64
        }
        Endpoint::Completions => items
            .iter()
            .map(|p| match p {
                Value::String(s) => (s.len() as u64).div_ceil(4),
                Value::Array(a) if a.iter().all(Value::is_number) => a.len() as u64,
                Value::Array(a) if a.iter().all(Value::is_array) => a
                    .iter()
                    .map(|ids| ids.as_array().map_or(0, |x| x.len() as u64))
                    .sum(),
                other => text_bytes(other).div_ceil(4),
            })
            .sum(),
        Endpoint::AudioTranscriptions => items.iter().map(text_bytes).sum::<u64>().div_ceil(4),
    }
}

fn usage_json(p: &Plan) -> Value {
    json!({
        "prompt_tokens": p.prompt,
        "completion_tokens": p.completion,
        "total_tokens": p.prompt + p.completion,
        "prompt_tokens_details": {"cached_tokens": p.cached},
        "completion_tokens_details": {"reasoning_tokens": p.reasoning},
    })
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Renders the whole answer as a list of chunks (cheap: the mock is never asked for much).
fn render(p: &Plan, cfg: &MockConfig) -> Vec<Chunk> {
    let model = cfg.model.as_str();
    let (id, object_full, object_chunk) = match p.endpoint {
        Endpoint::ChatCompletions => ("chatcmpl-mock", "chat.completion", "chat.completion.chunk"),
        Endpoint::Completions => ("cmpl-mock", "text_completion", "text_completion"),
        Endpoint::AudioTranscriptions => return render_transcription(p, cfg),
    };
    let chat = p.endpoint == Endpoint::ChatCompletions;
    // The echo rides on the first token's text (none without tokens).
    let echo = |i: u64| if i == 0 { p.echo.as_str() } else { "" };
    if !p.stream {
        let text = if p.completion == 0 {
            String::new()
        } else {
            format!("{}{}", p.echo, completion_text(p.completion))
        };
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": p.finish_reason})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": p.finish_reason})
        };
        let body = json!({"id": id, "object": object_full, "created": MOCK_CREATED, "model": model,
            "choices": [choice], "usage": usage_json(p)});
        let chunks_n = p.completion.div_ceil(u64::from(cfg.chunk_tokens.max(1)));
        return vec![Chunk {
            delay_before: u32::try_from(chunks_n).unwrap_or(u32::MAX),
            bytes: Bytes::from(body.to_string()),
        }];
    }
    let per = u64::from(cfg.chunk_tokens.max(1));
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.completion {
        let end = (i + per).min(p.completion);
        let text: String = std::iter::once(echo(i).to_owned())
            .chain((i..end).map(token_text))
            .collect();
        let choice = if chat {
            let delta = if i == 0 {
                json!({"role": "assistant", "content": text})
            } else {
                json!({"content": text})
            };
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null})
        };
        let v = json!({"id": id, "object": object_chunk, "created": MOCK_CREATED, "model": model, "choices": [choice]});
        out.push(Chunk {
            delay_before: 1,
            bytes: sse(&v),
        });
        i = end;
    }
    let last = if chat {
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": p.finish_reason})
    } else {
        json!({"index": 0, "text": "", "logprobs": null, "finish_reason": p.finish_reason})
    };
    out.push(Chunk {
        delay_before: 0,
        bytes: sse(
            &json!({"id": id, "object": object_chunk, "created": MOCK_CREATED, "model": model, "choices": [last]}),
        ),
    });
    if p.include_usage {
        out.push(Chunk {
            delay_before: 0,
            bytes: sse(
                &json!({"id": id, "object": object_chunk, "created": MOCK_CREATED, "model": model, "choices": [], "usage": usage_json(p)}),
            ),
        });
    }
    out.push(Chunk {
        delay_before: 0,
        bytes: Bytes::from_static(b"data: [DONE]\n\n"),
    });
    out
}

/// A transcription: OpenAI's JSON, or vLLM's `transcription.chunk` stream (module docs).
fn render_transcription(p: &Plan, cfg: &MockConfig) -> Vec<Chunk> {
    let per = u64::from(cfg.chunk_tokens.max(1));
    if !p.stream {
        let body = json!({"text": completion_text(p.completion), "usage": {
            "type": "tokens",
            "input_tokens": p.prompt,
            "output_tokens": p.completion,
            "total_tokens": p.prompt + p.completion,
        }});
        return vec![Chunk {
            delay_before: u32::try_from(p.completion.div_ceil(per)).unwrap_or(u32::MAX),
            bytes: Bytes::from(body.to_string()),
        }];
    }
    let (id, object, model) = ("trsc-mock", "transcription.chunk", cfg.model.as_str());
    let event = |choices: Value| json!({"id": id, "object": object, "created": MOCK_CREATED, "model": model, "choices": choices});
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.completion {
        let end = (i + per).min(p.completion);
        let text: String = (i..end).map(token_text).collect();
        out.push(Chunk {
            delay_before: 1,
            bytes: sse(&event(
                json!([{"delta": {"content": text}, "finish_reason": null, "stop_reason": null}]),
            )),
        });
        i = end;
    }
    out.push(Chunk {
        delay_before: 0,
        bytes: sse(&event(
            json!([{"delta": {}, "finish_reason": p.finish_reason, "stop_reason": null}]),
        )),
    });
    if p.include_usage {
        let mut usage = event(json!([]));
        usage["usage"] = json!({
            "prompt_tokens": p.prompt,
            "completion_tokens": p.completion,
            "total_tokens": p.prompt + p.completion,
        });
        out.push(Chunk {
            delay_before: 0,
            bytes: sse(&usage),
        });
    }
    out.push(Chunk {
        delay_before: 0,
        bytes: Bytes::from_static(b"data: [DONE]\n\n"),
    });
    out
}

/// Streams `chunks` with their delays. Dropping the stream drops `outcome` (abort); the
/// deadline ends it with [`EngineError::Timeout`] (also an abort).
fn body_stream(
    chunks: Vec<Chunk>,
    token_delay: Duration,
    deadline: tokio::time::Instant,
    outcome: Outcome,
) -> futures::stream::BoxStream<'static, Result<Bytes, EngineError>> {
    let state = Some((chunks.into_iter(), outcome));
    stream::unfold(state, move |state| async move {
        let (mut it, mut outcome) = state?;
        let chunk = it.next()?;
        if chunk.delay_before > 0 && !token_delay.is_zero() {
            let wait = token_delay.saturating_mul(chunk.delay_before);
            if tokio::time::timeout_at(deadline, tokio::time::sleep(wait))
                .await
                .is_err()
            {
                drop(outcome); // unfinished: counted as aborted
                return Some((Err(EngineError::Timeout), None));
            }
        }
        if it.as_slice().is_empty() {
            outcome.complete();
        }
        Some((Ok(chunk.bytes), Some((it, outcome))))
    })
    .boxed()
}

#[cfg(test)]
mod tests;
