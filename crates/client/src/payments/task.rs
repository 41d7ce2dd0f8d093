//! The money loop of one proxy link: every `chain.poll_interval`, read our client contract and
//! the wallet balance, ask the proxy `client.updatePaymentStatus`, then apply [`rules::decide`]:
//! top up by one stake, or submit the proxy's newest signed charge from our wallet.
//!
//! A sent top-up or charge takes a while to show in the contract; until it does (or a minute
//! passes) the same action is not repeated, so one low balance never causes two top-ups.
//!
//! The task is owned by the link's cancellation token (cancelled when the link closes).
//!
//! What must not live here: the rules themselves (rules) or message layouts (contract).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_onchain::amount::format_ton;
use cocoon_proto::messages::{encode, ClientPaymentStatus, ClientUpdatePaymentStatus};
use cocoon_proto::session::Session;
use cocoon_ton::contracts::ClientOp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::account::ProxyAccount;
use super::contract::{self, OP_EXTRA};
use super::rules::{self, MoneyInputs};
use super::{Payments, PaymentsError};

/// How long a sent action is assumed in flight before it may be repeated.
const IN_FLIGHT: Duration = Duration::from_secs(60);
/// Least wait after a failed round.
const ERROR_BACKOFF: Duration = Duration::from_secs(10);
/// Bound on the payment-status query.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the loop; it stops when `cancel` fires.
pub(crate) fn spawn(
    p: Arc<Payments>,
    account: Arc<ProxyAccount>,
    session: Session,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut wait = p.cfg.chain.poll_interval;
            // Cancellable mid-send: a wallet message either lands or not, and the wallet's
            // seqno lock is released on drop.
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tick(&p, &account, &session) => r,
            };
            if let Err(e) = r {
                warn!(proxy = %account.proxy, error = %e, "client money step failed");
                account.update(|n| n.last_error = Some(e.to_string()));
                // An unfunded wallet or a flaky endpoint: do not retry (and log) every poll.
                wait = wait.max(ERROR_BACKOFF);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// One round. Public to the crate for tests.
pub(crate) async fn tick(
    p: &Payments,
    account: &ProxyAccount,
    session: &Session,
) -> Result<(), PaymentsError> {
    let data = contract::read(p.chain.as_ref(), &account.client_contract).await?;
    account.update(|n| {
        n.contract = data.clone();
        n.contract_read = true;
    });
    if let Ok(b) = p.sender.balance().await {
        p.set_wallet_balance(b);
    }
    match session
        .query(encode(&ClientUpdatePaymentStatus), STATUS_TIMEOUT)
        .await
    {
        Ok(bytes) => match cocoon_tl::from_bytes::<ClientPaymentStatus>(&bytes) {
            Ok(s) => {
                if let Err(e) =
                    account.observe(&s.signed_payment, Some(s.db_tokens), Some(s.max_tokens))
                {
                    warn!(proxy = %account.proxy, error = %e, "proxy sent a bad signed charge; ignored");
                }
            }
            Err(e) => debug!(error = %e, "undecodable payment status"),
        },
        Err(e) => debug!(error = %e, "payment status query failed"),
    }
    let Some(c) = data else {
        // Not deployed: long auth deploys it; nothing to top up or charge.
        return Ok(());
    };
    let n = account.numbers();
    let inputs = MoneyInputs {
        state: c.state,
        balance: c.balance,
        stake: c.stake,
        used_on_chain: c.tokens_used,
        proxy_max: n.max_tokens,
        noticed: n.noticed_tokens,
        signed_charge: n.charge_tokens,
        price: account.price,
    };
    let act = rules::decide(&inputs);
    let wallet = p.owner();
    let now = Instant::now();
    if let Some(amount) = act.top_up {
        let in_flight = n
            .pending_top_up
            .is_some_and(|(want, at)| c.balance < want && now.duration_since(at) < IN_FLIGHT);
        if !in_flight {
            info!(
                proxy = %account.proxy,
                contract = %account.client_contract.to_bounceable(),
                balance = %format_ton(c.balance),
                unsettled = %format_ton(inputs.unsettled_cost()),
                amount = %format_ton(amount),
                "topping up our client contract by one stake"
            );
            let t = contract::op_transfer(
                &account.client_contract,
                &ClientOp::TopUp {
                    amount,
                    send_excesses_to: wallet,
                },
                amount.saturating_add(OP_EXTRA),
                None,
            )?;
            p.sender.send(vec![t]).await?;
            account.update(|n| n.pending_top_up = Some((c.balance.saturating_add(amount), now)));
        }
    }
    if let (Some(tokens), Some(charge)) = (act.submit_charge, n.charge.as_ref()) {
        let in_flight = n
            .submitted_charge
            .is_some_and(|(t, at)| t >= tokens && now.duration_since(at) < IN_FLIGHT);
        if !in_flight {
            info!(
                proxy = %account.proxy,
                contract = %account.client_contract.to_bounceable(),
                tokens,
                used_on_chain = c.tokens_used,
                "submitting the proxy's signed charge ourselves"
            );
            let t = contract::charge_transfer(&account.client_contract, charge, &wallet)?;
            p.sender.send(vec![t]).await?;
            account.update(|n| n.submitted_charge = Some((tokens, now)));
        }
    }
    account.update(|n| n.last_error = None);
    Ok(())
}
