//! `cocoon summarize FILE`: a summary of a Telegram Desktop chat export (`result.json`)
//! through a client's OpenAI-compatible API. The transcript is cut into chunks that fit the
//! model's context (`cocoon_summarize::plan`); each is summarized (several at once, with a
//! progress bar on stderr), the partial summaries are combined until one request holds them,
//! and the last step streams to stdout. The total tokens and cost (the answers' `usage.cost`)
//! close the run on stderr.
//!
//! The messages go only to the client, which seals them to workers it verified; nothing of
//! them is printed but the summary, and nothing is logged.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cocoon_engine::sse::SseParser;
use cocoon_summarize::{chunks, map_messages, parse_export, reduce_messages, transcript};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

/// Largest export read (a whole-account export with media lists can be large).
const MAX_EXPORT_BYTES: u64 = 1 << 30;
/// How many reduce rounds at most (each divides the summaries by the chunk's capacity).
const MAX_ROUNDS: usize = 8;

#[derive(Args, Debug)]
pub struct SummarizeArgs {
    /// The export: `result.json` from Telegram Desktop ("Export chat history", JSON format).
    pub file: PathBuf,
    /// Only messages sent on or after this time (`2024-01-31` or `2024-01-31T18:00:00`, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// The chat to summarize, in an export of a whole account.
    #[arg(long)]
    pub chat: Option<String>,
    /// The client's API.
    #[arg(long, default_value = "http://127.0.0.1:10000")]
    pub client: String,
    /// An API key for the client (or its bearer token).
    #[arg(long, env = "COCOON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model; default: the first one the client lists.
    #[arg(long)]
    pub model: Option<String>,
    /// Characters of transcript in one request (2 to 4 a token): keep the prompt, this and
    /// `--max-tokens` within the model's context (the default fits the embedded engine's
    /// 1 024-token slots; larger models take more, in fewer requests). At least 200.
    #[arg(long, default_value_t = cocoon_summarize::Budget::default().chunk_chars)]
    pub chunk_chars: usize,
    /// Most tokens of each summary.
    #[arg(long, default_value_t = 200)]
    pub max_tokens: u64,
    /// Parts summarized at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Seconds each request may take.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// What the answers cost, added up.
#[derive(Default, Debug, Clone, Copy)]
struct Spent {
    requests: u64,
    tokens: u64,
    nanoton: u64,
}

impl Spent {
    fn add(&mut self, usage: &Value) {
        self.requests += 1;
        self.tokens += usage["total_tokens"].as_u64().unwrap_or(0);
        self.nanoton += usage["cost_nanoton"]
            .as_u64()
            .or_else(|| usage["total_cost"].as_u64())
            .unwrap_or(0);
    }
}

pub async fn run(a: SummarizeArgs) -> Result<()> {
    if a.chunk_chars < 200 {
        bail!("--chunk-chars must be at least 200");
    }
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?
        .len();
    if size > MAX_EXPORT_BYTES {
        bail!("{} is larger than 1 GiB", a.file.display());
    }
    let path = a.file.clone();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .context("reading the export")?
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let chat =
        parse_export(&bytes, a.chat.as_deref()).with_context(|| format!("{}", a.file.display()))?;
    drop(bytes);
    let since = match a.since.as_deref() {
        Some(s) => Some(cocoon_summarize::export::parse_date(s).with_context(|| {
            format!("--since {s:?}: give a date (2024-01-31) or a time (2024-01-31T18:00:00)")
        })?),
        None => None,
    };
    let lines = transcript(&chat.messages, since);
    let count = chat
        .messages
        .iter()
        .filter(|m| since.is_none_or(|s| m.unix >= s))
        .count();
    if lines.is_empty() {
        bail!(
            "no messages to summarize in {:?}{}",
            chat.name,
            if since.is_some() {
                " since that time"
            } else {
                ""
            }
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(a.timeout))
        .build()?;
    let api = Api {
        http,
        base: a.client.trim_end_matches('/').to_string(),
        key: a.api_key.clone(),
        model: String::new(),
        max_tokens: a.max_tokens,
        partial_tokens: partial_tokens(a.chunk_chars, a.max_tokens),
    };
    let model = match &a.model {
        Some(m) => m.clone(),
        None => api.first_model().await?,
    };
    let api = Api { model, ..api };
    let parts = chunks(&lines, a.chunk_chars, "\n");
    eprintln!(
        "{}: {} messages, {} part(s) of up to {} characters, model {}",
        chat.name,
        count,
        parts.len(),
        a.chunk_chars,
        api.model
    );
    let mut spent = Spent::default();
    let mut out = std::io::stdout();
    if parts.len() == 1 {
        let u = api
            .stream(map_messages(&chat.name, 1, 1, &parts[0]), &mut out)
            .await?;
        spent.add(&u);
    } else {
        let mut summaries = api
            .summarize_all(
                parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| map_messages(&chat.name, i + 1, parts.len(), p))
                    .collect(),
                a.parallel,
                "parts",
                &mut spent,
            )
            .await?;
        let mut rounds = 0;
        loop {
            let groups = chunks(&summaries, a.chunk_chars, "\n\n");
            if groups.len() <= 1 {
                break;
            }
            if groups.len() >= summaries.len() || rounds >= MAX_ROUNDS {
                // Combining no longer shrinks the pile (the model wrote past what was asked):
                // the last request takes an equal share of each.
                let share = (a.chunk_chars / summaries.len()).max(1);
                summaries = summaries
                    .iter()
                    .map(|s| s.chars().take(share).collect())
                    .collect();
                break;
            }
            rounds += 1;
            summaries = api
                .summarize_all(
                    groups
                        .iter()
                        .map(|g| reduce_messages(&chat.name, g))
                        .collect(),
                    a.parallel,
                    "combining",
                    &mut spent,
                )
                .await?;
        }
        let u = api
            .stream(
                reduce_messages(&chat.name, &summaries.join("\n\n")),
                &mut out,
            )
            .await?;
        spent.add(&u);
    }
    writeln!(out)?;
    out.flush()?;
    eprintln!(
        "{} request(s), {} tokens, cost {} TON ({} nanoTON)",
        spent.requests,
        spent.tokens,
        cocoon_engine::usage_cost::ton_string(spent.nanoton),
        spent.nanoton
    );
    Ok(())
}

/// A partial summary's token limit: a third of a request's characters at 3 characters a
/// token, so about three partial summaries fit in one request that combines them; at least 32,
/// at most the final summary's.
fn partial_tokens(chunk_chars: usize, max_tokens: u64) -> u64 {
    let third = u64::try_from(chunk_chars / 9).unwrap_or(u64::MAX);
    third.clamp(32, max_tokens.max(32))
}

/// The client's chat completions.
struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    model: String,
    /// The final summary's limit.
    max_tokens: u64,
    /// A partial summary's limit: small enough that several fit in one request when they are
    /// combined, so each round of combining shrinks the pile.
    partial_tokens: u64,
}

impl Api {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.post(format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn first_model(&self) -> Result<String> {
        let mut r = self.http.get(format!("{}/v1/models", self.base));
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        let v: Value = check(r.send().await.with_context(|| self.unreachable())?)
            .await?
            .json()
            .await?;
        v["data"][0]["id"]
            .as_str()
            .map(str::to_string)
            .context("the client lists no model (is a worker connected?); give --model")
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the client at {} (is it running? see --client)",
            self.base
        )
    }

    /// One summary, whole: its text and usage.
    async fn summarize(&self, messages: Value) -> Result<(String, Value)> {
        let body =
            json!({"model": self.model, "messages": messages, "max_tokens": self.partial_tokens});
        let r = self
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        let v: Value = check(r).await?.json().await?;
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_string();
        Ok((text, v["usage"].clone()))
    }

    /// Each request, `parallel` at once, in order, with a progress bar.
    async fn summarize_all(
        &self,
        requests: Vec<Value>,
        parallel: usize,
        what: &str,
        spent: &mut Spent,
    ) -> Result<Vec<String>> {
        let bar = indicatif::ProgressBar::new(requests.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        let done: Vec<(String, Value)> = stream::iter(requests)
            .map(|m| {
                let bar = bar.clone();
                async move {
                    let r = self.summarize(m).await;
                    bar.inc(1);
                    r
                }
            })
            .buffered(parallel.max(1))
            .try_collect()
            .await?;
        bar.finish_and_clear();
        Ok(done
            .into_iter()
            .map(|(text, usage)| {
                spent.add(&usage);
                text
            })
            .collect())
    }

    /// The last summary, streamed to `out` as it comes; its usage.
    async fn stream(&self, messages: Value, out: &mut impl Write) -> Result<Value> {
        let body = json!({
            "model": self.model, "messages": messages, "max_tokens": self.max_tokens,
            "stream": true, "stream_options": {"include_usage": true},
        });
        let r = self
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        let mut body = check(r).await?.bytes_stream();
        let mut sse = SseParser::new(1 << 20);
        let mut usage = Value::Null;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the answer broke off")?;
            for event in sse.push(&chunk).context("the answer is not a stream")? {
                if event.data.trim() == "[DONE]" {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                if let Some(e) = v.get("error") {
                    bail!(
                        "the answer failed: {}",
                        e["message"].as_str().unwrap_or("unknown error")
                    );
                }
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    out.write_all(t.as_bytes())?;
                    out.flush()?;
                }
                if v["usage"].is_object() {
                    usage = v["usage"].clone();
                }
            }
        }
        Ok(usage)
    }
}

/// The response, or its OpenAI-shaped error as an error.
async fn check(r: reqwest::Response) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().unwrap_or("no details");
    bail!("the client answered {status}: {message}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_summaries_are_small_enough_to_combine_three_at_a_time() {
        assert_eq!(super::partial_tokens(1200, 200), 133);
        assert_eq!(super::partial_tokens(100_000, 200), 200);
        assert_eq!(super::partial_tokens(200, 200), 32);
        assert_eq!(super::partial_tokens(200, 10), 32);
    }
}
