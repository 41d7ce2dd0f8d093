//! `cocoon attest show HOST:PORT`: connect to a Cocoon node (PoW, then RA-TLS), record the peer's
//! certificate evidence instead of rejecting it, and print the evidence and the verdict our
//! policies would give (like Cocoon's `tdx-info`).
//!
//! The handshake uses a recording verifier that accepts any structurally valid RA-TLS certificate
//! (key binding, self-signature and validity are still checked by `cocoon-ratls`), so a peer our
//! policy would refuse can still be inspected. The verdict is computed afterwards, offline from
//! the connection: DCAP with collateral from `--pccs-url` (cached in `--collateral-cache`), the
//! pinned Intel root key id, the TCB policy, and our TD policy (DEBUG off); SEV-SNP evidence
//! (Cocoon's `.100`/`.101`/`.102` extensions) is checked against the pinned AMD roots.
//! Nothing sensitive is printed: only keys, hashes, measurements and statuses.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cocoon_attest::{
    AttestError, AttestedPeer, CollateralKey, CollateralStore, DcapConfig, DcapVerifier, Evidence,
    EvidenceKind, EvidenceVerifier, NoEvidence, OwnedEvidence, Policy, SevSnpEvidence, SnpVerifier,
    UserClaims, INSECURE_SOFTWARE_IMAGE_HASH, INSECURE_SOFTWARE_SEV_IMAGE_HASH,
};
use cocoon_ratls::{client_config, connect, RaTlsIdentity};
use sha2::{Digest, Sha256};

/// Arguments of `cocoon attest show`.
#[derive(clap::Args, Debug, Clone)]
pub struct AttestShowArgs {
    /// The node to inspect, HOST:PORT.
    pub addr: String,
    /// PCCS base URL for TDX collateral (e.g. https://localhost:8081).
    #[arg(long, env = "COCOON_PCCS_URL")]
    pub pccs_url: Option<String>,
    /// Directory caching fetched collateral.
    #[arg(long)]
    pub collateral_cache: Option<PathBuf>,
    /// Extra TCB statuses to accept besides UpToDate (Intel names, e.g. OutOfDate).
    #[arg(long = "allow-tcb")]
    pub allow_tcb: Vec<String>,
    /// Pinned root key ids (hex SHA-384); default: Cocoon's Intel value.
    #[arg(long = "root-key-id")]
    pub root_key_ids: Vec<String>,
    /// Highest PoW difficulty to solve.
    #[arg(long, default_value_t = 28)]
    pub max_pow_difficulty: u32,
    /// Connect + PoW + handshake deadline, seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// What the recording verifier saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    evidence: Option<OwnedEvidence>,
    public_key: Option<[u8; 32]>,
}

/// Accepts every peer (after cocoon-ratls' structural checks) and keeps its evidence.
#[derive(Debug, Default)]
struct Recorder(Mutex<Seen>);

impl EvidenceVerifier for Recorder {
    fn verify_evidence(
        &self,
        evidence: Option<Evidence<'_>>,
        claims: &UserClaims,
        _now: SystemTime,
    ) -> Result<AttestedPeer, AttestError> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.evidence = evidence.map(|e| match e {
            Evidence::Quote(q) => OwnedEvidence::Quote(q.to_vec()),
            Evidence::SevSnp(s) => OwnedEvidence::SevSnp {
                // Bounded by the certificate size; a wrong length shows as "bound to key false".
                report_data: s.report_data.try_into().unwrap_or([0; 64]),
                report: s.report.to_vec(),
                vcek_pem: s.vcek_pem.to_vec(),
            },
        });
        g.public_key = Some(claims.public_key);
        Ok(AttestedPeer::unattested(claims.public_key))
    }
}

/// Runs `cocoon attest show`: prints what [`inspect_peer`] found.
pub async fn attest_show(args: AttestShowArgs) -> anyhow::Result<()> {
    for line in inspect_peer(&args).await? {
        println!("{line}");
    }
    Ok(())
}

/// Connects, records the peer's evidence and judges it; returns the report lines.
pub async fn inspect_peer(args: &AttestShowArgs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    macro_rules! say {
        ($($t:tt)*) => { out.push(format!($($t)*)) };
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&args.addr))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connect to {}", args.addr))?;
    tcp.set_nodelay(true)?;
    cocoon_proto::pow::answer_challenge(&mut tcp, args.max_pow_difficulty, timeout)
        .await
        .context("proof-of-work exchange")?;

    let own = tokio::task::spawn_blocking(|| {
        RaTlsIdentity::generate(&NoEvidence, Duration::from_secs(3600))
    })
    .await??;
    let recorder = Arc::new(Recorder::default());
    let cfg = client_config(&own, recorder.clone())?;
    let (_tls, _peer) = connect(cfg, tcp, timeout)
        .await
        .context("RA-TLS handshake (the peer's certificate is not RA-TLS-valid)")?;
    let seen = recorder.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let key = seen
        .public_key
        .context("handshake finished without a peer certificate")?;

    say!("peer            {}", args.addr);
    say!("public key      {}", hex::encode(key));
    let claims = UserClaims::new(key);
    let quote = match seen.evidence {
        None => {
            say!("evidence        none (peer is not attested; Cocoon policy `any` only)");
            return Ok(out);
        }
        Some(OwnedEvidence::Quote(q)) => q,
        Some(OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem,
        }) => {
            show_sev(claims, report_data, report, vcek_pem, &mut out).await?;
            return Ok(out);
        }
    };
    say!(
        "quote           {} bytes, sha256 {}",
        quote.len(),
        hex::encode(Sha256::digest(&quote))
    );
    match EvidenceKind::of_quote(&quote) {
        EvidenceKind::InsecureSoftware => {
            say!("evidence        insecure software (fake TDX): forgeable, dev/test networks only");
            say!("bound to key    {}", quote == claims.report_data());
            say!(
                "image hash      {}",
                hex::encode(INSECURE_SOFTWARE_IMAGE_HASH)
            );
        }
        _ => show_tdx(args, quote, claims, &mut out).await?,
    }
    Ok(out)
}

/// Cocoon's SEV-SNP evidence (report + VCEK), real or fake.
async fn show_sev(
    claims: UserClaims,
    report_data: [u8; 64],
    report: Vec<u8>,
    vcek_pem: Vec<u8>,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    macro_rules! say {
        ($($t:tt)*) => { out.push(format!($($t)*)) };
    }
    let ev = SevSnpEvidence {
        report_data: &report_data,
        report: &report,
        vcek_pem: &vcek_pem,
    };
    say!(
        "sev-snp report  {} bytes, VCEK PEM {} bytes, sha256 {}",
        report.len(),
        vcek_pem.len(),
        hex::encode(Evidence::SevSnp(ev).digest())
    );
    let bound = report_data == claims.report_data()
        && report.get(0x50..0x90) == Some(claims.report_data().as_slice());
    if Evidence::SevSnp(ev).kind() == EvidenceKind::InsecureSoftwareSev {
        say!("evidence        insecure software (fake SEV-SNP): forgeable, dev/test networks only");
        say!("bound to key    {bound}");
        say!(
            "image hash      sev@{}",
            hex::encode(INSECURE_SOFTWARE_SEV_IMAGE_HASH)
        );
        return Ok(());
    }
    say!("evidence        AMD SEV-SNP (report + VCEK)");
    let res = tokio::task::spawn_blocking(move || {
        let ev = SevSnpEvidence {
            report_data: &report_data,
            report: &report,
            vcek_pem: &vcek_pem,
        };
        SnpVerifier::new()?.verify_evidence(&ev, SystemTime::now())
    })
    .await?;
    match res {
        Ok(v) => {
            say!("amd root        {}", v.root);
            say!("report version  {}", v.report.version);
            say!(
                "guest policy    {:#x} (debug: {})",
                v.report.policy,
                v.report.debug_allowed()
            );
            say!("measurement     {}", hex::encode(v.report.measurement));
            say!("host data       {}", hex::encode(v.report.host_data));
            say!("image hash      sev@{}", hex::encode(v.report.image_hash()));
            say!("bound to key    {bound}");
        }
        Err(e) => say!("verdict         REFUSED: {e}"),
    }
    Ok(())
}

async fn show_tdx(
    args: &AttestShowArgs,
    quote: Vec<u8>,
    claims: UserClaims,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    macro_rules! say {
        ($($t:tt)*) => { out.push(format!($($t)*)) };
    }
    say!("evidence        TDX (DCAP quote)");
    let (pccs, dir) = (args.pccs_url.clone(), args.collateral_cache.clone());
    let store =
        Arc::new(tokio::task::spawn_blocking(move || CollateralStore::new(pccs, dir)).await?);
    let mut config = DcapConfig::default().accept_tcb_statuses(&args.allow_tcb)?;
    if !args.root_key_ids.is_empty() {
        config = config.with_root_key_ids(&args.root_key_ids)?;
    }
    // Fetch collateral here, asynchronously, so verification below never waits on the network.
    match CollateralKey::for_quote(&quote) {
        Ok(key) => {
            say!("platform        FMSPC {} (PCK CA {})", key.fmspc, key.ca);
            if store.lookup(&key, SystemTime::now()).needs_fetch && store.can_fetch() {
                if let Err(e) = store.fetch(&key).await {
                    say!("collateral      fetch failed: {e}");
                }
            }
        }
        Err(e) => say!("platform        unreadable: {e}"),
    }
    let dcap = Arc::new(DcapVerifier::new(config, store));
    let (d, q) = (dcap.clone(), quote.clone());
    let verdict =
        tokio::task::spawn_blocking(move || d.verify_detailed(&q, SystemTime::now())).await?;
    match &verdict {
        Ok(v) => {
            let r = &v.report;
            say!("tcb status      {}", v.tcb_status);
            say!("advisories      {}", v.advisory_ids.join(", "));
            say!("root key id     {}", hex::encode(v.root_key_id));
            say!("collateral till {}", humantime_unix(v.collateral_expires));
            say!(
                "td attributes   {:#018x} (debug: {})",
                r.td_attributes_u64(),
                r.is_debug()
            );
            say!("xfam            {:#018x}", u64::from_le_bytes(r.xfam));
            say!("mrseam          {}", hex::encode(r.mr_seam));
            say!("mrtd            {}", hex::encode(r.measurements.mrtd));
            say!("mrconfigid      {}", hex::encode(r.measurements.mrconfigid));
            say!("mrowner         {}", hex::encode(r.measurements.mrowner));
            say!(
                "mrownerconfig   {}",
                hex::encode(r.measurements.mrownerconfig)
            );
            for (i, m) in r.measurements.rtmr.iter().enumerate() {
                say!("rtmr{i}           {}", hex::encode(m));
            }
            say!("image hash      {}", hex::encode(r.image_hash()));
            say!("bound to key    {}", r.report_data == claims.report_data());
        }
        Err(e) => say!("dcap            REFUSED: {e}"),
    }
    let policy = Policy::tdx(dcap);
    let (c, q) = (claims, quote);
    let res =
        tokio::task::spawn_blocking(move || policy.verify(Some(&q), &c, SystemTime::now())).await?;
    match res {
        Ok(_) => say!("verdict         ACCEPTED by the default TDX policy"),
        Err(e) => say!("verdict         REFUSED: {e}"),
    }
    Ok(())
}

fn humantime_unix(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix {secs}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_accepts_and_records() {
        let r = Recorder::default();
        let c = UserClaims::new([3; 32]);
        let p = r.verify(Some(b"q"), &c, SystemTime::now()).unwrap();
        assert!(!p.is_attested());
        let seen = r.0.lock().unwrap().clone();
        assert_eq!(seen.evidence, Some(OwnedEvidence::Quote(b"q".to_vec())));
        assert_eq!(seen.public_key, Some([3; 32]));
    }

    fn args(addr: String) -> AttestShowArgs {
        AttestShowArgs {
            addr,
            pccs_url: None,
            collateral_cache: None,
            allow_tcb: vec![],
            root_key_ids: vec![],
            max_pow_difficulty: 28,
            timeout_secs: 10,
        }
    }

    /// Serves one connection: PoW (difficulty 4) then RA-TLS with `identity`.
    async fn serve_one(identity: RaTlsIdentity) -> (String, AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cfg = cocoon_ratls::server_config(&identity, Arc::new(Policy::any())).unwrap();
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            cocoon_proto::pow::serve_challenge(&mut tcp, 4, Duration::from_secs(10))
                .await
                .unwrap();
            let _ = cocoon_ratls::accept(cfg, tcp, Duration::from_secs(10)).await;
        });
        // The task ends on its own after one connection; the guard aborts it if the test fails.
        (addr, AbortOnDrop(task))
    }

    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    #[tokio::test]
    async fn shows_an_insecure_software_peer() {
        let id = RaTlsIdentity::generate(
            &cocoon_attest::InsecureSoftwareTdx::new(cocoon_attest::NetworkKind::Dev).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let key = hex::encode(id.public_key());
        let (addr, _server) = serve_one(id).await;
        let lines = inspect_peer(&args(addr)).await.unwrap();
        let text = lines.join("\n");
        assert!(text.contains(&key), "{text}");
        assert!(text.contains("insecure software"), "{text}");
        assert!(text.contains("bound to key    true"), "{text}");
        assert!(
            text.contains(&hex::encode(INSECURE_SOFTWARE_IMAGE_HASH)),
            "{text}"
        );
    }

    #[tokio::test]
    async fn shows_a_fake_sev_peer() {
        let id = RaTlsIdentity::generate(
            &cocoon_attest::InsecureSoftwareSev::new(cocoon_attest::NetworkKind::Dev).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let (addr, _server) = serve_one(id).await;
        let text = inspect_peer(&args(addr)).await.unwrap().join("\n");
        assert!(text.contains("fake SEV-SNP"), "{text}");
        assert!(text.contains("bound to key    true"), "{text}");
        assert!(
            text.contains(&hex::encode(INSECURE_SOFTWARE_SEV_IMAGE_HASH)),
            "{text}"
        );
    }

    #[tokio::test]
    async fn shows_an_unattested_peer() {
        let id = RaTlsIdentity::generate(&NoEvidence, Duration::from_secs(3600)).unwrap();
        let (addr, _server) = serve_one(id).await;
        let text = inspect_peer(&args(addr)).await.unwrap().join("\n");
        assert!(text.contains("evidence        none"), "{text}");
    }

    #[tokio::test]
    async fn unreachable_peer_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(inspect_peer(&args(addr)).await.is_err());
    }

    #[test]
    fn args_parse() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: AttestShowArgs,
        }
        let t = T::try_parse_from([
            "t",
            "127.0.0.1:11001",
            "--allow-tcb",
            "OutOfDate",
            "--pccs-url",
            "https://localhost:8081",
        ])
        .unwrap();
        assert_eq!(t.a.addr, "127.0.0.1:11001");
        assert_eq!(t.a.allow_tcb, vec!["OutOfDate".to_string()]);
        assert_eq!(t.a.max_pow_difficulty, 28);
    }
}
