//! One worker ↔ proxy link: dial, Cocoon's worker handshake, then serve the proxy's messages
//! until the session closes; redial with backoff.
//!
//! Every request started on a link is cancelled when the link goes down (its tokens can no
//! longer be delivered, so they are not generated).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::backoff::Backoff;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_proto::messages::{
    encode, ProxyToWorkerMessage, WorkerCompareBalanceWithProxy,
    WorkerCompareBalanceWithProxyResult, WorkerConnectToProxy, WorkerConnectedToProxy,
    WorkerEnabledDisabled, WorkerParams, WorkerProxyHandshakeComplete,
    WorkerProxyHandshakeCompleted,
};
use cocoon_proto::session::{InboundMessage, Session};
use cocoon_proto::version;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::request::{self, RequestCtx};
use crate::{Shared, PROTO_MAX, PROTO_MIN};

/// Handshake query timeout (Cocoon: 30 s).
const HANDSHAKE_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Running requests of one link, by proxy request id.
pub(crate) type RunningMap = Arc<Mutex<HashMap<[u8; 32], CancellationToken>>>;

/// Keeps one proxy served until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    addr: String,
    proxy_cnt: usize,
    dial: DialConfig,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let span = info_span!("proxy_link", proxy = %addr);
    async move {
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = net::dial(&addr, &dial) => r,
            };
            match attempt {
                Ok(conn) => match handshake(&shared, &conn, proxy_cnt).await {
                    Ok(proto) => {
                        backoff.reset();
                        shared.stats.proxy_connected(&addr, true);
                        serve(&shared, conn, proto, &shutdown).await;
                        shared.stats.proxy_connected(&addr, false);
                        info!("link closed");
                    }
                    Err(e) => {
                        warn!(error = %e, "handshake with proxy failed");
                        conn.session.close();
                    }
                },
                Err(e) => debug!(error = %e, "dial failed"),
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    .instrument(span)
    .await
}

/// Cocoon's worker handshake; returns the negotiated protocol version.
async fn handshake(
    shared: &Shared,
    conn: &AttestedSession,
    proxy_cnt: usize,
) -> Result<i32, String> {
    let cfg = &shared.cfg;
    cocoon_node::net::check_image(&cfg.allowed_proxy_images, &conn.peer)?;
    let params = WorkerParams {
        flags: 0,
        worker_owner_address: cfg.owner_address.clone(),
        model: cfg.model.clone(),
        coefficient: cfg.coefficient as i32,
        is_test: Some(cfg.attestation.is_test()),
        proxy_cnt: Some(proxy_cnt.max(1) as i32),
        max_active_requests: Some(cfg.max_active_requests as i32),
        min_proto_version: Some(PROTO_MIN),
        max_proto_version: Some(PROTO_MAX),
    };
    let connected: WorkerConnectedToProxy =
        query(&conn.session, &WorkerConnectToProxy { params }).await?;
    let remote_version = connected.params.proto_version.unwrap_or(0);
    let proto = version::negotiate(PROTO_MIN, PROTO_MAX, remote_version, remote_version)
        .ok_or_else(|| {
            format!("proxy speaks protocol {remote_version}, we need {PROTO_MIN}..={PROTO_MAX}")
        })?;
    if connected.params.is_test.unwrap_or(false) != cfg.attestation.is_test() {
        return Err("proxy and worker disagree on is_test".into());
    }
    // The worker holds no payment state yet (that comes with payments): it knows zero.
    let balance: WorkerCompareBalanceWithProxyResult = query(
        &conn.session,
        &WorkerCompareBalanceWithProxy {
            tokens_committed_to_blockchain: 0,
            tokens_committed_to_db: 0,
            max_tokens: 0,
        },
    )
    .await?;
    if balance.error_code != 0 {
        return Err(format!(
            "proxy refused the balance comparison (error {})",
            balance.error_code
        ));
    }
    let disabled = !shared.engine_ok.load(Ordering::SeqCst);
    let _: WorkerProxyHandshakeCompleted = query(
        &conn.session,
        &WorkerProxyHandshakeComplete {
            is_disabled: disabled,
        },
    )
    .await?;
    info!(
        proto,
        proxy_key = %hex::encode(connected.params.proxy_public_key),
        "connected to proxy"
    );
    Ok(proto)
}

async fn query<Q, A>(session: &Session, q: &Q) -> Result<A, String>
where
    Q: cocoon_tl::TlWrite,
    A: cocoon_tl::TlRead,
{
    let answer = session
        .query(encode(q), HANDSHAKE_QUERY_TIMEOUT)
        .await
        .map_err(|e| format!("query failed: {e}"))?;
    cocoon_tl::from_bytes(&answer).map_err(|e| format!("bad answer: {e}"))
}

/// Serves the proxy's messages until the session closes or shutdown.
async fn serve(
    shared: &Arc<Shared>,
    conn: AttestedSession,
    proto: i32,
    shutdown: &CancellationToken,
) {
    let AttestedSession {
        session,
        mut inbound,
        ..
    } = conn;
    let link_id = shared.next_link_id.fetch_add(1, Ordering::Relaxed);
    register_session(shared, link_id, session.clone());
    let running: RunningMap = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            msg = inbound.recv() => match msg {
                None => break,
                Some(InboundMessage::Packet(data)) => {
                    handle_packet(shared, &session, proto, &running, &mut tasks, data);
                }
                Some(InboundMessage::Query(q)) => {
                    // A proxy sends no queries to workers in protocols 0..=3.
                    q.error(621, "worker: unexpected query".into()).await;
                }
            }
        }
    }
    // Nothing started on this link can be delivered any more: stop generating.
    let cancelled: Vec<_> = running
        .lock()
        .map(|mut m| m.drain().map(|(_, t)| t).collect())
        .unwrap_or_default();
    for token in cancelled {
        token.cancel();
    }
    unregister_session(shared, link_id);
    session.close();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
}

fn handle_packet(
    shared: &Arc<Shared>,
    session: &Session,
    proto: i32,
    running: &RunningMap,
    tasks: &mut JoinSet<()>,
    data: Bytes,
) {
    let msg: ProxyToWorkerMessage = match cocoon_tl::from_bytes(&data) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, len = data.len(), "undecodable message from proxy; closing link");
            session.close();
            return;
        }
    };
    match msg {
        ProxyToWorkerMessage::RunQueryEx(q) => {
            let cancel = CancellationToken::new();
            if let Ok(mut m) = running.lock() {
                m.insert(q.request_id, cancel.clone());
            }
            let ctx = RequestCtx {
                shared: shared.clone(),
                session: session.clone(),
                proto,
                request_id: q.request_id,
                query: q.query,
                coefficient: q.coefficient,
                timeout: q.timeout,
                cancel,
                running: running.clone(),
            };
            tasks.spawn(request::run(ctx));
        }
        ProxyToWorkerMessage::RunQuery(q) => {
            // Protocol 0 is below our minimum; the proxy negotiated >= 1 with us.
            warn!(request = %hex::encode(&q.request_id[..8]), "legacy proxy.runQuery ignored");
        }
        ProxyToWorkerMessage::CancelQueryV3(c) => {
            let token = running
                .lock()
                .ok()
                .and_then(|m| m.get(&c.request_id).cloned());
            if let Some(token) = token {
                debug!(request = %hex::encode(&c.request_id[..8]), "cancelled by proxy");
                token.cancel();
            }
        }
        ProxyToWorkerMessage::WorkerRequestPayment(p) => {
            shared.stats.record_payment(p.db_tokens, p.max_tokens);
        }
    }
}

fn register_session(shared: &Shared, id: u64, session: Session) {
    if let Ok(mut s) = shared.sessions.lock() {
        s.push((id, session));
    }
}

fn unregister_session(shared: &Shared, id: u64) {
    if let Ok(mut s) = shared.sessions.lock() {
        s.retain(|(i, _)| *i != id);
    }
}

/// Tells every connected proxy whether this worker takes requests.
pub(crate) async fn broadcast_enabled(shared: &Shared, enabled: bool) {
    let sessions: Vec<Session> = shared
        .sessions
        .lock()
        .map(|s| s.iter().map(|(_, s)| s.clone()).collect())
        .unwrap_or_default();
    let msg = encode(&WorkerEnabledDisabled {
        disabled: i32::from(!enabled),
    });
    for s in sessions {
        let _ = s.send(msg.clone()).await;
    }
}
