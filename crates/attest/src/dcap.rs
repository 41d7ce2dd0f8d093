//! [`DcapVerifier`]: hardware TDX quote verification with `dcap-qvl`, implementing the
//! [`QuoteVerifier`] seam so `Policy::tdx(Arc::new(DcapVerifier::new(..)))` works end to end.
//!
//! Checks, in order (Cocoon's `tdx` policy, then ours):
//! 1. dcap-qvl: quote signature → QE report → PCK chain → Intel root, CRLs, TCB info and QE
//!    identity signatures and validity at `now`; Revoked is always refused; SGX is refused.
//! 2. Collateral not expired at `now` (Cocoon: `collateral_expiration_status == 0`).
//! 3. TCB status in the accepted set: only `UpToDate` by default (Cocoon requires
//!    `SGX_QL_QV_RESULT_OK`); others are opt-in by their Intel names ([`parse_tcb_status`]).
//! 4. Root key id (SHA-384 of the root CA public key) pinned: Cocoon's Intel value
//!    [`COCOON_INTEL_ROOT_KEY_ID`] by default, overridable. So an untrusted PCCS is fine.
//! 5. Our TD policy ([`TdPolicy`]): DEBUG off, optional XFAM / MRSEAM pins.
//!
//! The report-data binding and the image-hash allowlist are *not* checked here: [`Policy`]
//! (crate::Policy) does that for every evidence kind.
//!
//! Caching: verdicts are cached by `SHA-256(quote)` in a [`TtlLru`] (10 000 entries, like Cocoon),
//! each until the earlier of its collateral's expiry and `max_cache_ttl`, so a TCB recovery or
//! collateral change is picked up. Collateral comes from a [`CollateralStore`]; on a miss (or when
//! due for refresh) the verifier fetches it synchronously only where that cannot stall the async
//! runtime (a multi-thread tokio runtime, via `block_in_place`, or no runtime at all); otherwise it
//! marks the platform wanted and refuses this once (the peer redials, Cocoon-style).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcap_qvl::tcb_info::TcbStatus;
use dcap_qvl::QuoteCollateralV3;
use sha2::{Digest, Sha256};

use crate::cache::{TtlLru, DEFAULT_CACHE_CAPACITY};
use crate::collateral::{CollateralKey, CollateralStore};
use crate::error::AttestError;
use crate::evidence::MAX_QUOTE_LEN;
use crate::policy::{QuoteVerifier, VerifiedQuote};
use crate::tdx_report::{TdPolicy, TdReport};

/// Cocoon's pinned Intel SGX/TDX root key id (SHA-384 of the root CA's public key), hex.
pub const COCOON_INTEL_ROOT_KEY_ID: &str = "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993";

/// Every TCB status name Intel defines, in dcap-qvl's spelling.
pub const TCB_STATUS_NAMES: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
    "Revoked",
];

/// A TCB status from its Intel name (`"UpToDate"`, `"OutOfDate"`, ...). `Revoked` parses but is
/// never accepted by the verifier.
pub fn parse_tcb_status(name: &str) -> Result<TcbStatus, AttestError> {
    Ok(match name {
        "UpToDate" => TcbStatus::UpToDate,
        "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
        "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
        "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
        "OutOfDate" => TcbStatus::OutOfDate,
        "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
        "TDRelaunchAdvised" => TcbStatus::TDRelaunchAdvised,
        "TDRelaunchAdvisedConfigurationNeeded" => TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
        "Revoked" => TcbStatus::Revoked,
        other => return Err(AttestError::UnknownTcbStatus(other.to_owned())),
    })
}

/// Parses a 48-byte root key id from hex.
pub fn parse_root_key_id(hex_id: &str) -> Result<[u8; 48], AttestError> {
    hex::decode(hex_id.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| AttestError::RootKeyIdNotAllowed {
            root_key_id: format!("{hex_id:?} (not 48 bytes of hex)"),
        })
}

/// Configuration of a [`DcapVerifier`].
#[derive(Clone, Debug)]
pub struct DcapConfig {
    /// Accepted TCB statuses (default: `UpToDate` only). `Revoked` is refused regardless.
    pub accepted_tcb: Vec<TcbStatus>,
    /// Pinned root key ids (default: Cocoon's Intel value). Empty means any root (tests only).
    pub root_key_ids: Vec<[u8; 48]>,
    /// Our checks on TD attributes / XFAM / MRSEAM.
    pub td_policy: TdPolicy,
    /// Verdict cache size.
    pub cache_capacity: usize,
    /// Longest a verdict is reused even with fresh collateral.
    pub max_cache_ttl: Duration,
    /// Intel root CA certificate (DER) to verify against; `None` = dcap-qvl's Intel production root.
    pub root_ca_der: Option<Vec<u8>>,
}

impl Default for DcapConfig {
    fn default() -> Self {
        Self {
            accepted_tcb: vec![TcbStatus::UpToDate],
            root_key_ids: parse_root_key_id(COCOON_INTEL_ROOT_KEY_ID)
                .map(|k| vec![k])
                .unwrap_or_default(),
            td_policy: TdPolicy::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            max_cache_ttl: Duration::from_secs(3600),
            root_ca_der: None,
        }
    }
}

impl DcapConfig {
    /// Also accept the TCB statuses named (Intel spelling); unknown names are an error.
    pub fn accept_tcb_statuses<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self, AttestError> {
        for n in names {
            let s = parse_tcb_status(n.as_ref())?;
            if !self.accepted_tcb.contains(&s) {
                self.accepted_tcb.push(s);
            }
        }
        Ok(self)
    }

    /// Whether `status` is accepted (`Revoked` never is).
    pub fn check_tcb_status(&self, status: TcbStatus) -> Result<(), AttestError> {
        if status != TcbStatus::Revoked && self.accepted_tcb.contains(&status) {
            return Ok(());
        }
        Err(AttestError::TcbStatusNotAllowed {
            status: status.to_string(),
            accepted: self
                .accepted_tcb
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Replaces the pinned root key ids (hex, 48 bytes each).
    pub fn with_root_key_ids<S: AsRef<str>>(mut self, ids: &[S]) -> Result<Self, AttestError> {
        self.root_key_ids = ids
            .iter()
            .map(|s| parse_root_key_id(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}

/// Everything verification established about a TDX quote (for diagnostics and the cache).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxVerdict {
    /// The TD report body.
    pub report: TdReport,
    /// Converged TCB status (Intel name).
    pub tcb_status: String,
    /// Intel security advisories that apply.
    pub advisory_ids: Vec<String>,
    /// SHA-384 of the root CA key the quote chains to.
    pub root_key_id: [u8; 48],
    /// Platform the collateral is for.
    pub collateral: CollateralKey,
    /// When the collateral used stops being valid.
    pub collateral_expires: SystemTime,
}

/// DCAP verification of TDX quotes (see the module docs).
#[derive(Debug)]
pub struct DcapVerifier {
    config: DcapConfig,
    collateral: Arc<CollateralStore>,
    cache: TtlLru<TdxVerdict>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl DcapVerifier {
    /// A verifier with `config`, taking collateral from `collateral`.
    pub fn new(config: DcapConfig, collateral: Arc<CollateralStore>) -> Self {
        let cache = TtlLru::new(config.cache_capacity);
        Self {
            config,
            collateral,
            cache,
        }
    }

    /// The collateral store (to prefetch or run `refresh_due` from a timer).
    pub fn collateral_store(&self) -> &Arc<CollateralStore> {
        &self.collateral
    }

    /// Number of cached verdicts.
    pub fn cached_verdicts(&self) -> usize {
        self.cache.len()
    }

    /// Full verification of `quote` at `now`, with caching; see the module docs for the checks.
    pub fn verify_detailed(
        &self,
        quote: &[u8],
        now: SystemTime,
    ) -> Result<TdxVerdict, AttestError> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(AttestError::QuoteTooLarge {
                len: quote.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let digest: [u8; 32] = Sha256::digest(quote).into();
        if let Some(v) = self.cache.get(&digest, now) {
            return Ok(v);
        }
        let key = CollateralKey::for_quote(quote)?;
        let collateral = self.collateral_for(&key, now)?;
        let verdict = self.verify_with(quote, &key, &collateral, now)?;
        self.collateral
            .note_expiry(&key, verdict.collateral_expires);
        let until = verdict
            .collateral_expires
            .min(now + self.config.max_cache_ttl);
        self.cache.insert(digest, verdict.clone(), until);
        tracing::debug!(fmspc = %key.fmspc, tcb = %verdict.tcb_status, "TDX quote verified");
        Ok(verdict)
    }

    fn collateral_for(
        &self,
        key: &CollateralKey,
        now: SystemTime,
    ) -> Result<Arc<QuoteCollateralV3>, AttestError> {
        let found = self.collateral.lookup(key, now);
        if !found.needs_fetch || !self.collateral.can_fetch() {
            return found.collateral.ok_or_else(|| {
                AttestError::CollateralUnavailable(format!(
                    "none for FMSPC {} ({}) and no PCCS configured",
                    key.fmspc, key.ca
                ))
            });
        }
        match self.fetch_now(key) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => {
                tracing::warn!(fmspc = %key.fmspc, error = %e, "collateral fetch failed");
                found.collateral.ok_or(e)
            }
            None => {
                self.collateral.want(key.clone());
                found.collateral.ok_or_else(|| {
                    AttestError::CollateralUnavailable(format!(
                        "not cached for FMSPC {}; fetch scheduled",
                        key.fmspc
                    ))
                })
            }
        }
    }

    /// Fetches synchronously where that cannot stall an async runtime; `None` where it could.
    fn fetch_now(
        &self,
        key: &CollateralKey,
    ) -> Option<Result<Arc<QuoteCollateralV3>, AttestError>> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let store = &self.collateral;
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                Some(tokio::task::block_in_place(|| h.block_on(store.fetch(key))))
            }
            Ok(_) => None,
            Err(_) => Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| AttestError::CollateralUnavailable(e.to_string()))
                    .and_then(|rt| rt.block_on(store.fetch(key))),
            ),
        }
    }

    /// Verification proper, no cache, against the given collateral.
    pub fn verify_with(
        &self,
        quote: &[u8],
        key: &CollateralKey,
        collateral: &QuoteCollateralV3,
        now: SystemTime,
    ) -> Result<TdxVerdict, AttestError> {
        let now_secs = unix(now);
        let verifier = match &self.config.root_ca_der {
            Some(der) => dcap_qvl::verify::QuoteVerifier::new(der.clone()),
            None => dcap_qvl::verify::QuoteVerifier::new_prod(),
        };
        let claims = verifier
            .verify_with_policy(
                quote,
                collateral.clone(),
                now_secs,
                &dcap_qvl::QuotePolicy::claims_only(now_secs),
            )
            .map_err(|e| AttestError::QuoteVerification(format!("{e:#}")))?;

        if now_secs >= claims.earliest_expiration_date {
            return Err(AttestError::CollateralUnavailable(format!(
                "collateral expired at unix {}",
                claims.earliest_expiration_date
            )));
        }
        let status = claims.tcb.status;
        self.config.check_tcb_status(status)?;
        let root_key_id: [u8; 48] = claims
            .platform
            .root_key_id
            .as_slice()
            .try_into()
            .map_err(|_| AttestError::QuoteVerification("root key id is not 48 bytes".into()))?;
        if !self.config.root_key_ids.is_empty() && !self.config.root_key_ids.contains(&root_key_id)
        {
            return Err(AttestError::RootKeyIdNotAllowed {
                root_key_id: hex::encode(root_key_id),
            });
        }
        let report = TdReport::from_dcap(&claims.report)?;
        self.config.td_policy.check(&report)?;
        Ok(TdxVerdict {
            report,
            tcb_status: status.to_string(),
            advisory_ids: claims.tcb.advisory_ids,
            root_key_id,
            collateral: key.clone(),
            collateral_expires: UNIX_EPOCH + Duration::from_secs(claims.earliest_expiration_date),
        })
    }
}

impl QuoteVerifier for DcapVerifier {
    fn verify_quote(&self, quote: &[u8], now: SystemTime) -> Result<VerifiedQuote, AttestError> {
        let v = self.verify_detailed(quote, now)?;
        Ok(VerifiedQuote {
            measurements: v.report.measurements,
            report_data: v.report.report_data,
        })
    }
}
