//! The proxy's chain agent: one task that watches the proxy contract's transactions (client and
//! worker reports, long-auth nonces, its own save-state markers), anchors the ledger on chain,
//! and sends charges, payouts and owner withdrawals when they are worth it.
//!
//! What must not live here: the request path (it never waits on the chain) or message layouts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_ledger::{Anchor, LedgerError, OnchainState, Party};
use cocoon_onchain::cursor::TxCursor;
use cocoon_onchain::signed::MAX_SIGNED_BOC;
use cocoon_ton::cells::decode_boc;
use cocoon_ton::contracts::{
    parse_proxy_inbound, ClientPayload, ProxyData, ProxyInbound, ProxyOp, ReceiptsAnchor,
};
use cocoon_ton::payments::SignedKind;
use cocoon_ton::wallet::{Transfer, MAX_MESSAGES};
use cocoon_ton::{TonAddress, TxInfo};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::book::{self, ClientOnchain};
use super::{ledger_key, split_ledger_owner, Payments};
use crate::Shared;

/// A sent charge or payout is not repeated before this, unless the contract reports first.
const RESEND_AFTER: Duration = Duration::from_secs(60);
/// A marker not seen on chain by then is sent again (with a new anchor).
const MARKER_TIMEOUT: Duration = Duration::from_secs(120);
/// The owner's commission is checked every this many polls.
const WITHDRAW_EVERY_POLLS: u32 = 10;
/// nanoTON attached to a save-state marker (the contract does not process it).
const MARKER_VALUE: u128 = 10_000_000;

/// `(seqno, session_hash)` of a save-state marker our wallet sent, if `tx` is one.
pub(crate) fn own_marker(tx: &TxInfo, wallet: &TonAddress) -> Option<(u64, [u8; 32])> {
    let m = tx.in_msg.as_ref()?;
    if m.source.as_ref() != Some(wallet) {
        return None;
    }
    match parse_proxy_inbound(m.body.as_ref()?) {
        Ok(ProxyInbound::SaveState {
            seqno,
            session_hash,
            ..
        }) => Some((u64::from(seqno as u32), session_hash)),
        _ => None,
    }
}

/// Runs until `shutdown`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    p: Arc<Payments>,
    mut cursor: TxCursor,
    backlog: Vec<TxInfo>,
    shutdown: CancellationToken,
) {
    for tx in &backlog {
        handle_tx(&shared, &p, tx).await;
    }
    let mut pending: Option<(Anchor, Instant)> = None;
    let mut last_anchor = Instant::now();
    let mut polls: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(p.settings.poll) => {}
        }
        polls = polls.wrapping_add(1);
        match cursor.poll(p.chain.as_ref()).await {
            Ok(txs) => {
                for tx in &txs {
                    if let Some((seqno, hash)) = own_marker(tx, &p.sender.address()) {
                        if pending.is_some_and(|(a, _)| a.seqno == seqno && a.session_hash == hash)
                        {
                            pending = None;
                        }
                    }
                    handle_tx(&shared, &p, tx).await;
                }
            }
            Err(e) => warn!(error = %e, "reading the proxy contract's transactions failed"),
        }
        if p.halted().is_some() {
            continue;
        }
        if pending.is_some_and(|(_, at)| at.elapsed() > MARKER_TIMEOUT) {
            warn!("save-state marker not seen on chain in time; sending a new one");
            pending = None;
        }
        if pending.is_none() && last_anchor.elapsed() >= p.settings.anchor_interval {
            match anchor(&p, shared.receipts.as_deref()).await {
                Ok(Some(a)) => {
                    pending = Some((a, Instant::now()));
                    last_anchor = Instant::now();
                }
                Ok(None) => last_anchor = Instant::now(),
                Err(e) => warn!(error = %e, "anchoring the ledger failed"),
            }
        }
        money(&shared, &p, polls % WITHDRAW_EVERY_POLLS == 0).await;
        if p.winddown.pending() {
            p.winddown.step(&p).await;
        }
        migrate_if_params_changed(&shared, &p, &mut last_anchor);
    }
}

/// When the root's params moved on, the proxy must serve from a new contract (§4.7): refuse new
/// requests, let running ones finish (bounded), and once everything is anchored, restart; the
/// next start deploys the new contract and winds this one down.
fn migrate_if_params_changed(shared: &Shared, p: &Payments, last_anchor: &mut Instant) {
    use std::sync::atomic::Ordering;
    let current = p.registry.current();
    if current.state.params == p.network.params {
        return;
    }
    if !p.migrating.swap(true, Ordering::SeqCst) {
        info!(
            from = p.network.params.params_version,
            to = current.state.params.params_version,
            "root params changed: draining, then moving to a new proxy contract"
        );
        // Anchor at once rather than at the next interval.
        *last_anchor = Instant::now() - p.settings.anchor_interval;
    }
    let idle = shared.core().state.requests.is_empty();
    let anchored = p
        .ledger
        .snapshot()
        .accounts
        .iter()
        .all(|a| a.committed_chain >= a.committed_db);
    if idle && anchored {
        info!("everything anchored under the old params; restarting under the new ones");
        p.restart.cancel();
    }
}

/// Sends a save-state marker for everything durable now, when something is not anchored yet
/// (ledger rows, or a closed receipts period: its root rides after `session_hash`).
async fn anchor(
    p: &Payments,
    receipts: Option<&crate::anchor::ReceiptLog>,
) -> Result<Option<Anchor>, String> {
    let snap = p.ledger.snapshot();
    let unanchored = snap
        .accounts
        .iter()
        .any(|a| a.committed_db > a.committed_chain);
    let period = receipts.and_then(|r| r.pending());
    if !unanchored && period.is_none() {
        return Ok(None);
    }
    let receipts_anchor = match &period {
        Some(m) => Some(receipts_anchor(m)?),
        None => None,
    };
    let query_id: u64 = rand::random();
    let a = p
        .ledger
        .begin_anchor(rand::random())
        .await
        .map_err(|e| e.to_string())?;
    let body = ProxyOp::SaveState {
        seqno: a.seqno as u32 as i32,
        session_hash: a.session_hash,
        receipts: receipts_anchor,
    }
    .body(query_id)
    .map_err(|e| e.to_string())?;
    p.sender
        .send(vec![Transfer {
            dest: p.proxy_sc,
            value: MARKER_VALUE,
            bounce: false,
            body: Some(body),
            state_init: None,
        }])
        .await
        .map_err(|e| e.to_string())?;
    debug!(seqno = a.seqno, "save-state marker sent");
    if let (Some(log), Some(m)) = (receipts, period) {
        log.sent(m.start, query_id);
        info!(
            start = m.start,
            leaves = m.leaves,
            query_id,
            "receipts root sent in a save-state marker"
        );
    }
    Ok(Some(a))
}

/// The marker's form of a closed receipts period.
fn receipts_anchor(m: &crate::anchor::PeriodMeta) -> Result<ReceiptsAnchor, String> {
    let mut root = [0u8; 32];
    hex::decode_to_slice(&m.root, &mut root).map_err(|e| e.to_string())?;
    let u32_of = |v: u64| u32::try_from(v).map_err(|_| format!("{v} does not fit 32 bits"));
    Ok(ReceiptsAnchor {
        root,
        period_start: u32_of(m.start)?,
        period_end: u32_of(m.end)?,
        leaves: u32_of(m.leaves)?,
    })
}

/// Interprets one transaction of the proxy contract.
async fn handle_tx(shared: &Arc<Shared>, p: &Arc<Payments>, tx: &TxInfo) {
    let Some(m) = tx.in_msg.as_ref() else { return };
    let Some(body) = m.body.as_ref() else { return };
    let Ok(inbound) = parse_proxy_inbound(body) else {
        return;
    };
    match inbound {
        ProxyInbound::ClientReport {
            owner,
            data,
            payload,
            ..
        } => {
            // Messages of 1 nanoTON are not executed by the contract: check the sender ourselves.
            let Ok(expected) = p.client_sc(&owner) else {
                return;
            };
            if m.source.as_ref() != Some(&expected) {
                warn!(claimed_owner = %owner.to_bounceable(), "client report from a foreign address; ignored");
                return;
            }
            let k = owner.to_bounceable();
            let report = ClientOnchain {
                state: data.state,
                balance: data.balance,
                stake: data.stake,
                tokens_used: data.tokens_used,
                secret_hash: data.secret_hash,
                lt: tx.lt,
            };
            let (price, _) = p.prices();
            let credit = {
                let Ok(mut b) = p.book.lock() else { return };
                let page = b
                    .clients
                    .entry(k.clone())
                    .or_insert_with(|| book::ClientBook {
                        sc: expected,
                        db: 0,
                        chain: 0,
                        onchain: None,
                        signed: None,
                        charging_since: None,
                    });
                if page.onchain.as_ref().is_none_or(|o| report.lt >= o.lt) {
                    if page
                        .onchain
                        .as_ref()
                        .is_some_and(|o| report.tokens_used > o.tokens_used)
                    {
                        page.charging_since = None;
                    }
                    page.onchain = Some(report.clone());
                }
                page.onchain
                    .as_ref()
                    .map(|o| (book::client_credit(o, price), page.db))
            };
            if let Some((credit, durable)) = credit {
                {
                    let mut core = shared.core();
                    let st = &mut core.state;
                    let acc = st.clients.entry(k.clone()).or_default();
                    acc.owner.clone_from(&k);
                    // A lifetime credit against the ledger's usage, not a count from zero.
                    acc.set_credit(credit, durable);
                }
            }
            let _ = p
                .ledger
                .upsert_onchain(
                    ledger_key(Party::Client, &p.proxy_sc, &k),
                    OnchainState {
                        sc_address: expected.to_bounceable(),
                        tokens: report.tokens_used,
                        balance: report.balance,
                        stake: report.stake,
                        state: report.state,
                    },
                )
                .await
                .map_err(|e| warn!(error = %e, "ledger: storing a client report failed"));
            if let Some(ClientPayload::Register { nonce }) = payload {
                p.nonce_seen(&k, nonce);
            }
            debug!(owner = %k, state = report.state, tokens_used = report.tokens_used, "client report");
        }
        ProxyInbound::WorkerReport {
            owner,
            state,
            tokens,
            ..
        } => {
            let Ok(expected) = p.worker_sc(&owner) else {
                return;
            };
            if m.source.as_ref() != Some(&expected) {
                warn!(claimed_owner = %owner.to_bounceable(), "worker report from a foreign address; ignored");
                return;
            }
            let k = owner.to_bounceable();
            if let Ok(mut b) = p.book.lock() {
                if let Some(w) = b.workers.get_mut(&k) {
                    if tx.lt >= w.onchain_lt {
                        if tokens > w.onchain_tokens {
                            w.paying_since = None;
                        }
                        w.onchain_tokens = w.onchain_tokens.max(tokens);
                        w.onchain_lt = tx.lt;
                    }
                }
            }
            let _ = p
                .ledger
                .upsert_onchain(
                    ledger_key(Party::Worker, &p.proxy_sc, &k),
                    OnchainState {
                        sc_address: expected.to_bounceable(),
                        tokens,
                        balance: 0,
                        stake: 0,
                        state,
                    },
                )
                .await
                .map_err(|e| warn!(error = %e, "ledger: storing a worker report failed"));
            debug!(owner = %k, tokens, "worker report");
        }
        ProxyInbound::SaveState {
            query_id,
            seqno,
            session_hash,
            receipts,
        } => {
            if m.source.as_ref() != Some(&p.sender.address()) {
                return;
            }
            if let (Some(r), Some(log)) = (receipts, &shared.receipts) {
                log.seen(u64::from(r.period_start), query_id, tx.lt, tx.hash);
            }
            let seqno = u64::from(seqno as u32);
            match p.ledger.anchor_seen(seqno, session_hash).await {
                Ok(()) => {
                    refresh_anchored(p);
                    info!(seqno, "ledger anchored on chain");
                }
                Err(LedgerError::RollbackDetected(why)) => p.halt(format!(
                    "ledger rollback detected: {why}. Inspect it with `cocoon proxy ledger`"
                )),
                Err(e) => warn!(seqno, error = %e, "ledger: recording a marker failed"),
            }
        }
        ProxyInbound::Other(_) => {}
    }
}

/// Copies the anchored counters from the ledger into the book and signs the new amounts.
fn refresh_anchored(p: &Payments) {
    let snap = p.ledger.snapshot();
    if let Ok(mut b) = p.book.lock() {
        for r in &snap.accounts {
            let Some((sc, owner)) = split_ledger_owner(&r.key.owner) else {
                continue;
            };
            if sc != p.proxy_sc {
                continue;
            }
            b.mirror(
                r.key.party,
                &owner.to_bounceable(),
                r.committed_db,
                r.committed_chain,
            );
        }
    }
    p.resign_all();
}

/// Charges, payouts, grant-refunds for closing clients, and the owner's withdrawal.
async fn money(shared: &Arc<Shared>, p: &Arc<Payments>, check_withdraw: bool) {
    let (price, fee) = p.prices();
    let now = Instant::now();
    let mut transfers = Vec::new();
    {
        let running: std::collections::HashMap<String, u32> = shared
            .core()
            .state
            .clients
            .iter()
            .map(|(k, a)| (k.clone(), a.running))
            .collect();
        let Ok(mut b) = p.book.lock() else { return };
        for (k, c) in b.clients.iter_mut() {
            let Some(o) = c.onchain.as_ref() else {
                continue;
            };
            if c.charging_since
                .is_some_and(|t| now.duration_since(t) < RESEND_AFTER)
            {
                continue;
            }
            let closing_idle =
                o.state == 1 && running.get(k).copied().unwrap_or(0) == 0 && c.chain == c.db;
            let body = if closing_idle {
                // A closing client with nothing running gets its refund granted (notes §4.6).
                cocoon_onchain::signed::sign_boc(
                    &p.signer,
                    SignedKind::GrantRefund,
                    c.chain,
                    &c.sc,
                    &p.sender.address(),
                )
                .ok()
            } else if o.state == 0
                && book::client_needs_charge(
                    c.chain,
                    o.tokens_used,
                    price,
                    p.settings.min_client_charge,
                )
            {
                c.signed.as_ref().map(|s| s.boc.to_vec())
            } else {
                None
            };
            if let Some(boc) = body.and_then(|b| decode_boc(&b, MAX_SIGNED_BOC).ok()) {
                c.charging_since = Some(now);
                info!(owner = %k, tokens = c.chain, closing = closing_idle, "charging a client on chain");
                transfers.push(Transfer {
                    dest: c.sc,
                    value: p.settings.attach,
                    bounce: true,
                    body: Some(boc),
                    state_init: None,
                });
            }
        }
        for (k, w) in b.workers.iter_mut() {
            if w.paying_since
                .is_some_and(|t| now.duration_since(t) < RESEND_AFTER)
            {
                continue;
            }
            if !book::worker_needs_payout(
                w.chain,
                w.onchain_tokens,
                fee,
                p.settings.min_worker_payout,
            ) {
                continue;
            }
            let Some(boc) = w
                .signed
                .as_ref()
                .and_then(|s| decode_boc(&s.boc, MAX_SIGNED_BOC).ok())
            else {
                continue;
            };
            let Ok(init) = p
                .network
                .worker(&w.owner, &p.proxy_sc)
                .and_then(|d| d.state_init_cell())
            else {
                continue;
            };
            w.paying_since = Some(now);
            info!(owner = %k, tokens = w.chain, "paying a worker on chain");
            transfers.push(Transfer {
                dest: w.sc,
                value: p.settings.attach,
                bounce: false,
                body: Some(boc),
                state_init: Some(init),
            });
        }
    }
    if check_withdraw {
        if let Some(t) = owner_withdraw(p).await {
            transfers.push(t);
        }
    }
    for chunk in transfers.chunks(MAX_MESSAGES) {
        if let Err(e) = p.sender.send(chunk.to_vec()).await {
            warn!(error = %e, "sending charges/payouts failed; retrying later");
        }
    }
}

/// A payout request to the proxy contract when its commission balance is worth withdrawing.
async fn owner_withdraw(p: &Payments) -> Option<Transfer> {
    let r = p
        .chain
        .run_get_method(&p.proxy_sc, ProxyData::METHOD, vec![])
        .await
        .ok()?;
    let d = ProxyData::from_stack(&r.stack).ok()?;
    if d.balance < p.settings.min_owner_withdraw.max(1) {
        return None;
    }
    info!(balance_nanoton = %d.balance, "withdrawing the commission to the owner");
    let body = ProxyOp::PayoutRequest {
        send_excesses_to: p.sender.address(),
    }
    .body(0)
    .ok()?;
    Some(Transfer {
        dest: p.proxy_sc,
        value: 200_000_000,
        bounce: true,
        body: Some(body),
        state_init: None,
    })
}

/// Admin: withdraw the commission now, whatever its size.
pub(crate) async fn withdraw_now(p: &Payments) -> Result<(), String> {
    let body = ProxyOp::PayoutRequest {
        send_excesses_to: p.sender.address(),
    }
    .body(0)
    .map_err(|e| e.to_string())?;
    p.sender
        .send(vec![Transfer {
            dest: p.proxy_sc,
            value: 200_000_000,
            bounce: true,
            body: Some(body),
            state_init: None,
        }])
        .await
        .map_err(|e| e.to_string())
}

/// Admin: anchor now (instead of waiting for the interval).
pub(crate) async fn anchor_now(p: &Payments) -> Result<Option<u64>, String> {
    Ok(anchor(p, None).await?.map(|a| a.seqno))
}
