//! The worker's request whitelist: validate an OpenAI request body and rewrite it for the engine.
//! This module takes the JSON endpoints; `/v1/audio/transcriptions` takes a multipart form,
//! checked by [`crate::multipart`] (a JSON body for it is refused here with a 415).
//!
//! Rules (Cocoon's `ValidateRequest.cpp` lists, cocoon-notes §3.2, with its bugs fixed):
//! - The body is at most [`ValidationLimits::max_body_bytes`], one JSON object, nested at most
//!   [`ValidationLimits::max_depth`] deep, with **no duplicate key in any object** (Cocoon meant
//!   to reject duplicates but its JSON library had already merged them).
//! - Unknown top-level fields are rejected with a 400 that names the field. Accepted fields:
//!   - chat: Cocoon's list (`messages`, `model`, `frequency_penalty`, `max_completion_tokens`,
//!     `max_tokens`, `n`, `parallel_tool_calls`, `prediction`, `presence_penalty`,
//!     `reasoning_effort`, `response_format`, `stop`, `stream`, `stream_options`, `temperature`,
//!     `top_logprobs`, `top_p`, `verbosity`, `chat_template_kwargs`) plus `tools`,
//!     `tool_choice`, `seed`, `logprobs`, `user`, which apps need.
//!   - completions: Cocoon's list (`prompt`, `model`, `best_of`, `echo`, `frequency_penalty`,
//!     `max_tokens`, `n`, `presence_penalty`, `seed`, `stop`, `stream`, `stream_options`,
//!     `suffix`, `temperature`, `top_p`, `skip_special_tokens`) plus `logprobs` (integer 0..=5,
//!     as in the OpenAI completions API) and `user`, for parity with chat.
//! - `model` is a required non-empty string. Chat needs a non-empty `messages` array of objects
//!   with a string `role`; completions need `prompt` (a string, or a non-empty array).
//! - Types and ranges: `temperature` 0..=2, `top_p` 0..=1, penalties -2..=2, `n` >= 1 and
//!   `n > 1` refused as unsupported (one choice per request keeps streaming and billing simple),
//!   likewise `best_of > 1`, `max_tokens`/`max_completion_tokens` >= 1, `top_logprobs` 0..=20,
//!   `seed` an integer, `stop` a string or an array of at most [`MAX_STOP_SEQUENCES`] strings,
//!   `tools` an array of at most [`MAX_TOOLS`] objects with a string `type`,
//!   `suffix` a string (Cocoon checked it as a bool). `prediction` is an object (Cocoon checked a
//!   number). `null` is accepted for every optional field and means "absent".
//! - Rewrites: when streaming, `stream_options.include_usage = true` (so the final chunk carries
//!   usage and the request can be billed); `stream_options` without `stream` sets
//!   `stream: true`; `stream: false` with `stream_options` is refused (engines refuse it too).
//!   When `max_tokens_cap` is `Some(n)`: a missing limit is injected as `max_tokens: n` and a
//!   larger one is clamped to `n` (Cocoon injected nothing, so usage could exceed the
//!   reservation). Other values keep their meaning and key order; added keys go last.
//!   [`request_continuous_usage`] additionally asks for usage with every streamed chunk (vLLM's
//!   `stream_options.continuous_usage_stats`), for engines configured to accept it; clients
//!   cannot send that key themselves.
//! - [`ValidatedRequest::prompt_tokens_floor`]: a floor on the prompt's tokens (words of the
//!   prompt text, token ids counted exactly), what the worker reports as the prompt part of its
//!   usage progress until the engine reports real usage.
//!
//! Error messages name fields, never echo values (they may be prompt text).

use std::fmt;

use bytes::Bytes;

use crate::engine::Endpoint;
use crate::json::{parse_strict, JsonObject, JsonValue, StrictJsonError};

/// Most `stop` sequences accepted (OpenAI allows 4; engines allow more, so be a bit lenient).
pub const MAX_STOP_SEQUENCES: usize = 16;
/// Most entries in `tools` (OpenAI's limit is 128).
pub const MAX_TOOLS: usize = 128;

/// Longest field name echoed back in an error message.
const MAX_NAME_IN_ERROR: usize = 64;

/// Bounds applied before and while parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationLimits {
    /// Largest accepted body (for a multipart form, the whole form: its file is bounded by it).
    /// Default: 1 MiB.
    pub max_body_bytes: usize,
    /// Deepest accepted nesting (the top-level object is depth 1). Default: 64.
    pub max_depth: usize,
    /// Most parts of a multipart form. Default: 24 (OpenAI's transcription form has at most
    /// 13 legitimate parts, Cocoon's extra fields 4 more).
    pub max_form_parts: usize,
    /// Largest text field of a multipart form (`prompt`, `chunking_strategy`, ...). Default:
    /// 16 KiB.
    pub max_form_text_bytes: usize,
}

/// A request that passed validation, with its rewritten body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedRequest {
    /// The endpoint the body was validated for.
    pub endpoint: Endpoint,
    /// The requested model name (as sent, not resolved).
    pub model: String,
    /// The body's `Content-Type` when it is not JSON (a canonical multipart form's, with its
    /// boundary); `None` for JSON.
    pub content_type: Option<String>,
    /// Whether the (rewritten) request streams.
    pub stream: bool,
    /// The effective completion-token limit after rewriting: the injected cap, or the largest of
    /// `max_tokens`/`max_completion_tokens` after clamping (an upper bound for reservations),
    /// or `None` when the request has none and no cap was given.
    pub max_tokens: Option<u64>,
    /// The rewritten JSON body to send to the engine.
    pub body: Bytes,
    /// A floor on the prompt's token count, for usage progress before the engine reports any
    /// (see [`prompt_tokens_floor`]).
    pub prompt_tokens_floor: u64,
}

/// A request the worker refuses; maps to an OpenAI-style 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Human-readable reason (names fields, never echoes values).
    pub message: String,
    /// The offending parameter (`temperature`, `messages[2].role`), if one is to blame.
    pub param: Option<String>,
    /// Machine-readable code: one of [`codes`].
    pub code: &'static str,
}

/// The `code` values a [`ValidationError`] can carry.
pub mod codes {
    /// Body larger than the limit.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// Not JSON, or not a JSON object.
    pub const INVALID_JSON: &str = "invalid_json";
    /// The same key twice in one object.
    pub const DUPLICATE_KEY: &str = "duplicate_key";
    /// Nesting deeper than the limit.
    pub const TOO_DEEP: &str = "nesting_too_deep";
    /// A field that is not on the whitelist.
    pub const UNKNOWN_PARAMETER: &str = "unknown_parameter";
    /// A required field is absent.
    pub const MISSING_PARAMETER: &str = "missing_required_parameter";
    /// A field has the wrong JSON type.
    pub const INVALID_TYPE: &str = "invalid_type";
    /// A field is out of range or otherwise invalid.
    pub const INVALID_VALUE: &str = "invalid_value";
    /// A valid value this network does not support (`n > 1`).
    pub const UNSUPPORTED_VALUE: &str = "unsupported_value";
    /// The body's media type is not the endpoint's (JSON for a multipart endpoint, or the
    /// reverse, or no `multipart/form-data` Content-Type).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// A multipart body that does not parse: a missing or garbled boundary, a part without a
    /// name, a cut-off form.
    pub const INVALID_MULTIPART: &str = "invalid_multipart";
    /// A multipart form with more parts than the limit.
    pub const TOO_MANY_PARTS: &str = "too_many_parts";
    /// A text field of a multipart form larger than the limit.
    pub const FIELD_TOO_LARGE: &str = "field_too_large";
}

// === impl ValidationLimits ===

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_depth: 64,
            max_form_parts: 24,
            max_form_text_bytes: 16 << 10,
        }
    }
}

// === impl ValidationError ===

impl ValidationError {
    pub(crate) fn new(code: &'static str, param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: param.map(str::to_owned),
            code,
        }
    }

    pub(crate) fn bad_type(param: &str, expected: &str, got: &JsonValue) -> Self {
        Self::new(
            codes::INVALID_TYPE,
            Some(param),
            format!("'{param}' must be {expected}, got {}", got.type_name()),
        )
    }

    pub(crate) fn bad_value(param: &str, message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_VALUE, Some(param), message)
    }

    /// The HTTP status to answer with: 413 for an oversized body, 415 for a body of the wrong
    /// media type, else 400.
    pub fn http_status(&self) -> u16 {
        match self.code {
            codes::BODY_TOO_LARGE => 413,
            codes::UNSUPPORTED_MEDIA_TYPE => 415,
            _ => 400,
        }
    }

    /// The OpenAI error body: `{"error":{"message","type":"invalid_request_error","param","code"}}`.
    pub fn to_openai_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

// === validation ===

/// Refuses a body over `limits.max_body_bytes` (JSON bodies and transcription forms alike).
pub(crate) fn check_body_size(
    body: &[u8],
    limits: &ValidationLimits,
) -> Result<(), ValidationError> {
    if body.len() > limits.max_body_bytes {
        return Err(ValidationError::new(
            codes::BODY_TOO_LARGE,
            None,
            format!(
                "request body is {} bytes, the limit is {}",
                body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    Ok(())
}

/// Validates `body` for `endpoint` and returns the rewritten request (see the module docs).
pub fn validate_request(
    endpoint: Endpoint,
    body: &[u8],
    max_tokens_cap: Option<u64>,
    limits: &ValidationLimits,
) -> Result<ValidatedRequest, ValidationError> {
    check_body_size(body, limits)?;
    let mut root = parse_strict(body, limits.max_depth).map_err(json_error)?;
    let JsonValue::Object(obj) = &mut root else {
        return Err(ValidationError::new(
            codes::INVALID_JSON,
            None,
            "request body must be a JSON object",
        ));
    };

    let spec = match endpoint {
        Endpoint::ChatCompletions => &CHAT,
        Endpoint::Completions => &COMPLETIONS,
        Endpoint::AudioTranscriptions => return Err(multipart_only(endpoint)),
    };
    // Unknown names first, so a stray field is reported as such (as Cocoon does) even when an
    // earlier field also has a bad value.
    if let Some(name) = obj
        .iter()
        .map(|(name, _)| name)
        .find(|name| !spec.fields.iter().any(|(n, _)| n == name))
    {
        let shown = truncate(name);
        return Err(ValidationError::new(
            codes::UNKNOWN_PARAMETER,
            Some(&shown),
            format!("unknown parameter '{shown}'"),
        ));
    }
    for (name, value) in obj.iter() {
        check_field(spec, name, value)?;
    }
    for required in spec.required {
        if obj.get(required).is_none_or(JsonValue::is_null) {
            return Err(ValidationError::new(
                codes::MISSING_PARAMETER,
                Some(required),
                format!("missing required parameter '{required}'"),
            ));
        }
    }

    let model = obj
        .get("model")
        .and_then(JsonValue::as_str)
        .unwrap_or_default()
        .to_owned();
    let stream = rewrite_stream(obj)?;
    let max_tokens = rewrite_max_tokens(obj, spec.token_fields, max_tokens_cap);
    let prompt_tokens_floor = prompt_tokens_floor(endpoint, obj);

    Ok(ValidatedRequest {
        endpoint,
        model,
        content_type: None,
        stream,
        max_tokens,
        body: Bytes::from(root.to_vec()),
        prompt_tokens_floor,
    })
}

/// The error for a JSON body sent to an endpoint that takes a multipart form.
fn multipart_only(endpoint: Endpoint) -> ValidationError {
    ValidationError::new(
        codes::UNSUPPORTED_MEDIA_TYPE,
        None,
        format!("{endpoint} takes a multipart/form-data body, not JSON"),
    )
}

/// A number the prompt's token count does not go below, from a validated body: chat counts the
/// whitespace-separated words of every message's `content` (a string, or the `text` of its
/// parts); completions count the words of `prompt` strings and every token id of `prompt`
/// arrays exactly. Tokenizers split text at whitespace before merging (BPE pre-tokenization,
/// SentencePiece's whitespace split), so each word is at least one token; English text runs at
/// more than one token per word, and chat templates, tool definitions and images add tokens
/// this does not count. It is the worker's defensible estimate of the prompt before the engine
/// reports usage.
fn prompt_tokens_floor(endpoint: Endpoint, obj: &JsonObject) -> u64 {
    fn words(s: &str) -> u64 {
        s.split_whitespace().count() as u64
    }
    fn content_words(v: &JsonValue) -> u64 {
        match v {
            JsonValue::String(s) => words(s),
            JsonValue::Array(parts) => parts
                .iter()
                .filter_map(|p| p.as_object()?.get("text")?.as_str())
                .map(words)
                .fold(0, u64::saturating_add),
            _ => 0,
        }
    }
    match endpoint {
        Endpoint::ChatCompletions => obj
            .get("messages")
            .and_then(JsonValue::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.as_object()?.get("content"))
            .map(content_words)
            .fold(0, u64::saturating_add),
        Endpoint::Completions => match obj.get("prompt") {
            Some(JsonValue::String(s)) => words(s),
            Some(JsonValue::Array(items)) => items
                .iter()
                .map(|it| match it {
                    JsonValue::String(s) => words(s),
                    JsonValue::Number(_) => 1,
                    JsonValue::Array(ids) => ids.len() as u64,
                    _ => 0,
                })
                .fold(0, u64::saturating_add),
            _ => 0,
        },
        // Validated by `crate::multipart`, which counts the words of its `prompt` field.
        Endpoint::AudioTranscriptions => 0,
    }
}

/// Nesting bound when re-reading a body [`validate_request`] already accepted (its own limit is
/// [`ValidationLimits::max_depth`], far below this).
const REREAD_DEPTH: usize = 1024;

/// Asks a streaming request for usage with every chunk: sets
/// `stream_options.continuous_usage_stats = true` on a body returned by [`validate_request`]
/// (vLLM's extension; engines that do not know it may refuse the request, so callers send it
/// only to engines configured to accept it). Returns `None` when the body does not stream or
/// cannot be read again (then it is sent unchanged).
pub fn request_continuous_usage(body: &[u8]) -> Option<Bytes> {
    let mut root = parse_strict(body, REREAD_DEPTH).ok()?;
    let JsonValue::Object(obj) = &mut root else {
        return None;
    };
    if obj.get("stream").and_then(JsonValue::as_bool) != Some(true) {
        return None;
    }
    match obj.get_mut("stream_options") {
        Some(JsonValue::Object(opts)) => opts.set("continuous_usage_stats", JsonValue::Bool(true)),
        _ => {
            let mut opts = JsonObject::default();
            opts.set("include_usage", JsonValue::Bool(true));
            opts.set("continuous_usage_stats", JsonValue::Bool(true));
            obj.set("stream_options", JsonValue::Object(opts));
        }
    }
    Some(Bytes::from(root.to_vec()))
}

fn json_error(e: StrictJsonError) -> ValidationError {
    match e {
        StrictJsonError::Syntax(msg) => ValidationError::new(
            codes::INVALID_JSON,
            None,
            format!("request body is not valid JSON: {msg}"),
        ),
        StrictJsonError::DuplicateKey { path, key } => {
            let param = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let param = truncate(&param);
            ValidationError::new(
                codes::DUPLICATE_KEY,
                Some(&param),
                format!("duplicate key '{param}' in request"),
            )
        }
        StrictJsonError::TooDeep { path, limit } => ValidationError::new(
            codes::TOO_DEEP,
            Some(&truncate(&path)),
            format!("request JSON is nested deeper than {limit} levels"),
        ),
    }
}

/// A name as echoed in an error message: at most [`MAX_NAME_IN_ERROR`] bytes.
pub(crate) fn truncate(s: &str) -> String {
    if s.len() <= MAX_NAME_IN_ERROR {
        return s.to_owned();
    }
    let mut end = MAX_NAME_IN_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Per-endpoint whitelist.
struct Spec {
    fields: &'static [(&'static str, Check)],
    required: &'static [&'static str],
    /// Fields that limit completion tokens, in the order the cap is injected.
    token_fields: &'static [&'static str],
}

/// How one field is checked. `null` is accepted for every optional field before these run.
#[derive(Clone, Copy)]
enum Check {
    Model,
    Messages,
    Prompt,
    Bool,
    Str,
    Object,
    /// A number within `[min, max]`.
    Number(f64, f64),
    /// An integer within `[min, max]`.
    Int(i128, i128),
    /// An integer >= 1; values above 1 are valid OpenAI but unsupported here.
    OnlyOne,
    Stop,
    StreamOptions,
    ChatTemplateKwargs,
    Tools,
    ToolChoice,
}

const I_MAX: i128 = i64::MAX as i128;
const U_MAX: i128 = u64::MAX as i128;

const CHAT: Spec = Spec {
    fields: &[
        ("messages", Check::Messages),
        ("model", Check::Model),
        ("frequency_penalty", Check::Number(-2.0, 2.0)),
        ("max_completion_tokens", Check::Int(1, I_MAX)),
        ("max_tokens", Check::Int(1, I_MAX)),
        ("n", Check::OnlyOne),
        ("parallel_tool_calls", Check::Bool),
        ("prediction", Check::Object),
        ("presence_penalty", Check::Number(-2.0, 2.0)),
        ("reasoning_effort", Check::Str),
        ("response_format", Check::Object),
        ("stop", Check::Stop),
        ("stream", Check::Bool),
        ("stream_options", Check::StreamOptions),
        ("temperature", Check::Number(0.0, 2.0)),
        ("top_logprobs", Check::Int(0, 20)),
        ("top_p", Check::Number(0.0, 1.0)),
        ("verbosity", Check::Str),
        ("chat_template_kwargs", Check::ChatTemplateKwargs),
        // Not in Cocoon's list; apps need them.
        ("tools", Check::Tools),
        ("tool_choice", Check::ToolChoice),
        ("seed", Check::Int(i64::MIN as i128, U_MAX)),
        ("logprobs", Check::Bool),
        ("user", Check::Str),
    ],
    required: &["model", "messages"],
    token_fields: &["max_tokens", "max_completion_tokens"],
};

const COMPLETIONS: Spec = Spec {
    fields: &[
        ("prompt", Check::Prompt),
        ("model", Check::Model),
        ("best_of", Check::OnlyOne),
        ("echo", Check::Bool),
        ("frequency_penalty", Check::Number(-2.0, 2.0)),
        ("max_tokens", Check::Int(1, I_MAX)),
        ("n", Check::OnlyOne),
        ("presence_penalty", Check::Number(-2.0, 2.0)),
        ("seed", Check::Int(i64::MIN as i128, U_MAX)),
        ("stop", Check::Stop),
        ("stream", Check::Bool),
        ("stream_options", Check::StreamOptions),
        ("suffix", Check::Str),
        ("temperature", Check::Number(0.0, 2.0)),
        ("top_p", Check::Number(0.0, 1.0)),
        ("skip_special_tokens", Check::Bool),
        // Not in Cocoon's list.
        ("logprobs", Check::Int(0, 5)),
        ("user", Check::Str),
    ],
    required: &["model", "prompt"],
    token_fields: &["max_tokens"],
};

fn check_field(spec: &Spec, name: &str, value: &JsonValue) -> Result<(), ValidationError> {
    let Some((_, check)) = spec.fields.iter().find(|(n, _)| *n == name) else {
        // Unknown names were rejected before; nothing to check.
        return Ok(());
    };
    if value.is_null() {
        // Absent for optional fields; required ones are caught after the loop.
        return Ok(());
    }
    match *check {
        Check::Model => match value.as_str() {
            Some("") => Err(ValidationError::bad_value(
                name,
                "'model' must not be empty",
            )),
            Some(_) => Ok(()),
            None => Err(ValidationError::bad_type(name, "a string", value)),
        },
        Check::Messages => check_messages(value),
        Check::Prompt => check_prompt(value),
        Check::Bool => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| ValidationError::bad_type(name, "a boolean", value)),
        Check::Str => value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| ValidationError::bad_type(name, "a string", value)),
        Check::Object => value
            .as_object()
            .map(|_| ())
            .ok_or_else(|| ValidationError::bad_type(name, "an object", value)),
        Check::Number(min, max) => {
            let v = value
                .as_f64()
                .ok_or_else(|| ValidationError::bad_type(name, "a number", value))?;
            if !(min..=max).contains(&v) {
                return Err(ValidationError::bad_value(
                    name,
                    format!("'{name}' must be between {min} and {max}"),
                ));
            }
            Ok(())
        }
        Check::Int(min, max) => check_int(name, value, min, max).map(|_| ()),
        Check::OnlyOne => {
            let n = check_int(name, value, 1, I_MAX)?;
            if n > 1 {
                return Err(ValidationError::new(
                    codes::UNSUPPORTED_VALUE,
                    Some(name),
                    format!("'{name}' > 1 is not supported: one choice per request"),
                ));
            }
            Ok(())
        }
        Check::Stop => check_stop(value),
        Check::StreamOptions => check_stream_options(value),
        Check::ChatTemplateKwargs => check_chat_template_kwargs(value),
        Check::Tools => check_tools(value),
        Check::ToolChoice => match value {
            JsonValue::String(_) | JsonValue::Object(_) => Ok(()),
            _ => Err(ValidationError::bad_type(
                name,
                "a string or an object",
                value,
            )),
        },
    }
}

fn check_int(name: &str, value: &JsonValue, min: i128, max: i128) -> Result<i128, ValidationError> {
    let n = value
        .as_i128()
        .ok_or_else(|| ValidationError::bad_type(name, "an integer", value))?;
    if n < min || n > max {
        let msg = if max >= I_MAX {
            format!("'{name}' must be at least {min}")
        } else {
            format!("'{name}' must be between {min} and {max}")
        };
        return Err(ValidationError::bad_value(name, msg));
    }
    Ok(n)
}

fn check_messages(value: &JsonValue) -> Result<(), ValidationError> {
    let msgs = value
        .as_array()
        .ok_or_else(|| ValidationError::bad_type("messages", "an array", value))?;
    if msgs.is_empty() {
        return Err(ValidationError::bad_value(
            "messages",
            "'messages' must not be empty",
        ));
    }
    for (i, m) in msgs.iter().enumerate() {
        let param = format!("messages[{i}]");
        let obj = m
            .as_object()
            .ok_or_else(|| ValidationError::bad_type(&param, "an object", m))?;
        match obj.get("role") {
            Some(JsonValue::String(r)) if !r.is_empty() => {}
            Some(other) => {
                return Err(ValidationError::bad_type(
                    &format!("{param}.role"),
                    "a non-empty string",
                    other,
                ))
            }
            None => {
                return Err(ValidationError::new(
                    codes::MISSING_PARAMETER,
                    Some(&format!("{param}.role")),
                    format!("missing required parameter '{param}.role'"),
                ))
            }
        }
    }
    Ok(())
}

fn check_prompt(value: &JsonValue) -> Result<(), ValidationError> {
    match value {
        JsonValue::String(_) => Ok(()),
        JsonValue::Array(items) if items.is_empty() => Err(ValidationError::bad_value(
            "prompt",
            "'prompt' must not be an empty array",
        )),
        // Strings, token ids, or arrays of token ids (the OpenAI prompt forms).
        JsonValue::Array(items) => {
            let ok = items.iter().all(|it| match it {
                JsonValue::String(_) => true,
                JsonValue::Number(_) => it.as_i128().is_some_and(|n| n >= 0),
                JsonValue::Array(ids) => ids.iter().all(|id| id.as_i128().is_some_and(|n| n >= 0)),
                _ => false,
            });
            if ok {
                Ok(())
            } else {
                Err(ValidationError::bad_value(
                    "prompt",
                    "'prompt' array items must be strings, token ids or arrays of token ids",
                ))
            }
        }
        other => Err(ValidationError::bad_type(
            "prompt",
            "a string or an array",
            other,
        )),
    }
}

fn check_stop(value: &JsonValue) -> Result<(), ValidationError> {
    match value {
        JsonValue::String(_) => Ok(()),
        JsonValue::Array(items) => {
            if items.len() > MAX_STOP_SEQUENCES {
                return Err(ValidationError::bad_value(
                    "stop",
                    format!("'stop' allows at most {MAX_STOP_SEQUENCES} sequences"),
                ));
            }
            match items.iter().position(|s| s.as_str().is_none()) {
                Some(i) => Err(ValidationError::bad_type(
                    &format!("stop[{i}]"),
                    "a string",
                    &items[i],
                )),
                None => Ok(()),
            }
        }
        other => Err(ValidationError::bad_type(
            "stop",
            "a string or an array of strings",
            other,
        )),
    }
}

fn check_stream_options(value: &JsonValue) -> Result<(), ValidationError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ValidationError::bad_type("stream_options", "an object", value))?;
    check_bool_object(
        obj,
        "stream_options",
        &["include_usage", "include_obfuscation"],
    )
}

fn check_chat_template_kwargs(value: &JsonValue) -> Result<(), ValidationError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ValidationError::bad_type("chat_template_kwargs", "an object", value))?;
    check_bool_object(obj, "chat_template_kwargs", &["enable_thinking"])
}

/// An object whose keys come from `allowed` and whose values are booleans.
fn check_bool_object(
    obj: &JsonObject,
    parent: &str,
    allowed: &[&str],
) -> Result<(), ValidationError> {
    for (k, v) in obj.iter() {
        let param = format!("{parent}.{}", truncate(k));
        if !allowed.contains(&k) {
            return Err(ValidationError::new(
                codes::UNKNOWN_PARAMETER,
                Some(&param),
                format!("unknown parameter '{param}'"),
            ));
        }
        if v.as_bool().is_none() {
            return Err(ValidationError::bad_type(&param, "a boolean", v));
        }
    }
    Ok(())
}

fn check_tools(value: &JsonValue) -> Result<(), ValidationError> {
    let tools = value
        .as_array()
        .ok_or_else(|| ValidationError::bad_type("tools", "an array", value))?;
    if tools.len() > MAX_TOOLS {
        return Err(ValidationError::bad_value(
            "tools",
            format!("'tools' may hold at most {MAX_TOOLS} entries"),
        ));
    }
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        let obj = t
            .as_object()
            .ok_or_else(|| ValidationError::bad_type(&param, "an object", t))?;
        match obj.get("type") {
            Some(JsonValue::String(_)) => {}
            Some(other) => {
                return Err(ValidationError::bad_type(
                    &format!("{param}.type"),
                    "a string",
                    other,
                ))
            }
            None => {
                return Err(ValidationError::new(
                    codes::MISSING_PARAMETER,
                    Some(&format!("{param}.type")),
                    format!("missing required parameter '{param}.type'"),
                ))
            }
        }
    }
    Ok(())
}

// === rewriting ===

/// Applies the streaming rewrites; returns whether the request streams.
fn rewrite_stream(obj: &mut JsonObject) -> Result<bool, ValidationError> {
    let stream = obj.get("stream").and_then(JsonValue::as_bool);
    let has_options = obj.get("stream_options").is_some_and(|v| !v.is_null());
    let stream = match (stream, has_options) {
        (Some(false), true) => {
            return Err(ValidationError::bad_value(
                "stream_options",
                "'stream_options' is only allowed when 'stream' is true",
            ))
        }
        (None, true) => {
            obj.set("stream", JsonValue::Bool(true));
            true
        }
        (s, _) => s.unwrap_or(false),
    };
    if stream {
        match obj.get_mut("stream_options") {
            Some(JsonValue::Object(opts)) => opts.set("include_usage", JsonValue::Bool(true)),
            // Absent or null.
            _ => {
                let mut opts = JsonObject::default();
                opts.set("include_usage", JsonValue::Bool(true));
                obj.set("stream_options", JsonValue::Object(opts));
            }
        }
    }
    Ok(stream)
}

/// Applies the max-token cap; returns the effective limit.
fn rewrite_max_tokens(obj: &mut JsonObject, fields: &[&str], cap: Option<u64>) -> Option<u64> {
    // A cap of 0 would make every request invalid (`max_tokens` >= 1); treat it as 1.
    let cap = cap.map(|c| c.max(1));
    let mut effective: Option<u64> = None;
    for field in fields {
        let Some(n) = obj.get(field).and_then(JsonValue::as_i128) else {
            continue;
        };
        // Validated >= 1 and <= i64::MAX above.
        let mut n = u64::try_from(n).unwrap_or(u64::MAX);
        if let Some(c) = cap {
            if n > c {
                obj.set(field, JsonValue::Number(c.into()));
                n = c;
            }
        }
        effective = Some(effective.map_or(n, |e| e.max(n)));
    }
    if effective.is_none() {
        if let (Some(c), Some(first)) = (cap, fields.first()) {
            obj.set(first, JsonValue::Number(c.into()));
            effective = Some(c);
        }
    }
    effective
}

#[cfg(test)]
mod tests;
