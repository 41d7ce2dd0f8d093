//! [`CollateralStore`]: DCAP collateral (TCB info, QE identity, CRLs and their issuer chains) per
//! platform (FMSPC + PCK CA), kept in memory, mirrored to an on-disk cache, and fetched from a
//! configurable PCCS.
//!
//! Trust: the PCCS is not trusted. Everything it returns is signed by Intel and checked by
//! dcap-qvl against Intel's root, whose key id the verifier pins (cocoon-notes §6), so a lying PCCS
//! can only make verification fail. The disk cache is likewise only a cache.
//!
//! Freshness: each entry learns its expiry (the earliest `nextUpdate`/`notAfter` over all its
//! parts, as dcap-qvl computes it) from the first verification that uses it. An entry within
//! `refresh_margin` of its expiry is refreshed by the verifier before use when it can, and by
//! [`CollateralStore::refresh_due`], which a node's timer should call (the lead wires it).
//!
//! HTTP: PCCS v4 API (`/sgx/certification/v4/pckcrl`, `/tdx/certification/v4/tcb`,
//! `/tdx/certification/v4/qe/identity`, `/sgx/certification/v4/rootcacrl`), bounded response
//! sizes, a per-request timeout. reqwest runs with rustls and no built-in provider, so ring's is
//! installed as the process default on first fetch if none is installed yet.
//! Not here: verification itself (`dcap`), policy.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dcap_qvl::QuoteCollateralV3;

use crate::error::AttestError;
use crate::evidence::{EvidenceKind, MAX_QUOTE_LEN};

/// Largest PCCS response body accepted (real ones are a few KiB; CRLs can grow).
const MAX_PCCS_BODY: usize = 1024 * 1024;
/// Largest collateral cache file read back.
const MAX_CACHE_FILE: u64 = 4 * 1024 * 1024;
/// Most platforms remembered (a network has a handful of FMSPCs).
const MAX_ENTRIES: usize = 1024;

/// Which platform collateral is for: FMSPC (upper-case hex) and PCK CA (`processor` / `platform`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollateralKey {
    /// FMSPC of the quote's PCK certificate, 12 upper-case hex digits.
    pub fmspc: String,
    /// PCK issuing CA as PCCS names it.
    pub ca: String,
}

impl CollateralKey {
    /// The key for a raw TDX quote (read from the PCK certificate embedded in the quote).
    pub fn for_quote(quote: &[u8]) -> Result<Self, AttestError> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(AttestError::QuoteTooLarge {
                len: quote.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let malformed = |reason: String| AttestError::MalformedQuote {
            kind: EvidenceKind::Tdx,
            reason,
        };
        let parsed =
            dcap_qvl::quote::Quote::parse(quote).map_err(|e| malformed(format!("{e:#}")))?;
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| malformed(format!("no FMSPC: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| malformed(format!("no PCK CA: {e:#}")))?;
        Ok(Self {
            fmspc: hex::encode_upper(fmspc),
            ca: ca.as_id_str().to_owned(),
        })
    }

    fn file_name(&self) -> Option<String> {
        // Both parts come from a quote: only let plain names reach the file system.
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        (ok(&self.fmspc) && ok(&self.ca)).then(|| format!("tdx-{}-{}.json", self.fmspc, self.ca))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    collateral: Arc<QuoteCollateralV3>,
    expires_at: Option<SystemTime>,
}

/// Collateral per platform: memory, disk cache, PCCS.
#[derive(Debug)]
pub struct CollateralStore {
    pccs_url: Option<String>,
    cache_dir: Option<PathBuf>,
    refresh_margin: Duration,
    timeout: Duration,
    entries: Mutex<HashMap<CollateralKey, Entry>>,
    /// Platforms a verification needed but could not fetch itself; `refresh_due` fetches them.
    wanted: Mutex<HashSet<CollateralKey>>,
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub struct Lookup {
    /// The collateral, if any is held (possibly stale).
    pub collateral: Option<Arc<QuoteCollateralV3>>,
    /// Whether it should be (re)fetched before use: missing, or within the refresh margin.
    pub needs_fetch: bool,
}

impl CollateralStore {
    /// Default: refresh collateral an hour before it expires.
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(3600);
    /// Default PCCS request timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

    /// A store with no PCCS and no disk: only collateral given with [`insert`](Self::insert).
    pub fn offline() -> Self {
        Self {
            pccs_url: None,
            cache_dir: None,
            refresh_margin: Self::DEFAULT_REFRESH_MARGIN,
            timeout: Self::DEFAULT_TIMEOUT,
            entries: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashSet::new()),
        }
    }

    /// A store fetching from `pccs_url` (e.g. `https://pccs.example:8081`), mirrored to
    /// `cache_dir` if given. Reads the disk cache now (blocking file I/O: call it at startup or in
    /// `spawn_blocking`); unreadable cache files are skipped with a warning.
    pub fn new(pccs_url: Option<String>, cache_dir: Option<PathBuf>) -> Self {
        let store = Self {
            pccs_url: pccs_url.map(|u| u.trim_end_matches('/').to_owned()),
            cache_dir,
            ..Self::offline()
        };
        if let Some(dir) = &store.cache_dir {
            store.load_dir(dir);
        }
        store
    }

    /// Sets how long before expiry collateral is refreshed.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Whether a PCCS is configured.
    pub fn can_fetch(&self) -> bool {
        self.pccs_url.is_some()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CollateralKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, HashSet<CollateralKey>> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load_dir(&self, dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for ent in rd.flatten().take(MAX_ENTRIES) {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_prefix("tdx-")
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Some((fmspc, ca)) = stem.split_once('-') else {
                continue;
            };
            let key = CollateralKey {
                fmspc: fmspc.to_owned(),
                ca: ca.to_owned(),
            };
            match read_bounded(&ent.path()).and_then(|b| parse_collateral(&b)) {
                Ok(c) => self.insert(key, c),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "skipping unreadable collateral cache file")
                }
            }
        }
    }

    /// Adds (or replaces) collateral for a platform; its expiry is learnt on first use.
    pub fn insert(&self, key: CollateralKey, collateral: QuoteCollateralV3) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            tracing::warn!("collateral store full; not caching another platform");
            return;
        }
        entries.insert(
            key,
            Entry {
                collateral: Arc::new(collateral),
                expires_at: None,
            },
        );
    }

    /// Records when the collateral for `key` expires (as verification computed it).
    pub fn note_expiry(&self, key: &CollateralKey, expires_at: SystemTime) {
        if let Some(e) = self.entries().get_mut(key) {
            e.expires_at = Some(expires_at);
        }
    }

    /// The collateral for `key`, and whether it is due for a fetch at `now`.
    pub fn lookup(&self, key: &CollateralKey, now: SystemTime) -> Lookup {
        match self.entries().get(key) {
            None => Lookup {
                collateral: None,
                needs_fetch: true,
            },
            Some(e) => Lookup {
                collateral: Some(e.collateral.clone()),
                needs_fetch: e
                    .expires_at
                    .is_some_and(|exp| now + self.refresh_margin >= exp),
            },
        }
    }

    /// Remembers that `key` is needed, for the next [`refresh_due`](Self::refresh_due).
    pub fn want(&self, key: CollateralKey) {
        let mut w = self.wanted();
        if w.len() < MAX_ENTRIES {
            w.insert(key);
        }
    }

    /// Fetches what is wanted or due for refresh at `now`; returns how many platforms were
    /// refreshed. Failures are logged and left for the next call. A node calls this on a timer.
    pub async fn refresh_due(&self, now: SystemTime) -> usize {
        if !self.can_fetch() {
            return 0;
        }
        let mut keys: Vec<CollateralKey> = self.wanted().drain().collect();
        keys.extend(
            self.entries()
                .iter()
                .filter(|(_, e)| {
                    e.expires_at
                        .is_some_and(|exp| now + self.refresh_margin >= exp)
                })
                .map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        let mut n = 0;
        for key in keys {
            match self.fetch(&key).await {
                Ok(_) => n += 1,
                Err(e) => {
                    tracing::warn!(fmspc = %key.fmspc, error = %e, "collateral refresh failed")
                }
            }
        }
        n
    }

    /// Fetches collateral for `key` from the PCCS, stores it in memory and on disk.
    pub async fn fetch(&self, key: &CollateralKey) -> Result<Arc<QuoteCollateralV3>, AttestError> {
        let base = self
            .pccs_url
            .as_deref()
            .ok_or_else(|| AttestError::CollateralUnavailable("no PCCS configured".into()))?;
        let started = std::time::Instant::now();
        let collateral = fetch_from_pccs(base, key, self.timeout).await?;
        tracing::info!(fmspc = %key.fmspc, ca = %key.ca, elapsed_ms = started.elapsed().as_millis() as u64, "fetched TDX collateral");
        if let (Some(dir), Some(name)) = (&self.cache_dir, key.file_name()) {
            if let Err(e) = write_cache_file(dir, &name, &collateral).await {
                tracing::warn!(error = %e, "could not write collateral cache");
            }
        }
        let arc = Arc::new(collateral);
        self.entries().insert(
            key.clone(),
            Entry {
                collateral: arc.clone(),
                expires_at: None,
            },
        );
        Ok(arc)
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> AttestError {
    AttestError::CollateralUnavailable(format!("{what}: {e}"))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, AttestError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| io_err("open cache file", e))?;
    let mut buf = Vec::new();
    f.take(MAX_CACHE_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("read cache file", e))?;
    if buf.len() as u64 > MAX_CACHE_FILE {
        return Err(io_err("cache file", "too large"));
    }
    Ok(buf)
}

/// Parses collateral JSON in dcap-qvl's format (what its samples and our cache files hold).
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, AttestError> {
    serde_json::from_slice(json).map_err(|e| io_err("collateral JSON", e))
}

async fn write_cache_file(
    dir: &Path,
    name: &str,
    c: &QuoteCollateralV3,
) -> Result<(), AttestError> {
    let json = serde_json::to_vec(c).map_err(|e| io_err("encode collateral", e))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io_err("create cache dir", e))?;
    // Write-then-rename so a crash never leaves a half-written file that would be loaded later.
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, &json)
        .await
        .map_err(|e| io_err("write cache file", e))?;
    tokio::fs::rename(&tmp, dir.join(name))
        .await
        .map_err(|e| io_err("rename cache file", e))
}

struct Response {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Response, AttestError> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| io_err(&format!("GET {url}"), e))?;
    if !resp.status().is_success() {
        return Err(io_err(&format!("GET {url}"), resp.status()));
    }
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| io_err(&format!("GET {url}"), e))?
    {
        if body.len() + chunk.len() > MAX_PCCS_BODY {
            return Err(io_err(&format!("GET {url}"), "response too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { body, headers })
}

fn header(r: &Response, names: &[&str]) -> Result<String, AttestError> {
    for n in names {
        if let Some(v) = r.headers.get(*n) {
            let v = v.to_str().map_err(|e| io_err(n, e))?;
            return Ok(percent_decode(v));
        }
    }
    Err(io_err(
        "PCCS response",
        format!("missing header {}", names.join(" / ")),
    ))
}

/// PCCS URL-encodes the PEM issuer chains it puts in headers.
fn percent_decode(s: &str) -> String {
    fn hex_val(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The exact text of a top-level object member `field` in `json` (Intel signs these bytes, so
/// they must not be re-serialized). Minimal scanner: strings and nesting are tracked.
fn raw_object_field<'a>(json: &'a str, field: &str) -> Option<&'a str> {
    let needle = format!("\"{field}\"");
    let after = json.find(&needle)? + needle.len();
    let rest = json[after..].trim_start().strip_prefix(':')?.trim_start();
    let start = json.len() - rest.len();
    let b = rest.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return json.get(start..start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn signed_part(body: &[u8], field: &str) -> Result<(String, Vec<u8>), AttestError> {
    let text = std::str::from_utf8(body).map_err(|e| io_err(field, e))?;
    let raw =
        raw_object_field(text, field).ok_or_else(|| io_err(field, "missing in PCCS response"))?;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| io_err(field, e))?;
    let sig = v
        .get("signature")
        .and_then(|s| s.as_str())
        .ok_or_else(|| io_err(field, "no signature"))?;
    let sig = hex::decode(sig).map_err(|e| io_err(field, e))?;
    Ok((raw.to_owned(), sig))
}

async fn fetch_from_pccs(
    base: &str,
    key: &CollateralKey,
    timeout: Duration,
) -> Result<QuoteCollateralV3, AttestError> {
    // reqwest is built with "rustls-no-provider" and refuses to build a client (even for http)
    // without a process-wide provider: install ring's unless one is already installed.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| io_err("HTTP client", e))?;
    let base = base
        .trim_end_matches("/sgx/certification/v4")
        .trim_end_matches("/tdx/certification/v4");

    let pck = get(
        &client,
        &format!(
            "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            key.ca
        ),
    )
    .await?;
    let pck_crl_issuer_chain = header(&pck, &["SGX-PCK-CRL-Issuer-Chain"])?;

    let tcb = get(
        &client,
        &format!("{base}/tdx/certification/v4/tcb?fmspc={}", key.fmspc),
    )
    .await?;
    let tcb_info_issuer_chain = header(
        &tcb,
        &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
    )?;
    let (tcb_info, tcb_info_signature) = signed_part(&tcb.body, "tcbInfo")?;

    let qe = get(&client, &format!("{base}/tdx/certification/v4/qe/identity")).await?;
    let qe_identity_issuer_chain = header(&qe, &["SGX-Enclave-Identity-Issuer-Chain"])?;
    let (qe_identity, qe_identity_signature) = signed_part(&qe.body, "enclaveIdentity")?;

    // A PCCS serves the root CA CRL hex-encoded.
    let root = get(&client, &format!("{base}/sgx/certification/v4/rootcacrl")).await?;
    let root_ca_crl = match std::str::from_utf8(&root.body)
        .ok()
        .and_then(|s| hex::decode(s.trim()).ok())
    {
        Some(der) => der,
        None => root.body,
    };

    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl: pck.body,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTE: &[u8] = include_bytes!("../tests/data/tdx_quote");
    const COLLATERAL: &[u8] = include_bytes!("../tests/data/tdx_quote_collateral.json");

    #[test]
    fn key_is_read_from_the_quote() {
        let k = CollateralKey::for_quote(QUOTE).unwrap();
        assert_eq!(k.fmspc, "B0C06F000000");
        assert_eq!(
            k.file_name().unwrap(),
            format!("tdx-B0C06F000000-{}.json", k.ca)
        );
        assert!(matches!(
            CollateralKey::for_quote(&QUOTE[..100]),
            Err(AttestError::MalformedQuote { .. })
        ));
    }

    #[test]
    fn hostile_key_never_names_a_path() {
        let k = CollateralKey {
            fmspc: "../../etc".into(),
            ca: "processor".into(),
        };
        assert_eq!(k.file_name(), None);
    }

    #[test]
    fn raw_field_keeps_exact_bytes() {
        let body = r#"{"tcbInfo":{"b":1,"a":"x}\"{","l":[{}]},"signature":"00ff"}"#;
        assert_eq!(
            raw_object_field(body, "tcbInfo"),
            Some(r#"{"b":1,"a":"x}\"{","l":[{}]}"#)
        );
        let (raw, sig) = signed_part(body.as_bytes(), "tcbInfo").unwrap();
        assert!(raw.starts_with(r#"{"b":1"#));
        assert_eq!(sig, vec![0, 0xff]);
        assert_eq!(raw_object_field(r#"{"tcbInfo":{"#, "tcbInfo"), None);
        assert_eq!(raw_object_field(r#"{"x":1}"#, "tcbInfo"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%0Ac%"), "a b\nc%");
        assert_eq!(percent_decode("%2"), "%2");
    }

    #[test]
    fn lookup_reports_refresh_need() {
        let s = CollateralStore::offline();
        let key = CollateralKey {
            fmspc: "AA".into(),
            ca: "processor".into(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(s.lookup(&key, now).needs_fetch);
        s.insert(key.clone(), parse_collateral(COLLATERAL).unwrap());
        let l = s.lookup(&key, now);
        assert!(l.collateral.is_some() && !l.needs_fetch);
        s.note_expiry(&key, now + Duration::from_secs(60));
        assert!(s.lookup(&key, now).needs_fetch, "inside the refresh margin");
        s.note_expiry(&key, now + Duration::from_secs(7200));
        assert!(!s.lookup(&key, now).needs_fetch);
    }

    #[test]
    fn disk_cache_roundtrip() {
        let dir = std::env::temp_dir().join(format!("cocoon-attest-coll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = CollateralKey::for_quote(QUOTE).unwrap();
        let c = parse_collateral(COLLATERAL).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(write_cache_file(&dir, &key.file_name().unwrap(), &c))
            .unwrap();
        // Junk next to it is skipped, not fatal.
        std::fs::write(dir.join("tdx-ZZ-processor.json"), b"not json").unwrap();
        let store = CollateralStore::new(None, Some(dir.clone()));
        let got = store.lookup(&key, SystemTime::now()).collateral.unwrap();
        assert_eq!(*got, c);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
