//! [`WalletSender`]: the one place a node's wallet sends from. Sends are serialized (a v4 wallet
//! takes one seqno at a time), deploy the wallet on its first message, are resent while pending
//! (the same seqno, so at most one lands) and are confirmed by the seqno moving.
//!
//! What must not live here: deciding what to send or when.

use std::sync::Arc;
use std::time::Duration;

use cocoon_ton::cells::encode_boc;
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::wallet::{parse_seqno, Transfer, Wallet};
use cocoon_ton::{Chain, ChainError, TonAddress};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::OnchainError;

/// Fees a wallet keeps aside beyond the values it sends (send mode 3 pays them separately).
pub const FEE_RESERVE: u128 = 50_000_000;

/// How long a send may take to show in the wallet's seqno.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// A node wallet's outgoing messages.
pub struct WalletSender {
    chain: Arc<dyn Chain>,
    wallet: Wallet,
    lock: Mutex<()>,
    confirm_timeout: Duration,
    poll: Duration,
}

impl std::fmt::Debug for WalletSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletSender")
            .field("address", &self.wallet.address().to_bounceable())
            .finish_non_exhaustive()
    }
}

impl WalletSender {
    /// A sender for `wallet` over `chain`.
    pub fn new(chain: Arc<dyn Chain>, wallet: Wallet) -> Self {
        Self {
            chain,
            wallet,
            lock: Mutex::new(()),
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            poll: Duration::from_millis(200),
        }
    }

    /// Sets how long a send may wait for confirmation.
    pub fn with_confirm_timeout(mut self, t: Duration) -> Self {
        self.confirm_timeout = t;
        self
    }

    /// The wallet's address.
    pub fn address(&self) -> TonAddress {
        self.wallet.address()
    }

    /// The chain this sender uses.
    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.chain
    }

    /// The wallet's balance in nanoTON.
    pub async fn balance(&self) -> Result<u128, OnchainError> {
        Ok(self
            .chain
            .account_state(&self.wallet.address())
            .await?
            .balance)
    }

    /// Sends `transfers` (at most 4) and returns once the wallet's seqno has moved past them.
    pub async fn send(&self, transfers: Vec<Transfer>) -> Result<(), OnchainError> {
        let _one_at_a_time = self.lock.lock().await;
        let addr = self.wallet.address();
        let st = self.chain.account_state(&addr).await?;
        let need: u128 = transfers.iter().map(|t| t.value).sum::<u128>() + FEE_RESERVE;
        if st.balance == 0 {
            return Err(OnchainError::Unfunded {
                address: addr.to_bounceable(),
            });
        }
        if st.balance < need {
            return Err(OnchainError::Insufficient {
                address: addr.to_bounceable(),
                have: st.balance,
                need,
            });
        }
        let deployed = st.status == AccountStatus::Active;
        let seqno = if deployed { self.seqno().await? } else { 0 };
        let expire = self.chain.time().await?.saturating_add(120);
        let ext = self
            .wallet
            .external_transfer(seqno, expire, &transfers, !deployed)?;
        let boc = encode_boc(&ext);
        if let Err(e) = self.chain.send_boc(&boc).await {
            // An API server may answer with the first of several liteservers while another
            // one took the message, and a timeout says nothing either: only a refusal of the
            // message itself ends the send here, and even then a copy may have landed.
            if !is_refusal(&e) {
                warn!(seqno, error = %e, "wallet message: the send failed without proving the message was not broadcast; confirming by seqno");
            } else {
                tokio::time::sleep(self.poll).await;
                if self.seqno().await.is_ok_and(|s| s > seqno) {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        debug!(seqno, messages = transfers.len(), "wallet message sent");
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut resend_at = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(self.poll).await;
            if self.seqno().await.is_ok_and(|s| s > seqno) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(OnchainError::NotConfirmed(self.confirm_timeout));
            }
            if now >= resend_at {
                // Same seqno: at most one copy can ever be accepted.
                let _ = self.chain.send_boc(&boc).await;
                resend_at = now + Duration::from_secs(10);
            }
        }
    }

    async fn seqno(&self) -> Result<u32, OnchainError> {
        let r = self
            .chain
            .run_get_method(&self.wallet.address(), "seqno", vec![])
            .await?;
        Ok(parse_seqno(&r.stack)?)
    }
}

/// The API refused the message itself (a malformed BOC, or the wallet did not accept it against
/// the state the server read), as opposed to failing to say what happened to it.
fn is_refusal(e: &ChainError) -> bool {
    match e {
        ChainError::Api { code, message } => {
            (400..500).contains(code) || message.contains("cannot apply external message")
        }
        ChainError::Status(code) => (400..500).contains(code),
        _ => false,
    }
}

/// Waits until `addr` is an active contract (a deploy landed), polling until `timeout`.
pub async fn wait_active(
    chain: &dyn Chain,
    addr: &TonAddress,
    timeout: Duration,
) -> Result<(), OnchainError> {
    let deadline = tokio::time::Instant::now() + timeout;
    while chain.account_state(addr).await?.status != AccountStatus::Active {
        if tokio::time::Instant::now() >= deadline {
            return Err(OnchainError::NotActive {
                what: "a contract deployed just now",
                address: addr.to_bounceable(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_of_the_message_itself_ends_a_send_at_once() {
        let api = |code, message: &str| ChainError::Api {
            code,
            message: message.into(),
        };
        assert!(is_refusal(&api(400, "malformed BOC")));
        assert!(is_refusal(&api(429, "Ratelimit exceed")));
        assert!(is_refusal(&api(
            500,
            "LITE_SERVER_UNKNOWN: cannot apply external message to current state"
        )));
        assert!(is_refusal(&ChainError::Status(401)));
        // Said nothing about the message: confirm by seqno instead.
        assert!(!is_refusal(&api(504, "Liteserver timeout")));
        assert!(!is_refusal(&api(503, "")));
        assert!(!is_refusal(&ChainError::Timeout));
        assert!(!is_refusal(&ChainError::Status(502)));
        assert!(!is_refusal(&ChainError::Transport("reset".into())));
    }
}
