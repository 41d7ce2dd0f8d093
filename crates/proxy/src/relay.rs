//! Carries out what the core decided ([`crate::proxy_core::Effect`]): queues messages on peers'
//! outboxes (never waiting on a peer), arms and disarms request deadlines, probes suspect
//! workers, and ends requests — their charge made durable through the [`crate::accounting`]
//! interface before the answer that acknowledges it goes out, then the payment notices.
//!
//! Connection tasks call [`client_request`], [`worker_answer`], [`cancel`], [`client_gone`] and
//! [`worker_gone`]: each locks the core once, hands it the event with the time, and carries out
//! the effects after unlocking. No rule lives here.

use std::collections::VecDeque;
use std::sync::Arc;

use cocoon_node::errors;
use cocoon_node::time::unix_now_f64;
use cocoon_proto::messages::{
    encode, tl_long, ProxyClientRequestPayment, ProxyWorkerRequestPayment,
};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::proxy_core::{
    shape, Count, Effect, EndedBy, Ending, Ignored, NewRequest, Now, WorkerAnswer,
};
use crate::Shared;

/// The time of an event, read once by the connection task that hands it to the core.
pub(crate) fn now() -> Now {
    Now {
        mono: tokio::time::Instant::now(),
        unix: unix_now_f64(),
    }
}

/// A client's request (its session authorized as `req.client_owner`).
pub(crate) async fn client_request(shared: &Arc<Shared>, req: NewRequest) {
    let refusing = shared.accounting.refusing();
    let effects = shared.core().handle_client_request(req, refusing, now());
    apply(shared, effects).await;
}

/// A worker's answer, part or error for its request `id`.
pub(crate) async fn worker_answer(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    msg: WorkerAnswer,
) {
    let effects = shared
        .core()
        .handle_worker_answer(worker_conn, id, msg, now());
    apply(shared, effects).await;
}

/// A worker's signed receipt for its request `id` (kept by the core until the request ends).
pub(crate) async fn worker_receipt(
    shared: &Arc<Shared>,
    worker_conn: u64,
    id: [u8; 32],
    receipt: &[u8],
) {
    let effects = shared
        .core()
        .handle_worker_receipt(worker_conn, id, receipt);
    apply(shared, effects).await;
}

/// The client on `client_conn` cancelled its request `client_id`.
pub(crate) async fn cancel(shared: &Arc<Shared>, client_conn: u64, client_id: [u8; 32]) {
    let effects = shared.core().handle_cancel(client_conn, client_id, now());
    apply(shared, effects).await;
}

/// A client connection ended.
pub(crate) async fn client_gone(shared: &Arc<Shared>, client_conn: u64) {
    let effects = shared.core().handle_client_gone(client_conn, now());
    apply(shared, effects).await;
}

/// A worker connection ended.
pub(crate) async fn worker_gone(shared: &Arc<Shared>, worker_conn: u64) {
    let effects = shared.core().handle_worker_gone(worker_conn, now());
    apply(shared, effects).await;
}

/// Carries out `effects` in order (and those that carrying them out produces).
pub(crate) async fn apply(shared: &Arc<Shared>, effects: Vec<Effect>) {
    let mut queue = VecDeque::from(effects);
    while let Some(effect) = queue.pop_front() {
        match effect {
            Effect::Send { to, msg } => {
                shared.send_to(to, msg);
            }
            Effect::RunOnWorker {
                worker_conn,
                worker_owner,
                mut msg,
            } => {
                // The worker's latest signed payout rides along, read and sent in order with
                // the other payment notices.
                let notices = shared.accounting.notices();
                msg.signed_payment = shared.accounting.worker_signed(&worker_owner);
                let id = msg.request_id;
                let sent = shared.send_to(worker_conn, encode(&msg));
                drop(notices);
                if !sent {
                    queue.extend(shared.core().handle_worker_lost(id, now()));
                }
            }
            Effect::ArmTimer { id, after } => arm(shared, id, after),
            Effect::Suspect { worker_conn } => crate::worker_conn::probe(shared, worker_conn),
            Effect::Ended(ending) => ended(shared, *ending).await,
            Effect::Count(c) => {
                match c {
                    Count::Query => shared.stats.queries.inc(),
                    Count::Rejected => shared.stats.rejected.inc(),
                    Count::RelayedBytes(n) => shared.stats.bytes.inc_by(n),
                    Count::Sealed => shared.stats.sealed.inc(),
                };
            }
            Effect::Ignored { request, why } => match why {
                Ignored::NotRunning => {
                    debug!(request = %hex::encode(&request[..8]), "answer for a request that is not running here; ignored")
                }
                Ignored::NotItsRequest => {
                    warn!(request = %hex::encode(&request[..8]), "worker answered a request that is not its own; ignored")
                }
                Ignored::BadReceipt => {
                    warn!(request = %hex::encode(&request[..8]), "worker sent a receipt that does not verify under its attested key (or a second one); ignored")
                }
            },
        }
    }
}

/// Arms the deadline of request `id`: after `after` the core ends it. Dropping the handle
/// (when the request ends first) cancels it.
fn arm(shared: &Arc<Shared>, id: [u8; 32], after: std::time::Duration) {
    let sh = shared.clone();
    let timer = AbortOnDropHandle::new(tokio::spawn(async move {
        tokio::time::sleep(after).await;
        // This task is now running its own ending: take its handle out so that ending it does
        // not abort it halfway.
        let own = sh.timers.lock().ok().and_then(|mut t| t.remove(&id));
        if let Some(own) = own {
            own.detach();
        }
        let effects = sh.core().handle_timeout(id, now());
        apply(&sh, effects).await;
    }));
    if let Ok(mut t) = shared.timers.lock() {
        t.insert(id, timer);
    }
}

/// A request ended in memory: its timer is disarmed, the stats count it, and once its charge
/// is durable its client gets the reply and both parties their payment notices. With payments
/// on that happens right after the ledger's group commit, on its writer thread (everything it
/// does only queues messages), so the caller — typically a worker connection's read loop — goes
/// on at once and the answer waits for the fsync and nothing else.
async fn ended(shared: &Arc<Shared>, e: Ending) {
    let timer = shared.timers.lock().ok().and_then(|mut t| t.remove(&e.id));
    drop(timer);
    count_ending(shared, &e);
    // The worker left before its request ended: nobody to credit, nothing to record.
    let Some(worker) = e.worker_owner.clone() else {
        finish(shared, e, Ok(()));
        return;
    };
    let client = e.req.client_owner.clone();
    let tokens = e.settlement.charged_tokens;
    let sh = shared.clone();
    shared
        .accounting
        .make_durable_then(&client, &worker, tokens, move |durable| {
            let durable = durable.map_err(|err| {
                if !err.halted {
                    sh.stats.charges_rejected.inc();
                    warn!(
                        request = %hex::encode(&e.id[..8]),
                        tokens = e.settlement.charged_tokens,
                        error = %err.source,
                        "the ledger refused a charge; the request fails"
                    );
                }
                err.to_string()
            });
            finish(&sh, e, durable);
        })
        .await;
}

/// Sends an ending's reply — an answer only when its charge is durable, an error instead
/// otherwise — and, when durable, the payment notices. Never waits.
fn finish(shared: &Shared, e: Ending, durable: Result<(), String>) {
    let client = e.client();
    match (&durable, e.by) {
        (Err(why), EndedBy::Answered) => {
            let msg = shape::error(
                client.proto.version,
                client.request_id,
                errors::ERROR,
                why,
                None,
            );
            shared.send_to(client.conn, msg);
        }
        _ => {
            for msg in &e.reply {
                shared.send_to(client.conn, msg.clone());
            }
        }
    }
    if durable.is_ok() {
        // Its charge is durable: the countersigned receipt joins the anchoring period.
        if let (Some(log), Some(id)) = (&shared.receipts, e.receipt_id) {
            log.record(id);
        }
        notify(shared, &e);
    }
}

fn count_ending(shared: &Shared, e: &Ending) {
    if e.receipt_id.is_some() {
        shared.stats.receipts.inc();
    }
    if let Some(o) = e.overshoot {
        shared.stats.over_reservation.inc();
        warn!(
            request = %hex::encode(&e.id[..8]),
            worker_conn = e.req.worker_conn,
            worker = e.worker_owner.as_deref().unwrap_or(""),
            reported = o.reported,
            reserved = o.reserved,
            "worker stated usage above the reservation; charged the reservation"
        );
    }
    if e.by == EndedBy::Answered {
        shared.stats.succeeded.inc();
    } else {
        shared.stats.failed.inc();
    }
    if e.by == EndedBy::Proxy(errors::TIMEOUT) {
        shared.stats.timed_out.inc();
    }
    if e.by == EndedBy::Proxy(errors::CANCELLED) {
        shared.stats.cancelled.inc();
    }
    let s = &e.settlement;
    shared.stats.tokens_total.inc_by(s.charged_tokens);
    shared.stats.client_cost.inc_by(s.client_cost);
    shared.stats.worker_fee.inc_by(s.worker_fee);
    shared.stats.commission.inc_by(s.commission);
}

/// Sends the payment notices of an ended request: what its client and its worker are owed
/// and told, read under the notices lock so what is sent never goes backwards.
fn notify(shared: &Shared, e: &Ending) {
    let notices = shared.accounting.notices();
    let (client_signed, client_db, client_used) =
        crate::client_conn::payment_status(shared, &e.req.client_owner);
    shared.send_to(
        e.req.client_conn,
        encode(&ProxyClientRequestPayment {
            request_id: e.req.client_request_id,
            signed_payment: client_signed,
            db_tokens: client_db,
            max_tokens: client_used,
            request_tokens: tl_long(e.settlement.charged_tokens),
        }),
    );
    let worker_owner = e.worker_owner.clone().unwrap_or_default();
    let (worker_signed, worker_db, worker_max) = shared
        .accounting
        .worker_status(&worker_owner, e.settlement.worker_earned_total);
    shared.send_to(
        e.req.worker_conn,
        encode(&ProxyWorkerRequestPayment {
            request_id: e.id,
            signed_payment: worker_signed,
            db_tokens: worker_db,
            max_tokens: worker_max,
            request_tokens: tl_long(e.settlement.charged_tokens),
            request_client_owner: e.req.client_owner.clone(),
        }),
    );
    drop(notices);
}

/// Refuses a request from a client that has not authorized.
pub(crate) fn reject_unauthorized(shared: &Shared, conn: u64, proto: i32, client_id: [u8; 32]) {
    shared.stats.rejected.inc();
    shared.send_to(
        conn,
        shape::error(
            proto,
            client_id,
            errors::PROTOVIOLATION,
            "client is not authorized",
            None,
        ),
    );
}
