//! Certificate rotation without dropping sessions: [`IdentitySlot`] holds the identity that
//! configs built with `server_config_reloadable` / `client_config_reloadable` present, and
//! [`regenerate`] makes a fresh one off the async runtime.
//!
//! A TLS session authenticates once, at its handshake; swapping the slot only changes what *new*
//! handshakes present, so live sessions keep running on the certificate they were opened with
//! (Cocoon's `CertManager` reloads the same way, on file change). Scheduling (Cocoon: hourly, cert
//! lifetime one day) is the caller's: a timer checks [`IdentitySlot::due_for_rotation`] and calls
//! [`regenerate`] then [`IdentitySlot::replace`]. Not here: the timer, files on disk.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use cocoon_attest::AttestationProvider;

use crate::error::RaTlsError;
use crate::identity::{CertOptions, RaTlsIdentity};

/// The current identity of a node, swappable while configs that read it are in use.
#[derive(Debug)]
pub struct IdentitySlot {
    current: RwLock<RaTlsIdentity>,
}

impl IdentitySlot {
    /// A slot holding `identity`.
    pub fn new(identity: RaTlsIdentity) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(identity),
        })
    }

    /// The identity new handshakes present.
    pub fn current(&self) -> RaTlsIdentity {
        // The lock guards a plain value swap; a poisoned lock still holds a valid identity.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs `identity` for new handshakes and returns the previous one.
    pub fn replace(&self, identity: RaTlsIdentity) -> RaTlsIdentity {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        tracing::info!(
            public_key = %hex::encode(identity.public_key()),
            "RA-TLS identity rotated"
        );
        std::mem::replace(&mut *g, identity)
    }

    /// Whether the current certificate expires within `margin` of `now`.
    pub fn due_for_rotation(&self, now: SystemTime, margin: Duration) -> bool {
        now + margin >= self.current().not_after()
    }
}

/// Generates a fresh identity with `provider` on the blocking pool (a hardware provider talks to
/// configfs-tsm, which blocks while the quote is produced).
pub async fn regenerate(
    provider: Arc<dyn AttestationProvider>,
    opts: CertOptions,
) -> Result<RaTlsIdentity, RaTlsError> {
    tokio::task::spawn_blocking(move || RaTlsIdentity::generate_with(&*provider, &opts))
        .await
        .map_err(|e| RaTlsError::CertGeneration(format!("generation task failed: {e}")))?
}
