//! OpenAI response bodies for the embedded engine, in the same shapes as [`crate::mock`]:
//! `chat.completion` / `text_completion` JSON, SSE `chat.completion.chunk` / `text_completion`
//! events (carrying the usage so far when asked), a final chunk with `finish_reason`, a usage
//! chunk with empty `choices` (when `include_usage`), `data: [DONE]`, and OpenAI error bodies.
//! Tool-call answers as OpenAI shapes them: `message.tool_calls` with `content: null`, and
//! streamed `delta.tool_calls` chunks (one per call, whole arguments). Formatting only.

use bytes::Bytes;
use serde_json::{json, Value};

use super::tools::ToolCall;
use crate::engine::Endpoint;

/// Identity shared by all chunks of one response.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

/// Token counts of a finished generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u32,
    pub completion: u32,
}

impl Meta {
    /// A fresh id (`chatcmpl-…` / `cmpl-…`) and the current time.
    pub(crate) fn new(endpoint: Endpoint, model: &str) -> Self {
        let prefix = match endpoint {
            Endpoint::ChatCompletions => "chatcmpl",
            Endpoint::Completions | Endpoint::AudioTranscriptions => "cmpl",
        };
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            id: format!("{prefix}-{:016x}", rand::random::<u64>()),
            created,
            model: model.to_owned(),
            endpoint,
        }
    }

    fn chat(&self) -> bool {
        self.endpoint == Endpoint::ChatCompletions
    }

    fn chunk_object(&self) -> &'static str {
        if self.chat() {
            "chat.completion.chunk"
        } else {
            "text_completion"
        }
    }

    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices})
    }

    /// A content chunk (`first` adds the assistant role to a chat delta), with the usage so far
    /// when given.
    pub(crate) fn sse_text(&self, text: &str, first: bool, usage: Option<Usage>) -> Bytes {
        let choice = if self.chat() {
            let delta = if first {
                json!({"role": "assistant", "content": text})
            } else {
                json!({"content": text})
            };
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null})
        };
        self.chunk(choice, usage)
    }

    /// A streamed tool call (index `index`, whole arguments); `first` adds the assistant role
    /// and `content: null`, with the usage so far when given.
    pub(crate) fn sse_tool_call(
        &self,
        index: usize,
        call: &ToolCall,
        first: bool,
        usage: Option<Usage>,
    ) -> Bytes {
        let mut delta = json!({"tool_calls": [tool_call_json(call, Some(index))]});
        if first {
            delta["role"] = json!("assistant");
            delta["content"] = Value::Null;
        }
        let choice = json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null});
        self.chunk(choice, usage)
    }

    /// A whole non-streamed tool-call answer (`finish_reason: "tool_calls"`).
    pub(crate) fn full_tool_calls(&self, calls: &[ToolCall], u: Usage) -> Bytes {
        let calls: Vec<Value> = calls.iter().map(|c| tool_call_json(c, None)).collect();
        let choice = json!({"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "logprobs": null, "finish_reason": "tool_calls"});
        let mut v = self.envelope("chat.completion", json!([choice]));
        v["usage"] = usage_json(u);
        Bytes::from(v.to_string())
    }

    /// The chunk that carries `finish_reason`, with the usage so far when given.
    pub(crate) fn sse_finish(&self, finish_reason: &str, usage: Option<Usage>) -> Bytes {
        let choice = if self.chat() {
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason})
        } else {
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason})
        };
        self.chunk(choice, usage)
    }

    fn chunk(&self, choice: Value, usage: Option<Usage>) -> Bytes {
        let mut v = self.envelope(self.chunk_object(), json!([choice]));
        if let Some(u) = usage {
            v["usage"] = usage_json(u);
        }
        sse(&v)
    }

    /// The usage chunk (empty `choices`).
    pub(crate) fn sse_usage(&self, u: Usage) -> Bytes {
        let mut v = self.envelope(self.chunk_object(), json!([]));
        v["usage"] = usage_json(u);
        sse(&v)
    }

    /// A whole non-streamed answer.
    pub(crate) fn full(&self, text: &str, finish_reason: &str, u: Usage) -> Bytes {
        let (object, choice) = if self.chat() {
            (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish_reason}),
            )
        } else {
            (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}),
            )
        };
        let mut v = self.envelope(object, json!([choice]));
        v["usage"] = usage_json(u);
        Bytes::from(v.to_string())
    }
}

fn tool_call_json(c: &ToolCall, index: Option<usize>) -> Value {
    let mut v = json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}});
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// `data: [DONE]`.
pub(crate) const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u64::from(u.prompt) + u64::from(u.completion),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// An OpenAI error body.
pub(crate) fn error_body(message: &str, kind: &str, param: Option<&str>, code: &str) -> Bytes {
    Bytes::from(
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tools::call_id;
    use super::*;
    use crate::usage::{BodyKind, UsageCounter, UsageLimits};

    fn parse_sse(b: &Bytes) -> Value {
        let s = std::str::from_utf8(b).unwrap();
        let s = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn shapes_match_openai() {
        let m = Meta::new(Endpoint::ChatCompletions, "smol");
        assert!(m.id.starts_with("chatcmpl-"));
        let c = parse_sse(&m.sse_text("hi", true, None));
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c["choices"][0]["delta"]["content"], "hi");
        assert!(c.get("usage").is_none());
        let so_far = Usage {
            prompt: 3,
            completion: 1,
        };
        let c = parse_sse(&m.sse_text("hi", false, Some(so_far)));
        assert_eq!(c["choices"][0]["delta"]["content"], "hi");
        assert_eq!(c["usage"]["prompt_tokens"], 3);
        assert_eq!(c["usage"]["completion_tokens"], 1);
        let f = parse_sse(&m.sse_finish("length", None));
        assert_eq!(f["choices"][0]["finish_reason"], "length");
        let f = parse_sse(&m.sse_finish("length", Some(so_far)));
        assert_eq!(f["usage"]["total_tokens"], 4);
        let u = parse_sse(&m.sse_usage(Usage {
            prompt: 3,
            completion: 4,
        }));
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["total_tokens"], 7);
        let full: Value = serde_json::from_slice(&m.full(
            "x",
            "stop",
            Usage {
                prompt: 1,
                completion: 2,
            },
        ))
        .unwrap();
        assert_eq!(full["object"], "chat.completion");
        assert_eq!(full["choices"][0]["message"]["content"], "x");
        assert_eq!(full["usage"]["completion_tokens"], 2);

        let m = Meta::new(Endpoint::Completions, "smol");
        assert!(m.id.starts_with("cmpl-"));
        let c = parse_sse(&m.sse_text("hi", true, None));
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["choices"][0]["text"], "hi");
        let full: Value = serde_json::from_slice(&m.full(
            "x",
            "stop",
            Usage {
                prompt: 1,
                completion: 2,
            },
        ))
        .unwrap();
        assert_eq!(full["choices"][0]["text"], "x");
        let m = Meta::new(Endpoint::ChatCompletions, "smol");
        let call = ToolCall {
            id: "call_abc".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        let c = parse_sse(&m.sse_tool_call(1, &call, true, Some(so_far)));
        let d = &c["choices"][0]["delta"];
        assert_eq!(d["role"], "assistant");
        assert!(d["content"].is_null() && d.get("content").is_some());
        assert_eq!(
            d["tool_calls"],
            json!([{"index": 1, "id": "call_abc", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert!(c["choices"][0]["finish_reason"].is_null());
        assert_eq!(c["usage"]["completion_tokens"], 1);
        let c = parse_sse(&m.sse_tool_call(0, &call, false, None));
        assert!(c["choices"][0]["delta"].get("role").is_none());
        let f = parse_sse(&m.sse_finish("tool_calls", None));
        assert_eq!(f["choices"][0]["finish_reason"], "tool_calls");
        let full: Value = serde_json::from_slice(&m.full_tool_calls(
            &[call],
            Usage {
                prompt: 5,
                completion: 6,
            },
        ))
        .unwrap();
        let msg = &full["choices"][0]["message"];
        assert_eq!(msg["role"], "assistant");
        assert!(msg["content"].is_null());
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
        assert!(msg["tool_calls"][0].get("index").is_none());
        assert_eq!(full["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(full["usage"]["total_tokens"], 11);
        // The usage parsers (what the worker bills from) read tool-call answers like any
        // other: the JSON body, and the SSE stream of tool-call chunks.
        let u = Usage {
            prompt: 5,
            completion: 6,
        };
        let mut counter = UsageCounter::new(BodyKind::Json, UsageLimits::default());
        counter.observe(&m.full_tool_calls(&[], u));
        let got = counter.finish();
        assert_eq!((got.prompt, got.completion), (5, 6));
        let mut counter = UsageCounter::new(BodyKind::Sse, UsageLimits::default());
        let call = ToolCall {
            id: call_id(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        counter.observe(&m.sse_tool_call(0, &call, true, Some(so_far)));
        counter.observe(&m.sse_finish("tool_calls", Some(u)));
        counter.observe(&m.sse_usage(u));
        counter.observe(SSE_DONE);
        let got = counter.finish();
        assert_eq!((got.prompt, got.completion), (5, 6));
        assert!(counter.saw_done());
        // The tool-call chunk counts as generated content (the proxy's fallback count).
        assert_eq!(counter.completion_chunks(), 1);
        let e: Value =
            serde_json::from_slice(&error_body("m", "invalid_request_error", Some("n"), "c"))
                .unwrap();
        assert_eq!(e["error"]["param"], "n");
    }
}
