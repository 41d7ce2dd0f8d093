//! The parts of a verified TDX report body that cocoon-rs judges, and our TD policy on top of
//! Cocoon's ([`TdReport`], [`TdPolicy`]).
//!
//! Cocoon's image hash covers only MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG and RTMR0..3
//! (cocoon-notes §6), so a debug TD with the same measurements has the same hash. We keep the hash
//! byte-identical for compatibility and add, here, what it leaves out: TD_ATTRIBUTES.DEBUG must be
//! off (always; there is no switch), and XFAM / MRSEAM may be pinned to allowlists. Every field is
//! recorded so diagnostics (`cocoon attest show`) can print it.
//!
//! Only plain parsing and checks live here: no signature work (that is `dcap`), no I/O.

use dcap_qvl::quote::{Report, TDReport10};

use crate::error::AttestError;
use crate::evidence::EvidenceKind;
use crate::measurements::{TdMeasurements, MEASUREMENT_LEN};

/// TD_ATTRIBUTES bit 0: the TD runs in debug mode (host can read its memory and registers).
pub const TD_ATTR_DEBUG: u64 = 1 << 0;
/// TD_ATTRIBUTES bits 7:0 are the "TD under debug" group: any of them set means untrusted.
const TD_ATTR_TUD_MASK: u64 = 0xff;

/// A TDX report body (TD 1.0 fields, plus MRSERVICETD for TD 1.5) as extracted from a quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdReport {
    /// The registers Cocoon's image hash covers.
    pub measurements: TdMeasurements,
    /// The 64-byte report data (`SHA-512(claims)` for RA-TLS).
    pub report_data: [u8; 64],
    /// TD_ATTRIBUTES, little-endian as in the report.
    pub td_attributes: [u8; 8],
    /// XFAM (extended features the TD may use), little-endian.
    pub xfam: [u8; 8],
    /// Measurement of the TDX module (SEAM).
    pub mr_seam: [u8; MEASUREMENT_LEN],
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; MEASUREMENT_LEN],
    /// TEE TCB SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSERVICETD (TD 1.5 reports only).
    pub mr_service_td: Option<[u8; MEASUREMENT_LEN]>,
}

impl TdReport {
    /// Extracts the TD report from a parsed DCAP report; SGX enclave reports are refused (Cocoon
    /// rejects SGX quotes for TLS too).
    pub fn from_dcap(report: &Report) -> Result<Self, AttestError> {
        let (base, service): (&TDReport10, _) = match report {
            Report::TD10(r) => (r, None),
            Report::TD15(r) => (&r.base, Some(r.mr_service_td)),
            Report::TD15Ex(r) => (&r.base.base, Some(r.base.mr_service_td)),
            Report::SgxEnclave(_) => {
                return Err(AttestError::MalformedQuote {
                    kind: EvidenceKind::Tdx,
                    reason: "SGX enclave quotes are not accepted, only TDX".into(),
                })
            }
        };
        Ok(Self {
            measurements: TdMeasurements {
                mrtd: base.mr_td,
                mrconfigid: base.mr_config_id,
                mrowner: base.mr_owner,
                mrownerconfig: base.mr_owner_config,
                rtmr: [base.rt_mr0, base.rt_mr1, base.rt_mr2, base.rt_mr3],
            },
            report_data: base.report_data,
            td_attributes: base.td_attributes,
            xfam: base.xfam,
            mr_seam: base.mr_seam,
            mr_signer_seam: base.mr_signer_seam,
            tee_tcb_svn: base.tee_tcb_svn,
            mr_service_td: service,
        })
    }

    /// TD_ATTRIBUTES as a number.
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    /// Whether the TD runs in debug mode.
    pub fn is_debug(&self) -> bool {
        self.td_attributes_u64() & TD_ATTR_DEBUG != 0
    }

    /// Cocoon's image hash of this report.
    pub fn image_hash(&self) -> [u8; 32] {
        self.measurements.image_hash()
    }
}

/// Our checks on a verified TD report beyond Cocoon's. DEBUG (and every "TD under debug" bit) is
/// always refused; XFAM and MRSEAM are checked only when their allowlists are non-empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TdPolicy {
    /// Allowed XFAM values (empty: any).
    pub allowed_xfam: Vec<[u8; 8]>,
    /// Allowed TDX module measurements (empty: any).
    pub allowed_mr_seam: Vec<[u8; MEASUREMENT_LEN]>,
}

impl TdPolicy {
    /// Checks `report` against this policy.
    pub fn check(&self, report: &TdReport) -> Result<(), AttestError> {
        let attrs = report.td_attributes_u64();
        if attrs & TD_ATTR_DEBUG != 0 {
            return Err(AttestError::TdAttributes(
                "TD_ATTRIBUTES.DEBUG is set: the host can read this TD".into(),
            ));
        }
        if attrs & TD_ATTR_TUD_MASK != 0 {
            return Err(AttestError::TdAttributes(format!(
                "TD-under-debug bits set in TD_ATTRIBUTES {attrs:#018x}"
            )));
        }
        if !self.allowed_xfam.is_empty() && !self.allowed_xfam.contains(&report.xfam) {
            return Err(AttestError::XfamNotAllowed {
                xfam: u64::from_le_bytes(report.xfam),
            });
        }
        if !self.allowed_mr_seam.is_empty() && !self.allowed_mr_seam.contains(&report.mr_seam) {
            return Err(AttestError::MrSeamNotAllowed {
                mr_seam: hex::encode(report.mr_seam),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> TdReport {
        TdReport {
            measurements: TdMeasurements::ZERO,
            report_data: [0; 64],
            // SEPT_VE_DISABLE (bit 28), what production TDs set.
            td_attributes: (1u64 << 28).to_le_bytes(),
            xfam: 0xe7u64.to_le_bytes(),
            mr_seam: [5; 48],
            mr_signer_seam: [0; 48],
            tee_tcb_svn: [0; 16],
            mr_service_td: None,
        }
    }

    #[test]
    fn production_attributes_pass() {
        assert!(TdPolicy::default().check(&report()).is_ok());
        assert!(!report().is_debug());
    }

    #[test]
    fn debug_td_is_refused_by_the_policy_itself() {
        let mut r = report();
        r.td_attributes[0] |= 0x01;
        assert!(r.is_debug());
        let err = TdPolicy::default().check(&r).unwrap_err();
        assert!(err.to_string().contains("DEBUG"), "{err}");
        // The image hash does not see the debug bit (Cocoon's weakness we compensate for).
        assert_eq!(r.image_hash(), report().image_hash());
    }

    #[test]
    fn other_tud_bits_are_refused() {
        let mut r = report();
        r.td_attributes[0] = 0x10;
        assert!(matches!(
            TdPolicy::default().check(&r),
            Err(AttestError::TdAttributes(_))
        ));
    }

    #[test]
    fn xfam_and_mrseam_pins() {
        let r = report();
        let pol = TdPolicy {
            allowed_xfam: vec![0x1fu64.to_le_bytes()],
            allowed_mr_seam: vec![],
        };
        assert_eq!(
            pol.check(&r).unwrap_err(),
            AttestError::XfamNotAllowed { xfam: 0xe7 }
        );
        let pol = TdPolicy {
            allowed_xfam: vec![r.xfam],
            allowed_mr_seam: vec![[6; 48]],
        };
        assert!(matches!(
            pol.check(&r),
            Err(AttestError::MrSeamNotAllowed { .. })
        ));
        let pol = TdPolicy {
            allowed_xfam: vec![r.xfam],
            allowed_mr_seam: vec![r.mr_seam],
        };
        assert!(pol.check(&r).is_ok());
    }
}
