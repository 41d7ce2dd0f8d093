//! The client's counters, served on its HTTP port as `/stats`, `/jsonstats` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cocoon_node::stats::StatsSource;
use cocoon_proto::messages::TokensUsed;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Shared;

pub(crate) struct ClientStats {
    registry: Registry,
    pub requests: Counter,
    pub succeeded: Counter,
    pub failed: Counter,
    pub rejected: Counter,
    pub timed_out: Counter,
    /// Requests tried a second time after their first attempt failed before its head.
    pub retried: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub tokens_prompt: Counter,
    pub tokens_cached: Counter,
    pub tokens_completion: Counter,
    pub tokens_reasoning: Counter,
    pub tokens_total: Counter,
    pub proxies_ready: Gauge,
    proxies: Mutex<BTreeMap<String, bool>>,
    /// Which workers served our requests (protocol 3 proxies tell).
    pub served_by: Arc<crate::served_by::ServedByLog>,
    /// Requests sealed to attested workers / sent readable by the proxy.
    pub sealed: Counter,
    pub clear: Counter,
    /// Requests refused because `[privacy] sealed = "required"` found no worker to seal to.
    pub sealing_unavailable: Counter,
    /// Receipts checked and kept / refused (bad signature, wrong worker or hashes, missing).
    pub receipts_ok: Counter,
    pub receipts_refused: Counter,
    /// Receipts whose proxy charge exceeded the worker's usage (that proxy is refused).
    pub overcharges: Counter,
}

impl ClientStats {
    /// The counters, with per-key series on `/metrics` when API keys are on.
    pub fn with_keys(keys: Option<Arc<crate::keys::Keys>>) -> Self {
        let mut registry = Registry::with_prefix("cocoon_client");
        let s = Self {
            registry: Registry::default(),
            requests: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            rejected: Counter::default(),
            timed_out: Counter::default(),
            retried: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            tokens_prompt: Counter::default(),
            tokens_cached: Counter::default(),
            tokens_completion: Counter::default(),
            tokens_reasoning: Counter::default(),
            tokens_total: Counter::default(),
            proxies_ready: Gauge::default(),
            proxies: Mutex::new(BTreeMap::new()),
            served_by: Arc::default(),
            sealed: Counter::default(),
            clear: Counter::default(),
            sealing_unavailable: Counter::default(),
            receipts_ok: Counter::default(),
            receipts_refused: Counter::default(),
            overcharges: Counter::default(),
        };
        s.served_by.register(&mut registry);
        if let Some(k) = keys {
            registry.register_collector(Box::new(crate::keys::KeysCollector(k)));
        }
        registry.register("requests", "HTTP inference requests", s.requests.clone());
        registry.register(
            "requests_succeeded",
            "Requests answered completely",
            s.succeeded.clone(),
        );
        registry.register(
            "requests_failed",
            "Requests that failed after validation",
            s.failed.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused as invalid",
            s.rejected.clone(),
        );
        registry.register(
            "requests_timed_out",
            "Requests past their timeout",
            s.timed_out.clone(),
        );
        registry.register(
            "requests_retried",
            "Requests tried again after failing before their head",
            s.retried.clone(),
        );
        registry.register("bytes_in", "Request body bytes", s.bytes_in.clone());
        registry.register("bytes_out", "Response body bytes", s.bytes_out.clone());
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
            "Adjusted tokens charged",
            s.tokens_total.clone(),
        );
        registry.register(
            "requests_sealed",
            "Requests sealed to attested workers",
            s.sealed.clone(),
        );
        registry.register(
            "requests_clear",
            "Requests sent readable by the proxy",
            s.clear.clone(),
        );
        registry.register(
            "requests_sealing_unavailable",
            "Requests refused: sealing required, no verified worker",
            s.sealing_unavailable.clone(),
        );
        registry.register(
            "receipts_verified",
            "Receipts verified and kept",
            s.receipts_ok.clone(),
        );
        registry.register(
            "receipts_refused",
            "Receipts refused or missing",
            s.receipts_refused.clone(),
        );
        registry.register(
            "proxy_overcharges",
            "Receipts whose proxy charge exceeded the worker's usage",
            s.overcharges.clone(),
        );
        registry.register(
            "proxies_ready",
            "Proxy links ready",
            s.proxies_ready.clone(),
        );
        Self { registry, ..s }
    }

    pub fn finished(&self, ok: bool, t: &TokensUsed) {
        if ok {
            self.succeeded.inc();
        } else {
            self.failed.inc();
        }
        let n = |v: i64| v.max(0) as u64;
        self.tokens_prompt.inc_by(n(t.prompt_tokens_used));
        self.tokens_cached.inc_by(n(t.cached_tokens_used));
        self.tokens_completion.inc_by(n(t.completion_tokens_used));
        self.tokens_reasoning.inc_by(n(t.reasoning_tokens_used));
        self.tokens_total.inc_by(n(t.total_tokens_used));
    }

    /// A proxy no longer linked (discovery let it go).
    pub fn proxy_gone(&self, addr: &str) {
        if let Ok(mut p) = self.proxies.lock() {
            p.remove(addr);
            self.proxies_ready
                .set(p.values().filter(|v| **v).count() as i64);
        }
    }

    pub fn proxy_up(&self, addr: &str, up: bool) {
        if let Ok(mut p) = self.proxies.lock() {
            p.insert(addr.to_string(), up);
            self.proxies_ready
                .set(p.values().filter(|v| **v).count() as i64);
        }
    }
}

pub(crate) struct StatsView(pub Arc<Shared>);

impl StatsSource for StatsView {
    fn json(&self) -> serde_json::Value {
        let s = &self.0.stats;
        let proxies: serde_json::Map<String, serde_json::Value> = s
            .proxies
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!({"ready": v})))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "role": "client",
            "requests": {
                "total": s.requests.get(), "succeeded": s.succeeded.get(), "failed": s.failed.get(),
                "rejected": s.rejected.get(), "timed_out": s.timed_out.get(),
                "retried": s.retried.get(),
            },
            "bytes": {"in": s.bytes_in.get(), "out": s.bytes_out.get()},
            "tokens": {
                "prompt": s.tokens_prompt.get(), "cached": s.tokens_cached.get(),
                "completion": s.tokens_completion.get(), "reasoning": s.tokens_reasoning.get(),
                "total": s.tokens_total.get(),
            },
            "proxies": proxies,
            "served_by": s.served_by.json(),
            "privacy": {
                "mode": format!("{:?}", self.0.cfg.privacy.mode(self.0.cfg.attestation.is_test())).to_lowercase(),
                "sealed": s.sealed.get(), "clear": s.clear.get(),
                "sealing_unavailable": s.sealing_unavailable.get(),
                "receipts": {"verified": s.receipts_ok.get(), "refused": s.receipts_refused.get(), "kept": self.0.receipts.len()},
                "proxy_overcharges": s.overcharges.get(),
                "refused_proxies": self.0.pool.refused(),
                "worker_verdicts": {
                    "cold": self.0.workers.stats.cold.get(), "cached": self.0.workers.stats.cached.get(),
                    "refused": self.0.workers.stats.refused.get(), "held": self.0.workers.cached_verdicts(),
                },
            },
            "payments": self.0.payments.as_ref().map(|p| p.json()),
            "root": self.0.payments.as_ref().map(|p| p.registry.json(SystemTime::now())),
            "discovery": self.0.discovery.as_ref().map(|d| d.json()),
            "api_keys": self.0.keys.as_ref().map(|k| k.json()),
        })
    }

    fn registry(&self) -> &Registry {
        &self.0.stats.registry
    }
}
