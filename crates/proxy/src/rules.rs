//! The rules that decide how long a request may run, how much of its client's credit it holds,
//! what it is charged when it ends and whether a deadline makes its worker suspect — free of
//! I/O and of the clock (durations come in as arguments), each tested here on its own.
//! `state.rs` and `proxy_core.rs` call them; nothing here locks, sends or logs.
//!
//! Charging (docs/SECURITY.md):
//! - A worker's own statement of usage (its final answer, or its error's `final_info`) is
//!   charged as stated, **up to the reservation**: a worker (or the engine behind it) cannot
//!   charge a client more than the client agreed to risk, nor be credited more.
//! - A request the proxy ends (client cancel or disconnect, the proxy's deadline, worker loss,
//!   a cut at the reservation) is charged the larger of the worker's last progress (protocol 3)
//!   and the proxy's own count of what it relayed ([`RelayMeter`]), up to the reservation —
//!   never 0 just because the engine reports usage only in its last chunk.

use std::time::Duration;

use cocoon_engine::pricing::{adjust, PriceMultipliers};
use cocoon_engine::usage::{
    body_kind_from_content_type, BodyKind, RawUsage, UsageCounter, UsageLimits,
};
use cocoon_ledger::LedgerError;
use cocoon_proto::messages::HttpRequest;
use serde::Deserialize;
use serde_json::Value;

/// Adjusted tokens charged for a request that ended. `reported`: what the worker stated with
/// its final answer or error (`None` when the proxy ended the request, or the worker's error
/// stated nothing); `progress`: the worker's last cumulative progress (protocol 3, else 0);
/// `relayed`: the proxy's own count of what it relayed; `reserved`: the request's reservation.
pub fn settle_tokens(reported: Option<u64>, progress: u64, relayed: u64, reserved: u64) -> u64 {
    reported.unwrap_or(progress.max(relayed)).min(reserved)
}

/// Whether a stream still running has passed its reservation (by the worker's progress or by
/// the proxy's own count) and must be cut now.
pub fn passed_reservation(progress: u64, relayed: u64, reserved: u64) -> bool {
    progress.max(relayed) > reserved
}

/// The completion-token limit a request is reserved for: the larger of the message's
/// `max_tokens` and the body's limit, or of the message's and `default_cap` when the body sets
/// none (the worker then generates up to its own cap). A client cannot reserve for 1 token
/// while its body asks for thousands.
pub fn reserved_max_tokens(message: u64, body: Option<u64>, default_cap: u64) -> u64 {
    message.max(body.unwrap_or(default_cap))
}

/// Largest request body read for its token limit; a larger one counts as setting none (workers
/// refuse far smaller bodies: their `max_request_bytes`, 4 MiB by default).
pub const MAX_BODY_READ: usize = 8 << 20;

/// The two members of an OpenAI request body the proxy reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct TokenLimits {
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    max_completion_tokens: Option<Value>,
}

/// The completion-token limit in a client's request: `query` is the serialized `http.request`
/// of `client.runQueryEx`; its body's `max_tokens` / `max_completion_tokens` (the larger, when
/// a non-negative integer). `None` when neither is set, the query is not an `http.request`,
/// the body is declared as something other than JSON (a transcription's
/// `multipart/form-data` form: it has no limit field, and is never parsed here), is not one
/// JSON object (duplicate members included) or is over [`MAX_BODY_READ`]. `None` makes the
/// reservation use the configured cap ([`reserved_max_tokens`]). The body is not copied; JSON
/// nesting is bounded by serde_json's recursion limit.
pub fn body_max_tokens(query: &bytes::Bytes) -> Option<u64> {
    let req: HttpRequest = cocoon_tl::from_bytes(query).ok()?;
    if req.payload.len() > MAX_BODY_READ {
        return None;
    }
    // Upstream clients copy the app's Content-Type; a missing one is JSON, as before.
    let declared_other = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && !h
                .value
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if declared_other {
        return None;
    }
    // Only an object (a derived struct would also accept an array, positionally).
    if req.payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let limits: TokenLimits = serde_json::from_slice(&req.payload).ok()?;
    let n = |v: Option<Value>| v.as_ref().and_then(Value::as_u64);
    match (n(limits.max_tokens), n(limits.max_completion_tokens)) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

/// A sealed request (`http.request` whose Content-Type is [`cocoon_sealed::SEALED_CONTENT_TYPE`]):
/// the envelope's clear header, the only part of it the proxy can read — the completion bound
/// it reserves for and the workers it was sealed to. `None`: not a sealed request; `Some(Err)`:
/// declared sealed but the envelope is malformed.
pub fn sealed_header(
    query: &bytes::Bytes,
) -> Option<Result<cocoon_sealed::RequestHeader, cocoon_sealed::SealError>> {
    let req: HttpRequest = cocoon_tl::from_bytes(query).ok()?;
    let sealed = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && h.value
                .trim()
                .eq_ignore_ascii_case(cocoon_sealed::SEALED_CONTENT_TYPE)
    });
    sealed.then(|| cocoon_sealed::read_header(&req.payload))
}

/// What the prompt of a sealed request can be at most, in bytes: the envelope less its header
/// (18 bytes and 144 per recipient), the body's length prefix and tag (20 bytes), i.e. the
/// (possibly padded) plaintext — the app's serialized `http.request` (layout in
/// `crates/sealed/src/lib.rs`). Reservations and the relay meter estimate the prompt from it,
/// as they do from a clear request's bytes.
pub fn sealed_prompt_bytes(query_len: usize, recipients: usize) -> u64 {
    query_len.saturating_sub(18 + 144 * recipients + 20) as u64
}

/// The proxy's deadline for a request whose client asked for `asked_secs` (0, negative or not
/// finite: none): raised to `min` (a client cannot make workers look hung with a deadline no
/// worker can meet), lowered to `max`. `min` above `max` counts as `max`.
pub fn request_deadline(asked_secs: f64, min: Duration, max: Duration) -> Duration {
    let min = min.min(max);
    if !(asked_secs.is_finite() && asked_secs > 0.0) {
        return max;
    }
    Duration::try_from_secs_f64(asked_secs)
        .unwrap_or(max)
        .clamp(min, max)
}

/// Whether a request that reached its `deadline` without a word from its worker (no head)
/// makes the worker suspect: only when the deadline was at least the proxy's minimum and at
/// least twice the worker's mean time to head (`None`: no history yet). A deadline shorter than
/// that says more about the client than about the worker.
pub fn suspect_after_deadline(
    deadline: Duration,
    min_timeout: Duration,
    mean_time_to_head: Option<Duration>,
) -> bool {
    deadline >= min_timeout && mean_time_to_head.is_none_or(|t| deadline >= t.saturating_mul(2))
}

/// Exponentially weighted mean with weight 0.2 on the new sample (recent samples dominate);
/// the first sample is the mean.
pub fn ewma(mean: Option<f64>, sample: f64) -> f64 {
    match mean {
        Some(m) => 0.8 * m + 0.2 * sample,
        None => sample,
    }
}

/// Whether a ledger error while recording one request's charge stops the proxy. An input the
/// ledger refuses (a counter that would overflow, the account table full) is that request's
/// problem: its charge is rejected and it fails. A ledger that cannot write (I/O, a stopped
/// writer, a tampered or foreign file) can make nothing durable, so nothing more is accepted.
pub fn ledger_error_halts(e: &LedgerError) -> bool {
    !matches!(
        e,
        LedgerError::InvalidInput(_) | LedgerError::TooLarge { .. }
    )
}

/// Bounds of the proxy's per-request counter: smaller than the worker's (the proxy holds one
/// per running request); a longer SSE line or a larger JSON value is not counted as content
/// (a non-streamed answer's top-level `usage` is still read).
const METER_LIMITS: UsageLimits = UsageLimits {
    max_line: 64 << 10,
    max_value: 256 << 10,
};

/// Pieces of a sealed answer the relay meter does not count as content (see [`RelayMeter`]).
pub const SEALED_FRAMING_PIECES: u64 = 8;

/// The proxy's own count of what it relayed of one answer: the body bytes of the head and of
/// every part go through the engine's [`UsageCounter`] (the worker counts the same way), and
/// [`RelayMeter::delivered`] turns that into usage — see [`delivered_usage`].
///
/// A sealed answer cannot be parsed: its meter counts each non-empty piece beyond the first
/// [`SEALED_FRAMING_PIECES`] as one completion token on top of the prompt estimate (a stream
/// has a few pieces without content — the role, the finish reason, the usage, `[DONE]` — and a
/// content piece carries at least one token), so an honest stream never counts more than it
/// generated; the worker's own progress reports count the rest.
#[derive(Debug)]
pub struct RelayMeter {
    counter: Option<UsageCounter>,
    prompt_estimate: u64,
    /// Sealed answers: the pieces relayed so far.
    sealed_pieces: Option<u64>,
}

impl RelayMeter {
    /// A meter for a request whose prompt is estimated at `prompt_estimate` tokens.
    pub fn new(prompt_estimate: u64) -> Self {
        Self {
            counter: None,
            prompt_estimate,
            sealed_pieces: None,
        }
    }

    /// A meter for a sealed request (its answer is opaque here).
    pub fn sealed(prompt_estimate: u64) -> Self {
        Self {
            sealed_pieces: Some(0),
            ..Self::new(prompt_estimate)
        }
    }

    /// The answer's head: its `Content-Type` picks the body parser (the first body byte still
    /// decides, as in the worker); a payload in the head is body.
    pub fn head(&mut self, content_type: Option<&str>, payload: &[u8]) {
        if self.sealed_pieces.is_some() {
            return self.observe(payload);
        }
        if self.counter.is_none() {
            self.counter = Some(UsageCounter::new(
                body_kind_from_content_type(content_type),
                METER_LIMITS,
            ));
        }
        self.observe(payload);
    }

    /// A body part as relayed.
    pub fn observe(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        if let Some(n) = self.sealed_pieces.as_mut() {
            *n += 1;
            return;
        }
        self.counter
            .get_or_insert_with(|| UsageCounter::new(BodyKind::Json, METER_LIMITS))
            .observe(part);
    }

    /// Raw usage delivered so far ([`delivered_usage`]).
    pub fn delivered(&self) -> RawUsage {
        if let Some(pieces) = self.sealed_pieces {
            if pieces == 0 {
                return RawUsage::default();
            }
            let content = pieces.saturating_sub(SEALED_FRAMING_PIECES);
            return RawUsage {
                prompt: self.prompt_estimate,
                completion: content,
                ..RawUsage::default()
            };
        }
        match &self.counter {
            Some(c) => delivered_usage(c.current(), c.completion_chunks(), self.prompt_estimate),
            None => RawUsage::default(),
        }
    }

    /// [`RelayMeter::delivered`] in adjusted tokens, as the worker adjusts its usage.
    pub fn delivered_tokens(&self, coefficient: u64, m: &PriceMultipliers) -> u64 {
        adjust(self.delivered(), coefficient, m).total
    }
}

/// What an answer delivered, from what the proxy relayed of it: the engine's usage when the
/// relayed body carried any (`seen`; its completion count at least the content chunks), else
/// the prompt estimate plus one completion token per content-carrying chunk, and nothing when
/// no content was relayed at all (an answer cut before its first token costs nothing).
pub fn delivered_usage(seen: RawUsage, content_chunks: u64, prompt_estimate: u64) -> RawUsage {
    if seen.total() > 0 {
        return RawUsage {
            completion: seen.completion.max(content_chunks),
            ..seen
        };
    }
    if content_chunks == 0 {
        return RawUsage::default();
    }
    RawUsage {
        prompt: prompt_estimate,
        completion: content_chunks,
        ..RawUsage::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
