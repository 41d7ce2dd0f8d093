//! The `Engine` trait the worker calls, and the request/response types around it.
//!
//! An engine takes an already validated and rewritten OpenAI request body (see
//! [`crate::validate`]) and produces an HTTP-like response: a head (status and headers) first,
//! then a stream of body chunks as the engine produces them. Nothing here parses bodies or
//! counts tokens; that is [`crate::usage`]'s job. Implementations live in [`crate::mock`] and
//! [`crate::openai`].
//!
//! Cancellation contract: dropping [`EngineResponse::body`] before it ends MUST stop the
//! generation (the mock stops producing; the OpenAI adapter drops the upstream connection, which
//! vLLM/SGLang/llama-server treat as an abort).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;

/// Boxed error source, kept so callers can walk `source()` chains.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The OpenAI endpoints a worker serves: Cocoon's two JSON ones, and the multipart one upstream
/// 9060ce5 added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/audio/transcriptions`: a `multipart/form-data` body (see [`crate::multipart`]).
    AudioTranscriptions,
}

/// A request handed to an engine.
#[derive(Debug, Clone)]
pub struct EngineRequest {
    /// Which endpoint the body is for.
    pub endpoint: Endpoint,
    /// Validated and rewritten body: JSON (see [`crate::validate::validate_request`]), or for
    /// [`Endpoint::AudioTranscriptions`] a canonical multipart form
    /// ([`crate::multipart::validate_multipart`]).
    pub body: Bytes,
    /// The body's `Content-Type` when it is not JSON: a multipart form's
    /// `multipart/form-data; boundary=...`, which must travel with it unchanged. `None`:
    /// `application/json`.
    pub content_type: Option<String>,
    /// Opaque id for logs and tracing; never interpreted.
    pub request_id: String,
    /// Hard deadline for the whole request, body included.
    pub deadline: tokio::time::Instant,
}

/// The engine's answer: head first, body streamed.
pub struct EngineResponse {
    /// HTTP status from the engine (non-2xx answers are passed through, not turned into errors).
    pub status: u16,
    /// Response headers, lower-case names, without hop-by-hop headers (`content-length`,
    /// `transfer-encoding`, `connection`, `keep-alive`): the caller re-frames the body.
    pub headers: Vec<(String, String)>,
    /// Body chunks in order. Dropping this stream cancels the generation.
    pub body: BoxStream<'static, Result<Bytes, EngineError>>,
}

/// An inference backend.
#[async_trait::async_trait]
pub trait Engine: Send + Sync + fmt::Debug {
    /// Starts a request; the response head arrives first, then body chunks as the engine produces them.
    /// Dropping the returned body stream MUST cancel the generation (mock: stops; openai: drops the upstream connection).
    async fn start(&self, req: EngineRequest) -> Result<EngineResponse, EngineError>;
    /// Liveness (the worker disables itself while this fails).
    async fn health(&self) -> Result<(), EngineError>;
}

/// An engine shared between tasks.
pub type SharedEngine = Arc<dyn Engine>;

/// Why an engine call failed. Non-2xx engine answers are *not* errors (see [`EngineResponse`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine could not be reached (connect refused, DNS, TLS, ...).
    #[error("engine unreachable")]
    Unreachable(#[source] BoxError),
    /// The request's deadline passed before the response (head or body) was complete.
    #[error("engine request timed out")]
    Timeout,
    /// The connection broke or the engine sent an invalid response mid-way.
    #[error("engine transport error")]
    Transport(#[source] BoxError),
    /// The health probe got a non-200 answer.
    #[error("engine health check returned HTTP {status}")]
    UnhealthyStatus {
        /// The status the engine answered with.
        status: u16,
    },
    /// The engine reports itself as unhealthy for another reason.
    #[error("engine unhealthy: {0}")]
    Unhealthy(String),
    /// The engine's configuration is unusable (bad base URL, ...).
    #[error("engine misconfigured: {0}")]
    Config(String),
}

// === impl Endpoint ===

impl Endpoint {
    /// Maps a request path to an endpoint. A query string is ignored, and a full URL
    /// (`http://host/v1/...`) is reduced to its path, as Cocoon's worker does.
    pub fn from_path(p: &str) -> Option<Self> {
        let p = strip_scheme_and_authority(p);
        let p = p.split_once('?').map_or(p, |(path, _)| path);
        match p {
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/completions" => Some(Self::Completions),
            "/v1/audio/transcriptions" => Some(Self::AudioTranscriptions),
            _ => None,
        }
    }

    /// The canonical request path.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::AudioTranscriptions => "/v1/audio/transcriptions",
        }
    }

    /// Whether the body is a `multipart/form-data` form rather than JSON.
    pub fn is_multipart(self) -> bool {
        matches!(self, Self::AudioTranscriptions)
    }
}

fn strip_scheme_and_authority(p: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = p.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    p
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

// === impl EngineResponse ===

impl fmt::Debug for EngineResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl EngineResponse {
    /// The `content-type` header, if any (names are lower-case).
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a header is hop-by-hop or framing and must not be copied from one HTTP leg to the
/// next. Compared case-insensitively (Cocoon compared the original-case name, which let
/// `Content-Length` through and truncated rewritten bodies).
pub fn is_hop_by_hop_header(name: &str) -> bool {
    const HOP: [&str; 10] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths_round_trip() {
        for e in [
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::AudioTranscriptions,
        ] {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(e.is_multipart(), e == Endpoint::AudioTranscriptions);
        }
    }

    #[test]
    fn endpoint_from_path_variants() {
        assert_eq!(
            Endpoint::from_path("/v1/chat/completions?x=1"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_path("http://127.0.0.1:8000/v1/completions"),
            Some(Endpoint::Completions)
        );
        assert_eq!(
            Endpoint::from_path("http://127.0.0.1:8000/v1/audio/transcriptions?x"),
            Some(Endpoint::AudioTranscriptions)
        );
        assert_eq!(Endpoint::from_path("/v1/models"), None);
        assert_eq!(Endpoint::from_path("/v1/audio/translations"), None);
        assert_eq!(Endpoint::from_path("/v1/chat/completions/"), None);
        assert_eq!(Endpoint::from_path("http://host"), None);
        assert_eq!(Endpoint::from_path(""), None);
    }

    #[test]
    fn hop_by_hop_is_case_insensitive() {
        assert!(is_hop_by_hop_header("Content-Length"));
        assert!(is_hop_by_hop_header("TRANSFER-ENCODING"));
        assert!(!is_hop_by_hop_header("content-type"));
        assert!(is_hop_by_hop_header("Proxy-Authenticate"));
        assert!(is_hop_by_hop_header("Proxy-Authorization"));
    }
}
