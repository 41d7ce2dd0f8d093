//! `usage.cost` in an answer: the charge of a request in TON (a decimal string, e.g.
//! `"0.000042"`) and in nanoTON (`usage.cost_nanoton`, an integer), beside Cocoon's own cost
//! fields, in a non-streamed body and in the streamed chunk that carries usage.
//!
//! The figure is Cocoon's `usage.total_cost` (nanoTON), which the worker writes from the
//! root's price, its coefficient and the root's multipliers — what the proxy charges for the
//! usage the worker reports (a sealed request's receipt, checked by `crate::receipts`, holds the
//! proxy to it). The client adds them to what it gives the app. An answer without `total_cost` (an engine that reports no usage) gets nothing.
//!
//! Only events and documents that mention `"total_cost"` are parsed and re-serialised; every
//! other byte passes through untouched. Nothing here does I/O or logs; the bytes come from a
//! worker, so nothing here panics on any input (fuzz target `responses_bridge`).

use bytes::Bytes;
use serde_json::Value;

/// How an answer's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document (a non-streamed answer).
    Json,
    /// Server-sent events, one `data:` line per event.
    Sse,
    /// JSON lines (a streamed answer that is not SSE).
    JsonLines,
}

/// `data` with `usage.cost` and `usage.cost_nanoton` added wherever `usage.total_cost` is, and
/// the largest `total_cost` seen (the request's charge, for accounting). Unchanged when there
/// is nothing to add or it does not parse.
pub fn annotate(data: &Bytes, framing: Framing) -> (Bytes, Option<u64>) {
    if !mentions_total_cost(data) {
        return (data.clone(), None);
    }
    let mut seen = None;
    let mut note = |n: u64| seen = Some(seen.map_or(n, |s: u64| s.max(n)));
    let out = match framing {
        Framing::Json => {
            let end = data.trim_ascii_end().len();
            match rewrite_json(&data[..end]) {
                Some((mut json, n)) => {
                    note(n);
                    json.extend_from_slice(&data[end..]);
                    Bytes::from(json)
                }
                None => data.clone(),
            }
        }
        Framing::Sse => rewrite_units(data, b"\n\n", &mut note, |event| {
            let text = std::str::from_utf8(event).ok()?;
            let mut lines = text.lines().filter(|l| !l.is_empty());
            let line = lines.next()?;
            if lines.next().is_some() {
                return None;
            }
            let json = line.strip_prefix("data:")?;
            let json = json.strip_prefix(' ').unwrap_or(json);
            let (out, n) = rewrite_json(json.as_bytes())?;
            let mut event = b"data: ".to_vec();
            event.extend_from_slice(&out);
            Some((event, n))
        }),
        Framing::JsonLines => rewrite_units(data, b"\n", &mut note, |line| {
            let line = line.trim_ascii();
            if line.is_empty() {
                return None;
            }
            rewrite_json(line)
        }),
    };
    (out, seen)
}

/// `usage.cost` for `nanoton`: TON as a decimal string without trailing zeros ("1.5", "2",
/// "0.000000001").
pub fn ton_string(nanoton: u64) -> String {
    const NANO: u64 = 1_000_000_000;
    let (i, f) = (nanoton / NANO, nanoton % NANO);
    if f == 0 {
        i.to_string()
    } else {
        format!("{i}.{}", format!("{f:09}").trim_end_matches('0'))
    }
}

fn mentions_total_cost(b: &[u8]) -> bool {
    b.windows(12).any(|w| w == b"\"total_cost\"")
}

/// Splits `data` on `sep`, rewrites each unit `f` accepts, keeps separators and the rest as
/// they were.
fn rewrite_units(
    data: &Bytes,
    sep: &[u8],
    note: &mut impl FnMut(u64),
    f: impl Fn(&[u8]) -> Option<(Vec<u8>, u64)>,
) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut rest: &[u8] = data;
    let mut changed = false;
    while !rest.is_empty() {
        let (unit, tail) = match rest.windows(sep.len()).position(|w| w == sep) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, &rest[rest.len()..]),
        };
        match mentions_total_cost(unit).then(|| f(unit)).flatten() {
            Some((new, n)) => {
                note(n);
                changed = true;
                out.extend_from_slice(&new);
            }
            None => out.extend_from_slice(unit),
        }
        let take = tail.len().min(sep.len());
        out.extend_from_slice(&tail[..take]);
        rest = &tail[take..];
    }
    if changed {
        Bytes::from(out)
    } else {
        data.clone()
    }
}

/// One JSON object with `usage.total_cost`: re-serialised with the cost fields added.
fn rewrite_json(json: &[u8]) -> Option<(Vec<u8>, u64)> {
    let mut value: Value = serde_json::from_slice(json).ok()?;
    let usage = value.get_mut("usage")?.as_object_mut()?;
    let nanoton = usage.get("total_cost")?.as_u64()?;
    usage.insert("cost".into(), Value::String(ton_string(nanoton)));
    usage.insert("cost_nanoton".into(), nanoton.into());
    Some((serde_json::to_vec(&value).ok()?, nanoton))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_of(json: &[u8]) -> Value {
        serde_json::from_slice::<Value>(json).unwrap()["usage"].clone()
    }

    #[test]
    fn a_whole_body_gets_its_cost_in_ton_and_nanoton() {
        let body = Bytes::from_static(
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"total_cost":42000}}
"#,
        );
        let (out, n) = annotate(&body, Framing::Json);
        assert_eq!(n, Some(42_000));
        assert!(out.ends_with(b"}\n"), "trailing newline kept");
        let u = usage_of(&out);
        assert_eq!(u["cost"], "0.000042");
        assert_eq!(u["cost_nanoton"], 42_000);
        assert_eq!(u["total_cost"], 42_000, "Cocoon's own field stays");
    }

    #[test]
    fn only_the_usage_event_of_a_stream_is_rewritten() {
        let chunk = Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
              data: {\"choices\":[],\"usage\":{\"total_tokens\":9,\"total_cost\":2000000000}}\n\n\
              data: [DONE]\n\n",
        );
        let (out, n) = annotate(&chunk, Framing::Sse);
        assert_eq!(n, Some(2_000_000_000));
        let text = std::str::from_utf8(&out).unwrap();
        let events: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(
            events[0],
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}"
        );
        let usage = usage_of(events[1].strip_prefix("data: ").unwrap().as_bytes());
        assert_eq!(usage["cost"], "2");
        assert_eq!(usage["cost_nanoton"], 2_000_000_000u64);
        assert_eq!(events[2], "data: [DONE]");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn json_lines_and_bodies_without_cost_pass_unchanged() {
        let lines = Bytes::from_static(b"{\"a\":1}\n{\"usage\":{\"total_cost\":5}}\n");
        let (out, n) = annotate(&lines, Framing::JsonLines);
        assert_eq!(n, Some(5));
        let last = out.split(|b| *b == b'\n').nth(1).unwrap();
        assert_eq!(usage_of(last)["cost"], "0.000000005");
        assert!(out.starts_with(b"{\"a\":1}\n"));

        for (body, framing) in [
            (&b"{\"usage\":{\"total_tokens\":3}}"[..], Framing::Json),
            (b"data: {\"x\":1}\n\n", Framing::Sse),
            (b"{\"total_cost\": not json", Framing::Json),
            (b"data: {\"usage\":{\"total_cost\":-1}}\n\n", Framing::Sse),
        ] {
            let body = Bytes::copy_from_slice(body);
            let (out, n) = annotate(&body, framing);
            assert_eq!(out, body);
            assert_eq!(n, None);
        }
    }
}
