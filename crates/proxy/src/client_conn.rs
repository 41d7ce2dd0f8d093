//! One client connection on the proxy: Cocoon's client handshake and short auth, discovery and
//! payment-status queries, and the client's requests and cancellations. When the connection
//! ends, its running requests are cancelled at their workers.
//!
//! A session binds its identity once: its one `client.connectToProxy` names the owner, a second
//! one is refused and closes the session, and authorization is granted for that owner and stored
//! with it ([`ClientSession::authorized`]); requests are admitted and charged against the stored
//! owner only. Nothing about a client is told to a session before it is authorized as that
//! client: per-owner queries need authorization, and with payments on the book and state pages
//! are made at authorization, not at connect. A session not authorized within
//! `client_auth_timeout` is closed; a long authorization it started in time may run to its own
//! bound (`payments::LONG_AUTH_TIMEOUT`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxyFailed, ClientAuthorizationWithProxySuccess,
    ClientConnectedToProxy, ClientPaymentStatus, ClientProxyConnectionAuth,
    ClientProxyConnectionAuthLong, ClientProxyConnectionAuthShort, ClientReceiptProofV3,
    ClientRefundRejected, ClientSealingCandidateV3, ClientSealingCandidatesV3,
    ClientToProxyMessage, ClientToProxyQuery, ClientWorkerInstanceV2, ClientWorkerType,
    ClientWorkerTypeV2, ClientWorkerTypes, ClientWorkerTypesV2, ProxySignedPayment,
};
use cocoon_proto::session::{InboundMessage, IncomingQuery, Session};
use cocoon_proto::version;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::payments::book::ClientOnchain;
use crate::payments::long_auth::Source;
use crate::payments::LongAuthError;
use crate::proxy_core::{NewRequest, ReceiptSigner};
use crate::relay;
use crate::{Shared, PROTO_MAX, PROTO_MIN};

/// What the session's one `client.connectToProxy` established. Never changes afterwards.
struct Connected {
    /// The owner the session speaks for (payments on: the bounceable address text).
    owner: String,
    /// The nonce of this connection's long authorization (payments on).
    nonce: u64,
    /// Payments on: the owner's address, and what `connectToProxy` found of its contract.
    contract: Option<(cocoon_ton::TonAddress, Option<ClientOnchain>)>,
}

/// What we know about the client on this connection.
struct ClientSession {
    session: Session,
    remote: SocketAddr,
    /// The version and capabilities agreed in `client.connectToProxy`.
    proto: version::Negotiated,
    /// Whether `client.connectToProxy` was received (a second one is refused even when the
    /// first failed: one chain read per session at most).
    connect_seen: bool,
    connected: Option<Connected>,
    /// The owner this session is authorized for (always `connected.owner`): requests are
    /// admitted and charged against it, and per-owner queries answer for it alone.
    authorized: Option<String>,
    /// Countersigns receipts with the key of the certificate this session was presented.
    receipt_signer: Option<ReceiptSigner>,
}

pub(crate) async fn run(shared: Arc<Shared>, conn: AttestedSession, shutdown: CancellationToken) {
    let AttestedSession {
        session,
        mut inbound,
        remote,
        ..
    } = conn;
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = shared.sessions.lock() {
        s.insert(conn_id, session.clone());
    }
    shared.stats.clients_connected.inc();
    let mut cs = ClientSession {
        session: session.clone(),
        remote,
        proto: version::Negotiated::default(),
        connect_seen: false,
        connected: None,
        authorized: None,
        // The certificate presented at this session's handshake (rotation swaps it for new
        // sessions only).
        receipt_signer: shared.identity.as_ref().map(|slot| {
            ReceiptSigner(Arc::new(cocoon_node::sealing::IdentitySigner(
                slot.current(),
            )))
        }),
    };
    let auth_deadline = tokio::time::Instant::now() + shared.cfg.client_auth_timeout;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(auth_deadline), if cs.authorized.is_none() => {
                info!(conn_id, timeout = ?shared.cfg.client_auth_timeout, "client not authorized in time; closing");
                break;
            }
            m = inbound.recv() => m,
        };
        match msg {
            None => break,
            Some(InboundMessage::Query(q)) => {
                if let Err(reason) = on_query(&shared, &mut cs, q).await {
                    warn!(conn_id, %reason, "client refused; closing");
                    break;
                }
            }
            Some(InboundMessage::Packet(data)) => {
                if let Err(e) = on_packet(&shared, conn_id, &cs, data).await {
                    warn!(conn_id, error = %e, "undecodable message from client; closing");
                    break;
                }
            }
        }
    }
    session.close();
    // Requests of a vanished client: stop them at the workers, charge what was delivered.
    relay::client_gone(&shared, conn_id).await;
    shared.forget_session(conn_id);
    shared.stats.clients_connected.dec();
    debug!(conn_id, "client gone");
}

async fn on_query(
    shared: &Arc<Shared>,
    cs: &mut ClientSession,
    q: IncomingQuery,
) -> Result<(), String> {
    let query: ClientToProxyQuery = match cocoon_tl::from_bytes(&q.data) {
        Ok(x) => x,
        Err(e) => {
            q.error(errors::PROTOVIOLATION, format!("cannot decode query: {e}"))
                .await;
            return Err("undecodable query".into());
        }
    };
    match query {
        ClientToProxyQuery::ConnectToProxy(_) if cs.connect_seen => {
            // The owner of a session never changes: authorization was granted for it.
            let reason = "client.connectToProxy was already sent on this session".to_string();
            q.error(errors::PROTOVIOLATION, reason.clone()).await;
            return Err(reason);
        }
        ClientToProxyQuery::ConnectToProxy(c) => {
            cs.connect_seen = true;
            let p = c.params;
            let is_test = shared.cfg.attestation.is_test();
            if p.is_test.unwrap_or(false) != is_test {
                let reason = format!(
                    "client is_test={} but proxy is_test={is_test}",
                    p.is_test.unwrap_or(false)
                );
                q.error(errors::PROTOVIOLATION, reason.clone()).await;
                return Err(reason);
            }
            let (min, max) = (
                p.min_proto_version.unwrap_or(0),
                p.max_proto_version.unwrap_or(0),
            );
            let Some(proto) = version::negotiate(PROTO_MIN, PROTO_MAX, min, max) else {
                let reason = format!("no common protocol version (client {min}..={max})");
                q.error(errors::PROTOVIOLATION, reason.clone()).await;
                return Err(reason);
            };
            let proto = version::Negotiated::new(proto, version::EXTENSIONS_FLAG, p.flags);
            cs.proto = proto;
            let nonce: i64 = rand::rng().random();
            if let Some(pay) = shared.payments.clone() {
                return connect_with_payments(
                    shared,
                    &pay,
                    cs,
                    &p.client_owner_address,
                    proto,
                    nonce,
                    q,
                )
                .await;
            }
            cs.connected = Some(Connected {
                owner: p.client_owner_address.clone(),
                nonce: nonce as u64,
                contract: None,
            });
            let auth = match shared.known_clients.get(&p.client_owner_address) {
                Some(k) => ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
                    secret_hash: k.secret_hash,
                    nonce,
                }),
                None => ClientProxyConnectionAuth::Long(ClientProxyConnectionAuthLong { nonce }),
            };
            let answer = ClientConnectedToProxy {
                params: crate::worker_conn::proxy_params(shared, proto),
                client_sc_address: String::new(),
                auth,
                signed_payment: ProxySignedPayment::empty(),
            };
            q.answer(encode(&answer)).await;
        }
        ClientToProxyQuery::AuthorizeWithProxyShort(a) => {
            let hash: [u8; 32] = Sha256::digest(&a.data).into();
            let expected = match (shared.payments.as_ref(), cs.connected.as_ref()) {
                (Some(pay), Some(c)) => {
                    let looked_up = c.contract.as_ref().and_then(|(_, o)| o.as_ref());
                    pay.client_secret_hash(&c.owner, looked_up)
                }
                (None, Some(c)) => shared.known_clients.get(&c.owner).map(|k| k.secret_hash),
                _ => None,
            };
            match (expected, cs.connected.as_ref()) {
                (Some(k), Some(c)) if k != [0; 32] && constant_time_eq(&k, &hash) => {
                    let owner = c.owner.clone();
                    if let (Some(pay), Some((addr, seen))) =
                        (shared.payments.as_ref(), c.contract.as_ref())
                    {
                        let credit = pay.admit_client(addr, seen.clone())?;
                        set_credit(shared, pay, &owner, credit);
                    }
                    let success = grant(shared, cs, &owner);
                    info!(%owner, proto = cs.proto.version, extensions = cs.proto.extensions, "client authorized");
                    q.answer(encode(&success)).await;
                }
                _ => {
                    shared.stats.auth_failed.inc();
                    q.answer(encode(&ClientAuthorizationWithProxyFailed {
                        error_code: 401,
                        error: "wrong secret".into(),
                    }))
                    .await;
                }
            }
        }
        ClientToProxyQuery::AuthorizeWithProxyLong(_) if shared.payments.is_some() => {
            let (Some(pay), Some(c)) = (shared.payments.clone(), cs.connected.as_ref()) else {
                return Err("long authorization before connect".into());
            };
            let Some((addr, _)) = c.contract.as_ref() else {
                return Err("long authorization before connect".into());
            };
            let (owner, addr, nonce) = (c.owner.clone(), *addr, c.nonce);
            // The client sends `owner_client_register{nonce}` from its wallet; its contract
            // forwards the nonce to ours, where the chain agent sees it. The wait ends with the
            // session (its table entry with it).
            let closed = cs.session.closed();
            match pay
                .wait_register(&owner, nonce, Source::of(cs.remote.ip()), closed)
                .await
            {
                Ok(()) => {
                    // Authorized on chain: read the contract now (its secret hash and balance
                    // may have just changed) and make its pages.
                    let seen = match pay.lookup_client(&addr).await {
                        Ok(o) => o,
                        Err(e) => {
                            warn!(%owner, error = %e, "reading the client contract after long auth failed");
                            None
                        }
                    };
                    let credit = pay.admit_client(&addr, seen)?;
                    set_credit(shared, &pay, &owner, credit);
                    let success = grant(shared, cs, &owner);
                    info!(%owner, proto = cs.proto.version, extensions = cs.proto.extensions, "client authorized on chain");
                    q.answer(encode(&success)).await;
                }
                Err(LongAuthError::Closed) => return Err("session closed during long auth".into()),
                Err(e) => {
                    shared.stats.auth_failed.inc();
                    let error_code = match e {
                        LongAuthError::Busy(_) => 429,
                        _ => 408,
                    };
                    q.answer(encode(&ClientAuthorizationWithProxyFailed {
                        error_code,
                        error: e.to_string(),
                    }))
                    .await;
                }
            }
        }
        ClientToProxyQuery::AuthorizeWithProxyLong(_) => {
            q.answer(encode(&ClientAuthorizationWithProxyFailed {
                error_code: 501,
                error: "on-chain (long) authorization is not available on this proxy yet; configure the client in [[clients]]".into(),
            }))
            .await;
        }
        ClientToProxyQuery::GetWorkerTypesV2(_) => {
            q.answer(encode(&worker_types_v2(shared))).await;
        }
        ClientToProxyQuery::GetWorkerTypes(_) => {
            q.answer(encode(&worker_types_v1(shared))).await;
        }
        ClientToProxyQuery::GetSealingCandidatesV3(get) => {
            if cs.authorized.is_none() {
                return refuse_unauthorized(q).await;
            }
            if !cs.proto.extensions {
                // Only a client that announced our extensions may use them.
                q.error(
                    errors::PROTOVIOLATION,
                    "client.getSealingCandidatesV3 needs the extensions capability".into(),
                )
                .await;
                return Ok(());
            }
            q.answer(encode(&sealing_candidates(shared, &get.model, get.limit)))
                .await;
        }
        ClientToProxyQuery::GetReceiptProofV3(get) => {
            if !cs.proto.extensions {
                q.error(
                    errors::PROTOVIOLATION,
                    "client.getReceiptProofV3 needs the extensions capability".into(),
                )
                .await;
                return Ok(());
            }
            match receipt_proof(shared, &get.receipt_id) {
                Ok(p) => q.answer(encode(&p)).await,
                Err(why) => q.error(errors::ERROR, why).await,
            }
        }
        ClientToProxyQuery::UpdatePaymentStatus(_) => {
            let Some(owner) = cs.authorized.as_deref() else {
                return refuse_unauthorized(q).await;
            };
            let (signed_payment, db, used) = payment_status(shared, owner);
            q.answer(encode(&ClientPaymentStatus {
                signed_payment,
                db_tokens: db,
                max_tokens: used,
            }))
            .await;
        }
        ClientToProxyQuery::RequestRefund(_) => {
            let Some(owner) = cs.authorized.as_deref() else {
                return refuse_unauthorized(q).await;
            };
            let running = shared
                .core()
                .state
                .clients
                .get(owner)
                .map_or(0, |a| a.running);
            q.answer(encode(&ClientRefundRejected {
                active_queries: i64::from(running),
            }))
            .await;
        }
    }
    Ok(())
}

/// A per-owner query on a session not authorized (yet): a protocol error, nothing about anyone.
async fn refuse_unauthorized(q: IncomingQuery) -> Result<(), String> {
    q.error(
        errors::PROTOVIOLATION,
        "authorize with the proxy first".into(),
    )
    .await;
    Ok(())
}

async fn on_packet(
    shared: &Arc<Shared>,
    conn_id: u64,
    cs: &ClientSession,
    data: Bytes,
) -> Result<(), cocoon_tl::TlError> {
    let msg: ClientToProxyMessage = cocoon_tl::from_bytes(&data)?;
    // Charged to the owner the session was authorized for, never to one named later.
    // `client.runQuery` (protocol 0) and `client.runQueryEx` carry the same fields.
    // A key field only counts when its flag bit is set and it is not all zeros (9060ce5).
    let (model_name, query, max_coefficient, max_tokens, timeout, request_id, sealed_to) = match msg
    {
        ClientToProxyMessage::RunQueryEx(q) => (
            q.model_name,
            q.query,
            q.max_coefficient,
            q.max_tokens,
            q.timeout,
            q.request_id,
            q.public_key.filter(|k| *k != [0; 32]),
        ),
        ClientToProxyMessage::RunQuery(q) => (
            q.model_name,
            q.query,
            q.max_coefficient,
            q.max_tokens,
            q.timeout,
            q.request_id,
            None,
        ),
        ClientToProxyMessage::CancelQueryV3(c) => {
            relay::cancel(shared, conn_id, c.request_id).await;
            return Ok(());
        }
    };
    let Some(owner) = cs.authorized.clone() else {
        relay::reject_unauthorized(shared, conn_id, cs.proto.version, request_id);
        return Ok(());
    };
    let req = NewRequest {
        client_conn: conn_id,
        client_owner: owner,
        client_proto: cs.proto,
        model_name,
        query,
        max_coefficient: i64::from(max_coefficient),
        max_tokens: max_tokens.max(0) as u64,
        timeout,
        request_id,
        sealed_to,
        receipt_signer: cs.receipt_signer.clone(),
    };
    relay::client_request(shared, req).await;
    Ok(())
}

/// Binds the session to `owner` for good (every later request is admitted and charged as it)
/// and makes the success answer, which tells the client its numbers.
fn grant(
    shared: &Shared,
    cs: &mut ClientSession,
    owner: &str,
) -> ClientAuthorizationWithProxySuccess {
    cs.authorized = Some(owner.to_string());
    let (signed_payment, db, used) = payment_status(shared, owner);
    ClientAuthorizationWithProxySuccess {
        signed_payment,
        tokens_committed_to_db: db,
        max_tokens: used,
    }
}

/// What to tell a client about its payments: (signed charge, durable tokens, all tokens).
pub(crate) fn payment_status(shared: &Shared, owner: &str) -> crate::accounting::ClientStatus {
    shared
        .accounting
        .client_status(owner, used_by(shared, owner))
}

/// An authorized client's credit (payments on): a lifetime figure, so the account's usage is
/// brought up to what the ledger holds for the owner ([`crate::state::ClientAccount::set_credit`])
/// — a restarted proxy does not give a client its history again.
fn set_credit(shared: &Shared, pay: &crate::payments::Payments, owner: &str, credit: u64) {
    let (_, durable) = pay.client_status(owner);
    {
        let mut core = shared.core();
        let st = &mut core.state;
        let acc = st.clients.entry(owner.to_string()).or_default();
        acc.owner = owner.to_string();
        acc.set_credit(credit, durable);
    }
}

/// `client.connectToProxy` with payments on: the owner is a TON address, its client contract
/// is named, and the auth is short when the contract holds a secret hash, long otherwise.
/// At most one chain read (the contract, when its page holds no secret hash); no page is made
/// and nothing about the owner's account is told (that waits for authorization).
async fn connect_with_payments(
    shared: &Arc<Shared>,
    pay: &crate::payments::Payments,
    cs: &mut ClientSession,
    owner_text: &str,
    proto: version::Negotiated,
    nonce: i64,
    q: IncomingQuery,
) -> Result<(), String> {
    if let Some(why) = pay.halted() {
        let reason = format!("proxy halted: {why}");
        q.error(errors::PROTOVIOLATION, reason.clone()).await;
        return Err(reason);
    }
    let owner = match owner_text.trim().parse::<cocoon_ton::TonAddress>() {
        Ok(o) => o,
        Err(e) => {
            let reason = format!("client owner address {owner_text:?}: {e}");
            q.error(errors::PROTOVIOLATION, reason.clone()).await;
            return Err(reason);
        }
    };
    let key = owner.to_bounceable();
    let sc = match pay.client_sc(&owner) {
        Ok(sc) => sc,
        Err(e) => {
            q.error(errors::PROTOVIOLATION, e.clone()).await;
            return Err(e);
        }
    };
    let seen = match pay.lookup_client(&owner).await {
        Ok(seen) => seen,
        Err(e) => {
            let reason = format!("reading the client contract: {e}");
            q.error(errors::PROTOVIOLATION, reason.clone()).await;
            return Err(reason);
        }
    };
    let hash = seen.as_ref().map(|o| o.secret_hash).unwrap_or([0; 32]);
    cs.connected = Some(Connected {
        owner: key,
        nonce: nonce as u64,
        contract: Some((owner, seen)),
    });
    let auth = if hash != [0; 32] {
        ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
            secret_hash: hash,
            nonce,
        })
    } else {
        ClientProxyConnectionAuth::Long(ClientProxyConnectionAuthLong { nonce })
    };
    q.answer(encode(&ClientConnectedToProxy {
        params: crate::worker_conn::proxy_params(shared, proto),
        client_sc_address: sc.to_bounceable(),
        auth,
        // Nothing of the owner's account before authorization: the signed charge comes with
        // the authorization's answer.
        signed_payment: ProxySignedPayment::empty(),
    }))
    .await;
    Ok(())
}

fn used_by(shared: &Shared, owner: &str) -> u64 {
    shared.core().state.clients.get(owner).map_or(0, |a| a.used)
}

fn worker_types_v2(shared: &Shared) -> ClientWorkerTypesV2 {
    let mut by_model: BTreeMap<String, Vec<ClientWorkerInstanceV2>> = BTreeMap::new();
    {
        let core = shared.core();
        let st = &core.state;
        for w in st.workers.values().filter(|w| w.enabled) {
            by_model
                .entry(w.model_base.clone())
                .or_default()
                .push(ClientWorkerInstanceV2 {
                    flags: 0,
                    coefficient: w.coefficient as i32,
                    active_requests: w.running as i32,
                    max_active_requests: w.capacity as i32,
                });
        }
    }
    ClientWorkerTypesV2 {
        types: by_model
            .into_iter()
            .map(|(name, workers)| ClientWorkerTypeV2 { name, workers })
            .collect(),
    }
}

/// Most candidates one `client.getSealingCandidatesV3` answer lists (a certificate is a few KiB;
/// with a quote up to 48 KiB, so the answer stays well under the frame limit).
pub(crate) const MAX_SEALING_CANDIDATES: usize = 8;

/// The inclusion proof of a receipt this proxy countersigned, from its receipt log.
fn receipt_proof(shared: &Shared, id: &[u8; 32]) -> Result<ClientReceiptProofV3, String> {
    let log = shared
        .receipts
        .as_ref()
        .ok_or_else(|| "this proxy keeps no receipt log".to_string())?;
    let p = log.proof(id).map_err(|e| e.to_string())?;
    let mut path = Vec::with_capacity(p.proof.path.len());
    for h in &p.proof.path {
        let mut b = [0u8; 32];
        hex::decode_to_slice(h, &mut b).map_err(|e| e.to_string())?;
        path.push(b);
    }
    let long = |v: u64| i64::try_from(v).map_err(|_| format!("{v} does not fit a long"));
    let anchor_tx_lt = match p.anchor_tx_lt {
        Some(lt) => Some(long(lt)?),
        None => None,
    };
    Ok(ClientReceiptProofV3 {
        flags: u32::from(anchor_tx_lt.is_some()),
        root: p.root,
        period_start: long(p.period_start)?,
        period_end: long(p.period_end)?,
        tree_size: long(p.proof.tree_size)?,
        index: long(p.proof.index)?,
        path,
        anchor_tx_lt,
    })
}

/// Workers a client may seal a request for `model` to: enabled, not suspect, speaking our
/// extensions, with a certificate that binds a sealing key; least loaded first.
fn sealing_candidates(shared: &Shared, model: &str, limit: i32) -> ClientSealingCandidatesV3 {
    let limit = usize::try_from(limit)
        .unwrap_or(0)
        .min(MAX_SEALING_CANDIDATES);
    let mut found: Vec<(f64, ClientSealingCandidateV3)> = Vec::new();
    {
        let core = shared.core();
        for w in core.state.workers.values() {
            if !w.enabled || w.suspect || w.model_base != model || !w.proto.extensions {
                continue;
            }
            let Some(ev) = w.evidence.as_ref() else {
                continue;
            };
            let (Some(cert), Some(_)) = (ev.certificate.as_ref(), ev.sealing_key) else {
                continue;
            };
            let load = f64::from(w.running) / f64::from(w.capacity.max(1));
            found.push((
                load,
                ClientSealingCandidateV3 {
                    certificate: bytes::Bytes::copy_from_slice(cert),
                    model: w.model_full.clone(),
                },
            ));
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    ClientSealingCandidatesV3 {
        candidates: found.into_iter().take(limit).map(|(_, c)| c).collect(),
    }
}

fn worker_types_v1(shared: &Shared) -> ClientWorkerTypes {
    let v2 = worker_types_v2(shared);
    ClientWorkerTypes {
        types: v2
            .types
            .into_iter()
            .map(|t| {
                let mut coefs: Vec<i32> = t.workers.iter().map(|w| w.coefficient).collect();
                coefs.sort_unstable();
                ClientWorkerType {
                    name: t.name,
                    active_workers: coefs.len() as i32,
                    coefficient_min: coefs.first().copied().unwrap_or(0),
                    coefficient_bucket50: coefs.get(coefs.len() / 2).copied().unwrap_or(0),
                    coefficient_max: coefs.last().copied().unwrap_or(0),
                }
            })
            .collect(),
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
