//! The proxy's payment book, free of I/O: per client and per worker the durable and anchored
//! counters (mirroring the ledger), what their contracts last reported, the newest signed payment,
//! and the pure rules built on them — a client's credit, when to charge, when to pay out.
//!
//! Amounts: tokens are adjusted tokens; money is nanoTON (u128). Thresholds are compared as
//! nanoTON, never as token counts (Cocoon mixes the two for some).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use cocoon_ledger::Party;
use cocoon_ton::TonAddress;

/// What a client contract last reported (or its getter said).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOnchain {
    pub state: u8,
    /// Prepaid nanoTON left (the contract subtracts charges).
    pub balance: u128,
    pub stake: u128,
    /// Tokens charged on chain.
    pub tokens_used: u64,
    pub secret_hash: [u8; 32],
    /// Logical time of the report (reports older than the one held are ignored).
    pub lt: u64,
}

/// A signed payment ready to send: its tokens and its BOC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub tokens: u64,
    pub boc: Bytes,
}

/// One client's page.
#[derive(Clone, Debug)]
pub struct ClientBook {
    pub sc: TonAddress,
    /// Durable in the ledger.
    pub db: u64,
    /// Anchored on chain: the amount signed payments carry.
    pub chain: u64,
    pub onchain: Option<ClientOnchain>,
    pub signed: Option<Signed>,
    /// When a charge was last sent (not resent until the contract reports or it times out).
    pub charging_since: Option<Instant>,
}

/// One worker's page.
#[derive(Clone, Debug)]
pub struct WorkerBook {
    pub owner: TonAddress,
    pub sc: TonAddress,
    pub db: u64,
    pub chain: u64,
    /// Tokens paid out on chain (the worker contract's `tokens`).
    pub onchain_tokens: u64,
    pub onchain_lt: u64,
    pub signed: Option<Signed>,
    pub paying_since: Option<Instant>,
}

/// Every page, keyed by the owner's bounceable address text.
#[derive(Debug, Default)]
pub struct Book {
    pub clients: HashMap<String, ClientBook>,
    pub workers: HashMap<String, WorkerBook>,
}

impl Book {
    /// Mirrors a ledger account's committed counters into its page (when the page exists): the
    /// page's counters become the maxima of theirs and the ledger's. They are only ever copied
    /// from the ledger, never added to, so one commit seen twice — by the request that made it
    /// and by an anchor refresh that read the ledger in between — counts once. (Adding the
    /// request's tokens after the commit counted such a commit twice: the book then told
    /// workers more than the ledger held, which they would hold against the proxy after its
    /// next restart as a rollback.)
    pub fn mirror(&mut self, party: Party, owner: &str, committed_db: u64, committed_chain: u64) {
        let (db, chain) = match party {
            Party::Client => match self.clients.get_mut(owner) {
                Some(c) => (&mut c.db, &mut c.chain),
                None => return,
            },
            Party::Worker => match self.workers.get_mut(owner) {
                Some(w) => (&mut w.db, &mut w.chain),
                None => return,
            },
        };
        *db = (*db).max(committed_db);
        *chain = (*chain).max(committed_chain);
    }
}

/// Tokens a client may have used in total: `min(paid, used_on_chain + stake/price)` with
/// `paid = used_on_chain + balance/price` (notes §4.6). Nothing for a closing or closed contract.
pub fn client_credit(c: &ClientOnchain, price_per_token: u128) -> u64 {
    if c.state != 0 || price_per_token == 0 {
        return c.tokens_used;
    }
    let to_tokens = |nano: u128| u64::try_from(nano / price_per_token).unwrap_or(u64::MAX);
    let paid = c.tokens_used.saturating_add(to_tokens(c.balance));
    let staked = c.tokens_used.saturating_add(to_tokens(c.stake));
    paid.min(staked)
}

/// nanoTON worth of `tokens` at `per_token`.
pub fn worth(tokens: u64, per_token: u128) -> u128 {
    u128::from(tokens).saturating_mul(per_token)
}

/// Whether the anchored but uncharged part of a client's usage is worth a charge.
pub fn client_needs_charge(
    anchored: u64,
    charged_on_chain: u64,
    price: u128,
    min_nano: u128,
) -> bool {
    anchored > charged_on_chain && worth(anchored - charged_on_chain, price) >= min_nano.max(1)
}

/// Whether the anchored but unpaid part of a worker's earnings is worth a payout.
pub fn worker_needs_payout(anchored: u64, paid_on_chain: u64, fee: u128, min_nano: u128) -> bool {
    anchored > paid_on_chain && worth(anchored - paid_on_chain, fee) >= min_nano.max(1)
}

/// Rollback check of a worker's claims against our books (notes §4.3): it may never know more.
pub fn worker_claims_ok(
    ours_db: u64,
    ours_chain: u64,
    told_chain: u64,
    told_db: u64,
    told_max: u64,
) -> Result<(), String> {
    if told_chain > ours_chain || told_db > ours_db || told_max > ours_db {
        return Err(format!(
            "the worker was told chain={told_chain} db={told_db} max={told_max} tokens but this proxy's ledger has chain={ours_chain} db={ours_db}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_page() -> ClientBook {
        ClientBook {
            sc: TonAddress::new(0, [1; 32]),
            db: 0,
            chain: 0,
            onchain: None,
            signed: None,
            charging_since: None,
        }
    }

    #[test]
    fn mirroring_one_commit_twice_counts_it_once_and_never_goes_back() {
        let mut b = Book::default();
        b.clients.insert("c".into(), client_page());
        // The request's commit raised the ledger to 46; an anchor refresh copied it first, then
        // the request copies it again: still 46 (adding would have made it 92).
        b.mirror(Party::Client, "c", 46, 0);
        b.mirror(Party::Client, "c", 46, 0);
        assert_eq!(b.clients["c"].db, 46);
        // A refresh that read an older state does not lower the page.
        b.mirror(Party::Client, "c", 40, 40);
        assert_eq!((b.clients["c"].db, b.clients["c"].chain), (46, 40));
        // No page is made for an account the book does not know.
        b.mirror(Party::Worker, "w", 10, 0);
        assert!(b.workers.is_empty());
    }

    fn onchain(balance: u128, stake: u128, used: u64) -> ClientOnchain {
        ClientOnchain {
            balance,
            stake,
            tokens_used: used,
            ..Default::default()
        }
    }

    #[test]
    fn credit_is_the_smaller_of_paid_and_stake_ahead_of_settlement() {
        // 10 TON paid, 1 TON stake, price 2000 nano/token: the stake bounds it.
        let c = onchain(10_000_000_000, 1_000_000_000, 100);
        assert_eq!(client_credit(&c, 2000), 100 + 500_000);
        // Little left: the balance bounds it.
        let c = onchain(2_000_000, 1_000_000_000, 100);
        assert_eq!(client_credit(&c, 2000), 100 + 1000);
        // Closing: nothing new.
        let c = ClientOnchain {
            state: 1,
            ..onchain(10_000_000_000, 1_000_000_000, 100)
        };
        assert_eq!(client_credit(&c, 2000), 100);
        assert_eq!(client_credit(&onchain(5, 5, 7), 0), 7);
    }

    #[test]
    fn thresholds_compare_money_not_tokens() {
        // 600 tokens at 2 nano = 1200 nano: below a 2000-nano threshold even though 600 > 0.
        assert!(!client_needs_charge(700, 100, 2, 2000));
        assert!(client_needs_charge(1100, 100, 2, 2000));
        assert!(!client_needs_charge(100, 100, 2, 0));
        assert!(worker_needs_payout(10, 0, 1, 10));
        assert!(!worker_needs_payout(9, 0, 1, 10));
    }

    #[test]
    fn a_worker_knowing_more_is_a_rollback() {
        assert!(worker_claims_ok(100, 50, 50, 100, 100).is_ok());
        assert!(worker_claims_ok(100, 50, 51, 100, 100).is_err());
        assert!(worker_claims_ok(100, 50, 50, 101, 0).is_err());
        assert!(worker_claims_ok(100, 50, 0, 0, 101).is_err());
    }
}
