//! The worker's counters, served on its stats port as text, JSON and Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cocoon_engine::pricing::AdjustedUsage;
use cocoon_node::errors;
use cocoon_node::stats::StatsSource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Shared;

/// Worker counters; cheap to update from request tasks.
pub struct WorkerStats {
    registry: Registry,
    pub requests: Counter,
    pub succeeded: Counter,
    pub failed: Counter,
    pub rejected: Counter,
    /// Sealed requests opened (the sealed path).
    pub sealed_requests: Counter,
    pub cancelled: Counter,
    pub timed_out: Counter,
    pub bytes_out: Counter,
    pub tokens_prompt: Counter,
    pub tokens_cached: Counter,
    pub tokens_completion: Counter,
    pub tokens_reasoning: Counter,
    pub tokens_total: Counter,
    pub busy_seconds_micros: Counter,
    pub proxies_connected: Gauge,
    /// Proxies refused at handshake or dropped later for payment reasons (numbers going
    /// backwards, contract mismatch, bad signed payout).
    pub payments_refused: Counter,
    payment_db_tokens: AtomicI64,
    payment_max_tokens: AtomicI64,
    proxies: Mutex<BTreeMap<String, bool>>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerStats {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cocoon_worker");
        let s = Self {
            requests: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            rejected: Counter::default(),
            sealed_requests: Counter::default(),
            cancelled: Counter::default(),
            timed_out: Counter::default(),
            bytes_out: Counter::default(),
            tokens_prompt: Counter::default(),
            tokens_cached: Counter::default(),
            tokens_completion: Counter::default(),
            tokens_reasoning: Counter::default(),
            tokens_total: Counter::default(),
            busy_seconds_micros: Counter::default(),
            proxies_connected: Gauge::default(),
            payments_refused: Counter::default(),
            payment_db_tokens: AtomicI64::new(0),
            payment_max_tokens: AtomicI64::new(0),
            proxies: Mutex::new(BTreeMap::new()),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests received", s.requests.clone());
        registry.register(
            "requests_succeeded",
            "Requests completed",
            s.succeeded.clone(),
        );
        registry.register("requests_failed", "Requests failed", s.failed.clone());
        registry.register(
            "requests_rejected",
            "Requests refused before the engine",
            s.rejected.clone(),
        );
        registry.register(
            "requests_sealed",
            "Sealed requests opened",
            s.sealed_requests.clone(),
        );
        registry.register(
            "requests_cancelled",
            "Requests cancelled",
            s.cancelled.clone(),
        );
        registry.register(
            "requests_timed_out",
            "Requests past their deadline",
            s.timed_out.clone(),
        );
        registry.register("bytes_out", "Bytes sent to proxies", s.bytes_out.clone());
        registry.register(
            "tokens_prompt",
            "Adjusted non-cached prompt tokens",
            s.tokens_prompt.clone(),
        );
        registry.register(
            "tokens_cached",
            "Adjusted cached prompt tokens",
            s.tokens_cached.clone(),
        );
        registry.register(
            "tokens_completion",
            "Adjusted completion tokens",
            s.tokens_completion.clone(),
        );
        registry.register(
            "tokens_reasoning",
            "Adjusted reasoning tokens",
            s.tokens_reasoning.clone(),
        );
        registry.register(
            "tokens_total",
            "Adjusted tokens in all categories",
            s.tokens_total.clone(),
        );
        registry.register(
            "busy_microseconds",
            "Summed request durations",
            s.busy_seconds_micros.clone(),
        );
        registry.register(
            "proxies_connected",
            "Proxy links up",
            s.proxies_connected.clone(),
        );
        registry.register(
            "payments_refused",
            "Proxies refused or dropped for payment reasons",
            s.payments_refused.clone(),
        );
        Self { registry, ..s }
    }

    fn add_tokens(&self, a: &AdjustedUsage) {
        self.tokens_prompt.inc_by(a.prompt);
        self.tokens_cached.inc_by(a.cached);
        self.tokens_completion.inc_by(a.completion);
        self.tokens_reasoning.inc_by(a.reasoning);
        self.tokens_total.inc_by(a.total);
    }

    pub(crate) fn completed(&self, a: &AdjustedUsage, took: Duration) {
        self.succeeded.inc();
        self.add_tokens(a);
        self.busy_seconds_micros.inc_by(took.as_micros() as u64);
    }

    pub(crate) fn failed(&self, code: i32, delivered: &AdjustedUsage) {
        self.failed.inc();
        match code {
            errors::CANCELLED => {
                self.cancelled.inc();
            }
            errors::TIMEOUT => {
                self.timed_out.inc();
            }
            _ => {}
        }
        self.add_tokens(delivered);
    }

    /// A proxy no longer linked (discovery let it go).
    pub(crate) fn proxy_gone(&self, addr: &str) {
        if let Ok(mut p) = self.proxies.lock() {
            p.remove(addr);
            self.proxies_connected
                .set(p.values().filter(|v| **v).count() as i64);
        }
    }

    pub(crate) fn proxy_connected(&self, addr: &str, up: bool) {
        if let Ok(mut p) = self.proxies.lock() {
            p.insert(addr.to_string(), up);
            self.proxies_connected
                .set(p.values().filter(|v| **v).count() as i64);
        }
    }

    pub(crate) fn record_payment(&self, db_tokens: i64, max_tokens: i64) {
        self.payment_db_tokens
            .fetch_max(db_tokens, Ordering::Relaxed);
        self.payment_max_tokens
            .fetch_max(max_tokens, Ordering::Relaxed);
    }
}

/// The stats page's view of the worker.
pub(crate) struct StatsView(pub Arc<Shared>);

impl StatsSource for StatsView {
    fn json(&self) -> serde_json::Value {
        let sh = &self.0;
        let s = &sh.stats;
        let proxies: serde_json::Map<String, serde_json::Value> = s
            .proxies
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!({"connected": v})))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "role": "worker",
            "model": sh.model(),
            "coefficient": sh.cfg.coefficient,
            "engine_ok": sh.engine_ok.load(Ordering::Relaxed),
            "takes_work": sh.takes_work(),
            "active_requests": sh.active.load(Ordering::Relaxed),
            "max_active_requests": sh.cfg.max_active_requests,
            "requests": {
                "total": s.requests.get(),
                "succeeded": s.succeeded.get(),
                "failed": s.failed.get(),
                "rejected": s.rejected.get(),
                "cancelled": s.cancelled.get(),
                "timed_out": s.timed_out.get(),
            },
            "bytes_out": s.bytes_out.get(),
            "tokens": {
                "prompt": s.tokens_prompt.get(),
                "cached": s.tokens_cached.get(),
                "completion": s.tokens_completion.get(),
                "reasoning": s.tokens_reasoning.get(),
                "total": s.tokens_total.get(),
            },
            "earnings": {
                "db_tokens": s.payment_db_tokens.load(Ordering::Relaxed),
                "max_tokens": s.payment_max_tokens.load(Ordering::Relaxed),
            },
            "proxies": proxies,
            "payments_refused": s.payments_refused.get(),
            "payments": sh.payments.as_ref().map(|p| p.stats_json()),
            "root": sh.payments.as_ref().map(|p| p.registry().json(std::time::SystemTime::now())),
            "discovery": sh.discovery.as_ref().map(|d| d.json()),
        })
    }

    fn registry(&self) -> &Registry {
        &self.0.stats.registry
    }
}
