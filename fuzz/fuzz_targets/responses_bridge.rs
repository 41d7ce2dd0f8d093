//! What the client does to a worker's answer on its way to the app: the Responses API bridge
//! (chat SSE → Responses events, a chat completion → a response object) and the `usage.cost`
//! rewriter, over arbitrary bytes in arbitrary chunks; and the request translation over
//! arbitrary JSON. None may panic, and the bridge's held bytes stay bounded.
#![no_main]

use bytes::Bytes;
use cocoon_engine::responses_api::{chat_to_response, to_chat, StreamBridge};
use cocoon_engine::usage_cost::{annotate, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b % 13) + 1);
    let mut bridge = StreamBridge::new(serde_json::Map::new());
    for chunk in data.chunks(split) {
        let _ = bridge.push(chunk);
    }
    let mut out = String::new();
    bridge.fail("end", &mut out);
    let bytes = Bytes::copy_from_slice(data);
    for framing in [Framing::Json, Framing::Sse, Framing::JsonLines] {
        let _ = annotate(&bytes, framing);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = to_chat(&v);
        let _ = chat_to_response(&v, &serde_json::Map::new());
    }
});
