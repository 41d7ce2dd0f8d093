//! Starting requests on workers, relaying their answers to clients, and ending them.
//!
//! Worker messages for a request are relayed in arrival order to the client in the shape its
//! negotiated protocol expects (legacy for 0, `…Ex` for 1+); only a worker's own requests can be
//! answered by it. [`finish`] is the single place a request ends: it releases the reservation
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
use crate::Shared;

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

    let admitted = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        if st
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
    let msg = ProxyRunQueryEx {
        query: req.query,
        signed_payment: ProxySignedPayment::empty(),
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
    let answer = match piece {
        Piece::Head => add_proxy_headers(answer, started),
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
    send_to(shared, client_conn, msg).await;
    if let Some(f) = final_info {
        finish(
            shared,
            &id,
            f.tokens_used.total_tokens_used.max(0) as u64,
            true,
        )
        .await;
    }
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
    send_client_error(
        shared,
        client_conn,
        client_proto,
        client_id,
        code,
        &message,
        final_client,
    )
    .await;
    let delivered = final_info.map(|f| f.tokens_used.total_tokens_used.max(0) as u64);
    let progress = progress_of(shared, &id);
    finish(shared, &id, delivered.unwrap_or(progress), false).await;
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
            )
        })
    };
    let Some((client_conn, client_proto, client_id, worker_conn, progress)) = info else {
        return;
    };
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
    if code != errors::CANCELLED {
        send_client_error(
            shared,
            client_conn,
            client_proto,
            client_id,
            code,
            message,
            None,
        )
        .await;
    }
    finish(shared, id, progress, false).await;
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

/// The single ending of every admitted request.
pub(crate) async fn finish(shared: &Arc<Shared>, id: &[u8; 32], tokens: u64, ok: bool) {
    let settled = shared
        .state
        .lock()
        .ok()
        .and_then(|mut st| st.finish(id, tokens, ok, &shared.cfg.pricing));
    // Dropping the timer handle aborts it (unless it is the timer running this very call).
    let timer = shared.timers.lock().ok().and_then(|mut t| t.remove(id));
    let Some((req, settlement)) = settled else {
        return;
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
    let client_msg = encode(&ProxyClientRequestPayment {
        request_id: req.client_request_id,
        signed_payment: ProxySignedPayment::empty(),
        db_tokens: settlement.client_used_total as i64,
        max_tokens: settlement.client_used_total as i64,
        request_tokens: settlement.charged_tokens as i64,
    });
    send_to(shared, req.client_conn, client_msg).await;
    let worker_msg = encode(&ProxyWorkerRequestPayment {
        request_id: *id,
        signed_payment: ProxySignedPayment::empty(),
        db_tokens: settlement.worker_earned_total as i64,
        max_tokens: settlement.worker_earned_total as i64,
        request_tokens: settlement.charged_tokens as i64,
        request_client_owner: req.client_owner.clone(),
    });
    send_to(shared, req.worker_conn, worker_msg).await;
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

/// Adds `X-Cocoon-Proxy-Start/End` to a serialized `http.response`; leaves undecodable bytes alone.
fn add_proxy_headers(answer: Bytes, started: f64) -> Bytes {
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
