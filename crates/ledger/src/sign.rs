//! Row signing: the canonical, length-prefixed encoding of a row and Ed25519 over it.
//!
//! Every stored row is signed over `DOMAIN ‖ table ‖ fields…`, each item written as `tag:u8 ‖ len:u32 BE ‖ bytes`
//! (integers big-endian, fixed width). The table name and the primary key are part of the signed bytes, so a
//! row cannot be moved to another key or table, and the length prefixes stop bytes from sliding between
//! fields. Ed25519 is ring's (deterministic RFC 8032, the same keys and signatures as ed25519-dalek's
//! `SigningKey::from_bytes(seed)`); ring is already a workspace dependency. No other module touches keys.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::error::LedgerError;

/// Domain separation: these signatures can never be confused with payment or handshake signatures.
const DOMAIN: &[u8] = b"cocoon-ledger-row/v1";

const TAG_TABLE: u8 = 0;
const TAG_U64: u8 = 1;
const TAG_U128: u8 = 2;
const TAG_BYTES: u8 = 3;
const TAG_STR: u8 = 4;

/// Builds the canonical bytes of one row.
pub(crate) struct RowBytes {
    buf: Vec<u8>,
}

impl RowBytes {
    /// Starts a row of `table`.
    pub(crate) fn new(table: &str) -> Self {
        let mut row = RowBytes {
            buf: Vec::with_capacity(256),
        };
        row.buf.extend_from_slice(DOMAIN);
        row.item(TAG_TABLE, table.as_bytes());
        row
    }

    fn item(&mut self, tag: u8, bytes: &[u8]) {
        self.buf.push(tag);
        // Every item is bounded far below 4 GiB (owner/address ≤ 128 bytes, keys 32), so the cast cannot
        // truncate; saturate anyway rather than panic.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.item(TAG_U64, &v.to_be_bytes());
        self
    }

    pub(crate) fn u128(mut self, v: u128) -> Self {
        self.item(TAG_U128, &v.to_be_bytes());
        self
    }

    pub(crate) fn bytes(mut self, v: &[u8]) -> Self {
        self.item(TAG_BYTES, v);
        self
    }

    pub(crate) fn str(mut self, v: &str) -> Self {
        self.item(TAG_STR, v.as_bytes());
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Signs rows with the proxy key.
pub(crate) struct Signer {
    pair: Ed25519KeyPair,
}

impl Signer {
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Result<Self, LedgerError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| LedgerError::Setup(format!("signing seed rejected: {e}")))?;
        Ok(Signer { pair })
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        pk
    }

    pub(crate) fn sign(&self, row: &[u8]) -> Vec<u8> {
        self.pair.sign(row).as_ref().to_vec()
    }
}

/// Checks row signatures against a public key (no secret needed: the inspector uses this alone).
pub(crate) struct Verifier {
    public_key: [u8; 32],
}

impl Verifier {
    pub(crate) fn new(public_key: [u8; 32]) -> Self {
        Verifier { public_key }
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    pub(crate) fn verify(&self, row: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(row, sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_separates_fields() {
        let a = RowBytes::new("t").str("ab").str("c").finish();
        let b = RowBytes::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
        let c = RowBytes::new("accounts").u64(1).finish();
        let d = RowBytes::new("anchors").u64(1).finish();
        assert_ne!(c, d);
    }

    #[test]
    fn golden_encoding() {
        let row = RowBytes::new("m").u64(7).bytes(&[0xaa]).finish();
        let mut want = DOMAIN.to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 1, b'm']);
        want.extend_from_slice(&[1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[3, 0, 0, 0, 1, 0xaa]);
        assert_eq!(row, want);
    }

    #[test]
    fn sign_verify_and_reject() {
        let signer = Signer::from_seed(&[7u8; 32]).unwrap();
        let verifier = Verifier::new(signer.public_key());
        let row = RowBytes::new("accounts").str("owner").u64(10).finish();
        let sig = signer.sign(&row);
        assert!(verifier.verify(&row, &sig));
        let other = RowBytes::new("accounts").str("owner").u64(11).finish();
        assert!(!verifier.verify(&other, &sig));
        let wrong = Verifier::new(Signer::from_seed(&[8u8; 32]).unwrap().public_key());
        assert!(!wrong.verify(&row, &sig));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: secret key 9d61b1…7f60, public key d75a98…511a, empty message.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let signer = Signer::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(signer.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(signer.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
