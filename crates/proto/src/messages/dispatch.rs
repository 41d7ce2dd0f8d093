//! The dispatch enums: what one role can receive at one point, decoded by the leading id.
//! Packets (`tcp.packet` payloads) and queries (`tcp.query` payloads) are separate enums;
//! `AnyMessage` covers every boxed constructor (tests, tools, logs).

use cocoon_tl::{TlDebug, TlRead, TlWrite};

use super::*;

/// Packets client → proxy.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
pub enum ClientToProxyMessage {
    RunQuery(ClientRunQuery),
    RunQueryEx(ClientRunQueryEx),
    /// Protocol 3.
    CancelQueryV3(ClientCancelQueryV3),
}

/// Packets proxy → client.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
pub enum ProxyToClientMessage {
    QueryAnswer(ClientQueryAnswer),
    QueryAnswerError(ClientQueryAnswerError),
    QueryAnswerPart(ClientQueryAnswerPart),
    QueryAnswerPartError(ClientQueryAnswerPartError),
    QueryAnswerEx(ClientQueryAnswerEx),
    QueryAnswerPartEx(ClientQueryAnswerPartEx),
    QueryAnswerErrorEx(ClientQueryAnswerErrorEx),
    ClientRequestPayment(ProxyClientRequestPayment),
    /// Protocol 3.
    QueryWorkerInfoV3(ClientQueryWorkerInfoV3),
    /// Extensions: a request's countersigned receipt.
    QueryReceiptV3(ClientQueryReceiptV3),
}

/// Packets proxy → worker.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
pub enum ProxyToWorkerMessage {
    RunQuery(ProxyRunQuery),
    RunQueryEx(ProxyRunQueryEx),
    WorkerRequestPayment(ProxyWorkerRequestPayment),
    /// Protocol 3.
    CancelQueryV3(ProxyCancelQueryV3),
}

/// Packets worker → proxy.
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
pub enum WorkerToProxyMessage {
    QueryAnswer(ProxyQueryAnswer),
    QueryAnswerError(ProxyQueryAnswerError),
    QueryAnswerPart(ProxyQueryAnswerPart),
    QueryAnswerPartError(ProxyQueryAnswerPartError),
    QueryAnswerEx(ProxyQueryAnswerEx),
    QueryAnswerPartEx(ProxyQueryAnswerPartEx),
    QueryAnswerErrorEx(ProxyQueryAnswerErrorEx),
    /// Protocol 3.
    QueryAnswerPartV3(ProxyQueryAnswerPartV3),
    /// Extensions: the worker's signed receipt of a request.
    QueryReceiptV3(ProxyQueryReceiptV3),
    EnabledDisabled(WorkerEnabledDisabled),
    NewCoefficient(WorkerNewCoefficient),
}

/// Queries client → proxy.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ClientToProxyQuery {
    ConnectToProxy(ClientConnectToProxy),
    AuthorizeWithProxyShort(ClientAuthorizeWithProxyShort),
    AuthorizeWithProxyLong(ClientAuthorizeWithProxyLong),
    GetWorkerTypes(ClientGetWorkerTypes),
    GetWorkerTypesV2(ClientGetWorkerTypesV2),
    UpdatePaymentStatus(ClientUpdatePaymentStatus),
    RequestRefund(ClientRequestRefund),
    /// Extensions: candidate workers for a sealed request.
    GetSealingCandidatesV3(ClientGetSealingCandidatesV3),
    /// Extensions: a receipt's inclusion proof.
    GetReceiptProofV3(ClientGetReceiptProofV3),
}

/// Queries worker → proxy.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum WorkerToProxyQuery {
    ConnectToProxy(WorkerConnectToProxy),
    CompareBalanceWithProxy(WorkerCompareBalanceWithProxy),
    ExtendedCompareBalanceWithProxy(WorkerExtendedCompareBalanceWithProxy),
    ProxyHandshakeComplete(WorkerProxyHandshakeComplete),
    UpdatePaymentStatus(WorkerUpdatePaymentStatus),
}

/// Queries proxy → worker (9060ce5).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum ProxyToWorkerQuery {
    ChangeModel(WorkerChangeModel),
}

/// Queries a proxy or worker sends to the key manager.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum KeyManagerQuery {
    GetProxyPrivateKeys(KeyManagerGetProxyPrivateKeys),
    GetWorkerPrivateKeys(KeyManagerGetWorkerPrivateKeys),
}

/// Every boxed constructor of `cocoon_api.tl` and `cocoon_ext.tl` this crate models (bare-only
/// types such as `tokensUsed` or `proxy.params` cannot appear on their own).
#[derive(Clone, PartialEq, TlRead, TlWrite, TlDebug)]
pub enum AnyMessage {
    TcpPing(TcpPing),
    TcpPong(TcpPong),
    TcpPacket(TcpPacketData),
    TcpQueryAnswer(TcpQueryAnswer),
    TcpQueryError(TcpQueryError),
    TcpQuery(TcpQuery),
    TcpConnected(TcpConnected),
    TcpConnect(TcpConnect),
    HttpRequest(HttpRequest),
    HttpResponse(HttpResponse),
    RootConfigPseudo(RootConfigPseudo),
    RootConfigConfigV7(RootConfigConfigV7),
    KeyManagerPrivateKeys(KeyManagerPrivateKeys),
    KeyManagerGetWorkerPrivateKeys(KeyManagerGetWorkerPrivateKeys),
    KeyManagerGetProxyPrivateKeys(KeyManagerGetProxyPrivateKeys),
    ProxySignedPayment(ProxySignedPaymentData),
    ProxySignedPaymentEmpty(ProxySignedPaymentEmpty),
    ProxyQueryAnswer(ProxyQueryAnswer),
    ProxyQueryAnswerError(ProxyQueryAnswerError),
    ProxyQueryAnswerPart(ProxyQueryAnswerPart),
    ProxyQueryAnswerPartError(ProxyQueryAnswerPartError),
    ProxyQueryAnswerEx(ProxyQueryAnswerEx),
    ProxyQueryAnswerErrorEx(ProxyQueryAnswerErrorEx),
    ProxyQueryAnswerPartEx(ProxyQueryAnswerPartEx),
    ProxyQueryAnswerPartV3(ProxyQueryAnswerPartV3),
    ProxyWorkerRequestPayment(ProxyWorkerRequestPayment),
    ProxyClientRequestPayment(ProxyClientRequestPayment),
    ProxyRunQuery(ProxyRunQuery),
    ProxyRunQueryEx(ProxyRunQueryEx),
    ProxyCancelQueryV3(ProxyCancelQueryV3),
    ClientProxyConnectionAuthShort(ClientProxyConnectionAuthShort),
    ClientProxyConnectionAuthLong(ClientProxyConnectionAuthLong),
    ClientAuthorizationWithProxySuccess(ClientAuthorizationWithProxySuccess),
    ClientAuthorizationWithProxyFailed(ClientAuthorizationWithProxyFailed),
    ClientConnectedToProxy(ClientConnectedToProxy),
    ClientQueryAnswer(ClientQueryAnswer),
    ClientQueryAnswerError(ClientQueryAnswerError),
    ClientQueryAnswerPart(ClientQueryAnswerPart),
    ClientQueryAnswerPartError(ClientQueryAnswerPartError),
    ClientQueryAnswerEx(ClientQueryAnswerEx),
    ClientQueryAnswerErrorEx(ClientQueryAnswerErrorEx),
    ClientQueryAnswerPartEx(ClientQueryAnswerPartEx),
    ClientRefund(ClientRefund),
    ClientRefundRejected(ClientRefundRejected),
    ClientWorkerTypes(ClientWorkerTypes),
    ClientWorkerTypesV2(ClientWorkerTypesV2),
    ClientPaymentStatus(ClientPaymentStatus),
    ClientConnectToProxy(ClientConnectToProxy),
    ClientAuthorizeWithProxyShort(ClientAuthorizeWithProxyShort),
    ClientAuthorizeWithProxyLong(ClientAuthorizeWithProxyLong),
    ClientRunQuery(ClientRunQuery),
    ClientRunQueryEx(ClientRunQueryEx),
    ClientRequestRefund(ClientRequestRefund),
    ClientUpdatePaymentStatus(ClientUpdatePaymentStatus),
    ClientGetWorkerTypes(ClientGetWorkerTypes),
    ClientGetWorkerTypesV2(ClientGetWorkerTypesV2),
    ClientCancelQueryV3(ClientCancelQueryV3),
    ClientQueryWorkerInfoV3(ClientQueryWorkerInfoV3),
    ClientQueryReceiptV3(ClientQueryReceiptV3),
    ClientSealingCandidatesV3(ClientSealingCandidatesV3),
    ClientGetSealingCandidatesV3(ClientGetSealingCandidatesV3),
    ClientReceiptProofV3(ClientReceiptProofV3),
    ClientGetReceiptProofV3(ClientGetReceiptProofV3),
    ProxyQueryReceiptV3(ProxyQueryReceiptV3),
    WorkerEnabledDisabled(WorkerEnabledDisabled),
    WorkerNewCoefficient(WorkerNewCoefficient),
    WorkerConnectedToProxy(WorkerConnectedToProxy),
    WorkerCompareBalanceWithProxyResult(WorkerCompareBalanceWithProxyResult),
    WorkerExtendedCompareBalanceWithProxyResult(WorkerExtendedCompareBalanceWithProxyResult),
    WorkerProxyHandshakeCompleted(WorkerProxyHandshakeCompleted),
    WorkerPaymentStatus(WorkerPaymentStatus),
    WorkerConnectToProxy(WorkerConnectToProxy),
    WorkerCompareBalanceWithProxy(WorkerCompareBalanceWithProxy),
    WorkerExtendedCompareBalanceWithProxy(WorkerExtendedCompareBalanceWithProxy),
    WorkerProxyHandshakeComplete(WorkerProxyHandshakeComplete),
    WorkerUpdatePaymentStatus(WorkerUpdatePaymentStatus),
    WorkerChangeModel(WorkerChangeModel),
    WorkerChangedModel(WorkerChangedModel),
}
