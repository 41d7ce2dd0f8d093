//! `proxy.*`: the proxy's parameters, signed payments, and the worker ↔ proxy request stream
//! (`proxy.runQuery*` down, `proxy.queryAnswer*` up), plus the v3 additions
//! (`proxy.cancelQueryV3`, `proxy.queryAnswerPartV3`). `proxy.clientRequestPayment` lives here
//! too although the proxy sends it to clients.

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

use super::TokensUsed;

/// `proxy.params` (bare): the proxy's identity in both handshakes.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "proxy.params#d5c5609f flags:# proxy_public_key:int256 \
               proxy_owner_address:string proxy_sc_address:string is_test:flags.0?Bool \
               proto_version:flags.1?int = proxy.Params")]
pub struct ProxyParams {
    #[tl(flags)]
    pub flags: u32,
    pub proxy_public_key: [u8; 32],
    pub proxy_owner_address: String,
    pub proxy_sc_address: String,
    #[tl(flag = 0)]
    pub is_test: Option<bool>,
    #[tl(flag = 1)]
    pub proto_version: Option<i32>,
}

/// `proxy.signedPayment`: a BOC of the signed TON message that pays out tokens.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "proxy.signedPayment data:bytes = proxy.SignedPayment")]
pub struct ProxySignedPaymentData {
    pub data: Bytes,
}

/// `proxy.signedPaymentEmpty`: nothing signed yet.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "proxy.signedPaymentEmpty = proxy.SignedPayment")]
pub struct ProxySignedPaymentEmpty;

/// `proxy.SignedPayment` (boxed).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ProxySignedPayment {
    Signed(ProxySignedPaymentData),
    Empty(ProxySignedPaymentEmpty),
}

/// `proxy.queryAnswer` (protocol 0): a whole answer from the worker.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswer answer:bytes is_completed:Bool request_id:int256 \
              tokens_used:tokensUsed = proxy.QueryAnswer"
)]
pub struct ProxyQueryAnswer {
    pub answer: Bytes,
    pub is_completed: bool,
    pub request_id: [u8; 32],
    pub tokens_used: TokensUsed,
}

/// `proxy.queryAnswerError` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerError error_code:int error:string request_id:int256 \
              tokens_used:tokensUsed = proxy.QueryAnswer"
)]
pub struct ProxyQueryAnswerError {
    pub error_code: i32,
    pub error: String,
    pub request_id: [u8; 32],
    pub tokens_used: TokensUsed,
}

/// `proxy.queryAnswerPart` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerPart answer:bytes is_completed:Bool request_id:int256 \
              tokens_used:tokensUsed = proxy.QueryAnswerPart"
)]
pub struct ProxyQueryAnswerPart {
    pub answer: Bytes,
    pub is_completed: bool,
    pub request_id: [u8; 32],
    pub tokens_used: TokensUsed,
}

/// `proxy.queryAnswerPartError` (protocol 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerPartError error_code:int error:string request_id:int256 \
              tokens_used:tokensUsed = proxy.QueryAnswerPart"
)]
pub struct ProxyQueryAnswerPartError {
    pub error_code: i32,
    pub error: String,
    pub request_id: [u8; 32],
    pub tokens_used: TokensUsed,
}

/// `proxy.queryFinalInfo` (bare): usage and timing carried by the last answer message.
/// Bit 0: debug text; bit 1 (protocol >= 2): worker start/end times.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "proxy.queryFinalInfo flags:# tokens_used:tokensUsed worker_debug:flags.0?string \
               worker_start_time:flags.1?double worker_end_time:flags.1?double \
               = proxy.QueryFinalInfo"
)]
pub struct ProxyQueryFinalInfo {
    #[tl(flags)]
    pub flags: u32,
    pub tokens_used: TokensUsed,
    #[tl(flag = 0)]
    pub worker_debug: Option<String>,
    #[tl(flag = 1)]
    pub worker_start_time: Option<f64>,
    #[tl(flag = 1)]
    pub worker_end_time: Option<f64>,
}

/// `proxy.queryAnswerEx` (protocol >= 1): the first answer message; `answer` is a serialized
/// `http.response`.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerEx request_id:int256 answer:bytes flags:# \
              final_info:flags.0?proxy.queryFinalInfo = proxy.QueryAnswerEx"
)]
pub struct ProxyQueryAnswerEx {
    pub request_id: [u8; 32],
    pub answer: Bytes,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ProxyQueryFinalInfo>,
}

/// `proxy.queryAnswerErrorEx` (protocol >= 1).
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerErrorEx request_id:int256 error_code:int error:string flags:# \
              final_info:flags.0?proxy.queryFinalInfo = proxy.QueryAnswerEx"
)]
pub struct ProxyQueryAnswerErrorEx {
    pub request_id: [u8; 32],
    pub error_code: i32,
    pub error: String,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ProxyQueryFinalInfo>,
}

/// `proxy.queryAnswerPartEx` (protocol >= 1): a raw body chunk; the last one has `final_info`.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerPartEx request_id:int256 answer:bytes flags:# \
              final_info:flags.0?proxy.queryFinalInfo = proxy.QueryAnswerEx"
)]
pub struct ProxyQueryAnswerPartEx {
    pub request_id: [u8; 32],
    pub answer: Bytes,
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub final_info: Option<ProxyQueryFinalInfo>,
}

/// `proxy.queryAnswerPartV3` (protocol 3): like `queryAnswerPartEx`, plus the cumulative
/// adjusted usage so far in every part, so the proxy can cut a stream at its reservation.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryAnswerPartV3 request_id:int256 answer:bytes flags:# \
              progress:tokensUsed final_info:flags.0?proxy.queryFinalInfo = proxy.QueryAnswer"
)]
pub struct ProxyQueryAnswerPartV3 {
    pub request_id: [u8; 32],
    pub answer: Bytes,
    #[tl(flags)]
    pub flags: u32,
    pub progress: TokensUsed,
    #[tl(flag = 0)]
    pub final_info: Option<ProxyQueryFinalInfo>,
}

/// `proxy.workerRequestPayment`: proxy → worker after every request.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.workerRequestPayment request_id:int256 signed_payment:proxy.SignedPayment \
              db_tokens:long max_tokens:long request_tokens:long \
              request_client_owner:string = proxy.WorkerRequestPayment"
)]
pub struct ProxyWorkerRequestPayment {
    pub request_id: [u8; 32],
    pub signed_payment: ProxySignedPayment,
    pub db_tokens: i64,
    pub max_tokens: i64,
    pub request_tokens: i64,
    pub request_client_owner: String,
}

/// `proxy.clientRequestPayment`: proxy → client after every request.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.clientRequestPayment request_id:int256 signed_payment:proxy.SignedPayment \
              db_tokens:long max_tokens:long request_tokens:long = proxy.WorkerRequestPayment"
)]
pub struct ProxyClientRequestPayment {
    pub request_id: [u8; 32],
    pub signed_payment: ProxySignedPayment,
    pub db_tokens: i64,
    pub max_tokens: i64,
    pub request_tokens: i64,
}

/// `proxy.runQuery` (protocol 0): proxy → worker; `query` is a serialized `http.request`.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.runQuery query:bytes signed_payment:proxy.SignedPayment coefficient:long \
              timeout:double request_id:int256 = proxy.QueryAnswer"
)]
pub struct ProxyRunQuery {
    pub query: Bytes,
    pub signed_payment: ProxySignedPayment,
    pub coefficient: i64,
    pub timeout: f64,
    pub request_id: [u8; 32],
}

/// `proxy.runQueryEx` (protocol >= 1). Its id is pinned in the schema (`#c805e7e2`). Bit 1
/// (`private_key`) is set by protocol >= 3 senders on every request: the network private key
/// (Ed25519 seed) that opens the request's encrypted fields, all zeros for a request in clear.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.runQueryEx#c805e7e2 query:bytes signed_payment:proxy.SignedPayment \
              coefficient:long timeout:double request_id:int256 flags:# \
              enable_debug:flags.0?Bool private_key:flags.1?int256 = proxy.QueryAnswer"
)]
pub struct ProxyRunQueryEx {
    pub query: Bytes,
    pub signed_payment: ProxySignedPayment,
    pub coefficient: i64,
    pub timeout: f64,
    pub request_id: [u8; 32],
    #[tl(flags)]
    pub flags: u32,
    #[tl(flag = 0)]
    pub enable_debug: Option<bool>,
    #[tl(flag = 1, redact)]
    pub private_key: Option<[u8; 32]>,
}

/// `proxy.cancelQueryV3` (protocol 3): proxy → worker, stop generating for this request.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.cancelQueryV3 request_id:int256 = proxy.CancelQuery"
)]
pub struct ProxyCancelQueryV3 {
    pub request_id: [u8; 32],
}

/// `proxy.queryReceiptV3` (extensions packet, worker → proxy): the worker's signed statement
/// about a request (`cocoon_sealed::WorkerSigned` bytes), sent right before its final answer.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "proxy.queryReceiptV3 request_id:int256 receipt:bytes = proxy.QueryReceipt"
)]
pub struct ProxyQueryReceiptV3 {
    pub request_id: [u8; 32],
    pub receipt: Bytes,
}
