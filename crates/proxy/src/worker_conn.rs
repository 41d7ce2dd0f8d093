//! One worker connection on the proxy: Cocoon's worker handshake, then the worker's answers
//! and state updates. When the connection ends, every request running on it fails at once
//! (Cocoon lets them hang until their alarm).
//!
//! The handshake runs once per connection: a second `connectToProxy` or
//! `proxyHandshakeComplete` closes it (re-registering would reset the worker's running count
//! and earnings, and could change the owner its running requests settle with), and
//! `compareBalanceWithProxy` needs the worker's params first.
//!
//! Rollback evidence (payments on): the numbers in `compareBalanceWithProxy` are the worker's
//! word (its `payments.json`); above the ledger they close this one connection (logged with the
//! owner and the numbers, counted in `worker_claims_refused`) and never halt the proxy. Only a
//! payout this proxy signed (shown in `extendedCompareBalanceWithProxy.other`, which our workers
//! send after a disputed compare and Cocoon's send empty) for more than its ledger holds proves
//! that the ledger is an old copy, and halts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::tl_long;
use cocoon_proto::messages::{
    encode, ProxyParams, ProxySignedPayment, WorkerCompareBalanceWithProxy,
    WorkerCompareBalanceWithProxyResult, WorkerConnectedToProxy,
    WorkerExtendedCompareBalanceWithProxy, WorkerExtendedCompareBalanceWithProxyResult,
    WorkerParams, WorkerPaymentStatus, WorkerProxyHandshakeCompleted, WorkerToProxyMessage,
    WorkerToProxyQuery,
};
use cocoon_proto::session::{InboundMessage, IncomingQuery, QueryError};
use cocoon_proto::version;
use cocoon_ton::payments::SignedKind;
use cocoon_ton::TonAddress;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::payments::Payments;
use crate::proxy_core::WorkerAnswer;
use crate::state::WorkerEntry;
use crate::{relay, Shared, PROTO_MAX, PROTO_MIN};

/// Largest machine description kept and shown (a worker's free text in our stats page).
const MAX_MACHINE_DESCRIPTION_BYTES: usize = 4096;

/// Handshake progress of one worker connection.
#[derive(Default)]
struct Handshake {
    params: Option<WorkerParams>,
    /// The version and capabilities agreed in `worker.connectToProxy`.
    proto: version::Negotiated,
    registered: bool,
    /// A claim above the ledger waiting for the worker's signed evidence (payments on).
    disputed: Option<Dispute>,
}

/// What a worker claimed in `compareBalanceWithProxy` above this proxy's ledger.
struct Dispute {
    /// The worker's numbers and the ledger's, for the log line.
    why: String,
    since: tokio::time::Instant,
}

/// Why a worker connection is closed.
enum Close {
    /// The handshake or the message order was broken (`worker_protocol_violations`).
    Protocol(String),
    /// The worker's params are not accepted here (model, network, protocol versions).
    Refused(String),
    /// The worker claimed more than the ledger without evidence this proxy signed
    /// (`worker_claims_refused`).
    UnsignedClaim(String),
    /// The worker proved, with a payout this proxy signed, that the ledger is an old copy:
    /// the proxy halted.
    Halted(String),
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
        shared.forget_session(conn_id);
        return;
    }
    shared.worker_evidence.connected(conn_id, &peer);
    let mut hs = Handshake::default();
    // A worker whose claims are above the ledger has this long to show a payout this proxy
    // signed (`extendedCompareBalanceWithProxy`).
    let evidence_timeout = shared.cfg.handshake_timeout;
    loop {
        let evidence_due = hs.disputed.as_ref().map(|d| d.since + evidence_timeout);
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep_until(evidence_due) => {
                let why = hs.disputed.take().map(|d| d.why).unwrap_or_default();
                let why = format!("{why}; no signed evidence within {evidence_timeout:?}");
                closing(&shared, conn_id, &hs, Close::UnsignedClaim(why));
                break;
            }
            m = inbound.recv() => m,
        };
        match msg {
            None => break,
            Some(InboundMessage::Query(q)) => {
                if let Err(close) = on_query(&shared, conn_id, &mut hs, q).await {
                    closing(&shared, conn_id, &hs, close);
                    break;
                }
            }
            Some(InboundMessage::Packet(data)) => {
                if !hs.registered {
                    let reason = "messages before completing the handshake".into();
                    closing(&shared, conn_id, &hs, Close::Protocol(reason));
                    break;
                }
                if let Err(e) = on_packet(&shared, conn_id, data).await {
                    let reason = format!("undecodable message: {e}");
                    closing(&shared, conn_id, &hs, Close::Protocol(reason));
                    break;
                }
            }
        }
    }
    session.close();
    disconnected(&shared, conn_id).await;
}

/// Sleeps until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Logs and counts why a connection is being closed.
fn closing(shared: &Shared, conn_id: u64, hs: &Handshake, close: Close) {
    let owner = hs
        .params
        .as_ref()
        .map_or("", |p| p.worker_owner_address.as_str());
    match close {
        Close::Protocol(reason) => {
            shared.stats.worker_protocol_violations.inc();
            warn!(conn_id, owner, %reason, "worker broke the handshake protocol; closing");
        }
        Close::Refused(reason) => {
            warn!(conn_id, owner, %reason, "worker handshake refused; closing");
        }
        Close::UnsignedClaim(reason) => {
            shared.stats.worker_claims_refused.inc();
            warn!(
                conn_id,
                owner,
                %reason,
                "worker claims more than the ledger holds, without a payout this proxy signed; \
                 closing its connection (the proxy keeps serving)"
            );
        }
        Close::Halted(reason) => {
            warn!(conn_id, owner, %reason, "worker proved a ledger rollback; closing");
        }
    }
}

/// Answers `q` with a protocol error and closes the connection for `reason`.
async fn violation(q: IncomingQuery, reason: impl Into<String>) -> Result<(), Close> {
    let reason = reason.into();
    q.error(errors::PROTOVIOLATION, reason.clone()).await;
    Err(Close::Protocol(reason))
}

/// Answers `q` with an error (Cocoon's code for it) and closes the connection: the worker's
/// params are not accepted here.
async fn refuse(q: IncomingQuery, reason: String) -> Result<(), Close> {
    q.error(errors::PROTOVIOLATION, reason.clone()).await;
    Err(Close::Refused(reason))
}

async fn on_query(
    shared: &Arc<Shared>,
    conn_id: u64,
    hs: &mut Handshake,
    q: IncomingQuery,
) -> Result<(), Close> {
    let query: WorkerToProxyQuery = match cocoon_tl::from_bytes(&q.data) {
        Ok(x) => x,
        Err(e) => {
            q.error(errors::PROTOVIOLATION, format!("cannot decode query: {e}"))
                .await;
            return Err(Close::Protocol("undecodable query".into()));
        }
    };
    // After a disputed compare only the evidence may follow.
    if let Some(d) = &hs.disputed {
        if !matches!(
            query,
            WorkerToProxyQuery::ExtendedCompareBalanceWithProxy(_)
        ) {
            let why = d.why.clone();
            q.error(
                errors::PROTOVIOLATION,
                "payment numbers above the proxy's ledger".into(),
            )
            .await;
            return Err(Close::UnsignedClaim(why));
        }
    }
    match query {
        WorkerToProxyQuery::ConnectToProxy(_) if hs.params.is_some() => {
            return violation(q, "connectToProxy sent twice on one connection").await;
        }
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
                    Err(reason) => return violation(q, reason).await,
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
                (Err(reason), _) => return refuse(q, reason).await,
                (_, None) => {
                    let reason = format!("no common protocol version (worker {min}..={max}, proxy {PROTO_MIN}..={PROTO_MAX})");
                    return refuse(q, reason).await;
                }
                (Ok(()), Some(v)) => {
                    let v = version::Negotiated::new(v, version::EXTENSIONS_FLAG, p.flags);
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
        WorkerToProxyQuery::CompareBalanceWithProxy(_) if hs.params.is_none() => {
            return violation(q, "compareBalanceWithProxy before connectToProxy").await;
        }
        WorkerToProxyQuery::CompareBalanceWithProxy(c) => match shared.payments.clone() {
            Some(pay) => return compare_with_ledger(&pay, hs, q, &c).await,
            None => {
                // Rollback detection: a worker must never know more than the proxy's books.
                let owner = hs
                    .params
                    .as_ref()
                    .map(|p| p.worker_owner_address.clone())
                    .unwrap_or_default();
                let known = earned_by_owner(shared, &owner).unwrap_or(0);
                let worker_knows = c
                    .tokens_committed_to_db
                    .max(c.max_tokens)
                    .max(c.tokens_committed_to_blockchain);
                let error_code = i32::from(worker_knows > tl_long(known));
                q.answer(encode(&WorkerCompareBalanceWithProxyResult {
                    signed_payment: ProxySignedPayment::empty(),
                    tokens_committed_to_db: tl_long(known),
                    max_tokens: tl_long(known),
                    error_code,
                }))
                .await;
                if error_code != 0 {
                    return Err(Close::UnsignedClaim(format!(
                        "the worker claims {worker_knows} tokens, this proxy's books hold {known}"
                    )));
                }
            }
        },
        WorkerToProxyQuery::ExtendedCompareBalanceWithProxy(_) if hs.params.is_none() => {
            return violation(q, "extendedCompareBalanceWithProxy before connectToProxy").await;
        }
        WorkerToProxyQuery::ExtendedCompareBalanceWithProxy(e) => {
            let Some(pay) = shared.payments.clone() else {
                q.answer(encode(&WorkerExtendedCompareBalanceWithProxyResult {
                    error_code: 0,
                }))
                .await;
                return Ok(());
            };
            return weigh_evidence(shared, &pay, hs, q, &e).await;
        }
        WorkerToProxyQuery::ProxyHandshakeComplete(_) if hs.registered => {
            return violation(q, "proxyHandshakeComplete sent twice on one connection").await;
        }
        WorkerToProxyQuery::ProxyHandshakeComplete(c) => {
            let Some(p) = hs.params.clone() else {
                return violation(q, "proxyHandshakeComplete before connectToProxy").await;
            };
            register(shared, conn_id, &p, hs.proto, !c.is_disabled);
            hs.registered = true;
            info!(conn_id, model = %p.model, coefficient = p.coefficient, proto = hs.proto.version, extensions = hs.proto.extensions, enabled = !c.is_disabled, "worker registered");
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
                db_tokens: tl_long(db),
                max_tokens: tl_long(db),
            }))
            .await;
        }
        WorkerToProxyQuery::UpdatePaymentStatus(_) => {
            let earned = hs
                .params
                .as_ref()
                .and_then(|p| earned_by_owner(shared, &p.worker_owner_address))
                .unwrap_or(0);
            let earned = tl_long(earned);
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

/// The owner a connection named in `connectToProxy` (normalized to a TON address there when
/// payments are on).
fn owner_of(hs: &Handshake) -> Result<TonAddress, String> {
    let owner = hs
        .params
        .as_ref()
        .map(|p| p.worker_owner_address.as_str())
        .ok_or("no connectToProxy yet")?;
    owner
        .parse::<TonAddress>()
        .map_err(|e| format!("worker owner address {owner:?}: {e}"))
}

/// `compareBalanceWithProxy` with payments on: the worker's numbers against the ledger. Above
/// it they are only the worker's word: answered with error 1, and the connection waits (up to
/// `handshake_timeout`) for a payout this proxy signed ([`weigh_evidence`]).
async fn compare_with_ledger(
    pay: &Payments,
    hs: &mut Handshake,
    q: IncomingQuery,
    c: &WorkerCompareBalanceWithProxy,
) -> Result<(), Close> {
    let owner = match owner_of(hs) {
        Ok(o) => o,
        Err(reason) => return violation(q, reason).await,
    };
    let told = |v: i64| u64::try_from(v).unwrap_or(0);
    let (chain, db, max) = (
        told(c.tokens_committed_to_blockchain),
        told(c.tokens_committed_to_db),
        told(c.max_tokens),
    );
    let check = pay.worker_on_connect(&owner, chain, db, max);
    let (signed_payment, ledger_db) = pay.worker_status(&owner.to_bounceable());
    q.answer(encode(&WorkerCompareBalanceWithProxyResult {
        signed_payment,
        tokens_committed_to_db: tl_long(ledger_db),
        max_tokens: tl_long(ledger_db),
        error_code: i32::from(check.is_err()),
    }))
    .await;
    if let Err(why) = check {
        hs.disputed = Some(Dispute {
            why: format!("claimed chain={chain} db={db} max={max}: {why}"),
            since: tokio::time::Instant::now(),
        });
    }
    Ok(())
}

/// `extendedCompareBalanceWithProxy` with payments on: `other` may hold a payout this proxy
/// signed for the worker's contract. One for more than the ledger holds proves the ledger is
/// an old copy: the proxy halts (no crash loop; stats and `cocoon proxy ledger` tell the
/// operator). Anything else settles a pending dispute against the worker: its connection closes.
async fn weigh_evidence(
    shared: &Shared,
    pay: &Payments,
    hs: &mut Handshake,
    q: IncomingQuery,
    e: &WorkerExtendedCompareBalanceWithProxy,
) -> Result<(), Close> {
    let owner = match owner_of(hs) {
        Ok(o) => o,
        Err(reason) => return violation(q, reason).await,
    };
    let disputed = hs.disputed.take();
    let proven = if e.other.is_empty() {
        None
    } else {
        let signed = pay.worker_sc(&owner).and_then(|sc| {
            cocoon_onchain::signed::check_boc(&e.other, &shared.public_key, SignedKind::Payout, &sc)
                .map_err(|err| err.to_string())
        });
        match signed {
            Ok(p) => {
                let tokens = p.payload.new_tokens;
                pay.worker_on_connect(&owner, tokens, 0, 0)
                    .err()
                    .map(|why| format!("a payout this proxy signed for {tokens} tokens: {why}"))
            }
            Err(why) => {
                warn!(owner = %owner.to_bounceable(), %why, len = e.other.len(), "worker showed a payout this proxy cannot verify; ignored");
                None
            }
        }
    };
    let error_code = i32::from(proven.is_some() || disputed.is_some());
    q.answer(encode(&WorkerExtendedCompareBalanceWithProxyResult {
        error_code,
    }))
    .await;
    if let Some(why) = proven {
        let reason = format!("rollback proven by worker {}: {why}", owner.to_bounceable());
        pay.halt(reason.clone());
        return Err(Close::Halted(reason));
    }
    match disputed {
        Some(d) => Err(Close::UnsignedClaim(d.why)),
        None => Ok(()),
    }
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

/// Our `proxy.params` for a peer we agreed `proto` with (the extensions bit only for a peer
/// that set it too).
pub(crate) fn proxy_params(shared: &Shared, proto: version::Negotiated) -> ProxyParams {
    let (owner, sc) = match shared.payments.as_ref() {
        Some(p) => (p.owner.to_bounceable(), p.proxy_sc.to_bounceable()),
        None => (shared.cfg.owner_address.clone(), String::new()),
    };
    ProxyParams {
        flags: if proto.extensions {
            version::EXTENSIONS_FLAG
        } else {
            0
        },
        proxy_public_key: shared.public_key,
        proxy_owner_address: owner,
        proxy_sc_address: sc,
        is_test: Some(shared.cfg.attestation.is_test()),
        proto_version: Some(proto.version),
    }
}

fn earned_by_owner(shared: &Shared, owner: &str) -> Option<u64> {
    let core = shared.core();
    let st = &core.state;
    Some(st.worker_earned.get(owner).copied().unwrap_or(0))
}

fn register(
    shared: &Shared,
    conn_id: u64,
    p: &WorkerParams,
    proto: version::Negotiated,
    enabled: bool,
) {
    let max_active = p.max_active_requests.unwrap_or(1).max(1) as u32;
    let proxy_cnt = p.proxy_cnt.unwrap_or(1).max(1) as u32;
    let entry = WorkerEntry {
        enabled,
        machine_description_json: p
            .machine_description_json
            .clone()
            .filter(|d| d.len() <= MAX_MACHINE_DESCRIPTION_BYTES),
        evidence: shared.worker_evidence.peer(conn_id).map(|mut ev| {
            ev.model_hash = Some(crate::worker_evidence::model_hash(&p.model));
            ev
        }),
        ..WorkerEntry::new(
            conn_id,
            &p.worker_owner_address,
            &p.model,
            i64::from(p.coefficient),
            max_active.div_ceil(proxy_cnt),
            proto,
        )
    };
    {
        let mut core = shared.core();
        let st = &mut core.state;
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
            let answer = WorkerAnswer::Head {
                answer: m.answer,
                final_info: m.final_info,
            };
            relay::worker_answer(shared, conn_id, m.request_id, answer).await
        }
        WorkerToProxyMessage::QueryAnswerPartEx(m) => {
            let answer = WorkerAnswer::Part {
                answer: m.answer,
                progress: None,
                final_info: m.final_info,
            };
            relay::worker_answer(shared, conn_id, m.request_id, answer).await
        }
        WorkerToProxyMessage::QueryAnswerPartV3(m) => {
            let answer = WorkerAnswer::Part {
                answer: m.answer,
                progress: Some(m.progress.total_tokens_used.max(0) as u64),
                final_info: m.final_info,
            };
            relay::worker_answer(shared, conn_id, m.request_id, answer).await
        }
        WorkerToProxyMessage::QueryAnswerErrorEx(m) => {
            let answer = WorkerAnswer::Error {
                code: m.error_code,
                message: m.error,
                final_info: m.final_info,
            };
            relay::worker_answer(shared, conn_id, m.request_id, answer).await
        }
        WorkerToProxyMessage::QueryReceiptV3(m) => {
            relay::worker_receipt(shared, conn_id, m.request_id, &m.receipt).await
        }
        WorkerToProxyMessage::EnabledDisabled(m) => {
            let mut core = shared.core();
            let st = &mut core.state;
            if let Some(w) = st.workers.get_mut(&conn_id) {
                w.enabled = m.disabled == 0;
                info!(conn_id, enabled = w.enabled, "worker availability changed");
            }
        }
        WorkerToProxyMessage::NewCoefficient(m) => {
            if (0..1_000_000_000).contains(&m.new_coefficient) {
                {
                    let mut core = shared.core();
                    let st = &mut core.state;
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
    relay::worker_gone(shared, conn_id).await;
    shared.worker_evidence.gone(conn_id);
    shared.forget_session(conn_id);
    info!(conn_id, "worker gone");
}

/// Probes a worker the core took out of rotation after one of its requests hit the deadline
/// without a word from it (every second, a query it answers with an error when alive) until it
/// answers — then it is back — or its session ends. A partitioned worker thus costs at most the
/// requests in flight when the partition began.
pub(crate) fn probe(shared: &Arc<Shared>, conn_id: u64) {
    let Some(session) = shared.session(conn_id) else {
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
        sh.core().handle_worker_alive(conn_id);
        info!(conn_id, "worker answers again; back in rotation");
    });
}

/// How long one liveness probe waits, and how often a silent worker is probed.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests;
