//! The transcription form validator (`cocoon_engine::multipart`) over arbitrary Content-Types
//! and bodies: the input's first line is the Content-Type, the rest the body. Nothing panics;
//! whatever passes re-checks to the same canonical bytes, and with the worker's rewrite too.
#![no_main]

use cocoon_engine::multipart::{parse_form, validate_multipart};
use cocoon_engine::validate::ValidationLimits;
use cocoon_engine::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ValidationLimits {
        max_body_bytes: 64 << 10,
        max_form_parts: 24,
        max_form_text_bytes: 4 << 10,
        ..ValidationLimits::default()
    };
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let content_type = std::str::from_utf8(head).ok();
    let endpoint = Endpoint::AudioTranscriptions;
    let Ok(v) = validate_multipart(endpoint, content_type, body, false, &limits) else {
        return;
    };
    let again = validate_multipart(endpoint, v.content_type.as_deref(), &v.body, false, &limits)
        .expect("valid stays valid");
    assert_eq!(again.body, v.body);
    assert_eq!(again.content_type, v.content_type);
    let worker = validate_multipart(endpoint, content_type, body, true, &limits)
        .expect("the worker's rewrite of a valid form");
    let form = parse_form(worker.content_type.as_deref(), &worker.body, &limits)
        .expect("the worker's form parses");
    assert_eq!(
        form.text("stream_include_usage").is_some(),
        worker.stream,
        "usage is asked for exactly when streaming"
    );
});
