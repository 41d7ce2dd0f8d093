//! One proxy's or worker's session with the key manager: key queries in, keys or a typed error
//! out.
//!
//! Upstream's proxies ask `keyManager.getProxyPrivateKeys` every 5-10 s and its workers
//! `keyManager.getWorkerPrivateKeys` every 60-120 s, each as a `tcp.query` on one long-lived
//! session (the worker's first query comes a minute or two after it connects). So a session may
//! idle (the dialer's pings keep it open), and its queries are bounded by rate, not by count:
//! a session over `max_queries_per_minute` is answered with an error and closed. Every refused
//! query (image not allowed, not a key query) is answered with `tcp.queryError`, counted, and
//! ends the session; a peer allowed no keys at all is closed `handshake_timeout` after its
//! handshake if it has not asked by then. Queries are answered one at a time, in order.

use std::sync::Arc;

use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::{encode, KeyManagerPrivateKeys, KeyManagerQuery};
use cocoon_proto::session::InboundMessage;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::access::Audience;
use crate::Shared;

/// A per-session token bucket: `per_minute` queries a minute on average, at most `burst` at once.
#[derive(Debug)]
pub(crate) struct QueryBudget {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl QueryBudget {
    pub(crate) fn new(per_minute: u32, now: Instant) -> Self {
        let burst = f64::from(per_minute.clamp(1, 10));
        Self {
            tokens: burst,
            burst,
            per_second: f64::from(per_minute) / 60.0,
            last: now,
        }
    }

    /// Takes one query's token at `now`; false when the session is over its rate.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves one established session until it ends, an error closes it, or `cancel` fires.
/// `_slot` is the session's place among `max_sessions`, freed when this returns.
pub(crate) async fn run(
    shared: Arc<Shared>,
    conn: AttestedSession,
    _slot: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let AttestedSession {
        session,
        mut inbound,
        peer,
        remote,
    } = conn;
    shared.stats.sessions_open.inc();
    let _open = OpenSession(&shared);
    let image = peer.image_hash.map(hex::encode).unwrap_or_default();
    debug!(%remote, kind = %peer.kind, %image, "key manager session");
    // A peer allowed no keys gets until the handshake timeout to ask (and be refused).
    let stranger_deadline =
        (!shared.policy.allows_any(&peer)).then(|| Instant::now() + shared.cfg.handshake_timeout);
    let mut budget = QueryBudget::new(shared.cfg.max_queries_per_minute, Instant::now());
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sleep_until(stranger_deadline) => {
                shared.stats.closed_idle_strangers.inc();
                debug!(%remote, "closing the session of a peer allowed no keys");
                break;
            }
            m = inbound.recv() => m,
        };
        let q = match msg {
            None => break,
            Some(InboundMessage::Packet(p)) => {
                shared.stats.refused_unknown.inc();
                warn!(%remote, len = p.len(), "packet on a key manager session; closing it");
                break;
            }
            Some(InboundMessage::Query(q)) => q,
        };
        if !budget.take(Instant::now()) {
            shared.stats.refused_rate.inc();
            warn!(%remote, "key queries above max_queries_per_minute; closing the session");
            let limit = shared.cfg.max_queries_per_minute;
            q.error(
                errors::TOO_MANY_REQUESTS,
                format!("key manager: more than {limit} queries a minute"),
            )
            .await;
            break;
        }
        let audience = match cocoon_tl::from_bytes::<KeyManagerQuery>(&q.data) {
            Ok(KeyManagerQuery::GetProxyPrivateKeys(_)) => Audience::Proxy,
            Ok(KeyManagerQuery::GetWorkerPrivateKeys(_)) => Audience::Worker,
            Err(_) => {
                shared.stats.refused_unknown.inc();
                warn!(%remote, len = q.data.len(), "not a key query; closing the session");
                q.error(errors::PROTOVIOLATION, "key manager: unknown query".into())
                    .await;
                break;
            }
        };
        if let Err(refusal) = shared.policy.check(audience, &peer) {
            shared.stats.refused_not_allowed.inc();
            warn!(%remote, audience = audience.name(), %refusal, "key query refused");
            q.error(errors::ERROR, format!("key manager: {refusal}"))
                .await;
            break;
        }
        let keys = shared.core().served_keys(crate::unix_now());
        match audience {
            Audience::Proxy => shared.stats.proxy_queries_served.inc(),
            Audience::Worker => shared.stats.worker_queries_served.inc(),
        };
        debug!(%remote, audience = audience.name(), keys = keys.len(), "keys served");
        q.answer(encode(&KeyManagerPrivateKeys { keys })).await;
    }
    session.close();
    info!(%remote, reason = ?session.close_reason(), "key manager session ended");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Counts a session in `sessions_open` until dropped.
struct OpenSession<'a>(&'a Shared);

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.stats.sessions_open.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_query_budget_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = QueryBudget::new(30, t0);
        let taken = (0..20).filter(|_| b.take(t0)).count();
        assert_eq!(taken, 10, "a burst of at most 10");
        // 30 a minute: one more every 2 s.
        assert!(!b.take(t0 + Duration::from_millis(1900)));
        assert!(b.take(t0 + Duration::from_millis(4000)));
        // A proxy asking every 5 s is never refused.
        let mut b = QueryBudget::new(30, t0);
        assert!((0..1000).all(|i| b.take(t0 + Duration::from_secs(5 * i))));
    }
}
