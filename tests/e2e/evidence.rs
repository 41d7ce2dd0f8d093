//! Worker evidence up to the app (issue 6, item 6): every response names the worker that served
//! it in `X-Cocoon-Worker-*` headers (image hash, model hash, evidence kind and digest), streamed
//! or not, and the client's stats record it (protocol 3 `client.queryWorkerInfoV3`).
//!
//! Expected values are computed independently of the proxy where possible: the dev network's
//! insecure-software evidence has Cocoon's constant image hash, its quote is
//! `SHA-512(worker key)` (so the digest is `SHA-256` of that), and the model hash is
//! `SHA-256("mock")`. Only the worker's key is read from the proxy's stats page.

use std::time::Duration;

use cocoon_testkit::{chat_body, eventually, post_chat};
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::harness::Net;

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_name_the_worker_that_served_them() {
    let net = Net::builder().start("evidence").await;
    let want_image = hex::encode(cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH);
    let want_model = hex::encode(Sha256::digest(net.opts.model.as_bytes()));

    // The worker as the proxy saw it at RA-TLS time.
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let seen = &stats["workers"][0]["evidence"];
    assert_eq!(seen["kind"], "insecure-software", "proxy stats: {stats}");
    assert_eq!(seen["image_hash"], want_image.as_str());
    assert_eq!(seen["model_hash"], want_model.as_str());
    let key = hex::decode(seen["public_key"].as_str().expect("worker key")).expect("hex key");
    assert_eq!(key.len(), 32);
    let want_digest = hex::encode(Sha256::digest(Sha512::digest(&key)));
    assert_eq!(seen["evidence_digest"], want_digest.as_str());

    let http = reqwest::Client::new();
    for stream in [false, true] {
        let resp = post_chat(&http, &net.base, &chat_body(stream)).await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(
            header(&resp, "x-cocoon-worker-image-hash").as_deref(),
            Some(want_image.as_str()),
            "stream={stream}: {:?}",
            resp.headers()
        );
        assert_eq!(
            header(&resp, "x-cocoon-worker-model-hash").as_deref(),
            Some(want_model.as_str())
        );
        assert_eq!(
            header(&resp, "x-cocoon-worker-evidence").as_deref(),
            Some("insecure-software")
        );
        assert_eq!(
            header(&resp, "x-cocoon-worker-evidence-digest").as_deref(),
            Some(want_digest.as_str())
        );
        // Exactly one of each: a worker cannot add its own.
        assert_eq!(
            resp.headers()
                .get_all("x-cocoon-worker-image-hash")
                .iter()
                .count(),
            1
        );
        // The worker's own timing header still passes.
        assert!(resp.headers().contains_key("x-cocoon-worker-start"));
        // Read the whole body so the request ends (the final answer carries the worker info).
        let mut body = resp.bytes_stream();
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            n += chunk.expect("body chunk").len();
        }
        assert!(n > 0);
    }

    // The client recorded both responses under that worker.
    let url = format!("{}/jsonstats", net.base);
    let recorded = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let Ok(r) = reqwest::get(url).await else {
                return false;
            };
            let v: Value = r.json().await.unwrap_or_default();
            v["served_by"]["workers"][0]["responses"].as_u64() == Some(2)
        }
    })
    .await;
    let client = net.json(&url).await;
    assert!(recorded, "client stats: {client}");
    let served = &client["served_by"];
    let w = &served["workers"][0];
    assert_eq!(w["image_hash"], want_image.as_str());
    assert_eq!(w["model_hash"], want_model.as_str());
    assert_eq!(w["evidence"], "insecure-software");
    assert!(w["last_unix"].as_i64().is_some_and(|t| t > 1_600_000_000));
    let recent = served["recent"].as_array().expect("recent records");
    assert_eq!(recent.len(), 2);
    for r in recent {
        assert_eq!(r["image_hash"], want_image.as_str());
        assert_eq!(r["model_hash"], want_model.as_str());
        assert_eq!(r["evidence_digest"], want_digest.as_str());
        assert_eq!(r["evidence"], "insecure-software");
        assert_eq!(r["request"].as_str().map(str::len), Some(16));
    }
    // The same in the Prometheus metrics and the text page.
    let metrics = reqwest::get(format!("{}/metrics", net.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(&format!(
            "cocoon_client_served_by_responses_total{{image_hash=\"{want_image}\",model_hash=\"{want_model}\",evidence=\"insecure-software\"}} 2"
        )),
        "{metrics}"
    );
    let text = reqwest::get(format!("{}/stats", net.base))
        .await
        .expect("stats")
        .text()
        .await
        .expect("stats text");
    assert!(text.contains("served_by"), "{text}");
    assert!(text.contains(&want_digest), "{text}");
}

/// Certificate rotation in a real proxy process (issue 6, item 5): with a 3-second
/// `cert_validity` the proxy replaces its certificate every 2 seconds; a client session opened
/// before keeps being answered after the first certificate expired, and a new connection is
/// served with a new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rotates_its_certificate_without_dropping_sessions() {
    use bytes::Bytes;
    use cocoon_node::net::{self, DialConfig};
    use cocoon_node::rotation::NodeAttestation;
    use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
    use cocoon_proto::messages::{
        encode, ClientAuthorizationWithProxy, ClientAuthorizeWithProxyShort, ClientConnectToProxy,
        ClientGetWorkerTypesV2, ClientParams, ClientWorkerTypesV2,
    };
    use cocoon_proto::session::{Session, SessionConfig};
    use cocoon_proxy::{ClientEntry, ProxyConfig, ReceiptsConfig};

    use crate::harness::{spawn, OWNER, SECRET};
    use cocoon_testkit::{free_port, TempDir};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = TempDir::new("rotation");
    let (pw, pc, ps) = (free_port(), free_port(), free_port());
    let local = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut attestation = AttestationConfig::dev(
        EvidenceChoice::InsecureSoftware,
        PeerPolicyChoice::InsecureSoftware,
    );
    attestation.cert_validity = Duration::from_secs(3);
    let cfg = ProxyConfig {
        worker_listen: local(pw),
        client_listen: local(pc),
        stats_listen: local(ps),
        pow_difficulty: 4,
        clients: vec![ClientEntry {
            owner_address: OWNER.into(),
            secret_sha256: hex::encode(Sha256::digest(SECRET.as_bytes())),
            token_credit: None,
        }],
        attestation,
        receipts: ReceiptsConfig {
            dir: dir.path().join("proxy-receipts"),
            ..ReceiptsConfig::default()
        },
        ..ProxyConfig::default()
    };
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml::to_string_pretty(&cfg).expect("toml")).expect("write");
    let _proxy = spawn(
        dir.path(),
        "proxy",
        &["proxy", "--config", path.to_str().expect("utf8")],
    );
    let stats = format!("http://127.0.0.1:{ps}/jsonstats");
    let up = eventually(Duration::from_secs(30), || {
        let stats = stats.clone();
        async move {
            reqwest::get(stats)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(up, "proxy did not come up");

    let client = NodeAttestation::new(&AttestationConfig::dev(
        EvidenceChoice::None,
        PeerPolicyChoice::InsecureSoftware,
    ))
    .expect("client attestation");
    let dial = DialConfig {
        max_pow_difficulty: 28,
        tls: client
            .client_config(client.verifier().expect("verifier"))
            .expect("tls"),
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(10),
        session: SessionConfig::dialer(),
    };
    let addr = local(pc).to_string();
    async fn ask<A: cocoon_tl::TlRead>(s: &Session, q: Bytes) -> A {
        let a = s.query(q, Duration::from_secs(10)).await.expect("answer");
        cocoon_tl::from_bytes(&a).expect("decode answer")
    }
    let live = net::dial(&addr, &dial).await.expect("dial");
    let first_key = live.peer.public_key;
    let _: cocoon_proto::messages::ClientConnectedToProxy = ask(
        &live.session,
        encode(&ClientConnectToProxy {
            params: ClientParams {
                flags: 0,
                client_owner_address: OWNER.into(),
                is_test: Some(true),
                min_proto_version: Some(1),
                max_proto_version: Some(3),
            },
            min_config_version: 0,
        }),
    )
    .await;
    let auth: ClientAuthorizationWithProxy = ask(
        &live.session,
        encode(&ClientAuthorizeWithProxyShort {
            data: Bytes::from_static(SECRET.as_bytes()),
        }),
    )
    .await;
    assert!(matches!(auth, ClientAuthorizationWithProxy::Success(_)));
    let _: ClientWorkerTypesV2 = ask(&live.session, encode(&ClientGetWorkerTypesV2 {})).await;

    // Wait until a new connection gets another certificate and the first one has expired
    // (its notAfter is at most 3 s after this session's handshake).
    let rotated_at = std::time::Instant::now();
    let mut fresh_key = first_key;
    while fresh_key == first_key || rotated_at.elapsed() < Duration::from_secs(4) {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(60),
            "the proxy never rotated its certificate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = net::dial(&addr, &dial)
            .await
            .expect("dial a new connection");
        fresh_key = probe.peer.public_key;
        probe.session.close();
    }
    // The session opened on the first (now expired) certificate is still served.
    let _: ClientWorkerTypesV2 = ask(&live.session, encode(&ClientGetWorkerTypesV2 {})).await;
    assert_ne!(fresh_key, first_key);
}
