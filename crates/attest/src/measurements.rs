//! TD measurement registers and Cocoon's image hashes: over TDX registers, and over an SEV-SNP
//! launch measurement ([`sev_image_hash`]).
//!
//! Cocoon's `AttestationData::image_hash` is SHA-256 of `td::serialize(TdxAttestationData)` with
//! the report data zeroed: MRTD ‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG ‖ RTMR0..3 (48 bytes each)
//! ‖ 64 zero bytes = 448 bytes. It must stay byte-identical: root contracts allowlist these hashes.
//! (It does not cover TD attributes such as the debug bit; a hardware verifier must check those
//! separately, see cocoon-notes §11.)

use sha2::{Digest, Sha256};

/// Length of one TDX measurement register (SHA-384).
pub const MEASUREMENT_LEN: usize = 48;

/// The image hash of all-zero measurements, i.e. of every insecure-software (fake TDX) peer.
/// Equals the reference `fake_tdx_image_hash.b64` (`XFXI9NtAELqSA9g1NtBgmFavjIR6wDnjfn3ej71XS2E=`).
pub const INSECURE_SOFTWARE_IMAGE_HASH: [u8; 32] = [
    0x5c, 0x55, 0xc8, 0xf4, 0xdb, 0x40, 0x10, 0xba, 0x92, 0x03, 0xd8, 0x35, 0x36, 0xd0, 0x60, 0x98,
    0x56, 0xaf, 0x8c, 0x84, 0x7a, 0xc0, 0x39, 0xe3, 0x7e, 0x7d, 0xde, 0x8f, 0xbd, 0x57, 0x4b, 0x61,
];

/// The image hash of every fake SEV-SNP peer (all-zero measurement): Cocoon 9060ce5's
/// `fake_tee_image_hash.b64` from an AMD host, `tf2reNiUfqzIZL/uy00hAHgOWv4c2O+vsSSIeROsSfo=`.
pub const INSECURE_SOFTWARE_SEV_IMAGE_HASH: [u8; 32] = [
    0xb5, 0xfd, 0xab, 0x78, 0xd8, 0x94, 0x7e, 0xac, 0xc8, 0x64, 0xbf, 0xee, 0xcb, 0x4d, 0x21, 0x00,
    0x78, 0x0e, 0x5a, 0xfe, 0x1c, 0xd8, 0xef, 0xaf, 0xb1, 0x24, 0x88, 0x79, 0x13, 0xac, 0x49, 0xfa,
];

/// Cocoon's image hash of an SEV-SNP guest: `SHA-256(MEASUREMENT ‖ 0^64)` (112 bytes).
///
/// Cocoon 9060ce5 (`tee/cocoon/sev/RATLS.cpp`, `sev::image_hash`) hashes `td::serialize` of its
/// `sev::RATLSAttestationReport { UInt384 measurement; UInt512 reportdata; }` with the report data
/// zeroed, exactly as the TDX hash zeroes it after the registers. Nothing else of the report
/// (guest policy, TCB, host data, family/image id) is covered; the SEV-SNP verifier checks the
/// guest policy separately.
pub fn sev_image_hash(measurement: &[u8; 48]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(measurement);
    h.update([0u8; 64]);
    h.finalize().into()
}

/// The measurement registers of a trust domain that the image hash covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdMeasurements {
    /// Measurement of the initial TD contents (firmware).
    pub mrtd: [u8; MEASUREMENT_LEN],
    /// Software-defined configuration id.
    pub mrconfigid: [u8; MEASUREMENT_LEN],
    /// TD owner id.
    pub mrowner: [u8; MEASUREMENT_LEN],
    /// Owner-defined configuration.
    pub mrownerconfig: [u8; MEASUREMENT_LEN],
    /// Runtime measurement registers 0..3 (kernel, initrd+cmdline, Cocoon spec, ...).
    pub rtmr: [[u8; MEASUREMENT_LEN]; 4],
}

impl TdMeasurements {
    /// All registers zero: what insecure software attestation reports.
    pub const ZERO: Self = Self {
        mrtd: [0; MEASUREMENT_LEN],
        mrconfigid: [0; MEASUREMENT_LEN],
        mrowner: [0; MEASUREMENT_LEN],
        mrownerconfig: [0; MEASUREMENT_LEN],
        rtmr: [[0; MEASUREMENT_LEN]; 4],
    };

    /// Cocoon's image hash of these measurements.
    pub fn image_hash(&self) -> [u8; 32] {
        let [r0, r1, r2, r3] = &self.rtmr;
        image_hash_from_measurements(
            &self.mrtd,
            &self.mrconfigid,
            &self.mrowner,
            &self.mrownerconfig,
            [r0, r1, r2, r3],
        )
    }
}

/// Cocoon's image hash: `SHA-256(MRTD‖MRCONFIGID‖MROWNER‖MROWNERCONFIG‖RTMR0..3‖0^64)` (448 bytes).
pub fn image_hash_from_measurements(
    mrtd: &[u8; 48],
    mrconfigid: &[u8; 48],
    mrowner: &[u8; 48],
    mrownerconfig: &[u8; 48],
    rtmr: [&[u8; 48]; 4],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(mrtd);
    h.update(mrconfigid);
    h.update(mrowner);
    h.update(mrownerconfig);
    for r in rtmr {
        h.update(r);
    }
    // The zeroed 64-byte report data that Cocoon serializes after the registers.
    h.update([0u8; 64]);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    /// Copied from testdata/cocoon-reference/ra-tls/fake_tdx_image_hash.b64.
    const REFERENCE_B64: &str = include_str!("../tests/data/fake_tdx_image_hash.b64");

    #[test]
    fn zero_measurements_give_the_reference_fake_tdx_image_hash() {
        let want = base64::engine::general_purpose::STANDARD
            .decode(REFERENCE_B64.trim())
            .unwrap();
        assert_eq!(TdMeasurements::ZERO.image_hash().to_vec(), want);
        assert_eq!(INSECURE_SOFTWARE_IMAGE_HASH.to_vec(), want);
        assert_eq!(
            hex::encode(INSECURE_SOFTWARE_IMAGE_HASH),
            "5c55c8f4db4010ba9203d83536d0609856af8c847ac039e37e7dde8fbd574b61"
        );
    }

    #[test]
    fn zero_sev_measurement_gives_the_reference_fake_sev_image_hash() {
        // Copied from testdata/cocoon-9060ce5/ra-tls/fake_tee_image_hash.b64 (AMD host).
        let want = base64::engine::general_purpose::STANDARD
            .decode(include_str!("../tests/data/fake_sev_image_hash.b64").trim())
            .unwrap();
        assert_eq!(sev_image_hash(&[0; 48]).to_vec(), want);
        assert_eq!(INSECURE_SOFTWARE_SEV_IMAGE_HASH.to_vec(), want);
        let mut buf = [0u8; 112];
        buf[..48].copy_from_slice(&[7; 48]);
        assert_eq!(
            sev_image_hash(&[7; 48]),
            <[u8; 32]>::from(Sha256::digest(buf))
        );
        assert_ne!(
            INSECURE_SOFTWARE_SEV_IMAGE_HASH,
            INSECURE_SOFTWARE_IMAGE_HASH
        );
    }

    fn manual(m: &TdMeasurements) -> [u8; 32] {
        let mut buf = Vec::with_capacity(448);
        buf.extend_from_slice(&m.mrtd);
        buf.extend_from_slice(&m.mrconfigid);
        buf.extend_from_slice(&m.mrowner);
        buf.extend_from_slice(&m.mrownerconfig);
        for r in &m.rtmr {
            buf.extend_from_slice(r);
        }
        buf.extend_from_slice(&[0u8; 64]);
        assert_eq!(buf.len(), 448);
        Sha256::digest(&buf).into()
    }

    fn arb_reg() -> impl Strategy<Value = [u8; 48]> {
        proptest::collection::vec(any::<u8>(), 48).prop_map(|v| v.try_into().unwrap())
    }

    proptest! {
        #[test]
        fn layout_is_registers_in_order_then_64_zero_bytes(
            a in arb_reg(), b in arb_reg(), c in arb_reg(), d in arb_reg(),
            r0 in arb_reg(), r1 in arb_reg(), r2 in arb_reg(), r3 in arb_reg(),
        ) {
            let m = TdMeasurements { mrtd: a, mrconfigid: b, mrowner: c, mrownerconfig: d,
                                     rtmr: [r0, r1, r2, r3] };
            prop_assert_eq!(m.image_hash(), manual(&m));
        }

        #[test]
        fn every_register_byte_changes_the_hash(reg in 0usize..8, byte in 0usize..48) {
            let mut m = TdMeasurements::ZERO;
            let target = match reg {
                0 => &mut m.mrtd,
                1 => &mut m.mrconfigid,
                2 => &mut m.mrowner,
                3 => &mut m.mrownerconfig,
                i => &mut m.rtmr[i - 4],
            };
            target[byte] = 1;
            prop_assert_ne!(m.image_hash(), INSECURE_SOFTWARE_IMAGE_HASH);
        }
    }
}
