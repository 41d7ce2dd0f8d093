//! The Telegram Desktop export reader and the transcript/chunking over arbitrary bytes: never
//! panics; chunks stay within their limit.
#![no_main]

use cocoon_summarize::{chunks, parse_export, transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chat in [None, Some("x")] {
        if let Ok(c) = parse_export(data, chat) {
            let lines = transcript(&c.messages, Some(0));
            let max = 1 + data.len() % 300;
            for chunk in chunks(&lines, max, "\n") {
                assert!(chunk.chars().count() <= max);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cocoon_summarize::export::parse_date(s);
    }
});
