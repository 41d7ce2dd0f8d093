//! Worker connections driven over in-memory sessions (no sockets): hostile workers against the
//! handshake. Unsigned payment claims above the ledger close only that connection (the proxy is
//! not halted and keeps serving others); only a payout this proxy signed for more than its
//! ledger halts it; queries out of order and a second handshake are refused and closed.
//!
//! Each test speaks the worker protocol with `cocoon_proto` sessions on a `tokio::io::duplex`
//! pair and runs [`super::run`] as the proxy does for an accepted connection. Payments-on tests
//! use [`Payments::for_tests`] (a fresh ledger: every worker's counters are 0) over a chain on
//! which nothing is deployed, with a root registry that lists the test image and model.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_onchain::registry::model_hash;
use cocoon_onchain::signed::sign_boc;
use cocoon_onchain::RegistryWatch;
use cocoon_proto::messages::{
    encode, WorkerCompareBalanceWithProxy, WorkerCompareBalanceWithProxyResult,
    WorkerConnectToProxy, WorkerConnectedToProxy, WorkerExtendedCompareBalanceWithProxy,
    WorkerExtendedCompareBalanceWithProxyResult, WorkerParams, WorkerProxyHandshakeComplete,
    WorkerProxyHandshakeCompleted,
};
use cocoon_proto::session::{establish, Inbound, QueryError, Session, SessionConfig};
use cocoon_ton::payments::{ProxySigner, SignedKind};
use cocoon_ton::TonAddress;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;
use crate::payments::Payments;
use crate::test_chain::EmptyChain;
use crate::Shared;

/// The image the test workers present (listed in the payments-on registry).
const IMAGE: [u8; 32] = [0x3c; 32];

/// The test's end of one worker connection; the proxy's end runs [`super::run`].
struct Worker {
    session: Session,
    _inbound: Inbound,
}

async fn worker(shared: &Arc<Shared>) -> Worker {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (w, p) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    let (session, inbound) = w.expect("worker session");
    let (ps, pi) = p.expect("proxy session");
    let conn = AttestedSession {
        session: ps,
        inbound: pi,
        peer: cocoon_attest::AttestedPeer {
            kind: cocoon_attest::EvidenceKind::InsecureSoftware,
            image_hash: Some(IMAGE),
            ..cocoon_attest::AttestedPeer::unattested([9; 32])
        },
        remote: "10.0.0.7:1000".parse().expect("address"),
    };
    tokio::spawn(super::run(shared.clone(), conn, CancellationToken::new()));
    Worker {
        session,
        _inbound: inbound,
    }
}

impl Worker {
    async fn ask<A: cocoon_tl::TlRead>(
        &self,
        q: &impl cocoon_tl::TlWrite,
    ) -> Result<A, QueryError> {
        let answer = self
            .session
            .query(encode(q), Duration::from_secs(10))
            .await?;
        Ok(cocoon_tl::from_bytes(&answer).expect("decodable answer"))
    }

    async fn connect(&self, owner: &str) -> Result<WorkerConnectedToProxy, QueryError> {
        self.ask(&WorkerConnectToProxy {
            params: WorkerParams {
                flags: 0,
                worker_owner_address: owner.into(),
                model: "mock".into(),
                coefficient: 1000,
                is_test: Some(true),
                proxy_cnt: Some(1),
                max_active_requests: Some(10),
                min_proto_version: Some(crate::PROTO_MIN),
                max_proto_version: Some(crate::PROTO_MAX),
                machine_description_json: None,
            },
        })
        .await
    }

    async fn compare(
        &self,
        chain: i64,
        db: i64,
        max: i64,
    ) -> Result<WorkerCompareBalanceWithProxyResult, QueryError> {
        self.ask(&WorkerCompareBalanceWithProxy {
            tokens_committed_to_blockchain: chain,
            tokens_committed_to_db: db,
            max_tokens: max,
        })
        .await
    }

    async fn evidence(
        &self,
        other: Bytes,
    ) -> Result<WorkerExtendedCompareBalanceWithProxyResult, QueryError> {
        self.ask(&WorkerExtendedCompareBalanceWithProxy {
            tokens_committed_to_db: 0,
            other,
        })
        .await
    }

    async fn complete(&self) -> Result<WorkerProxyHandshakeCompleted, QueryError> {
        self.ask(&WorkerProxyHandshakeComplete { is_disabled: false })
            .await
    }

    async fn closed_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.session.closed())
            .await
            .is_ok()
    }
}

/// A query the proxy answers with a protocol error and then closes the session on (the
/// querying side may see the close first).
fn refused(r: Result<impl std::fmt::Debug, QueryError>) {
    match r {
        Err(QueryError::Remote { code, .. }) => assert_eq!(code, errors::PROTOVIOLATION),
        Err(QueryError::Closed) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The registered workers: (owner, running, earned_tokens) by connection.
fn registered(shared: &Shared) -> Vec<(u64, String, u32, u64)> {
    let core = shared.core();
    let st = &core.state;
    let mut v: Vec<_> = st
        .workers
        .values()
        .map(|w| (w.conn_id, w.owner.clone(), w.running, w.earned_tokens))
        .collect();
    v.sort();
    v
}

// --- payments off ---

fn dev_shared() -> Arc<Shared> {
    let mut cfg = ProxyConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    Arc::new(Shared::new(cfg, [7; 32], None))
}

#[tokio::test]
async fn a_second_handshake_is_refused_and_does_not_reset_the_worker() {
    let shared = dev_shared();
    let w = worker(&shared).await;
    w.connect("worker-a").await.expect("connect");
    w.compare(0, 0, 0).await.expect("compare");
    w.complete().await.expect("registered");
    let fresh = registered(&shared);
    let [(conn, ref owner, 0, 0)] = fresh[..] else {
        panic!("one fresh worker: {fresh:?}");
    };
    assert_eq!(owner, "worker-a");
    // Two requests run on it and it earned something.
    {
        let mut core = shared.core();
        let st = &mut core.state;
        let e = st.workers.get_mut(&conn).expect("entry");
        e.running = 2;
        e.earned_tokens = 50;
    }

    // Registering again would reset both (and could change the owner): refused, closed.
    refused(w.complete().await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    let after = registered(&shared);
    assert!(
        after
            .iter()
            .all(|(_, _, running, earned)| (*running, *earned) == (2, 50)),
        "never reset: {after:?}"
    );
    assert_eq!(shared.stats.worker_protocol_violations.get(), 1);
}

#[tokio::test]
async fn a_second_connect_cannot_change_the_owner() {
    let shared = dev_shared();
    let w = worker(&shared).await;
    w.connect("worker-a").await.expect("connect");
    w.compare(0, 0, 0).await.expect("compare");
    w.complete().await.expect("registered");
    refused(w.connect("worker-b").await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert!(
        registered(&shared)
            .iter()
            .all(|(_, o, _, _)| o == "worker-a"),
        "{:?}",
        registered(&shared)
    );

    // Before registration too.
    let w = worker(&shared).await;
    w.connect("worker-a").await.expect("connect");
    refused(w.connect("worker-b").await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert_eq!(shared.stats.worker_protocol_violations.get(), 2);
}

#[tokio::test]
async fn compare_before_connect_is_a_protocol_violation() {
    let shared = dev_shared();
    let w = worker(&shared).await;
    refused(w.compare(0, 0, 0).await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert_eq!(shared.stats.worker_protocol_violations.get(), 1);
    assert_eq!(shared.stats.worker_claims_refused.get(), 0);
}

#[tokio::test]
async fn without_payments_a_claim_above_the_books_closes_only_that_connection() {
    let shared = dev_shared();
    let w = worker(&shared).await;
    w.connect("worker-a").await.expect("connect");
    let r = w.compare(0, 10, 10).await;
    assert!(matches!(r, Ok(ref a) if a.error_code == 1) || matches!(r, Err(QueryError::Closed)));
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert_eq!(shared.stats.worker_claims_refused.get(), 1);
    let honest = worker(&shared).await;
    honest.connect("worker-b").await.expect("connect");
    honest.compare(0, 0, 0).await.expect("compare");
    honest.complete().await.expect("registered");
}

// --- payments on ---

/// A chain on which nothing is deployed.
struct PayNet {
    shared: Arc<Shared>,
    pay: Arc<Payments>,
    dir: PathBuf,
}

impl Drop for PayNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn pay_net(name: &str) -> PayNet {
    pay_net_with(name, |_| {}).await
}

async fn pay_net_with(name: &str, edit: impl FnOnce(&mut ProxyConfig)) -> PayNet {
    let dir = std::env::temp_dir().join(format!(
        "cocoon-proxy-worker-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut pay = Payments::for_tests(Arc::new(EmptyChain::default()), &dir).await;
    // The root lists the test workers' image and model.
    let p = Arc::get_mut(&mut pay).expect("sole owner");
    let mut reg = p.registry.current();
    let mut st = (*reg.state).clone();
    st.worker_hashes.push(IMAGE);
    st.model_hashes.push(model_hash("mock"));
    reg.state = Arc::new(st);
    p.registry = RegistryWatch::fixed(reg);
    let mut cfg = ProxyConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    edit(&mut cfg);
    let shared = Arc::new(Shared::new(cfg, pay.public_key, Some(pay.clone())));
    PayNet { shared, pay, dir }
}

fn owner(b: u8) -> TonAddress {
    TonAddress::new(0, [b; 32])
}

impl PayNet {
    /// A payout of `tokens` for `owner`'s worker contract signed with `signer`.
    fn payout(&self, signer: &ProxySigner, owner: &TonAddress, tokens: u64) -> Bytes {
        let sc = self.pay.worker_sc(owner).expect("worker contract");
        Bytes::from(
            sign_boc(signer, SignedKind::Payout, tokens, &sc, &self.pay.owner).expect("signed"),
        )
    }

    /// A worker connected as `owner` whose compare claimed `(chain, db, max)`.
    async fn claiming(&self, who: &TonAddress, chain: i64, db: i64, max: i64) -> Worker {
        let w = worker(&self.shared).await;
        w.connect(&who.to_bounceable()).await.expect("connect");
        let answer = w.compare(chain, db, max).await.expect("compare answered");
        assert_eq!(answer.error_code, 1, "the ledger holds 0 for a new worker");
        assert_eq!(answer.tokens_committed_to_db, 0);
        w
    }

    /// Another worker still completes its handshake and is registered.
    async fn serves_an_honest_worker(&self, who: &TonAddress) {
        let w = worker(&self.shared).await;
        w.connect(&who.to_bounceable()).await.expect("connect");
        let a = w.compare(0, 0, 0).await.expect("compare");
        assert_eq!(a.error_code, 0);
        w.complete().await.expect("registered");
        assert!(registered(&self.shared)
            .iter()
            .any(|(_, o, _, _)| *o == who.to_bounceable()));
    }
}

#[tokio::test]
async fn an_unsigned_claim_above_the_ledger_closes_that_worker_and_never_halts() {
    let n = pay_net("unsigned").await;
    // Claims from its own payments.json, with no evidence (as a Cocoon worker sends).
    let liar = n.claiming(&owner(0x51), 0, 1_000, 1_000).await;
    let r = liar.evidence(Bytes::new()).await;
    assert!(
        matches!(r, Ok(ref a) if a.error_code != 0) || matches!(r, Err(QueryError::Closed)),
        "{r:?}"
    );
    assert!(liar.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        n.pay.halted(),
        None,
        "one worker's word never halts the proxy"
    );
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 1);

    // Claiming the chain counter is no better; neither is going on without evidence.
    let liar = n.claiming(&owner(0x52), 500, 0, 0).await;
    refused(liar.complete().await);
    assert!(liar.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 2);

    // A payout signed by another key is no evidence either.
    let forger = ProxySigner::from_seed(&[6; 32]).expect("key");
    let liar = n.claiming(&owner(0x53), 900, 900, 900).await;
    let _ = liar.evidence(n.payout(&forger, &owner(0x53), 900)).await;
    assert!(liar.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 3);
    // Nor a payout this proxy signed for another worker's contract.
    let liar = n.claiming(&owner(0x54), 900, 900, 900).await;
    let _ = liar
        .evidence(n.payout(&n.pay.signer, &owner(0x55), 900))
        .await;
    assert!(liar.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 4);

    assert_eq!(n.pay.halted(), None);
    n.serves_an_honest_worker(&owner(0x60)).await;
}

#[tokio::test]
async fn a_claim_without_evidence_in_time_closes_the_connection() {
    let n = pay_net_with("late", |c| {
        c.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let slow = n.claiming(&owner(0x56), 0, 10, 10).await;
    assert!(slow.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 1);
    assert_eq!(n.pay.halted(), None);
}

#[tokio::test]
async fn a_payout_this_proxy_signed_above_its_ledger_halts_it() {
    let n = pay_net("signed").await;
    let me = owner(0x57);
    // The worker holds a payout for 700 tokens this proxy signed; its ledger (an old copy)
    // holds 0: a real rollback, proven.
    let honest = n.claiming(&me, 700, 800, 800).await;
    let r = honest.evidence(n.payout(&n.pay.signer, &me, 700)).await;
    assert!(
        matches!(r, Ok(ref a) if a.error_code != 0) || matches!(r, Err(QueryError::Closed)),
        "{r:?}"
    );
    assert!(honest.closed_within(Duration::from_secs(5)).await);
    let halted = n.pay.halted().expect("halted on evidence it signed");
    assert!(halted.contains("700"), "{halted}");
    assert!(halted.contains(&me.to_bounceable()), "{halted}");
    assert_eq!(n.shared.stats.worker_claims_refused.get(), 0);
}

#[tokio::test]
async fn a_payout_within_the_ledger_is_no_rollback() {
    let n = pay_net("within").await;
    let me = owner(0x58);
    let w = worker(&n.shared).await;
    w.connect(&me.to_bounceable()).await.expect("connect");
    assert_eq!(w.compare(0, 0, 0).await.expect("compare").error_code, 0);
    // A zero payout (what a fresh ledger would sign) shown without a dispute: accepted.
    let a = w
        .evidence(n.payout(&n.pay.signer, &me, 0))
        .await
        .expect("answered");
    assert_eq!(a.error_code, 0);
    w.complete().await.expect("registered");
    assert_eq!(n.pay.halted(), None);
}

#[tokio::test]
async fn with_payments_compare_before_connect_is_a_violation_not_a_halt() {
    let n = pay_net("early").await;
    let w = worker(&n.shared).await;
    refused(w.compare(5, 5, 5).await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.pay.halted(), None);
    assert_eq!(n.shared.stats.worker_protocol_violations.get(), 1);
    // An owner that is no TON address is refused at connect, also without a halt.
    let w = worker(&n.shared).await;
    refused(w.connect("not-an-address").await);
    assert!(w.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.pay.halted(), None);
    n.serves_an_honest_worker(&owner(0x61)).await;
}
