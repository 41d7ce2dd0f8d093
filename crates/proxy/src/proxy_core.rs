//! The proxy's core: the one owner of requests, workers and client accounts. Connection tasks
//! hand it what happened (`handle_*`), with the time as an argument; it decides and returns
//! [`Effect`]s — messages to queue, deadlines to arm, requests that ended and must be made
//! durable — which `relay.rs` carries out. It does no I/O, reads no clock, draws from its own
//! seeded RNG, and never logs: what is worth logging comes back as an effect.
//!
//! A request's life, each step in one handler: admitted (credit reserved, a worker chosen, its
//! deadline armed) by [`ProxyCore::handle_client_request`]; its head and parts counted and
//! relayed by [`ProxyCore::handle_worker_answer`] (cut when it passes its reservation); ended
//! exactly once — by its worker's final answer or error, or by the proxy on a cancel, a
//! deadline, a client or worker gone, a cut — in [`ProxyCore::settle`], which charges what
//! [`crate::rules::settle_tokens`] says and returns an [`Ending`]. The arithmetic lives in
//! [`crate::state`] and [`crate::rules`]; what clients are sent is shaped in [`shape`].

pub mod shape;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::PricingConfig;
use cocoon_proto::messages::{
    encode, ClientQueryReceiptV3, HttpResponse, ProxyCancelQueryV3, ProxyQueryFinalInfo,
    ProxyRunQueryEx, ProxySignedPayment,
};
use cocoon_sealed::receipt::{ProxyStatement, Signer, WorkerSigned};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::Arc;

use crate::rules::{self, RelayMeter};
use crate::state::{AdmitParams, Overshoot, ProxyState, Rejection, RunningRequest, Settlement};
use crate::worker_evidence;
use shape::{ClientSide, Piece};

/// The time of an event: monotonic for durations, unix seconds for what peers are told.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: tokio::time::Instant,
    pub unix: f64,
}

/// The limits the core applies (from the proxy's config).
#[derive(Clone, Debug)]
pub struct CoreRules {
    pub pricing: PricingConfig,
    pub min_request_timeout: Duration,
    pub max_request_timeout: Duration,
    pub default_max_tokens: u64,
    pub max_requests_per_client: u32,
}

impl CoreRules {
    pub fn from_config(cfg: &crate::ProxyConfig) -> Self {
        Self {
            pricing: cfg.pricing.clone(),
            min_request_timeout: cfg.min_request_timeout,
            max_request_timeout: cfg.max_request_timeout,
            default_max_tokens: cfg.default_max_tokens,
            max_requests_per_client: cfg.max_requests_per_client,
        }
    }
}

/// A client's request as received, whatever its protocol version.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub client_conn: u64,
    /// The owner the session was authorized for (never a name the message carries).
    pub client_owner: String,
    /// The version and capabilities agreed with the client.
    pub client_proto: cocoon_proto::version::Negotiated,
    pub model_name: String,
    pub query: Bytes,
    pub max_coefficient: i64,
    pub max_tokens: u64,
    pub timeout: f64,
    pub request_id: [u8; 32],
    /// The network key the request's fields are encrypted to (`runQueryEx.public_key`, v1
    /// field encryption), `None` for a request in clear (absent or all zeros).
    pub sealed_to: Option<[u8; 32]>,
    /// Countersigns the worker's receipt (the key the client's session saw); `None`: no
    /// receipt is relayed.
    pub receipt_signer: Option<ReceiptSigner>,
}

/// A network key pair the key manager handed this proxy: requests encrypted to `public` are
/// routed with `seed` (the private key, as upstream's workers expect it in
/// `proxy.runQueryEx.private_key`) until `valid_until` (unix seconds).
#[derive(Clone)]
pub struct NetworkKey {
    pub public: [u8; 32],
    pub seed: [u8; 32],
    pub valid_until: u32,
}

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkKey")
            .field("public", &hex::encode(self.public))
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

/// A worker message about one of its requests.
#[derive(Debug)]
pub enum WorkerAnswer {
    /// The head (`…queryAnswerEx`), final when it carries `final_info`.
    Head {
        answer: Bytes,
        final_info: Option<ProxyQueryFinalInfo>,
    },
    /// A body part; `progress` is the cumulative usage of protocol 3.
    Part {
        answer: Bytes,
        progress: Option<u64>,
        final_info: Option<ProxyQueryFinalInfo>,
    },
    /// The worker failed the request.
    Error {
        code: i32,
        message: String,
        final_info: Option<ProxyQueryFinalInfo>,
    },
}

/// Something the core counts for the stats page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// A request was received.
    Query,
    /// A request was refused at admission.
    Rejected,
    /// Answer bytes relayed to a client.
    RelayedBytes(u64),
    /// A sealed request was admitted (the proxy routed it unread).
    Sealed,
}

/// A message the core ignored, and why (logged by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// An answer for a request that is not running (already ended, or never was).
    NotRunning,
    /// An answer from a worker for a request running on another worker.
    NotItsRequest,
    /// A receipt that does not parse, does not verify, is not signed by the worker's attested
    /// key, or repeats one already held.
    BadReceipt,
}

/// What the connection tasks must do, in order.
#[derive(Debug)]
pub enum Effect {
    /// Queue `msg` for connection `to` (a client or a worker), without waiting.
    Send {
        to: u64,
        msg: Bytes,
    },
    /// Send an admitted request to its worker, with the worker's latest signed payout (which
    /// only the accounting knows) put into `msg.signed_payment`. If the worker's connection is
    /// gone, hand the request back to [`ProxyCore::handle_worker_lost`].
    RunOnWorker {
        worker_conn: u64,
        worker_owner: String,
        msg: ProxyRunQueryEx,
    },
    /// Call [`ProxyCore::handle_timeout`] for request `id` after `after`.
    ArmTimer {
        id: [u8; 32],
        after: Duration,
    },
    /// The worker went silent past a deadline and is out of rotation: probe it until it
    /// answers, then call [`ProxyCore::handle_worker_alive`].
    Suspect {
        worker_conn: u64,
    },
    /// A request ended and was settled in memory: disarm its timer, make its charge durable,
    /// then send [`Ending::reply`] and the payment notices.
    Ended(Box<Ending>),
    Count(Count),
    Ignored {
        request: [u8; 32],
        why: Ignored,
    },
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedBy {
    /// Its worker's final answer: the answer acknowledges the charge, so it goes out only once
    /// the charge is durable (and an error instead when it cannot be made durable).
    Answered,
    /// Its worker's error.
    WorkerError,
    /// The proxy ended it, with this error code (timeout, cancel, cut, peer lost).
    Proxy(i32),
}

/// A request that ended: what it was, what it is charged, and what its client is sent once
/// the charge is durable.
#[derive(Debug)]
pub struct Ending {
    pub id: [u8; 32],
    pub req: RunningRequest,
    pub settlement: Settlement,
    /// A worker statement above the reservation (charged the reservation).
    pub overshoot: Option<Overshoot>,
    /// The owner of the worker that served it (`None`: the worker was already gone).
    pub worker_owner: Option<String>,
    pub by: EndedBy,
    /// Messages for the client, in order (empty: the client is not told, e.g. it cancelled).
    pub reply: Vec<Bytes>,
    /// The id of the request's countersigned receipt (sealed requests), to anchor on chain.
    pub receipt_id: Option<[u8; 32]>,
}

impl Ending {
    pub fn client(&self) -> ClientSide {
        client_side(&self.req)
    }
}

/// Countersigns receipts with the RA-TLS key the client's session saw (a client accepts only a
/// countersignature by the proxy key its RA-TLS session proved).
#[derive(Clone)]
pub struct ReceiptSigner(pub Arc<dyn Signer + Send + Sync>);

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner({})", hex::encode(self.0.public_key()))
    }
}

/// The proxy's core (module doc).
#[derive(Debug)]
pub struct ProxyCore {
    pub state: ProxyState,
    rules: CoreRules,
    rng: StdRng,
    /// Network keys by public key (what the key manager served last).
    network_keys: HashMap<[u8; 32], NetworkKey>,
}

impl ProxyCore {
    /// A core applying `rules`, drawing request ids and worker tie-breaks from an RNG seeded
    /// with `seed` (the proxy seeds it from the OS; tests with a constant).
    pub fn new(state: ProxyState, rules: CoreRules, seed: [u8; 32]) -> Self {
        Self {
            state,
            rules,
            rng: StdRng::from_seed(seed),
            network_keys: HashMap::new(),
        }
    }

    /// Worker connection `worker_conn` sent its signed receipt for request `id`
    /// (`proxy.queryReceiptV3`, before its final answer): kept, once, if it verifies under the
    /// worker's attested key; countersigned when the request settles.
    pub fn handle_worker_receipt(
        &mut self,
        worker_conn: u64,
        id: [u8; 32],
        receipt: &[u8],
    ) -> Vec<Effect> {
        let worker_key = self
            .state
            .workers
            .get(&worker_conn)
            .and_then(|w| w.evidence.as_ref())
            .map(|e| e.public_key);
        let Some(r) = self.state.requests.get_mut(&id) else {
            return ignored(id, Ignored::NotRunning);
        };
        if r.worker_conn != worker_conn {
            return ignored(id, Ignored::NotItsRequest);
        }
        let parsed = WorkerSigned::from_bytes(receipt)
            .ok()
            .filter(|w| w.verify().is_ok())
            .filter(|w| Some(w.statement.worker_key) == worker_key);
        match parsed {
            Some(w) if r.receipt.is_none() => {
                r.receipt = Some(w);
                Vec::new()
            }
            _ => ignored(id, Ignored::BadReceipt),
        }
    }

    /// Worker connection `worker_conn` answered `worker.changedModel`: it serves `model` from now
    /// on (its running requests go on). Returns whether the worker is still registered.
    pub fn handle_worker_model_changed(&mut self, worker_conn: u64, model: &str) -> bool {
        let Some(w) = self.state.workers.get_mut(&worker_conn) else {
            return false;
        };
        w.model_full = model.to_string();
        w.model_base = model.split('@').next().unwrap_or("").to_string();
        if let Some(ev) = w.evidence.as_mut() {
            ev.model_hash = Some(worker_evidence::model_hash(model));
        }
        true
    }

    /// Replaces the network keys encrypted requests may be routed with.
    pub fn set_network_keys(&mut self, keys: Vec<NetworkKey>) {
        self.network_keys = keys.into_iter().map(|k| (k.public, k)).collect();
    }

    /// The public halves of the network keys held, with their expiry.
    pub fn network_keys(&self) -> Vec<([u8; 32], u32)> {
        let mut v: Vec<_> = self
            .network_keys
            .values()
            .map(|k| (k.public, k.valid_until))
            .collect();
        v.sort();
        v
    }

    pub fn rules(&self) -> &CoreRules {
        &self.rules
    }

    /// A client's request: admitted (a worker chosen, its client's credit reserved, its
    /// deadline armed) and sent to the worker, or refused with an error to the client.
    /// `halted`: why the proxy accepts nothing now (payments halted or moving), if it does not.
    pub fn handle_client_request(
        &mut self,
        req: NewRequest,
        halted: Option<String>,
        now: Now,
    ) -> Vec<Effect> {
        let mut out = vec![Effect::Count(Count::Query)];
        let deadline = rules::request_deadline(
            req.timeout,
            self.rules.min_request_timeout,
            self.rules.max_request_timeout,
        );
        // A sealed request's body is unreadable here: its envelope's clear header says which
        // workers can open it and the completion bound (which those workers enforce).
        let sealed = match rules::sealed_header(&req.query) {
            None => None,
            Some(Ok(h)) if req.sealed_to.is_none() => Some(h),
            Some(Ok(_)) => {
                return refuse(
                    out,
                    &req,
                    errors::PROTOVIOLATION,
                    "a sealed request cannot also be field-encrypted",
                )
            }
            Some(Err(e)) => {
                return refuse(
                    out,
                    &req,
                    errors::PROTOVIOLATION,
                    &format!("malformed sealed request: {e}"),
                )
            }
        };
        // Reserved for the larger of what the message and the body ask (the worker follows the
        // body), or the configured cap when the body sets no limit.
        let body_limit = match &sealed {
            Some(h) => Some(h.max_tokens),
            None => rules::body_max_tokens(&req.query),
        };
        let max_tokens =
            rules::reserved_max_tokens(req.max_tokens, body_limit, self.rules.default_max_tokens);
        let model_base = req.model_name.split('@').next().unwrap_or("");
        // An encrypted request needs the network key it is sealed to (a key we hold and that
        // has not expired), and a worker at protocol >= 3, the first to take the key.
        let network_key = match req.sealed_to {
            None => None,
            Some(public) => match self.network_keys.get(&public) {
                Some(k) if f64::from(k.valid_until) > now.unix => Some(k.seed),
                _ => {
                    let why = format!("unknown public key {}", hex::encode_upper(public));
                    return refuse(out, &req, errors::ERROR, &why);
                }
            },
        };
        // A sealed request's prompt is its envelope's plaintext at most.
        let prompt_bytes = match &sealed {
            Some(h) => rules::sealed_prompt_bytes(req.query.len(), h.recipients.len()),
            None => req.query.len() as u64,
        };
        let admitted = if let Some(why) = halted {
            Err(Rejection {
                code: errors::NO_WORKER,
                message: format!("proxy: {why}"),
            })
        } else if self
            .state
            .by_client
            .contains_key(&(req.client_conn, req.request_id))
        {
            Err(Rejection {
                code: errors::PROTOVIOLATION,
                message: "duplicate request id".into(),
            })
        } else {
            let params = AdmitParams {
                client_owner: &req.client_owner,
                model_base,
                max_coefficient: req.max_coefficient,
                max_tokens,
                prompt_bytes,
                max_running_per_client: self.rules.max_requests_per_client,
                min_worker_version: if network_key.is_some() {
                    cocoon_proto::version::PROTO_KEYS
                } else {
                    0
                },
                only_workers: sealed.as_ref().map(|h| &h.recipients[..]),
            };
            self.state
                .admit(&params, &self.rules.pricing, &mut self.rng)
        };
        let admission = match admitted {
            Ok(a) => {
                if sealed.is_some() {
                    out.push(Effect::Count(Count::Sealed));
                }
                a
            }
            Err(rej) => return refuse(out, &req, rej.code, &rej.message),
        };
        let mut id = [0u8; 32];
        self.rng.fill_bytes(&mut id);
        let (worker_owner, worker_has_keys) = self
            .state
            .workers
            .get(&admission.worker_conn)
            .map(|w| (w.owner.clone(), w.proto.has_keys()))
            .unwrap_or_default();
        self.state.requests.insert(
            id,
            RunningRequest {
                client_conn: req.client_conn,
                client_owner: req.client_owner,
                client_request_id: req.request_id,
                client_proto: req.client_proto,
                worker_conn: admission.worker_conn,
                reserved: admission.reserved,
                started_unix: now.unix,
                started: now.mono,
                deadline,
                coefficient: admission.coefficient.max(0) as u64,
                progress_total: 0,
                // The prompt is estimated as the reservation estimates it.
                meter: if sealed.is_some() {
                    RelayMeter::sealed(prompt_bytes)
                } else {
                    RelayMeter::new(prompt_bytes)
                },
                head_sent: false,
                receipt: None,
                receipt_signer: req.receipt_signer.clone(),
            },
        );
        self.state
            .by_client
            .insert((req.client_conn, req.request_id), id);
        out.push(Effect::ArmTimer {
            id,
            after: deadline,
        });
        out.push(Effect::RunOnWorker {
            worker_conn: admission.worker_conn,
            worker_owner,
            msg: ProxyRunQueryEx {
                query: req.query,
                signed_payment: ProxySignedPayment::empty(),
                coefficient: admission.coefficient,
                timeout: deadline.as_secs_f64() * 0.95,
                request_id: id,
                flags: 0,
                enable_debug: None,
                // Protocol >= 3 carries the key on every request, all zeros in clear.
                private_key: worker_has_keys.then(|| network_key.unwrap_or([0; 32])),
            },
        });
        out
    }

    /// A message from worker connection `worker_conn` about its request `id`: counted and
    /// relayed to the client, the request settled when the message is final (or an error), the
    /// stream cut when it passes its reservation. Only a worker's own requests can be answered
    /// by it.
    pub fn handle_worker_answer(
        &mut self,
        worker_conn: u64,
        id: [u8; 32],
        msg: WorkerAnswer,
        now: Now,
    ) -> Vec<Effect> {
        match self.state.requests.get(&id) {
            None => return ignored(id, Ignored::NotRunning),
            Some(r) if r.worker_conn != worker_conn => return ignored(id, Ignored::NotItsRequest),
            Some(_) => {}
        }
        match msg {
            WorkerAnswer::Head { answer, final_info } => {
                self.head(worker_conn, id, answer, final_info, now)
            }
            WorkerAnswer::Part {
                answer,
                progress,
                final_info,
            } => self.part(worker_conn, id, answer, progress, final_info, now),
            WorkerAnswer::Error {
                code,
                message,
                final_info,
            } => {
                let Some(r) = self.state.requests.get(&id) else {
                    return Vec::new();
                };
                let client = client_side(r);
                let final_client = final_info
                    .as_ref()
                    .map(|f| shape::client_final(f, &client, now.unix));
                // What the worker says it delivered; without a statement, what the proxy saw.
                let reported = final_info.map(|f| f.tokens_used.total_tokens_used.max(0) as u64);
                let reply = vec![shape::error(
                    client.proto.version,
                    client.request_id,
                    code,
                    &message,
                    final_client,
                )];
                self.settle(&id, reported, EndedBy::WorkerError, reply, now)
                    .into_iter()
                    .collect()
            }
        }
    }

    fn head(
        &mut self,
        worker_conn: u64,
        id: [u8; 32],
        answer: Bytes,
        final_info: Option<ProxyQueryFinalInfo>,
        now: Now,
    ) -> Vec<Effect> {
        let head = cocoon_tl::from_bytes::<HttpResponse>(&answer).ok();
        let content_type = head.as_ref().and_then(|h| {
            h.headers
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case("content-type"))
                .map(|x| x.value.as_str())
        });
        let payload = head.as_ref().map(|h| &h.payload[..]).unwrap_or_default();
        let Some(r) = self.state.head_arrived(
            &id,
            worker_conn,
            now.mono,
            content_type,
            payload,
            final_info.is_some(),
        ) else {
            return Vec::new();
        };
        let client = client_side(r);
        let evidence = self
            .state
            .workers
            .get(&worker_conn)
            .and_then(|w| w.evidence.clone());
        // Undecodable heads are relayed as they came.
        let answer = match head {
            Some(resp) => shape::head_with_proxy_headers(
                resp,
                client.started_unix,
                now.unix,
                worker_evidence::headers(evidence.as_ref()),
            ),
            None => answer,
        };
        self.relay(
            worker_conn,
            id,
            client,
            Piece::Head,
            answer,
            final_info,
            now,
        )
    }

    fn part(
        &mut self,
        worker_conn: u64,
        id: [u8; 32],
        answer: Bytes,
        progress: Option<u64>,
        final_info: Option<ProxyQueryFinalInfo>,
        now: Now,
    ) -> Vec<Effect> {
        let over = self.state.part_arrived(
            &id,
            worker_conn,
            &answer,
            progress,
            final_info.is_some(),
            &self.rules.pricing,
        );
        match over {
            None => Vec::new(),
            // The part that passed the reservation is not relayed; the cut is charged what was
            // delivered, up to the reservation.
            Some(true) => self.end_by_proxy(
                &id,
                errors::RESERVATION_EXCEEDED,
                "proxy: reserved tokens depleted",
                now,
            ),
            Some(false) => match self.state.requests.get(&id) {
                Some(r) => {
                    let client = client_side(r);
                    self.relay(
                        worker_conn,
                        id,
                        client,
                        Piece::Part,
                        answer,
                        final_info,
                        now,
                    )
                }
                None => Vec::new(),
            },
        }
    }

    /// Relays a head or part; a final one settles the request, and its answer (with the
    /// serving worker's `client.queryWorkerInfoV3` first, on protocol 3) waits for durability.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        &mut self,
        worker_conn: u64,
        id: [u8; 32],
        client: ClientSide,
        piece: Piece,
        answer: Bytes,
        final_info: Option<ProxyQueryFinalInfo>,
        now: Now,
    ) -> Vec<Effect> {
        let mut out = vec![Effect::Count(Count::RelayedBytes(answer.len() as u64))];
        let msg = shape::answer(&client, piece, answer, final_info.as_ref(), now.unix);
        let Some(f) = final_info else {
            out.push(Effect::Send {
                to: client.conn,
                msg,
            });
            return out;
        };
        let mut reply = Vec::with_capacity(2);
        if client.proto.extensions {
            let info = self
                .state
                .workers
                .get(&worker_conn)
                .and_then(|w| w.evidence.as_ref())
                .and_then(|ev| worker_evidence::info_v3(ev, client.request_id));
            if let Some(info) = info {
                reply.push(encode(&info));
            }
        }
        reply.push(msg);
        let reported = f.tokens_used.total_tokens_used.max(0) as u64;
        out.extend(self.settle(&id, Some(reported), EndedBy::Answered, reply, now));
        out
    }

    /// The client on `client_conn` cancelled its request `client_id`.
    pub fn handle_cancel(
        &mut self,
        client_conn: u64,
        client_id: [u8; 32],
        now: Now,
    ) -> Vec<Effect> {
        match self.state.by_client.get(&(client_conn, client_id)).copied() {
            Some(id) => self.end_by_proxy(&id, errors::CANCELLED, "cancelled by client", now),
            None => Vec::new(),
        }
    }

    /// Request `id` reached its deadline (a timer armed by [`Effect::ArmTimer`]).
    pub fn handle_timeout(&mut self, id: [u8; 32], now: Now) -> Vec<Effect> {
        self.end_by_proxy(&id, errors::TIMEOUT, "proxy: request timed out", now)
    }

    /// Request `id` could not be sent to its worker (the connection is gone).
    pub fn handle_worker_lost(&mut self, id: [u8; 32], now: Now) -> Vec<Effect> {
        self.end_by_proxy(
            &id,
            errors::BAD_GATEWAY,
            "proxy: worker connection lost",
            now,
        )
    }

    /// A client connection ended: its requests are stopped at their workers and charged what
    /// was delivered.
    pub fn handle_client_gone(&mut self, client_conn: u64, now: Now) -> Vec<Effect> {
        let mut out = Vec::new();
        for id in self.state.requests_of_client(client_conn) {
            out.extend(self.end_by_proxy(&id, errors::CANCELLED, "client disconnected", now));
        }
        out
    }

    /// A worker connection ended: its requests fail now (charged what was delivered) and the
    /// worker is forgotten.
    pub fn handle_worker_gone(&mut self, worker_conn: u64, now: Now) -> Vec<Effect> {
        if let Some(w) = self.state.workers.get_mut(&worker_conn) {
            w.enabled = false;
        }
        let mut out = Vec::new();
        for id in self.state.requests_of_worker(worker_conn) {
            out.extend(self.end_by_proxy(
                &id,
                errors::BAD_GATEWAY,
                "proxy: worker disconnected",
                now,
            ));
        }
        self.state.workers.remove(&worker_conn);
        out
    }

    /// A suspect worker answered a probe: back in rotation.
    pub fn handle_worker_alive(&mut self, worker_conn: u64) {
        if let Some(w) = self.state.workers.get_mut(&worker_conn) {
            w.suspect = false;
        }
    }

    /// Ends a request from the proxy's side: charges what was delivered so far (the larger of
    /// the worker's progress and the proxy's own count, up to the reservation), tells the
    /// worker (protocol 3 can stop generating) and the client (unless it cancelled). Settled
    /// before anything is sent, so nothing relayed after the ending is left uncharged, and the
    /// worker's later answer for it finds no request and is ignored.
    fn end_by_proxy(&mut self, id: &[u8; 32], code: i32, message: &str, now: Now) -> Vec<Effect> {
        let Some(r) = self.state.requests.get(id) else {
            return Vec::new();
        };
        // Not a word from the worker for a deadline it could have met: partitioned or hung.
        let suspect = code == errors::TIMEOUT
            && !r.head_sent
            && self.state.suspect_after_deadline(
                r.worker_conn,
                r.deadline,
                self.rules.min_request_timeout,
            );
        let worker_conn = r.worker_conn;
        let client = client_side(r);
        // A client that cancelled is not told again.
        let reply = if code == errors::CANCELLED {
            Vec::new()
        } else {
            vec![shape::error(
                client.proto.version,
                client.request_id,
                code,
                message,
                None,
            )]
        };
        let Some(ending) = self.settle(id, None, EndedBy::Proxy(code), reply, now) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(3);
        if suspect {
            let newly = self
                .state
                .workers
                .get_mut(&worker_conn)
                .is_some_and(|w| !std::mem::replace(&mut w.suspect, true));
            if newly {
                out.push(Effect::Suspect { worker_conn });
            }
        }
        let extensions = self
            .state
            .workers
            .get(&worker_conn)
            .is_some_and(|w| w.proto.extensions);
        if extensions {
            out.push(Effect::Send {
                to: worker_conn,
                msg: encode(&ProxyCancelQueryV3 { request_id: *id }),
            });
        }
        out.push(ending);
        out
    }

    /// The single ending of every admitted request, in memory: releases its reservation and
    /// worker slot and charges what [`rules::settle_tokens`] says — `reported` is the worker's
    /// own statement (final answer or error), `None` when the proxy ends the request. `None`
    /// when the request already ended.
    fn settle(
        &mut self,
        id: &[u8; 32],
        reported: Option<u64>,
        by: EndedBy,
        reply: Vec<Bytes>,
        now: Now,
    ) -> Option<Effect> {
        let worker_owner = self
            .state
            .requests
            .get(id)
            .and_then(|r| self.state.workers.get(&r.worker_conn))
            .map(|w| w.owner.clone());
        let ok = by == EndedBy::Answered;
        let (mut req, settlement, overshoot) =
            self.state
                .settle(id, reported, ok, &self.rules.pricing, now.mono)?;
        // The worker's receipt, countersigned with what the client is charged, goes right
        // before the message that ends the request (to clients that speak our extensions).
        let mut reply = reply;
        let mut receipt_id = None;
        if let (Some(worker), Some(signer)) = (req.receipt.take(), req.receipt_signer.take()) {
            let proxy = ProxyStatement {
                price_per_token: self.rules.pricing.price_per_token,
                charge: settlement.client_cost,
                proxy_key: signer.0.public_key(),
            };
            if let Ok(receipt) = worker.countersign(proxy, signer.0.as_ref()) {
                receipt_id = Some(receipt.id());
                if req.client_proto.extensions && !reply.is_empty() {
                    let msg = encode(&ClientQueryReceiptV3 {
                        request_id: req.client_request_id,
                        receipt: Bytes::from(receipt.to_bytes()),
                    });
                    reply.insert(0, msg);
                }
            }
        }
        Some(Effect::Ended(Box::new(Ending {
            id: *id,
            req,
            settlement,
            overshoot,
            worker_owner,
            by,
            reply,
            receipt_id,
        })))
    }
}

fn client_side(r: &RunningRequest) -> ClientSide {
    ClientSide {
        conn: r.client_conn,
        proto: r.client_proto,
        request_id: r.client_request_id,
        started_unix: r.started_unix,
    }
}

/// Refuses `req` at admission with `code` and `message`.
fn refuse(mut out: Vec<Effect>, req: &NewRequest, code: i32, message: &str) -> Vec<Effect> {
    out.push(Effect::Count(Count::Rejected));
    out.push(Effect::Send {
        to: req.client_conn,
        msg: shape::error(
            req.client_proto.version,
            req.request_id,
            code,
            message,
            None,
        ),
    });
    out
}

fn ignored(request: [u8; 32], why: Ignored) -> Vec<Effect> {
    vec![Effect::Ignored { request, why }]
}

#[cfg(test)]
mod tests;
