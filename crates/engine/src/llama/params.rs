//! Reading an OpenAI request body into what the embedded engine does with it: the prompt input
//! and the generation parameters, and refusing (400) what it cannot honour.
//!
//! The body normally went through [`crate::validate`] already, but the engine can be called
//! directly (benchmarks, tests), so types and ranges are checked again here; this module never
//! trusts its input. It knows nothing about llama.cpp: the sampler is described as a list of
//! [`Stage`]s that the decode thread turns into llama.cpp samplers.
//!
//! Supported: `messages` (string content or text parts; assistant `tool_calls` and `tool`
//! messages with `tool_call_id` for the tool round trip), `prompt` (a string, a one-element
//! array of strings, or token ids), `max_completion_tokens` / `max_tokens` (first wins, vLLM's
//! precedence), `temperature` (default 1, 0 = greedy), `top_p`, `seed`, `stop`,
//! `frequency_penalty`, `presence_penalty`, `stream`, `stream_options.include_usage`,
//! `chat_template_kwargs` (passed to the template), `tools` / `tool_choice` /
//! `parallel_tool_calls` (chat only) and `response_format` (`text`, `json_object`,
//! `json_schema`), both enforced by a grammar (see [`super::tools`] and [`crate::grammar`]),
//! and fields that do not change the output (`model`, `user`, `reasoning_effort`,
//! `verbosity`, `skip_special_tokens: true`). Refused with a 400: `n > 1`, `best_of > 1`,
//! non-function tools, schemas using keywords the grammar cannot enforce (`pattern`, `format`,
//! `minimum`, ...), `logprobs`, `top_logprobs > 0`, `echo`, `suffix`, `prediction`, non-text
//! content parts, several prompts, `skip_special_tokens: false`.

use serde_json::{Map, Value};

use super::tools::{constraints, Constraints};
use crate::engine::Endpoint;
use crate::validate::MAX_STOP_SEQUENCES;

/// Longest accepted stop sequence, in bytes (the matcher holds back this much text).
pub(crate) const MAX_STOP_BYTES: usize = 256;
/// Most token ids accepted in a `prompt` given as ids.
pub(crate) const MAX_PROMPT_IDS: usize = 1 << 16;

/// A request refused before generation (an OpenAI 400 `invalid_request_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    /// Human-readable reason; names fields, never echoes values.
    pub message: String,
    /// The offending parameter, if one is to blame.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: &'static str,
}

/// What the prompt is made of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PromptInput {
    /// Chat messages (contents normalised to strings) and extra template variables.
    Chat {
        messages: Vec<Value>,
        kwargs: Map<String, Value>,
    },
    /// A raw completion prompt.
    Text(String),
    /// A completion prompt given as token ids.
    Tokens(Vec<u32>),
}

/// Generation parameters of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GenParams {
    /// Completion-token limit (`None`: until the slot's context is full).
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    /// The request's seed, if any (else the engine picks a random one).
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub stream: bool,
    pub include_usage: bool,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedRequest {
    pub input: PromptInput,
    pub params: GenParams,
    /// Grammar, tool mode and tools to describe.
    pub constraints: Constraints,
}

/// One step of the sampler chain, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stage {
    /// Frequency/presence penalties over the last `last_n` tokens.
    Penalties {
        last_n: i32,
        frequency: f32,
        presence: f32,
    },
    /// Nucleus filtering.
    TopP(f32),
    /// Temperature scaling.
    Temp(f32),
    /// Random draw with a fixed seed (deterministic for the same seed and logits).
    Dist(u32),
    /// Most likely token.
    Greedy,
}

/// Window of recent tokens the penalties look at (llama.cpp's default is 64).
const PENALTY_LAST_N: i32 = 64;

fn err(code: &'static str, param: &str, message: impl Into<String>) -> RequestError {
    RequestError {
        message: message.into(),
        param: Some(param.to_owned()),
        code,
    }
}

fn unsupported(param: &str, what: &str) -> RequestError {
    err(
        "unsupported_value",
        param,
        format!("'{param}': {what} is not supported by the embedded engine"),
    )
}

/// Parses and checks a request body for `endpoint`.
pub(crate) fn parse_request(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<ParsedRequest, RequestError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| RequestError {
        message: "body is not valid JSON".into(),
        param: None,
        code: "invalid_json",
    })?;
    let obj = v.as_object().ok_or_else(|| RequestError {
        message: "body must be a JSON object".into(),
        param: None,
        code: "invalid_json",
    })?;
    refuse_unsupported(obj)?;
    let input = match endpoint {
        Endpoint::ChatCompletions => chat_input(obj)?,
        Endpoint::Completions => completion_input(obj)?,
        // Answered before any parse (`LlamaEngine::start`); a JSON body for it is no request.
        Endpoint::AudioTranscriptions => {
            return Err(RequestError {
                message: format!("{endpoint} is not served by the embedded engine"),
                param: None,
                code: "unsupported_endpoint",
            })
        }
    };
    Ok(ParsedRequest {
        input,
        params: gen_params(obj)?,
        constraints: constraints(obj, endpoint == Endpoint::ChatCompletions)?,
    })
}

fn present(obj: &Map<String, Value>, key: &str) -> Option<Value> {
    obj.get(key).filter(|v| !v.is_null()).cloned()
}

fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), RequestError> {
    for key in ["n", "best_of"] {
        if let Some(v) = present(obj, key) {
            if v.as_u64() != Some(1) {
                return Err(unsupported(key, "a value other than 1"));
            }
        }
    }
    if let Some(lp) = present(obj, "logprobs") {
        if lp != Value::Bool(false) && lp.as_u64() != Some(0) {
            return Err(unsupported("logprobs", "returning log probabilities"));
        }
    }
    if let Some(t) = present(obj, "top_logprobs") {
        if t.as_u64() != Some(0) {
            return Err(unsupported("top_logprobs", "returning log probabilities"));
        }
    }
    if let Some(e) = present(obj, "echo") {
        if e != Value::Bool(false) {
            return Err(unsupported("echo", "echoing the prompt"));
        }
    }
    if let Some(s) = present(obj, "suffix") {
        if s.as_str() != Some("") {
            return Err(unsupported("suffix", "insertion (suffix)"));
        }
    }
    if present(obj, "prediction").is_some() {
        return Err(unsupported("prediction", "predicted outputs"));
    }
    if let Some(s) = present(obj, "skip_special_tokens") {
        if s != Value::Bool(true) {
            return Err(unsupported(
                "skip_special_tokens",
                "emitting special tokens",
            ));
        }
    }
    Ok(())
}

fn chat_input(obj: &Map<String, Value>) -> Result<PromptInput, RequestError> {
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            err(
                "invalid_type",
                "messages",
                "'messages' must be a non-empty array",
            )
        })?;
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = m.as_object().ok_or_else(|| {
            err(
                "invalid_type",
                &param,
                format!("'{param}' must be an object"),
            )
        })?;
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            err(
                "invalid_type",
                &param,
                format!("'{param}.role' must be a string"),
            )
        })?;
        let tool_calls = match m.get("tool_calls") {
            None | Some(Value::Null) => None,
            Some(Value::Array(calls)) => Some(check_tool_calls(calls, &param)?),
            Some(_) => {
                return Err(err(
                    "invalid_type",
                    &param,
                    format!("'{param}.tool_calls' must be an array"),
                ))
            }
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => text_parts(parts, &param)?,
            Some(_) => {
                return Err(err(
                    "invalid_type",
                    &param,
                    format!("'{param}.content' must be a string or an array of parts"),
                ))
            }
        };
        let mut msg = Map::new();
        msg.insert("role".into(), Value::String(role.to_owned()));
        msg.insert("content".into(), Value::String(content));
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            msg.insert("name".into(), Value::String(name.to_owned()));
        }
        if let Some(calls) = tool_calls {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(id) = m.get("tool_call_id").and_then(Value::as_str) {
            msg.insert("tool_call_id".into(), Value::String(id.to_owned()));
        }
        out.push(Value::Object(msg));
    }
    let kwargs = match present(obj, "chat_template_kwargs") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(err(
                "invalid_type",
                "chat_template_kwargs",
                "'chat_template_kwargs' must be an object",
            ))
        }
    };
    Ok(PromptInput::Chat {
        messages: out,
        kwargs,
    })
}

/// An assistant message's `tool_calls`: function calls with a name and JSON-text arguments.
fn check_tool_calls(calls: &[Value], param: &str) -> Result<Vec<Value>, RequestError> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = format!("{param}.tool_calls[{i}]");
            let f = c.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
            let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str);
            match (name, args) {
                (Some(name), Some(args)) => {
                    let mut call = serde_json::json!({
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    });
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        call["id"] = Value::String(id.to_owned());
                    }
                    Ok(call)
                }
                _ => Err(err(
                    "invalid_type",
                    &p,
                    format!("'{p}' must have 'function.name' and 'function.arguments' strings"),
                )),
            }
        })
        .collect()
}

fn text_parts(parts: &[Value], param: &str) -> Result<String, RequestError> {
    let mut s = String::new();
    for p in parts {
        match p {
            Value::String(t) => s.push_str(t),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                let t = o.get("text").and_then(Value::as_str).ok_or_else(|| {
                    err(
                        "invalid_type",
                        param,
                        format!("'{param}' text part needs 'text'"),
                    )
                })?;
                s.push_str(t);
            }
            _ => return Err(unsupported(&format!("{param}.content"), "non-text content")),
        }
    }
    Ok(s)
}

fn completion_input(obj: &Map<String, Value>) -> Result<PromptInput, RequestError> {
    let bad = || {
        err(
            "invalid_type",
            "prompt",
            "'prompt' must be a string, an array of one string, or an array of token ids",
        )
    };
    match obj.get("prompt") {
        Some(Value::String(s)) => Ok(PromptInput::Text(s.clone())),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => Ok(PromptInput::Text(
            a[0].as_str().unwrap_or_default().to_owned(),
        )),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_number) => {
            if a.len() > MAX_PROMPT_IDS {
                return Err(err("invalid_value", "prompt", "too many prompt token ids"));
            }
            a.iter()
                .map(|t| {
                    t.as_u64()
                        .and_then(|t| u32::try_from(t).ok())
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(PromptInput::Tokens)
        }
        Some(Value::Array(a)) if a.len() > 1 => Err(unsupported("prompt", "several prompts")),
        None => Err(err(
            "missing_required_parameter",
            "prompt",
            "'prompt' is required",
        )),
        Some(_) => Err(bad()),
    }
}

fn number(
    obj: &Map<String, Value>,
    key: &str,
    lo: f64,
    hi: f64,
) -> Result<Option<f32>, RequestError> {
    match present(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(Some(x as f32)),
            _ => Err(err(
                "invalid_value",
                key,
                format!("'{key}' must be a number in {lo}..={hi}"),
            )),
        },
    }
}

fn gen_params(obj: &Map<String, Value>) -> Result<GenParams, RequestError> {
    let mut max_tokens = None;
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(obj, key) {
            let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                err(
                    "invalid_value",
                    key,
                    format!("'{key}' must be an integer >= 1"),
                )
            })?;
            max_tokens = Some(u32::try_from(n).unwrap_or(u32::MAX));
            break;
        }
    }
    let seed = match present(obj, "seed") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .map(|s| s as u64)
                .or_else(|| v.as_u64())
                .ok_or_else(|| err("invalid_type", "seed", "'seed' must be an integer"))?,
        ),
    };
    let stop = match present(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) if a.len() <= MAX_STOP_SEQUENCES => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                err(
                    "invalid_type",
                    "stop",
                    "'stop' must be a string or an array of strings",
                )
            })?,
        Some(_) => {
            return Err(err(
                "invalid_value",
                "stop",
                format!(
                    "'stop' must be a string or an array of at most {MAX_STOP_SEQUENCES} strings"
                ),
            ))
        }
    };
    let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
    if stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(err(
            "invalid_value",
            "stop",
            format!("stop sequences are limited to {MAX_STOP_BYTES} bytes"),
        ));
    }
    let stream = match present(obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(err("invalid_type", "stream", "'stream' must be a boolean")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(GenParams {
        max_tokens,
        temperature: number(obj, "temperature", 0.0, 2.0)?.unwrap_or(1.0),
        top_p: number(obj, "top_p", 0.0, 1.0)?.unwrap_or(1.0),
        seed,
        stop,
        frequency_penalty: number(obj, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        presence_penalty: number(obj, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        stream,
        include_usage,
    })
}

/// Folds a 64-bit request seed into llama.cpp's 32-bit sampler seed.
pub(crate) fn fold_seed(seed: u64) -> u32 {
    ((seed >> 32) as u32) ^ (seed as u32)
}

/// The sampler chain for `p`; `fallback_seed` is used when the request has none.
///
/// Temperature 0 (or `top_p` 0) is greedy, so identical requests give identical text without
/// a seed. Otherwise: penalties (when set), top-p (when < 1), temperature, seeded draw.
pub(crate) fn sampler_stages(p: &GenParams, fallback_seed: u32) -> Vec<Stage> {
    let mut out = Vec::with_capacity(4);
    if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
        out.push(Stage::Penalties {
            last_n: PENALTY_LAST_N,
            frequency: p.frequency_penalty,
            presence: p.presence_penalty,
        });
    }
    if p.temperature <= 0.0 || p.top_p <= 0.0 {
        out.push(Stage::Greedy);
        return out;
    }
    if p.top_p < 1.0 {
        out.push(Stage::TopP(p.top_p));
    }
    out.push(Stage::Temp(p.temperature));
    out.push(Stage::Dist(p.seed.map_or(fallback_seed, fold_seed)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(extra: &str) -> Result<ParsedRequest, RequestError> {
        let body =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        parse_request(Endpoint::ChatCompletions, body.as_bytes())
    }

    #[test]
    fn defaults() {
        let p = chat("").unwrap().params;
        assert_eq!(p.max_tokens, None);
        assert_eq!(p.temperature, 1.0);
        assert_eq!(p.top_p, 1.0);
        assert_eq!(p.seed, None);
        assert!(p.stop.is_empty());
        assert!(!p.stream);
    }

    #[test]
    fn sampling_parameters_are_read() {
        let p = chat(
            r#","max_tokens":7,"max_completion_tokens":5,"temperature":0.5,"top_p":0.9,"seed":-1,
               "stop":["\n\n",""],"stream":true,"stream_options":{"include_usage":true},
               "frequency_penalty":0.5"#,
        )
        .unwrap()
        .params;
        assert_eq!(p.max_tokens, Some(5), "max_completion_tokens wins");
        assert_eq!(p.temperature, 0.5);
        assert_eq!(p.top_p, 0.9);
        assert_eq!(p.seed, Some(u64::MAX));
        assert_eq!(
            p.stop,
            vec!["\n\n".to_owned()],
            "empty stop strings are dropped"
        );
        assert!(p.stream && p.include_usage);
        assert_eq!(
            sampler_stages(&p, 9),
            vec![
                Stage::Penalties {
                    last_n: 64,
                    frequency: 0.5,
                    presence: 0.0
                },
                Stage::TopP(0.9),
                Stage::Temp(0.5),
                Stage::Dist(0),
            ]
        );
    }

    #[test]
    fn temperature_zero_is_greedy_and_seed_is_used() {
        let p = chat(r#","temperature":0,"seed":42"#).unwrap().params;
        assert_eq!(sampler_stages(&p, 9), vec![Stage::Greedy]);
        let p = chat(r#","seed":42"#).unwrap().params;
        assert_eq!(
            sampler_stages(&p, 9),
            vec![Stage::Temp(1.0), Stage::Dist(42)]
        );
        let p = chat("").unwrap().params;
        assert_eq!(
            sampler_stages(&p, 9),
            vec![Stage::Temp(1.0), Stage::Dist(9)]
        );
        assert_eq!(fold_seed(1 << 32 | 5), 4);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for extra in [
            r#","temperature":3"#,
            r#","top_p":-0.1"#,
            r#","max_tokens":0"#,
            r#","seed":1.5"#,
            r#","stop":5"#,
            r#","stream":"yes""#,
        ] {
            assert!(chat(extra).is_err(), "{extra}");
        }
        let long = format!(r#","stop":"{}""#, "x".repeat(MAX_STOP_BYTES + 1));
        assert!(chat(&long).is_err());
    }

    #[test]
    fn unsupported_options_are_refused_with_their_name() {
        for (extra, param) in [
            (r#","n":2"#, "n"),
            (r#","tools":[{"type":"retrieval"}]"#, "tools[0].type"),
            (r#","logprobs":true"#, "logprobs"),
            (r#","top_logprobs":2"#, "top_logprobs"),
            (
                r#","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"string","pattern":"a"}}}"#,
                "response_format.json_schema.schema",
            ),
            (
                r#","prediction":{"type":"content","content":"x"}"#,
                "prediction",
            ),
        ] {
            let e = chat(extra).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert_eq!(e.code, "unsupported_value");
        }
        // Harmless values are accepted.
        for extra in [
            r#","n":1"#,
            r#","tools":[]"#,
            r#","tool_choice":"none""#,
            r#","logprobs":false"#,
            r#","top_logprobs":0"#,
            r#","response_format":{"type":"text"}"#,
            r#","response_format":{"type":"json_object"}"#,
            r#","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required""#,
            r#","user":"u","reasoning_effort":"low""#,
        ] {
            assert!(chat(extra).is_ok(), "{extra}");
        }
    }

    #[test]
    fn chat_content_parts_and_kwargs() {
        let body = br#"{"messages":[{"role":"system","content":null},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "chat_template_kwargs":{"enable_thinking":false}}"#;
        let r = parse_request(Endpoint::ChatCompletions, body).unwrap();
        let PromptInput::Chat { messages, kwargs } = r.input else {
            panic!("not chat")
        };
        assert_eq!(messages[0]["content"], "");
        assert_eq!(messages[1]["content"], "ab");
        assert_eq!(kwargs["enable_thinking"], false);
        let img = br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        assert_eq!(
            parse_request(Endpoint::ChatCompletions, img)
                .unwrap_err()
                .code,
            "unsupported_value"
        );
    }

    #[test]
    fn tool_round_trip_messages_are_kept() {
        let body = br#"{"messages":[{"role":"user","content":"w?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"}],
            "tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
        let r = parse_request(Endpoint::ChatCompletions, body).unwrap();
        let PromptInput::Chat { messages, .. } = r.input else {
            panic!("not chat")
        };
        assert_eq!(
            messages[1]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(messages[2]["tool_call_id"], "call_1");
        assert!(r.constraints.tools.is_some());
        let bad =
            br#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}"#;
        assert_eq!(
            parse_request(Endpoint::ChatCompletions, bad)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages[0].tool_calls[0]")
        );
    }

    #[test]
    fn completion_prompts() {
        let p = |b: &str| parse_request(Endpoint::Completions, b.as_bytes());
        assert_eq!(
            p(r#"{"prompt":"hi"}"#).unwrap().input,
            PromptInput::Text("hi".into())
        );
        assert_eq!(
            p(r#"{"prompt":["hi"]}"#).unwrap().input,
            PromptInput::Text("hi".into())
        );
        assert_eq!(
            p(r#"{"prompt":[1,2]}"#).unwrap().input,
            PromptInput::Tokens(vec![1, 2])
        );
        assert_eq!(
            p(r#"{"prompt":["a","b"]}"#).unwrap_err().code,
            "unsupported_value"
        );
        assert!(p(r#"{"prompt":[-1]}"#).is_err());
        assert!(p(r#"{"prompt":5}"#).is_err());
        assert!(p(r#"{}"#).is_err());
        assert_eq!(
            p(r#"{"prompt":"x","echo":true}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("echo")
        );
        assert_eq!(
            p(r#"{"prompt":"x","suffix":"y"}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("suffix")
        );
        assert_eq!(
            p(r#"{"prompt":"x","best_of":2}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("best_of")
        );
        assert_eq!(
            p(r#"{"prompt":"x","logprobs":1}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("logprobs")
        );
    }
}
