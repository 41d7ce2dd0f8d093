//! The proxy's bookkeeping, free of I/O, of the clock (the time comes in as an argument) and of
//! any global RNG (the caller's is passed in): connected workers, client accounts, running
//! requests, worker selection, admission and accounting. [`crate::proxy_core`] owns it and is
//! the only one to change requests; nothing here awaits, sends or logs.
//!
//! Accounting is in adjusted tokens (Cocoon's unit). A request reserves
//! `ceil((max_tokens + prompt_bytes) × coefficient/1000 × max_multiplier/10000)` of its client's
//! credit on admission; the reservation is released on every ending, and what the request is
//! charged follows [`crate::rules::settle_tokens`]: the worker's stated usage, or what was
//! delivered when the proxy ended it — never more than the reservation.

use std::collections::HashMap;
use std::time::Duration;

use cocoon_node::errors;
use cocoon_node::PricingConfig;
use rand::Rng;

use crate::worker_evidence::WorkerEvidence;

use crate::rules::{self, RelayMeter};

/// A registered worker connection.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub conn_id: u64,
    pub owner: String,
    pub model_full: String,
    pub model_base: String,
    pub coefficient: i64,
    /// This proxy's share of the worker's capacity: ceil(max_active / proxy_cnt).
    pub capacity: u32,
    pub running: u32,
    pub enabled: bool,
    /// The version and capabilities agreed with the worker.
    pub proto: cocoon_proto::version::Negotiated,
    /// What the worker says about its machine (`worker.params` bit 2; protocol 4), bounded.
    pub machine_description_json: Option<String>,
    /// Exponentially weighted mean request duration, seconds (0 until the first request).
    pub avg_seconds: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub earned_tokens: u64,
    /// A request of this worker hit its deadline without a word from it: out of rotation until
    /// it answers a probe (a partitioned or hung worker).
    pub suspect: bool,
    /// What the worker's RA-TLS proved, with the hash of the model it registered with (told
    /// to clients with every answer it serves).
    pub(crate) evidence: Option<WorkerEvidence>,
}

impl WorkerEntry {
    /// A worker just registered on connection `conn_id` serving `model_full`
    /// (`name@commit:hash`; selection matches on the name), with nothing run yet.
    pub fn new(
        conn_id: u64,
        owner: &str,
        model_full: &str,
        coefficient: i64,
        capacity: u32,
        proto: cocoon_proto::version::Negotiated,
    ) -> Self {
        Self {
            conn_id,
            owner: owner.into(),
            model_full: model_full.into(),
            model_base: model_full.split('@').next().unwrap_or("").into(),
            coefficient,
            capacity,
            running: 0,
            enabled: true,
            proto,
            machine_description_json: None,
            avg_seconds: 0.0,
            succeeded: 0,
            failed: 0,
            earned_tokens: 0,
            suspect: false,
            evidence: None,
        }
    }
}

/// A client's account with this proxy.
#[derive(Debug, Clone, Default)]
pub struct ClientAccount {
    pub owner: String,
    /// Adjusted tokens the client may use in total (configured until payments land).
    pub credit: u64,
    /// Tokens used in total, as far as this proxy knows: what it charged since it started,
    /// raised to the ledger's durable count by [`ClientAccount::set_credit`].
    pub used: u64,
    /// Tokens charged to this client since this process started (what `used` adds on top of
    /// the ledger's history; the books of one run are checked with it).
    pub charged: u64,
    pub reserved: u64,
    pub running: u32,
}

impl ClientAccount {
    pub fn available(&self) -> u64 {
        self.credit
            .saturating_sub(self.used)
            .saturating_sub(self.reserved)
    }

    /// Sets the client's credit (a lifetime figure: tokens it may have used in total) and
    /// brings `used` up to `durable`, what the ledger holds for it. `used` lives in memory and
    /// starts at 0 with every process: without this a restarted proxy would let a client use
    /// its whole history again. It never goes down (requests settled but not yet durable are
    /// in `used` and not in `durable`).
    pub fn set_credit(&mut self, credit: u64, durable: u64) {
        self.credit = credit;
        self.used = self.used.max(durable);
    }
}

/// What the proxy learned of a worker connection beyond its registration.
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth {
    /// Mean time from sending a request to the answer's head (None until the first head).
    pub mean_time_to_head: Option<Duration>,
    /// Usage statements above their request's reservation (charged at the reservation).
    pub over_reservation: u64,
}

/// A request in flight.
#[derive(Debug)]
pub struct RunningRequest {
    pub client_conn: u64,
    pub client_owner: String,
    pub client_request_id: [u8; 32],
    pub client_proto: cocoon_proto::version::Negotiated,
    pub worker_conn: u64,
    pub reserved: u64,
    pub started_unix: f64,
    pub started: tokio::time::Instant,
    /// The proxy's deadline for it ([`rules::request_deadline`]).
    pub deadline: Duration,
    /// The worker's coefficient at admission (what its usage is adjusted by).
    pub coefficient: u64,
    /// Latest cumulative usage reported by a v3 worker (delivered so far).
    pub progress_total: u64,
    /// The proxy's own count of what it relayed.
    pub meter: RelayMeter,
    pub head_sent: bool,
    /// The worker's signed receipt statement (sealed requests), countersigned at the end.
    pub receipt: Option<cocoon_sealed::receipt::WorkerSigned>,
    /// Countersigns it: the proxy key the client's session saw.
    pub receipt_signer: Option<crate::proxy_core::ReceiptSigner>,
}

impl RunningRequest {
    /// Adjusted tokens the proxy counted as relayed ([`RelayMeter::delivered_tokens`]).
    pub fn relayed(&self, pricing: &PricingConfig) -> u64 {
        self.meter
            .delivered_tokens(self.coefficient, &pricing.multipliers())
    }
}

/// A worker's usage statement above its request's reservation (charged at the reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overshoot {
    pub reported: u64,
    pub reserved: u64,
}

/// The result of accounting one finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub charged_tokens: u64,
    pub client_cost: u64,
    pub worker_fee: u64,
    pub commission: u64,
    pub client_used_total: u64,
    pub worker_earned_total: u64,
}

/// Why a request was not admitted, with the code sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: i32,
    pub message: String,
}

impl Rejection {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What an admitted request got.
#[derive(Debug, Clone)]
pub struct Admission {
    pub worker_conn: u64,
    pub coefficient: i64,
    pub reserved: u64,
}

/// Everything the proxy tracks.
#[derive(Debug, Default)]
pub struct ProxyState {
    pub workers: HashMap<u64, WorkerEntry>,
    pub clients: HashMap<String, ClientAccount>,
    pub requests: HashMap<[u8; 32], RunningRequest>,
    /// (client connection, client request id) → proxy request id.
    pub by_client: HashMap<(u64, [u8; 32]), [u8; 32]>,
    /// Adjusted tokens earned per worker owner, across reconnects.
    pub worker_earned: HashMap<String, u64>,
    /// Per worker connection (entries of gone connections are dropped when a new one is made).
    pub worker_health: HashMap<u64, WorkerHealth>,
}

/// Inputs of an admission decision.
pub struct AdmitParams<'a> {
    pub client_owner: &'a str,
    pub model_base: &'a str,
    pub max_coefficient: i64,
    pub max_tokens: u64,
    pub prompt_bytes: u64,
    pub max_running_per_client: u32,
    /// Only workers that negotiated at least this protocol version (3 for encrypted requests).
    pub min_worker_version: i32,
    /// Sealed requests: only these workers (RA-TLS keys, the envelope's recipients) can open
    /// the request, so only they are candidates.
    pub only_workers: Option<&'a [[u8; 32]]>,
}

impl ProxyState {
    /// Picks a worker and reserves credit, or says why not.
    pub fn admit(
        &mut self,
        p: &AdmitParams<'_>,
        pricing: &PricingConfig,
        rng: &mut impl Rng,
    ) -> Result<Admission, Rejection> {
        let account = self
            .clients
            .get(p.client_owner)
            .ok_or_else(|| Rejection::new(errors::PROTOVIOLATION, "client is not authorized"))?;
        if account.running >= p.max_running_per_client {
            return Err(Rejection::new(
                errors::TOO_MANY_REQUESTS,
                format!("too many requests in flight ({})", account.running),
            ));
        }
        let worker = self.choose_worker(p, rng)?;
        let reserved = reservation(p.max_tokens, p.prompt_bytes, worker.1, pricing);
        let available = account.available();
        if reserved > available {
            return Err(Rejection::new(
                errors::INSUFFICIENT_CREDIT,
                format!(
                    "balance is too low: request needs {reserved} tokens, {available} available"
                ),
            ));
        }
        let (worker_conn, coefficient) = worker;
        if let Some(w) = self.workers.get_mut(&worker_conn) {
            w.running += 1;
        }
        if let Some(a) = self.clients.get_mut(p.client_owner) {
            a.reserved += reserved;
            a.running += 1;
        }
        Ok(Admission {
            worker_conn,
            coefficient,
            reserved,
        })
    }

    /// Least `(running + 1) × mean duration` among enabled workers under capacity and under the
    /// client's coefficient cap; ties broken at random (Cocoon always takes the lowest id).
    fn choose_worker(
        &self,
        p: &AdmitParams<'_>,
        rng: &mut impl Rng,
    ) -> Result<(u64, i64), Rejection> {
        let (model_base, max_coefficient) = (p.model_base, p.max_coefficient);
        let mut any_for_model = false;
        let mut any_candidate = false;
        let mut cheapest_above_cap: Option<i64> = None;
        let mut best: Vec<(u64, i64)> = Vec::new();
        let mut best_score = f64::INFINITY;
        for w in self.workers.values() {
            if w.model_base != model_base {
                continue;
            }
            any_for_model = true;
            if let Some(only) = p.only_workers {
                // A sealed request opens only at its recipients, which speak our extensions.
                let key = w.evidence.as_ref().map(|e| e.public_key);
                if !w.proto.extensions || !key.is_some_and(|k| only.contains(&k)) {
                    continue;
                }
                any_candidate = true;
            }
            if !w.enabled
                || w.suspect
                || w.running >= w.capacity
                || w.proto.version < p.min_worker_version
            {
                continue;
            }
            if w.coefficient > max_coefficient {
                cheapest_above_cap =
                    Some(cheapest_above_cap.map_or(w.coefficient, |c| c.min(w.coefficient)));
                continue;
            }
            // A worker without history counts as fast so it gets tried.
            // Expected time to finish one more request there: (running + 1) × mean duration.
            let score = f64::from(w.running + 1) * w.avg_seconds.max(1e-3);
            if score < best_score - 1e-12 {
                best_score = score;
                best.clear();
                best.push((w.conn_id, w.coefficient));
            } else if (score - best_score).abs() <= 1e-12 {
                best.push((w.conn_id, w.coefficient));
            }
        }
        if !best.is_empty() {
            let i = rng.random_range(0..best.len());
            return Ok(best[i]);
        }
        if !any_for_model {
            return Err(Rejection::new(
                errors::UNKNOWN_MODEL,
                format!("unknown model {model_base}"),
            ));
        }
        if p.only_workers.is_some() && !any_candidate {
            return Err(Rejection::new(
                errors::NO_WORKER,
                format!("none of the request's sealed-to workers serves {model_base} here"),
            ));
        }
        if let Some(c) = cheapest_above_cap {
            return Err(Rejection::new(
                errors::NO_WORKER,
                format!("no worker under max_coefficient={max_coefficient}; can run this query with coefficient={c}"),
            ));
        }
        Err(Rejection::new(
            errors::NO_WORKER,
            format!("no ready workers for model {model_base}"),
        ))
    }

    /// Ends a request at `now`: releases its reservation and worker slot, charges `tokens`.
    pub fn finish(
        &mut self,
        request_id: &[u8; 32],
        tokens: u64,
        ok: bool,
        pricing: &PricingConfig,
        now: tokio::time::Instant,
    ) -> Option<(RunningRequest, Settlement)> {
        let req = self.requests.remove(request_id)?;
        self.by_client
            .remove(&(req.client_conn, req.client_request_id));
        let elapsed = now.saturating_duration_since(req.started).as_secs_f64();
        let mut worker_earned_total = 0;
        if let Some(w) = self.workers.get_mut(&req.worker_conn) {
            w.running = w.running.saturating_sub(1);
            w.earned_tokens = w.earned_tokens.saturating_add(tokens);
            let earned = self.worker_earned.entry(w.owner.clone()).or_default();
            *earned = earned.saturating_add(tokens);
            worker_earned_total = *earned;
            if ok {
                w.succeeded += 1;
                w.avg_seconds =
                    rules::ewma((w.avg_seconds != 0.0).then_some(w.avg_seconds), elapsed);
            } else {
                w.failed += 1;
            }
        }
        let mut client_used_total = 0;
        if let Some(a) = self.clients.get_mut(&req.client_owner) {
            a.reserved = a.reserved.saturating_sub(req.reserved);
            a.running = a.running.saturating_sub(1);
            a.used = a.used.saturating_add(tokens);
            a.charged = a.charged.saturating_add(tokens);
            client_used_total = a.used;
        }
        let client_cost = tokens.saturating_mul(pricing.price_per_token);
        let worker_fee = tokens.saturating_mul(pricing.worker_fee_per_token);
        let settlement = Settlement {
            charged_tokens: tokens,
            client_cost,
            worker_fee,
            commission: client_cost - worker_fee.min(client_cost),
            client_used_total,
            worker_earned_total,
        };
        Some((req, settlement))
    }

    /// Ends a request as [`rules::settle_tokens`] says: `reported` is the worker's own usage
    /// statement (its final answer or error), `None` when the proxy ends the request; the
    /// progress, the proxy's count and the reservation come from the request. A statement above
    /// the reservation is counted in the worker's [`WorkerHealth`] and returned.
    pub fn settle(
        &mut self,
        request_id: &[u8; 32],
        reported: Option<u64>,
        ok: bool,
        pricing: &PricingConfig,
        now: tokio::time::Instant,
    ) -> Option<(RunningRequest, Settlement, Option<Overshoot>)> {
        let r = self.requests.get(request_id)?;
        let tokens =
            rules::settle_tokens(reported, r.progress_total, r.relayed(pricing), r.reserved);
        let overshoot = reported
            .filter(|u| *u > r.reserved)
            .map(|reported| Overshoot {
                reported,
                reserved: r.reserved,
            });
        if overshoot.is_some() {
            let conn = r.worker_conn;
            let h = self.health(conn);
            h.over_reservation = h.over_reservation.saturating_add(1);
        }
        self.finish(request_id, tokens, ok, pricing, now)
            .map(|(r, s)| (r, s, overshoot))
    }

    /// The head of a request's answer arrived from `worker_conn` at `now`: marks it, feeds its
    /// body bytes (if any) to the request's meter unless the head is `is_final` (then the
    /// request settles on the worker's statement at once), and updates the worker's mean time to
    /// head. `None` when the request is unknown or not that worker's.
    pub fn head_arrived(
        &mut self,
        request_id: &[u8; 32],
        worker_conn: u64,
        now: tokio::time::Instant,
        content_type: Option<&str>,
        payload: &[u8],
        is_final: bool,
    ) -> Option<&RunningRequest> {
        let r = self.requests.get_mut(request_id)?;
        if r.worker_conn != worker_conn {
            return None;
        }
        let first = !r.head_sent;
        r.head_sent = true;
        if !is_final {
            r.meter.head(content_type, payload);
        }
        let took = now.saturating_duration_since(r.started);
        if first {
            let h = self.health(worker_conn);
            let mean = rules::ewma(
                h.mean_time_to_head.map(|d| d.as_secs_f64()),
                took.as_secs_f64(),
            );
            h.mean_time_to_head = Duration::try_from_secs_f64(mean).ok();
        }
        self.requests.get(request_id)
    }

    /// A body part of a request's answer arrived from `worker_conn`, with the worker's
    /// cumulative `progress` on protocol 3: counts it and says whether the stream has now passed
    /// its reservation (a final part never has: it is settled instead). `None` when the request
    /// is unknown or not that worker's.
    pub fn part_arrived(
        &mut self,
        request_id: &[u8; 32],
        worker_conn: u64,
        part: &[u8],
        progress: Option<u64>,
        is_final: bool,
        pricing: &PricingConfig,
    ) -> Option<bool> {
        let r = self.requests.get_mut(request_id)?;
        if r.worker_conn != worker_conn {
            return None;
        }
        // A final part settles on the worker's statement: the proxy's count is not needed.
        if !is_final {
            r.meter.observe(part);
        }
        if let Some(p) = progress {
            r.progress_total = r.progress_total.max(p);
        }
        Some(
            !is_final
                && rules::passed_reservation(r.progress_total, r.relayed(pricing), r.reserved),
        )
    }

    /// Whether a request of `worker_conn` that reached `deadline` without a head makes the
    /// worker suspect ([`rules::suspect_after_deadline`]).
    pub fn suspect_after_deadline(
        &self,
        worker_conn: u64,
        deadline: Duration,
        min_timeout: Duration,
    ) -> bool {
        let head = self
            .worker_health
            .get(&worker_conn)
            .and_then(|h| h.mean_time_to_head);
        rules::suspect_after_deadline(deadline, min_timeout, head)
    }

    /// The health record of a worker connection; making one drops those of connections gone.
    fn health(&mut self, conn: u64) -> &mut WorkerHealth {
        if !self.worker_health.contains_key(&conn) {
            let workers = &self.workers;
            self.worker_health.retain(|c, _| workers.contains_key(c));
        }
        self.worker_health.entry(conn).or_default()
    }

    /// Proxy request ids of requests running on a worker connection.
    pub fn requests_of_worker(&self, conn: u64) -> Vec<[u8; 32]> {
        self.requests
            .iter()
            .filter(|(_, r)| r.worker_conn == conn)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Proxy request ids of requests sent over a client connection.
    pub fn requests_of_client(&self, conn: u64) -> Vec<[u8; 32]> {
        self.requests
            .iter()
            .filter(|(_, r)| r.client_conn == conn)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Tokens reserved for a request on a worker with `coefficient`.
pub fn reservation(
    max_tokens: u64,
    prompt_bytes: u64,
    coefficient: i64,
    pricing: &PricingConfig,
) -> u64 {
    let max_mult = [
        pricing.prompt_multiplier,
        pricing.cached_multiplier,
        pricing.completion_multiplier,
        pricing.reasoning_multiplier,
    ]
    .into_iter()
    .max()
    .unwrap_or(10_000);
    let base = u128::from(max_tokens.saturating_add(prompt_bytes));
    let num = base * coefficient.max(0) as u128 * u128::from(max_mult);
    let den = 1000u128 * 10_000;
    u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: u64, coef: i64, running: u32) -> WorkerEntry {
        WorkerEntry {
            running,
            ..WorkerEntry::new(
                id,
                &format!("w{id}"),
                "mock",
                coef,
                4,
                cocoon_proto::version::Negotiated::with_extensions(4),
            )
        }
    }

    fn test_rng() -> rand::rngs::StdRng {
        rand::SeedableRng::seed_from_u64(7)
    }

    fn state(credit: u64) -> ProxyState {
        let mut s = ProxyState::default();
        s.clients.insert(
            "c".into(),
            ClientAccount {
                owner: "c".into(),
                credit,
                ..Default::default()
            },
        );
        s
    }

    fn params(max_coefficient: i64, max_tokens: u64) -> AdmitParams<'static> {
        AdmitParams {
            client_owner: "c",
            model_base: "mock",
            max_coefficient,
            max_tokens,
            prompt_bytes: 0,
            min_worker_version: 0,
            only_workers: None,
            max_running_per_client: 100,
        }
    }

    /// A request of client `c` on worker 1 (coefficient 1.0x, prompt estimated at 10 tokens).
    fn running(reserved: u64) -> RunningRequest {
        RunningRequest {
            client_conn: 1,
            client_owner: "c".into(),
            client_request_id: [1; 32],
            client_proto: cocoon_proto::version::Negotiated {
                version: 4,
                extensions: true,
            },
            worker_conn: 1,
            reserved,
            started_unix: 0.0,
            started: tokio::time::Instant::now(),
            deadline: Duration::from_secs(60),
            coefficient: 1000,
            progress_total: 0,
            meter: RelayMeter::new(10),
            head_sent: false,
            receipt: None,
            receipt_signer: None,
        }
    }

    /// A state with client `c` (credit 1000) running request `[7; 32]` on worker 1.
    fn one_running(reserved: u64) -> (ProxyState, [u8; 32]) {
        let mut s = state(1000);
        s.workers.insert(1, worker(1, 1000, 1));
        let id = [7u8; 32];
        s.requests.insert(id, running(reserved));
        s.clients.get_mut("c").expect("c").reserved = reserved;
        s.clients.get_mut("c").expect("c").running = 1;
        (s, id)
    }

    const CONTENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";

    #[test]
    fn an_ending_by_the_proxy_charges_what_was_relayed_and_credits_the_worker_the_same() {
        let p = PricingConfig::default();
        let (mut s, id) = one_running(500);
        let now = tokio::time::Instant::now();
        assert!(s
            .head_arrived(&id, 1, now, Some("text/event-stream"), b"", false)
            .is_some());
        for _ in 0..3 {
            // Protocol 3 with an engine that reports usage only at the end: progress 0.
            assert_eq!(
                s.part_arrived(&id, 1, CONTENT, Some(0), false, &p),
                Some(false)
            );
        }
        let (_, st, over) = s
            .settle(&id, None, false, &p, tokio::time::Instant::now())
            .expect("settle");
        assert_eq!(
            st.charged_tokens,
            10 + 3,
            "prompt estimate + one token per chunk"
        );
        assert_eq!(over, None);
        assert_eq!(s.clients["c"].used, 13);
        assert_eq!(s.worker_earned["w1"], 13);
        assert_eq!(s.workers[&1].earned_tokens, 13);
        assert!(
            s.settle(&id, Some(13), true, &p, tokio::time::Instant::now())
                .is_none(),
            "settled once"
        );
    }

    #[test]
    fn a_worker_statement_is_charged_up_to_the_reservation_and_counted_when_above() {
        let p = PricingConfig::default();
        let (mut s, id) = one_running(500);
        let (_, st, over) = s
            .settle(
                &id,
                Some(5_000_000_000_000),
                true,
                &p,
                tokio::time::Instant::now(),
            )
            .expect("settle");
        assert_eq!(st.charged_tokens, 500);
        assert_eq!(
            over,
            Some(Overshoot {
                reported: 5_000_000_000_000,
                reserved: 500
            })
        );
        assert_eq!(s.worker_health[&1].over_reservation, 1);
        assert_eq!(s.clients["c"].used, 500);
        // Below the reservation: exactly the statement, nothing counted.
        let (mut s, id) = one_running(500);
        let (_, st, over) = s
            .settle(&id, Some(42), true, &p, tokio::time::Instant::now())
            .expect("settle");
        assert_eq!((st.charged_tokens, over), (42, None));
        assert!(s
            .worker_health
            .get(&1)
            .is_none_or(|h| h.over_reservation == 0));
    }

    #[test]
    fn a_stream_is_cut_when_the_proxys_count_or_the_progress_passes_the_reservation() {
        let p = PricingConfig::default();
        // Reservation 12: prompt estimate 10 + 2 chunks fit, the third does not.
        let (mut s, id) = one_running(12);
        assert_eq!(
            s.part_arrived(&id, 1, CONTENT, None, false, &p),
            Some(false)
        );
        assert_eq!(
            s.part_arrived(&id, 1, CONTENT, None, false, &p),
            Some(false)
        );
        assert_eq!(s.part_arrived(&id, 1, CONTENT, None, false, &p), Some(true));
        // Progress alone passes it too, before the final part; a final part is never cut.
        let (mut s, id) = one_running(12);
        assert_eq!(s.part_arrived(&id, 1, b"", Some(13), false, &p), Some(true));
        let (mut s, id) = one_running(12);
        assert_eq!(s.part_arrived(&id, 1, b"", Some(13), true, &p), Some(false));
        // Another worker's parts are not counted.
        assert_eq!(s.part_arrived(&id, 2, CONTENT, Some(99), false, &p), None);
        assert_eq!(s.requests[&id].progress_total, 13);
    }

    #[test]
    fn the_mean_time_to_head_follows_heads_and_decides_suspicion() {
        let (mut s, id) = one_running(500);
        let min = Duration::from_secs(5);
        assert!(s.suspect_after_deadline(1, Duration::from_secs(5), min));
        let t0 = s.requests[&id].started;
        assert!(
            s.head_arrived(&id, 2, t0, None, b"", false).is_none(),
            "not its worker"
        );
        assert!(s
            .head_arrived(&id, 1, t0 + Duration::from_secs(4), None, b"", false)
            .is_some());
        assert_eq!(
            s.worker_health[&1].mean_time_to_head,
            Some(Duration::from_secs(4))
        );
        assert!(!s.suspect_after_deadline(1, Duration::from_secs(5), min));
        assert!(s.suspect_after_deadline(1, Duration::from_secs(8), min));
        // Records of connections gone are dropped when a new one is made.
        s.workers.insert(3, worker(3, 1000, 0));
        s.workers.remove(&1);
        s.requests.get_mut(&id).expect("r").worker_conn = 3;
        s.requests.get_mut(&id).expect("r").head_sent = false;
        assert!(s.head_arrived(&id, 3, t0, None, b"", false).is_some());
        assert!(!s.worker_health.contains_key(&1));
        assert!(s.worker_health.contains_key(&3));
    }

    #[test]
    fn a_credit_counts_the_durable_usage_and_never_lowers_it() {
        let mut a = ClientAccount {
            owner: "c".into(),
            ..Default::default()
        };
        // A restarted proxy: the ledger holds 400 for the client.
        a.set_credit(1000, 400);
        assert_eq!(a.available(), 600);
        // Settled in memory but not durable yet: not lowered by an older durable figure.
        a.used = 450;
        a.set_credit(1200, 400);
        assert_eq!((a.used, a.available()), (450, 750));
        a.set_credit(1200, 500);
        assert_eq!(a.used, 500);
    }

    #[test]
    fn reservation_scales_with_coefficient_and_rounds_up() {
        let p = PricingConfig::default();
        assert_eq!(reservation(1000, 0, 1000, &p), 1000);
        assert_eq!(reservation(1000, 24, 1500, &p), 1536);
        assert_eq!(reservation(1, 0, 1, &p), 1);
        assert_eq!(reservation(0, 0, 0, &p), 0);
    }

    #[test]
    fn unknown_model_capacity_and_cap_give_distinct_errors() {
        let p = PricingConfig::default();
        let mut rng = test_rng();
        let mut s = state(1_000_000);
        assert_eq!(
            s.admit(&params(4000, 10), &p, &mut rng).unwrap_err().code,
            errors::UNKNOWN_MODEL
        );
        s.workers.insert(1, worker(1, 5000, 0));
        let e = s.admit(&params(4000, 10), &p, &mut rng).unwrap_err();
        assert_eq!(e.code, errors::NO_WORKER);
        assert!(e.message.contains("coefficient=5000"), "{}", e.message);
        s.workers.insert(2, worker(2, 1000, 4));
        assert_eq!(
            s.admit(&params(4000, 10), &p, &mut rng).unwrap_err().code,
            errors::NO_WORKER
        );
    }

    #[test]
    fn coefficient_cap_is_respected_and_idle_workers_share_load() {
        let p = PricingConfig::default();
        let mut rng = test_rng();
        let mut s = state(u64::MAX / 4);
        s.workers.insert(1, worker(1, 1000, 0));
        s.workers.insert(2, worker(2, 1000, 0));
        s.workers.insert(3, worker(3, 9000, 0));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let a = s.admit(&params(2000, 1), &p, &mut rng).expect("admit");
            assert_ne!(a.worker_conn, 3, "worker above the cap chosen");
            seen.insert(a.worker_conn);
            // Release so both stay idle and tie (and the client stays under its in-flight cap).
            s.workers.get_mut(&a.worker_conn).expect("w").running -= 1;
            s.clients.get_mut("c").expect("client").running -= 1;
        }
        assert_eq!(seen.len(), 2, "ties must not always go to the same worker");
    }

    #[test]
    fn credit_is_reserved_released_and_charged() {
        let p = PricingConfig::default();
        let mut rng = test_rng();
        let mut s = state(1500);
        s.workers.insert(1, worker(1, 1000, 0));
        let a = s.admit(&params(4000, 1000), &p, &mut rng).expect("admit");
        assert_eq!(a.reserved, 1000);
        assert_eq!(s.clients["c"].available(), 500);
        assert_eq!(
            s.admit(&params(4000, 1000), &p, &mut rng).unwrap_err().code,
            errors::INSUFFICIENT_CREDIT
        );
        let id = [7u8; 32];
        s.requests.insert(id, running(a.reserved));
        let (_, st) = s
            .finish(&id, 30, true, &p, tokio::time::Instant::now())
            .expect("finish");
        assert_eq!(st.charged_tokens, 30);
        assert_eq!(st.client_cost, 60);
        assert_eq!(st.worker_fee, 30);
        assert_eq!(st.commission, 30);
        assert_eq!(s.clients["c"].reserved, 0);
        assert_eq!(s.clients["c"].used, 30);
        assert_eq!(s.workers[&1].running, 0);
        assert!(
            s.finish(&id, 30, true, &p, tokio::time::Instant::now())
                .is_none(),
            "a request is settled once"
        );
    }
}
