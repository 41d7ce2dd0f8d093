//! Collateral from a PCCS: a fake PCCS on 127.0.0.1 serves dcap-qvl's real sample collateral in
//! the PCCS v4 wire format (issuer chains URL-encoded in headers, signed JSON bodies, hex root CRL);
//! the verifier fetches it on demand (multi-thread runtime) or schedules it (current-thread
//! runtime, then `refresh_due`), and the on-disk cache serves it without the PCCS afterwards.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    parse_collateral, AttestError, CollateralStore, DcapConfig, DcapVerifier, QuoteCollateralV3,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUOTE: &[u8] = include_bytes!("data/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("data/tdx_quote_collateral.json");

fn good_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_809_600)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn respond(c: &QuoteCollateralV3, path: &str) -> (Vec<(String, String)>, Vec<u8>) {
    if path.starts_with("/sgx/certification/v4/pckcrl") {
        let h = vec![(
            "SGX-PCK-CRL-Issuer-Chain".into(),
            enc(&c.pck_crl_issuer_chain),
        )];
        (h, c.pck_crl.clone())
    } else if path.starts_with("/tdx/certification/v4/tcb?fmspc=B0C06F000000") {
        let body = format!(
            r#"{{"tcbInfo":{},"signature":"{}"}}"#,
            c.tcb_info,
            hex::encode(&c.tcb_info_signature)
        );
        let h = vec![(
            "TCB-Info-Issuer-Chain".into(),
            enc(&c.tcb_info_issuer_chain),
        )];
        (h, body.into_bytes())
    } else if path.starts_with("/tdx/certification/v4/qe/identity") {
        let body = format!(
            r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
            c.qe_identity,
            hex::encode(&c.qe_identity_signature)
        );
        let h = vec![(
            "SGX-Enclave-Identity-Issuer-Chain".into(),
            enc(&c.qe_identity_issuer_chain),
        )];
        (h, body.into_bytes())
    } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
        (vec![], hex::encode(&c.root_ca_crl).into_bytes())
    } else {
        (vec![], Vec::new())
    }
}

/// A minimal HTTP/1.1 PCCS on 127.0.0.1 (one request per connection). Returns its URL, a
/// request counter, and the server task (aborted by the caller).
async fn fake_pccs() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let c = parse_collateral(COLLATERAL).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            h2.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                let m = s.read(&mut buf[n..]).await.unwrap();
                if m == 0 {
                    break;
                }
                n += m;
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (headers, body) = respond(&c, &path);
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
            s.shutdown().await.ok();
        }
    });
    (url, hits, task)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cocoon-pccs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_fetches_missing_collateral_and_caches_it_on_disk() {
    let (url, hits, server) = fake_pccs().await;
    let dir = temp_dir("mt");
    let store = Arc::new(CollateralStore::new(Some(url), Some(dir.clone())));
    let v = Arc::new(DcapVerifier::new(DcapConfig::default(), store));
    let v2 = v.clone();
    let verdict = tokio::task::spawn_blocking(move || v2.verify_detailed(QUOTE, good_now()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verdict.tcb_status, "UpToDate");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "pckcrl, tcb, qe identity, root CRL"
    );
    server.abort();

    // A new process with no PCCS reaches the same verdict from the disk cache alone.
    let offline = Arc::new(CollateralStore::new(None, Some(dir.clone())));
    let v = DcapVerifier::new(DcapConfig::default(), offline);
    assert_eq!(
        v.verify_detailed(QUOTE, good_now()).unwrap().tcb_status,
        "UpToDate"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn current_thread_runtime_schedules_the_fetch_and_refresh_due_does_it() {
    let (url, _hits, server) = fake_pccs().await;
    let store = Arc::new(CollateralStore::new(Some(url), None));
    let v = DcapVerifier::new(DcapConfig::default(), store.clone());
    // Blocking here would stall the only runtime thread: refused once, fetch scheduled.
    let err = v.verify_detailed(QUOTE, good_now()).unwrap_err();
    assert!(
        matches!(err, AttestError::CollateralUnavailable(_)),
        "{err}"
    );
    assert!(err.to_string().contains("fetch scheduled"), "{err}");
    assert_eq!(store.refresh_due(good_now()).await, 1);
    assert!(v.verify_detailed(QUOTE, good_now()).is_ok());
    // Near expiry the entry is due again (refresh before expiry).
    let near_expiry = UNIX_EPOCH + Duration::from_secs(1_752_919_235 - 600);
    assert_eq!(store.refresh_due(near_expiry).await, 1);
    assert_eq!(store.refresh_due(good_now()).await, 0, "fresh again");
    server.abort();
}

#[tokio::test]
async fn pccs_errors_are_reported() {
    let store = CollateralStore::new(Some("http://127.0.0.1:9".into()), None);
    let key = cocoon_attest::CollateralKey::for_quote(QUOTE).unwrap();
    let err = store.fetch(&key).await.unwrap_err();
    assert!(
        matches!(err, AttestError::CollateralUnavailable(_)),
        "{err}"
    );
}
