//! `cocoon receipt verify FILE`: checks a receipt document the client kept
//! (`cocoon-client-receipt-v1`, `GET /v1/cocoon/receipts/{id}`) offline, one printed line per
//! check, and fails when any check fails:
//!
//! 1. the document's form, and the receipt id it names is the receipt's;
//! 2. both signatures (worker, proxy) over the receipt's canonical bytes;
//! 3. the charge is at most the worker's usage at the proxy's stated price;
//! 4. the worker's RA-TLS certificate, verified under `--policy` on `--network` at the time the
//!    worker says the request ended: its key is the receipt's `worker_key`, its image hash the
//!    receipt's `image_hash`, and it binds a sealing key;
//! 5. the proxy's certificate, when the document has one: its key is the receipt's `proxy_key`;
//! 6. with `--registry FILE` or `--chain URL --root ADDR`: the worker image hash and the model
//!    hash are registered (a snapshot file is `{"worker_image_hashes": [hex…],
//!    "model_hashes": [hex…]}`; on chain, the root contract's current state);
//! 7. when the document has a `"proof"` (`GET /v1/cocoon/receipts/{id}/proof` stores it): the
//!    receipt's id is at `index` in the Merkle tree of `tree_size` leaves whose root is `root`;
//!    with `--chain URL --proxy-contract ADDR`, that root is in a save-state marker among the
//!    proxy contract's transactions with `leaves` equal to `tree_size`.
//!
//! The pure part ([`check_document`]) takes everything as arguments, so tests run it without
//! files, clocks or networks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use cocoon_attest::{EvidenceVerifier, NetworkKind};
use cocoon_node::config::{AttestationConfig, PeerPolicyChoice};
use cocoon_sealed::receipt::Receipt;
use serde::Deserialize;
use serde_json::Value;

/// The `"format"` of the client's receipt documents (`cocoon_client::receipts`).
const CLIENT_RECEIPT_FORMAT: &str = "cocoon-client-receipt-v1";
/// Largest receipt document or registry snapshot read (a document is a few KiB).
const MAX_FILE_LEN: u64 = 1 << 20;
/// Most hashes a registry snapshot may list.
const MAX_SNAPSHOT_HASHES: usize = 100_000;

/// `cocoon receipt …`
#[derive(Args, Debug)]
pub struct ReceiptArgs {
    #[command(subcommand)]
    command: ReceiptCommand,
}

#[derive(Subcommand, Debug)]
enum ReceiptCommand {
    /// Check a receipt document the client kept: signatures, charge, the worker's and the
    /// proxy's certificates, and (optionally) registry membership. Exits non-zero on any failure.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The receipt document (JSON, `cocoon-client-receipt-v1`).
    file: PathBuf,
    /// Evidence demanded of the certificates, as the roles' `peer_policy`: `any`, `fake_tee`
    /// (alias `insecure-software`), `tee`, `tdx`, `sev-snp`.
    #[arg(long, default_value = "tdx", value_parser = parse_policy)]
    policy: PeerPolicyChoice,
    /// The network the receipt comes from: `dev`, `test` or `main` (software evidence is refused
    /// on `main`).
    #[arg(long, default_value = "main", value_parser = parse_network)]
    network: NetworkKind,
    /// TDX verification: PCCS base URL collateral is fetched from.
    #[arg(long)]
    pccs_url: Option<String>,
    /// TDX verification: directory caching collateral.
    #[arg(long)]
    collateral_cache_dir: Option<PathBuf>,
    /// A registry snapshot: `{"worker_image_hashes": [hex…], "model_hashes": [hex…]}`.
    #[arg(long, conflicts_with = "root")]
    registry: Option<PathBuf>,
    /// TON HTTP API v2 URL to read the registry (with `--root`) and the anchored receipts root
    /// (with `--proxy-contract`) from.
    #[arg(long)]
    chain: Option<String>,
    /// The proxy contract whose save-state markers anchor the proof's root (with `--chain`).
    #[arg(long, requires = "chain")]
    proxy_contract: Option<String>,
    /// Most proxy-contract transactions searched for the anchoring marker, newest first.
    #[arg(long, default_value_t = 10_000)]
    max_transactions: u32,
    /// The root contract's address (with `--chain`).
    #[arg(long, requires = "chain")]
    root: Option<String>,
}

/// Parses a peer policy by the config file's names.
fn parse_policy(s: &str) -> Result<PeerPolicyChoice, String> {
    serde_json::from_value(Value::String(s.into())).map_err(|_| {
        format!("unknown policy {s:?} (any, fake_tee, insecure-software, tee, tdx, sev-snp)")
    })
}

/// Parses a network kind: `dev`, `test`, `main`.
fn parse_network(s: &str) -> Result<NetworkKind, String> {
    serde_json::from_value(Value::String(s.into()))
        .map_err(|_| format!("unknown network {s:?} (dev, test, main)"))
}

/// Runs `cocoon receipt …`.
pub async fn run(args: ReceiptArgs) -> Result<()> {
    match args.command {
        ReceiptCommand::Verify(a) => verify(a).await,
    }
}

async fn verify(a: VerifyArgs) -> Result<()> {
    let doc: Value = serde_json::from_slice(&read_bounded(&a.file)?)
        .with_context(|| format!("{} is not JSON", a.file.display()))?;
    let attestation = AttestationConfig {
        network: a.network,
        peer_policy: a.policy,
        pccs_url: a.pccs_url.clone(),
        collateral_cache_dir: a.collateral_cache_dir.clone(),
        ..AttestationConfig::default()
    };
    let verifier = attestation
        .verifier_for(a.policy)
        .context("cannot build the verifier for --policy on --network")?;
    let registry = match (&a.registry, &a.chain, &a.root) {
        (Some(file), _, _) => Some(
            RegistrySnapshot::parse(&read_bounded(file)?)
                .with_context(|| format!("registry snapshot {}", file.display()))?,
        ),
        (None, Some(url), Some(root)) => Some(read_chain_registry(url, root).await?),
        _ => None,
    };
    let mut lines = check_document(&doc, verifier.as_ref(), registry.as_ref());
    if let (Some(url), Some(addr), Some(p)) = (&a.chain, &a.proxy_contract, doc.get("proof")) {
        let result = match anchored_on_chain(url, addr, p, a.max_transactions).await {
            Ok(r) => r,
            Err(e) => Err(format!("{e:#}")),
        };
        lines.push(line("anchored on chain", result));
    }
    let failed = lines.iter().filter(|l| l.result.is_err()).count();
    for l in &lines {
        match &l.result {
            Ok(detail) => println!("ok    {:<22} {detail}", l.check),
            Err(why) => println!("FAIL  {:<22} {why}", l.check),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} checks failed", lines.len());
    }
    Ok(())
}

/// Reads a file of at most [`MAX_FILE_LEN`] bytes.
fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > MAX_FILE_LEN {
        bail!("{} is larger than {MAX_FILE_LEN} bytes", path.display());
    }
    Ok(buf)
}

/// Looks for the proof's root in the save-state markers of the proxy contract `addr`, at most
/// `max` transactions back.
async fn anchored_on_chain(
    url: &str,
    addr: &str,
    proof: &Value,
    max: u32,
) -> Result<Result<String, String>> {
    use cocoon_ton::chain::{Chain as _, TxId};
    use cocoon_ton::contracts::{parse_proxy_inbound, ProxyInbound};
    use cocoon_ton::http::{HttpChain, HttpChainConfig};
    const PAGE: u32 = 100;
    let root = hex32(proof["root"].as_str().unwrap_or_default()).context("proof \"root\"")?;
    let tree_size = proof["tree_size"].as_u64().context("proof \"tree_size\"")?;
    let addr: cocoon_ton::TonAddress = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("--proxy-contract {addr:?}: {e}"))?;
    let chain = HttpChain::new(HttpChainConfig::new(url))?;
    let mut seen = 0u32;
    let mut page = chain.transactions(&addr, None, PAGE).await?;
    loop {
        for tx in &page {
            let Some(body) = tx.in_msg.as_ref().and_then(|m| m.body.as_ref()) else {
                continue;
            };
            if let Ok(ProxyInbound::SaveState {
                receipts: Some(r), ..
            }) = parse_proxy_inbound(body)
            {
                if r.root == root {
                    return Ok(if u64::from(r.leaves) == tree_size {
                        Ok(format!(
                            "root in the marker of transaction lt {} (period {}..{}, {} leaves)",
                            tx.lt, r.period_start, r.period_end, r.leaves
                        ))
                    } else {
                        Err(format!(
                            "root anchored with {} leaves, the proof says {tree_size}",
                            r.leaves
                        ))
                    });
                }
            }
        }
        seen = seen.saturating_add(u32::try_from(page.len()).unwrap_or(u32::MAX));
        let (Some(last), true) = (page.last(), page.len() as u32 == PAGE && seen < max) else {
            break;
        };
        let from = TxId {
            lt: last.lt,
            hash: last.hash,
        };
        let next = chain.transactions_from(&addr, from, None, PAGE).await?;
        // The page starts at (and includes) `from`.
        page = next.into_iter().filter(|t| t.lt < last.lt).collect();
        if page.is_empty() {
            break;
        }
    }
    Ok(Err(format!(
        "no save-state marker with this root in the last {seen} transactions"
    )))
}

async fn read_chain_registry(url: &str, root: &str) -> Result<RegistrySnapshot> {
    use cocoon_ton::http::{HttpChain, HttpChainConfig};
    let root: cocoon_ton::TonAddress = root
        .parse()
        .map_err(|e| anyhow::anyhow!("--root {root:?}: {e}"))?;
    let chain = HttpChain::new(HttpChainConfig::new(url))?;
    let reg = cocoon_onchain::Registry::read(&chain, &root)
        .await
        .context("cannot read the root contract")?;
    Ok(RegistrySnapshot {
        worker_image_hashes: reg.state.worker_hashes.iter().copied().collect(),
        model_hashes: reg.state.model_hashes.iter().copied().collect(),
    })
}

/// The registry lists a receipt is checked against.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RegistrySnapshot {
    worker_image_hashes: HashSet<[u8; 32]>,
    model_hashes: HashSet<[u8; 32]>,
}

impl RegistrySnapshot {
    /// Parses `{"worker_image_hashes": [hex…], "model_hashes": [hex…]}` (other members ignored).
    fn parse(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Json {
            worker_image_hashes: Vec<String>,
            model_hashes: Vec<String>,
        }
        let j: Json = serde_json::from_slice(bytes)?;
        if j.worker_image_hashes.len() + j.model_hashes.len() > MAX_SNAPSHOT_HASHES {
            bail!("more than {MAX_SNAPSHOT_HASHES} hashes");
        }
        let set = |v: &[String], what: &str| -> Result<HashSet<[u8; 32]>> {
            v.iter()
                .map(|h| hex32(h).with_context(|| format!("{what}: {h:?} is not 32-byte hex")))
                .collect()
        };
        Ok(Self {
            worker_image_hashes: set(&j.worker_image_hashes, "worker_image_hashes")?,
            model_hashes: set(&j.model_hashes, "model_hashes")?,
        })
    }
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)?;
    Ok(out)
}

/// One printed check: its name and either what was found or why it failed.
#[derive(Debug)]
pub(crate) struct Line {
    pub check: &'static str,
    pub result: Result<String, String>,
}

fn line(check: &'static str, result: Result<String, String>) -> Line {
    Line { check, result }
}

/// The members of a receipt document this command reads.
struct Document {
    receipt_id: String,
    worker_certificate: Vec<u8>,
    proxy_certificate: Option<Vec<u8>>,
    receipt: Receipt,
}

/// Parses a client receipt document (form only: no signature is checked here).
fn parse_document(doc: &Value) -> Result<Document, String> {
    if doc["format"] != CLIENT_RECEIPT_FORMAT {
        return Err(format!("\"format\" is not {CLIENT_RECEIPT_FORMAT:?}"));
    }
    let b64 = |name: &str| -> Result<Option<Vec<u8>>, String> {
        match &doc[name] {
            Value::Null => Ok(None),
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Some)
                .map_err(|_| format!("\"{name}\" is not base64")),
            _ => Err(format!("\"{name}\" is not a string")),
        }
    };
    let worker_certificate =
        b64("worker_certificate")?.ok_or("no \"worker_certificate\"".to_string())?;
    let proxy_certificate = b64("proxy_certificate")?;
    let receipt_id = doc["receipt_id"]
        .as_str()
        .ok_or("no \"receipt_id\"")?
        .to_string();
    let receipt = Receipt::from_json(&doc["receipt"]).map_err(|e| format!("\"receipt\": {e}"))?;
    Ok(Document {
        receipt_id,
        worker_certificate,
        proxy_certificate,
        receipt,
    })
}

/// Runs every check on a parsed document (see the module docs); the certificates are verified
/// by `verifier` at the receipt's `ended_ms`.
pub(crate) fn check_document(
    doc: &Value,
    verifier: &dyn EvidenceVerifier,
    registry: Option<&RegistrySnapshot>,
) -> Vec<Line> {
    let d = match parse_document(doc) {
        Ok(d) => d,
        Err(e) => return vec![line("document", Err(e))],
    };
    let r = &d.receipt;
    let s = &r.worker.statement;
    let mut out = Vec::new();
    // The client's receipt id is the hex request hash.
    out.push(line(
        "document",
        if d.receipt_id == hex::encode(s.request_hash) {
            Ok(format!(
                "receipt {} (request {})",
                hex::encode(r.id()),
                d.receipt_id
            ))
        } else {
            Err("\"receipt_id\" is not the receipt's request hash".into())
        },
    ));
    out.push(line(
        "signatures",
        r.verify()
            .map(|()| "worker and proxy signatures verify".to_string())
            .map_err(|e| e.to_string()),
    ));
    let bound = s.usage.total_tokens.saturating_mul(r.proxy.price_per_token);
    out.push(line(
        "charge",
        if r.proxy.charge <= bound {
            Ok(format!(
                "{} nanoton for {} tokens at {} per token",
                r.proxy.charge, s.usage.total_tokens, r.proxy.price_per_token
            ))
        } else {
            Err(format!(
                "{} nanoton, more than the usage at the stated price ({bound})",
                r.proxy.charge
            ))
        },
    ));
    let at = UNIX_EPOCH + Duration::from_millis(s.ended_ms);
    out.push(line(
        "worker certificate",
        check_worker_cert(&d.worker_certificate, verifier, at, r),
    ));
    out.push(line(
        "proxy certificate",
        match &d.proxy_certificate {
            None => Ok("none in the document (not checked)".into()),
            Some(der) => cocoon_ratls::inspect_cert(der, verifier, at)
                .map_err(|e| e.to_string())
                .and_then(|peer| {
                    if peer.public_key == r.proxy.proxy_key {
                        Ok(format!(
                            "{:?} evidence, key is the receipt's proxy_key",
                            peer.kind
                        ))
                    } else {
                        Err("its key is not the receipt's proxy_key".into())
                    }
                }),
        },
    ));
    if let Some(p) = doc.get("proof") {
        out.push(line("inclusion proof", check_inclusion(p, &r.id())));
    }
    if let Some(reg) = registry {
        out.push(line(
            "registry: worker image",
            if reg.worker_image_hashes.contains(&s.image_hash) {
                Ok(format!("{} is registered", hex::encode(s.image_hash)))
            } else {
                Err(format!("{} is not registered", hex::encode(s.image_hash)))
            },
        ));
        out.push(line(
            "registry: model",
            if reg.model_hashes.contains(&s.model_hash) {
                Ok(format!("{} is registered", hex::encode(s.model_hash)))
            } else {
                Err(format!("{} is not registered", hex::encode(s.model_hash)))
            },
        ));
    }
    out
}

/// Most audit-path entries read from a document.
const MAX_PATH: usize = cocoon_sealed::merkle::MAX_PATH_LEN;

/// The document's `"proof"`: the receipt's id at `index` under `root`.
fn check_inclusion(p: &Value, id: &[u8; 32]) -> Result<String, String> {
    use cocoon_sealed::merkle::{verify_inclusion, InclusionProof};
    let root = p["root"]
        .as_str()
        .and_then(|h| hex32(h).ok())
        .ok_or("\"root\" is not 32-byte hex")?;
    let path = p["path"].as_array().ok_or("no \"path\"")?;
    if path.len() > MAX_PATH {
        return Err(format!("a path longer than {MAX_PATH}"));
    }
    let proof = InclusionProof {
        index: p["index"].as_u64().ok_or("no \"index\"")?,
        tree_size: p["tree_size"].as_u64().ok_or("no \"tree_size\"")?,
        path: path
            .iter()
            .map(|h| {
                h.as_str()
                    .map(str::to_string)
                    .ok_or("a path entry is not hex")
            })
            .collect::<Result<_, _>>()?,
    };
    verify_inclusion(&root, id, &proof).map_err(|e| e.to_string())?;
    Ok(format!(
        "leaf {} of {} under root {}{}",
        proof.index,
        proof.tree_size,
        hex::encode(root),
        if p["anchored"] == true {
            " (the proxy saw it anchored)"
        } else {
            " (not anchored yet, per the proxy)"
        }
    ))
}

fn check_worker_cert(
    der: &[u8],
    verifier: &dyn EvidenceVerifier,
    at: SystemTime,
    r: &Receipt,
) -> Result<String, String> {
    let s = &r.worker.statement;
    let peer = cocoon_ratls::inspect_cert(der, verifier, at).map_err(|e| e.to_string())?;
    if peer.public_key != s.worker_key {
        return Err("its key is not the receipt's worker_key".into());
    }
    if peer.image_hash != Some(s.image_hash) {
        return Err("its image hash is not the receipt's image_hash".into());
    }
    if peer.sealing_key.is_none() {
        return Err("it binds no sealing key".into());
    }
    Ok(format!(
        "{:?} evidence, key and image hash are the receipt's, sealing key bound",
        peer.kind
    ))
}

#[cfg(test)]
mod tests;
