//! Inference engines and the OpenAI-facing pieces around them.
//!
//! What the worker needs between a request arriving over the Cocoon wire and bytes coming back
//! from an LLM server:
//! - [`engine`]: the [`Engine`] trait (start a request, stream its body, cancel by dropping it;
//!   health), [`Endpoint`], request/response types.
//! - [`validate`]: the request whitelist and rewrite (duplicate keys, types, ranges,
//!   `stream_options.include_usage`, the max-token cap), with OpenAI-shaped 400 errors.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser.
//! - [`usage`]: counting token usage from SSE / JSON / JSON-lines bodies while they stream past
//!   (Cocoon billed streamed requests zero; this does not).
//! - [`pricing`]: adjusted tokens and nanoTON with integer arithmetic only.
//! - [`mock`]: a deterministic engine (test double and benchmark backend) and its
//!   OpenAI-compatible HTTP server ([`mock::server::serve_mock`]).
//! - [`openai`]: an engine that forwards to any OpenAI-compatible server (vLLM, SGLang,
//!   llama-server, Ollama).
//!
//! Nothing here touches the Cocoon wire protocol, payments state, or attestation, and nothing
//! logs prompts or completions (ids, sizes and timings only).

pub mod engine;
mod json;
pub mod mock;
pub mod openai;
pub mod pricing;
pub mod sse;
pub mod usage;
pub mod validate;

pub use engine::{
    is_hop_by_hop_header, BoxError, Endpoint, Engine, EngineError, EngineRequest, EngineResponse,
    SharedEngine,
};
pub use mock::{MockConfig, MockEngine, MockStats};
pub use openai::{OpenAiConfig, OpenAiEngine};
pub use pricing::{adjust, cost, AdjustedUsage, PriceMultipliers, Prices};
pub use sse::{SseError, SseEvent, SseParser};
pub use usage::{body_kind_from_content_type, BodyKind, RawUsage, UsageCounter, UsageLimits};
pub use validate::{validate_request, ValidatedRequest, ValidationError, ValidationLimits};
