//! The client's money rules (docs/PAYMENTS.md "Client money") as pure functions: given what the
//! client contract says and what the proxy has told us, what to do. Integer arithmetic in
//! nanoTON, saturating (a hostile proxy's huge numbers must not overflow into a wrong decision).
//!
//! What must not live here: I/O of any kind.

use cocoon_ton::contracts::state;

/// What the rules look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyInputs {
    /// Contract state (`state::NORMAL`, `CLOSING`, `CLOSED`).
    pub state: u8,
    /// Contract balance, nanoTON (paid and not yet charged on chain).
    pub balance: u128,
    /// Contract stake, nanoTON.
    pub stake: u128,
    /// Tokens charged on chain (`tokens_used`).
    pub used_on_chain: u64,
    /// The most tokens the proxy says we used (`max_tokens`, unsigned).
    pub proxy_max: u64,
    /// What we can check of our usage: tokens the proxy charged our own requests since this
    /// account was made, each at most its bound (`ProxyAccount::notice_charge`).
    pub noticed: u64,
    /// Tokens of the newest valid signed charge we hold (0: none).
    pub signed_charge: u64,
    /// nanoTON per adjusted token.
    pub price: u128,
}

/// What to do now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyActions {
    /// Top up by this many nanoTON.
    pub top_up: Option<u128>,
    /// Submit the signed charge for this many tokens.
    pub submit_charge: Option<u64>,
}

impl MoneyInputs {
    /// The usage money decisions count on: the proxy's `max_tokens`, but never more than what
    /// we can check — the larger of its signed charge and the on-chain count, plus what it
    /// charged our own requests since (review L8: a proxy reporting a huge unsigned number would
    /// otherwise make us top up one stake per poll until the wallet is empty). An honest
    /// proxy's number is below it as soon as its signed charge covers the history.
    pub fn usage(&self) -> u64 {
        let checked = self
            .signed_charge
            .max(self.used_on_chain)
            .saturating_add(self.noticed);
        self.proxy_max.min(checked)
    }

    /// Usage the proxy knows of that is not charged on chain yet, in nanoTON.
    pub fn unsettled_cost(&self) -> u128 {
        u128::from(self.usage().saturating_sub(self.used_on_chain)).saturating_mul(self.price)
    }
}

/// Top up by one stake when `balance − (usage − used_on_chain) × price < stake/2` (usage:
/// [`MoneyInputs::usage`]); submit the
/// latest signed charge when `(max − used_on_chain) × price > stake/2` and it moves the contract
/// forward (the contract refuses a non-increasing count). Nothing unless the contract is normal
/// (a closing contract's money goes back to us; topping it up would bounce at the proxy).
pub fn decide(i: &MoneyInputs) -> MoneyActions {
    if i.state != state::NORMAL {
        return MoneyActions::default();
    }
    let half = i.stake / 2;
    let unsettled = i.unsettled_cost();
    // balance − unsettled < half, without going negative.
    let low = i.balance < unsettled.saturating_add(half);
    let top_up = (low && i.stake > 0).then_some(i.stake);
    let submit_charge =
        (unsettled > half && i.signed_charge > i.used_on_chain).then_some(i.signed_charge);
    MoneyActions {
        top_up,
        submit_charge,
    }
}

/// What `cocoon client balance` shows for one contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceLine {
    pub balance: u128,
    pub stake: u128,
    pub used_tokens: u64,
    /// `used_tokens × price`.
    pub charged: u128,
    /// Proxy max − charged on chain (None when the proxy's numbers are unknown).
    pub pending_tokens: Option<u64>,
    pub pending: Option<u128>,
}

/// The balance view of one contract.
pub fn balance_line(
    balance: u128,
    stake: u128,
    used_tokens: u64,
    proxy_max: Option<u64>,
    price: u128,
) -> BalanceLine {
    let pending_tokens = proxy_max.map(|m| m.saturating_sub(used_tokens));
    BalanceLine {
        balance,
        stake,
        used_tokens,
        charged: u128::from(used_tokens).saturating_mul(price),
        pending_tokens,
        pending: pending_tokens.map(|t| u128::from(t).saturating_mul(price)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TON: u128 = 1_000_000_000;

    fn base() -> MoneyInputs {
        MoneyInputs {
            state: state::NORMAL,
            balance: TON,
            stake: TON,
            used_on_chain: 0,
            proxy_max: 0,
            // Everything the proxy says is backed by notices of our own requests.
            noticed: u64::MAX,
            signed_charge: 0,
            price: 1000,
        }
    }

    /// L8: a proxy reporting an unsigned usage far beyond what it signed and what it charged
    /// our requests does not make us top up; what it can back does.
    #[test]
    fn a_proxys_unsigned_usage_counts_only_as_far_as_we_can_check_it() {
        let lying = MoneyInputs {
            proxy_max: u64::MAX / 2,
            noticed: 100_000,
            signed_charge: 50_000,
            used_on_chain: 10_000,
            ..base()
        };
        assert_eq!(lying.usage(), 150_000);
        // 140k unsettled × 1000 = 0.14 TON: 1 − 0.14 ≥ 0.5 → no top-up, however big the claim.
        assert_eq!(decide(&lying).top_up, None);
        // What it backs with notices of our requests (or signs) counts.
        let backed = MoneyInputs {
            noticed: 600_000,
            ..lying
        };
        assert_eq!(decide(&backed).top_up, Some(TON));
        // An honest proxy's number below the check is taken as it is.
        let honest = MoneyInputs {
            proxy_max: 120_000,
            ..lying
        };
        assert_eq!(honest.usage(), 120_000);
    }

    #[test]
    fn fresh_funded_contract_does_nothing() {
        assert_eq!(decide(&base()), MoneyActions::default());
    }

    #[test]
    fn tops_up_one_stake_when_paid_minus_used_falls_under_half_a_stake() {
        // 400k tokens × 1000 = 0.4 TON unsettled: 1 − 0.4 = 0.6 ≥ 0.5 → nothing.
        let mut i = MoneyInputs {
            proxy_max: 400_000,
            ..base()
        };
        assert_eq!(decide(&i).top_up, None);
        // 600k tokens: 1 − 0.6 = 0.4 < 0.5 → one stake.
        i.proxy_max = 600_000;
        assert_eq!(decide(&i).top_up, Some(TON));
        // Exactly half left is not under half.
        i.proxy_max = 500_000;
        assert_eq!(decide(&i).top_up, None);
        // Usage beyond the whole balance (negative difference) still tops up, never overflows.
        i.proxy_max = u64::MAX;
        i.price = u128::MAX;
        assert_eq!(decide(&i).top_up, Some(TON));
        // A balance that is low by itself.
        let low = MoneyInputs {
            balance: TON / 4,
            ..base()
        };
        assert_eq!(decide(&low).top_up, Some(TON));
    }

    #[test]
    fn submits_the_signed_charge_when_unsettled_passes_half_a_stake() {
        let mut i = MoneyInputs {
            balance: 10 * TON,
            proxy_max: 500_000,
            signed_charge: 400_000,
            ..base()
        };
        // 0.5 TON unsettled is not more than half a stake.
        assert_eq!(decide(&i).submit_charge, None);
        i.proxy_max = 500_001;
        assert_eq!(decide(&i).submit_charge, Some(400_000));
        // A charge the chain already has (or less) is never submitted (the contract answers 1000).
        i.used_on_chain = 400_000;
        i.proxy_max = 1_000_000;
        assert_eq!(decide(&i).submit_charge, None);
        i.signed_charge = 900_000;
        assert_eq!(decide(&i).submit_charge, Some(900_000));
    }

    #[test]
    fn closing_or_closed_contracts_are_left_alone() {
        for st in [state::CLOSING, state::CLOSED] {
            let i = MoneyInputs {
                state: st,
                balance: 0,
                proxy_max: 10_000_000,
                signed_charge: 10_000_000,
                ..base()
            };
            assert_eq!(decide(&i), MoneyActions::default());
        }
    }

    #[test]
    fn balance_line_prices_charged_and_pending() {
        let l = balance_line(3 * TON, TON, 1_000, Some(1_500), 2_000);
        assert_eq!(l.charged, 2_000_000);
        assert_eq!(l.pending_tokens, Some(500));
        assert_eq!(l.pending, Some(1_000_000));
        // A proxy that knows less than the chain never makes pending negative.
        assert_eq!(balance_line(0, 0, 10, Some(5), 1).pending_tokens, Some(0));
        assert_eq!(balance_line(0, 0, 10, None, 1).pending, None);
    }
}
