//! [`ProxyAccount`]: one proxy as the client's money sees it: the proxy's key and the contract
//! addresses we verified, and the numbers the proxy has sent us (newest signed charge, db and max
//! tokens). Those only ever grow: a lower number is logged and ignored, and a signed charge is
//! kept only when it verifies with the proxy key, is a charge, and names our contract.
//!
//! What must not live here: chain I/O or decisions (see `task` and `rules`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use cocoon_onchain::amount::format_ton;
use cocoon_onchain::signed::{CheckedPayments, SignedError};
use cocoon_proto::messages::ProxySignedPayment;
use cocoon_ton::contracts::ClientData;
use cocoon_ton::payments::{SignedKind, SignedPayment};
use cocoon_ton::TonAddress;
use tracing::warn;

/// One proxy's account.
#[derive(Debug)]
pub struct ProxyAccount {
    /// The proxy's `host:port`.
    pub proxy: String,
    pub proxy_key: [u8; 32],
    pub proxy_owner: TonAddress,
    pub proxy_contract: TonAddress,
    pub client_contract: TonAddress,
    /// nanoTON per token under the params the addresses were derived from.
    pub price: u128,
    /// `min_client_stake` under those params (a fresh contract's stake).
    pub min_stake: u128,
    numbers: Mutex<Numbers>,
    /// Signed charges already verified (the proxy re-sends its latest with every notice).
    checked: CheckedPayments,
    /// Requests sent to this proxy whose charge notice has not come yet, each with the most it
    /// can honestly cost ([`charge_bound`]).
    expected: Mutex<ExpectedCharges>,
}

/// Requests awaiting their charge notice, at most [`MAX_EXPECTED_CHARGES`]: a request refused
/// before admission never gets one, so the oldest are forgotten first (a notice comes within
/// moments of its request's end; one older than that many newer requests is not coming).
#[derive(Debug, Default)]
struct ExpectedCharges {
    bounds: HashMap<[u8; 32], u64>,
    /// Insertion order, for forgetting the oldest (ids already noticed are skipped then).
    order: VecDeque<[u8; 32]>,
}

/// Most requests whose charge notice is awaited per proxy.
pub const MAX_EXPECTED_CHARGES: usize = 65_536;

/// The largest price multiplier a request is assumed to be charged at when bounding it: 100×
/// the base price (Cocoon's multipliers are ×10 000 fixed point; 1× is usual). A proxy's own `default_max_tokens` above the client's falls under it too.
pub const MULTIPLIER_CEILING: u64 = 100;

/// The most adjusted tokens a request sent with `max_tokens`, a `query` of `query_bytes` and
/// `max_coefficient` can be charged by an honest proxy (its reservation, at the multiplier
/// ceiling): `(max_tokens + query_bytes) × max_coefficient / 1000 × MULTIPLIER_CEILING`.
pub fn charge_bound(max_tokens: u64, query_bytes: u64, max_coefficient: u64) -> u64 {
    let base = u128::from(max_tokens.saturating_add(query_bytes));
    let n = base
        .saturating_mul(u128::from(max_coefficient))
        .saturating_mul(u128::from(MULTIPLIER_CEILING))
        / 1000;
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// What we know of one account right now.
#[derive(Clone, Debug, Default)]
pub struct Numbers {
    /// Durable in the proxy's ledger.
    pub db_tokens: u64,
    /// Everything the proxy counts as used.
    pub max_tokens: u64,
    /// Tokens of `charge`.
    pub charge_tokens: u64,
    /// Newest signed charge (verified).
    pub charge: Option<SignedPayment>,
    /// Last read of the contract (`None`: not deployed, or not read yet).
    pub contract: Option<ClientData>,
    /// Whether the contract has been read at least once.
    pub contract_read: bool,
    /// A top-up sent and not yet seen: the balance we expect, and when it was sent.
    pub pending_top_up: Option<(u128, Instant)>,
    /// The last charge we submitted, and when.
    pub submitted_charge: Option<(u64, Instant)>,
    /// The last money error (shown in stats).
    pub last_error: Option<String>,
    /// Tokens this proxy charged for our own requests since this account was made, as its
    /// per-request notices say, each at most that request's [`charge_bound`]: with the signed
    /// charge, what bounds the proxy's unsigned `max_tokens` in top-up decisions (review L8).
    pub noticed_tokens: u64,
}

impl ProxyAccount {
    pub fn new(
        proxy: String,
        proxy_key: [u8; 32],
        proxy_owner: TonAddress,
        proxy_contract: TonAddress,
        client_contract: TonAddress,
        price: u128,
        min_stake: u128,
    ) -> Self {
        Self {
            proxy,
            proxy_key,
            proxy_owner,
            proxy_contract,
            client_contract,
            price,
            min_stake,
            numbers: Mutex::new(Numbers::default()),
            checked: CheckedPayments::default(),
            expected: Mutex::new(ExpectedCharges::default()),
        }
    }

    /// Same proxy key and client contract (so the numbers still apply).
    pub fn same_contract(&self, other: &Self) -> bool {
        self.proxy_key == other.proxy_key && self.client_contract == other.client_contract
    }

    /// A copy of the numbers.
    pub fn numbers(&self) -> Numbers {
        self.numbers.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Applies `f` to the numbers.
    pub fn update<R>(&self, f: impl FnOnce(&mut Numbers) -> R) -> Option<R> {
        self.numbers.lock().ok().map(|mut n| f(&mut n))
    }

    /// A request of ours was sent to this proxy: its charge notice will be counted, up to
    /// `bound` ([`charge_bound`]).
    pub fn expect_charge(&self, request_id: [u8; 32], bound: u64) {
        if let Ok(mut e) = self.expected.lock() {
            while e.order.len() >= MAX_EXPECTED_CHARGES {
                if let Some(old) = e.order.pop_front() {
                    e.bounds.remove(&old);
                }
            }
            e.order.push_back(request_id);
            e.bounds.insert(request_id, bound);
        }
    }

    /// The proxy's charge notice for request `request_id`: counted once, only for a request we
    /// sent it, and at most that request's bound; anything else is ignored.
    pub fn notice_charge(&self, request_id: &[u8; 32], tokens: i64) {
        let bound = self
            .expected
            .lock()
            .ok()
            .and_then(|mut e| e.bounds.remove(request_id));
        let Some(bound) = bound else {
            return;
        };
        let tokens = u64::try_from(tokens).unwrap_or(0).min(bound);
        self.update(|n| n.noticed_tokens = n.noticed_tokens.saturating_add(tokens));
    }

    /// Takes in what a proxy message carries. `db`/`max` are `None` for messages without them
    /// (`client.connectedToProxy`). A bad signed charge is refused (error) and nothing changes.
    pub fn observe(
        &self,
        signed: &ProxySignedPayment,
        db: Option<i64>,
        max: Option<i64>,
    ) -> Result<(), SignedError> {
        let charge = match signed {
            ProxySignedPayment::Signed(d) => Some(self.checked.check(
                &d.data,
                &self.proxy_key,
                SignedKind::Charge,
                &self.client_contract,
            )?),
            ProxySignedPayment::Empty(_) => None,
        };
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        self.update(|n| {
            if let Some(p) = charge {
                let t = p.payload.new_tokens;
                if t > n.charge_tokens {
                    n.charge_tokens = t;
                    n.charge = Some(p);
                } else if t < n.charge_tokens {
                    warn!(proxy = %self.proxy, got = t, had = n.charge_tokens, "proxy sent an older signed charge; keeping the newer one");
                }
            }
            if let Some(db) = db.map(to_u64) {
                if db < n.db_tokens {
                    warn!(proxy = %self.proxy, got = db, had = n.db_tokens, "proxy's db tokens went backwards");
                }
                n.db_tokens = n.db_tokens.max(db);
            }
            if let Some(max) = max.map(to_u64) {
                if max < n.max_tokens {
                    warn!(proxy = %self.proxy, got = max, had = n.max_tokens, "proxy's max tokens went backwards");
                }
                n.max_tokens = n.max_tokens.max(max);
            }
        });
        Ok(())
    }

    /// This account in `/jsonstats`.
    pub fn json(&self) -> serde_json::Value {
        let n = self.numbers();
        let c = n.contract.as_ref();
        let ton = |v: Option<u128>| v.map(format_ton);
        serde_json::json!({
            "proxy_public_key": hex::encode(self.proxy_key),
            "proxy_owner": self.proxy_owner.to_bounceable(),
            "proxy_contract": self.proxy_contract.to_bounceable(),
            "client_contract": self.client_contract.to_bounceable(),
            "price_per_token_nanoton": n64(self.price),
            "contract_state": match (n.contract_read, c) {
                (false, _) => "unknown",
                (true, None) => "not deployed",
                (true, Some(c)) => state_name(c.state),
            },
            "balance_nanoton": c.map(|c| n64(c.balance)),
            "balance_ton": ton(c.map(|c| c.balance)),
            "stake_nanoton": c.map(|c| n64(c.stake)),
            "stake_ton": ton(c.map(|c| c.stake)),
            "tokens_used_on_chain": c.map(|c| c.tokens_used),
            "unlock_ts": c.map(|c| c.unlock_ts),
            "proxy_db_tokens": n.db_tokens,
            "proxy_max_tokens": n.max_tokens,
            "signed_charge_tokens": n.charge_tokens,
            "last_error": n.last_error,
        })
    }
}

/// nanoTON as a JSON number (saturating; real amounts are far below `u64::MAX`).
fn n64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A client contract state as a word.
pub fn state_name(s: u8) -> &'static str {
    match s {
        0 => "normal",
        1 => "closing",
        2 => "closed",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use cocoon_onchain::signed::sign_boc;
    use cocoon_proto::messages::{ProxySignedPaymentData, ProxySignedPaymentEmpty};
    use cocoon_ton::payments::ProxySigner;

    fn addr(b: u8) -> TonAddress {
        format!("0:{}", hex::encode([b; 32])).parse().expect("addr")
    }

    fn signed(
        s: &ProxySigner,
        kind: SignedKind,
        tokens: u64,
        to: &TonAddress,
    ) -> ProxySignedPayment {
        let data = sign_boc(s, kind, tokens, to, &addr(9)).expect("sign");
        ProxySignedPayment::Signed(ProxySignedPaymentData {
            data: Bytes::from(data),
        })
    }

    /// L8: only charges of requests we sent count, once each, at most their bound.
    #[test]
    fn charge_notices_count_once_for_our_requests_up_to_their_bound() {
        let a = ProxyAccount::new("p".into(), [1; 32], addr(2), addr(3), addr(1), 1, 1);
        let bound = charge_bound(100, 50, 1000);
        assert_eq!(bound, 150 * 100, "at the multiplier ceiling");
        a.expect_charge([7; 32], bound);
        a.notice_charge(&[8; 32], 1_000_000); // not a request of ours
        a.notice_charge(&[7; 32], i64::MAX); // ours, absurd: capped
        a.notice_charge(&[7; 32], 40); // again: already counted
        assert_eq!(a.numbers().noticed_tokens, bound);
        a.expect_charge([9; 32], bound);
        a.notice_charge(&[9; 32], -5); // negative counts as nothing
        a.expect_charge([10; 32], bound);
        a.notice_charge(&[10; 32], 40);
        assert_eq!(a.numbers().noticed_tokens, bound + 40);
        assert_eq!(charge_bound(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        // Requests that never get a notice (refused before admission) do not stop the count:
        // the oldest are forgotten, the newest still count.
        for i in 0..MAX_EXPECTED_CHARGES as u32 + 10 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 1;
            a.expect_charge(id, bound);
        }
        let mut newest = [0u8; 32];
        newest[..4].copy_from_slice(&(MAX_EXPECTED_CHARGES as u32 + 9).to_be_bytes());
        newest[31] = 1;
        let mut oldest = [0u8; 32];
        oldest[31] = 1;
        a.notice_charge(&oldest, 5);
        a.notice_charge(&newest, 7);
        assert_eq!(a.numbers().noticed_tokens, bound + 40 + 7);
    }

    #[test]
    fn numbers_only_grow_and_only_valid_charges_are_kept() {
        let signer = ProxySigner::from_seed(&[5; 32]).expect("key");
        let ours = addr(1);
        let a = ProxyAccount::new(
            "p".into(),
            signer.public_key(),
            addr(2),
            addr(3),
            ours,
            1,
            1,
        );
        a.observe(
            &signed(&signer, SignedKind::Charge, 100, &ours),
            Some(150),
            Some(200),
        )
        .expect("valid");
        let n = a.numbers();
        assert_eq!(
            (n.charge_tokens, n.db_tokens, n.max_tokens),
            (100, 150, 200)
        );
        // Lower numbers never replace higher ones.
        a.observe(
            &signed(&signer, SignedKind::Charge, 50, &ours),
            Some(10),
            Some(20),
        )
        .expect("valid but old");
        let n = a.numbers();
        assert_eq!(
            (n.charge_tokens, n.db_tokens, n.max_tokens),
            (100, 150, 200)
        );
        assert_eq!(n.charge.expect("kept").payload.new_tokens, 100);
        // Empty payment, missing and negative numbers change nothing.
        a.observe(
            &ProxySignedPayment::Empty(ProxySignedPaymentEmpty),
            None,
            Some(-5),
        )
        .expect("empty");
        assert_eq!(a.numbers().max_tokens, 200);
        // Forgeries: another key, another contract, another kind.
        let other = ProxySigner::from_seed(&[6; 32]).expect("key");
        assert!(a
            .observe(&signed(&other, SignedKind::Charge, 500, &ours), None, None)
            .is_err());
        assert!(a
            .observe(
                &signed(&signer, SignedKind::Charge, 500, &addr(7)),
                None,
                None
            )
            .is_err());
        assert!(a
            .observe(&signed(&signer, SignedKind::Payout, 500, &ours), None, None)
            .is_err());
        // A refused message does not move the other numbers either.
        assert!(a
            .observe(
                &signed(&other, SignedKind::Charge, 500, &ours),
                Some(999),
                Some(999)
            )
            .is_err());
        let n = a.numbers();
        assert_eq!(
            (n.charge_tokens, n.db_tokens, n.max_tokens),
            (100, 150, 200)
        );
        a.observe(
            &signed(&signer, SignedKind::Charge, 300, &ours),
            Some(300),
            Some(400),
        )
        .expect("newer");
        assert_eq!(a.numbers().charge_tokens, 300);
        assert_eq!(a.json()["signed_charge_tokens"], 300);
    }
}
