//! Signed payments as they travel in `proxy.signedPayment data:bytes`: the standard BOC of the
//! signed message body (as Cocoon's `sign_and_wrap_message` produces), checked by whoever
//! receives one before it is kept or submitted.
//!
//! What must not live here: deciding what to sign (the proxy) or when to submit (client, worker).

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

#[cfg(test)]
mod tests {
    use super::*;

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
