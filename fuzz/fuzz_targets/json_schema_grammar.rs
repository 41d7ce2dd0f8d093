//! The JSON Schema → GBNF converter over arbitrary JSON: it never panics, and whatever grammar
//! it makes stays within its bounds and starts with the `root` rule.
#![no_main]

use cocoon_engine::grammar::{schema_to_grammar, MAX_GRAMMAR_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(g) = schema_to_grammar(&schema) {
        assert!(g.len() <= MAX_GRAMMAR_BYTES);
        assert!(g.starts_with("root ::= "));
    }
});
