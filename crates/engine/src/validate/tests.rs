//! Tests for request validation: reference request bodies, whitelist, ranges, rewrites, limits, and
//! property tests.

use super::*;
use proptest::prelude::*;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

fn chat(body: &str) -> Result<ValidatedRequest, ValidationError> {
    validate_request(
        Endpoint::ChatCompletions,
        body.as_bytes(),
        None,
        &ValidationLimits::default(),
    )
}

fn chat_cap(body: &str, cap: u64) -> Result<ValidatedRequest, ValidationError> {
    validate_request(
        Endpoint::ChatCompletions,
        body.as_bytes(),
        Some(cap),
        &ValidationLimits::default(),
    )
}

fn completion(body: &str) -> Result<ValidatedRequest, ValidationError> {
    validate_request(
        Endpoint::Completions,
        body.as_bytes(),
        None,
        &ValidationLimits::default(),
    )
}

fn body_json(v: &ValidatedRequest) -> serde_json::Value {
    serde_json::from_slice(&v.body).unwrap()
}

fn body_str(v: &ValidatedRequest) -> String {
    String::from_utf8(v.body.to_vec()).unwrap()
}

const MSG: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

#[test]
fn reference_req1_passes_unchanged() {
    let raw = std::fs::read(format!("{TESTDATA}/req1.request.json")).unwrap();
    let v = validate_request(
        Endpoint::ChatCompletions,
        &raw,
        None,
        &ValidationLimits::default(),
    )
    .unwrap();
    assert_eq!(v.model, "Qwen/Qwen3-8B");
    assert!(!v.stream);
    assert_eq!(v.max_tokens, Some(100));
    // Key order and values preserved byte for byte (the file has no trailing newline).
    assert_eq!(v.body.as_ref(), raw.as_slice());
}

#[test]
fn reference_req2_stream_gets_include_usage() {
    let raw = std::fs::read(format!("{TESTDATA}/req2.request.json")).unwrap();
    let v = validate_request(
        Endpoint::ChatCompletions,
        &raw,
        Some(1000),
        &ValidationLimits::default(),
    )
    .unwrap();
    assert!(v.stream);
    assert_eq!(v.max_tokens, Some(1000));
    assert_eq!(
        body_str(&v),
        r#"{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":1000}"#
    );
}

#[test]
fn reference_req4_unknown_field_named() {
    let raw = std::fs::read(format!("{TESTDATA}/req4.request.json")).unwrap();
    let e = validate_request(
        Endpoint::ChatCompletions,
        &raw,
        None,
        &ValidationLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_PARAMETER);
    assert_eq!(e.param.as_deref(), Some("foo"));
    assert!(e.message.contains("'foo'"));
}

#[test]
fn unknown_field_rejected_even_when_messages_valid() {
    let e = chat(&format!(r#"{{"model":"m",{MSG},"logit_bias":{{}}}}"#)).unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_PARAMETER);
    assert_eq!(e.param.as_deref(), Some("logit_bias"));
}

#[test]
fn duplicate_keys_rejected_top_and_nested() {
    let e = chat(&format!(r#"{{"model":"a",{MSG},"model":"b"}}"#)).unwrap_err();
    assert_eq!(e.code, codes::DUPLICATE_KEY);
    assert_eq!(e.param.as_deref(), Some("model"));

    let e = chat(r#"{"model":"a","messages":[{"role":"user","role":"system","content":"x"}]}"#)
        .unwrap_err();
    assert_eq!(e.code, codes::DUPLICATE_KEY);
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
}

#[test]
fn required_fields() {
    let e = chat(r#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::MISSING_PARAMETER, Some("model"))
    );
    let e = chat(r#"{"model":"m"}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::MISSING_PARAMETER, Some("messages"))
    );
    let e = chat(r#"{"model":null,"messages":[{"role":"user"}]}"#).unwrap_err();
    assert_eq!(e.code, codes::MISSING_PARAMETER);
    let e = chat(r#"{"model":"m","messages":[]}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_VALUE, Some("messages"))
    );
    let e = chat(r#"{"model":"","messages":[{"role":"user"}]}"#).unwrap_err();
    assert_eq!(e.code, codes::INVALID_VALUE);
    let e = chat(r#"{"model":5,"messages":[{"role":"user"}]}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_TYPE, Some("model"))
    );
    let e = chat(r#"{"model":"m","messages":[{"content":"x"}]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    let e = chat(r#"{"model":"m","messages":["x"]}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_TYPE, Some("messages[0]"))
    );
    let e = completion(r#"{"model":"m"}"#).unwrap_err();
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::MISSING_PARAMETER, Some("prompt"))
    );
}

#[test]
fn ranges_and_types() {
    let cases: &[(&str, &str, &str)] = &[
        (r#""temperature":2.5"#, "temperature", codes::INVALID_VALUE),
        (r#""temperature":-0.1"#, "temperature", codes::INVALID_VALUE),
        (r#""temperature":"hot""#, "temperature", codes::INVALID_TYPE),
        (r#""top_p":1.01"#, "top_p", codes::INVALID_VALUE),
        (
            r#""frequency_penalty":-2.5"#,
            "frequency_penalty",
            codes::INVALID_VALUE,
        ),
        (
            r#""presence_penalty":3"#,
            "presence_penalty",
            codes::INVALID_VALUE,
        ),
        (r#""n":0"#, "n", codes::INVALID_VALUE),
        (r#""n":2"#, "n", codes::UNSUPPORTED_VALUE),
        (r#""n":1.5"#, "n", codes::INVALID_TYPE),
        (r#""max_tokens":0"#, "max_tokens", codes::INVALID_VALUE),
        (r#""max_tokens":-3"#, "max_tokens", codes::INVALID_VALUE),
        (r#""max_tokens":10.0"#, "max_tokens", codes::INVALID_TYPE),
        (
            r#""max_completion_tokens":"5""#,
            "max_completion_tokens",
            codes::INVALID_TYPE,
        ),
        (r#""top_logprobs":21"#, "top_logprobs", codes::INVALID_VALUE),
        (r#""stream":"yes""#, "stream", codes::INVALID_TYPE),
        (
            r#""stream_options":{"foo":true}"#,
            "stream_options.foo",
            codes::UNKNOWN_PARAMETER,
        ),
        (
            r#""stream_options":{"include_usage":1}"#,
            "stream_options.include_usage",
            codes::INVALID_TYPE,
        ),
        (
            r#""chat_template_kwargs":{"x":true}"#,
            "chat_template_kwargs.x",
            codes::UNKNOWN_PARAMETER,
        ),
        (r#""stop":[1]"#, "stop[0]", codes::INVALID_TYPE),
        (r#""stop":5"#, "stop", codes::INVALID_TYPE),
        (r#""tools":{}"#, "tools", codes::INVALID_TYPE),
        (
            r#""tools":[{"function":{}}]"#,
            "tools[0].type",
            codes::MISSING_PARAMETER,
        ),
        (r#""tool_choice":1"#, "tool_choice", codes::INVALID_TYPE),
        (
            &format!(
                r#""tools":[{}]"#,
                vec![r#"{"type":"function"}"#; MAX_TOOLS + 1].join(",")
            ),
            "tools",
            codes::INVALID_VALUE,
        ),
        (r#""seed":1.5"#, "seed", codes::INVALID_TYPE),
        (r#""logprobs":1"#, "logprobs", codes::INVALID_TYPE),
        (r#""user":1"#, "user", codes::INVALID_TYPE),
        (r#""prediction":1"#, "prediction", codes::INVALID_TYPE),
    ];
    for (field, param, code) in cases {
        let e = chat(&format!(r#"{{"model":"m",{MSG},{field}}}"#))
            .err()
            .unwrap_or_else(|| panic!("{field} accepted"));
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some(*param), *code),
            "{field}"
        );
    }
    let too_many_stops = format!(r#""stop":[{}]"#, vec![r#""x""#; 17].join(","));
    assert!(chat(&format!(r#"{{"model":"m",{MSG},{too_many_stops}}}"#)).is_err());
}

#[test]
fn accepted_fields() {
    let ok = [
        r#""temperature":0"#,
        r#""temperature":2"#,
        r#""top_p":0.5"#,
        r#""frequency_penalty":-2"#,
        r#""n":1"#,
        r#""stop":"\n""#,
        r#""stop":["a","b"]"#,
        r#""tools":[{"type":"function","function":{"name":"f","parameters":{}}}]"#,
        r#""tool_choice":"auto""#,
        r#""tool_choice":{"type":"function","function":{"name":"f"}}"#,
        r#""seed":-5"#,
        r#""seed":18446744073709551615"#,
        r#""logprobs":true,"top_logprobs":5"#,
        r#""user":"u1""#,
        r#""response_format":{"type":"json_object"}"#,
        r#""reasoning_effort":"low","verbosity":"low""#,
        r#""chat_template_kwargs":{"enable_thinking":false}"#,
        r#""parallel_tool_calls":true"#,
        r#""prediction":{"type":"content","content":"x"}"#,
        r#""temperature":null,"stop":null,"n":null"#,
    ];
    for field in ok {
        chat(&format!(r#"{{"model":"m",{MSG},{field}}}"#))
            .unwrap_or_else(|e| panic!("{field} rejected: {e}"));
    }
}

#[test]
fn completions_fields() {
    let v = completion(
        r#"{"model":"m","prompt":"once","suffix":"end","echo":false,"best_of":1,"logprobs":2,"skip_special_tokens":true,"seed":1}"#,
    )
    .unwrap();
    assert_eq!(v.endpoint, Endpoint::Completions);
    assert!(!v.stream);
    completion(r#"{"model":"m","prompt":["a","b"]}"#).unwrap();
    completion(r#"{"model":"m","prompt":[1,2,3]}"#).unwrap();
    completion(r#"{"model":"m","prompt":[[1,2],[3]]}"#).unwrap();
    // Cocoon validated suffix as a bool; it is a string.
    let e = completion(r#"{"model":"m","prompt":"x","suffix":true}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("suffix"));
    let e = completion(r#"{"model":"m","prompt":[]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("prompt"));
    let e = completion(r#"{"model":"m","prompt":[{"a":1}]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("prompt"));
    let e = completion(r#"{"model":"m","prompt":"x","best_of":3}"#).unwrap_err();
    assert_eq!(e.code, codes::UNSUPPORTED_VALUE);
    let e = completion(r#"{"model":"m","prompt":"x","logprobs":6}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("logprobs"));
    // Chat-only fields are unknown on completions.
    let e = completion(r#"{"model":"m","prompt":"x","tools":[]}"#).unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_PARAMETER);
    let e = completion(r#"{"model":"m","prompt":"x","max_completion_tokens":5}"#).unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_PARAMETER);
}

#[test]
fn stream_rewrites() {
    // stream_options without stream -> stream:true, include_usage forced.
    let v = chat(&format!(
        r#"{{"model":"m",{MSG},"stream_options":{{"include_usage":false}}}}"#
    ))
    .unwrap();
    assert!(v.stream);
    let j = body_json(&v);
    assert_eq!(j["stream"], true);
    assert_eq!(j["stream_options"]["include_usage"], true);

    // stream:true keeps include_obfuscation and adds include_usage.
    let v = chat(&format!(
        r#"{{"model":"m",{MSG},"stream":true,"stream_options":{{"include_obfuscation":false}}}}"#
    ))
    .unwrap();
    assert_eq!(
        body_str(&v),
        format!(
            r#"{{"model":"m",{MSG},"stream":true,"stream_options":{{"include_obfuscation":false,"include_usage":true}}}}"#
        )
    );

    // stream:true with stream_options:null.
    let v = chat(&format!(
        r#"{{"model":"m",{MSG},"stream":true,"stream_options":null}}"#
    ))
    .unwrap();
    assert_eq!(body_json(&v)["stream_options"]["include_usage"], true);

    // stream:false untouched.
    let raw = format!(r#"{{"model":"m",{MSG},"stream":false}}"#);
    let v = chat(&raw).unwrap();
    assert!(!v.stream);
    assert_eq!(body_str(&v), raw);

    // stream:false with stream_options is contradictory.
    let e = chat(&format!(
        r#"{{"model":"m",{MSG},"stream":false,"stream_options":{{"include_usage":true}}}}"#
    ))
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("stream_options"));

    // Completions get the same rewrite.
    let v = validate_request(
        Endpoint::Completions,
        br#"{"model":"m","prompt":"x","stream":true}"#,
        None,
        &ValidationLimits::default(),
    )
    .unwrap();
    assert_eq!(body_json(&v)["stream_options"]["include_usage"], true);
}

#[test]
fn max_tokens_cap() {
    // Injected when absent.
    let v = chat_cap(&format!(r#"{{"model":"m",{MSG}}}"#), 50).unwrap();
    assert_eq!(v.max_tokens, Some(50));
    assert_eq!(body_json(&v)["max_tokens"], 50);
    // null counts as absent and is replaced in place.
    let v = chat_cap(&format!(r#"{{"model":"m","max_tokens":null,{MSG}}}"#), 50).unwrap();
    assert_eq!(
        body_str(&v),
        format!(r#"{{"model":"m","max_tokens":50,{MSG}}}"#)
    );
    // Clamped when above.
    let v = chat_cap(&format!(r#"{{"model":"m",{MSG},"max_tokens":5000}}"#), 50).unwrap();
    assert_eq!(v.max_tokens, Some(50));
    assert_eq!(body_json(&v)["max_tokens"], 50);
    // Kept when below.
    let v = chat_cap(&format!(r#"{{"model":"m",{MSG},"max_tokens":7}}"#), 50).unwrap();
    assert_eq!(v.max_tokens, Some(7));
    assert_eq!(body_json(&v)["max_tokens"], 7);
    // max_completion_tokens alone: clamped, max_tokens not injected.
    let v = chat_cap(
        &format!(r#"{{"model":"m",{MSG},"max_completion_tokens":900}}"#),
        50,
    )
    .unwrap();
    let j = body_json(&v);
    assert_eq!(j["max_completion_tokens"], 50);
    assert!(j.get("max_tokens").is_none());
    assert_eq!(v.max_tokens, Some(50));
    // Both: each clamped, effective = the larger.
    let v = chat_cap(
        &format!(r#"{{"model":"m",{MSG},"max_completion_tokens":9,"max_tokens":30}}"#),
        20,
    )
    .unwrap();
    assert_eq!(v.max_tokens, Some(20));
    let j = body_json(&v);
    assert_eq!(
        (j["max_completion_tokens"].clone(), j["max_tokens"].clone()),
        (9.into(), 20.into())
    );
    // No cap: nothing injected.
    let v = chat(&format!(r#"{{"model":"m",{MSG}}}"#)).unwrap();
    assert_eq!(v.max_tokens, None);
    assert!(body_json(&v).get("max_tokens").is_none());
    // Completions.
    let v = validate_request(
        Endpoint::Completions,
        br#"{"model":"m","prompt":"x","max_tokens":99}"#,
        Some(10),
        &ValidationLimits::default(),
    )
    .unwrap();
    assert_eq!(v.max_tokens, Some(10));
    assert_eq!(body_json(&v)["max_tokens"], 10);
}

#[test]
fn limits_enforced() {
    let limits = ValidationLimits {
        max_body_bytes: 64,
        max_depth: 4,
        ..ValidationLimits::default()
    };
    let big = format!(r#"{{"model":"m",{MSG},"user":"{}"}}"#, "x".repeat(100));
    let e = validate_request(Endpoint::ChatCompletions, big.as_bytes(), None, &limits).unwrap_err();
    assert_eq!(e.code, codes::BODY_TOO_LARGE);
    assert_eq!(e.http_status(), 413);

    let deep = r#"{"model":"m","messages":[{"role":"user","content":[{"a":[1]}]}]}"#;
    let limits = ValidationLimits {
        max_body_bytes: 1 << 20,
        max_depth: 4,
        ..ValidationLimits::default()
    };
    let e =
        validate_request(Endpoint::ChatCompletions, deep.as_bytes(), None, &limits).unwrap_err();
    assert_eq!(e.code, codes::TOO_DEEP);
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn not_json_or_not_object() {
    for body in ["", "nope", "[1]", "\"x\"", "{\"model\":\"m\"} {}"] {
        let e = chat(body).unwrap_err();
        assert_eq!(e.code, codes::INVALID_JSON, "{body:?}");
    }
}

#[test]
fn openai_error_json_shape() {
    let e = chat(&format!(r#"{{"model":"m",{MSG},"temperature":9}}"#)).unwrap_err();
    let j = e.to_openai_json();
    assert_eq!(j["error"]["type"], "invalid_request_error");
    assert_eq!(e.http_status(), 400);
    assert_eq!(j["error"]["param"], "temperature");
    assert_eq!(j["error"]["code"], codes::INVALID_VALUE);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("temperature"));
    assert_eq!(e.to_string(), e.message);
    // The value itself is never echoed.
    let e = chat(r#"{"model":"m","messages":[{"role":"user"}],"stop":{"secret prompt":1}}"#)
        .unwrap_err();
    assert!(!e.message.contains("secret"));
}

#[test]
fn long_unknown_field_name_is_truncated() {
    let name = "é".repeat(100);
    let e = chat(&format!(r#"{{"model":"m",{MSG},"{name}":1}}"#)).unwrap_err();
    assert!(e.param.as_deref().unwrap().len() <= MAX_NAME_IN_ERROR + 3);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cap in proptest::option::of(0u64..10)) {
        let _ = validate_request(Endpoint::ChatCompletions, &bytes, cap, &ValidationLimits::default());
        let _ = validate_request(Endpoint::Completions, &bytes, cap, &ValidationLimits::default());
    }

    #[test]
    fn rewrite_is_idempotent_and_respects_cap(
        max in proptest::option::of(1u64..100_000),
        cap in proptest::option::of(0u64..100_000),
        stream in proptest::option::of(any::<bool>()),
        temp in 0.0f64..=2.0,
    ) {
        let mut body = serde_json::json!({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":temp});
        if let Some(m) = max { body["max_tokens"] = m.into(); }
        if let Some(s) = stream { body["stream"] = s.into(); }
        let bytes = serde_json::to_vec(&body).unwrap();
        let v1 = validate_request(Endpoint::ChatCompletions, &bytes, cap, &ValidationLimits::default()).unwrap();
        let v2 = validate_request(Endpoint::ChatCompletions, &v1.body, cap, &ValidationLimits::default()).unwrap();
        prop_assert_eq!(&v1.body, &v2.body);
        prop_assert_eq!(v1.stream, stream.unwrap_or(false));
        if let Some(c) = cap {
            let eff = v1.max_tokens.unwrap();
            prop_assert!(eff <= c.max(1));
            prop_assert_eq!(body_json(&v1)["max_tokens"].as_u64(), Some(eff));
        } else {
            prop_assert_eq!(v1.max_tokens, max);
        }
        // The temperature keeps its exact value.
        prop_assert_eq!(body_json(&v1)["temperature"].as_f64(), Some(temp));
    }
}

#[test]
fn floats_round_trip_exactly() {
    // serde_json's default float parser is not correctly rounded; float_roundtrip is on.
    let v = chat(&format!(
        r#"{{"model":"m",{MSG},"temperature":0.38105562580657515,"top_p":1e-3}}"#
    ))
    .unwrap();
    let j = body_json(&v);
    assert_eq!(j["temperature"].as_f64(), Some(0.38105562580657515));
    assert_eq!(j["top_p"].as_f64(), Some(0.001));
}

#[test]
fn prompt_tokens_floor_counts_words_and_token_ids() {
    let v = chat(
        r#"{"model":"m","messages":[{"role":"system","content":"You are  terse."},
            {"role":"user","content":[{"type":"text","text":"two words"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null},{"role":"user","content":"   "}]}"#,
    )
    .unwrap();
    assert_eq!(v.prompt_tokens_floor, 3 + 2);
    let v = completion(r#"{"model":"m","prompt":"Once upon a time"}"#).unwrap();
    assert_eq!(v.prompt_tokens_floor, 4);
    let v = completion(r#"{"model":"m","prompt":["a b", 7, [1, 2, 3]]}"#).unwrap();
    assert_eq!(v.prompt_tokens_floor, 2 + 1 + 3);
    let v = completion(r#"{"model":"m","prompt":""}"#).unwrap();
    assert_eq!(v.prompt_tokens_floor, 0);
}

#[test]
fn continuous_usage_is_added_to_streaming_bodies_only() {
    let v = chat(&format!(r#"{{"model":"m",{MSG},"stream":true}}"#)).unwrap();
    let asked = request_continuous_usage(&v.body).expect("streaming");
    let j: serde_json::Value = serde_json::from_slice(&asked).unwrap();
    assert_eq!(
        j["stream_options"],
        serde_json::json!({"include_usage": true, "continuous_usage_stats": true})
    );
    // Everything else, and its order, is kept.
    assert!(String::from_utf8(asked.to_vec())
        .unwrap()
        .starts_with(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"#));
    let v = chat(&format!(r#"{{"model":"m",{MSG}}}"#)).unwrap();
    assert_eq!(request_continuous_usage(&v.body), None);
    assert_eq!(request_continuous_usage(b"not json"), None);
    // A client cannot ask for it itself (unknown to the whitelist).
    assert!(chat(&format!(
        r#"{{"model":"m",{MSG},"stream":true,"stream_options":{{"continuous_usage_stats":true}}}}"#
    ))
    .is_err());
}
