//! From messages to the requests of a map-reduce summary: transcript lines
//! (`[2024-01-31 18:05] Alice: text`), chunks that fit the model's context, and the chat
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

/// The transcript of `messages` sent at or after `since` (unix seconds), one line each; a
/// message's own line breaks become ` / `.
pub fn transcript(messages: &[Message], since: Option<i64>) -> Vec<String> {
    messages
        .iter()
        .filter(|m| since.is_none_or(|s| m.unix >= s))
        .map(|m| {
            let text = m
                .text
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" / ");
            format!("[{}] {}: {}", minute(m.unix), m.from, text)
        })
        .collect()
}

/// `2024-01-31 18:05` (UTC) for unix seconds.
fn minute(unix: i64) -> String {
    let t = if unix >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(unix.unsigned_abs())
    };
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..16).unwrap_or(&s).replacen('T', " ", 1)
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

const SYSTEM: &str = "You summarize Telegram chat transcripts. Each line is \
[date time] author: message. Write the summary in the language most of the messages are in. \
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
                "[2024-01-31 18:05] Alice: hello / there",
                "[2024-01-31 18:06] Bob: hi"
            ]
        );
        assert_eq!(transcript(&m, Some(1_706_724_301)).len(), 1);
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
