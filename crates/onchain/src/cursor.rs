//! [`TxCursor`]: the new transactions of one account, oldest first, each exactly once across
//! polls. The caller persists [`TxCursor::last_lt`] if it must survive restarts.
//!
//! What must not live here: interpreting the transactions.

use cocoon_ton::http::MAX_TX_PAGE;
use cocoon_ton::{Chain, TonAddress, TxInfo};
use tracing::warn;

use crate::OnchainError;

/// Position in one account's transaction list.
#[derive(Clone, Debug)]
pub struct TxCursor {
    addr: TonAddress,
    last_lt: Option<u64>,
}

impl TxCursor {
    /// A cursor that first yields the newest page of existing transactions (`since = None`) or
    /// those after `since`.
    pub fn new(addr: TonAddress, since: Option<u64>) -> Self {
        Self {
            addr,
            last_lt: since,
        }
    }

    /// The account.
    pub fn address(&self) -> &TonAddress {
        &self.addr
    }

    /// Logical time of the newest transaction yielded so far.
    pub fn last_lt(&self) -> Option<u64> {
        self.last_lt
    }

    /// Transactions newer than the last poll, oldest first.
    pub async fn poll(&mut self, chain: &dyn Chain) -> Result<Vec<TxInfo>, OnchainError> {
        let mut txs = chain
            .transactions(&self.addr, self.last_lt, MAX_TX_PAGE)
            .await?;
        if txs.len() as u32 >= MAX_TX_PAGE && self.last_lt.is_some() {
            warn!(
                account = %self.addr.to_bounceable(),
                "a full page of new transactions: older ones in between may have been skipped; poll more often"
            );
        }
        txs.retain(|t| self.last_lt.is_none_or(|l| t.lt > l));
        txs.sort_by_key(|t| t.lt);
        if let Some(t) = txs.last() {
            self.last_lt = Some(t.lt);
        }
        Ok(txs)
    }
}
