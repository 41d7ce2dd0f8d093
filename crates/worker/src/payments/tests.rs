//! Tests of the worker's payments: `payments.json` round trip and corruption, the handshake's
//! address and rollback checks, the high-water checks on later messages, and cash-outs on an
//! in-process local chain (the owner is paid exactly tokens × worker_fee by the proxy contract).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_localnet::Localnet;
use cocoon_onchain::signed::sign_boc;
use cocoon_onchain::{Registry, RegistryWatch, WalletSender};
use cocoon_proto::messages::{
    ProxyParams, ProxySignedPayment, ProxySignedPaymentData, WorkerCompareBalanceWithProxyResult,
    WorkerConnectedToProxy,
};
use cocoon_ton::contracts::{CocoonParams, Network};
use cocoon_ton::payments::{ProxySigner, SignedKind};
use cocoon_ton::wallet::{Phrase, Transfer, Wallet};
use cocoon_ton::{Chain, TonAddress};

use super::marks::Channel;
use super::store::{self, StoreError};
use super::*;

const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
const TON: u128 = 1_000_000_000;

fn addr(b: u8) -> TonAddress {
    TonAddress::new(0, [b; 32])
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cocoon-worker-pay-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A local chain with a root deployed and a funded proxy contract for `signer`'s key.
/// The image hash the scripted proxies present (registered in the test root's registry).
const PROXY_IMAGE: [u8; 32] = [0x5a; 32];

struct Net {
    net: Localnet,
    chain: Arc<dyn Chain>,
    sender: Arc<WalletSender>,
    registry: Registry,
    signer: ProxySigner,
    proxy_owner: TonAddress,
    proxy_contract: TonAddress,
}

async fn localnet() -> Net {
    let net = Localnet::in_memory().unwrap();
    let chain: Arc<dyn Chain> = Arc::new(net.clone());
    let wallet = Wallet::from_phrase(&Phrase::parse(PHRASE).unwrap()).unwrap();
    net.faucet(wallet.address(), 100 * TON).await.unwrap();
    let sender = Arc::new(
        WalletSender::new(chain.clone(), wallet).with_confirm_timeout(Duration::from_secs(10)),
    );
    // The root (owner: our wallet), with the reference params.
    let root = Network::root(&sender.address(), &CocoonParams::default()).unwrap();
    sender
        .send(vec![Transfer {
            dest: root.address,
            value: TON,
            bounce: false,
            body: None,
            state_init: Some(root.state_init_cell().unwrap()),
        }])
        .await
        .unwrap();
    let mut registry = Registry::read(chain.as_ref(), &root.address).await.unwrap();
    // The scripted proxies below present this image; the root registers it.
    let mut st = (*registry.state).clone();
    st.proxy_hashes.push(PROXY_IMAGE);
    registry.state = Arc::new(st);
    // A proxy contract holding client money (20 TON): what pays the workers.
    let signer = ProxySigner::from_seed(&[5; 32]).unwrap();
    let proxy_owner = addr(0x11);
    let proxy = registry
        .network(signer.public_key())
        .proxy(&proxy_owner, &root.address)
        .unwrap();
    sender
        .send(vec![Transfer {
            dest: proxy.address,
            value: 20 * TON,
            bounce: false,
            body: None,
            state_init: Some(proxy.state_init_cell().unwrap()),
        }])
        .await
        .unwrap();
    Net {
        net,
        chain,
        sender,
        registry,
        signer,
        proxy_owner,
        proxy_contract: proxy.address,
    }
}

impl Net {
    async fn payments(&self, owner: TonAddress, dir: &std::path::Path, min: u128) -> Payments {
        let side = ChainSide {
            chain: self.chain.clone(),
            sender: self.sender.clone(),
            registry: RegistryWatch::fixed(self.registry.clone()),
            root: self.registry.root,
            owner,
        };
        Payments::open(
            side,
            dir.join(store::FILE_NAME),
            min,
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    }

    fn worker_contract(&self, owner: &TonAddress) -> TonAddress {
        self.registry
            .network(self.signer.public_key())
            .worker(owner, &self.proxy_contract)
            .unwrap()
            .address
    }

    fn connected(&self, owner: &TonAddress) -> WorkerConnectedToProxy {
        WorkerConnectedToProxy {
            params: ProxyParams {
                flags: 3,
                proxy_public_key: self.signer.public_key(),
                proxy_owner_address: self.proxy_owner.to_bounceable(),
                proxy_sc_address: self.proxy_contract.to_bounceable(),
                is_test: Some(true),
                proto_version: Some(3),
            },
            worker_sc_address: self.worker_contract(owner).to_bounceable(),
        }
    }

    fn payout(&self, owner: &TonAddress, tokens: u64) -> ProxySignedPayment {
        let boc = sign_boc(
            &self.signer,
            SignedKind::Payout,
            tokens,
            &self.worker_contract(owner),
            &self.proxy_owner,
        )
        .unwrap();
        ProxySignedPayment::Signed(ProxySignedPaymentData {
            data: Bytes::from(boc),
        })
    }

    async fn balance(&self, a: &TonAddress) -> u128 {
        self.net.account_state(a).await.unwrap().balance
    }
}

fn compare_result(
    signed: ProxySignedPayment,
    db: i64,
    max: i64,
) -> WorkerCompareBalanceWithProxyResult {
    WorkerCompareBalanceWithProxyResult {
        signed_payment: signed,
        tokens_committed_to_db: db,
        max_tokens: max,
        error_code: 0,
    }
}

#[tokio::test]
async fn handshake_checks_addresses_and_refuses_a_rolled_back_proxy() {
    let n = localnet().await;
    let dir = tmpdir("handshake");
    let owner = addr(0x77);
    let p = n.payments(owner, &dir, TON).await;

    // Wrong worker contract, wrong proxy contract, garbage address: refused.
    let mut c = n.connected(&owner);
    c.worker_sc_address = n.worker_contract(&addr(0x78)).to_bounceable();
    assert!(matches!(
        p.admit(&c),
        Err(Refusal::Mismatch {
            what: "worker contract",
            ..
        })
    ));
    let mut c = n.connected(&owner);
    c.params.proxy_sc_address = addr(0x12).to_bounceable();
    assert!(matches!(
        p.admit(&c),
        Err(Refusal::Mismatch {
            what: "proxy contract",
            ..
        })
    ));
    let mut c = n.connected(&owner);
    c.params.proxy_owner_address = "dev-proxy".into();
    assert!(matches!(p.admit(&c), Err(Refusal::BadAddress { .. })));

    // The right addresses (raw form accepted too): admitted; we hold nothing yet.
    let mut c = n.connected(&owner);
    c.params.proxy_sc_address = n.proxy_contract.to_raw();
    let link = p.admit(&c).unwrap();
    let ask = p.compare_request(&link);
    assert_eq!(
        (
            ask.tokens_committed_to_blockchain,
            ask.tokens_committed_to_db,
            ask.max_tokens
        ),
        (0, 0, 0)
    );
    p.on_compare(&link, &compare_result(n.payout(&owner, 100), 150, 200))
        .unwrap();
    let ask = p.compare_request(&link);
    assert_eq!(
        (
            ask.tokens_committed_to_blockchain,
            ask.tokens_committed_to_db,
            ask.max_tokens
        ),
        (100, 150, 200)
    );

    // Next session: a proxy answering with less signed or less db is refused (rollback)...
    let link = p.admit(&n.connected(&owner)).unwrap();
    let r = p.on_compare(&link, &compare_result(n.payout(&owner, 99), 150, 200));
    assert!(matches!(
        r,
        Err(Refusal::Backwards(Backwards::Signed { held: 100, got: 99 }))
    ));
    let r = p.on_compare(&link, &compare_result(n.payout(&owner, 100), 149, 200));
    assert!(matches!(r, Err(Refusal::Backwards(Backwards::Db { .. }))));
    let r = p.on_compare(
        &link,
        &compare_result(ProxySignedPayment::empty(), 150, 200),
    );
    assert!(matches!(
        r,
        Err(Refusal::Backwards(Backwards::Signed { .. }))
    ));
    // ... a payout signed by another key or for another contract too.
    let other = ProxySigner::from_seed(&[6; 32]).unwrap();
    let forged = sign_boc(
        &other,
        SignedKind::Payout,
        500,
        &n.worker_contract(&owner),
        &owner,
    )
    .unwrap();
    let r = p.on_compare(
        &link,
        &compare_result(
            ProxySignedPayment::Signed(ProxySignedPaymentData {
                data: forged.into(),
            }),
            500,
            500,
        ),
    );
    assert!(matches!(r, Err(Refusal::BadSigned(_))));
    let charge = sign_boc(
        &n.signer,
        SignedKind::Charge,
        500,
        &n.worker_contract(&owner),
        &owner,
    )
    .unwrap();
    let r = p.on_report(
        &link,
        Channel::Stream,
        Some(&ProxySignedPayment::Signed(ProxySignedPaymentData {
            data: charge.into(),
        })),
        None,
        None,
    );
    assert!(matches!(r, Err(Refusal::BadSigned(_))));
    // Nothing of that moved our marks.
    assert_eq!(
        p.record(&link.proxy_contract).unwrap().marks(),
        marks::Marks {
            signed: 100,
            db: 150,
            max: 200
        }
    );

    // A restarted proxy that lost non-durable max (but not db) is accepted.
    p.on_compare(&link, &compare_result(n.payout(&owner, 100), 150, 150))
        .unwrap();
    // Within the session, later messages must not go back.
    p.on_report(
        &link,
        Channel::Stream,
        Some(&n.payout(&owner, 120)),
        Some(160),
        Some(170),
    )
    .unwrap();
    assert!(p
        .on_report(&link, Channel::Stream, None, Some(160), Some(169))
        .is_err());
    assert!(p
        .on_report(&link, Channel::Stream, None, Some(-1), None)
        .is_err());
    assert!(p
        .on_report(
            &link,
            Channel::Stream,
            Some(&n.payout(&owner, 110)),
            None,
            None
        )
        .is_err());
    // An unsigned later message (e.g. runQueryEx) says nothing about the payout: accepted.
    p.on_report(
        &link,
        Channel::Stream,
        Some(&ProxySignedPayment::empty()),
        Some(160),
        Some(170),
    )
    .unwrap();
    let rec = p.record(&link.proxy_contract).unwrap();
    assert_eq!(
        (rec.signed_tokens, rec.db_tokens, rec.max_tokens),
        (120, 160, 200)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn payments_file_round_trips_and_corruption_is_a_clear_error() {
    let n = localnet().await;
    let dir = tmpdir("file");
    let owner = addr(0x77);
    let p = n.payments(owner, &dir, TON).await;
    let link = p.admit(&n.connected(&owner)).unwrap();
    p.on_report(
        &link,
        Channel::Stream,
        Some(&n.payout(&owner, 42)),
        Some(50),
        Some(60),
    )
    .unwrap();
    p.flush().await.unwrap();
    let path = dir.join(store::FILE_NAME);

    // Round trip: the same record, and a new Payments holds the same marks.
    let book = store::load(&path).unwrap();
    assert_eq!(
        book.get(&link.proxy_contract),
        p.record(&link.proxy_contract).as_ref()
    );
    let again = n.payments(owner, &dir, TON).await;
    assert_eq!(
        again.record(&link.proxy_contract),
        p.record(&link.proxy_contract)
    );
    assert!(book[&link.proxy_contract].signed_payout.is_some());

    // Every truncation is an error, never an empty book.
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 3] {
        match store::parse(&path, &bytes[..cut]) {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let side = ChainSide {
        chain: n.chain.clone(),
        sender: n.sender.clone(),
        registry: RegistryWatch::fixed(n.registry.clone()),
        root: n.registry.root,
        owner,
    };
    let err = Payments::open(side, path.clone(), TON, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");

    // Edited numbers do not match the signed payout: refused.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let edited = text.replace("\"signed_tokens\": 42", "\"signed_tokens\": 43");
    assert_ne!(edited, text);
    assert!(matches!(
        store::parse(&path, edited.as_bytes()),
        Err(StoreError::BadRecord { .. })
    ));
    // Another format version: refused.
    let v2 = text.replace("\"version\": 1", "\"version\": 2");
    assert!(matches!(
        store::parse(&path, v2.as_bytes()),
        Err(StoreError::Version { got: 2, .. })
    ));
    // A missing file is an empty book (first start).
    assert!(store::load(&dir.join("nope.json")).unwrap().is_empty());
    // Atomic write leaves no temp files behind.
    store::write_atomic(&path, &bytes).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![store::FILE_NAME.to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cashout_pays_the_owner_tokens_times_worker_fee() {
    let n = localnet().await;
    // Pin the chain clock: with time passing, the owner's account would pay storage fees between
    // payouts and its balance would be a little under the exact sum.
    n.net.set_time(n.net.now());
    let dir = tmpdir("cashout");
    // The owner is not the wallet, so its balance shows exactly what the proxy contract paid.
    let owner = addr(0x77);
    let fee = n.registry.state.params.worker_fee_per_token;
    let p = n.payments(owner, &dir, 2 * TON).await;
    let link = p.admit(&n.connected(&owner)).unwrap();
    let worker = n.worker_contract(&owner);
    assert_eq!(n.balance(&owner).await, 0);

    // 1 TON earned: below min_cashout (2 TON), nothing sent, the contract stays undeployed.
    p.on_report(
        &link,
        Channel::Stream,
        Some(&n.payout(&owner, 1_000_000)),
        Some(1_000_000),
        Some(1_000_000),
    )
    .unwrap();
    let r = p.cashout_round(false).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, "skipped", "{r:?}");
    assert_eq!(n.balance(&owner).await, 0);
    assert!(
        !cashout::read_contract(n.chain.as_ref(), &worker)
            .await
            .unwrap()
            .deployed
    );

    // Forced (as `cocoon worker cashout` and POST /admin/cashout do): deploys the worker
    // contract, which asks the proxy contract to pay 1 000 000 × fee to the owner.
    let r = p.cashout_round(true).await;
    assert_eq!(r[0].outcome, "sent", "{r:?}");
    let oc = cashout::read_contract(n.chain.as_ref(), &worker)
        .await
        .unwrap();
    assert!(oc.deployed);
    assert_eq!(oc.tokens, 1_000_000);
    assert_eq!(n.balance(&owner).await, 1_000_000 * fee);
    assert_eq!(
        p.record(&link.proxy_contract).unwrap().on_chain_tokens,
        1_000_000
    );

    // Nothing new: nothing sent.
    let r = p.cashout_round(true).await;
    assert_eq!(r[0].outcome, "skipped");

    // 2.5 TON more signed: above min_cashout, the periodic round pays the delta only.
    p.on_report(
        &link,
        Channel::Stream,
        Some(&n.payout(&owner, 3_500_000)),
        None,
        None,
    )
    .unwrap();
    let r = p.cashout_round(false).await;
    assert_eq!(r[0].outcome, "sent", "{r:?}");
    assert_eq!(n.balance(&owner).await, 3_500_000 * fee);
    assert_eq!(
        cashout::read_contract(n.chain.as_ref(), &worker)
            .await
            .unwrap()
            .tokens,
        3_500_000
    );
    // The stats show it.
    let s = p.stats_json();
    let rec = &s["proxies"][&link.proxy_contract];
    assert_eq!(rec["paid_out_ton"], "3.5");
    assert_eq!(rec["pending_tokens"], 0);

    // The CLI's path (no Payments, just the record and a wallet) refuses when nothing is due.
    let rec = p.record(&link.proxy_contract).unwrap();
    assert!(matches!(
        cashout::submit(&n.sender, &rec).await,
        Err(cashout::CashoutError::Nothing { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

// === through the real link code: handshake and serve against a scripted proxy ===

mod link {

    use cocoon_engine::mock::{MockConfig, MockEngine};
    use cocoon_node::net::AttestedSession;
    use cocoon_proto::messages::{
        encode, ProxyWorkerRequestPayment, WorkerConnectedToProxy,
        WorkerExtendedCompareBalanceWithProxyResult, WorkerPaymentStatus,
        WorkerProxyHandshakeCompleted, WorkerToProxyQuery,
    };
    use cocoon_proto::session::{establish, Inbound, InboundMessage, Session, SessionConfig};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::WorkerConfig;
    use crate::{proxy_link, Shared, WorkerStats};

    fn shared(p: Payments) -> Arc<Shared> {
        let mut cfg = WorkerConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        Arc::new(Shared::new(
            cfg,
            Arc::new(MockEngine::new(MockConfig::default())),
            Arc::new(WorkerStats::new()),
            Some(Arc::new(p)),
        ))
    }

    /// A worker-side session and the proxy's end of it.
    async fn pair() -> (AttestedSession, Session, Inbound) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (w, p) = tokio::join!(
            establish(a, SessionConfig::dialer()),
            establish(b, SessionConfig::acceptor())
        );
        let (session, inbound) = w.unwrap();
        let (ps, pi) = p.unwrap();
        let conn = AttestedSession {
            session,
            inbound,
            peer: cocoon_attest::AttestedPeer {
                kind: cocoon_attest::EvidenceKind::InsecureSoftware,
                image_hash: Some(PROXY_IMAGE),
                evidence_digest: None,
                sealing_key: None,
                certificate: None,
                not_after: None,
                ..cocoon_attest::AttestedPeer::unattested([9; 32])
            },
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        (conn, ps, pi)
    }

    /// What a scripted proxy was shown in extended compares (`other`: a signed payout).
    type Shown = Arc<Mutex<Vec<Bytes>>>;

    /// Answers the worker's handshake queries with `connected` and `compare` (an extended
    /// compare with 0, keeping what it was shown), then the payment-status queries with
    /// `status`, until the session ends.
    fn scripted_proxy(
        mut inbound: Inbound,
        connected: WorkerConnectedToProxy,
        compare: WorkerCompareBalanceWithProxyResult,
        status: WorkerPaymentStatus,
    ) -> (tokio::task::JoinHandle<()>, Shown) {
        let shown = Shown::default();
        let seen = shown.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = inbound.recv().await {
                let InboundMessage::Query(q) = m else {
                    continue;
                };
                let answer = match cocoon_tl::from_bytes::<WorkerToProxyQuery>(&q.data).unwrap() {
                    WorkerToProxyQuery::ConnectToProxy(_) => encode(&connected),
                    WorkerToProxyQuery::CompareBalanceWithProxy(_) => encode(&compare),
                    WorkerToProxyQuery::ExtendedCompareBalanceWithProxy(e) => {
                        seen.lock().unwrap().push(e.other);
                        encode(&WorkerExtendedCompareBalanceWithProxyResult { error_code: 0 })
                    }
                    WorkerToProxyQuery::ProxyHandshakeComplete(_) => {
                        encode(&WorkerProxyHandshakeCompleted)
                    }
                    WorkerToProxyQuery::UpdatePaymentStatus(_) => encode(&status),
                };
                q.answer(answer).await;
            }
        });
        (task, shown)
    }

    /// A chat request as a proxy sends it.
    fn run_query(id: u8) -> Bytes {
        use cocoon_proto::messages::{HttpRequest, ProxyRunQueryEx};
        let body = serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "one two three four"}],
        });
        encode(&ProxyRunQueryEx {
            query: encode(&HttpRequest {
                method: "POST".into(),
                url: "/v1/chat/completions".into(),
                http_version: "HTTP/1.1".into(),
                headers: Vec::new(),
                payload: Bytes::from(body.to_string()),
            }),
            signed_payment: ProxySignedPayment::empty(),
            coefficient: 1000,
            timeout: 30.0,
            request_id: [id; 32],
            flags: 0,
            enable_debug: None,
            private_key: None,
        })
    }

    /// The next message the proxy gets from the worker (10 s at most).
    async fn next_msg(
        inbound: &mut tokio::sync::mpsc::UnboundedReceiver<InboundMessage>,
    ) -> cocoon_proto::messages::WorkerToProxyMessage {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
                .await
                .expect("a message in time")
                .expect("session open");
            if let InboundMessage::Packet(p) = m {
                return cocoon_tl::from_bytes(&p).expect("a worker message");
            }
        }
    }

    #[tokio::test]
    async fn a_link_prices_at_its_roots_params_a_stale_root_disables_and_a_retired_link_drains() {
        use cocoon_proto::messages::WorkerToProxyMessage as M;
        let mut n = localnet().await;
        // The root's params: prompt ×2, completion ×3, 7 nanoTON a token ([pricing] says ×1, 2).
        let mut st = (*n.registry.state).clone();
        st.params.prompt_mult = 20_000;
        st.params.completion_mult = 30_000;
        st.params.price_per_token = 7;
        n.registry.state = Arc::new(st);
        n.proxy_contract = n
            .registry
            .network(n.signer.public_key())
            .proxy(&n.proxy_owner, &n.registry.root)
            .unwrap()
            .address;
        let dir = tmpdir("stale");
        let owner = addr(0x79);
        let p = n.payments(owner, &dir, TON).await;
        let watch = p.registry().clone();
        let mut cfg = WorkerConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        cfg.health_interval = Duration::from_millis(50);
        let engine = MockEngine::new(MockConfig {
            completion_tokens: 8,
            token_delay: Duration::from_millis(60),
            ..MockConfig::default()
        });
        let sh = Arc::new(Shared::new(
            cfg,
            Arc::new(engine),
            Arc::new(WorkerStats::new()),
            Some(Arc::new(p)),
        ));
        let (conn, proxy, mut proxy_in) = pair().await;
        let (script_in_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel();
        // The scripted proxy answers queries; packets go to the test.
        let connected = n.connected(&owner);
        let script = tokio::spawn(async move {
            while let Some(m) = proxy_in.recv().await {
                match m {
                    InboundMessage::Query(q) => {
                        let answer =
                            match cocoon_tl::from_bytes::<WorkerToProxyQuery>(&q.data).unwrap() {
                                WorkerToProxyQuery::ConnectToProxy(_) => encode(&connected),
                                WorkerToProxyQuery::CompareBalanceWithProxy(_) => {
                                    encode(&compare_result(ProxySignedPayment::empty(), 0, 0))
                                }
                                WorkerToProxyQuery::ProxyHandshakeComplete(_) => {
                                    encode(&WorkerProxyHandshakeCompleted)
                                }
                                _ => {
                                    q.error(1, "no".into()).await;
                                    continue;
                                }
                            };
                        q.answer(answer).await;
                    }
                    other => {
                        let _ = script_in_tx.send(other);
                    }
                }
            }
        });
        let (_, link) = proxy_link::handshake(&sh, &conn, 1).await.unwrap();
        let link = link.unwrap();
        // The root wins over [pricing].
        let pricing = sh.link_pricing(Some(&link));
        assert_eq!(pricing.prompt_multiplier, 20_000);
        assert_eq!(pricing.completion_multiplier, 30_000);
        assert_eq!(pricing.price_per_token, 7);
        assert_eq!(
            sh.link_pricing(None),
            sh.cfg.pricing,
            "chain off: [pricing]"
        );

        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let retire = CancellationToken::new();
        let serving = tokio::spawn({
            let (sh, shutdown, retire) = (sh.clone(), shutdown.clone(), retire.clone());
            async move {
                let control = cocoon_node::discovery::LinkControl::new(retire);
                proxy_link::serve(
                    &sh,
                    conn,
                    crate::WITH_EXTENSIONS,
                    Some(link),
                    &shutdown,
                    &control,
                )
                .await
            }
        });
        tokio::spawn(crate::health_loop(sh.clone(), shutdown.clone()));

        // A request: its final usage is adjusted at the root's multipliers, its cost at 7.
        proxy.send(run_query(1)).await.unwrap();
        let (final_info, body) = loop {
            match next_msg(&mut msgs).await {
                M::QueryAnswerPartV3(part) if part.final_info.is_some() => {
                    break (part.final_info.unwrap(), part.answer)
                }
                _ => {}
            }
        };
        let t = final_info.tokens_used;
        let usage: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let raw_prompt = usage["usage"]["prompt_tokens"].as_i64().unwrap();
        let raw_completion = usage["usage"]["completion_tokens"].as_i64().unwrap();
        assert_eq!(t.prompt_tokens_used, raw_prompt * 2);
        assert_eq!(t.completion_tokens_used, raw_completion * 3);
        assert_eq!(
            usage["usage"]["total_cost"].as_i64().unwrap(),
            t.total_tokens_used * 7
        );

        // The view of the root goes stale: the proxy is told the worker is disabled; a read
        // makes it fresh: enabled again.
        watch.set_view_time(Some(
            std::time::SystemTime::now() - Duration::from_secs(3600),
        ));
        let disabled = loop {
            if let M::EnabledDisabled(e) = next_msg(&mut msgs).await {
                break e.disabled;
            }
        };
        assert_eq!(disabled, 1);
        assert!(!sh.takes_work());
        watch.set_view_time(Some(std::time::SystemTime::now()));
        let enabled = loop {
            if let M::EnabledDisabled(e) = next_msg(&mut msgs).await {
                break e.disabled;
            }
        };
        assert_eq!(enabled, 0);

        // Retired with a request running: disabled on that proxy, the request finishes, then
        // the link closes.
        proxy.send(run_query(2)).await.unwrap();
        loop {
            if let M::QueryAnswerEx(_) = next_msg(&mut msgs).await {
                break;
            }
        }
        retire.cancel();
        let mut saw_disabled = false;
        loop {
            match next_msg(&mut msgs).await {
                M::EnabledDisabled(e) => {
                    assert_eq!(e.disabled, 1);
                    saw_disabled = true;
                }
                M::QueryAnswerPartV3(part) if part.final_info.is_some() => {
                    assert!(saw_disabled, "disabled before the request ended");
                    break;
                }
                M::QueryAnswerErrorEx(e) => panic!("the running request failed: {}", e.error),
                _ => {}
            }
        }
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("the retired link ends once idle")
            .unwrap();
        // Enabling again later reaches no retired link.
        assert!(sh.sessions.lock().unwrap().is_empty());
        script.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The tokens of a payout a scripted proxy was shown, checked as the proxy would check it.
    fn shown_tokens(n: &Net, owner: &TonAddress, boc: &[u8]) -> u64 {
        cocoon_onchain::signed::check_boc(
            boc,
            &n.signer.public_key(),
            SignedKind::Payout,
            &n.worker_contract(owner),
        )
        .expect("a payout the proxy signed for this worker")
        .payload
        .new_tokens
    }

    fn status(n: &Net, owner: &TonAddress, s: u64, db: i64) -> WorkerPaymentStatus {
        WorkerPaymentStatus {
            signed_payment: n.payout(owner, s),
            db_tokens: db,
            max_tokens: db,
        }
    }

    #[tokio::test]
    async fn a_proxy_going_backwards_is_dropped_and_a_rolled_back_one_refused() {
        let n = localnet().await;
        let dir = tmpdir("link");
        let owner = addr(0x77);
        let sh = shared(n.payments(owner, &dir, TON).await);
        let pay = sh.payments.clone().unwrap();

        // Handshake: the proxy hands over a signed payout of 100 and db 150.
        let (conn, proxy, proxy_in) = pair().await;
        let (script, shown) = scripted_proxy(
            proxy_in,
            n.connected(&owner),
            compare_result(n.payout(&owner, 100), 150, 150),
            status(&n, &owner, 100, 150),
        );
        let (_, link) = proxy_link::handshake(&sh, &conn, 1).await.unwrap();
        let link = link.unwrap();
        assert_eq!(pay.record(&link.proxy_contract).unwrap().signed_tokens, 100);
        assert!(shown.lock().unwrap().is_empty(), "nothing to dispute");

        // Serving: a payment notice that keeps growing is fine; one with a lower db drops the link.
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn({
            let sh = sh.clone();
            let link = link.clone();
            let shutdown = shutdown.clone();
            async move {
                let control = cocoon_node::discovery::LinkControl::fixed();
                proxy_link::serve(
                    &sh,
                    conn,
                    crate::WITH_EXTENSIONS,
                    Some(link),
                    &shutdown,
                    &control,
                )
                .await
            }
        });
        let notice = |s: u64, db: i64| {
            encode(&ProxyWorkerRequestPayment {
                request_id: [1; 32],
                signed_payment: n.payout(&owner, s),
                db_tokens: db,
                max_tokens: db,
                request_tokens: 10,
                request_client_owner: String::new(),
            })
        };
        proxy.send(notice(110, 160)).await.unwrap();
        proxy.send(notice(110, 155)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the worker dropped the link")
            .unwrap();
        assert_eq!(sh.stats.payments_refused.get(), 1);
        let rec = pay.record(&link.proxy_contract).unwrap();
        assert_eq!((rec.signed_tokens, rec.db_tokens), (110, 160));
        script.abort();

        // Reconnect to a proxy whose books were rolled back (db 150 < 160): refused at handshake.
        // The worker shows it the payout it signed (110), the evidence it can check itself.
        let (conn, _proxy, proxy_in) = pair().await;
        let (_script, shown) = scripted_proxy(
            proxy_in,
            n.connected(&owner),
            compare_result(n.payout(&owner, 110), 150, 150),
            status(&n, &owner, 110, 150),
        );
        let err = proxy_link::handshake(&sh, &conn, 1).await.unwrap_err();
        assert!(err.contains("backwards"), "{err}");
        assert_eq!(sh.stats.payments_refused.get(), 2);
        let shown = shown.lock().unwrap().clone();
        assert_eq!(shown.len(), 1, "one extended compare");
        assert_eq!(shown_tokens(&n, &owner, &shown[0]), 110);

        // A proxy answering error 1 (we claim more than its books) with numbers we accept:
        // the extended compare carries our payout too, and the link comes up.
        let (conn, _proxy, proxy_in) = pair().await;
        let mut disputed = compare_result(n.payout(&owner, 110), 160, 160);
        disputed.error_code = 1;
        let (_script, shown) = scripted_proxy(
            proxy_in,
            n.connected(&owner),
            disputed,
            status(&n, &owner, 110, 160),
        );
        proxy_link::handshake(&sh, &conn, 1).await.unwrap();
        let shown = shown.lock().unwrap().clone();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown_tokens(&n, &owner, &shown[0]), 110);

        // A proxy naming a worker contract that is not ours: refused.
        let (conn, _proxy, proxy_in) = pair().await;
        let mut wrong = n.connected(&owner);
        wrong.worker_sc_address = n.worker_contract(&addr(0x79)).to_bounceable();
        let _script = scripted_proxy(
            proxy_in,
            wrong,
            compare_result(n.payout(&owner, 110), 160, 160),
            status(&n, &owner, 110, 160),
        );
        let err = proxy_link::handshake(&sh, &conn, 1).await.unwrap_err();
        assert!(err.contains("worker contract"), "{err}");
        assert_eq!(sh.stats.payments_refused.get(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
