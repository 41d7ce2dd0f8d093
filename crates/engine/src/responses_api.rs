//! OpenAI's Responses API (stateless) translated to and from chat completions: the client's
//! `POST /v1/responses` uses it, for tools that speak only Responses (the Codex CLI is one).
//!
//! A request is translated into a chat completion ([`to_chat`]): `instructions` becomes the
//! first system message; `input` (a string, or message items with text parts, earlier
//! `function_call` items and their `function_call_output`s) becomes the messages; function
//! `tools`, `tool_choice`, `parallel_tool_calls`, `text.format` (→ `response_format`),
//! `max_output_tokens`, `temperature`, `top_p`, `user` and Cocoon's extra fields carry over.
//! The client then sends it through its own chat path (validation, sealing, payment, retries), and
//! the answer is translated back: a `response` object ([`chat_to_response`]), or, streamed,
//! Responses events ([`StreamBridge`]: `response.created`, `response.output_item.added`,
//! `response.output_text.delta`, `response.function_call_arguments.delta`, ...,
//! `response.completed`). Nothing is stored: `previous_response_id`, `conversation` and
//! `background` are refused with a 400 that says so; `store` is accepted and ignored (nothing
//! is ever stored). OpenAI's hosted tools (web search, file search, computer use, ...) are left
//! out of what the model is offered; other unknown tool types are refused.
//!
//! Pure translation: no I/O, no logging (what must not live here: how a chat request is sent,
//! which is the client's). The chat answer comes from a worker, so everything here is bounded
//! and never panics on any bytes (fuzz target `responses_bridge`).

use rand::RngCore;
use serde_json::{json, Map, Value};

/// Fields of a Responses request read here; any other is refused by name.
const KNOWN_FIELDS: [&str; 24] = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "user",
    "metadata",
    "include",
    "reasoning",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "truncation",
    "max_coefficient",
    "timeout",
    "request_guid",
    "enable_debug",
];

/// Most input items (messages, calls, outputs) in one request.
const MAX_INPUT_ITEMS: usize = 4096;

/// A Responses request refused before it was sent: a 400 naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// The field at fault (`input[2].content`), empty for the body as a whole.
    pub param: String,
    /// What is wrong, for the app.
    pub message: String,
}

/// A refusal naming `param`.
pub fn refused(param: &str, message: impl Into<String>) -> Refused {
    Refused {
        param: param.to_string(),
        message: message.into(),
    }
}

/// A Responses request translated into a chat completion request.
#[derive(Debug)]
pub struct ChatPlan {
    /// The chat completion request body.
    pub chat: Value,
    /// The app asked for a stream.
    pub stream: bool,
    /// What the `response` object echoes of the request.
    pub echo: Map<String, Value>,
}

/// Translates a Responses request into a chat completion request.
pub fn to_chat(req: &Value) -> Result<ChatPlan, Refused> {
    let obj = req
        .as_object()
        .ok_or_else(|| refused("", "request body must be a JSON object"))?;
    for key in obj.keys() {
        if ["previous_response_id", "conversation", "background"].contains(&key.as_str()) {
            return Err(refused(
                key,
                format!("'{key}' is not supported: this gateway is stateless and stores no responses; send the whole conversation in 'input'"),
            ));
        }
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            return Err(refused(key, format!("unknown parameter '{key}'")));
        }
    }
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| refused("model", "'model' is required (a string)"))?;
    let mut messages = Vec::new();
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(refused("instructions", "'instructions' must be a string")),
    }
    match obj.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUT_ITEMS {
                return Err(refused(
                    "input",
                    format!("'input' has more than {MAX_INPUT_ITEMS} items"),
                ));
            }
            input_items(items, &mut messages)?;
        }
        _ => {
            return Err(refused(
                "input",
                "'input' is required: a string or an array of items",
            ))
        }
    }
    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), Value::Array(messages));
    let mut echo = Map::new();
    if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
        let converted = tools_to_chat(tools)?;
        if !converted.is_empty() {
            chat.insert("tools".into(), Value::Array(converted));
        }
        echo.insert("tools".into(), tools.clone());
    }
    if let Some(tc) = obj.get("tool_choice").filter(|t| !t.is_null()) {
        chat.insert("tool_choice".into(), tool_choice_to_chat(tc)?);
        echo.insert("tool_choice".into(), tc.clone());
    }
    if let Some(format) = obj.get("text").and_then(|t| t.get("format")) {
        if let Some(rf) = format_to_chat(format)? {
            chat.insert("response_format".into(), rf);
        }
        echo.insert("text".into(), json!({"format": format}));
    }
    if let Some(v) = obj.get("max_output_tokens").filter(|v| !v.is_null()) {
        let n = v.as_u64().ok_or_else(|| {
            refused(
                "max_output_tokens",
                "'max_output_tokens' must be a positive integer",
            )
        })?;
        chat.insert("max_tokens".into(), n.into());
        echo.insert("max_output_tokens".into(), n.into());
    }
    for key in [
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "user",
        "max_coefficient",
        "timeout",
        "request_guid",
        "enable_debug",
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
            if ["parallel_tool_calls", "temperature", "top_p"].contains(&key) {
                echo.insert(key.into(), v.clone());
            }
        }
    }
    if let Some(m) = obj.get("metadata").filter(|m| m.is_object()) {
        echo.insert("metadata".into(), m.clone());
    }
    if let Some(i) = obj.get("instructions").filter(|i| i.is_string()) {
        echo.insert("instructions".into(), i.clone());
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(refused("stream", "'stream' must be a boolean")),
    };
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    echo.insert("model".into(), model.into());
    Ok(ChatPlan {
        chat: Value::Object(chat),
        stream,
        echo,
    })
}

/// Input items → chat messages. Consecutive `function_call` items become one assistant
/// message with several `tool_calls`.
fn input_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), Refused> {
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                let role = match role {
                    "user" | "assistant" | "system" => role,
                    "developer" => "system",
                    _ => {
                        return Err(refused(
                            &format!("{param}.role"),
                            "role must be user, assistant, system or developer",
                        ))
                    }
                };
                let text = message_text(item.get("content"), &param)?;
                messages.push(json!({"role": role, "content": text}));
            }
            "function_call" => {
                let call_id = str_field(item, "call_id", &param)?;
                let name = str_field(item, "name", &param)?;
                let arguments = str_field(item, "arguments", &param)?;
                let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
                let joined = messages.last_mut().and_then(|m| {
                    let open = m["role"] == "assistant" && m["content"].is_null();
                    open.then(|| m.get_mut("tool_calls").and_then(Value::as_array_mut))
                        .flatten()
                });
                match joined {
                    Some(calls) => calls.push(call),
                    None => messages.push(
                        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                    ),
                }
            }
            "function_call_output" => {
                let call_id = str_field(item, "call_id", &param)?;
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other @ Value::Array(_)) => {
                        message_text(Some(other), &format!("{param}.output"))?
                    }
                    _ => {
                        return Err(refused(
                            &format!("{param}.output"),
                            "'output' must be a string",
                        ))
                    }
                };
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            // Reasoning items carry nothing a chat engine reads back.
            "reasoning" => {}
            other => {
                return Err(refused(
                    &format!("{param}.type"),
                    format!("input items of type '{other}' are not supported (message, function_call, function_call_output are)"),
                ))
            }
        }
    }
    Ok(())
}

fn str_field<'a>(item: &'a Value, name: &str, param: &str) -> Result<&'a str, Refused> {
    item.get(name).and_then(Value::as_str).ok_or_else(|| {
        refused(
            &format!("{param}.{name}"),
            format!("'{name}' must be a string"),
        )
    })
}

/// A message's content: a string, or text parts (`input_text`, `output_text`, `text`) joined.
fn message_text(content: Option<&Value>, param: &str) -> Result<String, Refused> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "input_text" | "output_text" | "text" => {
                        text.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    "refusal" => {}
                    other => {
                        return Err(refused(
                            &format!("{param}.content[{j}]"),
                            format!(
                                "content parts of type '{other}' are not supported (text only)"
                            ),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(refused(
            &format!("{param}.content"),
            "content must be a string or an array of text parts",
        )),
    }
}

/// OpenAI's hosted tools, which only OpenAI runs: left out of what the model is offered (an
/// agent such as the Codex CLI lists some of them beside its functions), never called.
const HOSTED_TOOLS: [&str; 11] = [
    "web_search",
    "web_search_preview",
    "file_search",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "local_shell",
    "mcp",
    "custom",
    "shell",
    "apply_patch",
];

/// Responses function tools (`{"type":"function","name",...}`) → chat tools; hosted tools
/// ([`HOSTED_TOOLS`]) are left out, any other type is refused.
fn tools_to_chat(tools: &Value) -> Result<Vec<Value>, Refused> {
    let list = tools
        .as_array()
        .ok_or_else(|| refused("tools", "'tools' must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        if HOSTED_TOOLS.contains(&kind) {
            continue;
        }
        if kind != "function" {
            return Err(refused(
                &format!("tools[{i}].type"),
                format!("tools of type '{kind}' are not supported here (function tools are)"),
            ));
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| refused(&format!("tools[{i}].name"), "a function tool needs 'name'"))?;
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                function.insert(key.into(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

fn tool_choice_to_chat(tc: &Value) -> Result<Value, Refused> {
    match tc {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => Ok(tc.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                refused("tool_choice.name", "a function tool_choice needs 'name'")
            })?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(refused(
            "tool_choice",
            "'tool_choice' must be auto, none, required or {\"type\":\"function\",\"name\":...}",
        )),
    }
}

/// `text.format` → `response_format` (`None` for plain text).
fn format_to_chat(format: &Value) -> Result<Option<Value>, Refused> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(refused(
            "text.format.type",
            "'text.format.type' must be text, json_object or json_schema",
        )),
    }
}

/// A new id with `prefix` (`resp_`, `msg_`, `fc_`): 24 random bytes in hex.
fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chat usage → Responses usage (Cocoon's cost fields kept).
fn usage_to_responses(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = json!({
        "input_tokens": n("prompt_tokens"),
        "input_tokens_details": {"cached_tokens": u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "output_tokens": n("completion_tokens"),
        "output_tokens_details": {"reasoning_tokens": u.pointer("/completion_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "total_tokens": n("total_tokens"),
    });
    if let (Some(o), Some(src)) = (out.as_object_mut(), u.as_object()) {
        for (k, v) in src {
            if k.ends_with("cost") || k == "cost_nanoton" {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The `response` object around `output`.
fn response_object(
    id: &str,
    created: u64,
    status: &str,
    echo: &Map<String, Value>,
    output: Vec<Value>,
    usage: Option<Value>,
    incomplete: Option<&str>,
) -> Value {
    let mut r = Map::new();
    r.insert("id".into(), id.into());
    r.insert("object".into(), "response".into());
    r.insert("created_at".into(), created.into());
    r.insert("status".into(), status.into());
    r.insert("error".into(), Value::Null);
    r.insert(
        "incomplete_details".into(),
        incomplete.map_or(Value::Null, |why| json!({"reason": why})),
    );
    r.insert("instructions".into(), Value::Null);
    r.insert("max_output_tokens".into(), Value::Null);
    r.insert("metadata".into(), json!({}));
    r.insert("parallel_tool_calls".into(), true.into());
    r.insert("temperature".into(), Value::Null);
    r.insert("top_p".into(), Value::Null);
    r.insert("tool_choice".into(), "auto".into());
    r.insert("tools".into(), json!([]));
    r.insert("text".into(), json!({"format": {"type": "text"}}));
    r.insert("store".into(), false.into());
    for (k, v) in echo {
        r.insert(k.clone(), v.clone());
    }
    r.insert("output".into(), Value::Array(output));
    r.insert("usage".into(), usage.unwrap_or(Value::Null));
    Value::Object(r)
}

/// A whole chat completion → a `response` object.
pub fn chat_to_response(chat: &Value, echo: &Map<String, Value>) -> Value {
    let choice = &chat["choices"][0];
    let message = &choice["message"];
    let mut output = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(&new_id("msg_"), text, "completed"));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            output.push(call_item(
                &new_id("fc_"),
                c["id"].as_str().unwrap_or(""),
                c["function"]["name"].as_str().unwrap_or(""),
                c["function"]["arguments"].as_str().unwrap_or(""),
                "completed",
            ));
        }
    }
    let incomplete = (choice["finish_reason"] == "length").then_some("max_output_tokens");
    let status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let created = chat["created"].as_u64().unwrap_or_else(unix_now);
    response_object(
        &new_id("resp_"),
        created,
        status,
        echo,
        output,
        chat.get("usage")
            .filter(|u| u.is_object())
            .map(usage_to_responses),
        incomplete,
    )
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status,
    })
}

/// A function call being streamed.
#[derive(Debug)]
struct CallState {
    output_index: usize,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Translates a streamed chat completion (SSE bytes, in any chunking) into Responses events.
#[derive(Debug)]
pub struct StreamBridge {
    id: String,
    created: u64,
    echo: Map<String, Value>,
    seq: u64,
    /// Bytes of an SSE event not complete yet.
    pending: Vec<u8>,
    started: bool,
    /// The text message: its output index and id, and the text so far.
    text: Option<(usize, String, String)>,
    /// Function calls by their chat `index`.
    calls: Vec<(u64, CallState)>,
    next_output: usize,
    usage: Option<Value>,
    finish: Option<String>,
    /// The stream ended (completed or failed): nothing more is emitted.
    over: bool,
}

/// Most bytes of one SSE event held while it is incomplete.
const MAX_EVENT_BYTES: usize = 4 << 20;

impl StreamBridge {
    pub fn new(echo: Map<String, Value>) -> Self {
        Self {
            id: new_id("resp_"),
            created: unix_now(),
            echo,
            seq: 0,
            pending: Vec::new(),
            started: false,
            text: None,
            calls: Vec::new(),
            next_output: 0,
            usage: None,
            finish: None,
            over: false,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> String {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.seq.into());
        }
        self.seq += 1;
        format!("event: {kind}\ndata: {data}\n\n")
    }

    fn snapshot(&self, status: &str, incomplete: Option<&str>) -> Value {
        response_object(
            &self.id,
            self.created,
            status,
            &self.echo,
            self.output_items("completed"),
            self.usage.clone(),
            incomplete,
        )
    }

    fn output_items(&self, status: &str) -> Vec<Value> {
        let mut items: Vec<(usize, Value)> = Vec::new();
        if let Some((at, id, text)) = &self.text {
            items.push((*at, message_item(id, text, status)));
        }
        for (_, c) in &self.calls {
            items.push((
                c.output_index,
                call_item(&c.item_id, &c.call_id, &c.name, &c.arguments, status),
            ));
        }
        items.sort_by_key(|(at, _)| *at);
        items.into_iter().map(|(_, v)| v).collect()
    }

    fn start(&mut self, out: &mut String) {
        if !self.started {
            self.started = true;
            let r = self.snapshot("in_progress", None);
            let e = self.event("response.created", json!({"response": r.clone()}));
            out.push_str(&e);
            let e = self.event("response.in_progress", json!({"response": r}));
            out.push_str(&e);
        }
    }

    /// Chat SSE bytes in, Responses SSE bytes out.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        if self.over {
            return out;
        }
        self.start(&mut out);
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            self.chat_event(&event, &mut out);
            if self.over {
                return out;
            }
        }
        if self.pending.len() > MAX_EVENT_BYTES {
            self.fail("a streamed event of the answer is too large", &mut out);
        }
        out
    }

    fn chat_event(&mut self, event: &[u8], out: &mut String) {
        let text = String::from_utf8_lossy(event);
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.complete(out);
                return;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(e) = chunk.get("error") {
                let message = e["message"]
                    .as_str()
                    .unwrap_or("the answer failed")
                    .to_string();
                self.fail(&message, out);
                return;
            }
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                self.usage = Some(usage_to_responses(u));
            }
            let Some(choice) = chunk.pointer("/choices/0") else {
                continue;
            };
            let delta = &choice["delta"];
            if let Some(t) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.text_delta(t, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for c in calls {
                    self.call_delta(c, out);
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.to_string());
            }
        }
    }

    fn text_delta(&mut self, t: &str, out: &mut String) {
        if self.text.is_none() {
            let id = new_id("msg_");
            let at = self.next_output;
            self.next_output += 1;
            self.text = Some((at, id.clone(), String::new()));
            let e = self.event(
                "response.output_item.added",
                json!({"output_index": at, "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}),
            );
            out.push_str(&e);
            let e = self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            out.push_str(&e);
        }
        let Some((at, id, text)) = self.text.as_mut() else {
            return;
        };
        text.push_str(t);
        let (at, id) = (*at, id.clone());
        let e = self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": at, "content_index": 0, "delta": t, "logprobs": []}),
        );
        out.push_str(&e);
    }

    fn call_delta(&mut self, c: &Value, out: &mut String) {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        if !self.calls.iter().any(|(i, _)| *i == index) {
            let state = CallState {
                output_index: self.next_output,
                item_id: new_id("fc_"),
                call_id: c["id"]
                    .as_str()
                    .map_or_else(|| new_id("call_"), str::to_string),
                name: c["function"]["name"].as_str().unwrap_or("").to_string(),
                arguments: String::new(),
            };
            self.next_output += 1;
            let item = call_item(
                &state.item_id,
                &state.call_id,
                &state.name,
                "",
                "in_progress",
            );
            let at = state.output_index;
            self.calls.push((index, state));
            let e = self.event(
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
            );
            out.push_str(&e);
        }
        let Some(args) = c["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let Some((_, state)) = self.calls.iter_mut().find(|(i, _)| *i == index) else {
            return;
        };
        state.arguments.push_str(args);
        let (id, at) = (state.item_id.clone(), state.output_index);
        let e = self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": at, "delta": args}),
        );
        out.push_str(&e);
    }

    /// The chat stream ended with `[DONE]`: close every item and the response.
    fn complete(&mut self, out: &mut String) {
        if let Some((at, id, text)) = self.text.clone() {
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            let e = self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
            );
            out.push_str(&e);
            let e = self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
            );
            out.push_str(&e);
            let e = self.event(
                "response.output_item.done",
                json!({"output_index": at, "item": message_item(&id, &text, "completed")}),
            );
            out.push_str(&e);
        }
        let calls: Vec<(usize, String, String, String, String)> = self
            .calls
            .iter()
            .map(|(_, c)| {
                (
                    c.output_index,
                    c.item_id.clone(),
                    c.call_id.clone(),
                    c.name.clone(),
                    c.arguments.clone(),
                )
            })
            .collect();
        for (at, id, call_id, name, arguments) in calls {
            let e = self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments}),
            );
            out.push_str(&e);
            let e = self.event(
                "response.output_item.done",
                json!({"output_index": at, "item": call_item(&id, &call_id, &name, &arguments, "completed")}),
            );
            out.push_str(&e);
        }
        let incomplete = (self.finish.as_deref() == Some("length")).then_some("max_output_tokens");
        let (kind, status) = match incomplete {
            Some(_) => ("response.incomplete", "incomplete"),
            None => ("response.completed", "completed"),
        };
        let r = self.snapshot(status, incomplete);
        let e = self.event(kind, json!({"response": r}));
        out.push_str(&e);
        self.over = true;
    }

    /// The answer failed midway: `response.failed` with the reason, then nothing more.
    pub fn fail(&mut self, message: &str, out: &mut String) {
        if self.over {
            return;
        }
        self.start(out);
        let mut r = self.snapshot("failed", None);
        r["error"] = json!({"code": "server_error", "message": message});
        let e = self.event("response.failed", json!({"response": r}));
        out.push_str(&e);
        self.over = true;
    }

    /// Whether the response was closed (completed, incomplete or failed).
    pub fn is_over(&self) -> bool {
        self.over
    }
}

#[cfg(test)]
mod tests;
