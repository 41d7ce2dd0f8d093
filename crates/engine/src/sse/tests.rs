//! Tests for the SSE parser: the reference SSE body, line endings, fields, UTF-8 splits, caps, and
//! split-invariance property tests.

use super::*;
use proptest::prelude::*;

const SSE_DIRECT: &[u8] = include_bytes!("../../testdata/sse-direct.response.body");

fn parse_all(max: usize, chunks: &[&[u8]]) -> (Vec<SseEvent>, usize) {
    let mut p = SseParser::new(max);
    let mut events = Vec::new();
    let mut errors = 0;
    for c in chunks {
        if p.feed(c, |e| events.push(e)).is_err() {
            errors += 1;
        }
    }
    events.extend(p.finish());
    (events, errors)
}

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn reference_sse_body() {
    let mut p = SseParser::new(4096);
    let events = p.push(SSE_DIRECT).unwrap();
    assert_eq!(events.len(), 8);
    assert!(events[0].data.starts_with(r#"{"id": "chatcmpl-fake""#));
    assert!(events[6].data.contains(r#""usage": {"prompt_tokens": 12"#));
    assert_eq!(events[7].data, "[DONE]");
    assert!(events.iter().all(|e| e.event.is_none() && e.id.is_none()));
    assert_eq!(p.finish(), None);
}

#[test]
fn reference_sse_byte_by_byte() {
    let chunks: Vec<&[u8]> = SSE_DIRECT.chunks(1).collect();
    let (split, errors) = parse_all(4096, &chunks);
    assert_eq!(errors, 0);
    let (whole, _) = parse_all(4096, &[SSE_DIRECT]);
    assert_eq!(split, whole);
}

#[test]
fn line_endings_crlf_cr_lf() {
    let (ev, _) = parse_all(1024, &[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]);
    assert_eq!(data(&ev), ["a", "b", "c"]);
    // CRLF split across chunks is one line end, not two.
    let (ev, _) = parse_all(1024, &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(data(&ev), ["a\nb"]);
}

#[test]
fn multiline_data_comments_fields() {
    let input =
        b": keep-alive\nevent: delta\nid: 7\nretry: 1500\ndata: line1\ndata:line2\ndata\n\n\
data: next\n\n";
    let (ev, _) = parse_all(1024, &[input]);
    assert_eq!(
        ev[0],
        SseEvent {
            event: Some("delta".into()),
            data: "line1\nline2\n".into(),
            id: Some("7".into()),
            retry: Some(1500),
        }
    );
    // The id persists; the event type and retry do not.
    assert_eq!(
        ev[1],
        SseEvent {
            event: None,
            data: "next".into(),
            id: Some("7".into()),
            retry: None,
        }
    );
}

#[test]
fn blocks_without_data_are_not_events() {
    let (ev, _) = parse_all(1024, &[b"event: x\n\nretry: 5\n\n: c\n\n\n\ndata: y\n\n"]);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].event, None);
    assert_eq!(ev[0].retry, None);
}

#[test]
fn field_parsing_details() {
    // Only one leading space is stripped; a value may contain ':'.
    let (ev, _) = parse_all(1024, &[b"data:  two spaces: yes\n\n"]);
    assert_eq!(ev[0].data, " two spaces: yes");
    // Unknown fields are ignored, bad retry ignored, id with NUL ignored.
    let (ev, _) = parse_all(1024, &[b"foo: bar\nretry: 1x\nid: a\0b\ndata: d\n\n"]);
    assert_eq!(
        ev[0],
        SseEvent {
            data: "d".into(),
            ..Default::default()
        }
    );
}

#[test]
fn utf8_split_and_bom() {
    let text = "data: héllo 😀\n\n".as_bytes();
    let mut input = BOM.to_vec();
    input.extend_from_slice(text);
    for cut in 0..input.len() {
        let (ev, errors) = parse_all(1024, &[&input[..cut], &input[cut..]]);
        assert_eq!(errors, 0);
        assert_eq!(data(&ev), ["héllo 😀"], "cut at {cut}");
    }
    // Invalid UTF-8 is replaced, not an error.
    let (ev, _) = parse_all(1024, &[b"data: \xff\xfe\n\n"]);
    assert_eq!(ev[0].data, "\u{fffd}\u{fffd}");
}

#[test]
fn finish_dispatches_unterminated_event() {
    let (ev, _) = parse_all(1024, &[b"data: {\"usage\":1}"]);
    assert_eq!(data(&ev), ["{\"usage\":1}"]);
    let (ev, _) = parse_all(1024, &[b"data: x\n"]);
    assert_eq!(data(&ev), ["x"]);
    let (ev, _) = parse_all(1024, &[b"data: x\n\n"]);
    assert_eq!(data(&ev), ["x"]);
}

#[test]
fn line_too_long_drops_event_and_recovers() {
    let mut p = SseParser::new(16);
    let mut ev = Vec::new();
    let r = p.feed(
        b"data: ok\n\ndata: 0123456789abcdefXYZ\ndata: tail\n\ndata: after\n\n",
        |e| ev.push(e),
    );
    assert_eq!(r, Err(SseError::LineTooLong { limit: 16 }));
    assert_eq!(data(&ev), ["ok", "after"]);
    // push() reports the error.
    let mut p = SseParser::new(8);
    assert!(p.push(b"data: 123456789").is_err());
    assert!(p.buffered_len() <= 8);
    // The rest of the long line is skipped even across chunks.
    assert_eq!(
        p.push(b"more\n\ndata: z\n\n").unwrap(),
        vec![SseEvent {
            data: "z".into(),
            ..Default::default()
        }]
    );
}

#[test]
fn event_too_large_drops_event() {
    let mut p = SseParser::with_limits(16, 20);
    let mut ev = Vec::new();
    let r = p.feed(
        b"data: 0123456789\ndata: 0123456789\ndata: x\n\ndata: y\n\n",
        |e| ev.push(e),
    );
    assert_eq!(r, Err(SseError::EventTooLarge { limit: 20 }));
    assert_eq!(data(&ev), ["y"]);
}

/// One event as a generator sees it.
#[derive(Clone, Debug)]
struct GenEvent {
    event: Option<String>,
    id: Option<String>,
    lines: Vec<String>,
    comment: bool,
}

fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        proptest::option::of("[a-z]{1,6}"),
        proptest::option::of("[a-z0-9]{1,4}"),
        prop::collection::vec("[ -~é😀\\t]{0,12}", 1..4),
        any::<bool>(),
    )
        .prop_map(|(event, id, lines, comment)| GenEvent {
            event,
            id,
            lines,
            comment,
        })
}

fn render(events: &[GenEvent], eol: &str) -> Vec<u8> {
    let mut s = String::new();
    for e in events {
        if e.comment {
            s.push_str(": comment");
            s.push_str(eol);
        }
        if let Some(t) = &e.event {
            s.push_str(&format!("event: {t}{eol}"));
        }
        if let Some(id) = &e.id {
            s.push_str(&format!("id: {id}{eol}"));
        }
        for l in &e.lines {
            s.push_str(&format!("data: {l}{eol}"));
        }
        s.push_str(eol);
    }
    s.into_bytes()
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
    fn any_split_gives_the_same_events(
        events in prop::collection::vec(gen_event(), 0..6),
        eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let input = render(&events, eol);
        let (whole, errors) = parse_all(1024, &[&input]);
        prop_assert_eq!(errors, 0);
        // Matches what was generated.
        prop_assert_eq!(whole.len(), events.len());
        let mut last_id = None;
        for (got, want) in whole.iter().zip(&events) {
            if want.id.is_some() { last_id = want.id.clone(); }
            prop_assert_eq!(&got.data, &want.lines.join("\n"));
            prop_assert_eq!(&got.event, &want.event);
            prop_assert_eq!(&got.id, &last_id);
        }
        let (split, _) = parse_all(1024, &split_at(&input, cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_split_invariant_and_bounded(
        input in prop::collection::vec(prop_oneof![
            Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), Just(b'a'), Just(b't'),
            any::<u8>()
        ], 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in 1usize..32,
    ) {
        let mut p = SseParser::new(max);
        let mut split_events = Vec::new();
        for c in split_at(&input, cuts) {
            let _ = p.feed(c, |e| split_events.push(e));
            prop_assert!(p.buffered_len() <= 4 * max);
        }
        split_events.extend(p.finish());
        let mut q = SseParser::new(max);
        let mut whole_events = Vec::new();
        let _ = q.feed(&input, |e| whole_events.push(e));
        whole_events.extend(q.finish());
        prop_assert_eq!(split_events, whole_events);
    }
}
