//! A [`Chain`] for the proxy's tests: no contract is deployed on it, and it counts the reads
//! made (what an unauthenticated peer can make the proxy ask of its chain API).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use cocoon_ton::chain::{AccountState, AccountStatus};
use cocoon_ton::{Chain, ChainError, GetMethodResult, StackEntry, TonAddress, TxId, TxInfo};

/// A chain on which no contract is deployed; counts the reads made.
#[derive(Default)]
pub(crate) struct EmptyChain {
    pub(crate) reads: AtomicUsize,
}

type ChainFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChainError>> + Send + 'a>>;

// `Chain` is an `async_trait` trait; these are the signatures it expands to.
impl Chain for EmptyChain {
    fn send_boc<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _boc: &'life1 [u8],
    ) -> ChainFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Err(ChainError::Unsupported("send_boc")) })
    }

    fn run_get_method<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        _addr: &'life1 TonAddress,
        _method: &'life2 str,
        _stack: Vec<StackEntry>,
    ) -> ChainFuture<'async_trait, GetMethodResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(ChainError::Unsupported("no contracts here")) })
    }

    fn account_state<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _addr: &'life1 TonAddress,
    ) -> ChainFuture<'async_trait, AccountState>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(AccountState {
                balance: 0,
                status: AccountStatus::Uninit,
                code: None,
                data: None,
                last_tx_lt: 0,
                last_tx_hash: [0; 32],
            })
        })
    }

    fn transactions<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _addr: &'life1 TonAddress,
        _since_lt: Option<u64>,
        _limit: u32,
    ) -> ChainFuture<'async_trait, Vec<TxInfo>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn transactions_from<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _addr: &'life1 TonAddress,
        _from: TxId,
        _since_lt: Option<u64>,
        _limit: u32,
    ) -> ChainFuture<'async_trait, Vec<TxInfo>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn time<'life0, 'async_trait>(&'life0 self) -> ChainFuture<'async_trait, u32>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok(0) })
    }
}
