//! From messages to the requests of a map-reduce summary: transcript lines
//! (`2024-01-31:` when the day changes, then `[18:05] Alice: text`), chunks that fit the model's context, and the chat
//! completion messages for each step. Sizes are in characters (about 4 per token for the
//! languages a chat is usually in); the caller picks the budget from the model's context.

use serde_json::{json, Value};

use crate::export::Message;

/// How much text one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Characters of transcript (or of partial summaries) in one request.
    pub chunk_chars: usize,
}

impl Default for Budget {
    /// 1 200 characters: chat transcripts run 2 to 4 characters a token (names, times, short
    /// words), so at most about 600 tokens; with the prompt and a 200-token answer that fits the
    /// 1 024 tokens each of the embedded engine's 4 slots has by default. Larger models take
    /// more (`--chunk-chars`), in fewer requests.
    fn default() -> Self {
        Self { chunk_chars: 1_200 }
    }
}

/// The transcript of `messages` sent at or after `since` (unix seconds): a line with the date
/// (`2024-01-31:`) where the day changes, then `[18:05] Alice: text` a message (times in UTC; a
/// message's own line breaks become ` / `). Dates once a day, not on every line: digits cost a
/// token each with many tokenizers.
pub fn transcript(messages: &[Message], since: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    let mut day = String::new();
    for m in messages
        .iter()
        .filter(|m| since.is_none_or(|s| m.unix >= s))
    {
        let text = m
            .text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        let (date, time) = date_and_minute(m.unix);
        if date != day {
            out.push(format!("{date}:"));
            day = date;
        }
        out.push(format!("[{time}] {}: {text}", m.from));
    }
    out
}

/// The last second of year 9999: the latest time a transcript line shows.
const LAST_SHOWN: i64 = 253_402_300_799;

/// (`2024-01-31`, `18:05`) in UTC for unix seconds; times before 1970 show as 1970 and after
/// 9999 as 9999 (an export's `date_unixtime` can say anything).
fn date_and_minute(unix: i64) -> (String, String) {
    let secs = unix.clamp(0, LAST_SHOWN).unsigned_abs();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    (
        s.get(..10).unwrap_or(&s).to_string(),
        s.get(11..16).unwrap_or("").to_string(),
    )
}

/// `items` joined with `sep` into chunks of at most `max_chars` characters each, in order; an
/// item longer than that alone is cut into pieces (on character boundaries). Empty input, no
/// chunks.
pub fn chunks(items: &[String], max_chars: usize, sep: &str) -> Vec<String> {
    let max = max_chars.max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0usize;
    let sep_chars = sep.chars().count();
    for item in items {
        let mut pieces: Vec<String> = Vec::new();
        let n = item.chars().count();
        if n > max {
            let chars: Vec<char> = item.chars().collect();
            pieces.extend(chars.chunks(max).map(|c| c.iter().collect::<String>()));
        } else {
            pieces.push(item.clone());
        }
        for piece in pieces {
            let pn = piece.chars().count();
            let extra = if current.is_empty() { 0 } else { sep_chars };
            if !current.is_empty() && current_chars + extra + pn > max {
                out.push(std::mem::take(&mut current));
                current_chars = 0;
            }
            if !current.is_empty() {
                current.push_str(sep);
                current_chars += sep_chars;
            }
            current.push_str(&piece);
            current_chars += pn;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

const SYSTEM: &str = "You summarize Telegram chat transcripts: a line with a date starts each \
day, then each line is [time] author: message. Write the summary in the language most of the messages are in. \
Be brief and concrete: the topics, what was decided or agreed, open questions, and who said \
what when it matters. Do not invent anything that is not in the messages.";

/// The chat completion messages that summarize one chunk (`part` of `parts`, from 1).
pub fn map_messages(chat: &str, part: usize, parts: usize, chunk: &str) -> Value {
    let whole = if parts == 1 {
        format!("Summarize the chat \"{chat}\":")
    } else {
        format!("Summarize part {part} of {parts} of the chat \"{chat}\":")
    };
    json!([
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": format!("{whole}\n\n{chunk}")},
    ])
}

/// The chat completion messages that combine summaries of consecutive parts into one.
pub fn reduce_messages(chat: &str, summaries: &str) -> Value {
    json!([
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": format!(
            "These are summaries of consecutive parts of the chat \"{chat}\", oldest first, \
             separated by blank lines. Combine them into one summary of the whole chat:\n\n{summaries}"
        )},
    ])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn msg(unix: i64, from: &str, text: &str) -> Message {
        Message {
            unix,
            from: from.into(),
            text: text.into(),
        }
    }

    #[test]
    fn transcript_lines_carry_time_author_and_one_line_of_text() {
        let m = [
            msg(1_706_724_300, "Alice", "hello\n\n  there  "),
            msg(1_706_724_360, "Bob", "hi"),
        ];
        assert_eq!(
            transcript(&m, None),
            [
                "2024-01-31:",
                "[18:05] Alice: hello / there",
                "[18:06] Bob: hi"
            ]
        );
        assert_eq!(
            transcript(&m, Some(1_706_724_301)),
            ["2024-01-31:", "[18:06] Bob: hi"]
        );
        let next_day = [msg(1_706_724_300, "A", "x"), msg(1_706_810_700, "B", "y")];
        assert_eq!(
            transcript(&next_day, None),
            ["2024-01-31:", "[18:05] A: x", "2024-02-01:", "[18:05] B: y"]
        );
    }

    #[test]
    fn chunks_keep_order_and_the_limit_and_cut_long_items() {
        let items: Vec<String> = ["aaaa", "bb", "cccccccccc", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = chunks(&items, 7, "\n");
        assert_eq!(c, ["aaaa\nbb", "ccccccc", "ccc\nd"]);
        assert!(chunks(&[], 10, "\n").is_empty());
        // Multi-byte characters are counted as characters and never split.
        let c = chunks(&["ééééé".to_string()], 2, "\n");
        assert_eq!(c, ["éé", "éé", "é"]);
    }

    #[test]
    fn prompts_name_the_chat_and_the_part() {
        let m = map_messages("Team", 2, 5, "[..] A: x");
        assert!(m[1]["content"]
            .as_str()
            .unwrap_or("")
            .starts_with("Summarize part 2 of 5 of the chat \"Team\""));
        let one = map_messages("Team", 1, 1, "x");
        assert!(!one[1]["content"].as_str().unwrap_or("").contains("part"));
        let r = reduce_messages("Team", "s1\n\ns2");
        assert!(r[1]["content"].as_str().unwrap_or("").ends_with("s1\n\ns2"));
    }

    #[test]
    fn any_time_shows_without_panicking() {
        for unix in [i64::MIN, -1, 0, LAST_SHOWN, LAST_SHOWN + 1, i64::MAX] {
            let lines = transcript(&[msg(unix, "A", "x")], None);
            assert_eq!(lines.len(), 2, "{unix}");
        }
        assert_eq!(
            transcript(&[msg(i64::MAX, "A", "x")], None)[0],
            "9999-12-31:"
        );
        assert_eq!(transcript(&[msg(-5, "A", "x")], None)[0], "1970-01-01:");
    }

    proptest! {
        /// Every chunk is within the limit, and joining the chunks gives back every item's
        /// characters in order.
        #[test]
        fn chunks_are_bounded_and_lose_nothing(items in proptest::collection::vec("[a-zé ]{0,40}", 0..40), max in 1usize..60) {
            let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
            let c = chunks(&items, max, "|");
            for chunk in &c {
                prop_assert!(chunk.chars().count() <= max.max(1));
            }
            let all: String = items.concat();
            let back: String = c.concat().replace('|', "");
            prop_assert_eq!(back, all);
        }
    }
}
