//! What a client is sent, in the shape its negotiated protocol expects: legacy messages for
//! protocol 0, `…Ex` from 1, timings in the final info from 2. Pure functions of their
//! arguments (the time comes in as `now_unix`); nothing here sends, locks or logs.

use bytes::Bytes;
use cocoon_node::time::format_unix;
use cocoon_proto::messages::{
    encode, ClientQueryAnswer, ClientQueryAnswerError, ClientQueryAnswerErrorEx,
    ClientQueryAnswerEx, ClientQueryAnswerPart, ClientQueryAnswerPartEx, ClientQueryFinalInfo,
    HttpHeader, HttpResponse, ProxyQueryFinalInfo,
};

/// Which piece of an answer a worker message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The serialized `http.response` head (`…queryAnswerEx`).
    Head,
    /// A body chunk (`…queryAnswerPartEx` / `PartV3`).
    Part,
}

/// The client's side of a request: where its answer goes and how it is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientSide {
    pub conn: u64,
    /// The version and capabilities agreed with the client.
    pub proto: cocoon_proto::version::Negotiated,
    pub request_id: [u8; 32],
    /// When the proxy received the request (unix seconds; the proxy's timing header).
    pub started_unix: f64,
}

/// A head or body part for the client, with the final info when it is the last piece.
pub fn answer(
    client: &ClientSide,
    piece: Piece,
    answer: Bytes,
    final_info: Option<&ProxyQueryFinalInfo>,
    now_unix: f64,
) -> Bytes {
    if client.proto.version >= 1 {
        let final_info = final_info.map(|f| client_final(f, client, now_unix));
        return match piece {
            Piece::Head => encode(&ClientQueryAnswerEx {
                request_id: client.request_id,
                answer,
                flags: 0,
                final_info,
            }),
            Piece::Part => encode(&ClientQueryAnswerPartEx {
                request_id: client.request_id,
                answer,
                flags: 0,
                final_info,
            }),
        };
    }
    let is_completed = final_info.is_some();
    let request_tokens_used = final_info.map(|f| f.tokens_used).unwrap_or_default();
    match piece {
        Piece::Head => encode(&ClientQueryAnswer {
            answer,
            is_completed,
            request_id: client.request_id,
            request_tokens_used,
        }),
        Piece::Part => encode(&ClientQueryAnswerPart {
            answer,
            is_completed,
            request_id: client.request_id,
            request_tokens_used,
        }),
    }
}

/// An error answer for request `request_id` of a client speaking `proto`.
pub fn error(
    proto: i32,
    request_id: [u8; 32],
    code: i32,
    message: &str,
    final_info: Option<ClientQueryFinalInfo>,
) -> Bytes {
    if proto >= 1 {
        return encode(&ClientQueryAnswerErrorEx {
            request_id,
            error_code: code,
            error: message.to_string(),
            flags: 0,
            final_info,
        });
    }
    encode(&ClientQueryAnswerError {
        error_code: code,
        error: message.to_string(),
        request_id,
        request_tokens_used: final_info.map(|f| f.tokens_used).unwrap_or_default(),
    })
}

/// The worker's final info as the client sees it (timings from protocol 2).
pub fn client_final(
    f: &ProxyQueryFinalInfo,
    client: &ClientSide,
    now_unix: f64,
) -> ClientQueryFinalInfo {
    let timing = client.proto.version >= 2;
    ClientQueryFinalInfo {
        flags: 0,
        tokens_used: f.tokens_used,
        worker_debug: None,
        proxy_debug: None,
        proxy_start_time: timing.then_some(client.started_unix),
        proxy_end_time: timing.then_some(now_unix),
        worker_start_time: timing.then_some(f.worker_start_time.unwrap_or(0.0)),
        worker_end_time: timing.then_some(f.worker_end_time.unwrap_or(0.0)),
    }
}

/// Adds `X-Cocoon-Proxy-Start/End` and the proxy's word on the serving worker (`evidence`
/// headers, replacing any of those names the worker set) to a decoded `http.response`, and
/// serializes it.
pub fn head_with_proxy_headers(
    mut resp: HttpResponse,
    started_unix: f64,
    now_unix: f64,
    evidence: Vec<HttpHeader>,
) -> Bytes {
    resp.headers.push(HttpHeader {
        name: "X-Cocoon-Proxy-Start".into(),
        value: format_unix(started_unix),
    });
    resp.headers.push(HttpHeader {
        name: "X-Cocoon-Proxy-End".into(),
        value: format_unix(now_unix),
    });
    crate::worker_evidence::merge_into(&mut resp.headers, evidence);
    encode(&resp)
}
