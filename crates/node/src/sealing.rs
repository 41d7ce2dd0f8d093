//! [`SealingKeyRing`]: the X25519 key pairs a worker binds into its RA-TLS certificates, so
//! clients can seal requests that only this worker's attested image can open.
//!
//! Each certificate generation ([`crate::rotation`]) draws a fresh pair and puts the public half
//! into the certificate; the pair is held until that certificate expires (plus [`GRACE`], for a
//! request sealed just before), because sessions opened with an older certificate keep it and
//! clients keep sealing to the key it names. Secrets live only in memory, are zeroized when
//! dropped, and are never logged or written anywhere.
//!
//! Not here: the envelope format and HPKE (`cocoon-sealed`), certificate layout (`cocoon-ratls`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use cocoon_ratls::RaTlsIdentity;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::RngCore;
use zeroize::Zeroizing;

/// How long a pair outlives the certificate that named it.
pub const GRACE: Duration = Duration::from_secs(300);
/// Most pairs held at once (a certificate rotates at 2/3 of its life, so two or three are live;
/// the bound only matters if rotation misbehaves).
pub const MAX_HELD: usize = 16;

/// One X25519 secret (32 bytes, as HPKE's DHKEM(X25519) takes it).
pub type SealingSecret = Zeroizing<[u8; 32]>;

struct Held {
    secret: SealingSecret,
    public: [u8; 32],
    /// The certificate that names this pair (set by [`SealingKeyRing::bind`] once it exists):
    /// the worker identity clients seal to, and the key its receipts are signed with.
    identity: Option<RaTlsIdentity>,
    until: SystemTime,
}

/// One held pair, as the worker uses it to open a request.
pub struct HeldKey {
    /// The RA-TLS identity (certificate and Ed25519 key) that binds this pair.
    pub identity: RaTlsIdentity,
    /// The X25519 public half.
    pub public: [u8; 32],
    pub secret: SealingSecret,
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

/// The X25519 public key of `secret`.
pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

impl SealingKeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws a fresh pair, held until `cert_not_after + GRACE`; returns its public half.
    pub fn fresh(&self, cert_not_after: SystemTime) -> [u8; 32] {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(secret.as_mut());
        let public = public_of(&secret);
        let until = cert_not_after.checked_add(GRACE).unwrap_or(cert_not_after);
        if let Ok(mut held) = self.held.lock() {
            held.push(Held {
                secret,
                public,
                identity: None,
                until,
            });
            let excess = held.len().saturating_sub(MAX_HELD);
            held.drain(..excess);
        }
        public
    }

    /// The secrets still held at `now`, newest first (expired ones are dropped here), each with
    /// its public half.
    pub fn secrets(&self, now: SystemTime) -> Vec<([u8; 32], SealingSecret)> {
        let Ok(mut held) = self.held.lock() else {
            return Vec::new();
        };
        held.retain(|h| h.until > now);
        held.iter()
            .rev()
            .map(|h| (h.public, h.secret.clone()))
            .collect()
    }

    /// Records that `identity`'s certificate binds the pair it names (its sealing key).
    pub fn bind(&self, identity: &RaTlsIdentity) {
        let Some(public) = identity.sealing_key() else {
            return;
        };
        if let Ok(mut held) = self.held.lock() {
            if let Some(h) = held.iter_mut().find(|h| h.public == public) {
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
                    public: h.public,
                    secret: h.secret.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_ratls::CertOptions;

    #[test]
    fn public_half_is_x25519_of_the_secret() {
        // RFC 7748 §6.1: Alice's private key and public key.
        let secret: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            hex::encode(public_of(&secret)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn keys_are_held_until_their_certificate_ends_plus_grace() {
        let ring = SealingKeyRing::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = ring.fresh(t0 + Duration::from_secs(60));
        let b = ring.fresh(t0 + Duration::from_secs(600));
        assert_ne!(a, b);
        let now = ring.secrets(t0);
        assert_eq!(now.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(public_of(&now[0].1), b);
        // a's certificate ended, its grace too: only b remains.
        let later = ring.secrets(t0 + Duration::from_secs(60) + GRACE + Duration::from_secs(1));
        assert_eq!(later.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![b]);
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
            (held[0].identity.public_key(), held[0].public),
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
        let held = ring.secrets(SystemTime::UNIX_EPOCH);
        assert_eq!(held[0].0, *keys.last().unwrap());
    }
}
