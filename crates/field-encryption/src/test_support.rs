//! Test-only helpers shared by the unit tests: the fixed "randomness" upstream's vectors were made
//! with, and the keys they use. Nothing here is compiled outside `cfg(test)`.

use crate::SecretSeed;

/// App seed of the vectors (`encryption/app-seed.bin`).
pub(crate) const APP_SEED: [u8; 32] = *b"cocoon-interop-test-app-seed-001";
pub(crate) const APP_PUBLIC_HEX: &str =
    "44899fb27424156b3a88e3e7800cfd3378daef0df609ca47e309afd271dd80ef";
/// Upstream's fixed test key of the key manager (`BwrYLmEy…OmM=`).
pub(crate) const NETWORK_SEED_HEX: &str =
    "070ad82e6132dab32067fb720afd0060555a64f905bbec0dc2849088951b3a63";
pub(crate) const NETWORK_PUBLIC_HEX: &str =
    "fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818";

pub(crate) fn app_seed() -> SecretSeed {
    SecretSeed::from_bytes(APP_SEED)
}

pub(crate) fn network_seed() -> SecretSeed {
    SecretSeed::from_bytes(hex32(NETWORK_SEED_HEX))
}

pub(crate) fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

/// The randomness of `tools/make_enc_vectors.py`: the first request (the nonce) gets bytes
/// `first, first+1, …`; every later one (a prefix of P bytes) gets `0, 1, …, P−1`, of which the
/// encryptor overwrites byte 0 with P. So nonce = base64(bytes(range(first, first+32))) and every
/// prefix = `bytes([P]) + bytes(range(1, P))`, as in the vectors.
pub(crate) struct VectorRng {
    next_start: u8,
}

impl VectorRng {
    pub(crate) fn new(first: u8) -> Self {
        Self { next_start: first }
    }
}

impl rand::RngCore for VectorRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("the encryptor only calls fill_bytes")
    }

    fn next_u64(&mut self) -> u64 {
        unimplemented!("the encryptor only calls fill_bytes")
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.next_start.wrapping_add(i as u8);
        }
        self.next_start = 0;
    }
}

impl rand::CryptoRng for VectorRng {}
