//! Proxy-signed payment messages (cocoon-notes §4.4, docs/CONTRACTS.md "Proxy-signed messages").
//!
//! ```text
//! body    = op:uint32 query_id:uint64 send_excesses_to:MsgAddressInt signature:bits512 ^payload
//! payload = op:uint32 query_id:uint64 new_tokens:uint64 expected_my_address:MsgAddressInt  (tokens ops)
//! payload = op:uint32 query_id:uint64 expected_my_address:MsgAddressInt                    (proxy close ops)
//! ```
//! The signature is Ed25519 by the proxy key over the payload cell's representation hash. Anyone may
//! submit (and re-wrap with its own `send_excesses_to`, see [`SignedPayment::rewrap`]).
//!
//! What lives here: building, signing, parsing and verifying these cells. What must not: deciding what to
//! sign (the proxy's ledger does that) or key storage.

use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use tycho_types::cell::{Cell, CellBuilder};

use crate::address::TonAddress;
use crate::cells::{self, load_addr, store_addr, CellError};
use crate::contracts::op;

/// What a signed message orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedKind {
    /// Client contract: cumulative tokens used.
    Charge,
    /// Client contract: final tokens, then refund the rest and close.
    GrantRefund,
    /// Worker contract: cumulative tokens earned.
    Payout,
    /// Worker contract: final tokens, then close.
    LastPayout,
    /// Proxy contract: start closing.
    ProxyClose,
    /// Proxy contract: finish closing.
    ProxyCloseComplete,
}

impl SignedKind {
    /// The op code (same in envelope and payload).
    pub fn op(self) -> u32 {
        match self {
            Self::Charge => op::CLIENT_CHARGE_SIGNED,
            Self::GrantRefund => op::CLIENT_GRANT_REFUND_SIGNED,
            Self::Payout => op::WORKER_PAYOUT_SIGNED,
            Self::LastPayout => op::WORKER_LAST_PAYOUT_SIGNED,
            Self::ProxyClose => op::PROXY_CLOSE_SIGNED,
            Self::ProxyCloseComplete => op::PROXY_CLOSE_COMPLETE_SIGNED,
        }
    }

    /// Inverse of [`SignedKind::op`].
    pub fn from_op(op: u32) -> Option<Self> {
        [
            Self::Charge,
            Self::GrantRefund,
            Self::Payout,
            Self::LastPayout,
            Self::ProxyClose,
            Self::ProxyCloseComplete,
        ]
        .into_iter()
        .find(|k| k.op() == op)
    }

    /// Whether the payload carries `new_tokens`.
    pub fn has_tokens(self) -> bool {
        !matches!(self, Self::ProxyClose | Self::ProxyCloseComplete)
    }
}

/// The signed part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentPayload {
    pub kind: SignedKind,
    pub query_id: u64,
    /// Cumulative tokens (0 and absent from the cell for the proxy close ops).
    pub new_tokens: u64,
    /// The contract that must execute it.
    pub expected_address: TonAddress,
}

impl PaymentPayload {
    /// The payload cell.
    pub fn to_cell(&self) -> Result<Cell, CellError> {
        let mut b = CellBuilder::new();
        b.store_u32(self.kind.op())?;
        b.store_u64(self.query_id)?;
        if self.kind.has_tokens() {
            b.store_u64(self.new_tokens)?;
        }
        store_addr(&mut b, &self.expected_address)?;
        Ok(b.build()?)
    }

    /// Parses a payload cell (strict).
    pub fn from_cell(c: &Cell) -> Result<Self, CellError> {
        let mut s = c.as_slice()?;
        let kind = SignedKind::from_op(s.load_u32()?).ok_or(CellError::Unexpected("signed op"))?;
        let query_id = s.load_u64()?;
        let new_tokens = if kind.has_tokens() { s.load_u64()? } else { 0 };
        let expected_address = load_addr(&mut s)?;
        cells::expect_end(&s)?;
        Ok(Self {
            kind,
            query_id,
            new_tokens,
            expected_address,
        })
    }
}

/// Errors of signing and verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    #[error("cell: {0}")]
    Cell(#[from] CellError),
    #[error("bad Ed25519 key")]
    Key,
    #[error("signature does not verify")]
    BadSignature,
    #[error("envelope and payload disagree on op or query id")]
    Mismatch,
}

/// The proxy's signing key (Ed25519, from a 32-byte seed).
pub struct ProxySigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for ProxySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "ProxySigner({})", hex::encode(self.public_key()))
    }
}

impl ProxySigner {
    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, PaymentError> {
        Ok(Self {
            key: Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| PaymentError::Key)?,
        })
    }

    /// The public key the contracts store.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// Ed25519 over a cell's representation hash: what every `..._signed` op checks. Also used with the
    /// key manager's key (`root_add_public_key_signed`).
    pub fn sign_cell(&self, cell: &Cell) -> [u8; 64] {
        let sig = self.key.sign(cell.repr_hash().as_slice());
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        signature
    }

    /// Signs `payload` and wraps it with `send_excesses_to`.
    pub fn sign(
        &self,
        payload: PaymentPayload,
        send_excesses_to: TonAddress,
    ) -> Result<SignedPayment, PaymentError> {
        let cell = payload.to_cell()?;
        let signature = self.sign_cell(&cell);
        Ok(SignedPayment {
            payload,
            payload_cell: cell,
            signature,
            send_excesses_to,
        })
    }
}

/// A signed envelope, ready to be the body of a message to `payload.expected_address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayment {
    pub payload: PaymentPayload,
    /// The payload exactly as signed.
    pub payload_cell: Cell,
    pub signature: [u8; 64],
    pub send_excesses_to: TonAddress,
}

impl SignedPayment {
    /// The message body.
    pub fn to_body(&self) -> Result<Cell, CellError> {
        let mut b = CellBuilder::new();
        b.store_u32(self.payload.kind.op())?;
        b.store_u64(self.payload.query_id)?;
        store_addr(&mut b, &self.send_excesses_to)?;
        b.store_raw(&self.signature, 512)?;
        b.store_reference(self.payload_cell.clone())?;
        Ok(b.build()?)
    }

    /// Parses a body; checks that envelope and payload agree (the contracts' 1005), not the signature.
    pub fn from_body(body: &Cell) -> Result<Self, PaymentError> {
        let mut s = body.as_slice().map_err(CellError::from)?;
        let op_code = s.load_u32().map_err(CellError::from)?;
        let query_id = s.load_u64().map_err(CellError::from)?;
        let send_excesses_to = load_addr(&mut s)?;
        let mut signature = [0u8; 64];
        s.load_raw(&mut signature, 512).map_err(CellError::from)?;
        let payload_cell = s.load_reference_cloned().map_err(CellError::from)?;
        cells::expect_end(&s)?;
        let payload = PaymentPayload::from_cell(&payload_cell)?;
        if payload.kind.op() != op_code || payload.query_id != query_id {
            return Err(PaymentError::Mismatch);
        }
        Ok(Self {
            payload,
            payload_cell,
            signature,
            send_excesses_to,
        })
    }

    /// Verifies the proxy's signature over the payload hash.
    pub fn verify(&self, proxy_public_key: &[u8; 32]) -> Result<(), PaymentError> {
        UnparsedPublicKey::new(&ED25519, proxy_public_key)
            .verify(self.payload_cell.repr_hash().as_slice(), &self.signature)
            .map_err(|_| PaymentError::BadSignature)
    }

    /// The same signed payload with a different `send_excesses_to` (the submitter's).
    pub fn rewrap(&self, send_excesses_to: TonAddress) -> Self {
        Self {
            send_excesses_to,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> ProxySigner {
        ProxySigner::from_seed(&[9; 32]).unwrap()
    }

    fn payload(tokens: u64) -> PaymentPayload {
        PaymentPayload {
            kind: SignedKind::Charge,
            query_id: 77,
            new_tokens: tokens,
            expected_address: TonAddress::new(0, [1; 32]),
        }
    }

    #[test]
    fn signature_made_here_verifies_and_round_trips() {
        let s = signer();
        let p = s.sign(payload(1000), TonAddress::new(0, [2; 32])).unwrap();
        p.verify(&s.public_key()).unwrap();
        let body = p.to_body().unwrap();
        let back = SignedPayment::from_body(&body).unwrap();
        assert_eq!(back, p);
        back.verify(&s.public_key()).unwrap();
        // Re-wrapping keeps the signature valid.
        let r = back.rewrap(TonAddress::new(0, [3; 32]));
        r.verify(&s.public_key()).unwrap();
        assert_ne!(r.to_body().unwrap(), body);
    }

    #[test]
    fn tampered_amount_does_not_verify() {
        let s = signer();
        let mut p = s.sign(payload(1000), TonAddress::new(0, [2; 32])).unwrap();
        p.payload.new_tokens = 1_000_000;
        p.payload_cell = p.payload.to_cell().unwrap();
        assert!(matches!(
            p.verify(&s.public_key()),
            Err(PaymentError::BadSignature)
        ));
        let other = ProxySigner::from_seed(&[8; 32]).unwrap();
        let q = s.sign(payload(5), TonAddress::new(0, [2; 32])).unwrap();
        assert!(matches!(
            q.verify(&other.public_key()),
            Err(PaymentError::BadSignature)
        ));
    }

    #[test]
    fn close_payload_has_no_tokens() {
        let p = PaymentPayload {
            kind: SignedKind::ProxyClose,
            query_id: 5,
            new_tokens: 0,
            expected_address: TonAddress::new(0, [4; 32]),
        };
        let c = p.to_cell().unwrap();
        assert_eq!(c.bit_len(), 32 + 64 + 267);
        assert_eq!(PaymentPayload::from_cell(&c).unwrap(), p);
    }

    #[test]
    fn mismatched_envelope_is_rejected() {
        let s = signer();
        let p = s.sign(payload(10), TonAddress::new(0, [2; 32])).unwrap();
        let mut b = CellBuilder::new();
        b.store_u32(op::CLIENT_CHARGE_SIGNED).unwrap();
        b.store_u64(78).unwrap(); // query id differs from the payload's 77
        store_addr(&mut b, &p.send_excesses_to).unwrap();
        b.store_raw(&p.signature, 512).unwrap();
        b.store_reference(p.payload_cell.clone()).unwrap();
        let body = b.build().unwrap();
        assert!(matches!(
            SignedPayment::from_body(&body),
            Err(PaymentError::Mismatch)
        ));
    }
}
