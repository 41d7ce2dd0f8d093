//! The SSE parser and the usage counter over an engine's arbitrary response bytes.
#![no_main]

use cocoon_engine::sse::SseParser;
use cocoon_engine::usage::{BodyKind, UsageCounter, UsageLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parser = SseParser::new(4096);
    for chunk in data.chunks(7) {
        let _ = parser.push(chunk);
    }
    let _ = parser.finish();
    for kind in [BodyKind::Sse, BodyKind::Json, BodyKind::JsonLines] {
        let mut counter = UsageCounter::new(kind, UsageLimits::default());
        for chunk in data.chunks(5) {
            counter.observe(chunk);
        }
        let _ = counter.finish();
    }
});
