//! `http.*`: the HTTP request and response Cocoon tunnels inside `client.runQuery*.query`,
//! `proxy.runQuery*.query` and the first answer's `answer` (each a boxed value serialized to
//! bytes). Header values are redacted from `Debug` (they can hold credentials).

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

/// `http.header` (bare inside the header vectors).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "http.header name:string value:string = http.Header")]
pub struct HttpHeader {
    pub name: String,
    #[tl(redact)]
    pub value: String,
}

/// `http.response`: status line, headers and the first body bytes of an answer.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "http.response http_version:string status_code:int reason:string \
              headers:(vector http.header) payload:bytes = http.Response"
)]
pub struct HttpResponse {
    pub http_version: String,
    pub status_code: i32,
    pub reason: String,
    pub headers: Vec<HttpHeader>,
    pub payload: Bytes,
}

/// `http.request`: the app's request as the client forwards it.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "http.request method:string url:string http_version:string \
              headers:(vector http.header) payload:bytes = http.Response"
)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub http_version: String,
    pub headers: Vec<HttpHeader>,
    pub payload: Bytes,
}
