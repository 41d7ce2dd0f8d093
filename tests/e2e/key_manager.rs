//! The key manager against real processes: the proxy fetches the network keys from it (PoW +
//! RA-TLS, `keyManager.getProxyPrivateKeys`) and lists them; a request sealed to a key the
//! proxy does not hold gets upstream's 602 "unknown public key"; the keys survive a key-manager
//! crash (the proxy keeps them meanwhile, the key manager serves the same ones again); and peers
//! without evidence, with an image that is not allowed, or that send anything but key queries
//! get no keys (docs/SECURITY.md). With the chain on, the key manager announces its keys to
//! the root and the proxy checks its image against the root's `key_manager_image_hash`.

use std::collections::BTreeSet;
use std::time::Duration;

use cocoon_key_manager::KeyManagerConfig;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proto::messages::{
    encode, KeyManagerGetProxyPrivateKeys, KeyManagerGetWorkerPrivateKeys, KeyManagerPrivateKeys,
};
use cocoon_proto::session::{QueryError, SessionConfig};
use cocoon_testkit::eventually;

use crate::harness::{spawn, Net, OWNER, SECRET};
use crate::hostile::HostileClient;
use crate::paying::SplitNet;

/// Upstream's fixed test key (public half), which the test network's key manager also serves.
const TEST_KEY: &str = "fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818";

/// The public keys a stats page lists (`network_keys` of a proxy, `keys` of a key manager).
fn listed(s: &serde_json::Value, field: &str) -> BTreeSet<String> {
    s[field]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["public_key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn proxy_stats(net: &Net) -> serde_json::Value {
    net.json(&format!("{}/jsonstats", net.proxy_stats)).await
}

async fn key_manager_stats(net: &Net) -> serde_json::Value {
    let url = net.key_manager_stats.as_ref().expect("a key manager");
    net.json(&format!("{url}/jsonstats")).await
}

/// Waits until the proxy holds exactly the keys the key manager serves (at least one of its own
/// and the test key), and returns them.
async fn proxy_holds_the_key_managers_keys(net: &Net) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (p, k) = (proxy_stats(net).await, key_manager_stats(net).await);
        let (held, served) = (listed(&p, "network_keys"), listed(&k, "keys"));
        if held.len() >= 2 && held.contains(TEST_KEY) && held == served {
            return held;
        }
        if tokio::time::Instant::now() > deadline {
            net.dump_logs();
            panic!("the proxy does not hold the key manager's keys:\nproxy {p}\nkey manager {k}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn key_manager_port(net: &Net) -> u16 {
    let text = std::fs::read_to_string(net.key_manager_config()).expect("key manager config");
    let cfg: KeyManagerConfig = toml::from_str(&text).expect("key manager toml");
    cfg.rpc_listen.port()
}

/// Dials the key manager presenting `evidence` (dev attestation, the same PoW as anyone).
async fn dial_key_manager(
    port: u16,
    evidence: EvidenceChoice,
) -> Result<AttestedSession, net::NetError> {
    let att = AttestationConfig::dev(evidence, PeerPolicyChoice::InsecureSoftware);
    let identity = att.identity().expect("identity");
    let tls = cocoon_ratls::client_config(&identity, att.verifier().expect("verifier"))
        .expect("tls config");
    let cfg = DialConfig {
        max_pow_difficulty: 28,
        tls,
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(10),
        session: SessionConfig::dialer(),
    };
    net::dial(&format!("127.0.0.1:{port}"), &cfg).await
}

async fn ask(
    s: &AttestedSession,
    query: bytes::Bytes,
) -> Result<KeyManagerPrivateKeys, QueryError> {
    let answer = s.session.query(query, Duration::from_secs(10)).await?;
    Ok(cocoon_tl::from_bytes(&answer).expect("keyManager.privateKeys"))
}

fn proxy_query() -> bytes::Bytes {
    encode(&KeyManagerGetProxyPrivateKeys { proto_version: 0 })
}

fn worker_query() -> bytes::Bytes {
    encode(&KeyManagerGetWorkerPrivateKeys { proto_version: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_holds_the_key_managers_keys_and_refuses_requests_sealed_to_others() {
    let net = Net::builder().start("km-fetch").await;
    let held = proxy_holds_the_key_managers_keys(&net).await;
    let p = proxy_stats(&net).await;
    assert_eq!(p["key_manager"]["connected"], true, "{p}");
    assert!(p["key_manager"]["last_fetch"].as_u64().is_some(), "{p}");
    // Public halves only, with their expiries; never a seed.
    for k in p["network_keys"].as_array().expect("keys") {
        assert!(
            k["valid_until"].as_u64().is_some_and(|t| t > 1_700_000_000),
            "{k}"
        );
    }
    let text = p.to_string();
    assert!(
        !text.contains("070ad82e6132dab3"),
        "the test key's seed on a stats page"
    );

    let mut client = HostileClient::dial(net.proxy_client_port, EvidenceChoice::None)
        .await
        .expect("dial the proxy");
    client.connect(OWNER).await.expect("connect");
    assert!(client.authorize(SECRET).await.expect("authorize"));
    // Sealed to a key nobody served: upstream's error, word for word.
    let unknown = [0xca; 32];
    assert!(!held.contains(&hex::encode(unknown)));
    let id = client
        .run_query_sealed("mock", false, 16, Some(unknown))
        .await;
    let a = client.answer(id, Duration::from_secs(10)).await;
    let (code, message) = a.error.clone().expect("refused");
    assert_eq!(code, 602, "{a:?}");
    assert_eq!(message, format!("unknown public key {}", "CA".repeat(32)));
    // Sealed to a key the proxy holds: not refused for its key (the worker gets the request).
    let test_key: [u8; 32] = hex::decode(TEST_KEY).expect("hex").try_into().expect("32");
    let id = client
        .run_query_sealed("mock", false, 16, Some(test_key))
        .await;
    let a = client.answer(id, Duration::from_secs(10)).await;
    assert!(a.ended(), "{a:?}");
    assert!(
        !a.error
            .as_ref()
            .is_some_and(|(_, m)| m.starts_with("unknown public key")),
        "{a:?}"
    );
    let k = key_manager_stats(&net).await;
    assert!(k["queries"]["proxy_served"].as_u64() >= Some(1), "{k}");
    assert_eq!(k["queries"]["refused_not_allowed"], 0, "{k}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_key_manager_restart() {
    let mut net = Net::builder().start("km-restart").await;
    let before = proxy_holds_the_key_managers_keys(&net).await;
    let keys_file = net.dir.path().join("key-manager").join("network-keys.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&keys_file)
            .expect("keys file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let fetches = proxy_stats(&net).await["key_manager"]["fetches"]
        .as_u64()
        .expect("fetches");

    // The key manager dies without a word: the proxy keeps serving sealed requests with the
    // keys it holds.
    net.key_manager.as_mut().expect("a key manager").kill9();
    let down = eventually(Duration::from_secs(20), || async {
        proxy_stats(&net).await["key_manager"]["connected"] == false
    })
    .await;
    assert!(down, "the proxy did not notice the key manager was gone");
    assert_eq!(listed(&proxy_stats(&net).await, "network_keys"), before);

    // Back from the same data dir: the same keys, served again.
    let path = net.key_manager_config().display().to_string();
    net.key_manager = Some(spawn(
        net.dir.path(),
        "key-manager-again",
        &["key-manager", "--config", &path],
    ));
    let again = eventually(Duration::from_secs(30), || async {
        let p = proxy_stats(&net).await;
        p["key_manager"]["connected"] == true
            && p["key_manager"]["fetches"].as_u64() > Some(fetches)
    })
    .await;
    if !again {
        net.dump_logs();
        panic!("the proxy did not fetch from the restarted key manager");
    }
    assert_eq!(listed(&key_manager_stats(&net).await, "keys"), before);
    assert_eq!(proxy_holds_the_key_managers_keys(&net).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_an_allowed_image_get_no_keys() {
    // Only fake-TDX images (the dev proxy's) may have proxy or worker keys; the TLS policy
    // (`fake_tee`) still lets fake SEV-SNP peers connect.
    let net = Net::builder()
        .edit_key_manager(|km| {
            let dev = hex::encode(cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH);
            km.allowed_proxy_images = vec![format!("tdx@{dev}")];
            km.allowed_worker_images = vec![format!("tdx@{dev}")];
        })
        .start("km-hostile")
        .await;
    proxy_holds_the_key_managers_keys(&net).await;
    let port = key_manager_port(&net);

    // No evidence: refused at RA-TLS, before any query.
    match dial_key_manager(port, EvidenceChoice::None).await {
        Err(_) => {}
        Ok(s) => assert!(
            ask(&s, proxy_query()).await.is_err(),
            "keys without evidence"
        ),
    }

    // Attested, but with an image that is not allowed: a typed refusal, then the session ends.
    for query in [proxy_query(), worker_query()] {
        let s = dial_key_manager(port, EvidenceChoice::InsecureSoftwareSev)
            .await
            .expect("the TLS policy admits fake SEV-SNP");
        match ask(&s, query).await {
            Err(QueryError::Remote { code, message }) => {
                assert_eq!(code, 602);
                assert!(message.contains("is not in allowed_"), "{message}");
            }
            other => panic!("a disallowed image was answered: {other:?}"),
        }
        assert!(
            tokio::time::timeout(Duration::from_secs(5), s.session.closed())
                .await
                .is_ok(),
            "the session of a refused peer stays open"
        );
    }

    // An allowed image that sends something else than a key query: refused, session closed.
    let s = dial_key_manager(port, EvidenceChoice::InsecureSoftware)
        .await
        .expect("dial");
    let junk = encode(&KeyManagerPrivateKeys { keys: Vec::new() });
    match ask(&s, junk).await {
        Err(QueryError::Remote { code, .. }) => assert_eq!(code, 621),
        other => panic!("junk was answered: {other:?}"),
    }

    // An allowed image asking too fast: served within the burst, then refused and closed.
    let s = dial_key_manager(port, EvidenceChoice::InsecureSoftware)
        .await
        .expect("dial");
    let mut served = 0;
    let refused = loop {
        match ask(&s, worker_query()).await {
            Ok(_) => served += 1,
            Err(e) => break e,
        }
        assert!(served <= 30, "no rate limit");
    };
    assert!(served >= 1, "{refused:?}");
    assert!(
        matches!(refused, QueryError::Remote { code: 1429, .. }),
        "{refused:?}"
    );

    let k = key_manager_stats(&net).await;
    assert!(
        k["queries"]["refused_not_allowed"].as_u64() >= Some(2),
        "{k}"
    );
    assert!(k["queries"]["refused_unknown"].as_u64() >= Some(1), "{k}");
    assert!(k["queries"]["refused_rate"].as_u64() >= Some(1), "{k}");
    // The honest proxy was never refused and still holds the keys.
    let p = proxy_stats(&net).await;
    assert_eq!(p["key_manager"]["connected"], true, "{p}");
    assert!(listed(&p, "network_keys").contains(TEST_KEY), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_manager_even_the_test_key_is_unknown() {
    let net = Net::builder().without_key_manager().start("km-none").await;
    let p = proxy_stats(&net).await;
    assert!(p["key_manager"].is_null(), "{p}");
    assert!(listed(&p, "network_keys").is_empty(), "{p}");
    let mut client = HostileClient::dial(net.proxy_client_port, EvidenceChoice::None)
        .await
        .expect("dial the proxy");
    client.connect(OWNER).await.expect("connect");
    assert!(client.authorize(SECRET).await.expect("authorize"));
    let test_key: [u8; 32] = hex::decode(TEST_KEY).expect("hex").try_into().expect("32");
    let id = client
        .run_query_sealed("mock", false, 16, Some(test_key))
        .await;
    let a = client.answer(id, Duration::from_secs(10)).await;
    assert_eq!(
        a.error,
        Some((
            602,
            format!("unknown public key {}", TEST_KEY.to_uppercase())
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_chain_keys_are_announced_and_the_key_managers_image_is_checked() {
    let tmp = cocoon_testkit::TempDir::new("km-chain");
    let mut net = SplitNet::prepare(tmp.path()).await;
    let km_stats = format!("http://127.0.0.1:{}/jsonstats", 13000 + net.offset);
    let proxy_stats = format!("http://127.0.0.1:{}/jsonstats", 11000 + net.offset);
    let get = |url: String| async move {
        match reqwest::get(&url).await {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    };
    net.start("key-manager");
    net.start("proxy");
    // `cocoon dev` listed this key manager on the root: its generated key is announced, and
    // the root lists it (as it lists upstream's test key, registered by `cocoon dev`).
    let announced = eventually(Duration::from_secs(60), || async {
        let k = get(km_stats.clone()).await;
        let keys = k["keys"].as_array().cloned().unwrap_or_default();
        keys.len() == 2 && keys.iter().all(|k| k["on_root"] == true)
    })
    .await;
    if !announced {
        net.dump_logs();
        panic!("keys not announced: {}", get(km_stats.clone()).await);
    }
    let k = get(km_stats.clone()).await;
    assert!(k["chain"]["announcements_sent"].as_u64() >= Some(1), "{k}");
    assert!(k["chain"]["status"].is_null(), "{k}");
    // The proxy took the key manager (its image is the root's `key_manager_image_hash`).
    let held = eventually(Duration::from_secs(60), || async {
        let p = get(proxy_stats.clone()).await;
        listed(&p, "network_keys") == listed(&k, "keys")
    })
    .await;
    if !held {
        net.dump_logs();
        panic!("proxy holds no keys: {}", get(proxy_stats.clone()).await);
    }
    let before = listed(&get(proxy_stats.clone()).await, "network_keys");

    // The root now names another key manager image: a proxy that reconnects refuses this one
    // and keeps the keys it has.
    let identity = k["identity_public_key"]
        .as_str()
        .expect("identity")
        .to_string();
    let address = format!("127.0.0.1:{}", 13001 + net.offset);
    net.root_op(
        "set-key-manager",
        &[
            "--public-key",
            &identity,
            "--image-hash",
            &"ab".repeat(32),
            "--address",
            &address,
        ],
    );
    // Give the proxy's registry watch time to see the change, then make it reconnect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.kill9("key-manager");
    net.start("key-manager");
    let refused = eventually(Duration::from_secs(60), || async {
        let p = get(proxy_stats.clone()).await;
        p["key_manager"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("key_manager_image_hash"))
    })
    .await;
    if !refused {
        net.dump_logs();
        panic!(
            "the proxy took a key manager the root does not name: {}",
            get(proxy_stats.clone()).await
        );
    }
    let p = get(proxy_stats.clone()).await;
    assert_eq!(p["key_manager"]["connected"], false, "{p}");
    assert_eq!(listed(&p, "network_keys"), before, "keys dropped: {p}");
}
