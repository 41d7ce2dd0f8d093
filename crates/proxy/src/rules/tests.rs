use std::time::Duration;

use bytes::Bytes;
use cocoon_engine::pricing::PriceMultipliers;
use cocoon_engine::usage::RawUsage;
use cocoon_ledger::LedgerError;
use cocoon_proto::messages::{encode, HttpHeader, HttpRequest};

use super::*;

/// Values around every boundary the rules compare at.
const GRID: [u64; 9] = [0, 1, 2, 99, 100, 101, 1_000_000, u64::MAX - 1, u64::MAX];

#[test]
fn a_stated_usage_is_charged_up_to_the_reservation_and_nothing_else_counts() {
    for reported in GRID {
        for progress in GRID {
            for relayed in GRID {
                for reserved in GRID {
                    let t = settle_tokens(Some(reported), progress, relayed, reserved);
                    assert_eq!(t, reported.min(reserved));
                }
            }
        }
    }
    // Absurd usage from an engine: the reservation, not 5e12.
    assert_eq!(settle_tokens(Some(5_000_000_000_000), 0, 0, 1_234), 1_234);
    // An honest report below the reservation is charged exactly.
    assert_eq!(settle_tokens(Some(40), 0, 60, 1_000), 40);
}

#[test]
fn an_ending_by_the_proxy_charges_the_larger_count_up_to_the_reservation() {
    for progress in GRID {
        for relayed in GRID {
            for reserved in GRID {
                let t = settle_tokens(None, progress, relayed, reserved);
                assert_eq!(t, progress.max(relayed).min(reserved));
                assert!(t <= reserved);
                // Never less than either count allows, within the reservation.
                assert!(t >= progress.min(reserved) && t >= relayed.min(reserved));
            }
        }
    }
    // The engine reports usage only at the end: progress 0, the proxy relayed 7 tokens' worth.
    assert_eq!(settle_tokens(None, 0, 7, 1_000), 7);
    // Progress ahead of the proxy's count (engine usage seen by the worker).
    assert_eq!(settle_tokens(None, 30, 7, 1_000), 30);
}

#[test]
fn a_stream_is_cut_as_soon_as_either_count_passes_the_reservation() {
    for progress in GRID {
        for relayed in GRID {
            for reserved in GRID {
                assert_eq!(
                    passed_reservation(progress, relayed, reserved),
                    progress > reserved || relayed > reserved
                );
            }
        }
    }
    assert!(
        !passed_reservation(100, 100, 100),
        "at the reservation is fine"
    );
    assert!(
        passed_reservation(0, 101, 100),
        "the proxy's own count cuts too"
    );
}

#[test]
fn the_reservation_takes_the_larger_of_message_and_body_or_the_cap() {
    for message in GRID {
        for cap in GRID {
            assert_eq!(reserved_max_tokens(message, None, cap), message.max(cap));
            for body in GRID {
                assert_eq!(
                    reserved_max_tokens(message, Some(body), cap),
                    message.max(body)
                );
            }
        }
    }
    // Message 1, body 4000: reserved for 4000; a body without a limit: the cap.
    assert_eq!(reserved_max_tokens(1, Some(4000), 1000), 4000);
    assert_eq!(reserved_max_tokens(1, None, 1000), 1000);
}

/// A client's `http.request` for `/v1/chat/completions` with `payload` as its body.
pub(crate) fn query(payload: &str) -> Bytes {
    encode(&HttpRequest {
        method: "POST".into(),
        url: "/v1/chat/completions".into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        payload: Bytes::from(payload.to_string()),
    })
}

#[test]
fn the_body_limit_is_read_from_the_http_request() {
    let cases: &[(&str, Option<u64>)] = &[
        (r#"{"model":"m","max_tokens":4000}"#, Some(4000)),
        (r#"{"model":"m","max_completion_tokens":300}"#, Some(300)),
        (
            r#"{"max_tokens":7,"max_completion_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
            Some(7),
        ),
        (r#"{"max_tokens":5,"max_completion_tokens":9}"#, Some(9)),
        (r#"{"model":"m"}"#, None),
        (r#"{"max_tokens":null}"#, None),
        // Not a non-negative integer: that member sets nothing (the worker refuses the body).
        (r#"{"max_tokens":-1}"#, None),
        (r#"{"max_tokens":"4000"}"#, None),
        (r#"{"max_tokens":1.5,"max_completion_tokens":3}"#, Some(3)),
        // Duplicate members: not one JSON object the worker accepts.
        (r#"{"max_tokens":1,"max_tokens":4000}"#, None),
        ("not json", None),
        // Not an object (a derived struct would read an array positionally).
        ("[1,2]", None),
        ("  [4000, 4000]", None),
        (" \n {\"max_tokens\":12}", Some(12)),
        ("", None),
    ];
    for (body, want) in cases {
        assert_eq!(body_max_tokens(&query(body)), *want, "{body}");
    }
    assert_eq!(body_max_tokens(&Bytes::from_static(b"{}")), None, "not TL");
    assert_eq!(body_max_tokens(&Bytes::new()), None);
    // Deep nesting costs no stack: skipped members are skipped without recursion, and a
    // parsed member stops at serde_json's recursion limit (the worker refuses both bodies).
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        body_max_tokens(&query(&format!(r#"{{"x":{deep},"max_tokens":3}}"#))),
        Some(3)
    );
    assert_eq!(
        body_max_tokens(&query(&format!(
            r#"{{"max_tokens":{deep},"max_completion_tokens":3}}"#
        ))),
        None
    );
    // Over the read bound: counts as setting none (the cap applies).
    let big = format!(
        r#"{{"max_tokens":3,"pad":"{}"}}"#,
        "a".repeat(MAX_BODY_READ)
    );
    assert_eq!(body_max_tokens(&query(&big)), None);
}

#[test]
fn a_form_sets_no_limit_and_is_reserved_at_the_cap() {
    let form = |content_type: &str, payload: &str| {
        encode(&HttpRequest {
            method: "POST".into(),
            url: "/v1/audio/transcriptions".into(),
            http_version: "HTTP/1.0".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: content_type.into(),
            }],
            payload: Bytes::from(payload.to_string()),
        })
    };
    let body = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
    assert_eq!(
        body_max_tokens(&form("multipart/form-data; boundary=b", body)),
        None
    );
    // Declared as a form, never parsed as JSON, even when it would parse.
    assert_eq!(
        body_max_tokens(&form(
            "multipart/form-data; boundary=b",
            r#"{"max_tokens":1}"#
        )),
        None
    );
    // JSON declared as such (any case, with parameters) is read as before.
    assert_eq!(
        body_max_tokens(&form(
            "Application/JSON; charset=utf-8",
            r#"{"max_tokens":9}"#
        )),
        Some(9)
    );
    // The reservation then holds the configured cap (or the message's, when larger).
    assert_eq!(reserved_max_tokens(0, None, 4096), 4096);
    assert_eq!(reserved_max_tokens(5000, None, 4096), 5000);
}

#[test]
fn deadlines_are_raised_to_the_minimum_and_lowered_to_the_maximum() {
    let s = Duration::from_secs;
    let (min, max) = (s(5), s(3600));
    let cases: &[(f64, Duration)] = &[
        (1e-6, min),
        (0.5, min),
        (5.0, min),
        (20.0, s(20)),
        (3600.0, max),
        (1e9, max),
        (1e300, max),
        (f64::MAX, max),
        (0.0, max),
        (-1.0, max),
        (f64::NAN, max),
        (f64::INFINITY, max),
        (f64::NEG_INFINITY, max),
    ];
    for (asked, want) in cases {
        assert_eq!(request_deadline(*asked, min, max), *want, "{asked}");
    }
    // A minimum above the maximum counts as the maximum.
    assert_eq!(request_deadline(1.0, s(10), s(3)), s(3));
    // No minimum: the client's deadline stands.
    assert_eq!(
        request_deadline(0.25, Duration::ZERO, max),
        Duration::from_millis(250)
    );
}

#[test]
fn only_a_deadline_a_worker_could_meet_makes_it_suspect() {
    let ms = Duration::from_millis;
    let min = ms(5000);
    // Under the minimum: never (whatever the history).
    for head in [None, Some(ms(1)), Some(ms(10_000))] {
        assert!(!suspect_after_deadline(ms(1), min, head));
        assert!(!suspect_after_deadline(ms(4999), min, head));
    }
    // At or over the minimum, no history: a silent worker is suspect.
    assert!(suspect_after_deadline(ms(5000), min, None));
    // Under twice its mean time to head: the deadline was too short for this worker.
    assert!(!suspect_after_deadline(ms(5000), min, Some(ms(3000))));
    assert!(suspect_after_deadline(ms(6000), min, Some(ms(3000))));
    assert!(suspect_after_deadline(ms(60_000), min, Some(ms(3000))));
    // No overflow on absurd histories.
    assert!(!suspect_after_deadline(
        ms(60_000),
        min,
        Some(Duration::MAX)
    ));
}

#[test]
fn the_mean_starts_at_the_first_sample_and_follows_recent_ones() {
    assert_eq!(ewma(None, 2.0), 2.0);
    assert!((ewma(Some(2.0), 7.0) - 3.0).abs() < 1e-12);
}

#[test]
fn only_per_request_ledger_refusals_spare_the_proxy() {
    assert!(!ledger_error_halts(&LedgerError::InvalidInput(
        "committed_db would overflow".into()
    )));
    assert!(!ledger_error_halts(&LedgerError::TooLarge {
        what: "accounts",
        limit: 1
    }));
    assert!(ledger_error_halts(&LedgerError::Closed));
    assert!(ledger_error_halts(&LedgerError::CommitFailed(
        "disk full".into()
    )));
    assert!(ledger_error_halts(&LedgerError::RollbackDetected(
        "old copy".into()
    )));
}

fn raw(prompt: u64, completion: u64) -> RawUsage {
    RawUsage {
        prompt,
        completion,
        ..RawUsage::default()
    }
}

#[test]
fn delivered_usage_prefers_the_engines_numbers_then_the_chunk_count() {
    for chunks in GRID {
        for prompt in GRID {
            // Nothing seen: the estimate, or nothing when no content went out.
            let d = delivered_usage(RawUsage::default(), chunks, prompt);
            if chunks == 0 {
                assert_eq!(d, RawUsage::default());
            } else {
                assert_eq!(d, raw(prompt, chunks));
            }
            // Engine usage seen: its numbers, completion at least the chunks.
            let seen = RawUsage {
                prompt: 12,
                cached: 3,
                completion: 40,
                reasoning: 5,
            };
            let d = delivered_usage(seen, chunks, prompt);
            assert_eq!(
                d,
                RawUsage {
                    completion: 40.max(chunks),
                    ..seen
                }
            );
        }
    }
}

const SSE_HEAD: Option<&str> = Some("text/event-stream");

fn content_event(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

#[test]
fn the_meter_counts_relayed_content_chunks_and_the_prompt_once_content_went_out() {
    let m1 = PriceMultipliers::default();
    let mut m = RelayMeter::new(50);
    assert_eq!(m.delivered_tokens(1000, &m1), 0, "nothing relayed");
    m.head(SSE_HEAD, b"");
    // A role-only first chunk carries no content.
    m.observe(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n");
    assert_eq!(m.delivered_tokens(1000, &m1), 0);
    // Events split across parts are counted once, when complete.
    let e = content_event("Hel");
    let (a, b) = e.as_bytes().split_at(10);
    m.observe(a);
    assert_eq!(m.delivered(), RawUsage::default());
    m.observe(b);
    assert_eq!(m.delivered(), raw(50, 1));
    for w in ["lo", " wor", "ld"] {
        m.observe(content_event(w).as_bytes());
    }
    assert_eq!(m.delivered(), raw(50, 4));
    // Adjusted as the worker adjusts: coefficient 1.5x.
    assert_eq!(m.delivered_tokens(1500, &m1), 81); // 75 + 6
                                                   // The engine's usage chunk, once relayed, replaces the estimate.
    m.observe(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
    );
    assert_eq!(m.delivered(), raw(9, 4));
}

#[test]
fn the_meter_reads_json_answers_and_ignores_what_is_not_content() {
    let mut m = RelayMeter::new(10);
    m.head(Some("application/json"), b"");
    m.observe(br#"{"error":{"message":"bad request"}}"#);
    assert_eq!(
        m.delivered(),
        RawUsage::default(),
        "an error body is no content"
    );
    let mut m = RelayMeter::new(10);
    // A body in the head's payload counts; a part before any head is read too.
    m.head(
        Some("application/json"),
        br#"{"choices":[{"message":{"content":"hi"}}]}"#,
    );
    assert_eq!(m.delivered(), raw(10, 1));
    let mut m = RelayMeter::new(10);
    m.observe(br#"{"choices":[{"text":"a"}]}"#);
    assert_eq!(m.delivered(), raw(10, 1));
    // Garbage and over-long lines are not content.
    let mut m = RelayMeter::new(10);
    m.head(SSE_HEAD, b"");
    m.observe(b"data: not json\n\n");
    let long = format!("data: {}\n\n", "x".repeat(METER_LIMITS.max_line + 1));
    m.observe(long.as_bytes());
    assert_eq!(m.delivered(), RawUsage::default());
    m.observe(content_event("ok").as_bytes());
    assert_eq!(
        m.delivered(),
        raw(10, 1),
        "the parser recovers after a bad line"
    );
}
