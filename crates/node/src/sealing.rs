//! [`SealingKeyRing`]: the X25519 key pairs a worker binds into its RA-TLS certificates, so
//! clients can seal requests that only this worker's attested image can open.
//!
//! Each certificate generation ([`crate::rotation`]) draws a fresh pair and puts the public half
//! into the certificate; the pair is held until that certificate expires (plus [`GRACE`], for a
//! request sealed just before), because sessions opened with an older certificate keep it and
//! clients keep sealing to the key it names. Secrets live only in memory, are zeroized when
//! dropped, and are never logged or written anywhere.
//!
//! [`IdentitySigner`] signs receipts with an RA-TLS identity's key (workers and proxies).
//!
//! Not here: the envelope format and HPKE (`cocoon-sealed`), certificate layout (`cocoon-ratls`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use cocoon_ratls::RaTlsIdentity;
use cocoon_sealed::SealingKeyPair;

/// How long a pair outlives the certificate that named it.
pub const GRACE: Duration = Duration::from_secs(300);
/// Most pairs held at once (a certificate rotates at 2/3 of its life, so two or three are live;
/// the bound only matters if rotation misbehaves).
pub const MAX_HELD: usize = 16;

struct Held {
    pair: SealingKeyPair,
    /// The certificate that names this pair (set by [`SealingKeyRing::bind`] once it exists):
    /// the worker identity clients seal to, and the key its receipts are signed with.
    identity: Option<RaTlsIdentity>,
    until: SystemTime,
}

/// One held pair, as the worker uses it to open a request.
pub struct HeldKey {
    /// The RA-TLS identity (certificate and Ed25519 key) that binds this pair.
    pub identity: RaTlsIdentity,
    /// The X25519 pair (its secret zeroized on drop).
    pub pair: SealingKeyPair,
}

/// The worker's sealing key pairs, newest last.
#[derive(Default)]
pub struct SealingKeyRing {
    held: Mutex<Vec<Held>>,
}

impl std::fmt::Debug for SealingKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.held.lock().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("SealingKeyRing")
            .field("held", &held)
            .finish()
    }
}

impl SealingKeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws a fresh pair, held until `cert_not_after + GRACE`; returns its public half.
    pub fn fresh(&self, cert_not_after: SystemTime) -> [u8; 32] {
        let pair = SealingKeyPair::generate();
        let public = pair.public();
        let until = cert_not_after.checked_add(GRACE).unwrap_or(cert_not_after);
        if let Ok(mut held) = self.held.lock() {
            held.push(Held {
                pair,
                identity: None,
                until,
            });
            let excess = held.len().saturating_sub(MAX_HELD);
            held.drain(..excess);
        }
        public
    }

    /// The public halves still held at `now`, newest first (expired pairs are dropped here).
    pub fn publics(&self, now: SystemTime) -> Vec<[u8; 32]> {
        let Ok(mut held) = self.held.lock() else {
            return Vec::new();
        };
        held.retain(|h| h.until > now);
        held.iter().rev().map(|h| h.pair.public()).collect()
    }

    /// Records that `identity`'s certificate binds the pair it names (its sealing key).
    pub fn bind(&self, identity: &RaTlsIdentity) {
        let Some(public) = identity.sealing_key() else {
            return;
        };
        if let Ok(mut held) = self.held.lock() {
            if let Some(h) = held.iter_mut().find(|h| h.pair.public() == public) {
                h.identity = Some(identity.clone());
            }
        }
    }

    /// The pairs still held at `now` whose certificate exists, newest first.
    pub fn held(&self, now: SystemTime) -> Vec<HeldKey> {
        let Ok(mut held) = self.held.lock() else {
            return Vec::new();
        };
        held.retain(|h| h.until > now);
        held.iter()
            .rev()
            .filter_map(|h| {
                Some(HeldKey {
                    identity: h.identity.clone()?,
                    pair: h.pair.clone(),
                })
            })
            .collect()
    }

    /// How many pairs are held (stats).
    pub fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signs receipts with an RA-TLS identity's Ed25519 key (the key its evidence commits to).
pub struct IdentitySigner(pub RaTlsIdentity);

impl cocoon_sealed::receipt::Signer for IdentitySigner {
    fn public_key(&self) -> [u8; 32] {
        self.0.public_key()
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        // Ed25519 signing with a loaded key does not fail; a zero signature would be refused by
        // every verifier rather than accepted.
        self.0.sign(msg).unwrap_or([0; 64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_ratls::CertOptions;

    #[test]
    fn keys_are_held_until_their_certificate_ends_plus_grace() {
        let ring = SealingKeyRing::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = ring.fresh(t0 + Duration::from_secs(60));
        let b = ring.fresh(t0 + Duration::from_secs(600));
        assert_ne!(a, b);
        assert_eq!(ring.publics(t0), vec![b, a]);
        // a's certificate ended, its grace too: only b remains.
        let later = ring.publics(t0 + Duration::from_secs(60) + GRACE + Duration::from_secs(1));
        assert_eq!(later, vec![b]);
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn only_pairs_bound_to_a_certificate_open_requests() {
        let ring = SealingKeyRing::new();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64);
        let a = ring.fresh(far);
        let b = ring.fresh(far);
        assert!(ring.held(SystemTime::UNIX_EPOCH).is_empty());
        let identity = |key| {
            RaTlsIdentity::generate_with(
                &cocoon_attest::NoEvidence,
                &CertOptions {
                    sealing_key: Some(key),
                    ..CertOptions::new(Duration::from_secs(60))
                },
            )
            .unwrap()
        };
        let (ia, ib) = (identity(a), identity(b));
        ring.bind(&ia);
        let held = ring.held(SystemTime::UNIX_EPOCH);
        assert_eq!(held.len(), 1);
        assert_eq!(
            (held[0].identity.public_key(), held[0].pair.public()),
            (ia.public_key(), a)
        );
        ring.bind(&ib);
        let ids: Vec<_> = ring
            .held(SystemTime::UNIX_EPOCH)
            .iter()
            .map(|h| h.identity.public_key())
            .collect();
        assert_eq!(ids, vec![ib.public_key(), ia.public_key()]);
    }

    #[test]
    fn ring_is_bounded() {
        let ring = SealingKeyRing::new();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64);
        let keys: Vec<_> = (0..MAX_HELD + 5).map(|_| ring.fresh(far)).collect();
        assert_eq!(ring.len(), MAX_HELD);
        let held = ring.publics(SystemTime::UNIX_EPOCH);
        assert_eq!(held[0], *keys.last().unwrap());
    }
}
