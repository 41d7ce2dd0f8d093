//! The sealed path against a hostile proxy (docs/SECURITY.md, "sealed path" rows): a real
//! `cocoon client` with `[privacy] sealed = "required"` connected to the fake proxy of
//! `hostile_proxy.rs`, which lies about workers, tampers with answers and overcharges.
//!
//! What lives here: attacks a proxy can make on the client's sealing and receipt checks, with
//! the client's real process. What does not: the checks themselves without sockets
//! (`crates/client/src/sealing.rs`, `receipts.rs` tests), the worker's side
//! (`crates/worker/src/sealed.rs` tests).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cocoon_attest::{InsecureSoftwareTdx, NetworkKind, NoEvidence, INSECURE_SOFTWARE_IMAGE_HASH};
use cocoon_node::sealing::IdentitySigner;
use cocoon_proto::messages::{
    encode, ClientQueryAnswerPartEx, ClientQueryFinalInfo, ClientQueryReceiptV3,
    ClientSealingCandidateV3, ClientSealingCandidatesV3, HttpRequest, TokensUsed,
};
use cocoon_ratls::{CertOptions, RaTlsIdentity};
use cocoon_sealed::receipt::{ProxyStatement, Usage, WorkerStatement};
use cocoon_sealed::SealingKeyPair;
use cocoon_testkit::chat_request;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::Net;
use crate::hostile_proxy::{client_of_with, link_ready, FakeProxySession, HostileProxy};

/// The model the fake's workers claim.
const MODEL: &str = "mock@fake:00";

/// A worker as the fake proxy presents it: its certificate and the keys behind it.
struct FakeWorker {
    identity: RaTlsIdentity,
    sealing: SealingKeyPair,
}

impl FakeWorker {
    /// A worker with software evidence (what a dev client's policy accepts) or none at all.
    fn new(attested: bool) -> Self {
        let sealing = SealingKeyPair::generate();
        let opts = CertOptions {
            sealing_key: Some(sealing.public()),
            ..CertOptions::new(Duration::from_secs(3600))
        };
        let identity = if attested {
            RaTlsIdentity::generate_with(
                &InsecureSoftwareTdx::new(NetworkKind::Dev).expect("fake tdx"),
                &opts,
            )
        } else {
            RaTlsIdentity::generate_with(&NoEvidence, &opts)
        }
        .expect("identity");
        Self { identity, sealing }
    }

    fn candidate(&self) -> ClientSealingCandidateV3 {
        ClientSealingCandidateV3 {
            certificate: Bytes::copy_from_slice(self.identity.cert_der()),
            model: MODEL.into(),
        }
    }
}

/// A client of `fake` that seals every request or refuses it.
async fn strict_client(
    net: &Net,
    fake: &HostileProxy,
    name: &str,
) -> (crate::harness::Proc, String) {
    let (proc, base) = client_of_with(net, fake, name, |cfg| {
        let mut privacy = toml::Table::new();
        privacy.insert("sealed".into(), "required".into());
        privacy.insert("recipients".into(), 2.into());
        cfg.insert("privacy".into(), privacy.into());
    })
    .await;
    (proc, base)
}

fn body(canary: &str) -> Value {
    json!({
        "model": "mock",
        "messages": [{"role": "user", "content": format!("the secret is {canary}")}],
    })
}

async fn post(base: &str, body: &Value) -> reqwest::Response {
    chat_request(&reqwest::Client::new(), base)
        .json(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the client answers the app")
}

/// The fake's session with the client.
async fn session(fake: &mut HostileProxy) -> FakeProxySession {
    fake.next_session(Duration::from_secs(20))
        .await
        .expect("the client dials the fake proxy")
}

/// S1 + S2: a proxy that offers only workers whose certificates prove nothing (no evidence, or
/// a sealing key swapped into a genuine certificate) gets no request: the strict client
/// answers 503 `sealing_unavailable` and never sends the prompt, not even sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_offering_unverifiable_workers_gets_no_request() {
    let net = Net::builder().start("hostile-sealed-unverified").await;
    let mut fake = HostileProxy::start().await;
    let (_client, base) = strict_client(&net, &fake, "client-strict-1").await;
    let mut conn = session(&mut fake).await;

    // A certificate without evidence; and a genuine one whose sealing-key bytes were replaced
    // by the proxy's own key (its self-signature then fails).
    let bare = FakeWorker::new(false);
    let genuine = FakeWorker::new(true);
    let proxy_key = SealingKeyPair::generate();
    let mut swapped = genuine.identity.cert_der().to_vec();
    let at = swapped
        .windows(32)
        .position(|w| w == genuine.sealing.public())
        .expect("the sealing key is in the certificate");
    swapped[at..at + 32].copy_from_slice(&proxy_key.public());
    conn.candidates = Some(ClientSealingCandidatesV3 {
        candidates: vec![
            bare.candidate(),
            ClientSealingCandidateV3 {
                certificate: Bytes::from(swapped),
                model: MODEL.into(),
            },
        ],
    });

    let app = async {
        assert!(link_ready(&base, &format!("127.0.0.1:{}", fake.port)).await);
        post(&base, &body("c4n4ry-unverified")).await
    };
    let fake_side = conn.next_request(Duration::from_secs(15));
    let (resp, got) = tokio::join!(app, fake_side);
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "sealing_unavailable", "{v}");
    assert!(
        got.is_none(),
        "the client sent a request to a proxy with no verified worker"
    );
    let stats: Value = reqwest::get(format!("{base}/jsonstats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert!(
        stats["privacy"]["worker_verdicts"]["refused"].as_u64() >= Some(2),
        "{stats}"
    );
}

/// S3 + S4 + S5: the proxy offers a genuine worker and gets the request sealed: the prompt is
/// nowhere in what it received. A piece it tampers with makes the client fail the answer
/// (never deliver forged text). Colluding with the worker, it answers correctly but
/// countersigns a charge above the worker's receipt: the app gets its answer, the client counts
/// the overcharge and never uses that proxy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cannot_read_forge_or_overcharge_a_sealed_request() {
    let net = Net::builder().start("hostile-sealed").await;
    let mut fake = HostileProxy::start().await;
    let (_client, base) = strict_client(&net, &fake, "client-strict-2").await;
    let mut conn = session(&mut fake).await;
    let worker = FakeWorker::new(true);
    conn.candidates = Some(ClientSealingCandidatesV3 {
        candidates: vec![worker.candidate()],
    });
    let proxy_addr = format!("127.0.0.1:{}", fake.port);

    // 1. Tampered answer.
    let canary = format!("c4n4ry-{:016x}", rand_u64());
    let app = async {
        assert!(link_ready(&base, &proxy_addr).await);
        post(&base, &body(&canary)).await
    };
    let fake_side = async {
        let id = conn
            .next_request(Duration::from_secs(20))
            .await
            .expect("request");
        let run = conn.last_run.clone().expect("runQueryEx");
        let raw = run.query.to_vec();
        assert!(
            !raw.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "the prompt reached the proxy readable"
        );
        let envelope = open_envelope(&run.query);
        let (_plain, _, mut sealer) = cocoon_sealed::open_request(
            &envelope,
            &worker.identity.public_key(),
            &[&worker.sealing],
        )
        .expect("the worker's key opens it");
        let mut piece = sealer.seal_piece(b"{\"forged\":true}", true).expect("seal");
        let n = piece.len();
        piece[n - 1] ^= 1;
        conn.head_typed(id, "application/json").await;
        part(&conn, id, piece, true).await;
    };
    let (resp, ()) = tokio::join!(app, fake_side);
    assert_eq!(resp.status(), 502, "a forged piece must fail the answer");
    let text = resp.text().await.expect("body");
    assert!(!text.contains("forged"), "{text}");

    // 2. A correct answer with an overcharging receipt.
    let second = body("second");
    let app = post(&base, &second);
    let fake_side = async {
        let id = conn
            .next_request(Duration::from_secs(20))
            .await
            .expect("request");
        let run = conn.last_run.clone().expect("runQueryEx");
        let envelope = open_envelope(&run.query);
        let (plain, _, mut sealer) = cocoon_sealed::open_request(
            &envelope,
            &worker.identity.public_key(),
            &[&worker.sealing],
        )
        .expect("open");
        let inner: HttpRequest = cocoon_tl::from_bytes(&Bytes::from(plain)).expect("inner");
        assert!(String::from_utf8_lossy(&inner.payload).contains("second"));
        let answer = json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        });
        let piece = sealer
            .seal_piece(answer.to_string().as_bytes(), true)
            .expect("seal");
        let statement = WorkerStatement {
            request_hash: cocoon_sealed::envelope_hash(&envelope),
            answer_hash: sealer.transcript_hash(),
            model_hash: Sha256::digest(MODEL.as_bytes()).into(),
            image_hash: INSECURE_SOFTWARE_IMAGE_HASH,
            usage: Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
                total_tokens: 10,
                ..Usage::default()
            },
            coefficient: 1000,
            started_ms: now_ms(),
            ended_ms: now_ms(),
            worker_key: worker.identity.public_key(),
        };
        let receipt = statement
            .sign(&IdentitySigner(worker.identity.clone()))
            .expect("worker signs")
            .countersign(
                ProxyStatement {
                    price_per_token: 2,
                    // 10 tokens at 2 are 20: the proxy asks for 10 times that.
                    charge: 200,
                    proxy_key: fake.identity.public_key(),
                },
                &IdentitySigner(fake.identity.clone()),
            )
            .expect("proxy countersigns");
        conn.head_typed(id, "application/json").await;
        let _ = conn
            .session
            .send(encode(&ClientQueryReceiptV3 {
                request_id: id,
                receipt: Bytes::from(receipt.to_bytes()),
            }))
            .await;
        part(&conn, id, piece, true).await;
    };
    let (resp, ()) = tokio::join!(app, fake_side);
    assert_eq!(resp.status(), 200, "the answer itself is genuine");
    assert_eq!(
        resp.headers()["x-cocoon-path"].to_str().expect("ascii"),
        "sealed"
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "ok");
    let stats: Value = reqwest::get(format!("{base}/jsonstats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["privacy"]["proxy_overcharges"], 1, "{stats}");
    assert_eq!(
        stats["privacy"]["refused_proxies"],
        json!([proxy_addr]),
        "{stats}"
    );
    // From now on the client uses that proxy for nothing.
    let resp = post(&base, &body("third")).await;
    assert_eq!(resp.status(), 503);
}

/// The envelope inside a sealed `http.request` (all the proxy gets: a fixed URL, the envelope).
fn open_envelope(query: &Bytes) -> Vec<u8> {
    let outer: HttpRequest = cocoon_tl::from_bytes(query).expect("http.request");
    assert!(outer
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-type")
            && h.value == cocoon_sealed::SEALED_CONTENT_TYPE));
    assert_eq!(
        outer.url, "/v1/sealed",
        "the app's URL is inside the envelope"
    );
    cocoon_sealed::read_header(&outer.payload).expect("header");
    outer.payload.to_vec()
}

async fn part(conn: &FakeProxySession, id: [u8; 32], piece: Vec<u8>, last: bool) {
    let final_info = last.then_some(ClientQueryFinalInfo {
        flags: 0,
        tokens_used: TokensUsed {
            prompt_tokens_used: 7,
            cached_tokens_used: 0,
            completion_tokens_used: 3,
            reasoning_tokens_used: 0,
            total_tokens_used: 10,
        },
        worker_debug: None,
        proxy_debug: None,
        proxy_start_time: None,
        proxy_end_time: None,
        worker_start_time: None,
        worker_end_time: None,
    });
    let _ = conn
        .session
        .send(encode(&ClientQueryAnswerPartEx {
            request_id: id,
            answer: Bytes::from(piece),
            flags: u32::from(last),
            final_info,
        }))
        .await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rand_u64() -> u64 {
    rand::random()
}
