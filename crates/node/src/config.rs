//! The part of every role's TOML config that says how the node attests itself and what it demands
//! of its peers, plus TOML loading with clear errors.
//!
//! Role-specific keys live in each role's own config module, not here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cocoon_attest::{
    AttestationProvider, EvidenceVerifier, InsecureSoftwareSev, InsecureSoftwareTdx, NetworkKind,
    NoEvidence, Policy, SnpVerifier,
};
use cocoon_ratls::RaTlsIdentity;
use serde::{Deserialize, Serialize};

/// What this node presents as evidence in its RA-TLS certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceChoice {
    /// No evidence (Cocoon's `--tee none`): what clients outside a TEE use.
    None,
    /// Software "attestation" equivalent to Cocoon's fake TDX (`fake_tee` on Intel, formerly
    /// `fake_tdx`). Anyone can forge it; refused unless `network` is `dev` or `test`.
    InsecureSoftware,
    /// Software "attestation" equivalent to Cocoon's fake SEV-SNP (`fake_tee` on AMD): an
    /// unsigned report and a self-signed VCEK. Anyone can forge it; refused unless `network` is
    /// `dev` or `test`. Alias: `fake-sev`.
    #[serde(alias = "fake-sev")]
    InsecureSoftwareSev,
    /// Hardware Intel TDX evidence (configfs-tsm).
    Tdx,
    /// Hardware AMD SEV-SNP evidence (configfs-tsm) with the guest's VCEK (`sev_vcek`), in
    /// Cocoon's certificate layout. Alias: `sev`.
    #[serde(alias = "sev")]
    SevSnp,
}

/// What this node demands of its peers' certificates. Cocoon's router policy names are
/// accepted (`any`, `fake_tee`, `tee`); our earlier names stay as aliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerPolicyChoice {
    /// Accept peers without evidence (Cocoon's `any`): how a proxy accepts clients.
    Any,
    /// Accept fake TDX and fake SEV-SNP evidence (Cocoon's `fake_tee`; dev/test networks only).
    /// Aliases: `insecure-software` (our earlier name), `fake-tee`.
    #[serde(rename = "fake_tee", alias = "insecure-software", alias = "fake-tee")]
    InsecureSoftware,
    /// Require hardware TDX or hardware SEV-SNP evidence (Cocoon's `tee`).
    Tee,
    /// Require hardware TDX evidence only (ours; unchanged: it does not admit SEV-SNP).
    Tdx,
    /// Require hardware SEV-SNP evidence only (ours). Alias: `sev`.
    #[serde(alias = "sev")]
    SevSnp,
}

impl PeerPolicyChoice {
    /// Whether peers' TDX quotes are verified (then DCAP collateral is needed).
    pub fn verifies_tdx(self) -> bool {
        matches!(self, PeerPolicyChoice::Tee | PeerPolicyChoice::Tdx)
    }
}

/// Attestation settings shared by all roles (`[attestation]` in each role's TOML).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationConfig {
    /// Which network this node belongs to: `dev`, `test` or `main`. Insecure software
    /// attestation is refused on `main`. Default: `main`.
    pub network: NetworkKind,
    /// Evidence this node presents: `none`, `insecure-software` (fake TDX),
    /// `insecure-software-sev` (fake SEV-SNP), `tdx` or `sev-snp`. Default: `tdx` for proxies and
    /// workers, `none` for clients.
    pub evidence: EvidenceChoice,
    /// Evidence demanded of peers: Cocoon's `any`, `fake_tee` (fake TDX or fake SEV-SNP; alias
    /// `insecure-software`) or `tee` (hardware TDX or SEV-SNP), or one family only: `tdx`,
    /// `sev-snp`. Default: `tdx` (clients → proxies, workers → proxies, proxies → workers);
    /// proxies accept clients with `any`.
    pub peer_policy: PeerPolicyChoice,
    /// Lifetime of the self-signed RA-TLS certificate; a running node replaces it at 2/3 of
    /// that. Default: 1 day (Cocoon's).
    #[serde(with = "humantime_serde")]
    pub cert_validity: Duration,
    /// TDX verification: PCCS base URL collateral is fetched from (an untrusted PCCS is fine:
    /// the Intel root key id is pinned). Default: none (collateral only from the cache).
    pub pccs_url: Option<String>,
    /// TDX verification: directory caching fetched collateral. Default: none (memory only).
    pub collateral_cache_dir: Option<std::path::PathBuf>,
    /// TDX verification: TCB statuses accepted besides `UpToDate`, by Intel's names (e.g.
    /// `SWHardeningNeeded`). Default: none.
    pub accept_tcb_statuses: Vec<String>,
    /// TDX verification: pinned Intel root key ids (hex). Default: empty = Cocoon's Intel value.
    pub root_key_ids: Vec<String>,
    /// SEV-SNP evidence (`evidence = "sev-snp"`): the guest's VCEK certificate file, DER or PEM
    /// (from AMD KDS or the host). Default: none = `/etc/tee/sev/vcek.pem`, where Cocoon's SEV
    /// images keep it.
    pub sev_vcek: Option<std::path::PathBuf>,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        Self {
            network: NetworkKind::Main,
            evidence: EvidenceChoice::Tdx,
            peer_policy: PeerPolicyChoice::Tdx,
            cert_validity: Duration::from_secs(86_400),
            pccs_url: None,
            collateral_cache_dir: None,
            accept_tcb_statuses: Vec::new(),
            root_key_ids: Vec::new(),
            sev_vcek: None,
        }
    }
}

/// Errors while loading a config or building the attestation pieces from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("attestation: {0}")]
    Attestation(#[from] cocoon_attest::AttestError),
    #[error("RA-TLS: {0}")]
    RaTls(#[from] cocoon_ratls::RaTlsError),
}

impl AttestationConfig {
    /// Config for a node on the local dev network with software attestation everywhere.
    pub fn dev(evidence: EvidenceChoice, peer_policy: PeerPolicyChoice) -> Self {
        Self {
            network: NetworkKind::Dev,
            evidence,
            peer_policy,
            ..Self::default()
        }
    }

    /// The provider that fills this node's certificate.
    pub fn provider(&self) -> Result<Box<dyn AttestationProvider>, ConfigError> {
        match self.evidence {
            EvidenceChoice::None => Ok(Box::new(NoEvidence)),
            EvidenceChoice::InsecureSoftware => {
                Ok(Box::new(InsecureSoftwareTdx::new(self.network)?))
            }
            EvidenceChoice::InsecureSoftwareSev => {
                Ok(Box::new(InsecureSoftwareSev::new(self.network)?))
            }
            // Quotes through Linux configfs-tsm; a clear error outside a TD.
            EvidenceChoice::Tdx => Ok(Box::new(cocoon_attest::ConfigfsTsmTdx::new()?)),
            // Reports through configfs-tsm, with the provisioned VCEK; a clear error outside an
            // SEV-SNP guest or without the VCEK file.
            EvidenceChoice::SevSnp => {
                let vcek = self.sev_vcek.clone().unwrap_or_else(|| {
                    std::path::PathBuf::from(cocoon_attest::DEFAULT_SEV_VCEK_PATH)
                });
                Ok(Box::new(cocoon_attest::ConfigfsTsmSnp::from_vcek_file(
                    cocoon_attest::DEFAULT_TSM_REPORT_ROOT,
                    &vcek,
                )?))
            }
        }
    }

    /// The verifier applied to peers' certificates (`peer_policy`).
    pub fn verifier(&self) -> Result<Arc<dyn EvidenceVerifier>, ConfigError> {
        self.verifier_for(self.peer_policy)
    }

    /// A verifier for `choice` on this node's network.
    pub fn verifier_for(
        &self,
        choice: PeerPolicyChoice,
    ) -> Result<Arc<dyn EvidenceVerifier>, ConfigError> {
        self.verifier_with_collateral(choice, None)
    }

    /// [`verifier_for`](Self::verifier_for), with TDX collateral kept in `collateral` (so a
    /// background task can refresh the very store the verifier reads; see `rotation`).
    /// `None`: a store of its own, built from `pccs_url` / `collateral_cache_dir`.
    pub fn verifier_with_collateral(
        &self,
        choice: PeerPolicyChoice,
        collateral: Option<Arc<cocoon_attest::CollateralStore>>,
    ) -> Result<Arc<dyn EvidenceVerifier>, ConfigError> {
        let policy = match choice {
            PeerPolicyChoice::Any => Policy::any(),
            PeerPolicyChoice::InsecureSoftware => Policy::insecure_software(self.network)?,
            PeerPolicyChoice::Tdx => Policy::tdx(self.dcap_verifier(collateral)?),
            PeerPolicyChoice::Tee => Policy::tee(
                self.dcap_verifier(collateral)?,
                Arc::new(SnpVerifier::new()?),
            ),
            // AMD's pinned roots; no configuration.
            PeerPolicyChoice::SevSnp => Policy::sev_snp(Arc::new(SnpVerifier::new()?)),
        };
        Ok(Arc::new(policy))
    }

    /// DCAP (dcap-qvl) with collateral from the PCCS and the disk cache (read now: blocking, at
    /// start-up), Intel's root key id pinned, UpToDate TCB unless more statuses are named, DEBUG
    /// TDs refused.
    fn dcap_verifier(
        &self,
        collateral: Option<Arc<cocoon_attest::CollateralStore>>,
    ) -> Result<Arc<cocoon_attest::DcapVerifier>, ConfigError> {
        let mut dcap =
            cocoon_attest::DcapConfig::default().accept_tcb_statuses(&self.accept_tcb_statuses)?;
        if !self.root_key_ids.is_empty() {
            dcap = dcap.with_root_key_ids(&self.root_key_ids)?;
        }
        let store = collateral.unwrap_or_else(|| {
            Arc::new(cocoon_attest::CollateralStore::new(
                self.pccs_url.clone(),
                self.collateral_cache_dir.clone(),
            ))
        });
        Ok(Arc::new(cocoon_attest::DcapVerifier::new(dcap, store)))
    }

    /// A fresh RA-TLS identity (key + certificate) for this node.
    pub fn identity(&self) -> Result<RaTlsIdentity, ConfigError> {
        let provider = self.provider()?;
        Ok(RaTlsIdentity::generate(
            provider.as_ref(),
            self.cert_validity,
        )?)
    }

    /// Whether this node runs on a dev or test network.
    pub fn is_test(&self) -> bool {
        !matches!(self.network, NetworkKind::Main)
    }

    /// Outside dev/test networks, the first of this node's choices that accepts or presents
    /// forgeable or no evidence — a peer policy that lets unattested or software-attested
    /// `peers` in, or software evidence of its own — described for an error; `None` when there
    /// is none (or on a dev/test network). Each role refuses to start on it.
    pub fn forgeable_choice(&self, peers: &str) -> Option<String> {
        if self.is_test() {
            return None;
        }
        match (self.peer_policy, self.evidence) {
            (PeerPolicyChoice::Any, _) => Some(format!(
                "[attestation] peer_policy = \"any\" accepts unattested {peers}; it"
            )),
            (PeerPolicyChoice::InsecureSoftware, _) => Some(format!(
                "[attestation] peer_policy = \"fake_tee\" (alias \"insecure-software\") accepts forgeable {peers} evidence; it"
            )),
            (_, EvidenceChoice::InsecureSoftware) => {
                Some("[attestation] evidence = \"insecure-software\" (forgeable)".into())
            }
            (_, EvidenceChoice::InsecureSoftwareSev) => {
                Some("[attestation] evidence = \"insecure-software-sev\" (forgeable)".into())
            }
            _ => None,
        }
    }
}

/// Maximum size of a config file; anything larger is surely not a config.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and parses a TOML config file.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid(format!(
            "{shown} is {} bytes; config files are limited to {MAX_CONFIG_BYTES}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: shown,
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_software_is_refused_on_main() {
        let cfg = AttestationConfig {
            network: NetworkKind::Main,
            evidence: EvidenceChoice::InsecureSoftware,
            peer_policy: PeerPolicyChoice::InsecureSoftware,
            ..Default::default()
        };
        assert!(cfg.provider().is_err());
        assert!(cfg.verifier().is_err());
    }

    #[test]
    fn tdx_verifier_builds_and_tdx_evidence_needs_a_td() {
        let cfg = AttestationConfig {
            accept_tcb_statuses: vec!["SWHardeningNeeded".into()],
            ..AttestationConfig::default()
        };
        assert!(cfg.verifier().is_ok(), "DCAP verifier from config");
        let bad = AttestationConfig {
            accept_tcb_statuses: vec!["NoSuchStatus".into()],
            ..AttestationConfig::default()
        };
        assert!(
            bad.verifier().is_err(),
            "unknown TCB status names are config errors"
        );
        // This machine is not a TD: no configfs-tsm report provider.
        if !std::path::Path::new(cocoon_attest::DEFAULT_TSM_REPORT_ROOT).exists() {
            let err = cfg
                .provider()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.is_empty(), "TDX evidence outside a TD must fail");
        }
    }

    #[test]
    fn dev_network_builds_identity() {
        let cfg = AttestationConfig::dev(
            EvidenceChoice::InsecureSoftware,
            PeerPolicyChoice::InsecureSoftware,
        );
        let id = cfg.identity().expect("identity");
        assert_eq!(id.public_key().len(), 32);
        assert!(cfg.verifier().is_ok());
    }

    #[test]
    fn parses_kebab_case_toml() {
        let cfg: AttestationConfig = toml::from_str(
            "network = \"dev\"\nevidence = \"insecure-software\"\npeer_policy = \"any\"\ncert_validity = \"2h\"\n",
        )
        .expect("parse");
        assert_eq!(cfg.evidence, EvidenceChoice::InsecureSoftware);
        assert_eq!(cfg.peer_policy, PeerPolicyChoice::Any);
        assert_eq!(cfg.cert_validity, Duration::from_secs(7200));
        assert!(toml::from_str::<AttestationConfig>("bogus = 1").is_err());
    }
    #[test]
    fn peer_policy_takes_cocoons_names_and_ours() {
        let parse = |v: &str| {
            toml::from_str::<AttestationConfig>(&format!("peer_policy = \"{v}\""))
                .map(|c| c.peer_policy)
        };
        for (name, want) in [
            ("any", PeerPolicyChoice::Any),
            ("fake_tee", PeerPolicyChoice::InsecureSoftware),
            ("insecure-software", PeerPolicyChoice::InsecureSoftware),
            ("fake-tee", PeerPolicyChoice::InsecureSoftware),
            ("tee", PeerPolicyChoice::Tee),
            ("tdx", PeerPolicyChoice::Tdx),
            ("sev-snp", PeerPolicyChoice::SevSnp),
            ("sev", PeerPolicyChoice::SevSnp),
        ] {
            assert_eq!(parse(name).expect(name), want, "{name}");
        }
        for bad in ["fake_tdx", "TEE", "sev_snp", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // Cocoon's name is the one written back.
        let v = toml::Value::try_from(AttestationConfig::dev(
            EvidenceChoice::None,
            PeerPolicyChoice::InsecureSoftware,
        ))
        .expect("serialize");
        assert_eq!(v["peer_policy"].as_str(), Some("fake_tee"));
    }

    #[test]
    fn evidence_takes_sev_choices() {
        let parse = |v: &str| {
            toml::from_str::<AttestationConfig>(&format!("evidence = \"{v}\"")).map(|c| c.evidence)
        };
        assert_eq!(parse("sev-snp").unwrap(), EvidenceChoice::SevSnp);
        assert_eq!(parse("sev").unwrap(), EvidenceChoice::SevSnp);
        assert_eq!(
            parse("insecure-software-sev").unwrap(),
            EvidenceChoice::InsecureSoftwareSev
        );
        assert_eq!(
            parse("fake-sev").unwrap(),
            EvidenceChoice::InsecureSoftwareSev
        );
        let cfg: AttestationConfig =
            toml::from_str("evidence = \"sev-snp\"\nsev_vcek = \"/x/vcek.der\"\n").expect("parse");
        assert_eq!(cfg.sev_vcek.as_deref(), Some(Path::new("/x/vcek.der")));
    }

    #[test]
    fn sev_snp_is_selectable() {
        // Peer policies: SEV-SNP alone needs no configuration; `tee` adds it to DCAP.
        for choice in [PeerPolicyChoice::SevSnp, PeerPolicyChoice::Tee] {
            assert!(AttestationConfig::default().verifier_for(choice).is_ok());
        }
        assert!(PeerPolicyChoice::Tee.verifies_tdx());
        assert!(!PeerPolicyChoice::SevSnp.verifies_tdx());
        // Hardware SEV-SNP evidence outside a guest, or without the VCEK: a clear error.
        let cfg = AttestationConfig {
            evidence: EvidenceChoice::SevSnp,
            sev_vcek: Some("/nonexistent/vcek.pem".into()),
            ..AttestationConfig::default()
        };
        let err = cfg
            .provider()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("SEV-SNP"), "{err}");
        // Fake SEV-SNP on a dev network makes a working identity; never on main.
        let dev = AttestationConfig::dev(
            EvidenceChoice::InsecureSoftwareSev,
            PeerPolicyChoice::InsecureSoftware,
        );
        let id = dev.identity().expect("fake SEV identity");
        assert_eq!(
            id.evidence_kind(),
            cocoon_attest::EvidenceKind::InsecureSoftwareSev
        );
        let main = AttestationConfig {
            evidence: EvidenceChoice::InsecureSoftwareSev,
            ..AttestationConfig::default()
        };
        assert!(main.provider().is_err());
        let why = main.forgeable_choice("peers").unwrap_or_default();
        assert!(why.contains("insecure-software-sev"), "{why}");
    }

    #[test]
    fn every_key_is_documented() {
        // Regenerate with `python3 scripts/gen-config-docs.py` after changing the struct.
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let v = toml::Value::try_from(AttestationConfig::default()).expect("serialize");
        for key in v.as_table().expect("table").keys() {
            let shown = format!("`attestation.{key}`");
            assert!(
                doc.contains(&shown),
                "{shown} is missing from docs/CONFIGURATION.md"
            );
        }
    }
}

/// Prices and multipliers (`[pricing]`). With `[chain]` on they come from the root contract's
/// params and follow them without a restart; these values are then only compared with the
/// root's (the root wins, a disagreement is logged once). With the chain off they are the
/// network's prices, and every node of a network must be configured with the same values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    /// nanoTON a client pays per adjusted token. Chain off only: with `[chain]` on, every key
    /// of `[pricing]` is the root's (a differing value here is overridden, logged once).
    /// Default: 2 (Cocoon's test config).
    pub price_per_token: u64,
    /// nanoTON a worker earns per adjusted token; the rest is the proxy's commission.
    /// Default: 1 (Cocoon's test config).
    pub worker_fee_per_token: u64,
    /// Multiplier for non-cached prompt tokens, 10000 = 1.0×. Default: 10000.
    pub prompt_multiplier: u64,
    /// Multiplier for cached prompt tokens, 10000 = 1.0×. Default: 10000.
    pub cached_multiplier: u64,
    /// Multiplier for non-reasoning completion tokens, 10000 = 1.0×. Default: 10000.
    pub completion_multiplier: u64,
    /// Multiplier for reasoning tokens, 10000 = 1.0×. Default: 10000.
    pub reasoning_multiplier: u64,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            price_per_token: 2,
            worker_fee_per_token: 1,
            prompt_multiplier: 10_000,
            cached_multiplier: 10_000,
            completion_multiplier: 10_000,
            reasoning_multiplier: 10_000,
        }
    }
}

impl PricingConfig {
    /// The root params' prices: nanoTON per adjusted token (saturating at `u64::MAX`) and the
    /// prompt, cached, completion and reasoning multipliers (10000 = 1×), in that order.
    pub fn from_root(price_per_token: u128, worker_fee_per_token: u128, mult: [u32; 4]) -> Self {
        let n = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        Self {
            price_per_token: n(price_per_token),
            worker_fee_per_token: n(worker_fee_per_token),
            prompt_multiplier: u64::from(mult[0]),
            cached_multiplier: u64::from(mult[1]),
            completion_multiplier: u64::from(mult[2]),
            reasoning_multiplier: u64::from(mult[3]),
        }
    }

    /// The keys whose values differ from `other`'s (for the "the root wins" warning).
    pub fn differing_keys(&self, other: &Self) -> Vec<&'static str> {
        [
            (
                "price_per_token",
                self.price_per_token,
                other.price_per_token,
            ),
            (
                "worker_fee_per_token",
                self.worker_fee_per_token,
                other.worker_fee_per_token,
            ),
            (
                "prompt_multiplier",
                self.prompt_multiplier,
                other.prompt_multiplier,
            ),
            (
                "cached_multiplier",
                self.cached_multiplier,
                other.cached_multiplier,
            ),
            (
                "completion_multiplier",
                self.completion_multiplier,
                other.completion_multiplier,
            ),
            (
                "reasoning_multiplier",
                self.reasoning_multiplier,
                other.reasoning_multiplier,
            ),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(k, _, _)| k)
        .collect()
    }

    /// The multipliers in the engine crate's form.
    pub fn multipliers(&self) -> cocoon_engine::pricing::PriceMultipliers {
        cocoon_engine::pricing::PriceMultipliers {
            prompt: self.prompt_multiplier,
            cached: self.cached_multiplier,
            completion: self.completion_multiplier,
            reasoning: self.reasoning_multiplier,
        }
    }

    /// Rejects a fee above the price (the proxy's commission would be negative).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker_fee_per_token > self.price_per_token {
            return Err(ConfigError::Invalid(format!(
                "pricing: worker_fee_per_token ({}) exceeds price_per_token ({})",
                self.worker_fee_per_token, self.price_per_token
            )));
        }
        Ok(())
    }
}
