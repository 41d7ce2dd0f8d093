//! Starting requests on workers, relaying their answers to clients, and ending them.
//!
//! Worker messages for a request are relayed in arrival order to the client in the shape its
//! negotiated protocol expects (legacy for 0, `…Ex` for 1+); only a worker's own requests can be
//! answered by it. [`settle_now`] is the single place a request ends: it releases the reservation
//! and worker slot, charges what [`crate::rules::settle_tokens`] says (the worker's statement up
//! to the reservation, or what was delivered when the proxy ends the request), drops the
//! deadline timer and sends the payment notices. The proxy counts what it relays itself
//! ([`crate::rules::RelayMeter`]), so a request ended early is charged what its client received
//! even when the worker reports no progress.

use std::sync::Arc;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::time::{format_unix, unix_now_f64};
use cocoon_proto::messages::tl_long;
use cocoon_proto::messages::{
    encode, ClientQueryAnswer, ClientQueryAnswerError, ClientQueryAnswerErrorEx,
    ClientQueryAnswerEx, ClientQueryAnswerPart, ClientQueryAnswerPartEx, ClientQueryFinalInfo,
    HttpResponse, ProxyCancelQueryV3, ProxyClientRequestPayment, ProxyQueryFinalInfo,
    ProxyRunQueryEx, ProxySignedPayment, ProxyWorkerRequestPayment,
};
use rand::RngCore;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::rules;
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
    let deadline = rules::request_deadline(
        req.timeout,
        shared.cfg.min_request_timeout,
        shared.cfg.max_request_timeout,
    );
    // Reserved for the larger of what the message and the body ask (the worker follows the
    // body), or the configured cap when the body sets no limit.
    let max_tokens = rules::reserved_max_tokens(
        req.max_tokens,
        rules::body_max_tokens(&req.query),
        shared.cfg.default_max_tokens,
    );
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
        let mut st = shared.state();
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
                max_tokens,
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
                        deadline,
                        coefficient: a.coefficient.max(0) as u64,
                        progress_total: 0,
                        // The prompt is estimated as the reservation estimates it.
                        meter: rules::RelayMeter::new(req.query.len() as u64),
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

    // Deadline: the whole request, the client's timeout within the proxy's bounds.
    {
        let sh = shared.clone();
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
                .state()
                .workers
                .get(&admission.worker_conn)
                .map(|w| w.owner.clone())
                .unwrap_or_default();
            p.worker_status(&owner).0
        }
        None => ProxySignedPayment::empty(),
    };
    let msg = ProxyRunQueryEx {
        query: req.query,
        signed_payment: worker_signed,
        coefficient: admission.coefficient,
        timeout: deadline.as_secs_f64() * 0.95,
        request_id: proxy_id,
        flags: 0,
        enable_debug: None,
    };
    let sent = send_to(shared, admission.worker_conn, encode(&msg));
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

/// A body part (with cumulative usage on protocol 3): counted by the proxy, then relayed — or
/// the stream is cut as soon as the worker's progress or the proxy's own count passes the
/// reservation (the part that passed it is not relayed; the cut is charged the reservation).
pub(crate) async fn part(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    answer: Bytes,
    progress: Option<u64>,
    final_info: Option<ProxyQueryFinalInfo>,
) {
    let over = {
        let mut st = shared.state();
        st.part_arrived(
            &id,
            worker_conn,
            &answer,
            progress,
            final_info.is_some(),
            &shared.cfg.pricing,
        )
    };
    match over {
        None => {
            debug!(request = %hex::encode(&id[..8]), "part for a request that is not running here; ignored");
        }
        Some(true) => {
            warn!(request = %hex::encode(&id[..8]), worker_conn, "stream passed its reservation; cutting it");
            abort(
                shared,
                &id,
                errors::RESERVATION_EXCEEDED,
                "proxy: reserved tokens depleted",
            )
            .await;
        }
        Some(false) => relay(shared, worker_conn, id, Piece::Part, answer, final_info).await,
    }
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
    let head = match piece {
        Piece::Head => cocoon_tl::from_bytes::<HttpResponse>(&answer).ok(),
        Piece::Part => None,
    };
    let found = match piece {
        Piece::Head => head_arrived(shared, worker_conn, &id, head.as_ref()),
        Piece::Part => lookup(shared, worker_conn, &id),
    };
    let Some((client_conn, client_proto, client_id, started)) = found else {
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
    let answer = match head {
        Some(resp) => add_proxy_headers(resp, started, worker_evidence::headers(worker.as_ref())),
        None => answer,
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
        send_to(shared, client_conn, msg);
        return;
    };
    let reported = f.tokens_used.total_tokens_used.max(0) as u64;
    let Ok(settled) = settle_now(shared, &id, Some(reported), true) else {
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
                    send_to(&sh, client_conn, encode(&info));
                }
                send_to(&sh, client_conn, msg);
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
    let Some((client_conn, client_proto, client_id, started)) = lookup(shared, worker_conn, &id)
    else {
        return;
    };
    let final_client = final_info
        .as_ref()
        .map(|f| client_final(f, client_proto, started));
    // What the worker says it delivered; without a statement, what the proxy saw delivered.
    let reported = final_info.map(|f| f.tokens_used.total_tokens_used.max(0) as u64);
    let Ok(settled) = settle_now(shared, &id, reported, false) else {
        return;
    };
    let client = (client_conn, client_proto, client_id);
    end_failed(shared, settled, client, code, message, final_client, true).await;
}

/// Ends a request from the proxy's side (timeout, cancel, cut, peer loss): tells the client
/// (if still there) and the worker (protocol 3 can stop generating), charges what was
/// delivered so far — the larger of the worker's progress and the proxy's own count, up to the
/// reservation. It is settled before anything is sent, so nothing relayed after the ending is
/// left uncharged and the worker's later answer for it finds no request and is ignored: the
/// request is settled once, here (a second ending of it does nothing).
pub(crate) async fn abort(shared: &Arc<Shared>, id: &[u8; 32], code: i32, message: &str) {
    let info = {
        let st = shared.state();
        st.requests.get(id).map(|r| {
            // Not a word from the worker for a deadline it could have met: partitioned or hung.
            let suspect = code == errors::TIMEOUT
                && !r.head_sent
                && st.suspect_after_deadline(
                    r.worker_conn,
                    r.deadline,
                    shared.cfg.min_request_timeout,
                );
            (
                r.client_conn,
                r.client_proto,
                r.client_request_id,
                r.worker_conn,
                suspect,
            )
        })
    };
    let Some((client_conn, client_proto, client_id, worker_conn, suspect)) = info else {
        return;
    };
    let Ok(settled) = settle_now(shared, id, None, false) else {
        return;
    };
    if suspect {
        crate::worker_conn::suspect(shared, worker_conn);
    }
    match code {
        errors::TIMEOUT => shared.stats.timed_out.inc(),
        errors::CANCELLED => shared.stats.cancelled.inc(),
        _ => 0,
    };
    let worker_proto = shared
        .state()
        .workers
        .get(&worker_conn)
        .map_or(0, |w| w.proto);
    if worker_proto >= 3 {
        send_to(
            shared,
            worker_conn,
            encode(&ProxyCancelQueryV3 { request_id: *id }),
        );
    }
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
        .state()
        .by_client
        .get(&(client_conn, client_id))
        .copied();
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
/// slot and charges what [`rules::settle_tokens`] says — `reported` is the worker's own usage
/// statement (final answer or error), `None` when the proxy ends the request. The progress and
/// relayed counts are read under the same lock that ends the request, so no part is missed.
/// `Err` when the request already ended. With payments on, the charge must then be made
/// durable ([`when_durable`]) before anyone is told.
pub(crate) fn settle_now(
    shared: &Arc<Shared>,
    id: &[u8; 32],
    reported: Option<u64>,
    ok: bool,
) -> Result<Settled, String> {
    let settled = {
        let mut st = shared.state();
        let worker_owner = st
            .requests
            .get(id)
            .and_then(|r| st.workers.get(&r.worker_conn))
            .map(|w| w.owner.clone());
        st.settle(id, reported, ok, &shared.cfg.pricing)
            .map(|(r, s, over)| (r, s, over, worker_owner))
    };
    // Dropping the timer handle aborts it (unless it is the timer running this very call).
    let timer = shared.timers.lock().ok().and_then(|mut t| t.remove(id));
    let Some((req, settlement, overshoot, worker_owner)) = settled else {
        return Err("request already ended".into());
    };
    if let Some(o) = overshoot {
        shared.stats.over_reservation.inc();
        warn!(
            request = %hex::encode(&id[..8]),
            worker_conn = req.worker_conn,
            worker = worker_owner.as_deref().unwrap_or(""),
            reported = o.reported,
            reserved = o.reserved,
            "worker stated usage above the reservation; charged the reservation"
        );
    }
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
/// that cannot write halts the proxy: nothing more is accepted that could not be accounted. A
/// charge the ledger refuses as input (a counter that would overflow) fails that request only
/// ([`rules::ledger_error_halts`]).
async fn make_durable(shared: &Shared, s: &Settled) -> Result<(), String> {
    let (Some(p), Some(worker)) = (shared.payments.as_ref(), s.worker_owner.as_ref()) else {
        return Ok(());
    };
    p.record(&s.req.client_owner, worker, s.settlement.charged_tokens)
        .await
        .map_err(|e| {
            let why = format!("the ledger could not record a charge: {e}");
            if rules::ledger_error_halts(&e) {
                p.halt(why.clone());
            } else {
                shared.stats.charges_rejected.inc();
                warn!(
                    request = %hex::encode(&s.id[..8]),
                    tokens = s.settlement.charged_tokens,
                    error = %e,
                    "the ledger refused a charge; the request fails"
                );
            }
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
        request_tokens: tl_long(settlement.charged_tokens),
    });
    send_to(shared, req.client_conn, client_msg);
    let worker_owner = shared
        .state()
        .workers
        .get(&req.worker_conn)
        .map(|w| w.owner.clone())
        .unwrap_or_default();
    let (worker_signed, worker_db) = match shared.payments.as_ref() {
        Some(p) => {
            let (signed, db) = p.worker_status(&worker_owner);
            (signed, tl_long(db))
        }
        None => (
            ProxySignedPayment::empty(),
            tl_long(settlement.worker_earned_total),
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
            tl_long(settlement.worker_earned_total)
        },
        request_tokens: tl_long(settlement.charged_tokens),
        request_client_owner: req.client_owner.clone(),
    });
    send_to(shared, req.worker_conn, worker_msg);
    drop(notices);
    // Abort the timer last: if this call runs inside it, everything above is already done.
    drop(timer);
}

/// Finds the client side of a worker's request; None if unknown or not this worker's.
fn lookup(shared: &Shared, worker_conn: u64, id: &[u8; 32]) -> Option<(u64, i32, [u8; 32], f64)> {
    let st = shared.state();
    let r = st.requests.get(id)?;
    if r.worker_conn != worker_conn {
        warn!("worker answered a request that is not its own; ignored");
        return None;
    }
    Some(client_side(r))
}

/// The head of a worker's answer: marks it (its body bytes counted, the worker's time to head
/// noted) and finds the client side, as [`lookup`] does.
fn head_arrived(
    shared: &Shared,
    worker_conn: u64,
    id: &[u8; 32],
    head: Option<&HttpResponse>,
) -> Option<(u64, i32, [u8; 32], f64)> {
    let content_type = head.and_then(|h| {
        h.headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case("content-type"))
            .map(|x| x.value.as_str())
    });
    let payload = head.map(|h| &h.payload[..]).unwrap_or_default();
    let mut st = shared.state();
    let now = tokio::time::Instant::now();
    match st.head_arrived(id, worker_conn, now, content_type, payload) {
        Some(r) => Some(client_side(r)),
        None => {
            if st.requests.contains_key(id) {
                warn!("worker answered a request that is not its own; ignored");
            }
            None
        }
    }
}

fn client_side(r: &RunningRequest) -> (u64, i32, [u8; 32], f64) {
    (
        r.client_conn,
        r.client_proto,
        r.client_request_id,
        r.started_unix,
    )
}

/// Sends without waiting on the peer (`Shared::send_to`): a peer that stopped reading is
/// closed and loses its own requests, never holds up the caller.
fn send_to(shared: &Shared, conn: u64, msg: Bytes) -> bool {
    shared.send_to(conn, msg)
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
    send_to(shared, conn, msg);
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
/// decoded `http.response` and serializes it (undecodable heads are relayed as they came).
fn add_proxy_headers(
    mut resp: HttpResponse,
    started: f64,
    worker: Vec<cocoon_proto::messages::HttpHeader>,
) -> Bytes {
    use cocoon_proto::messages::HttpHeader;
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
