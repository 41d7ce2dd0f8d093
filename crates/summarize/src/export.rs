//! Telegram Desktop's chat export (`result.json`, "Export chat history" / "Export Telegram
//! data" in machine-readable JSON): one chat (`{"name", "type", "id", "messages": [...]}`) or a
//! whole account (`{"chats": {"list": [chat, ...]}}`). A message has `date` (local time,
//! `2024-01-31T18:05:00`) and, in newer exports, `date_unixtime`; `from` (the author's name,
//! absent or null for deleted accounts); `text`, a string or an array of strings and entities
//! (`{"type": "bold", "text": "..."}`). Service messages (joins, pins) and messages without text
//! are skipped. The file is the user's, but may be huge or odd: at most [`MAX_MESSAGES`]
//! messages are read and each text is cut at [`MAX_TEXT_CHARS`]; nothing here panics on any bytes
//! (fuzz target `telegram_export`).

use serde::Deserialize;

/// Most messages read from one chat.
pub const MAX_MESSAGES: usize = 1_000_000;
/// A message's text is cut at this many characters.
pub const MAX_TEXT_CHARS: usize = 16 * 1024;

/// Why an export cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("not a Telegram Desktop JSON export: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the export holds no chat with messages")]
    NoChat,
    #[error("no chat named {0:?} in the export (chats: {1})")]
    NotFound(String, String),
    #[error("the export holds several chats ({0}); pick one with --chat NAME")]
    Ambiguous(String),
}

/// One chat's messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub name: String,
    pub messages: Vec<Message>,
}

/// A message as a summary needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unix seconds (the export's local time read as UTC when it has no `date_unixtime`).
    pub unix: i64,
    pub from: String,
    pub text: String,
}

#[derive(Deserialize)]
struct RawExport {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    messages: Option<Vec<RawMessage>>,
    #[serde(default)]
    chats: Option<RawChats>,
}

#[derive(Deserialize)]
struct RawChats {
    #[serde(default)]
    list: Vec<RawChat>,
}

#[derive(Deserialize)]
struct RawChat {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    date_unixtime: Option<serde_json::Value>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    text: serde_json::Value,
}

/// Reads an export; `chat` picks one chat of a whole-account export by name (exact, then
/// case-insensitive). A single-chat export is taken whatever its name.
pub fn parse_export(bytes: &[u8], chat: Option<&str>) -> Result<Chat, ExportError> {
    let raw: RawExport = serde_json::from_slice(bytes)?;
    let chats: Vec<(String, Vec<RawMessage>)> = match (raw.messages, raw.chats) {
        (Some(m), _) => vec![(raw.name.unwrap_or_default(), m)],
        (None, Some(c)) => c
            .list
            .into_iter()
            .filter(|c| !c.messages.is_empty())
            .map(|c| (c.name.unwrap_or_default(), c.messages))
            .collect(),
        (None, None) => Vec::new(),
    };
    let names = || {
        chats
            .iter()
            .map(|(n, _)| format!("{n:?}"))
            .take(20)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let picked = match chat {
        _ if chats.is_empty() => return Err(ExportError::NoChat),
        None if chats.len() == 1 => 0,
        None => return Err(ExportError::Ambiguous(names())),
        Some(want) if chats.len() == 1 && raw_is_single(&chats, want) => 0,
        Some(want) => chats
            .iter()
            .position(|(n, _)| n == want)
            .or_else(|| {
                chats
                    .iter()
                    .position(|(n, _)| n.to_lowercase() == want.to_lowercase())
            })
            .ok_or_else(|| ExportError::NotFound(want.to_string(), names()))?,
    };
    let Some((name, raw_messages)) = chats.into_iter().nth(picked) else {
        return Err(ExportError::NoChat);
    };
    let mut messages: Vec<Message> = raw_messages
        .into_iter()
        .take(MAX_MESSAGES)
        .filter(|m| m.kind.as_deref().unwrap_or("message") == "message")
        .filter_map(|m| {
            let text = plain_text(&m.text);
            if text.trim().is_empty() {
                return None;
            }
            Some(Message {
                unix: unix_time(&m)?,
                from: m.from.unwrap_or_else(|| "(deleted account)".into()),
                text,
            })
        })
        .collect();
    messages.sort_by_key(|m| m.unix);
    Ok(Chat { name, messages })
}

/// A single-chat export asked for by a name: taken if the name matches (or the chat has none).
fn raw_is_single(chats: &[(String, Vec<RawMessage>)], want: &str) -> bool {
    chats
        .first()
        .is_some_and(|(n, _)| n.is_empty() || n.to_lowercase() == want.to_lowercase())
}

/// The text of a message: a string, or an array of strings and entities with `text`.
fn plain_text(v: &serde_json::Value) -> String {
    let mut out = String::new();
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(parts) => {
            for p in parts {
                match p {
                    serde_json::Value::String(s) => out.push_str(s),
                    serde_json::Value::Object(o) => {
                        if let Some(t) = o.get("text").and_then(|t| t.as_str()) {
                            out.push_str(t);
                        }
                    }
                    _ => {}
                }
                if out.len() > MAX_TEXT_CHARS * 4 {
                    break;
                }
            }
        }
        _ => {}
    }
    match out.char_indices().nth(MAX_TEXT_CHARS) {
        Some((at, _)) => out[..at].to_string(),
        None => out,
    }
}

fn unix_time(m: &RawMessage) -> Option<i64> {
    let from_unixtime = match &m.date_unixtime {
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    from_unixtime.or_else(|| m.date.as_deref().and_then(parse_date))
}

/// `2024-01-31`, `2024-01-31T18:05:00` or with a space, optionally with `Z`: as UTC seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let full = if s.len() == 10 {
        format!("{s}T00:00:00")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).ok()?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

#[cfg(test)]
mod tests;
