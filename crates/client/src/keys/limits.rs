//! The pure accounting core of API keys: the in-memory [`KeyRing`], admission of a request
//! against a key's model list, rate windows, concurrency and budget ([`KeyRing::admit`]), and
//! the [`Ticket`] that holds a request's reservation until it is settled or dropped.
//!
//! Everything here takes `now` (unix milliseconds) as an argument and does no I/O: the SQLite
//! file, the clock and HTTP live in `keys.rs` and `keys/store.rs`. No lock is ever held past
//! the function that takes it (so never across an await).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;

use super::{Budget, BudgetUnit, KeyRecord, Period, Spend};

/// Why a request was refused, as counted per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Revoked,
    Expired,
    Model,
    Rpm,
    Tpm,
    Concurrency,
    Budget,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Revoked,
        Reason::Expired,
        Reason::Model,
        Reason::Rpm,
        Reason::Tpm,
        Reason::Concurrency,
        Reason::Budget,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::Model => "model",
            Reason::Rpm => "requests_per_minute",
            Reason::Tpm => "tokens_per_minute",
            Reason::Concurrency => "concurrent_requests",
            Reason::Budget => "budget",
        }
    }
}

/// A refused request: an OpenAI-shaped error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub code: &'static str,
    /// Whole seconds (≥ 1) after which the same request may pass (rate limits only).
    pub retry_after: Option<u64>,
    pub reason: Option<Reason>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: String, code: &'static str) -> Self {
        Self {
            status,
            message,
            code,
            retry_after: None,
            reason: None,
        }
    }
}

/// A token bucket refilled continuously at `capacity` per minute.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bucket {
    level: f64,
    at_ms: u64,
    started: bool,
}

impl Bucket {
    fn refill(&mut self, capacity: u64, now_ms: u64) {
        let cap = capacity as f64;
        if !self.started {
            self.started = true;
            self.level = cap;
        } else {
            let dt = now_ms.saturating_sub(self.at_ms) as f64;
            self.level = (self.level + dt * cap / 60_000.0).min(cap);
        }
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Seconds (whole, ≥ 1) until `need` is available.
    fn wait_s(&self, capacity: u64, need: f64) -> u64 {
        let missing = (need - self.level).max(0.0);
        let rate_per_s = capacity as f64 / 60.0;
        ((missing / rate_per_s).ceil() as u64).max(1)
    }
}

/// What changes per key while the client runs: spend, reservations, windows, counters.
#[derive(Debug, Default)]
pub struct Live {
    pub spend: Spend,
    pub in_flight: u32,
    pub reserved_tokens: u64,
    pub reserved_nanoton: u64,
    rpm: Bucket,
    tpm: Bucket,
    /// Spend changed since the last flush.
    pub dirty: bool,
    pub admitted: u64,
    pub succeeded: u64,
    pub refused: [u64; 7],
}

impl Live {
    pub fn from_spend(spend: Spend) -> Self {
        Self {
            spend,
            ..Self::default()
        }
    }

    fn refuse(&mut self, r: Reason) {
        self.refused[r as usize] += 1;
    }

    /// Starts a new budget period if `now` is past the current one.
    fn roll(&mut self, budget: Option<&Budget>, now_ms: u64) {
        let period = budget.map_or(Period::Total, |b| b.period);
        let start = period_start(period, now_ms / 1000);
        if start != self.spend.period_start {
            self.spend.period_start = start;
            self.spend.period_tokens = 0;
            self.spend.period_nanoton = 0;
            self.dirty = true;
        }
    }
}

/// One key as the ring holds it: its record (replaced on reload) and its live state (kept).
#[derive(Debug)]
pub struct KeyState {
    pub record: KeyRecord,
    pub live: Arc<Mutex<Live>>,
}

impl KeyState {
    pub fn lock(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }
}

fn lock(m: &Mutex<Live>) -> MutexGuard<'_, Live> {
    // A panic while counting leaves numbers, not broken invariants: go on with them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All keys, by secret hash and by id.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Arc<KeyState>>,
    by_id: HashMap<String, Arc<KeyState>>,
}

impl KeyRing {
    /// A ring of `records` (with their hashes and stored spend); live state of ids already in
    /// `previous` is carried over (spend, in-flight requests, windows).
    pub fn build(records: Vec<(KeyRecord, [u8; 32], Spend)>, previous: Option<&KeyRing>) -> Self {
        let mut ring = KeyRing::default();
        for (record, hash, spend) in records {
            let live = previous
                .and_then(|p| p.by_id.get(&record.id))
                .map(|s| s.live.clone())
                .unwrap_or_else(|| Arc::new(Mutex::new(Live::from_spend(spend))));
            let state = Arc::new(KeyState { record, live });
            ring.by_id.insert(state.record.id.clone(), state.clone());
            ring.by_hash.insert(hash, state);
        }
        ring
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<KeyState>> {
        self.by_hash.get(hash)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<KeyState>> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<KeyState>> {
        self.by_id.values()
    }

    /// Checks that `key` may be used at all now (revoked, expired): 401 if not.
    pub fn check_valid(key: &KeyState, now_ms: u64) -> Result<(), Refusal> {
        let r = &key.record;
        let (reason, message) = if r.revoked {
            (
                Reason::Revoked,
                format!("API key {} ('{}') has been revoked", r.id, r.name),
            )
        } else if r.expires_at.is_some_and(|e| now_ms / 1000 >= e) {
            (
                Reason::Expired,
                format!("API key {} ('{}') has expired", r.id, r.name),
            )
        } else {
            return Ok(());
        };
        key.lock().refuse(reason);
        Err(Refusal {
            reason: Some(reason),
            ..Refusal::new(StatusCode::UNAUTHORIZED, message, "invalid_api_key")
        })
    }

    /// Admits one request for `model` on `key`, reserving `reserve_tokens` (its `max_tokens`)
    /// and `reserve_nanoton`, or says why not.
    pub fn admit(
        &self,
        key: &Arc<KeyState>,
        model: &str,
        reserve_tokens: u64,
        reserve_nanoton: u64,
        now_ms: u64,
    ) -> Result<Ticket, Refusal> {
        Self::check_valid(key, now_ms)?;
        let r = &key.record;
        let mut live = key.lock();
        let refuse = |live: &mut Live,
                      reason: Reason,
                      status: StatusCode,
                      code: &'static str,
                      message: String,
                      retry_after: Option<u64>| {
            live.refuse(reason);
            Err(Refusal {
                status,
                message,
                code,
                retry_after,
                reason: Some(reason),
            })
        };
        if !r.models.is_empty() && !r.models.iter().any(|m| m == model) {
            return refuse(
                &mut live,
                Reason::Model,
                StatusCode::FORBIDDEN,
                "model_not_allowed",
                format!(
                    "key '{}' may not use the model `{model}` (allowed: {})",
                    r.name,
                    r.models.join(", ")
                ),
                None,
            );
        }
        let l = &r.limits;
        if l.concurrent_requests > 0 && live.in_flight >= l.concurrent_requests {
            return refuse(
                &mut live,
                Reason::Concurrency,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!(
                    "key '{}' is over its limit of {} concurrent requests",
                    r.name, l.concurrent_requests
                ),
                Some(1),
            );
        }
        if l.requests_per_minute > 0 {
            let cap = u64::from(l.requests_per_minute);
            live.rpm.refill(cap, now_ms);
            if live.rpm.level < 1.0 {
                let wait = live.rpm.wait_s(cap, 1.0);
                return refuse(
                    &mut live,
                    Reason::Rpm,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    format!(
                        "key '{}' is over its limit of {} requests per minute",
                        r.name, l.requests_per_minute
                    ),
                    Some(wait),
                );
            }
        }
        // A request larger than the whole per-minute allowance needs a full bucket, not more.
        let tpm_need = reserve_tokens.min(l.tokens_per_minute) as f64;
        if l.tokens_per_minute > 0 {
            live.tpm.refill(l.tokens_per_minute, now_ms);
            if live.tpm.level < tpm_need.max(1.0) {
                let wait = live.tpm.wait_s(l.tokens_per_minute, tpm_need.max(1.0));
                return refuse(
                    &mut live,
                    Reason::Tpm,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    format!(
                        "key '{}' is over its limit of {} tokens per minute",
                        r.name, l.tokens_per_minute
                    ),
                    Some(wait),
                );
            }
        }
        live.roll(r.budget.as_ref(), now_ms);
        if let Some(b) = &r.budget {
            let used = match b.unit {
                BudgetUnit::Tokens => live
                    .spend
                    .period_tokens
                    .saturating_add(live.reserved_tokens),
                BudgetUnit::Nanoton => live
                    .spend
                    .period_nanoton
                    .saturating_add(live.reserved_nanoton),
            };
            if used >= b.amount {
                let msg = format!(
                    "key '{}' has used its budget of {}{}",
                    r.name,
                    b.describe(),
                    match b.period {
                        Period::Total => String::new(),
                        p => format!(
                            "; it renews at {}",
                            super::rfc3339(period_end(p, now_ms / 1000))
                        ),
                    }
                );
                return refuse(
                    &mut live,
                    Reason::Budget,
                    StatusCode::PAYMENT_REQUIRED,
                    "insufficient_quota",
                    msg,
                    None,
                );
            }
        }
        // Admitted: take the slot, the window shares and the reservation.
        if l.requests_per_minute > 0 {
            live.rpm.level -= 1.0;
        }
        if l.tokens_per_minute > 0 {
            live.tpm.level -= tpm_need;
        }
        live.in_flight += 1;
        live.reserved_tokens = live.reserved_tokens.saturating_add(reserve_tokens);
        live.reserved_nanoton = live.reserved_nanoton.saturating_add(reserve_nanoton);
        live.admitted += 1;
        drop(live);
        Ok(Ticket {
            live: key.live.clone(),
            tpm: l.tokens_per_minute,
            tpm_taken: if l.tokens_per_minute > 0 {
                tpm_need
            } else {
                0.0
            },
            reserved_tokens: reserve_tokens,
            reserved_nanoton: reserve_nanoton,
            budget: r.budget.clone(),
            id: r.id.clone(),
            settled: false,
            seen_cost: None,
        })
    }
}

/// An admitted request's hold on its key: a concurrency slot and a reservation, given back on
/// drop. [`Ticket::settle`] records what the request actually used; a ticket dropped
/// unsettled (the request failed) charges nothing and gives its tokens-per-minute share back.
#[derive(Debug)]
pub struct Ticket {
    live: Arc<Mutex<Live>>,
    tpm: u64,
    tpm_taken: f64,
    reserved_tokens: u64,
    reserved_nanoton: u64,
    budget: Option<Budget>,
    id: String,
    settled: bool,
    /// The last `usage.total_cost` seen in the answer's chunks (nanoTON).
    seen_cost: Option<u64>,
}

impl Ticket {
    /// Remembers the cost an answer reported (`usage.total_cost`, nanoTON), for a stream whose
    /// usage comes before its last chunk.
    pub fn saw_cost(&mut self, nanoton: u64) {
        self.seen_cost = Some(nanoton);
    }

    /// The last cost [`Ticket::saw_cost`] was given.
    pub fn seen_cost(&self) -> Option<u64> {
        self.seen_cost
    }

    /// The key's id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Records the request's actual use (once; later calls do nothing).
    pub fn settle(&mut self, tokens: u64, nanoton: u64, now_ms: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut live = lock(&self.live);
        live.roll(self.budget.as_ref(), now_ms);
        let s = &mut live.spend;
        s.period_tokens = s.period_tokens.saturating_add(tokens);
        s.period_nanoton = s.period_nanoton.saturating_add(nanoton);
        s.total_tokens = s.total_tokens.saturating_add(tokens);
        s.total_nanoton = s.total_nanoton.saturating_add(nanoton);
        s.total_requests = s.total_requests.saturating_add(1);
        live.succeeded += 1;
        live.dirty = true;
        if self.tpm > 0 {
            // The window counts what was used, not what was reserved.
            let cap = self.tpm as f64;
            let used = tokens as f64;
            live.tpm.level = (live.tpm.level + self.tpm_taken - used).clamp(-cap, cap);
            self.tpm_taken = 0.0;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        live.in_flight = live.in_flight.saturating_sub(1);
        live.reserved_tokens = live.reserved_tokens.saturating_sub(self.reserved_tokens);
        live.reserved_nanoton = live.reserved_nanoton.saturating_sub(self.reserved_nanoton);
        if !self.settled && self.tpm > 0 {
            let cap = self.tpm as f64;
            live.tpm.level = (live.tpm.level + self.tpm_taken).min(cap);
        }
    }
}

/// Start (unix seconds) of the budget period holding `now_s` (UTC days, calendar months).
pub fn period_start(period: Period, now_s: u64) -> u64 {
    match period {
        Period::Total => 0,
        Period::Day => now_s - now_s % 86_400,
        Period::Month => {
            let (y, m, _) = civil_from_days((now_s / 86_400) as i64);
            (days_from_civil(y, m, 1) as u64) * 86_400
        }
    }
}

/// End (unix seconds) of the budget period holding `now_s` (`u64::MAX` for `total`).
pub fn period_end(period: Period, now_s: u64) -> u64 {
    match period {
        Period::Total => u64::MAX,
        Period::Day => period_start(period, now_s) + 86_400,
        Period::Month => {
            let (y, m, _) = civil_from_days((now_s / 86_400) as i64);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(y, m, 1) as u64) * 86_400
        }
    }
}

/// (year, month 1..=12, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
