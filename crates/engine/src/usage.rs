//! Counting the real token usage of an engine response while it is forwarded, without delaying it.
//!
//! The worker forwards each body chunk at once and feeds a copy to [`UsageCounter::observe`],
//! which never blocks and never fails the stream. The counter understands the three body shapes
//! engines produce:
//! - SSE (`text/event-stream`): `data: {chunk}` events, `data: [DONE]`; parsed with
//!   [`crate::sse::SseParser`]. This is the case Cocoon got wrong (its counter could not read
//!   SSE, so streamed requests were buffered whole and billed zero).
//! - one JSON value (`application/json`), and
//! - newline-delimited or concatenated JSON values (Cocoon's Go benchmark backend sends these
//!   under `application/json`); both go through the same incremental splitter.
//!
//! The declared kind is a hint: the first non-blank byte decides (`{`/`[` means JSON; `d`, `e`,
//! `i`, `r`, `:` can only start an SSE field), so a mislabelled body is still counted.
//!
//! From every JSON object seen it takes the **maxima** of `usage.prompt_tokens`,
//! `usage.prompt_tokens_details.cached_tokens`, `usage.completion_tokens` and
//! `usage.completion_tokens_details.reasoning_tokens` / `usage.reasoning_tokens` (as Cocoon
//! does; only unsigned integers count), and of the transcription shapes
//! ([`RawUsage::from_usage_json`]: `input_tokens` / `output_tokens`, or a duration in seconds). Values that are not JSON, are cut off at the end of the
//! body, or exceed a cap are ignored and counted in [`UsageCounter::malformed`]: usage is never
//! taken from a truncated value. [`UsageCounter::completion_chunks`] counts objects that carry
//! generated content (`choices[].delta.content` / `reasoning_content` / `tool_calls`,
//! `choices[].text`, `choices[].message.content`, or a top-level `delta` string), the fallback
//! estimate when no usage arrives. A stream is complete ([`UsageCounter::saw_done`]) at
//! `data: [DONE]`, or at OpenAI's last transcription event (`"type": "transcript.text.done"`,
//! which no `[DONE]` follows).
//!
//! Pricing lives in [`crate::pricing`]; this module only counts.

mod split;

use serde::Deserialize;
use serde_json::Value;

use crate::sse::{SseEvent, SseParser};
use split::{Item, JsonSplitter};

/// Prompt tokens billed per second of audio when an engine reports a transcription's usage as
/// a duration (`{"type": "duration", "seconds": S}`, OpenAI's whisper-1 and vLLM's non-streamed
/// transcriptions). Whisper's encoder, what such engines run, turns every second of audio into
/// 50 positions (a 30 s window is 1 500) whatever is said in it: the work a second of audio
/// costs, counted like the prompt tokens of a chat. docs/ARCHITECTURE.md ("Usage of
/// transcriptions") says why it is billed at all.
pub const AUDIO_TOKENS_PER_SECOND: u64 = 50;

/// Token counts as the engine reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawUsage {
    /// `usage.prompt_tokens` (cached ones included).
    pub prompt: u64,
    /// `usage.prompt_tokens_details.cached_tokens`.
    pub cached: u64,
    /// `usage.completion_tokens` (reasoning ones included).
    pub completion: u64,
    /// `usage.completion_tokens_details.reasoning_tokens` or `usage.reasoning_tokens`.
    pub reasoning: u64,
}

/// The shape of a response body, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `text/event-stream`.
    Sse,
    /// A JSON document (also accepts concatenated values).
    Json,
    /// Newline-delimited JSON values.
    JsonLines,
}

/// Memory bounds for the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageLimits {
    /// Longest SSE line, and largest SSE event. Default: 1 MiB.
    pub max_line: usize,
    /// Largest JSON value parsed whole. A larger top-level object is still followed to its end
    /// and its top-level `usage` member (up to 64 KiB) is still read. Default: 8 MiB.
    pub max_value: usize,
}

/// Incremental usage counter for one response; see the module docs.
#[derive(Debug)]
pub struct UsageCounter {
    limits: UsageLimits,
    kind: BodyKind,
    mode: Mode,
    tally: Tally,
}

#[derive(Debug)]
enum Mode {
    /// Only blank bytes so far: the first real byte decides the parser.
    Undecided,
    Sse(SseParser),
    Json(JsonSplitter),
    Finished,
}

#[derive(Debug, Default)]
struct Tally {
    usage: RawUsage,
    completion_chunks: u64,
    malformed: u64,
    done: bool,
}

/// Cap on a top-level `usage` member kept from an oversized value.
const MAX_USAGE_BYTES: usize = 64 * 1024;

/// The parts of a response object the counter reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Frame {
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    choices: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
}

/// The `type` of OpenAI's last transcription stream event (no `[DONE]` follows it).
const TRANSCRIPT_DONE: &str = "transcript.text.done";

/// Maps a `Content-Type` value to a body kind (`None` and unknown types mean JSON).
pub fn body_kind_from_content_type(ct: Option<&str>) -> BodyKind {
    let Some(ct) = ct else {
        return BodyKind::Json;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("text/event-stream") {
        return BodyKind::Sse;
    }
    const LINES: [&str; 6] = [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-seq",
    ];
    if LINES.iter().any(|l| media.eq_ignore_ascii_case(l)) {
        return BodyKind::JsonLines;
    }
    BodyKind::Json
}

// === impl UsageLimits ===

impl Default for UsageLimits {
    fn default() -> Self {
        Self {
            max_line: 1 << 20,
            max_value: 8 << 20,
        }
    }
}

// === impl RawUsage ===

impl RawUsage {
    /// Field-wise maximum.
    pub fn max(self, other: Self) -> Self {
        Self {
            prompt: self.prompt.max(other.prompt),
            cached: self.cached.max(other.cached),
            completion: self.completion.max(other.completion),
            reasoning: self.reasoning.max(other.reasoning),
        }
    }

    /// `prompt + completion`, saturating.
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// Reads an OpenAI `usage` object (missing or non-integer fields count as 0). Three shapes,
    /// the largest count of each category winning where an object mixes them:
    /// - chat and completions: `prompt_tokens` (with `prompt_tokens_details.cached_tokens`),
    ///   `completion_tokens` (with `completion_tokens_details.reasoning_tokens` or
    ///   `reasoning_tokens`);
    /// - transcriptions billed by tokens (`"type": "tokens"`, also the Responses API's):
    ///   `input_tokens` → prompt, `output_tokens` → completion (with
    ///   `input_tokens_details.cached_tokens` → cached and
    ///   `output_tokens_details.reasoning_tokens` → reasoning);
    /// - transcriptions billed by duration (`"type": "duration"`, `seconds` a non-negative
    ///   number): `ceil(seconds × AUDIO_TOKENS_PER_SECOND)` prompt tokens, no completion tokens
    ///   (the engine reports none).
    pub fn from_usage_json(u: &Value) -> Self {
        let n = |ptr: &str| u.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
        let duration = if u.get("type").and_then(Value::as_str) == Some("duration") {
            u.get("seconds")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s > 0.0)
                // `as` saturates: an absurd duration bills u64::MAX, capped by the reservation.
                .map_or(0, |s| (s * AUDIO_TOKENS_PER_SECOND as f64).ceil() as u64)
        } else {
            0
        };
        Self {
            prompt: n("/prompt_tokens").max(n("/input_tokens")).max(duration),
            cached: n("/prompt_tokens_details/cached_tokens")
                .max(n("/input_tokens_details/cached_tokens")),
            completion: n("/completion_tokens").max(n("/output_tokens")),
            reasoning: n("/completion_tokens_details/reasoning_tokens")
                .max(n("/reasoning_tokens"))
                .max(n("/output_tokens_details/reasoning_tokens")),
        }
    }
}

// === impl UsageCounter ===

impl UsageCounter {
    /// A counter for a body of the given kind.
    pub fn new(kind: BodyKind, limits: UsageLimits) -> Self {
        Self {
            limits,
            kind,
            mode: Mode::Undecided,
            tally: Tally::default(),
        }
    }

    /// Feeds a copy of the next body chunk. Never fails; bad input only bumps
    /// [`UsageCounter::malformed`]. Chunks after [`UsageCounter::finish`] are ignored.
    pub fn observe(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if matches!(self.mode, Mode::Undecided) {
            let Some(first) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
                return;
            };
            rest = &rest[first..];
            self.mode = self.pick_mode(rest[0]);
        }
        let tally = &mut self.tally;
        match &mut self.mode {
            Mode::Sse(p) => {
                if p.feed(rest, |ev| tally.on_event(&ev)).is_err() {
                    tally.malformed += 1;
                }
            }
            Mode::Json(s) => s.push(rest, |item| tally.on_item(item)),
            Mode::Undecided | Mode::Finished => {}
        }
    }

    /// Ends the body and returns the usage (maxima over everything seen).
    pub fn finish(&mut self) -> RawUsage {
        let tally = &mut self.tally;
        match &mut self.mode {
            Mode::Sse(p) => {
                if let Some(ev) = p.finish() {
                    tally.on_event(&ev);
                }
            }
            Mode::Json(s) => {
                if s.finish(|item| tally.on_item(item)) {
                    tally.malformed += 1;
                }
            }
            Mode::Undecided | Mode::Finished => {}
        }
        self.mode = Mode::Finished;
        self.tally.usage
    }

    /// Usage seen so far (for progress reports).
    pub fn current(&self) -> RawUsage {
        self.tally.usage
    }

    /// Number of JSON objects that carried generated content.
    pub fn completion_chunks(&self) -> u64 {
        self.tally.completion_chunks
    }

    /// Events or values that were ignored: not JSON, cut off, or over a cap.
    pub fn malformed(&self) -> u64 {
        self.tally.malformed
    }

    /// Whether the stream said it was complete: an SSE `data: [DONE]`, or OpenAI's last
    /// transcription event (`"type": "transcript.text.done"`).
    pub fn saw_done(&self) -> bool {
        self.tally.done
    }

    /// Bytes buffered inside the counter (bounded by the limits).
    pub fn buffered_len(&self) -> usize {
        match &self.mode {
            Mode::Sse(p) => p.buffered_len(),
            Mode::Json(s) => s.buffered_len(),
            Mode::Undecided | Mode::Finished => 0,
        }
    }

    fn pick_mode(&self, first: u8) -> Mode {
        let sse = match first {
            b'{' | b'[' => false,
            b'd' | b'e' | b'i' | b'r' | b':' => true,
            _ => self.kind == BodyKind::Sse,
        };
        if sse {
            Mode::Sse(SseParser::new(self.limits.max_line))
        } else {
            Mode::Json(JsonSplitter::new(self.limits.max_value, MAX_USAGE_BYTES))
        }
    }
}

// === impl Tally ===

impl Tally {
    fn on_event(&mut self, ev: &SseEvent) {
        let data = ev.data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        self.on_value(data.as_bytes());
    }

    fn on_item(&mut self, item: Item<'_>) {
        match item {
            Item::Value(bytes) => self.on_value(bytes),
            Item::Oversized { usage } => {
                self.malformed += 1;
                if let Some(u) = usage.and_then(|u| serde_json::from_slice::<Value>(u).ok()) {
                    self.usage = self.usage.max(RawUsage::from_usage_json(&u));
                }
            }
            Item::Junk => self.malformed += 1,
        }
    }

    fn on_value(&mut self, bytes: &[u8]) {
        // Top-level arrays are valid JSON but no OpenAI shape; skip them without parsing
        // (a derived struct would otherwise accept an array positionally).
        if bytes.first() != Some(&b'{') {
            if bytes.first() != Some(&b'[') {
                self.malformed += 1;
            }
            return;
        }
        let Ok(frame) = serde_json::from_slice::<Frame>(bytes) else {
            self.malformed += 1;
            return;
        };
        if let Some(u) = &frame.usage {
            self.usage = self.usage.max(RawUsage::from_usage_json(u));
        }
        if frame.kind.as_ref().and_then(Value::as_str) == Some(TRANSCRIPT_DONE) {
            self.done = true;
        }
        if frame.has_content() {
            self.completion_chunks += 1;
        }
    }
}

// === impl Frame ===

impl Frame {
    fn has_content(&self) -> bool {
        if self.delta.as_ref().is_some_and(non_empty) {
            return true;
        }
        let Some(Value::Array(choices)) = &self.choices else {
            return false;
        };
        const PATHS: [&str; 8] = [
            "/delta/content",
            "/delta/reasoning_content",
            "/delta/reasoning",
            "/delta/tool_calls",
            "/text",
            "/message/content",
            "/message/reasoning_content",
            "/message/tool_calls",
        ];
        choices
            .iter()
            .any(|c| PATHS.iter().any(|p| c.pointer(p).is_some_and(non_empty)))
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
