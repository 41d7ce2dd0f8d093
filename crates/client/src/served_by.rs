//! Which workers served this client's requests, as its proxies reported them
//! (`client.queryWorkerInfoV3`, protocol 3; issue 6, "evidence up to the app"), or for a sealed
//! request as its verified receipt names it (the client's own verdict on that worker).
//!
//! Per worker (image hash + model hash): how many responses it served and when last; plus the
//! last [`RECENT`] served-by records (request id prefix, hashes, evidence digest and kind). Shown
//! in the client's `/jsonstats` and `/stats` (`served_by`) and `/metrics`
//! (`cocoon_client_served_by_responses`, `cocoon_client_served_by_last_unix`).
//!
//! Everything here comes from the network, so it is bounded: at most [`MAX_WORKERS`] distinct
//! workers (the least recently seen is forgotten first, metrics included), [`RECENT`] records,
//! and the evidence kind is reduced to a known name. Only ids and hashes are kept, never
//! prompts or completions. The app itself gets the same facts per response as the proxy's
//! `X-Cocoon-Worker-*` headers, which the client passes through untouched.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use cocoon_proto::messages::ClientQueryWorkerInfoV3;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Served-by records kept for `/jsonstats`.
pub(crate) const RECENT: usize = 32;
/// Distinct workers tallied at once.
pub(crate) const MAX_WORKERS: usize = 256;

/// Evidence kinds a proxy may report; anything else is shown as `unknown`.
const KNOWN_KINDS: &[&str] = &[
    "tdx",
    "sev-snp",
    "insecure-software",
    "insecure-software-sev",
    "none",
];

type Labels = Vec<(String, String)>;

/// A worker as the stats know it: image hash (`None` when unattested) and model hash.
type WorkerKey = (Option<[u8; 32]>, [u8; 32]);

#[derive(Clone, Debug)]
struct Tally {
    kind: &'static str,
    responses: u64,
    last_unix: i64,
}

/// One served-by record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    /// First 8 bytes of the client's request id, hex.
    pub request: String,
    pub image_hash: Option<[u8; 32]>,
    pub model_hash: [u8; 32],
    pub evidence_digest: Option<[u8; 32]>,
    pub kind: &'static str,
    pub at_unix: i64,
}

#[derive(Default)]
struct Inner {
    by_worker: HashMap<WorkerKey, Tally>,
    recent: VecDeque<Record>,
}

/// The client's served-by log (one per client, shared by every proxy link).
pub(crate) struct ServedByLog {
    inner: Mutex<Inner>,
    responses: Family<Labels, Counter>,
    last_unix: Family<Labels, Gauge>,
}

impl Default for ServedByLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ServedByLog {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            responses: Family::default(),
            last_unix: Family::default(),
        }
    }

    /// Adds the metrics to the client's registry (prefix `cocoon_client`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "served_by_responses",
            "Responses served, per worker image hash and model hash",
            self.responses.clone(),
        );
        registry.register(
            "served_by_last_unix",
            "When a worker (image hash, model hash) last served a response, unix seconds",
            self.last_unix.clone(),
        );
    }

    /// Records that `info`'s worker served a response at `now_unix`.
    pub fn record(&self, info: &ClientQueryWorkerInfoV3, now_unix: i64) {
        let kind = sanitize_kind(&info.evidence_kind);
        let key = (info.image_hash, info.model_hash);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.by_worker.contains_key(&key) && inner.by_worker.len() >= MAX_WORKERS {
            let oldest = inner
                .by_worker
                .iter()
                .min_by_key(|(_, t)| t.last_unix)
                .map(|(k, t)| (*k, t.kind));
            if let Some((old, old_kind)) = oldest {
                inner.by_worker.remove(&old);
                let labels = labels(&old, old_kind);
                self.responses.remove(&labels);
                self.last_unix.remove(&labels);
            }
        }
        let tally = inner.by_worker.entry(key).or_insert(Tally {
            kind,
            responses: 0,
            last_unix: now_unix,
        });
        // A worker's kind cannot change under the same image hash; keep the first one seen so
        // the metric labels stay stable.
        let labels = labels(&key, tally.kind);
        tally.responses += 1;
        tally.last_unix = now_unix;
        self.responses.get_or_create(&labels).inc();
        self.last_unix.get_or_create(&labels).set(now_unix);
        if inner.recent.len() >= RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(Record {
            request: hex::encode(&info.request_id[..8]),
            image_hash: info.image_hash,
            model_hash: info.model_hash,
            evidence_digest: info.evidence_digest,
            kind,
            at_unix: now_unix,
        });
    }

    /// The `served_by` part of `/jsonstats`: per worker (most recent first) and the records
    /// (newest last).
    pub fn json(&self) -> serde_json::Value {
        let Ok(inner) = self.inner.lock() else {
            return serde_json::Value::Null;
        };
        let mut workers: Vec<_> = inner.by_worker.iter().collect();
        workers.sort_by_key(|(_, t)| std::cmp::Reverse(t.last_unix));
        let workers: Vec<_> = workers
            .into_iter()
            .map(|((image, model), t)| {
                serde_json::json!({
                    "image_hash": image.map(hex::encode),
                    "model_hash": hex::encode(model),
                    "evidence": t.kind,
                    "responses": t.responses,
                    "last_unix": t.last_unix,
                })
            })
            .collect();
        let recent: Vec<_> = inner
            .recent
            .iter()
            .map(|r| {
                serde_json::json!({
                    "request": r.request,
                    "image_hash": r.image_hash.map(hex::encode),
                    "model_hash": hex::encode(r.model_hash),
                    "evidence_digest": r.evidence_digest.map(hex::encode),
                    "evidence": r.kind,
                    "at_unix": r.at_unix,
                })
            })
            .collect();
        serde_json::json!({"workers": workers, "recent": recent})
    }

    #[cfg(test)]
    fn recent(&self) -> Vec<Record> {
        self.inner
            .lock()
            .map(|i| i.recent.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn labels(key: &WorkerKey, kind: &str) -> Labels {
    vec![
        (
            "image_hash".into(),
            key.0.map(hex::encode).unwrap_or_else(|| "none".into()),
        ),
        ("model_hash".into(), hex::encode(key.1)),
        ("evidence".into(), kind.into()),
    ]
}

fn sanitize_kind(kind: &str) -> &'static str {
    KNOWN_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(req: u8, image: Option<u8>, model: u8, kind: &str) -> ClientQueryWorkerInfoV3 {
        ClientQueryWorkerInfoV3::new(
            [req; 32],
            kind.into(),
            [model; 32],
            image.map(|i| [i; 32]),
            image.map(|i| [i ^ 0xff; 32]),
        )
    }

    fn metrics(log: &ServedByLog) -> String {
        let mut reg = Registry::with_prefix("cocoon_client");
        log.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
        out
    }

    #[test]
    fn tallies_per_worker_and_keeps_records() {
        let log = ServedByLog::new();
        log.record(&info(1, Some(0xaa), 1, "tdx"), 100);
        log.record(&info(2, Some(0xaa), 1, "tdx"), 105);
        log.record(&info(3, None, 2, "none"), 103);
        let j = log.json();
        let workers = j["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 2);
        // Most recently seen first.
        assert_eq!(workers[0]["image_hash"], "aa".repeat(32));
        assert_eq!(workers[0]["responses"], 2);
        assert_eq!(workers[0]["last_unix"], 105);
        assert_eq!(workers[0]["evidence"], "tdx");
        assert!(workers[1]["image_hash"].is_null());
        let recent = j["recent"].as_array().expect("recent");
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0]["request"], "01".repeat(8));
        assert_eq!(recent[0]["evidence_digest"], "55".repeat(32));
        assert_eq!(recent[2]["model_hash"], "02".repeat(32));
        let m = metrics(&log);
        assert!(
            m.contains(&format!(
                "cocoon_client_served_by_responses_total{{image_hash=\"{}\",model_hash=\"{}\",evidence=\"tdx\"}} 2",
                "aa".repeat(32),
                "01".repeat(32)
            )),
            "{m}"
        );
    }

    #[test]
    fn records_are_bounded() {
        let log = ServedByLog::new();
        for i in 0..(RECENT as u8 + 5) {
            log.record(&info(i, Some(1), 1, "tdx"), i64::from(i));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].request, hex::encode([5u8; 8]));
    }

    #[test]
    fn workers_are_bounded_and_the_oldest_goes_first() {
        let log = ServedByLog::new();
        for i in 0..MAX_WORKERS + 3 {
            let mut m = info(0, Some(1), 0, "tdx");
            m.model_hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            log.record(&m, i as i64);
        }
        let j = log.json();
        let workers = j["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), MAX_WORKERS);
        // Workers 0, 1, 2 (the least recent) were forgotten, also in the metrics.
        assert!(workers.iter().all(|w| w["last_unix"].as_i64() >= Some(3)));
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(!metrics(&log).contains(&hex::encode(first)));
    }

    #[test]
    fn unknown_kinds_are_not_echoed() {
        let log = ServedByLog::new();
        log.record(&info(1, None, 1, "<script>\n"), 1);
        assert_eq!(log.recent()[0].kind, "unknown");
        log.record(&info(2, Some(3), 1, "sev-snp"), 2);
        assert_eq!(log.recent()[1].kind, "sev-snp");
    }
}
