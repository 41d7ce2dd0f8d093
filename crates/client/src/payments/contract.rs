//! Our client contract on chain: reading it (`get_cocoon_client_data`) and the wallet messages
//! that drive it (deploy + fund, top up, register, set the secret hash, submit a signed charge,
//! withdraw, request a refund), with the TON each one carries.
//!
//! Values: every paid op needs `0.1 TON` (commission) on top of what it moves; we attach
//! [`OP_EXTRA`] = 0.2 TON and the contract returns the excess. A deploy needs more (the fresh
//! contract also keeps its 0.11 TON floor): [`DEPLOY_EXTRA`] = 0.3 TON.
//!
//! What must not live here: when to send them (task, auth, owner).

use cocoon_ton::cells::CellError;
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{ClientData, ClientOp, CocoonParams, ContractKind};
use cocoon_ton::payments::SignedPayment;
use cocoon_ton::wallet::Transfer;
use cocoon_ton::{Chain, TonAddress};
use rand::Rng;
use tycho_types::cell::Cell;

use super::PaymentsError;

/// Attached to an owner op or a top-up beyond the amount it moves (0.2 TON).
pub const OP_EXTRA: u128 = 200_000_000;
/// Attached to the deploying top-up beyond the amount (0.3 TON; 0.2 fails with 1001).
pub const DEPLOY_EXTRA: u128 = 300_000_000;
/// Attached to a submitted signed charge (0.3 TON).
pub const CHARGE_VALUE: u128 = 300_000_000;

/// The contract's state, or `None` when it is not deployed.
pub async fn read(
    chain: &dyn Chain,
    address: &TonAddress,
) -> Result<Option<ClientData>, PaymentsError> {
    let st = chain.account_state(address).await?;
    if st.status != AccountStatus::Active {
        return Ok(None);
    }
    let r = chain
        .run_get_method(address, ClientData::METHOD, vec![])
        .await?;
    if !r.success() {
        return Err(PaymentsError::Contract {
            address: address.to_bounceable(),
            reason: format!("{} exited with {}", ClientData::METHOD, r.exit_code),
        });
    }
    Ok(Some(ClientData::from_stack(&r.stack)?))
}

/// The contract's state and the params it was made under (its data's second ref: the price it
/// charges at), or `None` when it is not deployed.
pub async fn read_with_params(
    chain: &dyn Chain,
    address: &TonAddress,
) -> Result<Option<(ClientData, CocoonParams)>, PaymentsError> {
    let st = chain.account_state(address).await?;
    let Some(data) = st.data.filter(|_| st.status == AccountStatus::Active) else {
        return Ok(None);
    };
    let params_cell = data
        .reference_cloned(1)
        .ok_or(CellError::Unexpected("client data without params"))?;
    let (params, _) = CocoonParams::from_cell(&params_cell)?;
    Ok(read(chain, address).await?.map(|d| (d, params)))
}

/// Whether the account at `address` runs our client contract code (used to recognise our
/// contracts without knowing the params they were made under).
pub async fn runs_client_code(
    chain: &dyn Chain,
    address: &TonAddress,
) -> Result<bool, PaymentsError> {
    let st = chain.account_state(address).await?;
    let ours = ContractKind::Client.code()?;
    Ok(st.code.is_some_and(|c| c.repr_hash() == ours.repr_hash()))
}

/// A random query id.
pub fn query_id() -> u64 {
    rand::rng().random()
}

/// An owner op to `contract`, with `value` attached (and `state_init` to deploy it).
pub fn op_transfer(
    contract: &TonAddress,
    op: &ClientOp,
    value: u128,
    state_init: Option<Cell>,
) -> Result<Transfer, CellError> {
    Ok(Transfer {
        dest: *contract,
        value,
        bounce: true,
        body: Some(op.body(query_id())?),
        state_init,
    })
}

/// The signed charge, re-wrapped so the excess comes back to `wallet`.
pub fn charge_transfer(
    contract: &TonAddress,
    charge: &SignedPayment,
    wallet: &TonAddress,
) -> Result<Transfer, CellError> {
    Ok(Transfer {
        dest: *contract,
        value: CHARGE_VALUE,
        bounce: true,
        body: Some(charge.rewrap(*wallet).to_body()?),
        state_init: None,
    })
}
