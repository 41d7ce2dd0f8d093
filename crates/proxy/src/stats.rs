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
    /// Worker usage statements above their reservation (charged at the reservation).
    pub over_reservation: Counter,
    /// Charges the ledger refused as input (the request failed, the proxy went on).
    pub charges_rejected: Counter,
    pub clients_connected: Gauge,
    /// Worker connections closed for claiming more than the ledger holds without a payout
    /// this proxy signed (worker_conn).
    pub worker_claims_refused: Counter,
    /// Worker connections closed for breaking the handshake protocol (worker_conn).
    pub worker_protocol_violations: Counter,
    /// Peers (clients or workers) closed for not reading: their outbox passed its cap.
    pub peers_closed_not_reading: Counter,
    /// Sealed requests admitted (routed unread) and receipts countersigned.
    pub sealed: Counter,
    pub receipts: Counter,
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
            over_reservation: Counter::default(),
            charges_rejected: Counter::default(),
            clients_connected: Gauge::default(),
            worker_claims_refused: Counter::default(),
            worker_protocol_violations: Counter::default(),
            peers_closed_not_reading: Counter::default(),
            sealed: Counter::default(),
            receipts: Counter::default(),
        };
        registry.register("queries", "Client requests received", s.queries.clone());
        registry.register(
            "queries_sealed",
            "Sealed requests admitted (routed unread)",
            s.sealed.clone(),
        );
        registry.register(
            "receipts_countersigned",
            "Workers' receipts countersigned",
            s.receipts.clone(),
        );
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
            "usage_over_reservation",
            "Worker usage statements above their request's reservation (charged at the reservation)",
            s.over_reservation.clone(),
        );
        registry.register(
            "charges_rejected",
            "Charges the ledger refused as input (the request failed)",
            s.charges_rejected.clone(),
        );
        registry.register(
            "clients_connected",
            "Client connections open",
            s.clients_connected.clone(),
        );
        registry.register(
            "worker_claims_refused",
            "Worker connections closed for payment numbers above the ledger without a payout this proxy signed",
            s.worker_claims_refused.clone(),
        );
        registry.register(
            "worker_protocol_violations",
            "Worker connections closed for breaking the handshake protocol",
            s.worker_protocol_violations.clone(),
        );
        registry.register(
            "peers_closed_not_reading",
            "Client or worker sessions closed because they stopped reading what the proxy sent",
            s.peers_closed_not_reading.clone(),
        );
        Self { registry, ..s }
    }
}

pub(crate) struct StatsView(pub Arc<Shared>);

impl StatsSource for StatsView {
    fn json(&self) -> serde_json::Value {
        let sh = &self.0;
        let s = &sh.stats;
        let (workers, clients, running, network_keys) = {
            let core = sh.core();
            let network_keys: Vec<_> = core
                .network_keys()
                .into_iter()
                .map(|(public, valid_until)| {
                    serde_json::json!({"public_key": hex::encode(public), "valid_until": valid_until})
                })
                .collect();
            let st = &core.state;
            let mut workers: Vec<_> = st
                    .workers
                    .values()
                    .map(|w| {
                        let health = st.worker_health.get(&w.conn_id).cloned().unwrap_or_default();
                        serde_json::json!({
                            "conn": w.conn_id, "owner": w.owner, "model": w.model_full,
                            "coefficient": w.coefficient, "running": w.running, "capacity": w.capacity,
                            "enabled": w.enabled, "suspect": w.suspect, "proto": w.proto.version, "extensions": w.proto.extensions, "avg_seconds": w.avg_seconds,
                            "succeeded": w.succeeded, "failed": w.failed, "earned_tokens": w.earned_tokens,
                            "mean_time_to_head": health.mean_time_to_head.map(|d| d.as_secs_f64()),
                            "over_reservation": health.over_reservation,
                            "evidence": crate::worker_evidence::stats_json(&sh.worker_evidence, w.conn_id, &w.model_full),
                            // The worker's own words: shown as JSON when it is JSON, else as text.
                            "machine_description": w.machine_description_json.as_deref().map(|d| {
                                serde_json::from_str::<serde_json::Value>(d).unwrap_or_else(|_| d.into())
                            }),
                        })
                    })
                    .collect();
            workers.sort_by_key(|w| w["conn"].as_u64());
            let mut clients: Vec<_> = st
                .clients
                .values()
                .map(|c| {
                    serde_json::json!({
                        "owner": c.owner, "credit": c.credit, "used": c.used, "charged": c.charged,
                        "reserved": c.reserved, "available": c.available(), "running": c.running,
                    })
                })
                .collect();
            clients.sort_by(|a, b| a["owner"].as_str().cmp(&b["owner"].as_str()));
            (workers, clients, st.requests.len(), network_keys)
        };
        serde_json::json!({
            "role": "proxy",
            "public_key": hex::encode(sh.public_key),
            "queries": {
                "total": s.queries.get(), "succeeded": s.succeeded.get(), "failed": s.failed.get(),
                "rejected": s.rejected.get(), "cancelled": s.cancelled.get(), "timed_out": s.timed_out.get(),
                "running": running, "sealed": s.sealed.get(),
            },
            "receipts_countersigned": s.receipts.get(),
            "receipt_log": sh.receipts.as_ref().map(|log| serde_json::json!({
                "dropped": log.dropped.load(std::sync::atomic::Ordering::Relaxed),
                "pending_anchor": log.pending().map(|p| p.start),
            })),
            "bytes": s.bytes.get(),
            "tokens_charged": s.tokens_total.get(),
            "usage_over_reservation": s.over_reservation.get(),
            "charges_rejected": s.charges_rejected.get(),
            "money_nanoton": {
                "client_cost": s.client_cost.get(), "worker_fee": s.worker_fee.get(), "commission": s.commission.get(),
            },
            "connections": {
                "workers": sh.worker_accept.snapshot(),
                "clients": sh.client_accept.snapshot(),
                "clients_connected": s.clients_connected.get(),
                "auth_failed": s.auth_failed.get(),
                "worker_claims_refused": s.worker_claims_refused.get(),
                "worker_protocol_violations": s.worker_protocol_violations.get(),
                "peers_closed_not_reading": s.peers_closed_not_reading.get(),
            },
            "workers": workers,
            "clients": clients,
            "payments": sh.payments.as_ref().map(|p| p.status_json()),
            // Public halves only: requests sealed to one of these are routed.
            "network_keys": network_keys,
            "key_manager": sh.key_manager.as_ref().map(|k| k.status_json()),
            "root": sh.payments.as_ref().map(|p| p.registry.json(std::time::SystemTime::now())),
            "pricing": serde_json::to_value(&sh.cfg.pricing).ok(),
        })
    }

    fn registry(&self) -> &Registry {
        &self.0.stats.registry
    }
}
