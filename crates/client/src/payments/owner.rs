//! What the client's owner does directly on chain, with only the config's wallet and root: find
//! our client contracts, show their balances, withdraw, and close (`cocoon client
//! balance|withdraw|close`). Nothing here needs the proxy or the running client, so a client
//! whose proxy vanished gets its money back (withdraw above the stake at once; close, then after
//! `client_delay_before_close` a second close forces the refund of the rest from the proxy's
//! stake).
//!
//! Finding contracts: the running client's `/jsonstats` names them (with the proxy's numbers);
//! without it, the newest page of the wallet's own transactions does (every contract we ever
//! deployed, funded or registered received a message from the wallet). A candidate counts only
//! if it runs our client contract code and its owner is our wallet.
//!
//! What must not live here: the running client's loop (task) or printing (the CLI).

use std::collections::BTreeMap;
use std::sync::Arc;

use cocoon_onchain::{Registry, WalletSender};
use cocoon_ton::contracts::{state, ClientData, ClientOp, CocoonParams};
use cocoon_ton::http::MAX_TX_PAGE;
use cocoon_ton::{Chain, TonAddress};
use tracing::debug;

use super::contract::{self, OP_EXTRA};
use super::rules::{balance_line, BalanceLine};
use super::PaymentsError;
use crate::ClientConfig;

/// Most candidate contracts checked in one discovery.
const MAX_CANDIDATES: usize = 64;

/// The owner's view of the chain: wallet, root registry.
pub struct OwnerAccess {
    pub chain: Arc<dyn Chain>,
    pub sender: WalletSender,
    pub registry: Registry,
}

impl OwnerAccess {
    /// Connects with the config's `[chain]` (which must be on) and loads its wallet.
    pub async fn open(cfg: &ClientConfig) -> Result<Self, PaymentsError> {
        if !cfg.chain.enabled() {
            return Err(PaymentsError::Config(
                "this client config has no [chain] api_url: payments are off".into(),
            ));
        }
        cfg.chain.validate()?;
        let chain = cfg.chain.connect()?;
        let wallet = cfg.chain.load_wallet().await?;
        super::check_owner_address(&cfg.owner_address, &wallet.address())?;
        let registry = Registry::read(chain.as_ref(), &cfg.chain.root()?).await?;
        Ok(Self {
            sender: WalletSender::new(chain.clone(), wallet),
            chain,
            registry,
        })
    }

    /// Our wallet's address (the owner of our client contracts).
    pub fn owner(&self) -> TonAddress {
        self.sender.address()
    }
}

/// What the running client's stats say about one proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsHint {
    pub proxy: String,
    pub client_contract: TonAddress,
    pub proxy_max_tokens: u64,
    pub signed_charge_tokens: u64,
}

/// The per-proxy entries of the client's `/jsonstats` (`payments.proxies`).
pub fn hints_from_stats(v: &serde_json::Value) -> Vec<StatsHint> {
    let Some(m) = v
        .pointer("/payments/proxies")
        .and_then(serde_json::Value::as_object)
    else {
        return Vec::new();
    };
    m.iter()
        .take(MAX_CANDIDATES)
        .filter_map(|(proxy, e)| {
            Some(StatsHint {
                proxy: proxy.clone(),
                client_contract: e.get("client_contract")?.as_str()?.parse().ok()?,
                proxy_max_tokens: e.get("proxy_max_tokens")?.as_u64()?,
                signed_charge_tokens: e
                    .get("signed_charge_tokens")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
            })
        })
        .collect()
}

/// One of our client contracts.
#[derive(Clone, Debug)]
pub struct KnownContract {
    pub address: TonAddress,
    pub data: ClientData,
    /// The params it was made under (its price).
    pub params: CocoonParams,
    /// From the running client, when it knows this contract.
    pub hint: Option<StatsHint>,
}

impl KnownContract {
    /// Balance, charged and pending (pending needs the proxy's numbers, from the hint).
    pub fn balance(&self) -> BalanceLine {
        balance_line(
            self.data.balance,
            self.data.stake,
            self.data.tokens_used,
            self.hint.as_ref().map(|h| h.proxy_max_tokens),
            self.params.price_per_token,
        )
    }
}

/// Our client contracts: the hinted ones plus those our wallet sent messages to.
pub async fn find_contracts(
    access: &OwnerAccess,
    hints: &[StatsHint],
) -> Result<Vec<KnownContract>, PaymentsError> {
    let owner = access.owner();
    let mut candidates: BTreeMap<TonAddress, Option<StatsHint>> = hints
        .iter()
        .map(|h| (h.client_contract, Some(h.clone())))
        .collect();
    let txs = access.chain.transactions(&owner, None, MAX_TX_PAGE).await?;
    for m in txs.iter().flat_map(|t| t.out_msgs.iter()) {
        if let Some(d) = m.destination {
            if candidates.len() >= MAX_CANDIDATES {
                break;
            }
            candidates.entry(d).or_insert(None);
        }
    }
    let mut out = Vec::new();
    for (address, hint) in candidates {
        if !contract::runs_client_code(access.chain.as_ref(), &address).await? {
            continue;
        }
        match contract::read_with_params(access.chain.as_ref(), &address).await? {
            Some((data, params)) if data.owner == owner => out.push(KnownContract {
                address,
                data,
                params,
                hint,
            }),
            _ => debug!(contract = %address.to_bounceable(), "not one of ours"),
        }
    }
    Ok(out)
}

/// What a withdraw did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WithdrawOutcome {
    /// Sent; the balance above the stake (this much) goes back to the wallet.
    Sent { amount: u128 },
    /// Nothing to withdraw (why).
    Nothing(String),
}

/// `owner_client_withdraw`: everything above the stake back to the wallet.
pub async fn withdraw(
    access: &OwnerAccess,
    c: &KnownContract,
) -> Result<WithdrawOutcome, PaymentsError> {
    if c.data.state != state::NORMAL {
        return Ok(WithdrawOutcome::Nothing(format!(
            "the contract is {}; use `close`",
            super::account::state_name(c.data.state)
        )));
    }
    if c.data.balance <= c.data.stake {
        return Ok(WithdrawOutcome::Nothing(
            "the balance is not above the stake".into(),
        ));
    }
    let t = contract::op_transfer(
        &c.address,
        &ClientOp::Withdraw {
            send_excesses_to: access.owner(),
        },
        OP_EXTRA,
        None,
    )?;
    access.sender.send(vec![t]).await?;
    Ok(WithdrawOutcome::Sent {
        amount: c.data.balance - c.data.stake,
    })
}

/// What a close did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Now closing; the forced refund is possible after `unlock_ts` (chain time).
    Closing { unlock_ts: u32, now: u32 },
    /// Still closing: call again after `unlock_ts`.
    TooEarly { unlock_ts: u32, now: u32 },
    /// Forced: closed, the balance goes back from the proxy's stake.
    Refunded { amount: u128 },
    /// Already closed.
    AlreadyClosed,
}

/// `owner_client_request_refund`: first call closes, a call after the delay forces the refund.
pub async fn close(access: &OwnerAccess, c: &KnownContract) -> Result<CloseOutcome, PaymentsError> {
    let now = access.chain.time().await?;
    match c.data.state {
        state::CLOSED => return Ok(CloseOutcome::AlreadyClosed),
        // The contract requires `now > unlock_ts` (strictly).
        state::CLOSING if now <= c.data.unlock_ts => {
            return Ok(CloseOutcome::TooEarly {
                unlock_ts: c.data.unlock_ts,
                now,
            })
        }
        _ => {}
    }
    let t = contract::op_transfer(
        &c.address,
        &ClientOp::RequestRefund {
            send_excesses_to: access.owner(),
        },
        OP_EXTRA,
        None,
    )?;
    access.sender.send(vec![t]).await?;
    if c.data.state == state::CLOSING {
        return Ok(CloseOutcome::Refunded {
            amount: c.data.balance,
        });
    }
    let after = contract::read(access.chain.as_ref(), &c.address).await?;
    let unlock_ts = after.map(|d| d.unlock_ts).unwrap_or(0);
    Ok(CloseOutcome::Closing { unlock_ts, now })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_come_from_the_payments_section_and_garbage_is_skipped() {
        let c = format!("0:{}", "ab".repeat(32));
        let v = serde_json::json!({"payments": {"proxies": {
            "127.0.0.1:11002": {"client_contract": c, "proxy_max_tokens": 77, "signed_charge_tokens": 70},
            "bad": {"client_contract": "nope", "proxy_max_tokens": 1},
        }}});
        let h = hints_from_stats(&v);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].proxy, "127.0.0.1:11002");
        assert_eq!(h[0].proxy_max_tokens, 77);
        assert_eq!(h[0].client_contract.to_raw(), c);
        assert!(hints_from_stats(&serde_json::json!({"role": "client"})).is_empty());
    }
}
