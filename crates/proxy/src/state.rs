//! The proxy's bookkeeping, free of I/O: connected workers, client accounts, running requests,
//! worker selection, admission and accounting. Connection handlers lock it briefly, decide, and
//! do their I/O after unlocking; nothing here awaits.
//!
//! Accounting is in adjusted tokens (Cocoon's unit). A request reserves
//! `ceil((max_tokens + prompt_bytes) × coefficient/1000 × max_multiplier/10000)` of its client's
//! credit on admission; the reservation is released on every ending, and exactly the usage the
//! worker reported for delivered output is charged.

use std::collections::HashMap;

use cocoon_node::errors;
use cocoon_node::PricingConfig;
use rand::Rng;

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
    pub proto: i32,
    /// Exponentially weighted mean request duration, seconds (0 until the first request).
    pub avg_seconds: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub earned_tokens: u64,
    /// A request of this worker hit its deadline without a word from it: out of rotation until
    /// it answers a probe (a partitioned or hung worker).
    pub suspect: bool,
}

/// A client's account with this proxy.
#[derive(Debug, Clone, Default)]
pub struct ClientAccount {
    pub owner: String,
    /// Adjusted tokens the client may use in total (configured until payments land).
    pub credit: u64,
    pub used: u64,
    pub reserved: u64,
    pub running: u32,
}

impl ClientAccount {
    pub fn available(&self) -> u64 {
        self.credit
            .saturating_sub(self.used)
            .saturating_sub(self.reserved)
    }
}

/// A request in flight.
#[derive(Debug)]
pub struct RunningRequest {
    pub client_conn: u64,
    pub client_owner: String,
    pub client_request_id: [u8; 32],
    pub client_proto: i32,
    pub worker_conn: u64,
    pub reserved: u64,
    pub started_unix: f64,
    pub started: tokio::time::Instant,
    /// Latest cumulative usage reported by a v3 worker (delivered so far).
    pub progress_total: u64,
    pub head_sent: bool,
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
}

/// Inputs of an admission decision.
pub struct AdmitParams<'a> {
    pub client_owner: &'a str,
    pub model_base: &'a str,
    pub max_coefficient: i64,
    pub max_tokens: u64,
    pub prompt_bytes: u64,
    pub max_running_per_client: u32,
}

impl ProxyState {
    /// Picks a worker and reserves credit, or says why not.
    pub fn admit(
        &mut self,
        p: &AdmitParams<'_>,
        pricing: &PricingConfig,
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
        let worker = self.choose_worker(p.model_base, p.max_coefficient)?;
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
        model_base: &str,
        max_coefficient: i64,
    ) -> Result<(u64, i64), Rejection> {
        let mut any_for_model = false;
        let mut cheapest_above_cap: Option<i64> = None;
        let mut best: Vec<(u64, i64)> = Vec::new();
        let mut best_score = f64::INFINITY;
        for w in self.workers.values() {
            if w.model_base != model_base {
                continue;
            }
            any_for_model = true;
            if !w.enabled || w.suspect || w.running >= w.capacity {
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
            let i = rand::rng().random_range(0..best.len());
            return Ok(best[i]);
        }
        if !any_for_model {
            return Err(Rejection::new(
                errors::UNKNOWN_MODEL,
                format!("unknown model {model_base}"),
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

    /// Ends a request: releases its reservation and worker slot, charges `tokens`.
    pub fn finish(
        &mut self,
        request_id: &[u8; 32],
        tokens: u64,
        ok: bool,
        pricing: &PricingConfig,
    ) -> Option<(RunningRequest, Settlement)> {
        let req = self.requests.remove(request_id)?;
        self.by_client
            .remove(&(req.client_conn, req.client_request_id));
        let elapsed = req.started.elapsed().as_secs_f64();
        let mut worker_earned_total = 0;
        if let Some(w) = self.workers.get_mut(&req.worker_conn) {
            w.running = w.running.saturating_sub(1);
            w.earned_tokens += tokens;
            let earned = self.worker_earned.entry(w.owner.clone()).or_default();
            *earned = earned.saturating_add(tokens);
            worker_earned_total = *earned;
            if ok {
                w.succeeded += 1;
                // EWMA with weight 0.2: recent durations dominate.
                w.avg_seconds = if w.avg_seconds == 0.0 {
                    elapsed
                } else {
                    0.8 * w.avg_seconds + 0.2 * elapsed
                };
            } else {
                w.failed += 1;
            }
        }
        let mut client_used_total = 0;
        if let Some(a) = self.clients.get_mut(&req.client_owner) {
            a.reserved = a.reserved.saturating_sub(req.reserved);
            a.running = a.running.saturating_sub(1);
            a.used = a.used.saturating_add(tokens);
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
            conn_id: id,
            owner: format!("w{id}"),
            model_full: "mock".into(),
            model_base: "mock".into(),
            coefficient: coef,
            capacity: 4,
            running,
            enabled: true,
            proto: 3,
            avg_seconds: 0.0,
            succeeded: 0,
            failed: 0,
            earned_tokens: 0,
            suspect: false,
        }
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
            max_running_per_client: 100,
        }
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
        let mut s = state(1_000_000);
        assert_eq!(
            s.admit(&params(4000, 10), &p).unwrap_err().code,
            errors::UNKNOWN_MODEL
        );
        s.workers.insert(1, worker(1, 5000, 0));
        let e = s.admit(&params(4000, 10), &p).unwrap_err();
        assert_eq!(e.code, errors::NO_WORKER);
        assert!(e.message.contains("coefficient=5000"), "{}", e.message);
        s.workers.insert(2, worker(2, 1000, 4));
        assert_eq!(
            s.admit(&params(4000, 10), &p).unwrap_err().code,
            errors::NO_WORKER
        );
    }

    #[test]
    fn coefficient_cap_is_respected_and_idle_workers_share_load() {
        let p = PricingConfig::default();
        let mut s = state(u64::MAX / 4);
        s.workers.insert(1, worker(1, 1000, 0));
        s.workers.insert(2, worker(2, 1000, 0));
        s.workers.insert(3, worker(3, 9000, 0));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let a = s.admit(&params(2000, 1), &p).expect("admit");
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
        let mut s = state(1500);
        s.workers.insert(1, worker(1, 1000, 0));
        let a = s.admit(&params(4000, 1000), &p).expect("admit");
        assert_eq!(a.reserved, 1000);
        assert_eq!(s.clients["c"].available(), 500);
        assert_eq!(
            s.admit(&params(4000, 1000), &p).unwrap_err().code,
            errors::INSUFFICIENT_CREDIT
        );
        let id = [7u8; 32];
        s.requests.insert(
            id,
            RunningRequest {
                client_conn: 1,
                client_owner: "c".into(),
                client_request_id: [1; 32],
                client_proto: 3,
                worker_conn: 1,
                reserved: a.reserved,
                started_unix: 0.0,
                started: tokio::time::Instant::now(),
                progress_total: 0,
                head_sent: false,
            },
        );
        let (_, st) = s.finish(&id, 30, true, &p).expect("finish");
        assert_eq!(st.charged_tokens, 30);
        assert_eq!(st.client_cost, 60);
        assert_eq!(st.worker_fee, 30);
        assert_eq!(st.commission, 30);
        assert_eq!(s.clients["c"].reserved, 0);
        assert_eq!(s.clients["c"].used, 30);
        assert_eq!(s.workers[&1].running, 0);
        assert!(
            s.finish(&id, 30, true, &p).is_none(),
            "a request is settled once"
        );
    }
}
