//! The key manager's counters and stats page: the public halves of the keys served, with their
//! expiries and whether the root lists them, what was served to whom and what was refused.
//! Never a private key.

use std::sync::{Arc, Mutex};

use cocoon_node::stats::StatsSource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Shared;

pub(crate) struct KeyManagerStats {
    registry: Registry,
    pub proxy_queries_served: Counter,
    pub worker_queries_served: Counter,
    /// Key queries from peers whose image is not allowed for them.
    pub refused_not_allowed: Counter,
    /// Queries that are no key query, and packets (nothing is expected as a packet).
    pub refused_unknown: Counter,
    /// Sessions closed for sending more than `max_queries_per_minute`.
    pub refused_rate: Counter,
    /// Connections closed at once because `max_sessions` were open.
    pub refused_full: Counter,
    /// Sessions of peers allowed no keys, closed after `handshake_timeout` without a query.
    pub closed_idle_strangers: Counter,
    pub sessions_open: Gauge,
    pub keys_generated: Counter,
    pub announcements_sent: Counter,
    pub announcements_failed: Counter,
    /// What the announcer last had to say (the root lists another key manager, the wallet is
    /// empty, ...); `None` while all is well or the chain is off.
    pub announce_status: Mutex<Option<String>>,
}

impl KeyManagerStats {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cocoon_key_manager");
        let s = Self {
            registry: Registry::default(),
            proxy_queries_served: Counter::default(),
            worker_queries_served: Counter::default(),
            refused_not_allowed: Counter::default(),
            refused_unknown: Counter::default(),
            refused_rate: Counter::default(),
            refused_full: Counter::default(),
            closed_idle_strangers: Counter::default(),
            sessions_open: Gauge::default(),
            keys_generated: Counter::default(),
            announcements_sent: Counter::default(),
            announcements_failed: Counter::default(),
            announce_status: Mutex::new(None),
        };
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "proxy_queries_served",
                "keyManager.getProxyPrivateKeys answered with keys",
                &s.proxy_queries_served,
            ),
            (
                "worker_queries_served",
                "keyManager.getWorkerPrivateKeys answered with keys",
                &s.worker_queries_served,
            ),
            (
                "refused_not_allowed",
                "Key queries refused: the peer's image is not allowed for them",
                &s.refused_not_allowed,
            ),
            (
                "refused_unknown",
                "Queries or packets that are no key query (the session is closed)",
                &s.refused_unknown,
            ),
            (
                "refused_rate",
                "Sessions closed for querying faster than max_queries_per_minute",
                &s.refused_rate,
            ),
            (
                "refused_full",
                "Connections closed because max_sessions were open",
                &s.refused_full,
            ),
            (
                "closed_idle_strangers",
                "Sessions of peers allowed no keys, closed without a query",
                &s.closed_idle_strangers,
            ),
            (
                "keys_generated",
                "Network keys generated",
                &s.keys_generated,
            ),
            (
                "announcements_sent",
                "Key announcements sent to the root",
                &s.announcements_sent,
            ),
            (
                "announcements_failed",
                "Key announcements that could not be sent",
                &s.announcements_failed,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "sessions_open",
            "Sessions of proxies and workers open",
            s.sessions_open.clone(),
        );
        Self { registry, ..s }
    }

    pub fn set_announce_status(&self, status: Option<String>) {
        if let Ok(mut s) = self.announce_status.lock() {
            *s = status;
        }
    }
}

pub(crate) struct StatsView(pub Arc<Shared>);

impl StatsSource for StatsView {
    fn json(&self) -> serde_json::Value {
        let sh = &self.0;
        let s = &sh.stats;
        let now = crate::unix_now();
        let listed = sh.listed_on_root();
        let keys: Vec<_> = sh
            .core()
            .public_keys(now)
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "public_key": hex::encode(k.public),
                    "valid_until": k.valid_until,
                    "test_key": k.test,
                    "on_root": listed.as_ref().map(|l| l.contains(&k.public)),
                })
            })
            .collect();
        let announce_status = s.announce_status.lock().ok().and_then(|g| g.clone());
        serde_json::json!({
            "role": "key-manager",
            "identity_public_key": hex::encode(sh.identity_public),
            "keys": keys,
            "queries": {
                "proxy_served": s.proxy_queries_served.get(),
                "worker_served": s.worker_queries_served.get(),
                "refused_not_allowed": s.refused_not_allowed.get(),
                "refused_unknown": s.refused_unknown.get(),
                "refused_rate": s.refused_rate.get(),
            },
            "connections": {
                "accept": sh.accept.snapshot(),
                "sessions_open": s.sessions_open.get(),
                "refused_full": s.refused_full.get(),
                "closed_idle_strangers": s.closed_idle_strangers.get(),
            },
            "keys_generated": s.keys_generated.get(),
            "chain": sh.chain.as_ref().map(|_| serde_json::json!({
                "announcements_sent": s.announcements_sent.get(),
                "announcements_failed": s.announcements_failed.get(),
                "status": announce_status,
            })),
        })
    }

    fn registry(&self) -> &Registry {
        &self.0.stats.registry
    }
}
