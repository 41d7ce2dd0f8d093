//! Who gets keys: the check applied to every key query, on top of the TLS policy that let the
//! peer in at all.
//!
//! A proxy query (`keyManager.getProxyPrivateKeys`) needs a peer attested with a proxy image,
//! a worker query (`keyManager.getWorkerPrivateKeys`) one with a worker image: with the chain
//! on, the root's `proxy_hashes` / `worker_hashes` (read on every query, so a registry change
//! applies at once); the config allowlists (`allowed_proxy_images`, `allowed_worker_images`)
//! must match too when set; with neither, any peer the TLS policy accepted.

use cocoon_attest::{AttestedPeer, ImageHashPattern};
use cocoon_onchain::registry::ImageKind;
use cocoon_onchain::RegistryWatch;

/// Which query a peer sent: whose keys it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// `keyManager.getProxyPrivateKeys`.
    Proxy,
    /// `keyManager.getWorkerPrivateKeys`.
    Worker,
}

impl Audience {
    pub const ALL: [Audience; 2] = [Audience::Proxy, Audience::Worker];

    pub fn name(self) -> &'static str {
        match self {
            Audience::Proxy => "proxy",
            Audience::Worker => "worker",
        }
    }

    fn image_kind(self) -> ImageKind {
        match self {
            Audience::Proxy => ImageKind::Proxy,
            Audience::Worker => ImageKind::Worker,
        }
    }
}

/// Why a peer gets no keys.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The root's registry does not list the peer's image for this audience (the text names
    /// the image and the registry version).
    #[error("{0}")]
    Registry(String),
    /// The config allowlist does not list the peer's image.
    #[error("{audience} image {image} is not in allowed_{audience}_images")]
    Allowlist {
        audience: &'static str,
        image: String,
    },
    /// An allowlist is set and the peer presented no attested image.
    #[error("no attested image; allowed_{audience}_images requires one")]
    NoImage { audience: &'static str },
}

/// The image rules of one key manager.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    pub allowed_proxy: Vec<ImageHashPattern>,
    pub allowed_worker: Vec<ImageHashPattern>,
    /// With the chain on: the root's registry.
    pub registry: Option<RegistryWatch>,
}

// === impl AccessPolicy ===

impl AccessPolicy {
    /// Whether `peer` may have the keys of `audience`.
    pub fn check(&self, audience: Audience, peer: &AttestedPeer) -> Result<(), Refusal> {
        if let Some(r) = &self.registry {
            r.current()
                .check_image(audience.image_kind(), peer.image_hash.as_ref())
                .map_err(Refusal::Registry)?;
        }
        let allowed = match audience {
            Audience::Proxy => &self.allowed_proxy,
            Audience::Worker => &self.allowed_worker,
        };
        if allowed.is_empty() {
            return Ok(());
        }
        let Some(image) = peer.image_hash else {
            return Err(Refusal::NoImage {
                audience: audience.name(),
            });
        };
        if allowed.iter().any(|p| p.allows(peer)) {
            Ok(())
        } else {
            Err(Refusal::Allowlist {
                audience: audience.name(),
                image: format!("{} ({} evidence)", hex::encode(image), peer.kind),
            })
        }
    }

    /// Whether `peer` may have any keys at all (else its session is short-lived).
    pub fn allows_any(&self, peer: &AttestedPeer) -> bool {
        Audience::ALL.iter().any(|a| self.check(*a, peer).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cocoon_attest::{EvidenceKind, INSECURE_SOFTWARE_IMAGE_HASH};
    use cocoon_onchain::Registry;
    use cocoon_ton::contracts::{CocoonParams, ParamsCodes, RootState};
    use cocoon_ton::TonAddress;

    use super::*;

    fn peer(kind: EvidenceKind, image: Option<[u8; 32]>) -> AttestedPeer {
        AttestedPeer {
            kind,
            image_hash: image,
            ..AttestedPeer::unattested([1; 32])
        }
    }

    fn registry(proxies: Vec<[u8; 32]>, workers: Vec<[u8; 32]>) -> RegistryWatch {
        let owner = TonAddress::new(0, [0x11; 32]);
        RegistryWatch::fixed(Registry {
            root: owner,
            state: Arc::new(RootState {
                owner,
                version: 4,
                proxy_hashes: proxies,
                proxies: Vec::new(),
                last_proxy_seqno: 0,
                worker_hashes: workers,
                model_hashes: Vec::new(),
                params: CocoonParams::default(),
                codes: ParamsCodes::default(),
                key_manager: None,
                verified_keys: None,
            }),
        })
    }

    fn open() -> AccessPolicy {
        AccessPolicy {
            allowed_proxy: Vec::new(),
            allowed_worker: Vec::new(),
            registry: None,
        }
    }

    #[test]
    fn without_lists_any_peer_the_tls_policy_let_in_is_served() {
        let p = peer(EvidenceKind::InsecureSoftware, None);
        assert!(open().check(Audience::Proxy, &p).is_ok());
        assert!(open().allows_any(&p));
    }

    #[test]
    fn allowlists_are_per_audience_and_per_tee_family() {
        let dev = INSECURE_SOFTWARE_IMAGE_HASH;
        let policy = AccessPolicy {
            allowed_proxy: vec![format!("tdx@{}", hex::encode(dev)).parse().expect("entry")],
            allowed_worker: vec![ImageHashPattern::any([7; 32])],
            registry: None,
        };
        let tdx = peer(EvidenceKind::InsecureSoftware, Some(dev));
        assert!(policy.check(Audience::Proxy, &tdx).is_ok());
        let e = policy
            .check(Audience::Worker, &tdx)
            .expect_err("not a worker image");
        assert!(
            matches!(
                e,
                Refusal::Allowlist {
                    audience: "worker",
                    ..
                }
            ),
            "{e}"
        );
        // The same hash from another TEE family is not the allowed proxy image.
        let sev = peer(EvidenceKind::InsecureSoftwareSev, Some(dev));
        assert!(policy.check(Audience::Proxy, &sev).is_err());
        assert!(!policy.allows_any(&sev));
        let none = peer(EvidenceKind::None, None);
        assert!(matches!(
            policy.check(Audience::Proxy, &none),
            Err(Refusal::NoImage { .. })
        ));
    }

    #[test]
    fn with_the_chain_the_roots_lists_decide() {
        let policy = AccessPolicy {
            registry: Some(registry(vec![[1; 32]], vec![[2; 32]])),
            ..open()
        };
        let proxy = peer(EvidenceKind::Tdx, Some([1; 32]));
        let worker = peer(EvidenceKind::Tdx, Some([2; 32]));
        assert!(policy.check(Audience::Proxy, &proxy).is_ok());
        assert!(policy.check(Audience::Worker, &worker).is_ok());
        let e = policy
            .check(Audience::Proxy, &worker)
            .expect_err("worker image");
        assert!(matches!(e, Refusal::Registry(_)), "{e}");
        assert!(
            e.to_string()
                .contains("not in the root contract's registry"),
            "{e}"
        );
        assert!(policy.check(Audience::Worker, &proxy).is_err());
        assert!(!policy.allows_any(&peer(EvidenceKind::Tdx, Some([3; 32]))));
    }
}
