//! The embedded inference engine: a GGUF model run in-process by llama.cpp (`llama-cpp-2`),
//! behind the cargo feature `llama`.
//!
//! [`LlamaEngine`] implements [`Engine`] with the same OpenAI semantics and response shapes as
//! [`crate::mock`]: chat completions rendered with the model's own chat template
//! (`tokenizer.chat_template` from the GGUF, see [`template`]), raw `/v1/completions`,
//! `max_tokens` / `max_completion_tokens`, `temperature` (0 = greedy), `top_p`, `seed`
//! (same seed, same text), `stop`, penalties, streaming with usage in the final chunk (and,
//! with `include_usage`, the usage so far on every chunk, as vLLM's `continuous_usage_stats`
//! does: prompt tokens and the tokens sampled up to that chunk), and
//! `finish_reason` `stop` vs `length`. Tools (`tools`, `tool_choice`, `parallel_tool_calls`) and
//! structured output (`response_format` `json_object` / `json_schema`) are enforced with a
//! llama.cpp grammar built by [`crate::grammar`] (see [`tools`]): tool calls come back as
//! OpenAI `tool_calls` with `finish_reason: "tool_calls"`. What it cannot honour (`n > 1`,
//! logprobs, echo, suffix, schema keywords a grammar cannot enforce, images) is refused with
//! an OpenAI 400 ([`params`]).
//! It has no audio model: `/v1/audio/transcriptions` is answered with an OpenAI error and HTTP
//! 501 ("this worker's engine does not serve ..."), at once, without touching the queue.
//!
//! Concurrency: one decode thread (see [`runner`]) owns the llama.cpp context and does
//! continuous batching over [`LlamaConfig::slots`] sequences; requests beyond the slots wait in
//! a queue of [`LlamaConfig::queue`] and beyond that get a 503. No llama.cpp call runs on a
//! tokio worker: [`LlamaEngine::load`] is blocking (call it in `spawn_blocking`), everything
//! else happens on the decode thread. Dropping a response body cancels its generation at the
//! next decode step and frees the slot. Dropping the last clone of the engine stops the decode
//! thread; generations still running then end with an error.
//!
//! Decisions: the context is `context_size` KV cells in one unified cache; each request may use
//! `context_size / slots` of them (prompt + completion, and never more than the model's training
//! context), so a full set of slots always fits. A longer prompt is a 400
//! `context_length_exceeded`; `max_tokens` beyond the room is cut to it (`finish_reason: length`).
//! A missing `max_tokens` means "until that per-request room is used up". Usage counts the
//! end-of-generation token as a completion token (it was computed). Prompts and completions
//! are never logged.

mod params;
mod respond;
mod runner;
mod stop;
mod template;
mod tools;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::{Engine, EngineError, EngineRequest, EngineResponse};
use params::{parse_request, sampler_stages, PromptInput};
use respond::{error_body, Meta, Usage};
use runner::{Counters, Event, Geometry, Job, JobPrompt};
use serde_json::{json, Value};
use template::ChatTemplate;
use tools::{Constraints, ToolMode};

/// Fewest KV cells a slot may get.
const MIN_CELLS_PER_SLOT: u32 = 64;
/// Most slots (llama.cpp's sequence limit is far higher; this bounds memory per step).
const MAX_SLOTS: u32 = 256;

/// How to load and run a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlamaConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Name reported in responses. Default: the file name without `.gguf`.
    pub model_name: String,
    /// Total KV cells, split evenly over the slots. Default: 4096.
    pub context_size: u32,
    /// Requests generated at the same time. Default: 4.
    pub slots: u32,
    /// CPU threads for llama.cpp. Default: the available cores (0 also means that).
    pub threads: u32,
    /// Requests waiting for a slot before new ones get a 503. Default: 64.
    pub queue: usize,
    /// Most tokens in one decode batch (prefill chunk + one per generating slot). Default: 512.
    pub batch: u32,
}

/// A snapshot of the engine's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlamaStats {
    /// Requests that got a slot.
    pub started: u64,
    /// Generations that ended normally (stop or length).
    pub completed: u64,
    /// Generations (or queued requests) dropped by their caller.
    pub cancelled: u64,
    /// Requests refused by the decode thread (prompt too long, bad token ids).
    pub rejected: u64,
    /// Generations ended by a llama.cpp error.
    pub failed: u64,
    /// Completion tokens of completed generations.
    pub completion_tokens: u64,
    /// `decode` calls made.
    pub decode_steps: u64,
    /// Slots in use now.
    pub active: usize,
    /// Requests waiting for a slot now.
    pub queued: usize,
}

/// The llama.cpp engine; cheap to clone (clones share the model and the decode thread).
#[derive(Clone)]
pub struct LlamaEngine {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LlamaConfig,
    sha256: [u8; 32],
    template: ChatTemplate,
    jobs: SyncSender<Job>,
    counters: Arc<Counters>,
}

/// llama.cpp's backend may be initialised once per process; it lives for the process.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp logs to stderr by default; the worker has its own logging.
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| EngineError::Config(format!("llama.cpp backend: {e}")))
}

// === impl LlamaConfig ===

impl LlamaConfig {
    /// Defaults for `model_path`.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        let model_path = model_path.into();
        let model_name = model_path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.strip_suffix(".gguf").unwrap_or(n).to_owned())
            .unwrap_or_else(|| "llama".to_owned());
        Self {
            model_path,
            model_name,
            context_size: 4096,
            slots: 4,
            threads: 0,
            queue: 64,
            batch: 512,
        }
    }

    fn check(&self) -> Result<Geometry, EngineError> {
        let bad = |m: String| Err(EngineError::Config(m));
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return bad(format!("slots must be 1..={MAX_SLOTS}"));
        }
        if self.context_size / self.slots < MIN_CELLS_PER_SLOT {
            return bad(format!(
                "context_size must give each slot at least {MIN_CELLS_PER_SLOT} tokens"
            ));
        }
        if self.batch < self.slots {
            return bad("batch must be at least the number of slots".into());
        }
        if self.queue == 0 {
            return bad("queue must be at least 1".into());
        }
        let threads = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        } else {
            self.threads
        };
        Ok(Geometry {
            context_size: self.context_size,
            slots: self.slots,
            threads,
            batch: self.batch,
        })
    }
}

impl Default for LlamaConfig {
    /// The default model in the default models dir.
    fn default() -> Self {
        Self::new(crate::models::default_model_path(
            &crate::models::default_models_dir(),
        ))
    }
}

// === impl LlamaEngine ===

impl LlamaEngine {
    /// Hashes and loads the model, creates the context and starts the decode thread.
    /// Blocking (hundreds of ms): call it from `spawn_blocking`.
    pub fn load(cfg: LlamaConfig) -> Result<Self, EngineError> {
        let geo = cfg.check()?;
        if !cfg.model_path.is_file() {
            return Err(EngineError::Config(format!(
                "model file {} is missing (run `cocoon model fetch`)",
                cfg.model_path.display()
            )));
        }
        let sha256 = crate::models::sha256_file(&cfg.model_path)
            .map_err(|e| EngineError::Config(format!("reading model: {e}")))?;
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &cfg.model_path, &LlamaModelParams::default())
                .map_err(|e| {
                    EngineError::Config(format!("loading {}: {e}", cfg.model_path.display()))
                })?;
        let template = load_template(&model);
        let model = Arc::new(model);
        let counters = Arc::new(Counters::default());
        let (jobs, rx) = std::sync::mpsc::sync_channel(cfg.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let c2 = counters.clone();
        // The thread owns the model and context; it ends when `Inner` is dropped (shutdown
        // flag + closed job channel), so it needs no other owner.
        std::thread::Builder::new()
            .name("llama-decode".into())
            .spawn(move || runner::run(backend, model, geo, rx, c2, ready_tx))
            .map_err(|e| EngineError::Config(format!("spawning the decode thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(EngineError::Config(format!("llama.cpp context: {e}"))),
            Err(_) => return Err(EngineError::Config("decode thread died".into())),
        }
        tracing::info!(
            model = %cfg.model_name,
            sha256 = %hex::encode(sha256),
            slots = geo.slots,
            context = geo.context_size,
            threads = geo.threads,
            "llama engine loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                sha256,
                template,
                jobs,
                counters,
            }),
        })
    }

    /// The model name used in responses.
    pub fn model_name(&self) -> &str {
        &self.inner.cfg.model_name
    }

    /// sha256 of the GGUF file, computed at load.
    pub fn model_sha256(&self) -> [u8; 32] {
        self.inner.sha256
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &LlamaConfig {
        &self.inner.cfg
    }

    /// Current counters.
    pub fn stats(&self) -> LlamaStats {
        let c = &self.inner.counters;
        LlamaStats {
            started: c.started.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
            decode_steps: c.decode_steps.load(Ordering::Relaxed),
            active: c.active.load(Ordering::SeqCst),
            queued: c.queued.load(Ordering::SeqCst),
        }
    }

    fn prompt(&self, input: PromptInput, c: &Constraints) -> Result<JobPrompt, String> {
        Ok(match input {
            PromptInput::Chat {
                mut messages,
                mut kwargs,
            } => {
                let template = &self.inner.template;
                let native = template.uses_tools();
                if let Some(mode) = c.tools {
                    if native {
                        let tools: Vec<Value> = c
                            .functions
                            .iter()
                            .map(|f| {
                                json!({"type": "function", "function": {
                                    "name": f.name,
                                    "description": f.description,
                                    "parameters": f.parameters.clone().unwrap_or_else(|| json!({})),
                                }})
                            })
                            .collect();
                        kwargs.insert("tools".into(), Value::Array(tools));
                    }
                    add_system(
                        &mut messages,
                        &tools::system_text(&c.functions, mode, !native),
                    );
                }
                if !native {
                    // Earlier calls, written the way the model is asked to write them.
                    for m in &mut messages {
                        let calls = m.get("tool_calls").and_then(Value::as_array).cloned();
                        if let Some(calls) = calls {
                            let empty = m.get("content").and_then(Value::as_str) == Some("");
                            if empty {
                                m["content"] = Value::String(tools::render_calls(&calls));
                            }
                        }
                    }
                }
                JobPrompt::Text {
                    text: template.render(&messages, true, &kwargs)?,
                    parse_special: true,
                }
            }
            PromptInput::Text(text) => JobPrompt::Text {
                text,
                parse_special: false,
            },
            PromptInput::Tokens(ids) => JobPrompt::Tokens(ids),
        })
    }
}

/// Appends `text` to the first system message, or puts a system message first.
fn add_system(messages: &mut Vec<Value>, text: &str) {
    if let Some(first) = messages.first_mut() {
        if first.get("role").and_then(Value::as_str) == Some("system") {
            let old = first.get("content").and_then(Value::as_str).unwrap_or("");
            let joined = if old.is_empty() {
                text.to_owned()
            } else {
                format!("{old}\n\n{text}")
            };
            first["content"] = Value::String(joined);
            return;
        }
    }
    messages.insert(0, json!({"role": "system", "content": text}));
}

/// The GGUF's chat template, or ChatML when it has none (or one minijinja cannot parse).
fn load_template(model: &LlamaModel) -> ChatTemplate {
    let vocab = model.vocab();
    let piece = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    let (bos, eos) = (piece(vocab.bos()), piece(vocab.eos()));
    match model.meta_val_str("tokenizer.chat_template") {
        Ok(src) => match ChatTemplate::new(src, bos.clone(), eos.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "model chat template unusable; using ChatML");
                ChatTemplate::chatml(bos, eos)
            }
        },
        Err(_) => {
            tracing::info!("model has no chat template; using ChatML");
            ChatTemplate::chatml(bos, eos)
        }
    }
}

impl fmt::Debug for LlamaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlamaEngine")
            .field("model", &self.inner.cfg.model_name)
            .field("sha256", &hex::encode(self.inner.sha256))
            .field("template_bytes", &self.inner.template.source().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The job channel closes right after this; the thread sees either and exits.
        self.counters.shutdown.store(true, Ordering::SeqCst);
    }
}

fn json_response(status: u16, body: Bytes) -> EngineResponse {
    EngineResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: stream::once(async move { Ok(body) }).boxed(),
    }
}

fn bad_request(message: &str, param: Option<&str>, code: &str) -> EngineResponse {
    json_response(
        400,
        error_body(message, "invalid_request_error", param, code),
    )
}

/// The answer to an endpoint the embedded engine does not serve (HTTP 501).
fn not_served(endpoint: crate::engine::Endpoint) -> EngineResponse {
    json_response(
        501,
        error_body(
            &format!("this worker's engine does not serve {endpoint}"),
            "invalid_request_error",
            None,
            "unsupported_endpoint",
        ),
    )
}

#[async_trait::async_trait]
impl Engine for LlamaEngine {
    async fn start(&self, req: EngineRequest) -> Result<EngineResponse, EngineError> {
        if req.endpoint.is_multipart() {
            tracing::debug!(request_id = %req.request_id, endpoint = %req.endpoint, "llama: endpoint not served");
            return Ok(not_served(req.endpoint));
        }
        let parsed = match parse_request(req.endpoint, &req.body) {
            Ok(p) => p,
            Err(e) => return Ok(bad_request(&e.message, e.param.as_deref(), e.code)),
        };
        let constraints = parsed.constraints;
        let prompt = match self.prompt(parsed.input, &constraints) {
            Ok(p) => p,
            Err(m) => return Ok(bad_request(&m, Some("messages"), "invalid_value")),
        };
        let params = parsed.params;
        let stages = sampler_stages(&params, rand::random());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (stream, include_usage) = (params.stream, params.include_usage);
        let job = Job {
            prompt,
            params,
            stages,
            grammar: constraints.grammar,
            events: tx,
        };
        let c = &self.inner.counters;
        c.queued.fetch_add(1, Ordering::SeqCst);
        match self.inner.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                c.queued.fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(request_id = %req.request_id, "llama queue full");
                return Ok(json_response(
                    503,
                    error_body(
                        "the engine is at capacity; retry later",
                        "server_error",
                        None,
                        "overloaded",
                    ),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                c.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(EngineError::Unhealthy("llama decode thread stopped".into()));
            }
        }
        // Dropping `rx` (this future or the body) cancels the job, queued or running.
        let first = tokio::time::timeout_at(req.deadline, rx.recv())
            .await
            .map_err(|_| EngineError::Timeout)?;
        let prompt_tokens = match first {
            Some(Event::Started { prompt_tokens }) => prompt_tokens,
            Some(Event::Rejected { message, code }) => {
                let param = match req.endpoint {
                    crate::engine::Endpoint::ChatCompletions => "messages",
                    crate::engine::Endpoint::Completions
                    | crate::engine::Endpoint::AudioTranscriptions => "prompt",
                };
                return Ok(bad_request(&message, Some(param), code));
            }
            Some(Event::Failed(m)) => return Err(EngineError::Transport(m.into())),
            Some(_) => return Err(EngineError::Transport("unexpected engine event".into())),
            None => return Err(EngineError::Unhealthy("llama decode thread stopped".into())),
        };
        tracing::debug!(request_id = %req.request_id, endpoint = %req.endpoint, prompt_tokens, stream, "llama generation started");
        let meta = Meta::new(req.endpoint, &self.inner.cfg.model_name);
        let state = BodyState {
            rx,
            meta,
            prompt_tokens,
            deadline: req.deadline,
            out: VecDeque::new(),
            first: true,
            ended: false,
            include_usage,
            tools: constraints.tools,
            held: String::new(),
            decided: false,
        };
        let (content_type, body) = if stream {
            ("text/event-stream", sse_body(state))
        } else {
            ("application/json", json_body(state))
        };
        let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
        if stream {
            headers.push(("cache-control".to_owned(), "no-cache".to_owned()));
        }
        Ok(EngineResponse {
            status: 200,
            headers,
            body,
        })
    }

    async fn health(&self) -> Result<(), EngineError> {
        if self.inner.counters.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(EngineError::Unhealthy("llama decode thread stopped".into()))
        }
    }
}

/// What a response body stream holds; dropping it drops `rx`, which cancels the generation.
struct BodyState {
    rx: UnboundedReceiver<Event>,
    meta: Meta,
    prompt_tokens: u32,
    deadline: tokio::time::Instant,
    out: VecDeque<Bytes>,
    first: bool,
    ended: bool,
    include_usage: bool,
    /// Tool calls may be answered: text is held back while it may be a call.
    tools: Option<ToolMode>,
    /// Text held back (a possible call).
    held: String,
    /// The answer is known to be text (streamed as it comes).
    decided: bool,
}

impl BodyState {
    /// The usage to put on a streamed chunk: the prompt and the tokens sampled so far, when
    /// the request asked for usage (`stream_options.include_usage`, which the worker always
    /// sets), so an answer cut off mid-stream still says what it used.
    fn usage_so_far(&self, completion_tokens: u32) -> Option<Usage> {
        self.include_usage.then_some(Usage {
            prompt: self.prompt_tokens,
            completion: completion_tokens,
        })
    }

    /// The next event, or the error that ends the body.
    async fn next_event(&mut self) -> Result<Event, EngineError> {
        match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Err(_) => Err(EngineError::Timeout),
            Ok(None) => Err(EngineError::Transport("llama decode thread stopped".into())),
            Ok(Some(Event::Failed(m))) => Err(EngineError::Transport(m.into())),
            Ok(Some(e)) => Ok(e),
        }
    }
}

fn sse_body(state: BodyState) -> BoxStream<'static, Result<Bytes, EngineError>> {
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            if let Some(b) = s.out.pop_front() {
                return Some((Ok(b), Some(s)));
            }
            if s.ended {
                return None;
            }
            match s.next_event().await {
                Err(e) => return Some((Err(e), None)),
                Ok(Event::Text {
                    text,
                    completion_tokens,
                }) => {
                    let text = if s.tools.is_some() && !s.decided {
                        s.held.push_str(&text);
                        if tools::may_be_call(&s.held) {
                            continue;
                        }
                        s.decided = true;
                        std::mem::take(&mut s.held)
                    } else {
                        text
                    };
                    let first = std::mem::replace(&mut s.first, false);
                    let usage = s.usage_so_far(completion_tokens);
                    s.out.push_back(s.meta.sse_text(&text, first, usage));
                }
                Ok(Event::Done {
                    mut finish_reason,
                    completion_tokens,
                }) => {
                    let usage = s.usage_so_far(completion_tokens);
                    let held = std::mem::take(&mut s.held);
                    if !held.is_empty() {
                        if let Some(calls) = tools::parse_calls(&held) {
                            for (i, c) in calls.iter().enumerate() {
                                let first = std::mem::replace(&mut s.first, false);
                                s.out.push_back(s.meta.sse_tool_call(i, c, first, usage));
                            }
                            finish_reason = "tool_calls";
                        } else {
                            // A call cut short (max_tokens), or text after all.
                            let first = std::mem::replace(&mut s.first, false);
                            s.out.push_back(s.meta.sse_text(&held, first, usage));
                        }
                    }
                    s.out.push_back(s.meta.sse_finish(finish_reason, usage));
                    if s.include_usage {
                        s.out.push_back(s.meta.sse_usage(Usage {
                            prompt: s.prompt_tokens,
                            completion: completion_tokens,
                        }));
                    }
                    s.out.push_back(Bytes::from_static(respond::SSE_DONE));
                    s.ended = true;
                }
                Ok(_) => {
                    let e = EngineError::Transport("unexpected engine event".into());
                    return Some((Err(e), None));
                }
            }
        }
    })
    .boxed()
}

fn json_body(state: BodyState) -> BoxStream<'static, Result<Bytes, EngineError>> {
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        let mut text = String::new();
        loop {
            match s.next_event().await {
                Err(e) => return Some((Err(e), None)),
                Ok(Event::Text { text: t, .. }) => text.push_str(&t),
                Ok(Event::Done {
                    finish_reason,
                    completion_tokens,
                }) => {
                    let usage = Usage {
                        prompt: s.prompt_tokens,
                        completion: completion_tokens,
                    };
                    if s.tools.is_some() {
                        if let Some(calls) = tools::parse_calls(&text) {
                            return Some((Ok(s.meta.full_tool_calls(&calls, usage)), None));
                        }
                    }
                    return Some((Ok(s.meta.full(&text, finish_reason, usage)), None));
                }
                Ok(_) => {
                    let e = EngineError::Transport("unexpected engine event".into());
                    return Some((Err(e), None));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests;
