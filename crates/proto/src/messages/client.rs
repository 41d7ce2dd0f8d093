//! `client.*`: the client ↔ proxy handshake and queries, the request (`client.runQuery*`) and
//! the answer stream the proxy relays back (`client.queryAnswer*`), plus the v3 cancel and the
//! v3 worker info (`client.queryWorkerInfoV3`: which worker served a request).

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

use super::{ProxyParams, ProxySignedPayment, TokensUsed};

/// `client.params` (bare): what the client tells the proxy about itself.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "client.params#40fdca64 flags:# client_owner_address:string \
               is_test:flags.0?Bool min_proto_version:flags.1?int \
               max_proto_version:flags.1?int = client.Params")]
pub struct ClientParams {
    #[tl(flags)]
    pub flags: u32,
    pub client_owner_address: String,
    #[tl(flag = 0)]
    pub is_test: Option<bool>,
    #[tl(flag = 1)]
    pub min_proto_version: Option<i32>,
    #[tl(flag = 1)]
    pub max_proto_version: Option<i32>,
}

/// `client.proxyConnectionAuthShort`: the proxy knows the client; prove the secret.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.proxyConnectionAuthShort secret_hash:int256 nonce:long \
              = client.ProxyConnectionAuth"
)]
pub struct ClientProxyConnectionAuthShort {
    pub secret_hash: [u8; 32],
    pub nonce: i64,
}

/// `client.proxyConnectionAuthLong`: register on chain with this nonce.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.proxyConnectionAuthLong nonce:long = client.ProxyConnectionAuth"
)]
pub struct ClientProxyConnectionAuthLong {
    pub nonce: i64,
}

/// `client.ProxyConnectionAuth` (boxed).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ClientProxyConnectionAuth {
    Short(ClientProxyConnectionAuthShort),
    Long(ClientProxyConnectionAuthLong),
}

/// `client.authorizationWithProxySuccess`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.authorizationWithProxySuccess signed_payment:proxy.SignedPayment \
              tokens_committed_to_db:long max_tokens:long = client.AuthorizationWithProxy"
)]
pub struct ClientAuthorizationWithProxySuccess {
    pub signed_payment: ProxySignedPayment,
    pub tokens_committed_to_db: i64,
    pub max_tokens: i64,
}

/// `client.authorizationWithProxyFailed`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.authorizationWithProxyFailed error_code:int error:string \
              = client.AuthorizationWithProxy"
)]
pub struct ClientAuthorizationWithProxyFailed {
    pub error_code: i32,
    pub error: String,
}

/// `client.AuthorizationWithProxy` (boxed): answer to both authorize queries.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ClientAuthorizationWithProxy {
    Success(ClientAuthorizationWithProxySuccess),
    Failed(ClientAuthorizationWithProxyFailed),
}

/// `client.connectedToProxy`: answer to `client.connectToProxy`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.connectedToProxy params:proxy.params client_sc_address:string \
              auth:client.ProxyConnectionAuth signed_payment:proxy.SignedPayment \
              = client.ConnectedToProxy"
)]
pub struct ClientConnectedToProxy {
    pub params: ProxyParams,
    pub client_sc_address: String,
    pub auth: ClientProxyConnectionAuth,
    pub signed_payment: ProxySignedPayment,
}

/// `client.queryAnswer` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswer answer:bytes is_completed:Bool request_id:int256 \
              request_tokens_used:tokensUsed = client.QueryAnswer"
)]
pub struct ClientQueryAnswer {
    pub answer: Bytes,
    pub is_completed: bool,
    pub request_id: [u8; 32],
    pub request_tokens_used: TokensUsed,
}

/// `client.queryAnswerError` (protocol 0; Cocoon's proxy also uses it for early rejections).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerError error_code:int error:string request_id:int256 \
              request_tokens_used:tokensUsed = client.QueryAnswer"
)]
pub struct ClientQueryAnswerError {
    pub error_code: i32,
    pub error: String,
    pub request_id: [u8; 32],
    pub request_tokens_used: TokensUsed,
}

/// `client.queryAnswerPart` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerPart answer:bytes is_completed:Bool request_id:int256 \
              request_tokens_used:tokensUsed = client.QueryAnswerPart"
)]
pub struct ClientQueryAnswerPart {
    pub answer: Bytes,
    pub is_completed: bool,
    pub request_id: [u8; 32],
    pub request_tokens_used: TokensUsed,
}

/// `client.queryAnswerPartError` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerPartError error_code:int error:string request_id:int256 \
              request_tokens_used:tokensUsed = client.QueryAnswerPart"
)]
pub struct ClientQueryAnswerPartError {
    pub error_code: i32,
    pub error: String,
    pub request_id: [u8; 32],
    pub request_tokens_used: TokensUsed,
}

/// `client.queryFinalInfo` (bare). Bit 0: debug texts; bit 1 (protocol >= 2): timings.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "client.queryFinalInfo flags:# tokens_used:tokensUsed \
               worker_debug:flags.0?string proxy_debug:flags.0?string \
               proxy_start_time:flags.1?double proxy_end_time:flags.1?double \
               worker_start_time:flags.1?double worker_end_time:flags.1?double \
               = client.QueryFinalInfo")]
pub struct ClientQueryFinalInfo {
    #[tl(flags)]
    pub flags: u32,
    pub tokens_used: TokensUsed,
    #[tl(flag = 0)]
    pub worker_debug: Option<String>,
    #[tl(flag = 0)]
    pub proxy_debug: Option<String>,
    #[tl(flag = 1)]
    pub proxy_start_time: Option<f64>,
    #[tl(flag = 1)]
    pub proxy_end_time: Option<f64>,
    #[tl(flag = 1)]
    pub worker_start_time: Option<f64>,
    #[tl(flag = 1)]
    pub worker_end_time: Option<f64>,
}

/// `client.queryAnswerEx` (protocol >= 1): the first answer message (`http.response`).
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerEx request_id:int256 answer:bytes flags:# \
              final_info:flags.0?client.queryFinalInfo = client.QueryAnswerEx"
)]
pub struct ClientQueryAnswerEx {
    pub request_id: [u8; 32],
    pub answer: Bytes,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ClientQueryFinalInfo>,
}

/// `client.queryAnswerErrorEx` (protocol >= 1).
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerErrorEx request_id:int256 error_code:int error:string flags:# \
              final_info:flags.0?client.queryFinalInfo = client.QueryAnswerEx"
)]
pub struct ClientQueryAnswerErrorEx {
    pub request_id: [u8; 32],
    pub error_code: i32,
    pub error: String,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ClientQueryFinalInfo>,
}

/// `client.queryAnswerPartEx` (protocol >= 1): a raw body chunk.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryAnswerPartEx request_id:int256 answer:bytes flags:# \
              final_info:flags.0?client.queryFinalInfo = client.QueryAnswerEx"
)]
pub struct ClientQueryAnswerPartEx {
    pub request_id: [u8; 32],
    pub answer: Bytes,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ClientQueryFinalInfo>,
}

/// `client.refund` (defined, unused by Cocoon).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "client.refund data:bytes = client.Refund")]
pub struct ClientRefund {
    pub data: Bytes,
}

/// `client.refundRejected` (defined, unused by Cocoon).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.refundRejected active_queries:long = client.Refund"
)]
pub struct ClientRefundRejected {
    pub active_queries: i64,
}

/// `client.Refund` (boxed): answer to `client.requestRefund`. (Not `ClientRefund`, which is
/// the `client.refund` constructor.)
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ClientRefundAnswer {
    Refund(ClientRefund),
    Rejected(ClientRefundRejected),
}

/// `client.workerType` (bare): one model in `client.workerTypes`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "client.workerType name:string active_workers:int coefficient_min:int \
               coefficient_bucket50:int coefficient_max:int = client.WorkerType"
)]
pub struct ClientWorkerType {
    pub name: String,
    pub active_workers: i32,
    pub coefficient_min: i32,
    pub coefficient_bucket50: i32,
    pub coefficient_max: i32,
}

/// `client.workerTypes`: answer to `client.getWorkerTypes`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.workerTypes types:(vector client.workerType) = client.WorkerTypes"
)]
pub struct ClientWorkerTypes {
    pub types: Vec<ClientWorkerType>,
}

/// `client.workerInstanceV2` (bare).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "client.workerInstanceV2#3ea93d00 flags:# coefficient:int active_requests:int \
               max_active_requests:int = client.WorkerInstanceV2"
)]
pub struct ClientWorkerInstanceV2 {
    #[tl(flags)]
    pub flags: u32,
    pub coefficient: i32,
    pub active_requests: i32,
    pub max_active_requests: i32,
}

/// `client.workerTypeV2` (bare).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "client.workerTypeV2 name:string workers:(vector client.workerInstanceV2) \
               = client.WorkerTypeV2"
)]
pub struct ClientWorkerTypeV2 {
    pub name: String,
    pub workers: Vec<ClientWorkerInstanceV2>,
}

/// `client.workerTypesV2`: answer to `client.getWorkerTypesV2`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.workerTypesV2 types:(vector client.workerTypeV2) = client.WorkerTypesV2"
)]
pub struct ClientWorkerTypesV2 {
    pub types: Vec<ClientWorkerTypeV2>,
}

/// `client.paymentStatus`: answer to `client.updatePaymentStatus`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.paymentStatus signed_payment:proxy.SignedPayment db_tokens:long \
              max_tokens:long = client.PaymentStatus"
)]
pub struct ClientPaymentStatus {
    pub signed_payment: ProxySignedPayment,
    pub db_tokens: i64,
    pub max_tokens: i64,
}

/// `client.connectToProxy` (query) → `client.connectedToProxy`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.connectToProxy params:client.params min_config_version:int \
              = client.ConnectedToProxy"
)]
pub struct ClientConnectToProxy {
    pub params: ClientParams,
    pub min_config_version: i32,
}

/// `client.authorizeWithProxyShort` (query): `data` is the raw secret string (redacted in Debug).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.authorizeWithProxyShort data:bytes = client.AuthorizationWithProxy"
)]
pub struct ClientAuthorizeWithProxyShort {
    #[tl(redact)]
    pub data: Bytes,
}

/// `client.authorizeWithProxyLong` (query): completes once the on-chain registration is seen.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.authorizeWithProxyLong = client.AuthorizationWithProxy"
)]
pub struct ClientAuthorizeWithProxyLong;

/// `client.runQuery` (protocol 0 packet): `query` is a serialized `http.request`.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.runQuery model_name:string query:bytes max_coefficient:int max_tokens:int \
              timeout:double request_id:int256 min_config_version:int = client.QueryAnswer"
)]
pub struct ClientRunQuery {
    pub model_name: String,
    pub query: Bytes,
    pub max_coefficient: i32,
    pub max_tokens: i32,
    pub timeout: f64,
    pub request_id: [u8; 32],
    pub min_config_version: i32,
}

/// `client.runQueryEx` (protocol >= 1 packet). Its id is pinned in the schema (`#f54cb74b`,
/// the id it had before `public_key` was added). Bit 1 (`public_key`) is set by protocol >= 3
/// senders on every request: the key that the request's encrypted fields are sealed to (the
/// body's `receiver_public_key`), all zeros for a request in clear.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.runQueryEx#f54cb74b model_name:string query:bytes max_coefficient:int \
              max_tokens:int timeout:double request_id:int256 min_config_version:int \
              flags:# enable_debug:flags.0?Bool public_key:flags.1?int256 = client.QueryAnswerEx"
)]
pub struct ClientRunQueryEx {
    pub model_name: String,
    pub query: Bytes,
    pub max_coefficient: i32,
    pub max_tokens: i32,
    pub timeout: f64,
    pub request_id: [u8; 32],
    pub min_config_version: i32,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub enable_debug: Option<bool>,
    #[tl(flag = 1)]
    pub public_key: Option<[u8; 32]>,
}

/// `client.requestRefund` (query; defined, unused by Cocoon).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "client.requestRefund = client.Refund")]
pub struct ClientRequestRefund;

/// `client.updatePaymentStatus` (query) → `client.paymentStatus`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "client.updatePaymentStatus = client.PaymentStatus")]
pub struct ClientUpdatePaymentStatus;

/// `client.getWorkerTypes` (query) → `client.workerTypes`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "client.getWorkerTypes = client.WorkerTypes")]
pub struct ClientGetWorkerTypes;

/// `client.getWorkerTypesV2` (query) → `client.workerTypesV2`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "client.getWorkerTypesV2 = client.WorkerTypesV2")]
pub struct ClientGetWorkerTypesV2;

/// `client.cancelQueryV3` (protocol 3 packet): stop the request with this client request id.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.cancelQueryV3 request_id:int256 = client.CancelQuery"
)]
pub struct ClientCancelQueryV3 {
    pub request_id: [u8; 32],
}

/// `client.queryWorkerInfoV3` (protocol 3 packet, proxy → client): which worker served the
/// request, sent right before the answer carrying its `final_info`. `model_hash` is SHA-256 of
/// the worker's full model string; `image_hash` and `evidence_digest` exist only when the
/// worker's evidence was verified; `evidence_kind` is `tdx`, `sev-snp`, `insecure-software` or
/// `none` (receivers must bound and sanitize it: it is text from the network).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryWorkerInfoV3 request_id:int256 flags:# evidence_kind:string \
              model_hash:int256 image_hash:flags.0?int256 evidence_digest:flags.1?int256 \
              = client.QueryWorkerInfo"
)]
pub struct ClientQueryWorkerInfoV3 {
    pub request_id: [u8; 32],
    #[tl(flags)]
    pub flags: u32,
    pub evidence_kind: String,
    pub model_hash: [u8; 32],
    #[tl(flag = 0)]
    pub image_hash: Option<[u8; 32]>,
    #[tl(flag = 1)]
    pub evidence_digest: Option<[u8; 32]>,
}

impl ClientQueryWorkerInfoV3 {
    /// Builds the message with `flags` matching the optional fields.
    pub fn new(
        request_id: [u8; 32],
        evidence_kind: String,
        model_hash: [u8; 32],
        image_hash: Option<[u8; 32]>,
        evidence_digest: Option<[u8; 32]>,
    ) -> Self {
        let flags = u32::from(image_hash.is_some()) | (u32::from(evidence_digest.is_some()) << 1);
        Self {
            request_id,
            flags,
            evidence_kind,
            model_hash,
            image_hash,
            evidence_digest,
        }
    }
}

/// `client.queryReceiptV3` (extensions packet, proxy → client): the countersigned receipt of a
/// request (`cocoon_sealed::Receipt` bytes), sent right before the answer carrying its
/// `final_info`. Receivers bound and verify it; it is bytes from the network.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.queryReceiptV3 request_id:int256 receipt:bytes = client.QueryReceipt"
)]
pub struct ClientQueryReceiptV3 {
    pub request_id: [u8; 32],
    pub receipt: Bytes,
}

/// `client.sealingCandidateV3` (bare): one worker a client may seal a request to.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "client.sealingCandidateV3 certificate:bytes model:string \
              = client.SealingCandidateV3")]
pub struct ClientSealingCandidateV3 {
    /// The worker's DER RA-TLS certificate.
    pub certificate: Bytes,
    /// The worker's full model string.
    pub model: String,
}

/// `client.sealingCandidatesV3`: answer to `client.getSealingCandidatesV3`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.sealingCandidatesV3 candidates:(vector client.sealingCandidateV3) \
              = client.SealingCandidatesV3"
)]
pub struct ClientSealingCandidatesV3 {
    pub candidates: Vec<ClientSealingCandidateV3>,
}

/// `client.receiptProofV3`: answer to `client.getReceiptProofV3`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.receiptProofV3 flags:# root:int256 period_start:long period_end:long \
              tree_size:long index:long path:(vector int256) anchor_tx_lt:flags.0?long \
              = client.ReceiptProofV3"
)]
pub struct ClientReceiptProofV3 {
    #[tl(flags)]
    pub flags: u32,
    /// The period's Merkle root.
    pub root: [u8; 32],
    /// Unix seconds.
    pub period_start: i64,
    pub period_end: i64,
    pub tree_size: i64,
    pub index: i64,
    /// Audit path, deepest sibling first (receivers bound its length).
    pub path: Vec<[u8; 32]>,
    /// Set when the root was seen on chain: the marker transaction's logical time.
    #[tl(flag = 0)]
    pub anchor_tx_lt: Option<i64>,
}

/// `client.getReceiptProofV3` (extensions query) → `client.receiptProofV3`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.getReceiptProofV3 receipt_id:int256 = client.ReceiptProofV3"
)]
pub struct ClientGetReceiptProofV3 {
    pub receipt_id: [u8; 32],
}

/// `client.getSealingCandidatesV3` (extensions query) → `client.sealingCandidatesV3`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "client.getSealingCandidatesV3 model:string limit:int = client.SealingCandidatesV3"
)]
pub struct ClientGetSealingCandidatesV3 {
    pub model: String,
    pub limit: i32,
}
