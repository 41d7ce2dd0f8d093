//! The proxy's counters and its stats page: requests, money, workers and clients.

use std::sync::Arc;

use cocoon_node::stats::StatsSource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Shared;

pub(crate) struct ProxyStats {
    registry: Registry,
    pub queries: Counter,
    pub succeeded: Counter,
    pub failed: Counter,
    pub rejected: Counter,
    pub cancelled: Counter,
    pub timed_out: Counter,
    pub auth_failed: Counter,
    pub bytes: Counter,
    pub tokens_total: Counter,
    pub client_cost: Counter,
    pub worker_fee: Counter,
    pub commission: Counter,
    pub clients_connected: Gauge,
}

impl ProxyStats {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cocoon_proxy");
        let s = Self {
            registry: Registry::default(),
            queries: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            rejected: Counter::default(),
            cancelled: Counter::default(),
            timed_out: Counter::default(),
            auth_failed: Counter::default(),
            bytes: Counter::default(),
            tokens_total: Counter::default(),
            client_cost: Counter::default(),
            worker_fee: Counter::default(),
            commission: Counter::default(),
            clients_connected: Gauge::default(),
        };
        registry.register("queries", "Client requests received", s.queries.clone());
        registry.register(
            "queries_succeeded",
            "Requests answered completely",
            s.succeeded.clone(),
        );
        registry.register(
            "queries_failed",
            "Requests that ended in an error after admission",
            s.failed.clone(),
        );
        registry.register(
            "queries_rejected",
            "Requests refused at admission",
            s.rejected.clone(),
        );
        registry.register(
            "queries_cancelled",
            "Requests cancelled by their client",
            s.cancelled.clone(),
        );
        registry.register(
            "queries_timed_out",
            "Requests past their deadline",
            s.timed_out.clone(),
        );
        registry.register(
            "auth_failed",
            "Failed client authorizations",
            s.auth_failed.clone(),
        );
        registry.register(
            "answer_bytes",
            "Answer bytes relayed to clients",
            s.bytes.clone(),
        );
        registry.register(
            "tokens_charged",
            "Adjusted tokens charged to clients",
            s.tokens_total.clone(),
        );
        registry.register(
            "client_cost_nanoton",
            "nanoTON charged to clients",
            s.client_cost.clone(),
        );
        registry.register(
            "worker_fee_nanoton",
            "nanoTON owed to workers",
            s.worker_fee.clone(),
        );
        registry.register(
            "commission_nanoton",
            "nanoTON kept as commission",
            s.commission.clone(),
        );
        registry.register(
            "clients_connected",
            "Client connections open",
            s.clients_connected.clone(),
        );
        Self { registry, ..s }
    }
}

pub(crate) struct StatsView(pub Arc<Shared>);

impl StatsSource for StatsView {
    fn json(&self) -> serde_json::Value {
        let sh = &self.0;
        let s = &sh.stats;
        let (workers, clients, running) = match sh.state.lock() {
            Ok(st) => {
                let mut workers: Vec<_> = st
                    .workers
                    .values()
                    .map(|w| {
                        serde_json::json!({
                            "conn": w.conn_id, "owner": w.owner, "model": w.model_full,
                            "coefficient": w.coefficient, "running": w.running, "capacity": w.capacity,
                            "enabled": w.enabled, "suspect": w.suspect, "proto": w.proto, "avg_seconds": w.avg_seconds,
                            "succeeded": w.succeeded, "failed": w.failed, "earned_tokens": w.earned_tokens,
                            "evidence": crate::worker_evidence::stats_json(&sh.worker_evidence, w.conn_id, &w.model_full),
                        })
                    })
                    .collect();
                workers.sort_by_key(|w| w["conn"].as_u64());
                let mut clients: Vec<_> = st
                    .clients
                    .values()
                    .map(|c| {
                        serde_json::json!({
                            "owner": c.owner, "credit": c.credit, "used": c.used,
                            "reserved": c.reserved, "available": c.available(), "running": c.running,
                        })
                    })
                    .collect();
                clients.sort_by(|a, b| a["owner"].as_str().cmp(&b["owner"].as_str()));
                (workers, clients, st.requests.len())
            }
            Err(_) => (Vec::new(), Vec::new(), 0),
        };
        serde_json::json!({
            "role": "proxy",
            "public_key": hex::encode(sh.public_key),
            "queries": {
                "total": s.queries.get(), "succeeded": s.succeeded.get(), "failed": s.failed.get(),
                "rejected": s.rejected.get(), "cancelled": s.cancelled.get(), "timed_out": s.timed_out.get(),
                "running": running,
            },
            "bytes": s.bytes.get(),
            "tokens_charged": s.tokens_total.get(),
            "money_nanoton": {
                "client_cost": s.client_cost.get(), "worker_fee": s.worker_fee.get(), "commission": s.commission.get(),
            },
            "connections": {
                "workers": sh.worker_accept.snapshot(),
                "clients": sh.client_accept.snapshot(),
                "clients_connected": s.clients_connected.get(),
                "auth_failed": s.auth_failed.get(),
            },
            "workers": workers,
            "clients": clients,
            "payments": sh.payments.as_ref().map(|p| p.status_json()),
        })
    }

    fn registry(&self) -> &Registry {
        &self.0.stats.registry
    }
}
