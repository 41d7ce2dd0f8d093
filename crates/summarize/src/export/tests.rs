use super::*;

const ONE_CHAT: &str = r#"{
  "name": "Team",
  "type": "private_group",
  "id": 42,
  "messages": [
    {"id": 2, "type": "message", "date": "2024-01-31T18:06:00", "date_unixtime": "1706724360",
     "from": "Bob", "from_id": "user2", "text": ["see ", {"type": "bold", "text": "this"}, " link"]},
    {"id": 1, "type": "message", "date": "2024-01-31T18:05:00", "date_unixtime": "1706724300",
     "from": "Alice", "from_id": "user1", "text": "hello"},
    {"id": 3, "type": "service", "date": "2024-01-31T18:07:00", "actor": "Bob", "action": "pin_message", "text": ""},
    {"id": 4, "type": "message", "date": "2024-01-31T18:08:00", "from": null, "text": "old export, no unixtime"},
    {"id": 5, "type": "message", "date": "2024-01-31T18:09:00", "from": "Alice", "text": "", "photo": "photos/1.jpg"}
  ]
}"#;

#[test]
fn a_single_chat_export_reads_texts_authors_and_times_in_order() {
    let chat = parse_export(ONE_CHAT.as_bytes(), None).expect("reads");
    assert_eq!(chat.name, "Team");
    let got: Vec<(i64, &str, &str)> = chat
        .messages
        .iter()
        .map(|m| (m.unix, m.from.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1_706_724_300, "Alice", "hello"),
            (1_706_724_360, "Bob", "see this link"),
            (
                1_706_724_480,
                "(deleted account)",
                "old export, no unixtime"
            ),
        ],
        "service and text-less messages skipped; sorted by time"
    );
    // A name that is not this chat's.
    assert!(matches!(
        parse_export(ONE_CHAT.as_bytes(), Some("Other")),
        Err(ExportError::NotFound(..))
    ));
    assert!(parse_export(ONE_CHAT.as_bytes(), Some("team")).is_ok());
}

#[test]
fn a_whole_account_export_needs_a_chat_name_when_it_holds_several() {
    let all = format!(
        r#"{{"about": "...", "chats": {{"about": "...", "list": [{ONE_CHAT}, {{"name": "Family", "type": "private_group", "messages": [{{"type": "message", "date_unixtime": "1", "from": "Mum", "text": "dinner?"}}]}}, {{"name": "Empty", "messages": []}}]}}}}"#
    );
    match parse_export(all.as_bytes(), None) {
        Err(ExportError::Ambiguous(names)) => {
            assert!(
                names.contains("\"Team\"") && names.contains("\"Family\""),
                "{names}"
            );
            assert!(
                !names.contains("Empty"),
                "chats without messages are not offered"
            );
        }
        other => panic!("{other:?}"),
    }
    let family = parse_export(all.as_bytes(), Some("family")).expect("case-insensitive");
    assert_eq!(family.messages[0].text, "dinner?");
    assert!(matches!(
        parse_export(all.as_bytes(), Some("Work")),
        Err(ExportError::NotFound(..))
    ));
}

#[test]
fn bad_files_are_errors_not_panics() {
    for bad in [&b""[..], b"[]", b"{\"messages\": 5}", b"\xff\xfe", b"{}"] {
        assert!(parse_export(bad, None).is_err(), "{bad:?}");
    }
    let long = format!(
        r#"{{"name": "x", "messages": [{{"type": "message", "date_unixtime": "5", "from": "A", "text": "{}"}}]}}"#,
        "é".repeat(MAX_TEXT_CHARS + 10)
    );
    let chat = parse_export(long.as_bytes(), None).expect("reads");
    assert_eq!(chat.messages[0].text.chars().count(), MAX_TEXT_CHARS);
}

#[test]
fn dates_read_as_utc() {
    assert_eq!(parse_date("2024-01-31"), Some(1_706_659_200));
    assert_eq!(parse_date("2024-01-31T18:05:00"), Some(1_706_724_300));
    assert_eq!(parse_date("2024-01-31 18:05:00Z"), Some(1_706_724_300));
    assert_eq!(parse_date("yesterday"), None);
}

/// Found by the fuzz target `telegram_export`: a `date_unixtime` far past year 9999 made the
/// transcript's date formatting overflow.
#[test]
fn a_time_beyond_year_9999_reads_and_shows() {
    let bytes: &[u8] = br#"{"chats": {"list": [{"name": "x", "type": "private_group", "id": 1, "messages": [{"id": 1, "type": "message", "date": "2024-01-31T18:05:00", "date_unixtime": "1706706724300", "f": "A", "text": ["hi ", {"type": "bold", "text": "there"}]}, {"id": 2, "type": "service", "texrom": "B", "text": "yo"}]}]}}"#;
    let chat = parse_export(bytes, Some("x")).expect("reads");
    let lines = crate::transcript(&chat.messages, Some(0));
    assert_eq!(lines.first().map(String::as_str), Some("9999-12-31:"));
}
