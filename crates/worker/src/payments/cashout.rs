//! Cashing out: reading a worker contract, and submitting the held signed payout to it.
//!
//! A cash-out is one wallet message to the worker contract carrying the proxy-signed payout,
//! re-wrapped so the excesses come back to our wallet, with the contract's StateInit (the first
//! one deploys it) and [`CASHOUT_VALUE`] attached. The worker contract prices the delta with its
//! own params and asks the proxy contract to pay `delta × worker_fee` to the worker owner.
//! Both the worker's periodic task and `cocoon worker cashout` use these functions; neither
//! the proxy nor the root is needed (the record has the contract's StateInit).
//!
//! What must not live here: when to cash out (the caller decides) or the file.

use cocoon_onchain::signed::MAX_SIGNED_BOC;
use cocoon_onchain::{OnchainError, WalletSender};
use cocoon_ton::cells::decode_boc;
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::WorkerData;
use cocoon_ton::payments::SignedPayment;
use cocoon_ton::wallet::Transfer;
use cocoon_ton::{Chain, TonAddress};

use super::store::ProxyRecord;

/// nanoTON attached to a cash-out (0.3 TON); what the contracts do not use comes back.
pub const CASHOUT_VALUE: u128 = 300_000_000;

/// Why a cash-out or a contract read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CashoutError {
    #[error(transparent)]
    Onchain(#[from] OnchainError),
    #[error("chain: {0}")]
    Chain(#[from] cocoon_ton::ChainError),
    #[error("worker contract {address}: {reason}")]
    Contract { address: String, reason: String },
    #[error("record for {proxy}: {reason}")]
    Record { proxy: String, reason: String },
    #[error("nothing to cash out at {proxy}: signed {signed} tokens, {on_chain} already paid")]
    Nothing {
        proxy: String,
        signed: u64,
        on_chain: u64,
    },
}

/// What a worker contract holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnChain {
    /// Whether the contract is deployed.
    pub deployed: bool,
    /// Tokens it has processed (paid out); 0 when undeployed.
    pub tokens: u64,
    /// Its state (0 normal, 1 closing, 2 closed).
    pub state: u8,
}

/// Reads the worker contract at `address` (undeployed = 0 tokens).
pub async fn read_contract(
    chain: &dyn Chain,
    address: &TonAddress,
) -> Result<OnChain, CashoutError> {
    let st = chain.account_state(address).await?;
    if st.status != AccountStatus::Active {
        return Ok(OnChain::default());
    }
    let r = chain
        .run_get_method(address, WorkerData::METHOD, vec![])
        .await?;
    let bad = |reason: String| CashoutError::Contract {
        address: address.to_bounceable(),
        reason,
    };
    if !r.success() {
        return Err(bad(format!(
            "{} exited with {}",
            WorkerData::METHOD,
            r.exit_code
        )));
    }
    let d = WorkerData::from_stack(&r.stack).map_err(|e| bad(e.to_string()))?;
    Ok(OnChain {
        deployed: true,
        tokens: d.tokens,
        state: d.state,
    })
}

/// The message that cashes `rec`'s signed payout out, excesses to `excesses_to`.
pub fn cashout_transfer(
    rec: &ProxyRecord,
    excesses_to: &TonAddress,
) -> Result<Transfer, CashoutError> {
    let bad = |reason: String| CashoutError::Record {
        proxy: rec.proxy_contract.clone(),
        reason,
    };
    let bytes = rec
        .signed_payout_bytes()
        .map_err(bad)?
        .ok_or_else(|| bad("no signed payout held".into()))?;
    let cell = decode_boc(&bytes, MAX_SIGNED_BOC).map_err(|e| bad(e.to_string()))?;
    let signed = SignedPayment::from_body(&cell).map_err(|e| bad(e.to_string()))?;
    let body = signed
        .rewrap(*excesses_to)
        .to_body()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Transfer {
        dest: rec.worker_address().map_err(bad)?,
        value: CASHOUT_VALUE,
        // A refused payout (e.g. the proxy submitted the same one first) comes back.
        bounce: true,
        body: Some(body),
        state_init: Some(rec.state_init_cell().map_err(bad)?),
    })
}

/// Submits `rec`'s signed payout from `sender`'s wallet and returns once the wallet confirmed
/// the send. Refuses when the held payout is not above `on_chain_tokens`.
pub async fn submit(sender: &WalletSender, rec: &ProxyRecord) -> Result<(), CashoutError> {
    if rec.signed_tokens <= rec.on_chain_tokens {
        return Err(CashoutError::Nothing {
            proxy: rec.proxy_contract.clone(),
            signed: rec.signed_tokens,
            on_chain: rec.on_chain_tokens,
        });
    }
    let t = cashout_transfer(rec, &sender.address())?;
    sender.send(vec![t]).await?;
    Ok(())
}
