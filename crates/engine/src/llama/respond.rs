//! OpenAI response bodies for the embedded engine, in the same shapes as [`crate::mock`]:
//! `chat.completion` / `text_completion` JSON, SSE `chat.completion.chunk` / `text_completion`
//! events (carrying the usage so far when asked), a final chunk with `finish_reason`, a usage
//! chunk with empty `choices` (when `include_usage`), `data: [DONE]`, and OpenAI error bodies.
//! Formatting only.

use bytes::Bytes;
use serde_json::{json, Value};

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
    use super::*;

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
        let e: Value =
            serde_json::from_slice(&error_body("m", "invalid_request_error", Some("n"), "c"))
                .unwrap();
        assert_eq!(e["error"]["param"], "n");
    }
}
