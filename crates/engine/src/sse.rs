//! Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation").
//!
//! Bytes go in as they arrive, split anywhere (inside a UTF-8 sequence, between `\r` and `\n`);
//! complete events come out. Lines end with `\n`, `\r\n` or `\r`; `:` starts a comment; `data:`
//! lines accumulate (joined by `\n`); `event:`, `id:` and `retry:` fields are kept; a blank line
//! dispatches the event; a leading UTF-8 BOM is skipped; invalid UTF-8 is replaced (U+FFFD), as
//! browsers do. Only bytes are buffered, and both the current line and the current event are
//! capped, so memory stays bounded whatever the peer sends.
//!
//! Errors are not fatal: after [`SseError::LineTooLong`] or [`SseError::EventTooLarge`] the
//! offending event is dropped and parsing resumes after the next blank line. Callers that
//! forward a stream (the usage counter) keep going; strict callers (the bench) stop.
//!
//! One deliberate deviation: [`SseParser::finish`] dispatches a final event that lacks its
//! closing blank line (the spec drops it). For accounting, a usage chunk whose trailing `\n\n`
//! was lost must still count.
//!
//! This module only splits events; it does not interpret `data` (see [`crate::usage`]).

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (`None` means the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (no trailing newline).
    pub data: String,
    /// The last event id seen on the stream so far (ids persist across events, per the spec).
    pub id: Option<String>,
    /// A `retry:` value (milliseconds) given in this event's block.
    pub retry: Option<u64>,
}

/// A bound was exceeded; the offending event is dropped and parsing continues.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A single line was longer than the line cap.
    #[error("SSE line longer than {limit} bytes")]
    LineTooLong {
        /// The cap.
        limit: usize,
    },
    /// An event's accumulated data was larger than the event cap.
    #[error("SSE event larger than {limit} bytes")]
    EventTooLarge {
        /// The cap.
        limit: usize,
    },
}

/// Incremental SSE parser; see the module docs.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    max_event: usize,
    /// The current, unterminated line.
    line: Vec<u8>,
    /// The current line exceeded the cap: drop bytes until its end.
    skipping_line: bool,
    /// The current event exceeded a cap: drop lines until the next blank line.
    discarding_event: bool,
    /// The previous byte was `\r`; a `\n` right after it belongs to the same line end.
    after_cr: bool,
    /// No line has been completed yet (the BOM may only appear there).
    first_line: bool,
    data: String,
    has_data: bool,
    event_type: String,
    last_id: Option<String>,
    retry: Option<u64>,
}

// === impl SseParser ===

impl SseParser {
    /// A parser whose lines and events are each capped at `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self::with_limits(max_line, max_line)
    }

    /// A parser with separate caps for one line and for one event's accumulated data.
    pub fn with_limits(max_line: usize, max_event: usize) -> Self {
        Self {
            max_line,
            max_event,
            line: Vec::new(),
            skipping_line: false,
            discarding_event: false,
            after_cr: false,
            first_line: true,
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_id: None,
            retry: None,
        }
    }

    /// Feeds `chunk`; returns the events completed so far. On error, events completed in this
    /// same chunk are dropped too; use [`SseParser::feed`] to keep them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        self.feed(chunk, |e| out.push(e))?;
        Ok(out)
    }

    /// Feeds `chunk`, calling `on_event` for each completed event. The whole chunk is always
    /// processed; the first bound exceeded in it (if any) is returned at the end.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent),
    ) -> Result<(), SseError> {
        let mut first_err = None;
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.append(rest, &mut first_err);
                    break;
                }
                Some(p) => {
                    self.append(&rest[..p], &mut first_err);
                    self.after_cr = rest[p] == b'\r';
                    self.end_line(&mut on_event, &mut first_err);
                    rest = &rest[p + 1..];
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Ends the stream: a final unterminated line is taken as complete and a pending event is
    /// dispatched even without its blank line (see the module docs). Resets the parser.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut err = None;
        let mut out = None;
        if !self.line.is_empty() || self.skipping_line {
            self.end_line(&mut |e| out = Some(e), &mut err);
        }
        if out.is_none() {
            // Acts as the missing blank line.
            self.end_line(&mut |e| out = Some(e), &mut err);
        }
        *self = Self::with_limits(self.max_line, self.max_event);
        out
    }

    /// Bytes currently buffered (partial line plus pending event); bounded by the caps.
    pub fn buffered_len(&self) -> usize {
        self.line.len()
            + self.data.len()
            + self.event_type.len()
            + self.last_id.as_ref().map_or(0, String::len)
    }

    fn append(&mut self, bytes: &[u8], err: &mut Option<SseError>) {
        if self.skipping_line || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > self.max_line {
            self.line = Vec::new();
            self.skipping_line = true;
            self.drop_event();
            err.get_or_insert(SseError::LineTooLong {
                limit: self.max_line,
            });
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn drop_event(&mut self) {
        self.discarding_event = true;
        self.data = String::new();
        self.has_data = false;
        self.event_type = String::new();
        self.retry = None;
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent), err: &mut Option<SseError>) {
        if self.skipping_line {
            self.skipping_line = false;
            self.first_line = false;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if self.first_line {
            self.first_line = false;
            if line.starts_with(BOM) {
                line.drain(..BOM.len());
            }
        }
        self.process_line(&line, on_event, err);
        // Keep the allocation for the next line unless it grew large.
        if line.capacity() <= 4096 {
            line.clear();
            self.line = line;
        }
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEvent),
        err: &mut Option<SseError>,
    ) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if self.discarding_event || line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len() + value.len() + 1 + self.event_type.len() > self.max_event {
                    self.drop_event();
                    err.get_or_insert(SseError::EventTooLarge {
                        limit: self.max_event,
                    });
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            // An id containing NUL is ignored (spec); an empty one resets it.
            b"id" if !value.contains(&0) => {
                self.last_id =
                    (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
            }
            // Only ASCII digits; overlong digit strings do not parse and are ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse::<u64>() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        if self.discarding_event {
            self.drop_event();
            self.discarding_event = false;
            return;
        }
        let event_type = std::mem::take(&mut self.event_type);
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        self.has_data = false;
        data.pop(); // the trailing '\n' added after the last data line
        on_event(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data,
            id: self.last_id.clone(),
            retry,
        });
    }
}

#[cfg(test)]
mod tests;
