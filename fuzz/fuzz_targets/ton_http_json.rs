//! The TON HTTP API v2 JSON that `cocoon_ton::http::HttpChain` reads from a (possibly hostile)
//! API server, and the request JSON the local chain's server reads from anyone: every
//! `cocoon_ton::wire` parser over whatever JSON the bytes are. Never panics.
#![no_main]

use cocoon_ton::{wire, TonAddress};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The server side: the whole body; serde_json's own recursion limit bounds nesting.
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // The client reads `result` out of `{"ok":true,"result":...}`; try both the body and it.
    for doc in [&v, v.get("result").unwrap_or(&Value::Null)] {
        let _ = wire::run_result_from_json(doc);
        let _ = wire::account_from_json(doc);
        let _ = wire::tx_from_json(doc);
        if let Some(txs) = doc.as_array() {
            for t in txs.iter().take(100) {
                let _ = wire::tx_from_json(t);
            }
        }
        let _ = wire::stack_from_request(doc.get("stack").unwrap_or(doc));
        if let Some(s) = doc.as_str() {
            let _ = wire::parse_int(s);
            // getTransactions' `hash` query parameter (hex or base64).
            let _ = wire::parse_tx_hash(s);
        }
        // The local chain's `address` fields and query parameters.
        if let Some(a) = doc.get("address").and_then(Value::as_str) {
            let _ = a.parse::<TonAddress>();
        }
    }
});
