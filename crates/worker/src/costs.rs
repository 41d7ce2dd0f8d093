//! Adds Cocoon's cost fields (`usage.prompt_total_cost`, `usage.completion_total_cost`,
//! `usage.total_cost`, in nanoTON) to every JSON object of a response that carries `usage`,
//! without holding back anything else.
//!
//! Streamed bodies (SSE, JSON lines) pass through event by event: an event without usage is
//! forwarded byte for byte the moment its terminating blank line (SSE) or newline (JSON lines)
//! arrives; only usage-carrying events are re-serialised. A non-streamed JSON body is buffered
//! (bounded) and rewritten once, because it is a single object anyway. Whatever cannot be
//! parsed is forwarded unchanged. Counting tokens is not done here (see `cocoon_engine::usage`).
//!
//! For an encrypted request ([`CostAnnotator::sealing`]) every unit is then sealed to the app
//! (`crate::field_encryption`); nothing is ever forwarded in clear, so a unit too large to hold back ends
//! the answer instead of passing through ([`CostAnnotator::sealing_failed`]).

use bytes::{Bytes, BytesMut};
use cocoon_engine::pricing::{adjust, cost, PriceMultipliers};
use cocoon_engine::usage::{BodyKind, RawUsage};
use serde_json::Value;

/// Pricing inputs for the cost fields.
#[derive(Clone, Debug)]
pub struct CostPricing {
    pub coefficient: u64,
    pub multipliers: PriceMultipliers,
    pub price_per_token: u64,
}

/// Streaming rewriter; feed engine chunks, forward what it returns.
#[derive(Debug)]
pub struct CostAnnotator {
    kind: BodyKind,
    pricing: CostPricing,
    pending: BytesMut,
    max_buffer: usize,
    overflowed: bool,
    /// Encrypted request: seals every unit before it is forwarded.
    sealer: Option<crate::field_encryption::Sealer>,
    /// Sealing mode met a unit over `max_buffer`: it and the rest were dropped.
    sealing_failed: bool,
}

impl CostAnnotator {
    /// `max_buffer` bounds the bytes held back: one SSE event or JSON line, or the whole
    /// non-streamed body. Past it, bytes are forwarded unchanged.
    pub fn new(kind: BodyKind, pricing: CostPricing, max_buffer: usize) -> Self {
        Self {
            kind,
            pricing,
            pending: BytesMut::new(),
            max_buffer,
            overflowed: false,
            sealer: None,
            sealing_failed: false,
        }
    }

    /// Seals every unit with `sealer` (an encrypted request's answer).
    pub fn sealing(mut self, sealer: crate::field_encryption::Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Whether sealing gave up on an oversized unit (the answer is incomplete).
    pub fn sealing_failed(&self) -> bool {
        self.sealing_failed
    }

    /// Units of a sealed answer dropped because they were not JSON values.
    pub fn sealing_dropped(&self) -> u64 {
        self.sealer.as_ref().map_or(0, |s| s.dropped())
    }

    /// `unit` as it leaves: sealed when sealing, else unchanged.
    fn seal(&mut self, unit: Bytes) -> Bytes {
        match self.sealer.as_mut() {
            Some(s) if !unit.is_empty() => s.seal_unit(self.kind, &unit),
            _ => unit,
        }
    }

    /// Takes a chunk from the engine; returns the bytes ready to forward now.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.overflowed {
            if self.sealer.is_some() {
                return Bytes::new();
            }
            return Bytes::copy_from_slice(chunk);
        }
        self.pending.extend_from_slice(chunk);
        let out = match self.kind {
            BodyKind::Json => BytesMut::new(),
            BodyKind::Sse => self.drain_complete(sse_event_end),
            BodyKind::JsonLines => self.drain_complete(line_end),
        };
        if self.pending.len() > self.max_buffer {
            self.overflowed = true;
            if self.sealer.is_some() {
                // Never in clear: drop it, and the answer fails.
                self.sealing_failed = true;
                self.pending.clear();
                return out.freeze();
            }
            // Too large to hold back: give up annotating, forward everything unchanged.
            let mut out = out;
            out.extend_from_slice(&self.pending.split());
            return out.freeze();
        }
        out.freeze()
    }

    /// The end of the body: returns whatever is still held back.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split().freeze();
        if self.overflowed || rest.is_empty() {
            return rest;
        }
        let annotated = match self.kind {
            BodyKind::Json => annotate_json_text(&rest, &self.pricing).unwrap_or(rest),
            BodyKind::Sse => annotate_sse_event(&rest, &self.pricing).unwrap_or(rest),
            BodyKind::JsonLines => annotate_json_text(&rest, &self.pricing).unwrap_or(rest),
        };
        self.seal(annotated)
    }

    fn drain_complete(&mut self, find_end: fn(&[u8]) -> Option<usize>) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(end) = find_end(&self.pending) {
            let unit = self.pending.split_to(end).freeze();
            let rewritten = match self.kind {
                BodyKind::Sse => annotate_sse_event(&unit, &self.pricing),
                _ => annotate_json_text(&unit, &self.pricing),
            };
            let unit = self.seal(rewritten.unwrap_or(unit));
            out.extend_from_slice(&unit);
        }
        out
    }
}

/// End (exclusive) of the first complete SSE event, including its blank line.
fn sse_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
}

fn mentions_usage(b: &[u8]) -> bool {
    b.windows(7).any(|w| w == b"\"usage\"")
}

/// Rewrites one SSE event if its data is a JSON object with a usage object.
fn annotate_sse_event(event: &[u8], pricing: &CostPricing) -> Option<Bytes> {
    if !mentions_usage(event) {
        return None;
    }
    let text = std::str::from_utf8(event).ok()?;
    // Only the simple, overwhelmingly common shape: a single `data:` line.
    let mut data = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            if data.is_some() {
                return None;
            }
            data = Some(rest.strip_prefix(' ').unwrap_or(rest));
        } else if !line.is_empty() {
            return None;
        }
    }
    let mut value: Value = serde_json::from_str(data?).ok()?;
    if !add_costs(&mut value, pricing) {
        return None;
    }
    let json = serde_json::to_string(&value).ok()?;
    Some(Bytes::from(format!("data: {json}\n\n")))
}

/// Rewrites a JSON text (a whole body, or one line with its newline) carrying usage.
fn annotate_json_text(text: &[u8], pricing: &CostPricing) -> Option<Bytes> {
    if !mentions_usage(text) {
        return None;
    }
    let trimmed_len = text.trim_ascii_end().len();
    let trailer = &text[trimmed_len..];
    let mut value: Value = serde_json::from_slice(&text[..trimmed_len]).ok()?;
    if !add_costs(&mut value, pricing) {
        return None;
    }
    let mut out = serde_json::to_vec(&value).ok()?;
    out.extend_from_slice(trailer);
    Some(Bytes::from(out))
}

/// Adds the three cost fields to `value.usage`; false when there is no usage object.
fn add_costs(value: &mut Value, pricing: &CostPricing) -> bool {
    let Some(raw) = value
        .get("usage")
        .filter(|u| u.is_object())
        .map(RawUsage::from_usage_json)
    else {
        return false;
    };
    let adjusted = adjust(raw, pricing.coefficient, &pricing.multipliers);
    let prompt_cost = cost(adjusted.prompt + adjusted.cached, pricing.price_per_token);
    let completion_cost = cost(
        adjusted.completion + adjusted.reasoning,
        pricing.price_per_token,
    );
    let Some(usage) = value.get_mut("usage").and_then(Value::as_object_mut) else {
        return false;
    };
    usage.insert("prompt_total_cost".into(), prompt_cost.into());
    usage.insert("completion_total_cost".into(), completion_cost.into());
    usage.insert(
        "total_cost".into(),
        prompt_cost.saturating_add(completion_cost).into(),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing() -> CostPricing {
        CostPricing {
            coefficient: 1000,
            multipliers: PriceMultipliers::default(),
            price_per_token: 2,
        }
    }

    #[test]
    fn sse_passes_events_through_and_annotates_usage() {
        let mut a = CostAnnotator::new(BodyKind::Sse, pricing(), 1 << 20);
        let first = a.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\nda");
        assert_eq!(
            &first[..],
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
        );
        let second = a.push(
            b"ta: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n",
        );
        let text = std::str::from_utf8(&second).expect("utf8");
        assert!(text.starts_with("data: {"), "{text}");
        assert!(text.ends_with("\n\n"), "{text}");
        let v: Value =
            serde_json::from_str(text.trim().trim_start_matches("data: ")).expect("json");
        assert_eq!(v["usage"]["prompt_total_cost"], 6);
        assert_eq!(v["usage"]["completion_total_cost"], 10);
        assert_eq!(v["usage"]["total_cost"], 16);
        assert_eq!(&a.push(b"data: [DONE]\n\n")[..], b"data: [DONE]\n\n");
        assert!(a.finish().is_empty());
    }

    #[test]
    fn json_body_is_annotated_at_the_end() {
        let mut a = CostAnnotator::new(BodyKind::Json, pricing(), 1 << 20);
        assert!(a.push(b"{\"usage\":{\"prompt_tokens\":1,").is_empty());
        assert!(a.push(b"\"completion_tokens\":1}}").is_empty());
        let out = a.finish();
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["usage"]["total_cost"], 4);
    }

    #[test]
    fn unparseable_or_oversized_bodies_pass_unchanged() {
        let mut a = CostAnnotator::new(BodyKind::Json, pricing(), 8);
        let out = a.push(b"{\"usage\": not json at all");
        assert_eq!(&out[..], b"{\"usage\": not json at all");
        let mut b = CostAnnotator::new(BodyKind::Json, pricing(), 1024);
        b.push(b"{\"usage\": broken");
        assert_eq!(&b.finish()[..], b"{\"usage\": broken");
    }
}
