//! Tests for usage counting: exact counts from the reference bodies (SSE, JSON, JSON lines), caps,
//! and split-invariance property tests.

use super::*;
use proptest::prelude::*;

const SSE_DIRECT: &[u8] = include_bytes!("../../testdata/sse-direct.response.body");
const JSON_DIRECT: &[u8] = include_bytes!("../../testdata/json-direct.response.body");
const REQ1_TRUNCATED: &[u8] = include_bytes!("../../testdata/req1.response.body");
const GO_BACKEND: &[u8] = include_bytes!("../../testdata/gobackend-nonstream.response.body");
const REQ3_JSONL: &[u8] = include_bytes!("../../testdata/req3.response.body");

fn count(kind: BodyKind, chunks: &[&[u8]]) -> (RawUsage, UsageCounter) {
    let mut c = UsageCounter::new(kind, UsageLimits::default());
    for ch in chunks {
        c.observe(ch);
    }
    let u = c.finish();
    (u, c)
}

fn usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> RawUsage {
    RawUsage {
        prompt,
        cached,
        completion,
        reasoning,
    }
}

#[test]
fn reference_sse_stream() {
    let (u, c) = count(BodyKind::Sse, &[SSE_DIRECT]);
    assert_eq!(u, usage(12, 0, 6, 0));
    assert_eq!(c.completion_chunks(), 6);
    assert_eq!(c.malformed(), 0);
    assert!(c.saw_done());
}

#[test]
fn reference_sse_current_grows_only_at_usage_chunk() {
    let mut c = UsageCounter::new(BodyKind::Sse, UsageLimits::default());
    let usage_at = SSE_DIRECT
        .windows(7)
        .position(|w| w == b"\"usage\"")
        .unwrap();
    c.observe(&SSE_DIRECT[..usage_at]);
    assert_eq!(c.current(), RawUsage::default());
    assert_eq!(c.completion_chunks(), 6);
    c.observe(&SSE_DIRECT[usage_at..]);
    assert_eq!(c.current(), usage(12, 0, 6, 0));
}

#[test]
fn reference_json_body() {
    let (u, c) = count(BodyKind::Json, &[JSON_DIRECT]);
    assert_eq!(u, usage(12, 0, 6, 0));
    assert_eq!(c.completion_chunks(), 1);
    assert_eq!(c.malformed(), 0);
}

#[test]
fn reference_req1_truncated_by_cocoon_is_not_trusted() {
    // Cocoon's header bug cut this body at 353 bytes, inside the usage object: the value never
    // completes, so nothing is counted and the cut-off value is reported.
    let (u, c) = count(BodyKind::Json, &[REQ1_TRUNCATED]);
    assert_eq!(u, RawUsage::default());
    assert_eq!(c.malformed(), 1);
}

#[test]
fn reference_go_backend_json_lines() {
    // Served as application/json; the content is JSON lines. Both kinds give the same counts.
    for kind in [BodyKind::Json, BodyKind::JsonLines, BodyKind::Sse] {
        let (u, c) = count(kind, &[GO_BACKEND]);
        assert_eq!(u, usage(34, 11, 100, 10), "{kind:?}");
        assert_eq!(c.completion_chunks(), 50);
        assert_eq!(c.malformed(), 0);
        assert!(!c.saw_done());
    }
}

#[test]
fn reference_req3_json_lines_through_cocoon() {
    let (u, c) = count(BodyKind::JsonLines, &[REQ3_JSONL]);
    assert_eq!(u, usage(12, 0, 6, 0));
    assert_eq!(c.completion_chunks(), 3);
}

#[test]
fn mislabelled_sse_is_sniffed() {
    let (u, _) = count(BodyKind::Json, &[SSE_DIRECT]);
    assert_eq!(u, usage(12, 0, 6, 0));
}

#[test]
fn content_type_mapping() {
    assert_eq!(
        body_kind_from_content_type(Some("text/event-stream; charset=utf-8")),
        BodyKind::Sse
    );
    assert_eq!(
        body_kind_from_content_type(Some("Text/Event-Stream")),
        BodyKind::Sse
    );
    assert_eq!(
        body_kind_from_content_type(Some("application/x-ndjson")),
        BodyKind::JsonLines
    );
    assert_eq!(
        body_kind_from_content_type(Some("application/json")),
        BodyKind::Json
    );
    assert_eq!(body_kind_from_content_type(None), BodyKind::Json);
}

#[test]
fn maxima_and_reasoning_variants() {
    let body = concat!(
        r#"data: {"usage":{"prompt_tokens":5,"completion_tokens":1,"reasoning_tokens":7}}"#,
        "\n\n",
        r#"data: {"usage":{"prompt_tokens":3,"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":2},"prompt_tokens_details":{"cached_tokens":4}}}"#,
        "\n\n",
        r#"data: {"usage":null,"choices":[{"delta":{"tool_calls":[{"id":"x"}]}}]}"#,
        "\n\n",
        r#"data: {"usage":{"prompt_tokens":-1,"completion_tokens":1.5}}"#,
        "\n\n",
        "data: not json\n\n",
        "data: [DONE]\n\n",
    );
    let (u, c) = count(BodyKind::Sse, &[body.as_bytes()]);
    assert_eq!(u, usage(5, 4, 9, 7));
    assert_eq!(c.completion_chunks(), 1);
    assert_eq!(c.malformed(), 1);
    assert!(c.saw_done());
}

#[test]
fn completions_stream_text_counts_as_content() {
    let body = concat!(
        r#"data: {"object":"text_completion","choices":[{"index":0,"text":" a","finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"stop"}]}"#,
        "\n\n",
    );
    let (_, c) = count(BodyKind::Sse, &[body.as_bytes()]);
    assert_eq!(c.completion_chunks(), 1);
}

#[test]
fn oversized_json_still_billed_from_top_level_usage() {
    let filler = "x".repeat(4096);
    let body = format!(
        r#"{{"choices":[{{"message":{{"content":"{filler}"}}}}],"usage":{{"prompt_tokens":7,"completion_tokens":8,"prompt_tokens_details":{{"cached_tokens":2}}}}}}"#
    );
    let mut c = UsageCounter::new(
        BodyKind::Json,
        UsageLimits {
            max_line: 1024,
            max_value: 1024,
        },
    );
    for ch in body.as_bytes().chunks(100) {
        c.observe(ch);
        assert!(c.buffered_len() <= 1024 + MAX_USAGE_BYTES + 32);
    }
    assert_eq!(c.finish(), usage(7, 2, 8, 0));
    assert_eq!(c.malformed(), 1);
}

#[test]
fn oversized_sse_line_is_skipped_but_usage_kept() {
    let big = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "y".repeat(2000)
    );
    let body = format!("{big}data: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n\ndata: [DONE]\n\n");
    let mut c = UsageCounter::new(
        BodyKind::Sse,
        UsageLimits {
            max_line: 256,
            max_value: 256,
        },
    );
    c.observe(body.as_bytes());
    assert_eq!(c.finish(), usage(1, 0, 2, 0));
    assert_eq!(c.malformed(), 1);
}

#[test]
fn finish_is_final_and_empty_body_is_zero() {
    let (u, c) = count(BodyKind::Sse, &[]);
    assert_eq!(u, RawUsage::default());
    assert_eq!(c.malformed(), 0);
    let mut c = UsageCounter::new(BodyKind::Json, UsageLimits::default());
    c.observe(b"  \n ");
    assert_eq!(c.finish(), RawUsage::default());
    c.observe(JSON_DIRECT);
    assert_eq!(c.finish(), RawUsage::default());
}

#[test]
fn sse_without_final_blank_line_still_counts() {
    let body = b"data: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5}}";
    let (u, _) = count(BodyKind::Sse, &[body]);
    assert_eq!(u, usage(4, 0, 5, 0));
}

#[test]
fn transcription_usage_shapes() {
    // OpenAI's token-billed transcriptions (and the Responses API): input → prompt, output →
    // completion.
    let tokens = serde_json::json!({"type": "tokens", "input_tokens": 120, "output_tokens": 30,
        "total_tokens": 150, "input_token_details": {"text_tokens": 20, "audio_tokens": 100}});
    assert_eq!(RawUsage::from_usage_json(&tokens), usage(120, 0, 30, 0));
    let responses = serde_json::json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}});
    assert_eq!(RawUsage::from_usage_json(&responses), usage(9, 4, 7, 2));
    // Duration-billed ones: AUDIO_TOKENS_PER_SECOND prompt tokens a second, rounded up.
    for (seconds, want) in [
        (serde_json::json!(3), 150),
        (serde_json::json!(2.01), 101),
        (serde_json::json!(0), 0),
        (serde_json::json!(-5), 0),
        (serde_json::json!("12"), 0),
        (serde_json::json!(1e300), u64::MAX),
    ] {
        let d = serde_json::json!({"type": "duration", "seconds": seconds});
        assert_eq!(RawUsage::from_usage_json(&d), usage(want, 0, 0, 0), "{d}");
    }
    // `seconds` counts only in a duration usage.
    let other = serde_json::json!({"type": "tokens", "seconds": 10});
    assert_eq!(RawUsage::from_usage_json(&other), RawUsage::default());
    // The largest of the shapes wins.
    let mixed = serde_json::json!({"prompt_tokens": 5, "input_tokens": 8, "completion_tokens": 6, "output_tokens": 2});
    assert_eq!(RawUsage::from_usage_json(&mixed), usage(8, 0, 6, 0));
    // Counted from a body, as the worker counts it.
    let body = br#"{"text":"hello there","usage":{"type":"duration","seconds":1.5}}"#;
    let (u, c) = count(BodyKind::Json, &[body]);
    assert_eq!(u, usage(75, 0, 0, 0));
    assert_eq!(c.malformed(), 0);
}

#[test]
fn openai_transcription_stream_ends_at_its_done_event() {
    let stream: &[&[u8]] = &[
        b"data: {\"type\":\"transcript.text.delta\",\"delta\":\"Hel\"}\n\n",
        b"data: {\"type\":\"transcript.text.delta\",\"delta\":\"lo\"}\n\n",
        b"data: {\"type\":\"transcript.text.done\",\"text\":\"Hello\",\"usage\":{\"type\":\"tokens\",\"input_tokens\":14,\"output_tokens\":2,\"total_tokens\":16}}\n\n",
    ];
    let (u, c) = count(BodyKind::Sse, &stream[..2]);
    assert!(!c.saw_done());
    assert_eq!(c.completion_chunks(), 2);
    assert_eq!(u, RawUsage::default());
    let (u, c) = count(BodyKind::Sse, stream);
    assert!(c.saw_done(), "no [DONE] follows OpenAI's last event");
    assert_eq!(u, usage(14, 0, 2, 0));
}

#[test]
fn raw_usage_helpers() {
    let a = usage(1, 5, 3, 0);
    let b = usage(4, 2, 1, 9);
    assert_eq!(a.max(b), usage(4, 5, 3, 9));
    assert_eq!(usage(u64::MAX, 0, 1, 0).total(), u64::MAX);
}

fn split_at(input: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.iter_mut().for_each(|c| *c %= input.len() + 1);
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts {
        out.push(&input[prev..c]);
        prev = c;
    }
    out.push(&input[prev..]);
    out
}

proptest! {
    #[test]
    fn any_split_gives_the_same_counts(
        which in 0usize..4,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let (body, kind, want) = match which {
            0 => (SSE_DIRECT, BodyKind::Sse, usage(12, 0, 6, 0)),
            1 => (JSON_DIRECT, BodyKind::Json, usage(12, 0, 6, 0)),
            2 => (GO_BACKEND, BodyKind::Json, usage(34, 11, 100, 10)),
            _ => (REQ3_JSONL, BodyKind::JsonLines, usage(12, 0, 6, 0)),
        };
        let (whole, wc) = count(kind, &[body]);
        let (split, sc) = count(kind, &split_at(body, cuts));
        prop_assert_eq!(whole, want);
        prop_assert_eq!(split, want);
        prop_assert_eq!(wc.completion_chunks(), sc.completion_chunks());
        prop_assert_eq!(sc.malformed(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in prop::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b'"'), Just(b'\\'), Just(b'\n'),
            Just(b':'), Just(b','), any::<u8>()
        ], 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        kind in prop_oneof![Just(BodyKind::Sse), Just(BodyKind::Json), Just(BodyKind::JsonLines)],
    ) {
        let limits = UsageLimits { max_line: 64, max_value: 64 };
        let mut c = UsageCounter::new(kind, limits);
        for ch in split_at(&input, cuts) {
            c.observe(ch);
            prop_assert!(c.buffered_len() <= 4 * 64 + MAX_USAGE_BYTES + 32);
        }
        let _ = c.finish();
    }
}
