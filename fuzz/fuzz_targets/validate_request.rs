//! The OpenAI request whitelist over arbitrary request bodies; whatever passes validates again
//! unchanged (the rewrite is idempotent).
#![no_main]

use cocoon_engine::validate::{validate_request, ValidationLimits};
use cocoon_engine::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ValidationLimits::default();
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions] {
        if let Ok(v) = validate_request(endpoint, data, Some(1000), &limits) {
            let again = validate_request(endpoint, &v.body, Some(1000), &limits)
                .expect("valid stays valid");
            assert_eq!(again.body, v.body);
        }
    }
});
