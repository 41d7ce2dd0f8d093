//! One worker connection on the proxy: Cocoon's worker handshake, then the worker's answers
//! and state updates. When the connection ends, every request running on it fails at once
//! (Cocoon lets them hang until their alarm).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::{
    encode, ProxyParams, ProxySignedPayment, WorkerCompareBalanceWithProxyResult,
    WorkerConnectedToProxy, WorkerExtendedCompareBalanceWithProxyResult, WorkerParams,
    WorkerPaymentStatus, WorkerProxyHandshakeCompleted, WorkerToProxyMessage, WorkerToProxyQuery,
};
use cocoon_proto::session::{InboundMessage, IncomingQuery, QueryError};
use cocoon_proto::version;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::state::WorkerEntry;
use crate::{relay, Shared, PROTO_MAX, PROTO_MIN};

/// Handshake progress of one worker connection.
#[derive(Default)]
struct Handshake {
    params: Option<WorkerParams>,
    proto: i32,
    registered: bool,
}

pub(crate) async fn run(shared: Arc<Shared>, conn: AttestedSession, shutdown: CancellationToken) {
    let AttestedSession {
        session,
        mut inbound,
        peer,
        ..
    } = conn;
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = shared.sessions.lock() {
        s.insert(conn_id, session.clone());
    }
    debug!(conn_id, image = ?peer.image_hash.map(hex::encode), "worker connected");
    let registry_check = match shared.payments.as_ref() {
        Some(p) => match p.halted() {
            Some(why) => Err(format!("proxy halted: {why}")),
            None => p.registry.current().check_image(
                cocoon_onchain::registry::ImageKind::Worker,
                peer.image_hash.as_ref(),
            ),
        },
        None => Ok(()),
    };
    if let Err(reason) = registry_check
        .and_then(|()| cocoon_node::net::check_image(&shared.cfg.allowed_worker_images, &peer))
    {
        warn!(conn_id, %reason, "worker refused");
        session.close();
        if let Ok(mut s) = shared.sessions.lock() {
            s.remove(&conn_id);
        }
        return;
    }
    shared.worker_evidence.connected(conn_id, &peer);
    let mut hs = Handshake::default();
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = inbound.recv() => m,
        };
        match msg {
            None => break,
            Some(InboundMessage::Query(q)) => {
                if let Err(reason) = on_query(&shared, conn_id, &mut hs, q).await {
                    warn!(conn_id, %reason, "worker handshake refused; closing");
                    break;
                }
            }
            Some(InboundMessage::Packet(data)) => {
                if !hs.registered {
                    warn!(
                        conn_id,
                        "worker sent messages before completing its handshake; closing"
                    );
                    break;
                }
                if let Err(e) = on_packet(&shared, conn_id, data).await {
                    warn!(conn_id, error = %e, "undecodable message from worker; closing");
                    break;
                }
            }
        }
    }
    session.close();
    disconnected(&shared, conn_id).await;
}

async fn on_query(
    shared: &Arc<Shared>,
    conn_id: u64,
    hs: &mut Handshake,
    q: IncomingQuery,
) -> Result<(), String> {
    let query: WorkerToProxyQuery = match cocoon_tl::from_bytes(&q.data) {
        Ok(x) => x,
        Err(e) => {
            q.error(errors::PROTOVIOLATION, format!("cannot decode query: {e}"))
                .await;
            return Err("undecodable query".into());
        }
    };
    match query {
        WorkerToProxyQuery::ConnectToProxy(c) => {
            let mut p = c.params;
            let mut worker_sc_address = String::new();
            if let Some(pay) = shared.payments.as_ref() {
                // With payments the owner must be a TON address: it names the worker contract.
                let sc = p
                    .worker_owner_address
                    .trim()
                    .parse::<cocoon_ton::TonAddress>()
                    .map_err(|e| format!("worker owner address: {e}"))
                    .and_then(|owner| {
                        p.worker_owner_address = owner.to_bounceable();
                        pay.worker_sc(&owner)
                    });
                match sc {
                    Ok(sc) => worker_sc_address = sc.to_bounceable(),
                    Err(reason) => {
                        q.error(errors::PROTOVIOLATION, reason.clone()).await;
                        return Err(reason);
                    }
                }
            }
            let is_test = shared.cfg.attestation.is_test();
            let check = validate_params(shared, &p, is_test);
            let (min, max) = (
                p.min_proto_version.unwrap_or(0),
                p.max_proto_version.unwrap_or(0),
            );
            let proto = version::negotiate(PROTO_MIN, PROTO_MAX, min, max);
            match (check, proto) {
                (Err(reason), _) => {
                    q.error(errors::PROTOVIOLATION, reason.clone()).await;
                    return Err(reason);
                }
                (_, None) => {
                    let reason = format!("no common protocol version (worker {min}..={max}, proxy {PROTO_MIN}..={PROTO_MAX})");
                    q.error(errors::PROTOVIOLATION, reason.clone()).await;
                    return Err(reason);
                }
                (Ok(()), Some(v)) => {
                    hs.proto = v;
                    hs.params = Some(p);
                    let answer = WorkerConnectedToProxy {
                        params: proxy_params(shared, v),
                        worker_sc_address,
                    };
                    q.answer(encode(&answer)).await;
                }
            }
        }
        WorkerToProxyQuery::CompareBalanceWithProxy(c) if shared.payments.is_some() => {
            let pay = shared.payments.as_ref().cloned();
            let Some(pay) = pay else { return Ok(()) };
            let owner = hs
                .params
                .as_ref()
                .map(|p| p.worker_owner_address.clone())
                .unwrap_or_default();
            let told = |v: i64| u64::try_from(v).unwrap_or(0);
            let check = owner
                .parse::<cocoon_ton::TonAddress>()
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    pay.worker_on_connect(
                        &o,
                        told(c.tokens_committed_to_blockchain),
                        told(c.tokens_committed_to_db),
                        told(c.max_tokens),
                    )
                });
            let (signed_payment, db) = pay.worker_status(&owner);
            let error_code = i32::from(check.is_err());
            q.answer(encode(&WorkerCompareBalanceWithProxyResult {
                signed_payment,
                tokens_committed_to_db: db as i64,
                max_tokens: db as i64,
                error_code,
            }))
            .await;
            if let Err(why) = check {
                // The worker knows more than our ledger: the ledger is an old copy. Stop
                // serving (no crash loop): stats and `cocoon proxy ledger` tell the operator.
                pay.halt(format!("rollback detected by worker {owner}: {why}"));
                return Err(why);
            }
        }
        WorkerToProxyQuery::CompareBalanceWithProxy(c) => {
            // Rollback detection: a worker must never know more than the proxy's books.
            let known = hs
                .params
                .as_ref()
                .and_then(|p| earned_by_owner(shared, &p.worker_owner_address))
                .unwrap_or(0);
            let worker_knows = c
                .tokens_committed_to_db
                .max(c.max_tokens)
                .max(c.tokens_committed_to_blockchain);
            let error_code = i32::from(worker_knows > known as i64);
            q.answer(encode(&WorkerCompareBalanceWithProxyResult {
                signed_payment: ProxySignedPayment::empty(),
                tokens_committed_to_db: known as i64,
                max_tokens: known as i64,
                error_code,
            }))
            .await;
            if error_code != 0 {
                return Err(format!("worker knows {worker_knows} tokens, the proxy only {known}: proxy state rolled back?"));
            }
        }
        WorkerToProxyQuery::ExtendedCompareBalanceWithProxy(_) => {
            q.answer(encode(&WorkerExtendedCompareBalanceWithProxyResult {
                error_code: 0,
            }))
            .await;
        }
        WorkerToProxyQuery::ProxyHandshakeComplete(c) => {
            let Some(p) = hs.params.clone() else {
                q.error(
                    errors::PROTOVIOLATION,
                    "handshake complete before connect".into(),
                )
                .await;
                return Err("handshake out of order".into());
            };
            register(shared, conn_id, &p, hs.proto, !c.is_disabled);
            hs.registered = true;
            info!(conn_id, model = %p.model, coefficient = p.coefficient, proto = hs.proto, enabled = !c.is_disabled, "worker registered");
            q.answer(encode(&WorkerProxyHandshakeCompleted {})).await;
        }
        WorkerToProxyQuery::UpdatePaymentStatus(_) if shared.payments.is_some() => {
            let owner = hs
                .params
                .as_ref()
                .map(|p| p.worker_owner_address.clone())
                .unwrap_or_default();
            let (signed_payment, db) = shared
                .payments
                .as_ref()
                .map(|p| p.worker_status(&owner))
                .unwrap_or((ProxySignedPayment::empty(), 0));
            q.answer(encode(&WorkerPaymentStatus {
                signed_payment,
                db_tokens: db as i64,
                max_tokens: db as i64,
            }))
            .await;
        }
        WorkerToProxyQuery::UpdatePaymentStatus(_) => {
            let earned = hs
                .params
                .as_ref()
                .and_then(|p| earned_by_owner(shared, &p.worker_owner_address))
                .unwrap_or(0) as i64;
            q.answer(encode(&WorkerPaymentStatus {
                signed_payment: ProxySignedPayment::empty(),
                db_tokens: earned,
                max_tokens: earned,
            }))
            .await;
        }
    }
    Ok(())
}

fn validate_params(shared: &Shared, p: &WorkerParams, is_test: bool) -> Result<(), String> {
    if p.is_test.unwrap_or(false) != is_test {
        return Err(format!(
            "worker is_test={} but proxy is_test={is_test}",
            p.is_test.unwrap_or(false)
        ));
    }
    if !(0..1_000_000_000).contains(&p.coefficient) {
        return Err(format!("coefficient {} out of range", p.coefficient));
    }
    if p.max_active_requests.unwrap_or(1) < 1 || p.proxy_cnt.unwrap_or(1) < 1 {
        return Err("max_active_requests and proxy_cnt must be at least 1".into());
    }
    if let Some(pay) = shared.payments.as_ref() {
        let reg = pay.registry.current();
        if !reg.allows_model(&p.model) {
            return Err(format!(
                "model {} is not in the root contract's registry (version {})",
                p.model, reg.state.version
            ));
        }
    }
    let allowed = &shared.cfg.allowed_models;
    if !allowed.is_empty() && !allowed.iter().any(|m| m == &p.model) {
        return Err(format!("model {} is not allowed on this proxy", p.model));
    }
    if p.model.is_empty() {
        return Err("empty model name".into());
    }
    Ok(())
}

pub(crate) fn proxy_params(shared: &Shared, proto: i32) -> ProxyParams {
    let (owner, sc) = match shared.payments.as_ref() {
        Some(p) => (p.owner.to_bounceable(), p.proxy_sc.to_bounceable()),
        None => (shared.cfg.owner_address.clone(), String::new()),
    };
    ProxyParams {
        flags: 0,
        proxy_public_key: shared.public_key,
        proxy_owner_address: owner,
        proxy_sc_address: sc,
        is_test: Some(shared.cfg.attestation.is_test()),
        proto_version: Some(proto),
    }
}

fn earned_by_owner(shared: &Shared, owner: &str) -> Option<u64> {
    let st = shared.state.lock().ok()?;
    Some(st.worker_earned.get(owner).copied().unwrap_or(0))
}

fn register(shared: &Shared, conn_id: u64, p: &WorkerParams, proto: i32, enabled: bool) {
    let max_active = p.max_active_requests.unwrap_or(1).max(1) as u32;
    let proxy_cnt = p.proxy_cnt.unwrap_or(1).max(1) as u32;
    let entry = WorkerEntry {
        conn_id,
        owner: p.worker_owner_address.clone(),
        model_full: p.model.clone(),
        model_base: p.model.split('@').next().unwrap_or("").to_string(),
        coefficient: i64::from(p.coefficient),
        capacity: max_active.div_ceil(proxy_cnt),
        running: 0,
        enabled,
        proto,
        avg_seconds: 0.0,
        succeeded: 0,
        failed: 0,
        earned_tokens: 0,
        suspect: false,
    };
    if let Ok(mut st) = shared.state.lock() {
        st.workers.insert(conn_id, entry);
    }
}

async fn on_packet(
    shared: &Arc<Shared>,
    conn_id: u64,
    data: Bytes,
) -> Result<(), cocoon_tl::TlError> {
    let msg: WorkerToProxyMessage = cocoon_tl::from_bytes(&data)?;
    match msg {
        WorkerToProxyMessage::QueryAnswerEx(m) => {
            relay::relay(
                shared,
                conn_id,
                m.request_id,
                relay::Piece::Head,
                m.answer,
                m.final_info,
            )
            .await
        }
        WorkerToProxyMessage::QueryAnswerPartEx(m) => {
            relay::part(shared, conn_id, m.request_id, m.answer, None, m.final_info).await
        }
        WorkerToProxyMessage::QueryAnswerPartV3(m) => {
            let progress = m.progress.total_tokens_used.max(0) as u64;
            relay::part(
                shared,
                conn_id,
                m.request_id,
                m.answer,
                Some(progress),
                m.final_info,
            )
            .await
        }
        WorkerToProxyMessage::QueryAnswerErrorEx(m) => {
            relay::error(
                shared,
                conn_id,
                m.request_id,
                m.error_code,
                m.error,
                m.final_info,
            )
            .await
        }
        WorkerToProxyMessage::EnabledDisabled(m) => {
            if let Ok(mut st) = shared.state.lock() {
                if let Some(w) = st.workers.get_mut(&conn_id) {
                    w.enabled = m.disabled == 0;
                    info!(conn_id, enabled = w.enabled, "worker availability changed");
                }
            }
        }
        WorkerToProxyMessage::NewCoefficient(m) => {
            if (0..1_000_000_000).contains(&m.new_coefficient) {
                if let Ok(mut st) = shared.state.lock() {
                    if let Some(w) = st.workers.get_mut(&conn_id) {
                        w.coefficient = i64::from(m.new_coefficient);
                    }
                }
            }
        }
        // Protocol-0 answers: our workers never negotiate 0, Cocoon's workers neither.
        other => {
            debug!(conn_id, msg = ?std::mem::discriminant(&other), "legacy worker message ignored")
        }
    }
    Ok(())
}

/// The worker is gone: fail its requests now, forget it.
async fn disconnected(shared: &Arc<Shared>, conn_id: u64) {
    let running = shared
        .state
        .lock()
        .map(|st| st.requests_of_worker(conn_id))
        .unwrap_or_default();
    if let Ok(mut st) = shared.state.lock() {
        if let Some(w) = st.workers.get_mut(&conn_id) {
            w.enabled = false;
        }
    }
    for id in running {
        relay::abort(
            shared,
            &id,
            errors::BAD_GATEWAY,
            "proxy: worker disconnected",
        )
        .await;
    }
    if let Ok(mut st) = shared.state.lock() {
        st.workers.remove(&conn_id);
    }
    shared.worker_evidence.gone(conn_id);
    if let Ok(mut s) = shared.sessions.lock() {
        s.remove(&conn_id);
    }
    info!(conn_id, "worker gone");
}

/// Takes a worker out of rotation after one of its requests hit the deadline without a word
/// from it, and probes it (every second, a query it answers with an error when alive) until it
/// answers — then it is back — or its session ends. A partitioned worker thus costs at most the
/// requests in flight when the partition began.
pub(crate) fn suspect(shared: &Arc<Shared>, conn_id: u64) {
    let newly = shared
        .state
        .lock()
        .ok()
        .and_then(|mut st| {
            st.workers
                .get_mut(&conn_id)
                .map(|w| !std::mem::replace(&mut w.suspect, true))
        })
        .unwrap_or(false);
    let Some(session) = shared.session(conn_id).filter(|_| newly) else {
        return;
    };
    warn!(
        conn_id,
        "worker silent past a request deadline; out of rotation until it answers"
    );
    let sh = shared.clone();
    shared.settling.spawn(async move {
        // Any TL bytes do: a worker answers every proxy query with an error (it expects none).
        let probe = encode(&WorkerProxyHandshakeCompleted {});
        loop {
            if session.is_closed() {
                return;
            }
            match session.query(probe.clone(), PROBE_TIMEOUT).await {
                Ok(_) | Err(QueryError::Remote { .. }) => break,
                Err(QueryError::Closed) => return,
                Err(_) => tokio::time::sleep(PROBE_EVERY).await,
            }
        }
        if let Ok(mut st) = sh.state.lock() {
            if let Some(w) = st.workers.get_mut(&conn_id) {
                w.suspect = false;
            }
        }
        info!(conn_id, "worker answers again; back in rotation");
    });
}

/// How long one liveness probe waits, and how often a silent worker is probed.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
