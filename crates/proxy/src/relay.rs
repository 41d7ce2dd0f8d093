//! Starting requests on workers, relaying their answers to clients, and ending them.
//!
//! Worker messages for a request are relayed in arrival order to the client in the shape its
//! negotiated protocol expects (legacy for 0, `…Ex` for 1+); only a worker's own requests can be
//! answered by it. [`settle_now`] is the single place a request ends: it releases the reservation
//! and worker slot, charges the delivered usage, drops the deadline timer and sends the payment
//! notices.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::time::{format_unix, unix_now_f64};
use cocoon_proto::messages::{
    encode, ClientQueryAnswer, ClientQueryAnswerError, ClientQueryAnswerErrorEx,
    ClientQueryAnswerEx, ClientQueryAnswerPart, ClientQueryAnswerPartEx, ClientQueryFinalInfo,
    HttpHeader, HttpResponse, ProxyCancelQueryV3, ProxyClientRequestPayment, ProxyQueryFinalInfo,
    ProxyRunQueryEx, ProxySignedPayment, ProxyWorkerRequestPayment,
};
use rand::RngCore;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::state::{AdmitParams, RunningRequest};
use crate::{worker_evidence, Shared};

/// A client's request as received, whatever its protocol version.
pub(crate) struct IncomingRequest {
    pub client_conn: u64,
    pub client_owner: String,
    pub client_proto: i32,
    pub model_name: String,
    pub query: Bytes,
    pub max_coefficient: i64,
    pub max_tokens: u64,
    pub timeout: f64,
    pub request_id: [u8; 32],
}

/// Admits a request, picks a worker and sends it there; rejections go straight back.
pub(crate) async fn start(shared: &Arc<Shared>, req: IncomingRequest) {
    shared.stats.queries.inc();
    let model_base = req.model_name.split('@').next().unwrap_or("").to_string();
    let started = tokio::time::Instant::now();
    let timeout = if req.timeout.is_finite() && req.timeout > 0.0 {
        req.timeout
            .min(shared.cfg.max_request_timeout.as_secs_f64())
    } else {
        shared.cfg.max_request_timeout.as_secs_f64()
    };
    let mut proxy_id = [0u8; 32];
    rand::rng().fill_bytes(&mut proxy_id);

    let halted = shared.payments.as_ref().and_then(|p| {
        p.halted().or_else(|| {
            p.migrating
                .load(std::sync::atomic::Ordering::Relaxed)
                .then(|| "moving to the root's new params; retry in a few seconds".to_string())
        })
    });
    let admitted = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        if let Some(why) = halted {
            Err(crate::state::Rejection {
                code: errors::NO_WORKER,
                message: format!("proxy: {why}"),
            })
        } else if st
            .by_client
            .contains_key(&(req.client_conn, req.request_id))
        {
            Err(crate::state::Rejection {
                code: errors::PROTOVIOLATION,
                message: "duplicate request id".into(),
            })
        } else {
            let params = AdmitParams {
                client_owner: &req.client_owner,
                model_base: &model_base,
                max_coefficient: req.max_coefficient,
                max_tokens: req.max_tokens,
                prompt_bytes: req.query.len() as u64,
                max_running_per_client: shared.cfg.max_requests_per_client,
            };
            st.admit(&params, &shared.cfg.pricing).inspect(|a| {
                st.requests.insert(
                    proxy_id,
                    RunningRequest {
                        client_conn: req.client_conn,
                        client_owner: req.client_owner.clone(),
                        client_request_id: req.request_id,
                        client_proto: req.client_proto,
                        worker_conn: a.worker_conn,
                        reserved: a.reserved,
                        started_unix: unix_now_f64(),
                        started,
                        progress_total: 0,
                        head_sent: false,
                    },
                );
                st.by_client
                    .insert((req.client_conn, req.request_id), proxy_id);
            })
        }
    };
    let admission = match admitted {
        Ok(a) => a,
        Err(rej) => {
            shared.stats.rejected.inc();
            debug!(code = rej.code, reason = %rej.message, "request rejected");
            send_client_error(
                shared,
                req.client_conn,
                req.client_proto,
                req.request_id,
                rej.code,
                &rej.message,
                None,
            )
            .await;
            return;
        }
    };

    // Deadline: the whole request, at the proxy's share of the client's timeout.
    {
        let sh = shared.clone();
        let deadline = Duration::from_secs_f64(timeout);
        let timer = AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            abort(&sh, &proxy_id, errors::TIMEOUT, "proxy: request timed out").await;
        }));
        if let Ok(mut t) = shared.timers.lock() {
            t.insert(proxy_id, timer);
        }
    }
    // The worker's latest signed payout rides along (Cocoon does the same), read and sent in
    // order with the other payment notices.
    let notices = payment_notices(shared).await;
    let worker_signed = match shared.payments.as_ref() {
        Some(p) => {
            let owner = shared
                .state
                .lock()
                .ok()
                .and_then(|st| {
                    st.workers
                        .get(&admission.worker_conn)
                        .map(|w| w.owner.clone())
                })
                .unwrap_or_default();
            p.worker_status(&owner).0
        }
        None => ProxySignedPayment::empty(),
    };
    let msg = ProxyRunQueryEx {
        query: req.query,
        signed_payment: worker_signed,
        coefficient: admission.coefficient,
        timeout: timeout * 0.95,
        request_id: proxy_id,
        flags: 0,
        enable_debug: None,
    };
    let sent = match shared.session(admission.worker_conn) {
        Some(s) => s.send(encode(&msg)).await.is_ok(),
        None => false,
    };
    drop(notices);
    if !sent {
        abort(
            shared,
            &proxy_id,
            errors::BAD_GATEWAY,
            "proxy: worker connection lost",
        )
        .await;
    }
}

/// Which piece of an answer a worker message carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The serialized `http.response` head (`…queryAnswerEx`).
    Head,
    /// A body chunk (`…queryAnswerPartEx` / `PartV3`).
    Part,
}

/// A body part (with cumulative usage on protocol 3): relay, or cut it at the reservation.
pub(crate) async fn part(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    answer: Bytes,
    progress: Option<u64>,
    final_info: Option<ProxyQueryFinalInfo>,
) {
    if let Some(p) = progress {
        let over = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            match st.requests.get_mut(&id) {
                Some(r) if r.worker_conn == worker_conn => {
                    r.progress_total = r.progress_total.max(p);
                    final_info.is_none() && p > r.reserved
                }
                _ => return,
            }
        };
        if over {
            warn!(request = %hex::encode(&id[..8]), "stream exceeded its reservation; cutting it");
            abort(
                shared,
                &id,
                errors::RESERVATION_EXCEEDED,
                "proxy: reserved tokens depleted",
            )
            .await;
            return;
        }
    }
    relay(shared, worker_conn, id, Piece::Part, answer, final_info).await;
}

/// Relays a head or a part to the request's client in the shape of the client's protocol
/// (`…Ex` from 1, legacy for 0; the head gets the proxy's timing headers), and settles the
/// request when the piece is final.
pub(crate) async fn relay(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    piece: Piece,
    answer: Bytes,
    final_info: Option<ProxyQueryFinalInfo>,
) {
    let Some((client_conn, client_proto, client_id, started)) =
        lookup(shared, worker_conn, &id, piece == Piece::Head)
    else {
        return;
    };
    // The serving worker's evidence: in the head's headers, and (protocol 3) in a
    // `client.queryWorkerInfoV3` right before the final answer.
    let wants_info = client_proto >= cocoon_proto::version::PROTO_V3 && final_info.is_some();
    let worker = if piece == Piece::Head || wants_info {
        worker_evidence::for_conn(shared, worker_conn)
    } else {
        None
    };
    let answer = match piece {
        Piece::Head => {
            add_proxy_headers(answer, started, worker_evidence::headers(worker.as_ref()))
        }
        Piece::Part => answer,
    };
    shared.stats.bytes.inc_by(answer.len() as u64);
    let msg = if client_proto >= 1 {
        let final_info = final_info
            .as_ref()
            .map(|f| client_final(f, client_proto, started));
        match piece {
            Piece::Head => encode(&ClientQueryAnswerEx {
                request_id: client_id,
                answer,
                flags: 0,
                final_info,
            }),
            Piece::Part => encode(&ClientQueryAnswerPartEx {
                request_id: client_id,
                answer,
                flags: 0,
                final_info,
            }),
        }
    } else {
        let is_completed = final_info.is_some();
        let request_tokens_used = final_info
            .as_ref()
            .map(|f| f.tokens_used)
            .unwrap_or_default();
        match piece {
            Piece::Head => encode(&ClientQueryAnswer {
                answer,
                is_completed,
                request_id: client_id,
                request_tokens_used,
            }),
            Piece::Part => encode(&ClientQueryAnswerPart {
                answer,
                is_completed,
                request_id: client_id,
                request_tokens_used,
            }),
        }
    };
    // The final piece acknowledges the charge: it goes out only once the charge is durable —
    // on a tracked task, so this worker's other answers are not held up by the fsync.
    let Some(f) = final_info else {
        send_to(shared, client_conn, msg).await;
        return;
    };
    let tokens = f.tokens_used.total_tokens_used.max(0) as u64;
    let Ok(settled) = settle_now(shared, &id, tokens, true) else {
        return; // already ended (timed out or cancelled): the client was told
    };
    let info = worker
        .as_ref()
        .filter(|_| wants_info)
        .and_then(|w| worker_evidence::info_v3(w, client_id));
    when_durable(shared, settled, move |sh, durable| async move {
        match durable {
            Ok(s) => {
                // Which worker served it, right before the final answer (protocol 3).
                if let Some(info) = info {
                    send_to(&sh, client_conn, encode(&info)).await;
                }
                send_to(&sh, client_conn, msg).await;
                notify(&sh, s).await;
            }
            Err(why) => {
                send_client_error(
                    &sh,
                    client_conn,
                    client_proto,
                    client_id,
                    errors::ERROR,
                    &why,
                    None,
                )
                .await;
            }
        }
    })
    .await;
}

/// The worker failed the request: relay its error, charge what it delivered.
pub(crate) async fn error(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    code: i32,
    message: String,
    final_info: Option<ProxyQueryFinalInfo>,
) {
    let Some((client_conn, client_proto, client_id, started)) =
        lookup(shared, worker_conn, &id, false)
    else {
        return;
    };
    let final_client = final_info
        .as_ref()
        .map(|f| client_final(f, client_proto, started));
    let delivered = final_info.map(|f| f.tokens_used.total_tokens_used.max(0) as u64);
    let progress = progress_of(shared, &id);
    let Ok(settled) = settle_now(shared, &id, delivered.unwrap_or(progress), false) else {
        return;
    };
    let client = (client_conn, client_proto, client_id);
    end_failed(shared, settled, client, code, message, final_client, true).await;
}

/// Ends a request from the proxy's side (timeout, cancel, cut, peer loss): tells the client
/// (if still there) and the worker (protocol 3 can stop generating), charges the usage the
/// worker reported so far.
pub(crate) async fn abort(shared: &Arc<Shared>, id: &[u8; 32], code: i32, message: &str) {
    let info = {
        let Ok(st) = shared.state.lock() else { return };
        st.requests.get(id).map(|r| {
            (
                r.client_conn,
                r.client_proto,
                r.client_request_id,
                r.worker_conn,
                r.progress_total,
                r.head_sent,
            )
        })
    };
    let Some((client_conn, client_proto, client_id, worker_conn, progress, head_sent)) = info
    else {
        return;
    };
    if code == errors::TIMEOUT && !head_sent {
        // Not a word from the worker for the whole deadline: partitioned or hung.
        crate::worker_conn::suspect(shared, worker_conn);
    }
    match code {
        errors::TIMEOUT => shared.stats.timed_out.inc(),
        errors::CANCELLED => shared.stats.cancelled.inc(),
        _ => 0,
    };
    let worker_proto = shared
        .state
        .lock()
        .ok()
        .and_then(|st| st.workers.get(&worker_conn).map(|w| w.proto))
        .unwrap_or(0);
    if worker_proto >= 3 {
        send_to(
            shared,
            worker_conn,
            encode(&ProxyCancelQueryV3 { request_id: *id }),
        )
        .await;
    }
    let Ok(settled) = settle_now(shared, id, progress, false) else {
        return;
    };
    let client = (client_conn, client_proto, client_id);
    // A client that cancelled is not told again.
    let tell = code != errors::CANCELLED;
    end_failed(
        shared,
        settled,
        client,
        code,
        message.to_string(),
        None,
        tell,
    )
    .await;
}

/// Ends a failed request once its charge is durable: the client learns why (unless `tell`
/// is false), then both parties get their payment notices.
async fn end_failed(
    shared: &Arc<Shared>,
    settled: Settled,
    (client_conn, client_proto, client_id): (u64, i32, [u8; 32]),
    code: i32,
    message: String,
    final_info: Option<ClientQueryFinalInfo>,
    tell: bool,
) {
    when_durable(shared, settled, move |sh, durable| async move {
        if tell {
            send_client_error(
                &sh,
                client_conn,
                client_proto,
                client_id,
                code,
                &message,
                final_info,
            )
            .await;
        }
        if let Ok(s) = durable {
            notify(&sh, s).await;
        }
    })
    .await;
}

/// Cancels the request a client sent with `client_id` on `client_conn`.
pub(crate) async fn cancel_by_client(shared: &Arc<Shared>, client_conn: u64, client_id: [u8; 32]) {
    let id = shared
        .state
        .lock()
        .ok()
        .and_then(|st| st.by_client.get(&(client_conn, client_id)).copied());
    if let Some(id) = id {
        abort(shared, &id, errors::CANCELLED, "cancelled by client").await;
    }
}

/// A settled request: what to tell its client and worker, and its timer (dropped last).
pub(crate) struct Settled {
    id: [u8; 32],
    req: RunningRequest,
    settlement: crate::state::Settlement,
    worker_owner: Option<String>,
    timer: Option<AbortOnDropHandle<()>>,
}

/// The single ending of every admitted request, in memory: releases its reservation and worker
/// slot and charges the delivered usage. `Err` when the request already ended. With payments
/// on, the charge must then be made durable ([`when_durable`]) before anyone is told.
pub(crate) fn settle_now(
    shared: &Arc<Shared>,
    id: &[u8; 32],
    tokens: u64,
    ok: bool,
) -> Result<Settled, String> {
    let settled = shared.state.lock().ok().and_then(|mut st| {
        let worker_owner = st
            .requests
            .get(id)
            .and_then(|r| st.workers.get(&r.worker_conn))
            .map(|w| w.owner.clone());
        st.finish(id, tokens, ok, &shared.cfg.pricing)
            .map(|(r, s)| (r, s, worker_owner))
    });
    // Dropping the timer handle aborts it (unless it is the timer running this very call).
    let timer = shared.timers.lock().ok().and_then(|mut t| t.remove(id));
    let Some((req, settlement, worker_owner)) = settled else {
        return Err("request already ended".into());
    };
    if ok {
        shared.stats.succeeded.inc();
    } else {
        shared.stats.failed.inc();
    }
    shared.stats.tokens_total.inc_by(settlement.charged_tokens);
    shared.stats.client_cost.inc_by(settlement.client_cost);
    shared.stats.worker_fee.inc_by(settlement.worker_fee);
    shared.stats.commission.inc_by(settlement.commission);
    Ok(Settled {
        id: *id,
        req,
        settlement,
        worker_owner,
        timer,
    })
}

/// Makes a settlement's charge durable in the ledger (a no-op with payments off). A ledger
/// that cannot write halts the proxy: nothing more is accepted that could not be accounted.
async fn make_durable(shared: &Shared, s: &Settled) -> Result<(), String> {
    let (Some(p), Some(worker)) = (shared.payments.as_ref(), s.worker_owner.as_ref()) else {
        return Ok(());
    };
    p.record(&s.req.client_owner, worker, s.settlement.charged_tokens)
        .await
        .map_err(|e| {
            let why = format!("the ledger could not record a charge: {e}");
            p.halt(why.clone());
            why
        })
}

/// Runs `then` once `s` is durable. With payments on that waits for the ledger's group commit,
/// so it runs on a task of `shared.settling` (awaited at shutdown) and the caller — typically
/// a worker connection's read loop — goes on at once; with payments off it runs inline.
pub(crate) async fn when_durable<F, Fut>(shared: &Arc<Shared>, s: Settled, then: F)
where
    F: FnOnce(Arc<Shared>, Result<Settled, String>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if shared.payments.is_none() {
        then(shared.clone(), Ok(s)).await;
        return;
    }
    let sh = shared.clone();
    shared.settling.spawn(async move {
        let durable = make_durable(&sh, &s).await.map(|()| s);
        then(sh, durable).await;
    });
}

/// The order lock of payment notices; only payments need it (without them the numbers told
/// are not checked for order), so the request path takes no global lock when they are off.
async fn payment_notices(shared: &Shared) -> Option<tokio::sync::MutexGuard<'_, ()>> {
    match shared.payments {
        Some(_) => Some(shared.payment_notices.lock().await),
        None => None,
    }
}

/// Sends the payment notices of a settled request, then drops its timer.
pub(crate) async fn notify(shared: &Arc<Shared>, s: Settled) {
    let Settled {
        id,
        req,
        settlement,
        timer,
        ..
    } = s;
    let notices = payment_notices(shared).await;
    // Read now, under the lock: what is sent never goes backwards.
    let (client_signed, client_db, client_used) =
        crate::client_conn::payment_status(shared, &req.client_owner);
    let client_msg = encode(&ProxyClientRequestPayment {
        request_id: req.client_request_id,
        signed_payment: client_signed,
        db_tokens: client_db,
        max_tokens: client_used,
        request_tokens: settlement.charged_tokens as i64,
    });
    send_to(shared, req.client_conn, client_msg).await;
    let worker_owner = shared
        .state
        .lock()
        .ok()
        .and_then(|st| st.workers.get(&req.worker_conn).map(|w| w.owner.clone()))
        .unwrap_or_default();
    let (worker_signed, worker_db) = match shared.payments.as_ref() {
        Some(p) => {
            let (signed, db) = p.worker_status(&worker_owner);
            (signed, db as i64)
        }
        None => (
            ProxySignedPayment::empty(),
            settlement.worker_earned_total as i64,
        ),
    };
    let worker_msg = encode(&ProxyWorkerRequestPayment {
        request_id: id,
        signed_payment: worker_signed,
        db_tokens: worker_db,
        // With payments, only what is durable is ever told (a worker's max may not exceed our db).
        max_tokens: if shared.payments.is_some() {
            worker_db
        } else {
            settlement.worker_earned_total as i64
        },
        request_tokens: settlement.charged_tokens as i64,
        request_client_owner: req.client_owner.clone(),
    });
    send_to(shared, req.worker_conn, worker_msg).await;
    drop(notices);
    // Abort the timer last: if this call runs inside it, everything above is already done.
    drop(timer);
}

fn progress_of(shared: &Shared, id: &[u8; 32]) -> u64 {
    shared
        .state
        .lock()
        .ok()
        .and_then(|st| st.requests.get(id).map(|r| r.progress_total))
        .unwrap_or(0)
}

/// Finds the client side of a worker's request; None if unknown or not this worker's.
fn lookup(
    shared: &Shared,
    worker_conn: u64,
    id: &[u8; 32],
    mark_head: bool,
) -> Option<(u64, i32, [u8; 32], f64)> {
    let mut st = shared.state.lock().ok()?;
    let r = st.requests.get_mut(id)?;
    if r.worker_conn != worker_conn {
        warn!("worker answered a request that is not its own; ignored");
        return None;
    }
    if mark_head {
        r.head_sent = true;
    }
    Some((
        r.client_conn,
        r.client_proto,
        r.client_request_id,
        r.started_unix,
    ))
}

async fn send_to(shared: &Shared, conn: u64, msg: Bytes) {
    if let Some(s) = shared.session(conn) {
        let _ = s.send(msg).await;
    }
}

async fn send_client_error(
    shared: &Shared,
    conn: u64,
    proto: i32,
    client_id: [u8; 32],
    code: i32,
    message: &str,
    final_info: Option<ClientQueryFinalInfo>,
) {
    let msg = if proto >= 1 {
        encode(&ClientQueryAnswerErrorEx {
            request_id: client_id,
            error_code: code,
            error: message.to_string(),
            flags: 0,
            final_info,
        })
    } else {
        let tokens = final_info.map(|f| f.tokens_used).unwrap_or_default();
        encode(&ClientQueryAnswerError {
            error_code: code,
            error: message.to_string(),
            request_id: client_id,
            request_tokens_used: tokens,
        })
    };
    send_to(shared, conn, msg).await;
}

fn client_final(
    f: &ProxyQueryFinalInfo,
    client_proto: i32,
    proxy_start: f64,
) -> ClientQueryFinalInfo {
    let timing = client_proto >= 2;
    ClientQueryFinalInfo {
        flags: 0,
        tokens_used: f.tokens_used,
        worker_debug: None,
        proxy_debug: None,
        proxy_start_time: timing.then_some(proxy_start),
        proxy_end_time: timing.then_some(unix_now_f64()),
        worker_start_time: timing.then_some(f.worker_start_time.unwrap_or(0.0)),
        worker_end_time: timing.then_some(f.worker_end_time.unwrap_or(0.0)),
    }
}

/// Adds `X-Cocoon-Proxy-Start/End` and the worker's `X-Cocoon-Worker-*` headers (`worker`) to a
/// serialized `http.response`; leaves undecodable bytes alone.
fn add_proxy_headers(answer: Bytes, started: f64, worker: Vec<HttpHeader>) -> Bytes {
    let Ok(mut resp) = cocoon_tl::from_bytes::<HttpResponse>(&answer) else {
        return answer;
    };
    resp.headers.push(HttpHeader {
        name: "X-Cocoon-Proxy-Start".into(),
        value: format_unix(started),
    });
    resp.headers.push(HttpHeader {
        name: "X-Cocoon-Proxy-End".into(),
        value: format_unix(unix_now_f64()),
    });
    worker_evidence::merge_into(&mut resp.headers, worker);
    encode(&resp)
}

/// Refuses a request from a client that has not authorized.
pub(crate) async fn reject_unauthorized(
    shared: &Shared,
    conn: u64,
    proto: i32,
    client_id: [u8; 32],
) {
    send_client_error(
        shared,
        conn,
        proto,
        client_id,
        errors::PROTOVIOLATION,
        "client is not authorized",
        None,
    )
    .await;
}
