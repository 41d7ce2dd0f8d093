//! `worker.*`: the worker ↔ proxy handshake queries and answers, and the worker's state
//! updates (`worker.enabledDisabled`, `worker.newCoefficient`).

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

use super::{ProxyParams, ProxySignedPayment};

/// `worker.params` (bare): what the worker tells the proxy about itself. Bit 0: is_test,
/// proxy_cnt, max_active_requests; bit 1: protocol version range; bit 2 (9060ce5): a free-form
/// JSON description of the machine, sent only by a worker whose minimum protocol is >= 4 (a
/// proxy that may negotiate less would not know the field and refuse the handshake).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "worker.params#869c73ed flags:# worker_owner_address:string model:string \
               coefficient:int is_test:flags.0?Bool proxy_cnt:flags.0?int \
               max_active_requests:flags.0?int min_proto_version:flags.1?int \
               max_proto_version:flags.1?int machine_description_json:flags.2?string \
               = worker.Params"
)]
pub struct WorkerParams {
    #[tl(flags)]
    pub flags: u32,
    pub worker_owner_address: String,
    pub model: String,
    pub coefficient: i32,
    #[tl(flag = 0)]
    pub is_test: Option<bool>,
    #[tl(flag = 0)]
    pub proxy_cnt: Option<i32>,
    #[tl(flag = 0)]
    pub max_active_requests: Option<i32>,
    #[tl(flag = 1)]
    pub min_proto_version: Option<i32>,
    #[tl(flag = 1)]
    pub max_proto_version: Option<i32>,
    #[tl(flag = 2)]
    pub machine_description_json: Option<String>,
}

/// `worker.enabledDisabled` (packet): `disabled` is 0 or 1.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.enabledDisabled disabled:int = worker.EnabledDisabled"
)]
pub struct WorkerEnabledDisabled {
    pub disabled: i32,
}

/// `worker.newCoefficient` (packet).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.newCoefficient new_coefficient:int = worker.NewCoefficient"
)]
pub struct WorkerNewCoefficient {
    pub new_coefficient: i32,
}

/// `worker.connectedToProxy`: answer to `worker.connectToProxy`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.connectedToProxy params:proxy.params worker_sc_address:string \
              = worker.ConnectedToProxy"
)]
pub struct WorkerConnectedToProxy {
    pub params: ProxyParams,
    pub worker_sc_address: String,
}

/// `worker.compareBalanceWithProxyResult`: `error_code` 1 = the worker knows more.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.compareBalanceWithProxyResult signed_payment:proxy.SignedPayment \
              tokens_committed_to_db:long max_tokens:long error_code:int \
              = worker.CompareBalanceWithProxyResult"
)]
pub struct WorkerCompareBalanceWithProxyResult {
    pub signed_payment: ProxySignedPayment,
    pub tokens_committed_to_db: i64,
    pub max_tokens: i64,
    pub error_code: i32,
}

/// `worker.extendedCompareBalanceWithProxyResult` (a stub in Cocoon: always 0).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.extendedCompareBalanceWithProxyResult error_code:int \
              = worker.ExtendedCompareBalanceWithProxyResult"
)]
pub struct WorkerExtendedCompareBalanceWithProxyResult {
    pub error_code: i32,
}

/// `worker.proxyHandshakeCompleted`: answer to `worker.proxyHandshakeComplete`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.proxyHandshakeCompleted = worker.HandshakeCompleted"
)]
pub struct WorkerProxyHandshakeCompleted;

/// `worker.paymentStatus`: answer to `worker.updatePaymentStatus`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.paymentStatus signed_payment:proxy.SignedPayment db_tokens:long \
              max_tokens:long = worker.PaymentStatus"
)]
pub struct WorkerPaymentStatus {
    pub signed_payment: ProxySignedPayment,
    pub db_tokens: i64,
    pub max_tokens: i64,
}

/// `worker.connectToProxy` (query) → `worker.connectedToProxy`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.connectToProxy params:worker.params = worker.ConnectedToProxy"
)]
pub struct WorkerConnectToProxy {
    pub params: WorkerParams,
}

/// `worker.compareBalanceWithProxy` (query): the rollback check.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.compareBalanceWithProxy tokens_committed_to_blockchain:long \
              tokens_committed_to_db:long max_tokens:long \
              = worker.CompareBalanceWithProxyResult"
)]
pub struct WorkerCompareBalanceWithProxy {
    pub tokens_committed_to_blockchain: i64,
    pub tokens_committed_to_db: i64,
    pub max_tokens: i64,
}

/// `worker.extendedCompareBalanceWithProxy` (query; Cocoon sends an empty `other`).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.extendedCompareBalanceWithProxy tokens_committed_to_db:long other:bytes \
              = worker.ExtendedCompareBalanceWithProxyResult"
)]
pub struct WorkerExtendedCompareBalanceWithProxy {
    pub tokens_committed_to_db: i64,
    pub other: Bytes,
}

/// `worker.proxyHandshakeComplete` (query) → `worker.proxyHandshakeCompleted`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.proxyHandshakeComplete is_disabled:Bool = worker.HandshakeCompleted"
)]
pub struct WorkerProxyHandshakeComplete {
    pub is_disabled: bool,
}

/// `worker.updatePaymentStatus` (query) → `worker.paymentStatus`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "worker.updatePaymentStatus = worker.PaymentStatus")]
pub struct WorkerUpdatePaymentStatus;

/// `worker.changeModel` (query, proxy → worker; 9060ce5): switch to serving `new_model`. The
/// worker runs its configured hook and answers `worker.changedModel`, or an error when it has
/// no hook or the hook fails.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "worker.changeModel new_model:string = worker.ChangedModel"
)]
pub struct WorkerChangeModel {
    pub new_model: String,
}

/// `worker.changedModel`: answer to `worker.changeModel` (the model was switched).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "worker.changedModel = worker.ChangedModel")]
pub struct WorkerChangedModel;
