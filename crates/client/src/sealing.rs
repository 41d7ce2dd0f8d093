//! The client's own verdict on the workers it seals requests to (the sealed path,
//! docs/PRIVACY.md).
//!
//! The proxy lists candidate workers (`client.getSealingCandidatesV3`): each one's DER RA-TLS
//! certificate and the model it serves. The proxy is a stranger, so nothing it says is taken on
//! trust: each certificate is verified here with the same checks a node runs on a peer
//! (`cocoon_ratls::inspect_cert` with this client's attestation policy), its image hash checked
//! against the root's worker images (chain on) or `[privacy] allowed_worker_images`, the model
//! against the root's model hashes (chain on) and the model asked for, and it must bind a sealing
//! key. Verdicts are cached by the certificate's hash until `verdict_ttl` or the certificate's
//! expiry, whichever comes first; refusals are cached too (a proxy cannot make the client verify
//! the same bad certificate over and over). The cache is bounded ([`MAX_VERDICTS`]).
//!
//! Not here: sealing itself (`cocoon-sealed`), the HTTP path (`http.rs`), receipts
//! (`receipts.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{EvidenceKind, EvidenceVerifier};
use cocoon_onchain::registry::{ImageKind, Registry};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};

/// Most cached verdicts (positive and negative).
pub(crate) const MAX_VERDICTS: usize = 1024;
/// How long a refusal is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(60);
/// Longest model string accepted from a proxy.
const MAX_MODEL_LEN: usize = 512;

/// A worker whose certificate this client verified itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedWorker {
    /// The Ed25519 key of its RA-TLS certificate (its identity in envelopes and receipts).
    pub worker_key: [u8; 32],
    /// The X25519 key its certificate binds.
    pub sealing_key: [u8; 32],
    pub kind: EvidenceKind,
    pub image_hash: Option<[u8; 32]>,
    pub evidence_digest: Option<[u8; 32]>,
    /// The full model string the proxy said it serves, and its SHA-256 (as the root hashes it).
    pub model: String,
    pub model_hash: [u8; 32],
    /// When this verdict stops counting.
    pub until: SystemTime,
    /// The DER certificate verified (kept with receipts, for offline checks).
    pub certificate: Arc<[u8]>,
}

#[derive(Clone)]
enum Verdict {
    Ok(VerifiedWorker),
    Refused { why: String, until: SystemTime },
}

/// Counters shown on the stats page and `/metrics`.
#[derive(Default)]
pub(crate) struct VerifierStats {
    /// Certificates verified from scratch.
    pub cold: Counter,
    /// Verdicts taken from the cache.
    pub cached: Counter,
    /// Candidates refused (bad or unregistered evidence, no sealing key, wrong model).
    pub refused: Counter,
}

/// Verifies candidate workers and caches the verdicts.
pub(crate) struct WorkerVerifier {
    evidence: Arc<dyn EvidenceVerifier>,
    allowed_images: Vec<String>,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Verdict>>,
    pub stats: VerifierStats,
}

impl WorkerVerifier {
    pub fn new(
        evidence: Arc<dyn EvidenceVerifier>,
        allowed_images: Vec<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            evidence,
            allowed_images,
            ttl,
            cache: Mutex::new(HashMap::new()),
            stats: VerifierStats::default(),
        }
    }

    /// The verdict on one candidate for a request asking for `model_base`: the certificate
    /// (cached), then the model and the registry's current lists (every time, they change).
    pub fn verify(
        &self,
        certificate: &[u8],
        model: &str,
        model_base: &str,
        registry: Option<&Registry>,
        now: SystemTime,
    ) -> Result<VerifiedWorker, String> {
        self.verify_inner(certificate, model, model_base, registry, now)
            .inspect_err(|_| {
                self.stats.refused.inc();
            })
    }

    fn verify_inner(
        &self,
        certificate: &[u8],
        model: &str,
        model_base: &str,
        registry: Option<&Registry>,
        now: SystemTime,
    ) -> Result<VerifiedWorker, String> {
        if model.len() > MAX_MODEL_LEN {
            return Err("model string too long".into());
        }
        if model.split('@').next() != Some(model_base) {
            return Err(format!(
                "the candidate serves another model than {model_base}"
            ));
        }
        let id: [u8; 32] = Sha256::digest(certificate).into();
        let cached = self.cache.lock().ok().and_then(|c| c.get(&id).cloned());
        let mut worker = match cached {
            Some(Verdict::Ok(w)) if w.until > now => {
                self.stats.cached.inc();
                w
            }
            Some(Verdict::Refused { why, until }) if until > now => {
                self.stats.cached.inc();
                return Err(why);
            }
            _ => {
                self.stats.cold.inc();
                let verdict = self.check_certificate(certificate, now);
                let until = match &verdict {
                    Ok(w) => w.until,
                    Err(_) => now + REFUSAL_TTL,
                };
                self.remember(
                    id,
                    match &verdict {
                        Ok(w) => Verdict::Ok(w.clone()),
                        Err(why) => Verdict::Refused {
                            why: why.clone(),
                            until,
                        },
                    },
                    now,
                );
                verdict?
            }
        };
        if let Some(reg) = registry {
            reg.check_image(ImageKind::Worker, worker.image_hash.as_ref())?;
            if !reg.allows_model(model) {
                return Err(format!(
                    "model {model} is not in the root contract's registry"
                ));
            }
        }
        worker.model = model.to_string();
        worker.model_hash = Sha256::digest(model.as_bytes()).into();
        Ok(worker)
    }

    /// What the certificate alone proves.
    fn check_certificate(&self, der: &[u8], now: SystemTime) -> Result<VerifiedWorker, String> {
        let peer = cocoon_ratls::inspect_cert(der, &*self.evidence, now)
            .map_err(|e| format!("worker certificate refused: {e}"))?;
        cocoon_node::net::check_image(&self.allowed_images, &peer)?;
        let sealing_key = peer
            .sealing_key
            .ok_or("the worker's certificate binds no sealing key")?;
        let not_after = peer
            .not_after
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .unwrap_or(now);
        Ok(VerifiedWorker {
            worker_key: peer.public_key,
            sealing_key,
            kind: peer.kind,
            image_hash: peer.image_hash,
            evidence_digest: peer.evidence_digest,
            model: String::new(),
            model_hash: [0; 32],
            until: not_after.min(now + self.ttl),
            certificate: Arc::from(der),
        })
    }

    fn remember(&self, id: [u8; 32], verdict: Verdict, now: SystemTime) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_VERDICTS {
            cache.retain(|_, v| match v {
                Verdict::Ok(w) => w.until > now,
                Verdict::Refused { until, .. } => *until > now,
            });
        }
        if cache.len() >= MAX_VERDICTS {
            // Still full of live verdicts: forget one (they are cheap to redo).
            if let Some(k) = cache.keys().next().copied() {
                cache.remove(&k);
            }
        }
        cache.insert(id, verdict);
    }

    /// Verdicts cached now (stats).
    pub fn cached_verdicts(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// How long the verified candidates of one (proxy, model) are reused before the proxy is asked
/// again: a candidates query costs a round trip before the request; within this time the proxy
/// still picks among the same k workers by their load.
pub(crate) const CANDIDATES_TTL: Duration = Duration::from_secs(2);
/// Most (proxy, model) pairs whose candidates are remembered.
const MAX_CANDIDATE_SETS: usize = 256;

/// When a candidate set was verified, and the set.
type CandidateSet = (std::time::Instant, Vec<VerifiedWorker>);

/// Recently verified candidates per (proxy address, model).
#[derive(Default)]
pub(crate) struct CandidateCache {
    sets: Mutex<HashMap<(String, String), CandidateSet>>,
}

impl CandidateCache {
    /// The candidates verified for `proxy` and `model` within [`CANDIDATES_TTL`] of `now`, each
    /// still within its verdict's life.
    pub fn get(
        &self,
        proxy: &str,
        model: &str,
        now: std::time::Instant,
        wall: SystemTime,
    ) -> Option<Vec<VerifiedWorker>> {
        let sets = self.sets.lock().ok()?;
        let (at, set) = sets.get(&(proxy.to_string(), model.to_string()))?;
        (now.duration_since(*at) < CANDIDATES_TTL && set.iter().all(|w| w.until > wall))
            .then(|| set.clone())
    }

    pub fn put(&self, proxy: &str, model: &str, now: std::time::Instant, set: Vec<VerifiedWorker>) {
        let Ok(mut sets) = self.sets.lock() else {
            return;
        };
        if sets.len() >= MAX_CANDIDATE_SETS {
            sets.retain(|_, (at, _)| now.duration_since(*at) < CANDIDATES_TTL);
        }
        if sets.len() < MAX_CANDIDATE_SETS {
            sets.insert((proxy.to_string(), model.to_string()), (now, set));
        }
    }

    /// Forgets the candidates of `proxy` and `model` (a request sealed to them found none ready).
    pub fn forget(&self, proxy: &str, model: &str) {
        if let Ok(mut sets) = self.sets.lock() {
            sets.remove(&(proxy.to_string(), model.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_attest::{InsecureSoftwareTdx, NetworkKind, NoEvidence, Policy};
    use cocoon_ratls::{CertOptions, RaTlsIdentity};

    fn worker_cert(sealing: Option<[u8; 32]>, validity: Duration) -> RaTlsIdentity {
        RaTlsIdentity::generate_with(
            &InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap(),
            &CertOptions {
                sealing_key: sealing,
                ..CertOptions::new(validity)
            },
        )
        .unwrap()
    }

    fn verifier(allowed: Vec<String>) -> WorkerVerifier {
        WorkerVerifier::new(
            Arc::new(Policy::insecure_software(NetworkKind::Dev).unwrap()),
            allowed,
            Duration::from_secs(600),
        )
    }

    #[test]
    fn an_attested_certificate_with_a_sealing_key_is_verified_then_cached() {
        let v = verifier(Vec::new());
        let id = worker_cert(Some([3; 32]), Duration::from_secs(3600));
        let now = SystemTime::now();
        let w = v.verify(id.cert_der(), "m@1:2", "m", None, now).unwrap();
        assert_eq!(w.worker_key, id.public_key());
        assert_eq!(w.sealing_key, [3; 32]);
        assert_eq!(w.kind, EvidenceKind::InsecureSoftware);
        assert!(w.image_hash.is_some());
        assert_eq!(w.model_hash, <[u8; 32]>::from(Sha256::digest(b"m@1:2")));
        assert!(w.until <= now + Duration::from_secs(600));
        assert_eq!(v.stats.cold.get(), 1);
        let again = v.verify(id.cert_der(), "m@1:2", "m", None, now).unwrap();
        assert_eq!(again, w);
        assert_eq!((v.stats.cold.get(), v.stats.cached.get()), (1, 1));
        // Past the verdict's life it is verified again.
        v.verify(
            id.cert_der(),
            "m@1:2",
            "m",
            None,
            now + Duration::from_secs(601),
        )
        .unwrap();
        assert_eq!(v.stats.cold.get(), 2);
    }

    #[test]
    fn a_verdict_never_outlives_its_certificate() {
        let v = verifier(Vec::new());
        let id = worker_cert(Some([3; 32]), Duration::from_secs(30));
        let now = SystemTime::now();
        let w = v.verify(id.cert_der(), "m", "m", None, now).unwrap();
        assert!(w.until <= now + Duration::from_secs(31));
    }

    #[test]
    fn candidates_that_prove_too_little_are_refused_and_remembered() {
        let v = verifier(Vec::new());
        let now = SystemTime::now();
        // No sealing key.
        let plain = worker_cert(None, Duration::from_secs(3600));
        let e = v.verify(plain.cert_der(), "m", "m", None, now).unwrap_err();
        assert!(e.contains("no sealing key"), "{e}");
        // No evidence at all (the policy wants insecure-software evidence at least).
        let bare = RaTlsIdentity::generate_with(
            &NoEvidence,
            &CertOptions {
                sealing_key: Some([1; 32]),
                ..CertOptions::new(Duration::from_secs(3600))
            },
        )
        .unwrap();
        assert!(v.verify(bare.cert_der(), "m", "m", None, now).is_err());
        // Garbage from the proxy.
        assert!(v.verify(b"not a certificate", "m", "m", None, now).is_err());
        // Another model than asked.
        let good = worker_cert(Some([3; 32]), Duration::from_secs(3600));
        assert!(v
            .verify(good.cert_der(), "other@1", "m", None, now)
            .is_err());
        assert_eq!(v.stats.refused.get(), 4);
        // The refusal is cached: no second cold check of the same bytes.
        let cold = v.stats.cold.get();
        assert!(v.verify(plain.cert_der(), "m", "m", None, now).is_err());
        assert_eq!(v.stats.cold.get(), cold);
    }

    #[test]
    fn an_image_outside_the_allowlist_is_refused() {
        let v = verifier(vec![hex::encode([0xee; 32])]);
        let id = worker_cert(Some([3; 32]), Duration::from_secs(3600));
        let e = v
            .verify(id.cert_der(), "m", "m", None, SystemTime::now())
            .unwrap_err();
        assert!(e.contains("allowlist"), "{e}");
    }

    #[test]
    fn candidate_sets_are_reused_briefly_and_forgotten_on_demand() {
        let v = verifier(Vec::new());
        let id = worker_cert(Some([3; 32]), Duration::from_secs(3600));
        let wall = SystemTime::now();
        let w = v.verify(id.cert_der(), "m", "m", None, wall).unwrap();
        let cache = CandidateCache::default();
        let t = std::time::Instant::now();
        cache.put("p:1", "m", t, vec![w.clone()]);
        assert_eq!(cache.get("p:1", "m", t, wall), Some(vec![w.clone()]));
        assert_eq!(cache.get("p:2", "m", t, wall), None, "per proxy");
        assert_eq!(cache.get("p:1", "n", t, wall), None, "per model");
        assert_eq!(
            cache.get("p:1", "m", t + CANDIDATES_TTL, wall),
            None,
            "stale"
        );
        assert_eq!(cache.get("p:1", "m", t, w.until), None, "verdict expired");
        cache.forget("p:1", "m");
        assert_eq!(cache.get("p:1", "m", t, wall), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let v = verifier(Vec::new());
        let now = SystemTime::now();
        for i in 0..(MAX_VERDICTS + 10) {
            let _ = v.verify(&i.to_le_bytes(), "m", "m", None, now);
        }
        assert!(v.cached_verdicts() <= MAX_VERDICTS);
    }

    /// A micro-benchmark, not a test (timings never gate anything; docs/BENCHMARKS.md, "Sealed
    /// path"): `WorkerVerifier::verify` of one worker certificate (insecure-software evidence,
    /// the dev network's) from scratch (a new verifier and attestation policy each call, so no
    /// cache of either is warm) vs from the verdict cache. Run it in release:
    /// `cargo test --release -p cocoon-client --lib sealing::tests::bench_verify -- --ignored --nocapture`
    #[test]
    #[ignore = "micro-benchmark: prints timings"]
    fn bench_verify_cold_vs_cached() {
        use std::time::Instant;
        fn row(name: &str, mut ns: Vec<u128>) {
            ns.sort_unstable();
            let pick = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
            let mean = ns.iter().sum::<u128>() as f64 / ns.len() as f64 / 1000.0;
            println!(
                "| {name} | {} | {:.2} µs | {mean:.2} µs | {:.2} µs |",
                ns.len(),
                pick(0.5),
                pick(0.99)
            );
        }
        let id = worker_cert(Some([3; 32]), Duration::from_secs(3600));
        let now = SystemTime::now();
        let mut cold = Vec::new();
        for _ in 0..300 {
            let v = verifier(Vec::new());
            let t = Instant::now();
            let w = v.verify(id.cert_der(), "mock@1", "mock", None, now);
            cold.push(t.elapsed().as_nanos());
            assert!(w.is_ok() && v.stats.cold.get() == 1);
        }
        let v = verifier(Vec::new());
        v.verify(id.cert_der(), "mock@1", "mock", None, now)
            .unwrap();
        let mut cached = Vec::new();
        for _ in 0..100_000 {
            let t = Instant::now();
            let w = v.verify(id.cert_der(), "mock@1", "mock", None, now);
            cached.push(t.elapsed().as_nanos());
            assert!(w.is_ok());
        }
        assert_eq!(v.stats.cold.get(), 1);
        println!(
            "| WorkerVerifier::verify | calls | p50 | mean | p99 |\n|---|---:|---:|---:|---:|"
        );
        row("cold (new verifier and policy)", cold);
        row("cached verdict", cached);
    }
}
