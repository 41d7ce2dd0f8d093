//! Splits a byte stream of concatenated JSON values (one JSON body, NDJSON, or values glued
//! together) into complete top-level values, incrementally and in O(n) total.
//!
//! Cocoon re-parsed its whole buffer from the start on every chunk; here a small structural
//! scanner (depth, strings, escapes) finds where each value ends, so each byte is looked at once
//! and only the current value is buffered, up to a cap. A value over the cap is not buffered,
//! but the scanner still follows it to its end and keeps just its top-level `"usage"` member
//! (itself capped), so a huge non-streamed answer is still billed. The scanner does not check
//! JSON validity: the caller parses each complete value with serde_json.

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A complete top-level object or array within the size cap.
    Value(&'a [u8]),
    /// A complete top-level object over the size cap; only its top-level `usage` member's bytes
    /// (if present and within their own cap) were kept.
    Oversized { usage: Option<&'a [u8]> },
    /// A top-level scalar, stray bracket, or other bytes that cannot start a value.
    Junk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Between,
    Container,
    TopString,
    Scalar,
}

/// Where the scanner is inside a top-level object's member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    ExpectKey,
    InKey,
    ExpectColon,
    InValue,
}

const USAGE_KEY: &[u8] = b"usage";
/// Keys longer than this cannot be `usage`; no need to keep their bytes.
const MAX_KEY: usize = 16;

#[derive(Debug)]
pub(crate) struct JsonSplitter {
    max_value: usize,
    max_usage: usize,
    state: State,
    depth: usize,
    in_string: bool,
    escape: bool,
    /// Bytes of the current value from earlier chunks (empty while `oversized`).
    buf: Vec<u8>,
    oversized: bool,
    top_is_object: bool,
    member: Member,
    key: Vec<u8>,
    capturing: bool,
    usage: Vec<u8>,
    usage_ok: bool,
}

// === impl JsonSplitter ===

impl JsonSplitter {
    pub(crate) fn new(max_value: usize, max_usage: usize) -> Self {
        Self {
            max_value,
            max_usage,
            state: State::Between,
            depth: 0,
            in_string: false,
            escape: false,
            buf: Vec::new(),
            oversized: false,
            top_is_object: false,
            member: Member::ExpectKey,
            key: Vec::new(),
            capturing: false,
            usage: Vec::new(),
            usage_ok: false,
        }
    }

    /// Bytes currently buffered; bounded by `max_value + max_usage + MAX_KEY`.
    pub(crate) fn buffered_len(&self) -> usize {
        self.buf.len() + self.usage.len() + self.key.len()
    }

    pub(crate) fn push(&mut self, chunk: &[u8], mut on_item: impl FnMut(Item<'_>)) {
        let mut i = 0;
        // Start of the current container value within this chunk.
        let mut start = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::Between => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    b'{' | b'[' => {
                        self.begin_container(b == b'{');
                        start = i;
                    }
                    b'"' => {
                        self.state = State::TopString;
                        self.escape = false;
                    }
                    b'}' | b']' => on_item(Item::Junk),
                    _ => self.state = State::Scalar,
                },
                State::TopString => {
                    if self.escape {
                        self.escape = false;
                    } else if b == b'\\' {
                        self.escape = true;
                    } else if b == b'"' {
                        self.state = State::Between;
                        on_item(Item::Junk);
                    }
                }
                State::Scalar => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => {
                        self.state = State::Between;
                        on_item(Item::Junk);
                    }
                    b'{' | b'[' | b'"' => {
                        self.state = State::Between;
                        on_item(Item::Junk);
                        continue; // re-read this byte as the start of a value
                    }
                    _ => {}
                },
                State::Container => {
                    if self.step_container(b) {
                        self.state = State::Between;
                        self.emit(&chunk[start..=i], &mut on_item);
                    }
                }
            }
            i += 1;
        }
        if self.state == State::Container {
            self.stash(&chunk[start..]);
        }
    }

    /// Ends the stream. Returns true if a value was cut off (an incomplete value is never
    /// emitted: usage from a truncated body is not trusted). A trailing scalar is reported as
    /// junk through `on_item`.
    pub(crate) fn finish(&mut self, mut on_item: impl FnMut(Item<'_>)) -> bool {
        let truncated = match self.state {
            State::Between => false,
            State::Scalar => {
                on_item(Item::Junk);
                false
            }
            State::TopString | State::Container => true,
        };
        *self = Self::new(self.max_value, self.max_usage);
        truncated
    }

    fn begin_container(&mut self, is_object: bool) {
        self.state = State::Container;
        self.depth = 1;
        self.in_string = false;
        self.escape = false;
        self.buf.clear();
        self.oversized = false;
        self.top_is_object = is_object;
        self.member = Member::ExpectKey;
        self.key.clear();
        self.capturing = false;
        self.usage.clear();
        self.usage_ok = false;
    }

    /// Advances over one byte inside a top-level container; true when the container closed.
    fn step_container(&mut self, b: u8) -> bool {
        let top_member = self.top_is_object && self.depth == 1;
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if top_member && self.member == Member::InKey {
                    self.member = Member::ExpectColon;
                    return false;
                }
            }
            if top_member && self.member == Member::InKey {
                if self.key.len() <= MAX_KEY {
                    self.key.push(b);
                }
                return false;
            }
            self.capture(b);
            return false;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if top_member && self.member == Member::ExpectKey {
                    self.member = Member::InKey;
                    self.key.clear();
                    return false;
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.end_capture();
                    return true;
                }
            }
            b':' if top_member && self.member == Member::ExpectColon => {
                self.member = Member::InValue;
                if self.key == USAGE_KEY {
                    self.capturing = true;
                    self.usage.clear();
                    self.usage_ok = true;
                }
                return false;
            }
            b',' if top_member => {
                self.end_capture();
                self.member = Member::ExpectKey;
                return false;
            }
            _ => {}
        }
        self.capture(b);
        false
    }

    fn capture(&mut self, b: u8) {
        if !self.capturing {
            return;
        }
        if self.usage.len() >= self.max_usage {
            self.usage = Vec::new();
            self.usage_ok = false;
            self.capturing = false;
            return;
        }
        self.usage.push(b);
    }

    fn end_capture(&mut self) {
        self.capturing = false;
    }

    /// Keeps the tail of an unfinished value for the next chunk, unless it is over the cap.
    fn stash(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        if self.buf.len() + bytes.len() > self.max_value {
            self.oversized = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn emit(&mut self, tail: &[u8], on_item: &mut impl FnMut(Item<'_>)) {
        if !self.oversized && self.buf.len() + tail.len() > self.max_value {
            self.oversized = true;
            self.buf = Vec::new();
        }
        if self.oversized {
            let usage = (self.top_is_object && self.usage_ok).then_some(self.usage.as_slice());
            on_item(Item::Oversized { usage });
        } else if self.buf.is_empty() {
            on_item(Item::Value(tail));
        } else {
            self.buf.extend_from_slice(tail);
            on_item(Item::Value(&self.buf));
        }
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        self.usage.clear();
        self.key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Value(String),
        Oversized(Option<String>),
        Junk,
    }

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, bool) {
        let mut s = JsonSplitter::new(max, 1024);
        let mut out = Vec::new();
        let mut on = |it: Item<'_>| {
            out.push(match it {
                Item::Value(v) => Owned::Value(String::from_utf8_lossy(v).into()),
                Item::Oversized { usage } => {
                    Owned::Oversized(usage.map(|u| String::from_utf8_lossy(u).into()))
                }
                Item::Junk => Owned::Junk,
            })
        };
        for c in chunks {
            s.push(c, &mut on);
        }
        let truncated = s.finish(&mut on);
        (out, truncated)
    }

    #[test]
    fn splits_concatenated_values() {
        let (items, truncated) = run(1024, &[b" {\"a\":\"}\\\"{\"}\n[1,[2]]{\"b\":{}} "]);
        assert!(!truncated);
        assert_eq!(
            items,
            [
                Owned::Value("{\"a\":\"}\\\"{\"}".into()),
                Owned::Value("[1,[2]]".into()),
                Owned::Value("{\"b\":{}}".into()),
            ]
        );
    }

    #[test]
    fn values_across_chunks() {
        let (items, _) = run(1024, &[b"{\"a\":", b"1}{", b"\"b\":2", b"}"]);
        assert_eq!(
            items,
            [
                Owned::Value("{\"a\":1}".into()),
                Owned::Value("{\"b\":2}".into())
            ]
        );
    }

    #[test]
    fn junk_and_truncation() {
        let (items, truncated) = run(1024, &[b"12 \"s\\\"x\" } true{\"a\":1}nul"]);
        assert_eq!(
            items,
            [
                Owned::Junk,
                Owned::Junk,
                Owned::Junk,
                Owned::Junk,
                Owned::Value("{\"a\":1}".into()),
                Owned::Junk,
            ]
        );
        assert!(!truncated);
        let (items, truncated) = run(1024, &[b"{\"a\":[1,2"]);
        assert!(items.is_empty());
        assert!(truncated);
    }

    #[test]
    fn oversized_keeps_top_level_usage() {
        let body = br#"{"choices":[{"text":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","usage":{"x":1}}],"usage":{"prompt_tokens":3,"completion_tokens":4},"z":"usage"}"#;
        for cut in 0..body.len() {
            let (items, _) = run(32, &[&body[..cut], &body[cut..]]);
            assert_eq!(
                items,
                [Owned::Oversized(Some(
                    r#"{"prompt_tokens":3,"completion_tokens":4}"#.into()
                ))],
                "cut {cut}"
            );
        }
        // Usage as the last member, and a scalar usage.
        let (items, _) = run(8, &[br#"{"a":"bbbbbbbbbbbb","usage": null }"#]);
        assert_eq!(items, [Owned::Oversized(Some(" null ".into()))]);
        // No usage member.
        let (items, _) = run(8, &[br#"{"a":"bbbbbbbbbbbb"}"#]);
        assert_eq!(items, [Owned::Oversized(None)]);
    }

    #[test]
    fn buffer_stays_bounded() {
        let mut s = JsonSplitter::new(100, 50);
        let big = vec![b'['; 10_000];
        s.push(&big, |_| {});
        assert!(s.buffered_len() <= 100 + 50 + MAX_KEY + 1);
        let mut s = JsonSplitter::new(100, 50);
        s.push(b"{\"usage\":\"", |_| {});
        s.push(&[b'x'; 10_000], |_| {});
        assert!(s.buffered_len() <= 100 + 50 + MAX_KEY + 1);
    }
}
