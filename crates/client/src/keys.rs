//! Per-app API keys for the client's OpenAI-compatible API (docs/KEYS.md): each key has a name,
//! an optional model list, budget (tokens or TON per day, month or in total), rate limits and
//! an expiry; requests carry it as `Authorization: Bearer sk-cocoon-…`.
//!
//! What lives here: the key types, the [`Keys`] shell (the SQLite file, the in-memory ring, the
//! flush/reload task), the hooks `http.rs` calls ([`authorize`], [`admit`], [`settle`]), the
//! `/admin/keys/*` routes, and the per-key stats. The admission rules are in `keys/limits.rs`
//! (pure, no I/O), the file in `keys/store.rs`. What must not: secrets in clear anywhere but
//! the one answer that creates them (logs name key ids only), or anything about proxies.

mod limits;
mod store;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cocoon_proto::messages::TokensUsed;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use limits::{period_end, period_start, KeyRing, KeyState, Live, Reason, Refusal, Ticket};
pub use store::{Store, SCHEMA_VERSION};

use crate::http::{bearer, constant_time_eq};
use crate::Shared;

/// Most keys one file may hold.
pub const MAX_KEYS: usize = 100_000;
/// Longest key name, in characters.
pub const MAX_NAME: usize = 64;
/// Most models on one key's list.
pub const MAX_MODELS: usize = 64;
/// Every secret starts with this.
pub const SECRET_PREFIX: &str = "sk-cocoon-";
/// Every key id starts with this.
pub const ID_PREFIX: &str = "ck_";
/// Most keys shown per-key in `/jsonstats`, `/stats` and `/metrics` (the top by spend).
pub const MAX_KEY_SERIES: usize = 1000;

/// How often spend is written to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// How often the file's generation is checked for the CLI's changes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// What can go wrong with the keys file or a key's definition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    #[error("keys database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("keys database has schema version {0}; this build reads version {SCHEMA_VERSION}")]
    Schema(i64),
    #[error("keys database is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no key with id {0}")]
    NotFound(String),
}

/// What a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetUnit {
    Tokens,
    /// nanoTON (1 TON = 10⁹).
    Nanoton,
}

impl BudgetUnit {
    pub fn name(self) -> &'static str {
        match self {
            BudgetUnit::Tokens => "tokens",
            BudgetUnit::Nanoton => "nanoton",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tokens" => Some(BudgetUnit::Tokens),
            "nanoton" => Some(BudgetUnit::Nanoton),
            _ => None,
        }
    }
}

/// When a budget renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Each UTC day.
    Day,
    /// Each calendar month (UTC).
    Month,
    /// Never.
    Total,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }
}

/// A key's budget: `amount` of `unit` per `period`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub unit: BudgetUnit,
    pub period: Period,
    pub amount: u64,
}

impl Budget {
    /// "10000 tokens per day", "1.5 TON per month", "500 tokens in total".
    pub fn describe(&self) -> String {
        let amount = match self.unit {
            BudgetUnit::Tokens => format!("{} tokens", self.amount),
            BudgetUnit::Nanoton => format!(
                "{} TON",
                cocoon_onchain::amount::format_ton(u128::from(self.amount))
            ),
        };
        match self.period {
            Period::Day => format!("{amount} per day"),
            Period::Month => format!("{amount} per month"),
            Period::Total => format!("{amount} in total"),
        }
    }
}

/// A key's rate limits; 0 = unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    pub concurrent_requests: u32,
}

/// A key as stored (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Models it may use; empty = all.
    pub models: Vec<String>,
    pub budget: Option<Budget>,
    pub limits: Limits,
    /// Unix seconds after which it no longer works.
    pub expires_at: Option<u64>,
    pub created_at: u64,
    pub revoked: bool,
}

/// What a key has spent (in its current budget period, and ever).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// Unix seconds the current period began (0 for `total`).
    pub period_start: u64,
    pub period_tokens: u64,
    pub period_nanoton: u64,
    pub total_tokens: u64,
    pub total_nanoton: u64,
    pub total_requests: u64,
}

/// What `create` needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub budget: Option<Budget>,
    #[serde(default)]
    pub limits: Limits,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl NewKey {
    /// Checks the bounds (name, model list, expiry in the future).
    pub fn validate(&self, now_s: u64) -> Result<(), KeysError> {
        let bad = |m: String| Err(KeysError::Invalid(m));
        let n = self.name.chars().count();
        if n == 0 || n > MAX_NAME || self.name.chars().any(char::is_control) {
            return bad(format!(
                "a key name is 1 to {MAX_NAME} printable characters"
            ));
        }
        if self.models.len() > MAX_MODELS {
            return bad(format!("a key may list at most {MAX_MODELS} models"));
        }
        if self.models.iter().any(|m| m.is_empty() || m.len() > 256) {
            return bad("a model name is 1 to 256 bytes".into());
        }
        if self.budget.as_ref().is_some_and(|b| b.amount == 0) {
            return bad("a budget must be above 0 (leave it out for no budget)".into());
        }
        if self.expires_at.is_some_and(|e| e <= now_s) {
            return bad("the expiry is in the past".into());
        }
        Ok(())
    }
}

/// SHA-256 of a secret, as stored and looked up.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh secret: `sk-cocoon-` and 32 random base62 characters (190 bits).
pub fn new_secret() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s = String::from(SECRET_PREFIX);
    for _ in 0..32 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

/// A fresh public id: `ck_` and 12 hex characters.
pub fn new_id() -> String {
    let b: [u8; 6] = rand::rng().random();
    format!("{ID_PREFIX}{}", hex::encode(b))
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix_s: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix_s.min(253_402_300_799));
    humantime_serde::re::humantime::format_rfc3339_seconds(t).to_string()
}

/// An expiry given as a duration from `now_s` (`30d`, `12h`) or an RFC 3339 time, as unix
/// seconds.
pub fn parse_expiry(s: &str, now_s: u64) -> Result<u64, KeysError> {
    use humantime_serde::re::humantime;
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_s.saturating_add(d.as_secs()));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        KeysError::Invalid(format!(
            "expiry {:?} is neither a duration (30d, 12h) nor an RFC 3339 time",
            s.chars().take(40).collect::<String>()
        ))
    })?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| KeysError::Invalid("the expiry is before 1970".into()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The keys of a running client: the file and its ring in memory.
pub struct Keys {
    path: PathBuf,
    store: Mutex<Store>,
    ring: RwLock<Arc<KeyRing>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("path", &self.path).finish()
    }
}

impl Keys {
    /// Opens (creating if missing) the keys file and loads every key. Blocking.
    pub fn open(path: &Path) -> Result<Self, KeysError> {
        let store = Store::open(path)?;
        let generation = store.generation()?;
        let ring = KeyRing::build(store.load()?, None);
        Ok(Self {
            path: path.to_path_buf(),
            store: Mutex::new(store),
            ring: RwLock::new(Arc::new(ring)),
            generation: AtomicU64::new(generation),
        })
    }

    /// The ring now (cheap: one `Arc` clone).
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring
            .read()
            .map_or_else(|e| e.into_inner().clone(), |r| r.clone())
    }

    /// Whether requests must carry a key or the admin token: the file holds at least one key
    /// (revoked ones count, so that revoking the last key does not open the API).
    pub fn active(&self) -> bool {
        !self.ring().is_empty()
    }

    /// The key a secret names, if it is known, not revoked and not expired.
    pub fn authenticate(&self, secret: &str, now_ms: u64) -> Result<Arc<KeyState>, Refusal> {
        let ring = self.ring();
        let Some(key) = ring.by_hash(&hash_secret(secret)) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided".into(),
                "invalid_api_key",
            ));
        };
        KeyRing::check_valid(key, now_ms)?;
        Ok(key.clone())
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes changed spend to the file. Blocking.
    pub fn flush(&self) -> Result<usize, KeysError> {
        let ring = self.ring();
        let mut dirty = Vec::new();
        for k in ring.iter() {
            let mut live = k.lock();
            if live.dirty {
                live.dirty = false;
                dirty.push((k.record.id.clone(), live.spend.clone()));
            }
        }
        if dirty.is_empty() {
            return Ok(0);
        }
        let r = self.store().write_spend(&dirty);
        if r.is_err() {
            // Try again next time.
            for (id, _) in &dirty {
                if let Some(k) = ring.by_id(id) {
                    k.lock().dirty = true;
                }
            }
        }
        r.map(|()| dirty.len())
    }

    /// Reloads the keys if the file's generation moved (the CLI or the admin API changed
    /// them); live spend and in-flight requests of known ids are kept. Blocking.
    pub fn reload_if_changed(&self) -> Result<bool, KeysError> {
        let store = self.store();
        let g = store.generation()?;
        if g == self.generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        let records = store.load()?;
        drop(store);
        let old = self.ring();
        let ring = Arc::new(KeyRing::build(records, Some(&old)));
        info!(keys = ring.len(), generation = g, "API keys reloaded");
        match self.ring.write() {
            Ok(mut r) => *r = ring,
            Err(e) => *e.into_inner() = ring,
        }
        self.generation.store(g, Ordering::Release);
        Ok(true)
    }

    /// Creates a key (the admin API). Blocking.
    pub fn create(&self, new: &NewKey) -> Result<(String, KeyRecord), KeysError> {
        let r = self.store().create(new, now_ms() / 1000)?;
        self.reload_if_changed()?;
        Ok(r)
    }

    /// Revokes a key (the admin API). Blocking.
    pub fn revoke(&self, id: &str) -> Result<(), KeysError> {
        if !self.store().revoke(id)? {
            return Err(KeysError::NotFound(id.into()));
        }
        self.reload_if_changed()?;
        Ok(())
    }

    /// Flushes spend every 2 s and picks up changes to the file every second, until
    /// `shutdown`; then flushes once more.
    pub async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            n += 1;
            let flush = n % (FLUSH_EVERY.as_secs() / POLL_EVERY.as_secs()).max(1) == 0;
            let k = self.clone();
            let r = tokio::task::spawn_blocking(move || {
                if flush {
                    k.flush()?;
                }
                k.reload_if_changed()
            })
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(path = %self.path.display(), "API keys: {e}"),
                Err(e) => warn!("API keys task: {e}"),
            }
        }
        let k = self.clone();
        match tokio::task::spawn_blocking(move || k.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(path = %self.path.display(), "API keys: final flush: {e}"),
            Err(e) => warn!("API keys final flush: {e}"),
        }
    }

    /// The top keys by spend (at most [`MAX_KEY_SERIES`]), with their live numbers.
    fn top(&self) -> Vec<(Arc<KeyState>, LiveView)> {
        let ring = self.ring();
        let mut v: Vec<_> = ring
            .iter()
            .map(|k| {
                let view = LiveView::of(&k.lock());
                (k.clone(), view)
            })
            .collect();
        v.sort_by(|a, b| {
            (
                b.1.spend.total_nanoton,
                b.1.spend.total_tokens,
                &a.0.record.id,
            )
                .cmp(&(
                    a.1.spend.total_nanoton,
                    a.1.spend.total_tokens,
                    &b.0.record.id,
                ))
        });
        v.truncate(MAX_KEY_SERIES);
        v
    }

    /// The `api_keys` section of `/jsonstats` (and `/stats`).
    pub fn json(&self) -> serde_json::Value {
        let ring = self.ring();
        let keys: Vec<_> = self
            .top()
            .into_iter()
            .map(|(k, v)| {
                let refused: serde_json::Map<_, _> = Reason::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), v.refused[*r as usize].into()))
                    .collect();
                serde_json::json!({
                    "id": k.record.id, "name": k.record.name, "revoked": k.record.revoked,
                    "requests": v.admitted, "succeeded": v.succeeded, "refused": refused,
                    "in_flight": v.in_flight,
                    "tokens": v.spend.total_tokens, "nanoton": v.spend.total_nanoton,
                    "period_tokens": v.spend.period_tokens, "period_nanoton": v.spend.period_nanoton,
                })
            })
            .collect();
        serde_json::json!({ "count": ring.len(), "shown": keys.len(), "keys": keys })
    }
}

/// A copy of a key's live numbers.
struct LiveView {
    spend: Spend,
    in_flight: u32,
    admitted: u64,
    succeeded: u64,
    refused: [u64; 7],
}

impl LiveView {
    fn of(l: &Live) -> Self {
        Self {
            spend: l.spend.clone(),
            in_flight: l.in_flight,
            admitted: l.admitted,
            succeeded: l.succeeded,
            refused: l.refused,
        }
    }
}

/// A key's JSON view: its record, spend and (when the client holds it) live numbers.
pub fn record_json(r: &KeyRecord, spend: &Spend) -> serde_json::Value {
    let ton = |n: u64| cocoon_onchain::amount::format_ton(u128::from(n));
    serde_json::json!({
        "id": r.id, "name": r.name, "models": r.models,
        "budget": r.budget.as_ref().map(|b| serde_json::json!({
            "unit": b.unit.name(), "period": b.period.name(), "amount": b.amount,
            "describe": b.describe(),
        })),
        "limits": r.limits,
        "expires_at": r.expires_at, "expires": r.expires_at.map(rfc3339),
        "created_at": r.created_at, "created": rfc3339(r.created_at),
        "revoked": r.revoked,
        "spend": {
            "period_start": spend.period_start,
            "period_tokens": spend.period_tokens, "period_nanoton": spend.period_nanoton,
            "period_ton": ton(spend.period_nanoton),
            "total_tokens": spend.total_tokens, "total_nanoton": spend.total_nanoton,
            "total_ton": ton(spend.total_nanoton), "total_requests": spend.total_requests,
        },
    })
}

/// Per-key series on `/metrics` (the top [`MAX_KEY_SERIES`] by spend).
#[derive(Debug)]
pub(crate) struct KeysCollector(pub Arc<Keys>);

impl Collector for KeysCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let top = self.0.top();
        let counter = |encoder: &mut DescriptorEncoder,
                       name: &str,
                       help: &str,
                       f: &dyn Fn(&LiveView) -> u64|
         -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(0u64);
            let mut m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (k, v) in &top {
                let labels = [("key", k.record.id.as_str())];
                ConstCounter::new(f(v)).encode(m.encode_family(&labels)?)?;
            }
            Ok(())
        };
        counter(
            &mut encoder,
            "key_requests",
            "Requests admitted per API key",
            &|v| v.admitted,
        )?;
        counter(
            &mut encoder,
            "key_refused",
            "Requests refused per API key",
            &|v| v.refused.iter().sum(),
        )?;
        counter(
            &mut encoder,
            "key_tokens",
            "Tokens spent per API key",
            &|v| v.spend.total_tokens,
        )?;
        counter(
            &mut encoder,
            "key_nanoton",
            "nanoTON spent per API key",
            &|v| v.spend.total_nanoton,
        )?;
        let g = ConstGauge::new(0i64);
        let mut m = encoder.encode_descriptor(
            "key_in_flight",
            "Requests in flight per API key",
            None,
            g.metric_type(),
        )?;
        for (k, v) in &top {
            let labels = [("key", k.record.id.as_str())];
            ConstGauge::new(i64::from(v.in_flight)).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

// ---- hooks for http.rs ----

/// The key a request was authenticated with (in the request's extensions).
#[derive(Clone, Debug)]
pub struct Authed(pub Arc<KeyState>);

/// What [`authorize`] decided.
pub(crate) enum Auth {
    /// Keys are off (no file, or no key in it): the plain `bearer_token` check applies.
    Off,
    /// Let it through (admin token, or a valid key now in the extensions).
    Pass,
    /// Refused, with this answer.
    Refuse(Response),
}

/// Whether `given` is one of the client's admin tokens (`bearer_token`, `admin_token`).
fn is_admin(shared: &Shared, given: &str) -> bool {
    let mut ok = false;
    for t in [
        shared.cfg.bearer_token.as_deref().unwrap_or(""),
        shared.cfg.admin_token.as_str(),
    ] {
        ok |= !t.is_empty() && constant_time_eq(given.as_bytes(), t.as_bytes());
    }
    ok
}

/// The API's authorization when keys are on: the admin token passes (unlimited), a valid key
/// passes with [`Authed`] in the extensions, anything else is a 401; the stats endpoints take
/// the admin token only (a key must not read other apps' spend).
pub(crate) fn authorize(shared: &Shared, req: &mut Request) -> Auth {
    let Some(keys) = shared.keys.as_ref().filter(|k| k.active()) else {
        return Auth::Off;
    };
    let given = bearer(req).unwrap_or("");
    if is_admin(shared, given) {
        return Auth::Pass;
    }
    if matches!(req.uri().path(), "/stats" | "/jsonstats" | "/metrics") {
        return Auth::Refuse(crate::http::error_response(
            StatusCode::UNAUTHORIZED,
            "the stats need the client's bearer_token or admin_token while API keys are on",
            Some("invalid_api_key"),
        ));
    }
    if given.is_empty() {
        return Auth::Refuse(crate::http::error_response(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key (Authorization: Bearer sk-cocoon-...)",
            Some("invalid_api_key"),
        ));
    }
    match keys.authenticate(given, now_ms()) {
        Ok(k) => {
            req.extensions_mut().insert(Authed(k));
            Auth::Pass
        }
        Err(r) => Auth::Refuse(refusal_response(&r)),
    }
}

/// A refusal as an OpenAI-shaped answer (with `Retry-After` when it has one).
pub(crate) fn refusal_response(r: &Refusal) -> Response {
    let mut resp = crate::http::error_response(r.status, &r.message, Some(r.code));
    if let Some(s) = r.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The highest price per token among our proxies (nanoTON), when payments are on.
fn price(shared: &Shared) -> Option<u64> {
    let p = shared.payments.as_ref()?;
    let max = p.accounts().iter().map(|a| a.price).max()?;
    Some(u64::try_from(max).unwrap_or(u64::MAX))
}

/// Admits a request of `key` for `model` that may generate `max_tokens`; no key (keys off, or
/// the admin token) → no ticket. A TON budget reserves `max_tokens × price` (payments on).
pub(crate) fn admit(
    shared: &Shared,
    key: Option<&Authed>,
    model: &str,
    max_tokens: u64,
) -> Result<Option<Ticket>, Refusal> {
    let (Some(keys), Some(Authed(key))) = (shared.keys.as_ref(), key) else {
        return Ok(None);
    };
    let nanoton = price(shared).map_or(0, |p| p.saturating_mul(max_tokens));
    match keys.ring().admit(key, model, max_tokens, nanoton, now_ms()) {
        Ok(t) => Ok(Some(t)),
        Err(r) => {
            info!(key = %key.record.id, code = r.code, "API key request refused");
            Err(r)
        }
    }
}

/// Charges a successful request's use to its key: its tokens, and the nanoTON its answer
/// reported (`usage.total_cost`, seen by the ticket), else tokens × the highest per-token
/// price among our proxies when payments are on, else 0.
pub(crate) fn settle(ticket: &mut Ticket, shared: &Shared, tokens: &TokensUsed) {
    let t = u64::try_from(tokens.total_tokens_used).unwrap_or(0);
    let nanoton = ticket
        .seen_cost()
        .or_else(|| price(shared).map(|p| p.saturating_mul(t)))
        .unwrap_or(0);
    ticket.settle(t, nanoton, now_ms());
}

// ---- /admin/keys/* ----

/// `POST /admin/keys/{create,list,show,revoke}` (docs/KEYS.md): the token is `admin_token`, or
/// `bearer_token` when that is empty; with neither, or without a keys file, they are off (404).
/// Outside the API's auth layer (own token), like `payments::admin`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/keys/create", post(admin_create))
        .route("/admin/keys/list", post(admin_list))
        .route("/admin/keys/show", post(admin_show))
        .route("/admin/keys/revoke", post(admin_revoke))
        .with_state(shared)
}

fn admin_allowed(shared: &Shared, req: &Request) -> Result<Arc<Keys>, Box<Response>> {
    let token = if shared.cfg.admin_token.is_empty() {
        shared.cfg.bearer_token.as_deref().unwrap_or("")
    } else {
        shared.cfg.admin_token.as_str()
    };
    let Some(keys) = shared.keys.clone().filter(|_| !token.is_empty()) else {
        return Err(Box::new(crate::http::error_response(
            StatusCode::NOT_FOUND,
            "key admin is off (no [keys] db, or neither admin_token nor bearer_token is set)",
            Some("unknown_url"),
        )));
    };
    if !constant_time_eq(bearer(req).unwrap_or("").as_bytes(), token.as_bytes()) {
        return Err(Box::new(crate::http::error_response(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token",
            Some("invalid_api_key"),
        )));
    }
    Ok(keys)
}

/// The body of an admin request (at most 64 KiB).
async fn admin_body<T: serde::de::DeserializeOwned + Default>(req: Request) -> Result<T, Response> {
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 64 << 10)
        .await
        .map_err(|e| bad(format!("cannot read the body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad JSON body: {e}")))
}

fn bad(m: String) -> Response {
    crate::http::error_response(StatusCode::BAD_REQUEST, &m, Some("invalid_request_error"))
}

fn keys_error(e: KeysError) -> Response {
    match e {
        KeysError::Invalid(m) => bad(m),
        KeysError::NotFound(_) => {
            crate::http::error_response(StatusCode::NOT_FOUND, &e.to_string(), Some("not_found"))
        }
        e => crate::http::error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeysError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(keys_error),
        Err(e) => Err(keys_error(KeysError::Invalid(format!("task failed: {e}")))),
    }
}

/// `POST /admin/keys/create`'s body: [`NewKey`]'s fields spelled out (not `flatten`ed, which
/// would make serde ignore an unknown or misspelt field) plus `expires_in`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    budget: Option<Budget>,
    #[serde(default)]
    limits: Limits,
    /// Unix seconds.
    #[serde(default)]
    expires_at: Option<u64>,
    /// A duration from now (`30d`, `12h`), instead of `expires_at`.
    #[serde(default, with = "humantime_serde")]
    expires_in: Option<Duration>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdBody {
    id: String,
}

async fn admin_create(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let keys = match admin_allowed(&shared, &req) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let body: CreateBody = match admin_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut new = NewKey {
        name: body.name,
        models: body.models,
        budget: body.budget,
        limits: body.limits,
        expires_at: body.expires_at,
    };
    if let Some(d) = body.expires_in {
        new.expires_at = Some((now_ms() / 1000).saturating_add(d.as_secs()));
    }
    let k = keys.clone();
    match blocking(move || k.create(&new)).await {
        Ok((secret, record)) => {
            info!(key = %record.id, name = %record.name, "API key created (admin API)");
            let mut v = record_json(&record, &Spend::default());
            v["secret"] = secret.into();
            v["warning"] = "the secret is shown only this once".into();
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

async fn admin_list(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let keys = match admin_allowed(&shared, &req) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let ring = keys.ring();
    let mut list: Vec<_> = ring
        .iter()
        .map(|k| {
            let spend = k.lock().spend.clone();
            record_json(&k.record, &spend)
        })
        .collect();
    list.sort_by(|a, b| a["created_at"].as_u64().cmp(&b["created_at"].as_u64()));
    Json(serde_json::json!({ "keys": list })).into_response()
}

async fn admin_show(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let keys = match admin_allowed(&shared, &req) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let body: IdBody = match admin_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ring = keys.ring();
    let Some(k) = ring.by_id(&body.id) else {
        return keys_error(KeysError::NotFound(body.id));
    };
    let live = LiveView::of(&k.lock());
    let mut v = record_json(&k.record, &live.spend);
    v["in_flight"] = live.in_flight.into();
    v["requests"] = live.admitted.into();
    Json(v).into_response()
}

async fn admin_revoke(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let keys = match admin_allowed(&shared, &req) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let body: IdBody = match admin_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = body.id.clone();
    let k = keys.clone();
    match blocking(move || k.revoke(&id)).await {
        Ok(()) => {
            info!(key = %body.id, "API key revoked (admin API)");
            Json(serde_json::json!({ "id": body.id, "revoked": true })).into_response()
        }
        Err(r) => r,
    }
}
