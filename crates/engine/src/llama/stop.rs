//! Turning generated token bytes into text deltas: UTF-8 reassembly and stop sequences.
//!
//! Token pieces are bytes (byte-level BPE can split a character over tokens), so [`Utf8Buf`]
//! holds back an incomplete trailing character. [`StopMatcher`] holds back text that could be
//! the start of a stop sequence, so a stop sequence is never streamed, even partially, and the
//! text before it is. Pure string handling; no llama.cpp here.

/// Reassembles UTF-8 from byte pieces.
#[derive(Debug, Default)]
pub(crate) struct Utf8Buf {
    pending: Vec<u8>,
}

impl Utf8Buf {
    /// Adds bytes; returns the text that is complete so far. Invalid bytes become U+FFFD.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: keep it for the next piece.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream. Invalid bytes already became U+FFFD in [`Utf8Buf::push`], so what is
    /// left can only be a character cut off by the end of generation (e.g. at `max_tokens`):
    /// it is dropped rather than shown as U+FFFD. Usage still counts its tokens.
    pub(crate) fn finish(&mut self) -> String {
        self.pending.clear();
        String::new()
    }
}

/// What [`StopMatcher::push`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Text safe to send now.
    pub emit: String,
    /// A stop sequence was found: generation ends; nothing after `emit` is sent.
    pub stopped: bool,
}

/// Finds stop sequences in streamed text.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds generated text.
    pub(crate) fn push(&mut self, text: &str) -> Step {
        if self.stops.is_empty() {
            return Step {
                emit: text.to_owned(),
                stopped: false,
            };
        }
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return Step {
                emit,
                stopped: true,
            };
        }
        // Keep the longest tail that is a prefix of some stop sequence.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let emit = self.held[..keep].to_owned();
        self.held.drain(..keep);
        Step {
            emit,
            stopped: false,
        }
    }

    /// Ends the stream without a stop: releases the held text.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| (*s).to_owned()).collect());
        let mut out = String::new();
        for p in pieces {
            let s = m.push(p);
            out.push_str(&s.emit);
            if s.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_over_pieces_is_not_emitted() {
        assert_eq!(
            run(&["END"], &["ab", "cE", "N", "Dxyz"]),
            ("abc".into(), true)
        );
        assert_eq!(run(&["END"], &["abEN", "x"]), ("abENx".into(), false));
        assert_eq!(
            run(&["\n\n", "###"], &["a\n", "#", "##"]),
            ("a\n".into(), true)
        );
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn earliest_stop_wins() {
        assert_eq!(run(&["c", "ab"], &["xabc"]), ("x".into(), true));
    }

    #[test]
    fn utf8_split_over_pieces() {
        let mut b = Utf8Buf::default();
        let e = "é".as_bytes();
        assert_eq!(b.push(&[b'a', e[0]]), "a");
        assert_eq!(b.push(&[e[1], b'b']), "éb");
        assert_eq!(b.push(&[0xff, b'c']), "\u{fffd}c");
        assert_eq!(b.push(&[e[0]]), "");
        // A character cut off at the end is dropped, not shown as U+FFFD.
        assert_eq!(b.finish(), "");
    }

    proptest! {
        #[test]
        fn matches_whole_text_search(text in "[ab\n]{0,40}", cuts in prop::collection::vec(0usize..40, 0..8), stop in "[ab\n]{1,3}") {
            let mut idx: Vec<usize> = cuts.into_iter().filter(|c| *c < text.len()).collect();
            idx.sort_unstable();
            idx.dedup();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in idx { pieces.push(&text[last..c]); last = c; }
            pieces.push(&text[last..]);
            let (out, stopped) = run(&[stop.as_str()], &pieces);
            match text.find(stop.as_str()) {
                Some(at) => { prop_assert!(stopped); prop_assert_eq!(out, &text[..at]); }
                None => { prop_assert!(!stopped); prop_assert_eq!(out, text); }
            }
        }
    }
}
