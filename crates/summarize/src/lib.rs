//! Summaries of Telegram chats through the client's OpenAI-compatible API: the pure parts, no
//! I/O (the `cocoon summarize` command drives them over HTTP; a bot can too).
//!
//! - [`export`]: reading a Telegram Desktop chat export (`result.json`), one chat or a whole
//!   account's, into [`export::Message`]s (author, time, plain text), bounded.
//! - [`plan`]: turning messages into transcript lines, cutting them into chunks that fit the
//!   model's context (map), grouping partial summaries again until one fits (reduce), and the
//!   prompts for each step.
//!
//! Nothing here logs: message texts are someone's private chats.

pub mod export;
pub mod plan;

pub use export::{parse_export, Chat, ExportError, Message};
pub use plan::{chunks, map_messages, reduce_messages, transcript, Budget};
