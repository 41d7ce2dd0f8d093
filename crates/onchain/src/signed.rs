//! Signed payments as they travel in `proxy.signedPayment data:bytes`: the standard BOC of the
//! signed message body (as Cocoon's `sign_and_wrap_message` produces), checked by whoever
//! receives one before it is kept or submitted.
//!
//! What must not live here: deciding what to sign (the proxy) or when to submit (client, worker).

use std::collections::VecDeque;
use std::sync::Mutex;

use cocoon_ton::cells::{decode_boc, encode_boc};
use cocoon_ton::payments::{PaymentPayload, ProxySigner, SignedKind, SignedPayment};
use cocoon_ton::TonAddress;

/// Largest signed-payment BOC accepted (a real one is ~200 bytes).
pub const MAX_SIGNED_BOC: usize = 2048;

/// Why received signed-payment bytes were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    #[error("not a signed payment: {0}")]
    Malformed(String),
    #[error("signature does not verify with the proxy's key")]
    BadSignature,
    #[error("a {got:?} where a {want:?} was expected")]
    WrongKind { got: SignedKind, want: SignedKind },
    #[error("signed for {got}, not for our contract {want}")]
    WrongContract { got: String, want: String },
}

/// Signs `tokens` of `kind` for `contract`, wrapped with `send_excesses_to`, as BOC bytes.
pub fn sign_boc(
    signer: &ProxySigner,
    kind: SignedKind,
    tokens: u64,
    contract: &TonAddress,
    send_excesses_to: &TonAddress,
) -> Result<Vec<u8>, SignedError> {
    let payload = PaymentPayload {
        kind,
        query_id: 0,
        new_tokens: tokens,
        expected_address: *contract,
    };
    let signed = signer
        .sign(payload, *send_excesses_to)
        .map_err(|e| SignedError::Malformed(e.to_string()))?;
    let body = signed
        .to_body()
        .map_err(|e| SignedError::Malformed(e.to_string()))?;
    Ok(encode_boc(&body))
}

/// Decodes and checks received bytes: signature by `proxy_key`, `kind`, and `contract` as the
/// expected executor. Returns the parsed payment (its `payload.new_tokens` is the amount).
pub fn check_boc(
    data: &[u8],
    proxy_key: &[u8; 32],
    kind: SignedKind,
    contract: &TonAddress,
) -> Result<SignedPayment, SignedError> {
    let cell =
        decode_boc(data, MAX_SIGNED_BOC).map_err(|e| SignedError::Malformed(e.to_string()))?;
    let p = SignedPayment::from_body(&cell).map_err(|e| SignedError::Malformed(e.to_string()))?;
    if p.payload.kind != kind {
        return Err(SignedError::WrongKind {
            got: p.payload.kind,
            want: kind,
        });
    }
    if &p.payload.expected_address != contract {
        return Err(SignedError::WrongContract {
            got: p.payload.expected_address.to_bounceable(),
            want: contract.to_bounceable(),
        });
    }
    p.verify(proxy_key).map_err(|_| SignedError::BadSignature)?;
    Ok(p)
}

/// Signed payments already checked, so that the same bytes are verified once: a proxy
/// re-sends its latest signed payment with every message until it signs a new one, and an
/// Ed25519 verification per message was the largest cost of a request on a worker and on a
/// client (docs/BENCHMARKS.md). An entry answers only for identical bytes, key, kind and
/// contract — the answer [`check_boc`] would give, since the check is a function of those; only
/// successes are kept, at most [`CheckedPayments::REMEMBERED`].
#[derive(Debug, Default)]
pub struct CheckedPayments {
    recent: Mutex<VecDeque<Checked>>,
}

#[derive(Debug)]
struct Checked {
    data: Vec<u8>,
    key: [u8; 32],
    kind: SignedKind,
    contract: TonAddress,
    payment: SignedPayment,
}

impl CheckedPayments {
    /// How many checked payments are kept (one per proxy and kind in use is enough).
    pub const REMEMBERED: usize = 8;

    /// [`check_boc`], answered from memory when these exact bytes passed it before.
    pub fn check(
        &self,
        data: &[u8],
        proxy_key: &[u8; 32],
        kind: SignedKind,
        contract: &TonAddress,
    ) -> Result<SignedPayment, SignedError> {
        let same = |c: &Checked| {
            c.data == data && &c.key == proxy_key && c.kind == kind && &c.contract == contract
        };
        if let Ok(recent) = self.recent.lock() {
            if let Some(c) = recent.iter().find(|c| same(c)) {
                return Ok(c.payment.clone());
            }
        }
        let payment = check_boc(data, proxy_key, kind, contract)?;
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_front(Checked {
                data: data.to_vec(),
                key: *proxy_key,
                kind,
                contract: *contract,
                payment: payment.clone(),
            });
            recent.truncate(Self::REMEMBERED);
        }
        Ok(payment)
    }

    /// How many checked payments are held now.
    pub fn len(&self) -> usize {
        self.recent.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_check_answers_only_for_the_same_bytes_key_kind_and_contract() {
        let signer = ProxySigner::from_seed(&[7; 32]).unwrap();
        let key = signer.public_key();
        let (me, other) = (addr(1), addr(3));
        let boc = sign_boc(&signer, SignedKind::Payout, 42, &me, &addr(2)).unwrap();
        let checked = CheckedPayments::default();
        let first = checked.check(&boc, &key, SignedKind::Payout, &me).unwrap();
        assert_eq!(checked.len(), 1);
        assert_eq!(
            checked.check(&boc, &key, SignedKind::Payout, &me).unwrap(),
            first
        );
        assert_eq!(checked.len(), 1, "answered from memory");
        // The same bytes for another contract, kind or key are refused as check_boc refuses them.
        assert!(checked
            .check(&boc, &key, SignedKind::Payout, &other)
            .is_err());
        assert!(checked.check(&boc, &key, SignedKind::Charge, &me).is_err());
        assert!(checked
            .check(&boc, &[9; 32], SignedKind::Payout, &me)
            .is_err());
        // A forged copy (one signature bit flipped) is checked afresh and refused.
        let mut forged = boc.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(checked
            .check(&forged, &key, SignedKind::Payout, &me)
            .is_err());
        assert_eq!(checked.len(), 1, "failures are not kept");
        // At most REMEMBERED are kept, newest first.
        for t in 0..20u64 {
            let b = sign_boc(&signer, SignedKind::Payout, 100 + t, &me, &addr(2)).unwrap();
            checked.check(&b, &key, SignedKind::Payout, &me).unwrap();
        }
        assert_eq!(checked.len(), CheckedPayments::REMEMBERED);
    }

    fn addr(b: u8) -> TonAddress {
        format!("0:{}", hex::encode([b; 32])).parse().unwrap()
    }

    #[test]
    fn signed_bytes_round_trip_and_every_forgery_is_refused() {
        let signer = ProxySigner::from_seed(&[7; 32]).unwrap();
        let key = signer.public_key();
        let contract = addr(1);
        let boc = sign_boc(&signer, SignedKind::Charge, 42, &contract, &addr(2)).unwrap();
        let p = check_boc(&boc, &key, SignedKind::Charge, &contract).unwrap();
        assert_eq!(p.payload.new_tokens, 42);
        // Another proxy's key.
        let other = ProxySigner::from_seed(&[8; 32]).unwrap().public_key();
        assert!(matches!(
            check_boc(&boc, &other, SignedKind::Charge, &contract),
            Err(SignedError::BadSignature)
        ));
        // Another contract, another kind.
        assert!(matches!(
            check_boc(&boc, &key, SignedKind::Charge, &addr(3)),
            Err(SignedError::WrongContract { .. })
        ));
        assert!(matches!(
            check_boc(&boc, &key, SignedKind::Payout, &contract),
            Err(SignedError::WrongKind { .. })
        ));
        // Garbage and truncation.
        assert!(check_boc(b"garbage", &key, SignedKind::Charge, &contract).is_err());
        assert!(check_boc(&boc[..boc.len() / 2], &key, SignedKind::Charge, &contract).is_err());
        // A re-wrapped body still verifies (the signature covers the payload only).
        let cell = decode_boc(&boc, MAX_SIGNED_BOC).unwrap();
        let rewrapped = SignedPayment::from_body(&cell).unwrap().rewrap(addr(9));
        let boc2 = encode_boc(&rewrapped.to_body().unwrap());
        assert!(check_boc(&boc2, &key, SignedKind::Charge, &contract).is_ok());
    }
}
