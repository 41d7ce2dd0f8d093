//! One worker ↔ proxy link: dial, Cocoon's worker handshake, then serve the proxy's messages
//! until the session closes; redial with backoff.
//!
//! Every request started on a link is cancelled when the link goes down (its tokens can no
//! longer be delivered, so they are not generated). A link that discovery retires (its proxy
//! left the root, or it is being replaced) tells its proxy it is disabled, so no new request
//! comes, and closes once the requests running on it have finished.
//!
//! With payments on, the handshake checks the proxy's contract addresses and compares balances
//! through [`crate::payments`] (a proxy whose books know less is shown the payout it signed
//! for us, in the extended compare), and every payment number the proxy sends later is checked
//! there; a refusal closes the link (and counts in `payments_refused`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::backoff::Backoff;
use cocoon_node::discovery::LinkControl;
use cocoon_node::errors;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_proto::messages::{
    encode, ProxyToWorkerMessage, ProxyToWorkerQuery, WorkerCompareBalanceWithProxy,
    WorkerCompareBalanceWithProxyResult, WorkerConnectToProxy, WorkerConnectedToProxy,
    WorkerEnabledDisabled, WorkerExtendedCompareBalanceWithProxy,
    WorkerExtendedCompareBalanceWithProxyResult, WorkerParams, WorkerPaymentStatus,
    WorkerProxyHandshakeComplete, WorkerProxyHandshakeCompleted, WorkerUpdatePaymentStatus,
};
use cocoon_proto::session::{InboundMessage, Session};
use cocoon_proto::version;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::payments::PaymentLink;
use crate::request::{self, RequestCtx};
use crate::{Shared, PROTO_MAX, PROTO_MIN};

/// Handshake query timeout (Cocoon: 30 s).
const HANDSHAKE_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Running requests of one link, by proxy request id.
pub(crate) type RunningMap = Arc<Mutex<HashMap<[u8; 32], CancellationToken>>>;

/// How often a retired link looks whether its last request is done.
const DRAIN_CHECK: Duration = Duration::from_millis(100);
/// How long a retired link stays open once idle (the proxy's payment notice follows an answer).
const DRAIN_LINGER: Duration = Duration::from_millis(500);

/// Keeps one proxy served until shutdown, or until `control` retires it (then the proxy is told
/// this worker is disabled, and the link ends once the requests on it have finished).
pub(crate) async fn run(
    shared: Arc<Shared>,
    addr: String,
    proxy_cnt: usize,
    dial: DialConfig,
    control: LinkControl,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let span = info_span!("proxy_link", proxy = %addr);
    async move {
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = control.retired() => break,
                r = net::dial(&addr, &dial) => r,
            };
            match attempt {
                Ok(conn) => match handshake(&shared, &conn, proxy_cnt).await {
                    Ok((proto, pay)) => {
                        backoff.reset();
                        shared.stats.proxy_connected(&addr, true);
                        control.ready();
                        serve(&shared, conn, proto, pay, &shutdown, &control).await;
                        shared.stats.proxy_connected(&addr, false);
                        control.down();
                        info!("link closed");
                    }
                    Err(e) => {
                        warn!(error = %e, "handshake with proxy failed");
                        conn.session.close();
                    }
                },
                Err(e) => net::log_dial_failure(&e),
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = control.retired() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if control.is_retired() {
            shared.stats.proxy_gone(&addr);
            info!("proxy link retired");
        }
    }
    .instrument(span)
    .await
}

/// Cocoon's worker handshake; returns the negotiated protocol version and, with payments on,
/// the link's payment state.
pub(crate) async fn handshake(
    shared: &Shared,
    conn: &AttestedSession,
    proxy_cnt: usize,
) -> Result<(version::Negotiated, Option<Arc<PaymentLink>>), String> {
    let cfg = &shared.cfg;
    cocoon_node::net::check_image(&cfg.allowed_proxy_images, &conn.peer)?;
    // With the chain on, only proxies running an image the root registers get our work (read on
    // every connect: a registry change applies without a restart).
    if let Some(p) = &shared.payments {
        p.registry().current().check_image(
            cocoon_onchain::registry::ImageKind::Proxy,
            conn.peer.image_hash.as_ref(),
        )?;
    }
    let min_proto = min_proto(cfg);
    let params = WorkerParams {
        flags: version::EXTENSIONS_FLAG,
        worker_owner_address: match &shared.payments {
            Some(p) => p.owner().to_bounceable(),
            None => cfg.owner_address.clone(),
        },
        model: shared.model(),
        coefficient: cfg.coefficient as i32,
        is_test: Some(cfg.attestation.is_test()),
        proxy_cnt: Some(proxy_cnt.max(1) as i32),
        max_active_requests: Some(cfg.max_active_requests as i32),
        min_proto_version: Some(min_proto),
        max_proto_version: Some(PROTO_MAX),
        machine_description_json: machine_description(cfg),
    };
    let connected: WorkerConnectedToProxy =
        query(&conn.session, &WorkerConnectToProxy { params }).await?;
    let remote_version = connected.params.proto_version.unwrap_or(0);
    let proto = version::negotiate(min_proto, PROTO_MAX, remote_version, remote_version)
        .ok_or_else(|| {
            format!("proxy speaks protocol {remote_version}, we need {min_proto}..={PROTO_MAX}")
        })?;
    let proto = version::Negotiated::new(proto, version::EXTENSIONS_FLAG, connected.params.flags);
    if connected.params.is_test.unwrap_or(false) != cfg.attestation.is_test() {
        return Err("proxy and worker disagree on is_test".into());
    }
    let refused = |e: crate::payments::Refusal| {
        shared.stats.payments_refused.inc();
        e.to_string()
    };
    // Payments off: the worker holds nothing and tells zeros.
    let pay = match &shared.payments {
        Some(p) => Some(p.admit(&connected).map_err(refused)?),
        None => None,
    };
    let ask = match (&shared.payments, &pay) {
        (Some(p), Some(l)) => p.compare_request(l),
        _ => WorkerCompareBalanceWithProxy {
            tokens_committed_to_blockchain: 0,
            tokens_committed_to_db: 0,
            max_tokens: 0,
        },
    };
    let balance: WorkerCompareBalanceWithProxyResult = query(&conn.session, &ask).await?;
    let verdict = match (&shared.payments, &pay) {
        (Some(p), Some(l)) => p.on_compare(l, &balance),
        _ => Ok(()),
    };
    // The proxy knows less than we were told (error 1: our numbers are above its books; or its
    // answer went below what we hold). Cocoon's extended compare follows, carrying the payout
    // this proxy signed for us in `other` (Cocoon sends it empty): our other numbers are only
    // our word to the proxy, a payout it signed is evidence it can check, so a proxy running on
    // an old copy of its ledger can stop instead of dropping us as a liar.
    let rolled_back = matches!(verdict, Err(crate::payments::Refusal::Backwards(_)));
    let extended = match (&shared.payments, &pay) {
        (Some(p), Some(l)) if balance.error_code == 1 || rolled_back => {
            let ext: Result<WorkerExtendedCompareBalanceWithProxyResult, String> = query(
                &conn.session,
                &WorkerExtendedCompareBalanceWithProxy {
                    tokens_committed_to_db: ask.tokens_committed_to_db,
                    other: p.held_payout(l),
                },
            )
            .await;
            Some(ext)
        }
        _ => None,
    };
    verdict.map_err(refused)?;
    match (balance.error_code, extended) {
        (0, _) => {}
        // We know a larger max than the proxy (a Cocoon proxy restarted): the extended compare.
        (1, Some(ext)) => {
            let ext = ext?;
            if ext.error_code != 0 {
                return Err(format!(
                    "proxy could not reconcile payment information (error {})",
                    ext.error_code
                ));
            }
        }
        (code, _) => {
            return Err(format!(
                "proxy refused the balance comparison (error {code})"
            ))
        }
    }
    let disabled = !shared.takes_work();
    let _: WorkerProxyHandshakeCompleted = query(
        &conn.session,
        &WorkerProxyHandshakeComplete {
            is_disabled: disabled,
        },
    )
    .await?;
    info!(
        proto = proto.version,
        extensions = proto.extensions,
        proxy_key = %hex::encode(connected.params.proxy_public_key),
        "connected to proxy"
    );
    Ok((proto, pay))
}

/// The lowest protocol we announce: 4 when we send a machine description, because only a proxy
/// at 4 knows `worker.params` bit 2 (an older one would refuse the whole handshake, as upstream
/// 9060ce5's worker also assumes: it sets the bit only when its own minimum is 4).
fn min_proto(cfg: &crate::WorkerConfig) -> i32 {
    if machine_description(cfg).is_some() {
        version::PROTO_MACHINE_DESCRIPTION
    } else {
        PROTO_MIN
    }
}

fn machine_description(cfg: &crate::WorkerConfig) -> Option<String> {
    (!cfg.machine_description_json.is_empty()).then(|| cfg.machine_description_json.clone())
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

/// Serves the proxy's messages until the session closes or shutdown; once `control` retires
/// the link, until the requests running on it have finished (at most `max_request_timeout`).
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    conn: AttestedSession,
    proto: version::Negotiated,
    pay: Option<Arc<PaymentLink>>,
    shutdown: &CancellationToken,
    control: &LinkControl,
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
    if let (Some(p), Some(l)) = (&shared.payments, &pay) {
        tasks.spawn(payment_status_loop(
            shared.clone(),
            p.clone(),
            l.clone(),
            session.clone(),
        ));
    }
    let mut draining_until: Option<tokio::time::Instant> = None;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        if draining_until.is_some() {
            // Idle for a moment: the proxy's payment notice for the last request came too.
            let now = tokio::time::Instant::now();
            let idle = running.lock().map(|m| m.is_empty()).unwrap_or(true);
            idle_since = idle.then(|| idle_since.unwrap_or(now));
            if idle_since.is_some_and(|t| now.duration_since(t) >= DRAIN_LINGER) {
                info!("retired proxy link drained");
                break;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = control.retired(), if draining_until.is_none() => {
                // Out of the broadcasts (nothing may enable it again), then disabled for good:
                // the proxy sends no new request; those running finish here.
                unregister_session(shared, link_id);
                let msg = encode(&WorkerEnabledDisabled { disabled: 1 });
                let _ = session.send(msg).await;
                let drain = shared.cfg.max_request_timeout + Duration::from_secs(5);
                draining_until = Some(tokio::time::Instant::now() + drain);
                info!("proxy retired: disabled there; finishing the requests running on it");
            }
            _ = tokio::time::sleep(DRAIN_CHECK), if draining_until.is_some() => {
                if draining_until.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    warn!("retired proxy link still busy after its drain time; closing");
                    break;
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            msg = inbound.recv() => match msg {
                None => break,
                Some(InboundMessage::Packet(data)) => {
                    let pay = pay.as_deref();
                    handle_packet(shared, &session, proto, pay, &running, &mut tasks, data);
                }
                Some(InboundMessage::Query(q)) => {
                    match cocoon_tl::from_bytes::<ProxyToWorkerQuery>(&q.data) {
                        Ok(ProxyToWorkerQuery::ChangeModel(c)) => {
                            tasks.spawn(crate::change_model::answer(
                                shared.clone(),
                                link_id,
                                q,
                                c.new_model,
                            ));
                        }
                        Err(_) => {
                            q.error(errors::PROTOVIOLATION, "worker: unexpected query".into())
                                .await;
                        }
                    }
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
    proto: version::Negotiated,
    pay: Option<&PaymentLink>,
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
            if let Err(why) = check_payment(shared, pay, Some(&q.signed_payment), None, None) {
                warn!(error = %why, "dropping the proxy link");
                session.close();
                return;
            }
            let cancel = CancellationToken::new();
            if let Ok(mut m) = running.lock() {
                m.insert(q.request_id, cancel.clone());
            }
            let ctx = RequestCtx {
                shared: shared.clone(),
                session: session.clone(),
                proto,
                request_id: q.request_id,
                private_key: q.private_key,
                query: q.query,
                coefficient: q.coefficient,
                timeout: q.timeout,
                cancel,
                running: running.clone(),
                pricing: shared.link_pricing(pay),
                sealed: None,
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
            let checked = check_payment(
                shared,
                pay,
                Some(&p.signed_payment),
                Some(p.db_tokens),
                Some(p.max_tokens),
            );
            if let Err(why) = checked {
                warn!(error = %why, "dropping the proxy link");
                session.close();
            }
        }
    }
}

/// Checks a proxy message's payment numbers (payments on); an error means: drop the link.
fn check_payment(
    shared: &Shared,
    pay: Option<&PaymentLink>,
    signed: Option<&cocoon_proto::messages::ProxySignedPayment>,
    db: Option<i64>,
    max: Option<i64>,
) -> Result<(), crate::payments::Refusal> {
    let (Some(p), Some(l)) = (&shared.payments, pay) else {
        return Ok(());
    };
    p.on_report(l, crate::payments::marks::Channel::Stream, signed, db, max)
        .inspect_err(|_| {
            shared.stats.payments_refused.inc();
        })
}

/// Asks the proxy for its payment status now and then (`worker.updatePaymentStatus`, as
/// Cocoon's worker does every 10–20 s) and checks the answer; ends with the session.
async fn payment_status_loop(
    shared: Arc<Shared>,
    payments: Arc<crate::payments::Payments>,
    link: Arc<PaymentLink>,
    session: Session,
) {
    let every = shared
        .cfg
        .chain
        .poll_interval
        .clamp(Duration::from_secs(1), Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = session.closed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let status: WorkerPaymentStatus = match query(&session, &WorkerUpdatePaymentStatus).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "payment status query failed");
                continue;
            }
        };
        let checked = payments.on_report(
            &link,
            crate::payments::marks::Channel::Status,
            Some(&status.signed_payment),
            Some(status.db_tokens),
            Some(status.max_tokens),
        );
        if let Err(why) = checked {
            shared.stats.payments_refused.inc();
            warn!(error = %why, "dropping the proxy link");
            session.close();
            return;
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

#[cfg(test)]
mod upstream_proxy_tests;
