//! [`TxCursor`]: the new transactions of one account, oldest first, each exactly once across
//! polls. The caller persists [`TxCursor::last_lt`] if it must survive restarts.
//!
//! What must not live here: interpreting the transactions.

use cocoon_ton::http::MAX_TX_PAGE;
use cocoon_ton::{Chain, TonAddress, TxId, TxInfo};
use tracing::warn;

use crate::OnchainError;

/// Most pages one poll reads back to the last transaction it yielded (100 transactions each).
/// More new transactions than that between two polls and the oldest of them are skipped, with
/// a warning: the alternative, never catching up, is worse for every reader.
pub const MAX_PAGES_PER_POLL: usize = 50;

/// Position in one account's transaction list.
#[derive(Clone, Debug)]
pub struct TxCursor {
    addr: TonAddress,
    last_lt: Option<u64>,
}

impl TxCursor {
    /// A cursor that first yields the newest page of existing transactions (`since = None`) or
    /// all those after `since`.
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

    /// Transactions newer than the last poll, oldest first. The API gives the newest page; while
    /// pages come back full, the next one is read from the oldest seen (`lt` + `hash`) until the
    /// last transaction yielded before is reached.
    pub async fn poll(&mut self, chain: &dyn Chain) -> Result<Vec<TxInfo>, OnchainError> {
        let mut txs = chain
            .transactions(&self.addr, self.last_lt, MAX_TX_PAGE)
            .await?;
        let mut full = txs.len() >= MAX_TX_PAGE as usize;
        let mut pages = 1;
        while full && self.last_lt.is_some() {
            let Some(oldest) = txs.iter().min_by_key(|t| t.lt) else {
                break;
            };
            if pages >= MAX_PAGES_PER_POLL {
                warn!(
                    account = %self.addr.to_bounceable(),
                    read = txs.len(),
                    "more new transactions than one poll reads: older ones in between are skipped; poll more often"
                );
                break;
            }
            let from = TxId {
                lt: oldest.lt,
                hash: oldest.hash,
            };
            let page = chain
                .transactions_from(&self.addr, from, self.last_lt, MAX_TX_PAGE)
                .await?;
            pages += 1;
            full = page.len() >= MAX_TX_PAGE as usize;
            txs.extend(page.into_iter().filter(|t| t.lt < from.lt));
        }
        txs.retain(|t| self.last_lt.is_none_or(|l| t.lt > l));
        txs.sort_by_key(|t| t.lt);
        if let Some(t) = txs.last() {
            self.last_lt = Some(t.lt);
        }
        Ok(txs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cocoon_ton::{AccountState, ChainError, GetMethodResult, StackEntry};

    use super::*;

    /// An account history served the way toncenter serves it: newest first, `to_lt` exclusive,
    /// `lt` + `hash` start a page (inclusive). Counts the calls.
    struct History {
        txs: Mutex<Vec<TxInfo>>,
        calls: Mutex<usize>,
    }

    fn tx(lt: u64) -> TxInfo {
        TxInfo {
            lt,
            hash: [(lt % 251) as u8; 32],
            utime: 0,
            fee: 0,
            in_msg: None,
            out_msgs: Vec::new(),
            exit_code: None,
            aborted: None,
        }
    }

    impl History {
        fn new() -> Self {
            Self {
                txs: Mutex::new(Vec::new()),
                calls: Mutex::new(0),
            }
        }
        fn add(&self, n: u64) {
            let mut txs = self.txs.lock().expect("lock");
            let next = txs.last().map_or(1, |t| t.lt + 1);
            txs.extend((next..next + n).map(tx));
        }
        fn page(&self, start: Option<TxId>, since: Option<u64>, limit: u32) -> Vec<TxInfo> {
            *self.calls.lock().expect("lock") += 1;
            let txs = self.txs.lock().expect("lock");
            txs.iter()
                .rev()
                .skip_while(|t| start.is_some_and(|s| t.lt != s.lt || t.hash != s.hash))
                .take_while(|t| since.is_none_or(|s| t.lt > s))
                .take(limit as usize)
                .cloned()
                .collect()
        }
    }

    #[async_trait]
    impl Chain for History {
        async fn send_boc(&self, _: &[u8]) -> Result<(), ChainError> {
            Err(ChainError::Unsupported("test"))
        }
        async fn run_get_method(
            &self,
            _: &TonAddress,
            _: &str,
            _: Vec<StackEntry>,
        ) -> Result<GetMethodResult, ChainError> {
            Err(ChainError::Unsupported("test"))
        }
        async fn account_state(&self, _: &TonAddress) -> Result<AccountState, ChainError> {
            Err(ChainError::Unsupported("test"))
        }
        async fn transactions(
            &self,
            _: &TonAddress,
            since_lt: Option<u64>,
            limit: u32,
        ) -> Result<Vec<TxInfo>, ChainError> {
            Ok(self.page(None, since_lt, limit))
        }
        async fn transactions_from(
            &self,
            _: &TonAddress,
            from: TxId,
            since_lt: Option<u64>,
            limit: u32,
        ) -> Result<Vec<TxInfo>, ChainError> {
            Ok(self.page(Some(from), since_lt, limit))
        }
        async fn time(&self) -> Result<u32, ChainError> {
            Err(ChainError::Unsupported("test"))
        }
    }

    fn lts(txs: &[TxInfo]) -> Vec<u64> {
        txs.iter().map(|t| t.lt).collect()
    }

    #[tokio::test]
    async fn a_burst_of_several_pages_is_yielded_whole_oldest_first_and_once() {
        let chain = History::new();
        chain.add(3);
        let mut cursor = TxCursor::new(TonAddress::new(0, [1; 32]), None);
        assert_eq!(lts(&cursor.poll(&chain).await.expect("poll")), [1, 2, 3]);

        // 250 new ones: three pages back to lt 3, none skipped, none twice.
        chain.add(250);
        *chain.calls.lock().expect("lock") = 0;
        let got = cursor.poll(&chain).await.expect("poll");
        assert_eq!(lts(&got), (4..=253).collect::<Vec<_>>());
        assert_eq!(*chain.calls.lock().expect("lock"), 3);
        assert_eq!(cursor.last_lt(), Some(253));

        // Exactly one full page: one more call finds nothing older.
        chain.add(u64::from(MAX_TX_PAGE));
        let got = cursor.poll(&chain).await.expect("poll");
        assert_eq!(lts(&got), (254..=353).collect::<Vec<_>>());
        assert!(cursor.poll(&chain).await.expect("poll").is_empty());
    }

    #[tokio::test]
    async fn beyond_the_page_cap_the_newest_are_yielded_and_the_cursor_moves_on() {
        let chain = History::new();
        chain.add(1);
        let mut cursor = TxCursor::new(TonAddress::new(0, [1; 32]), Some(1));
        let burst = MAX_PAGES_PER_POLL as u64 * u64::from(MAX_TX_PAGE) + 50;
        chain.add(burst);
        let got = cursor.poll(&chain).await.expect("poll");
        // The first page, then pages that each repeat the oldest one seen.
        let page = MAX_TX_PAGE as usize;
        let read = page + (MAX_PAGES_PER_POLL - 1) * (page - 1);
        assert_eq!(got.len(), read, "the cap bounds one poll");
        assert_eq!(got.last().map(|t| t.lt), Some(burst + 1));
        assert!(got.windows(2).all(|w| w[0].lt + 1 == w[1].lt));
        assert_eq!(cursor.last_lt(), Some(burst + 1));
    }
}
