//! Keeping a running node's attestation fresh: RA-TLS certificate rotation and TDX collateral
//! refresh (issue 6, item 5).
//!
//! A role builds one [`NodeAttestation`] from its `[attestation]` config instead of a fixed
//! identity, makes its TLS configs from it ([`NodeAttestation::server_config`] /
//! [`NodeAttestation::client_config`], which present whatever the [`IdentitySlot`] holds at each
//! handshake), and runs [`NodeAttestation::maintain`] in a task owned by its shutdown token:
//! - **Certificates** are regenerated (fresh key, fresh quote, fresh serial) at
//!   [`ROTATE_AT_NUM`]/[`ROTATE_AT_DEN`] (2/3) of `cert_validity` and swapped into the slot. New
//!   handshakes get the new certificate; live sessions keep the one they were opened with (TLS
//!   authenticates once), so nothing is dropped. Cocoon regenerates hourly with a one-day
//!   lifetime and reloads on file change; we keep it in memory. A failed generation is retried
//!   (every tenth of the validity, at most [`MAX_RETRY`]) while the old certificate lasts.
//! - **TDX collateral**: every verifier built here shares one [`CollateralStore`]; when any of
//!   them is a TDX verifier, `maintain` calls [`CollateralStore::refresh_due`] every
//!   [`COLLATERAL_REFRESH_EVERY`], which fetches what verifications asked for and what nears its
//!   expiry, so verdicts never wait on a PCCS round-trip for a known platform.
//!
//! Caveat: the key a role announced in its handshake messages (e.g. the proxy's
//! `proxy_public_key`) is the first certificate's; it identifies the node, not the current TLS
//! key. Not here: which policy a role applies, sockets, files on disk.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_attest::{AttestationProvider, CollateralStore, EvidenceVerifier};
use cocoon_ratls::{
    CertOptions, IdentitySlot, RaTlsClientConfig, RaTlsIdentity, RaTlsServerConfig, TlsOptions,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{AttestationConfig, ConfigError, PeerPolicyChoice};
use crate::sealing::SealingKeyRing;

/// A certificate is replaced after `ROTATE_AT_NUM / ROTATE_AT_DEN` of its validity.
pub const ROTATE_AT_NUM: u32 = 2;
/// See [`ROTATE_AT_NUM`].
pub const ROTATE_AT_DEN: u32 = 3;
/// Longest wait before retrying a failed certificate generation.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often the collateral store is asked to refresh what is due.
pub const COLLATERAL_REFRESH_EVERY: Duration = Duration::from_secs(300);

/// A node's attestation at run time: its rotating identity and its shared collateral store.
pub struct NodeAttestation {
    cfg: AttestationConfig,
    provider: Arc<dyn AttestationProvider>,
    slot: Arc<IdentitySlot>,
    collateral: Arc<CollateralStore>,
    /// Whether some verifier built here checks TDX quotes (then collateral is refreshed).
    uses_tdx: AtomicBool,
    /// Workers: every certificate binds a fresh sealing key from this ring.
    sealing: Option<Arc<SealingKeyRing>>,
}

impl NodeAttestation {
    /// Builds the provider, generates the first certificate and opens the collateral store
    /// (which reads its disk cache: call this at start-up, not on a busy runtime).
    pub fn new(cfg: &AttestationConfig) -> Result<Self, ConfigError> {
        Self::build(cfg, None)
    }

    /// [`new`](Self::new) for a node that takes sealed requests (workers): every certificate,
    /// the first and each rotated one, binds a fresh X25519 key from the returned ring
    /// ([`crate::sealing`]).
    pub fn with_sealing_keys(cfg: &AttestationConfig) -> Result<Self, ConfigError> {
        Self::build(cfg, Some(Arc::new(SealingKeyRing::new())))
    }

    fn build(
        cfg: &AttestationConfig,
        sealing: Option<Arc<SealingKeyRing>>,
    ) -> Result<Self, ConfigError> {
        let provider: Arc<dyn AttestationProvider> = Arc::from(cfg.provider()?);
        let identity = RaTlsIdentity::generate_with(
            provider.as_ref(),
            &cert_options(cfg.cert_validity, sealing.as_deref()),
        )?;
        bind_sealing_key(sealing.as_deref(), &identity);
        let collateral = Arc::new(CollateralStore::new(
            cfg.pccs_url.clone(),
            cfg.collateral_cache_dir.clone(),
        ));
        Ok(Self {
            cfg: cfg.clone(),
            provider,
            slot: IdentitySlot::new(identity),
            collateral,
            uses_tdx: AtomicBool::new(false),
            sealing,
        })
    }

    /// The sealing keys of this node's certificates ([`with_sealing_keys`](Self::with_sealing_keys)).
    pub fn sealing_keys(&self) -> Option<&Arc<SealingKeyRing>> {
        self.sealing.as_ref()
    }

    /// The slot the TLS configs read at each handshake.
    pub fn slot(&self) -> &Arc<IdentitySlot> {
        &self.slot
    }

    /// The identity new handshakes present now.
    pub fn current(&self) -> RaTlsIdentity {
        self.slot.current()
    }

    /// The collateral store every TDX verifier built here reads.
    pub fn collateral(&self) -> &Arc<CollateralStore> {
        &self.collateral
    }

    /// The verifier for the configured `peer_policy`.
    pub fn verifier(&self) -> Result<Arc<dyn EvidenceVerifier>, ConfigError> {
        self.verifier_for(self.cfg.peer_policy)
    }

    /// A verifier for `choice`, sharing this node's collateral store.
    pub fn verifier_for(
        &self,
        choice: PeerPolicyChoice,
    ) -> Result<Arc<dyn EvidenceVerifier>, ConfigError> {
        if choice.verifies_tdx() {
            self.uses_tdx.store(true, Ordering::Relaxed);
        }
        self.cfg
            .verifier_with_collateral(choice, Some(self.collateral.clone()))
    }

    /// A server config presenting the current certificate at each handshake.
    pub fn server_config(
        &self,
        verifier: Arc<dyn EvidenceVerifier>,
    ) -> Result<RaTlsServerConfig, ConfigError> {
        Ok(cocoon_ratls::server_config_reloadable(
            &self.slot,
            verifier,
            &TlsOptions::default(),
        )?)
    }

    /// A client config presenting the current certificate at each handshake.
    pub fn client_config(
        &self,
        verifier: Arc<dyn EvidenceVerifier>,
    ) -> Result<RaTlsClientConfig, ConfigError> {
        Ok(cocoon_ratls::client_config_reloadable(
            &self.slot,
            verifier,
            &TlsOptions::default(),
        )?)
    }

    /// Rotates the certificate and refreshes collateral until `shutdown` fires. Spawn it where
    /// the role owns its tasks (a `JoinSet` it shuts down); it also ends on `shutdown`. Call it
    /// after building the verifiers: only then is it known whether one checks TDX quotes.
    pub fn maintain(
        &self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let rotate = rotate_loop(
            self.slot.clone(),
            self.provider.clone(),
            self.cfg.cert_validity,
            self.sealing.clone(),
            shutdown.clone(),
        );
        let refresh = self
            .uses_tdx
            .load(Ordering::Relaxed)
            .then(|| refresh_loop(self.collateral.clone(), shutdown));
        async move {
            match refresh {
                Some(refresh) => {
                    tokio::join!(rotate, refresh);
                }
                None => rotate.await,
            }
        }
    }
}

/// When the certificate ending at `not_after` (valid for `validity`) is due for replacement.
pub fn rotation_time(not_after: SystemTime, validity: Duration) -> SystemTime {
    let margin = validity * (ROTATE_AT_DEN - ROTATE_AT_NUM) / ROTATE_AT_DEN;
    not_after.checked_sub(margin).unwrap_or(not_after)
}

/// How long to wait before retrying a failed generation.
fn retry_delay(validity: Duration) -> Duration {
    (validity / 10).clamp(Duration::from_millis(100), MAX_RETRY)
}

/// Options for a certificate issued now; with a ring, a fresh sealing key held as long as the
/// certificate lasts.
fn cert_options(validity: Duration, sealing: Option<&SealingKeyRing>) -> CertOptions {
    let now = SystemTime::now();
    CertOptions {
        now: Some(now),
        sealing_key: sealing.map(|ring| ring.fresh(now + validity)),
        ..CertOptions::new(validity)
    }
}

/// Tells the ring which certificate (Ed25519 key) binds the identity's sealing key.
fn bind_sealing_key(sealing: Option<&SealingKeyRing>, identity: &RaTlsIdentity) {
    if let Some(ring) = sealing {
        ring.bind(identity);
    }
}

async fn rotate_loop(
    slot: Arc<IdentitySlot>,
    provider: Arc<dyn AttestationProvider>,
    validity: Duration,
    sealing: Option<Arc<SealingKeyRing>>,
    shutdown: CancellationToken,
) {
    loop {
        let due = rotation_time(slot.current().not_after(), validity);
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // A quote from a hardware provider blocks: `regenerate` runs it on the blocking pool.
        let fresh = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = cocoon_ratls::regenerate(provider.clone(), cert_options(validity, sealing.as_deref())) => r,
        };
        match fresh {
            Ok(identity) => {
                bind_sealing_key(sealing.as_deref(), &identity);
                let old = slot.replace(identity);
                info!(old_key = %hex::encode(old.public_key()), "RA-TLS certificate rotated");
            }
            Err(e) => {
                warn!(error = %e, "RA-TLS certificate generation failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry_delay(validity)) => {}
                }
            }
        }
    }
}

async fn refresh_loop(store: Arc<CollateralStore>, shutdown: CancellationToken) {
    if !store.can_fetch() {
        info!("no PCCS configured: TDX collateral comes from the cache only");
        return;
    }
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = store.refresh_due(SystemTime::now()) => n,
        };
        if n > 0 {
            info!(platforms = n, "TDX collateral refreshed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(COLLATERAL_REFRESH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests;
