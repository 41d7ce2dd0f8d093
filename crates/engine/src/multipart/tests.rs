//! The transcription form's validator: structure, bounds, field rules, canonical encoding.

use proptest::prelude::*;

use super::*;

const B: &str = "XyZ-boundary";

/// A part: name, filename (a file when `Some`), content.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// Encodes `parts` under [`B`] with CRLFs, as curl and the OpenAI SDKs do.
fn form(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, data) in parts {
        out.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = filename {
            out.extend_from_slice(
                format!("; filename=\"{f}\"\r\nContent-Type: audio/wav").as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    out
}

fn ct() -> String {
    format!("multipart/form-data; boundary={B}")
}

const AUDIO: &[u8] =
    b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00";

fn good() -> Vec<Part<'static>> {
    vec![
        ("file", Some("My Meeting.WAV"), AUDIO),
        ("model", None, b"whisper-large-v3"),
    ]
}

fn check(parts: &[Part]) -> Result<ValidatedRequest, ValidationError> {
    validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &form(parts),
        false,
        &ValidationLimits::default(),
    )
}

fn err(parts: &[Part]) -> ValidationError {
    check(parts).expect_err("must be refused")
}

/// The canonical body's parts, parsed back.
fn reparse(v: &ValidatedRequest) -> Form {
    parse_form(
        v.content_type.as_deref(),
        &v.body,
        &ValidationLimits::default(),
    )
    .expect("a canonical form parses")
}

#[test]
fn a_good_form_is_canonical_and_stable() {
    let mut parts = good();
    parts.extend([
        ("language", None, &b"en"[..]),
        ("prompt", None, b"Names: Ada, Grace"),
        ("response_format", None, b"verbose_json"),
        ("temperature", None, b" 0.50"),
        ("timestamp_granularities[]", None, b"word"),
        ("timestamp_granularities[]", None, b"segment"),
        ("stream", None, b"0"),
        (
            "chunking_strategy",
            None,
            br#"{"type":"server_vad", "threshold": 0.5}"#,
        ),
        ("include[]", None, b"logprobs"),
    ]);
    let v = check(&parts).expect("valid");
    assert_eq!(v.endpoint, Endpoint::AudioTranscriptions);
    assert_eq!(v.model, "whisper-large-v3");
    assert!(!v.stream);
    assert_eq!(v.max_tokens, None);
    assert_eq!(v.prompt_tokens_floor, 3, "the prompt's words");
    let ct = v.content_type.clone().expect("a content type");
    assert!(
        ct.starts_with("multipart/form-data; boundary=cocoon-"),
        "{ct}"
    );
    let f = reparse(&v);
    let names: Vec<&str> = f.parts().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model",
            "language",
            "prompt",
            "response_format",
            "temperature",
            "timestamp_granularities[]",
            "timestamp_granularities[]",
            "stream",
            "chunking_strategy",
            "include[]",
            "file",
        ]
    );
    assert_eq!(f.text("temperature"), Some("0.5"));
    assert_eq!(f.text("stream"), Some("false"));
    assert_eq!(
        f.text("chunking_strategy"),
        Some(r#"{"type":"server_vad","threshold":0.5}"#)
    );
    let file = f.parts().last().expect("file");
    // The app's file name stays with the app: only its extension travels.
    assert_eq!(file.filename.as_deref(), Some("audio.wav"));
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(&file.data[..], AUDIO);
    // Checking the canonical form again gives the same bytes.
    let again = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct),
        &v.body,
        false,
        &ValidationLimits::default(),
    )
    .expect("still valid");
    assert_eq!(again, v);
}

#[test]
fn file_names_and_types_are_reduced() {
    for (given, want) in [
        ("a.mp3", "audio.mp3"),
        ("C:\\Users\\me\\x.OGG", "audio.ogg"),
        ("/home/me/no-extension", "audio"),
        ("weird.ext with space", "audio"),
        ("", "audio"),
        ("x.verylongextension", "audio"),
    ] {
        let v = check(&[("model", None, b"m"), ("file", Some(given), b"x")]).expect(given);
        let f = reparse(&v);
        assert_eq!(f.parts()[1].filename.as_deref(), Some(want), "{given}");
    }
    // No Content-Type on the file part: the generic one.
    let body = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc\r\n--{B}--\r\n"
    );
    let v = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        body.as_bytes(),
        false,
        &ValidationLimits::default(),
    )
    .expect("valid");
    assert_eq!(
        reparse(&v).parts()[1].content_type.as_deref(),
        Some("application/octet-stream")
    );
}

#[test]
fn streaming_asks_the_engine_for_usage_only_when_told() {
    let mut parts = good();
    parts.push(("stream", None, b"TRUE"));
    let v = check(&parts).expect("valid");
    assert!(v.stream);
    assert_eq!(reparse(&v).text("stream_include_usage"), None);
    let w = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &form(&parts),
        true,
        &ValidationLimits::default(),
    )
    .expect("valid");
    let f = reparse(&w);
    assert_eq!(f.text("stream_include_usage"), Some("true"));
    assert_eq!(f.parts().last().map(|p| p.name.as_str()), Some("file"));
    // Not streaming: nothing to ask.
    let w = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &form(&good()),
        true,
        &ValidationLimits::default(),
    )
    .expect("valid");
    assert_eq!(reparse(&w).text("stream_include_usage"), None);
    // An app cannot send it itself.
    parts.push(("stream_include_usage", None, b"true"));
    assert_eq!(err(&parts).code, codes::UNKNOWN_PARAMETER);
}

#[test]
fn a_missing_file_or_model_is_named() {
    let e = err(&[("model", None, b"m")]);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::MISSING_PARAMETER, Some("file"))
    );
    let e = err(&[("file", Some("a.wav"), AUDIO)]);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::MISSING_PARAMETER, Some("model"))
    );
    let e = err(&[("file", Some("a.wav"), AUDIO), ("model", None, b"")]);
    assert_eq!(e.code, codes::INVALID_VALUE);
    // The file must be a file, and not empty; the model must be text.
    let e = err(&[("file", None, AUDIO), ("model", None, b"m")]);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_TYPE, Some("file"))
    );
    let e = err(&[("file", Some("a.wav"), b""), ("model", None, b"m")]);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_VALUE, Some("file"))
    );
    let e = err(&[
        ("file", Some("a.wav"), AUDIO),
        ("model", Some("m.txt"), b"m"),
    ]);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::INVALID_TYPE, Some("model"))
    );
    assert_eq!(e.http_status(), 400);
}

#[test]
fn unknown_and_duplicate_fields_are_named() {
    let mut parts = good();
    parts.push(("max_tokens", None, b"5"));
    let e = err(&parts);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::UNKNOWN_PARAMETER, Some("max_tokens"))
    );
    assert!(e.message.contains("'max_tokens'"), "{}", e.message);
    let mut parts = good();
    parts.push(("model", None, b"other"));
    let e = err(&parts);
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::DUPLICATE_KEY, Some("model"))
    );
    let mut parts = good();
    parts.push(("file", Some("b.wav"), AUDIO));
    assert_eq!(err(&parts).param.as_deref(), Some("file"));
    // Array fields repeat, each value once.
    let mut parts = good();
    parts.extend([
        ("include[]", None, &b"logprobs"[..]),
        ("include[]", None, b"logprobs"),
    ]);
    assert_eq!(err(&parts).param.as_deref(), Some("include[]"));
    // The name without `[]` is not OpenAI's form field.
    let mut parts = good();
    parts.push(("include", None, b"logprobs"));
    assert_eq!(err(&parts).code, codes::UNKNOWN_PARAMETER);
}

#[test]
fn field_values_are_type_checked_without_echoing_them() {
    let secret = "sk_SECRET_42";
    for (name, value, code) in [
        ("temperature", "warm", codes::INVALID_TYPE),
        ("temperature", "1.5", codes::INVALID_VALUE),
        ("temperature", "NaN", codes::INVALID_VALUE),
        ("stream", "yes", codes::INVALID_TYPE),
        ("language", "english!", codes::INVALID_VALUE),
        ("response_format", "text", codes::UNSUPPORTED_VALUE),
        ("response_format", "srt", codes::UNSUPPORTED_VALUE),
        ("response_format", "xml", codes::INVALID_VALUE),
        ("timestamp_granularities[]", "char", codes::INVALID_VALUE),
        ("include[]", "all", codes::INVALID_VALUE),
        ("chunking_strategy", "manual", codes::INVALID_TYPE),
        (
            "chunking_strategy",
            r#"{"type":"fixed"}"#,
            codes::INVALID_VALUE,
        ),
        (
            "chunking_strategy",
            r#"{"type":"server_vad","x":1}"#,
            codes::UNKNOWN_PARAMETER,
        ),
        (
            "chunking_strategy",
            r#"{"type":"server_vad","type":"server_vad"}"#,
            codes::INVALID_TYPE,
        ),
        (
            "chunking_strategy",
            r#"{"type":"server_vad","threshold":2}"#,
            codes::INVALID_VALUE,
        ),
        ("chunking_strategy", "[1]", codes::INVALID_TYPE),
    ] {
        let mut parts = good();
        parts.push((name, None, value.as_bytes()));
        let e = err(&parts);
        assert_eq!(e.code, code, "{name}={value}: {e:?}");
        assert!(
            e.param.as_deref().is_some_and(|p| p.starts_with(name)),
            "{name}: {e:?}"
        );
        let mut parts = good();
        parts.push((name, None, secret.as_bytes()));
        let e = err(&parts);
        assert!(!e.message.contains(secret), "{name}: {}", e.message);
    }
    let mut parts = good();
    parts.push(("prompt", None, b"\xff\xfe"));
    assert_eq!(err(&parts).code, codes::INVALID_VALUE);
}

#[test]
fn oversized_bodies_and_fields_are_refused() {
    let limits = ValidationLimits {
        max_body_bytes: 256,
        max_form_text_bytes: 32,
        ..ValidationLimits::default()
    };
    let big = vec![7u8; 300];
    let body = form(&[("model", None, b"m"), ("file", Some("a.wav"), &big)]);
    let e = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &body,
        false,
        &limits,
    )
    .expect_err("too large");
    assert_eq!(e.code, codes::BODY_TOO_LARGE);
    assert_eq!(e.http_status(), 413);
    let long = vec![b'w'; 33];
    let body = form(&[
        ("model", None, b"m"),
        ("prompt", None, &long),
        ("file", Some("a"), b"x"),
    ]);
    let roomy = ValidationLimits {
        max_body_bytes: 1024,
        ..limits.clone()
    };
    let e = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &body,
        false,
        &roomy,
    )
    .expect_err("text too large");
    assert_eq!(
        (e.code, e.param.as_deref()),
        (codes::FIELD_TOO_LARGE, Some("prompt"))
    );
    // A file may take what the body allows.
    let file = vec![7u8; 60];
    let body = form(&[("model", None, b"m"), ("file", Some("a"), &file)]);
    validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &body,
        false,
        &limits,
    )
    .expect("a file within the body's limit");
}

#[test]
fn too_many_parts_are_refused() {
    let limits = ValidationLimits {
        max_form_parts: 4,
        ..ValidationLimits::default()
    };
    let mut parts = good();
    parts.extend([("prompt", None, &b"a"[..]), ("language", None, b"en")]);
    let body = form(&parts);
    validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &body,
        false,
        &limits,
    )
    .expect("4 parts");
    parts.push(("stream", None, b"false"));
    let body = form(&parts);
    let e = validate_multipart(
        Endpoint::AudioTranscriptions,
        Some(&ct()),
        &body,
        false,
        &limits,
    )
    .expect_err("5 parts");
    assert_eq!(e.code, codes::TOO_MANY_PARTS);
    // Many parts with the default limit.
    let many: Vec<Part> = (0..100)
        .map(|_| ("include[]", None, &b"logprobs"[..]))
        .collect();
    assert_eq!(err(&many).code, codes::TOO_MANY_PARTS);
}

#[test]
fn missing_or_garbled_boundaries_are_refused() {
    let body = form(&good());
    let limits = ValidationLimits::default();
    let run = |ct: Option<&str>, body: &[u8]| {
        validate_multipart(Endpoint::AudioTranscriptions, ct, body, false, &limits)
            .expect_err("refused")
    };
    for (ct, code) in [
        (None, codes::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/json"), codes::UNSUPPORTED_MEDIA_TYPE),
        (
            Some("multipart/mixed; boundary=XyZ-boundary"),
            codes::UNSUPPORTED_MEDIA_TYPE,
        ),
        (Some("multipart/form-data"), codes::INVALID_MULTIPART),
        (
            Some("multipart/form-data; boundary="),
            codes::INVALID_MULTIPART,
        ),
        (
            Some("multipart/form-data; boundary=\"a b \""),
            codes::INVALID_MULTIPART,
        ),
        (
            Some("multipart/form-data; boundary=a{b}"),
            codes::INVALID_MULTIPART,
        ),
        (
            Some("multipart/form-data; boundary=other"),
            codes::INVALID_MULTIPART,
        ),
    ] {
        let e = run(ct, &body);
        assert_eq!(e.code, code, "{ct:?}: {e:?}");
    }
    let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
    assert_eq!(run(Some(&long), &body).code, codes::INVALID_MULTIPART);
    assert_eq!(run(None, &body).http_status(), 415);
    // Cut off before the closing boundary, or a part without a name.
    let cut = &body[..body.len() - 20];
    assert_eq!(run(Some(&ct()), cut).code, codes::INVALID_MULTIPART);
    let nameless = format!("--{B}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{B}--\r\n");
    assert_eq!(
        run(Some(&ct()), nameless.as_bytes()).code,
        codes::INVALID_MULTIPART
    );
    assert_eq!(run(Some(&ct()), b"").code, codes::INVALID_MULTIPART);
    // JSON endpoints take no form, and the form endpoint no JSON.
    let e = validate_multipart(
        Endpoint::ChatCompletions,
        Some(&ct()),
        &body,
        false,
        &limits,
    )
    .expect_err("chat is JSON");
    assert_eq!(e.code, codes::UNSUPPORTED_MEDIA_TYPE);
    let e = crate::validate::validate_request(Endpoint::AudioTranscriptions, b"{}", None, &limits)
        .expect_err("a form endpoint");
    assert_eq!(e.http_status(), 415);
}

#[test]
fn take_text_removes_a_field_once() {
    let mut parts = good();
    parts.push(("timeout", None, b"30"));
    let mut f =
        parse_form(Some(&ct()), &form(&parts), &ValidationLimits::default()).expect("parses");
    assert_eq!(f.take_text("timeout").expect("one"), Some("30".into()));
    assert_eq!(f.take_text("timeout").expect("none left"), None);
    validate_transcription(f, false).expect("valid without it");
    parts.push(("timeout", None, b"31"));
    let mut f =
        parse_form(Some(&ct()), &form(&parts), &ValidationLimits::default()).expect("parses");
    assert_eq!(
        f.take_text("timeout").expect_err("twice").code,
        codes::DUPLICATE_KEY
    );
    let mut f =
        parse_form(Some(&ct()), &form(&good()), &ValidationLimits::default()).expect("parses");
    assert_eq!(
        f.take_text("file").expect_err("a file").code,
        codes::INVALID_TYPE
    );
}

#[test]
fn debug_output_shows_no_content() {
    let f = parse_form(Some(&ct()), &form(&good()), &ValidationLimits::default()).expect("parses");
    let shown = format!("{f:?}");
    assert!(!shown.contains("Meeting"), "{shown}");
    assert!(!shown.contains("whisper"), "{shown}");
    assert!(shown.contains("len"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic, whatever the Content-Type; what passes re-checks to itself.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        boundary in "[a-zA-Z0-9'()+_,./:=? -]{0,72}",
    ) {
        let limits = ValidationLimits::default();
        for ct in [
            Some(ct()),
            Some(format!("multipart/form-data; boundary={boundary}")),
            None,
        ] {
            if let Ok(v) = validate_multipart(
                Endpoint::AudioTranscriptions, ct.as_deref(), &body, false, &limits,
            ) {
                let again = validate_multipart(
                    Endpoint::AudioTranscriptions, v.content_type.as_deref(), &v.body, false, &limits,
                ).expect("valid stays valid");
                prop_assert_eq!(again.body, v.body);
            }
        }
    }

    /// Valid forms with arbitrary bytes in their file and prompt pass and keep the file intact.
    #[test]
    fn arbitrary_files_pass_intact(
        file in proptest::collection::vec(any::<u8>(), 1..400),
        prompt in "[ -~]{0,40}",
    ) {
        let parts: Vec<Part> = vec![
            ("model", None, b"m"),
            ("prompt", None, prompt.as_bytes()),
            ("file", Some("x.wav"), &file),
        ];
        // Skip the (rare) inputs that contain the test's own boundary: not a form.
        prop_assume!(memchr::memmem::find(&file, B.as_bytes()).is_none());
        let v = check(&parts).expect("valid");
        let f = reparse(&v);
        prop_assert_eq!(&f.parts().last().expect("file").data[..], &file[..]);
    }
}
