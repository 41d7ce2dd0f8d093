//! What keeps web pages out of the client's HTTP API: the checks every request on the HTTP port
//! passes before any handler runs (the API, the stats pages and the admin actions alike).
//!
//! The API listens on loopback without a token by default, so any page the user's browser
//! visits could otherwise spend the client's money with a "simple" cross-site request (a
//! `text/plain` POST needs no CORS preflight), or read answers and `/jsonstats` after DNS
//! rebinding. A request is refused, with an OpenAI-shaped 4xx error and before it can reach a
//! proxy, when:
//!
//! - its `Host` (or HTTP/2 `:authority`) is not this client's own address: the bound address,
//!   or a loopback name (`localhost`, `127.0.0.1`, `[::1]`, …) with the bound port, or, when
//!   bound to an unspecified address (`0.0.0.0`), any IP literal with the bound port (DNS
//!   rebinding needs a name); names in `allowed_hosts` are accepted too;
//! - it carries an `Origin` that is not `http://` plus one of those own addresses, nor one of
//!   `allowed_origins` (browsers send `Origin` on every cross-origin POST);
//! - it has no `Origin` but `Sec-Fetch-Site: cross-site` or `same-site` (a page's link, image
//!   or form aimed at the API);
//! - it is not a GET or HEAD and its `Content-Type` is not `application/json` (parameters such
//!   as `; charset=utf-8` allowed). A missing `Content-Type`, or curl's `-d` default
//!   `application/x-www-form-urlencoded`, is accepted only from a request with neither `Origin`
//!   nor `Sec-Fetch-Site`, i.e. one no browser sent (browsers add both), so the README's
//!   `curl … -d '{…}'` keeps working.
//! - on `/v1/audio/transcriptions` only, the body is a form: its `Content-Type` must be
//!   `multipart/form-data` (or, again only from a request no browser sent, absent: the handler
//!   then says what is missing), and nothing else passes there. `multipart/form-data` is a
//!   CORS "simple" type (an HTML form can send it cross-site without a preflight), so it is
//!   accepted on no other path, and on this one only after the Host, Origin and Sec-Fetch-Site
//!   checks above: a page on another origin is refused by those. What remains open is a
//!   browser too old to send either header (before 2019–2020), whose cross-site form could
//!   start a transcription; a configured `bearer_token` closes that too (a form cannot set
//!   `Authorization`).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cocoon_node::errors;
use tracing::debug;

use crate::{ClientConfig, Shared};

/// The `Sec-Fetch-Site` header browsers add to every request.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Most characters of a refused header value echoed back in the error message.
const ECHO_MAX: usize = 100;

/// Why a request was refused before reaching any handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "Host {0:?} is not this client's address; the API answers requests addressed to its \
         bound address or a loopback name with its port (add other names to `allowed_hosts`)"
    )]
    ForeignHost(String),
    #[error(
        "requests from other web origins are refused: Origin {0:?} is not this client's own \
         (add it to `allowed_origins` to allow it)"
    )]
    ForeignOrigin(String),
    #[error("requests from web pages are refused (Sec-Fetch-Site: {0})")]
    CrossSite(String),
    #[error(
        "Content-Type must be application/json (got {0:?}); send the body with \
         `Content-Type: application/json`"
    )]
    ContentType(String),
    #[error(
        "Content-Type must be multipart/form-data on /v1/audio/transcriptions (got {0:?}); \
         send the file and fields as a form (`curl -F file=@audio.wav -F model=...`)"
    )]
    NotMultipart(String),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::ContentType(_) | Refusal::NotMultipart(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The OpenAI `error.code` of the refusal.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::ForeignHost(_) => "forbidden_host",
            Refusal::ForeignOrigin(_) => "forbidden_origin",
            Refusal::CrossSite(_) => "cross_site_request",
            Refusal::ContentType(_) | Refusal::NotMultipart(_) => "unsupported_media_type",
        }
    }

    /// The OpenAI-shaped error response.
    pub(crate) fn response(&self) -> Response {
        let status = self.status();
        let mut body =
            errors::openai_error_json(status.as_u16(), &self.to_string(), Some(self.code()));
        // `openai_error_type` has no entry for 415; a wrong content type is the caller's fault.
        body["error"]["type"] = "invalid_request_error".into();
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Middleware: refuses a request that fails [`check`].
pub(crate) async fn guard(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(refusal) = check(&shared.cfg, req.method(), req.uri(), req.headers()) {
        debug!(code = refusal.code(), "HTTP request refused");
        return refusal.response();
    }
    next.run(req).await
}

/// Every check of the module doc, in order: Host, Origin, Sec-Fetch-Site, Content-Type (by path).
pub(crate) fn check(
    cfg: &ClientConfig,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    // Host: every Host header and the request target's authority (HTTP/2 `:authority`); a
    // request with neither (HTTP/1.0) did not come from a browser.
    for host in headers.get_all(header::HOST) {
        let text = host
            .to_str()
            .map_err(|_| Refusal::ForeignHost(echo(host)))?;
        if !host_allowed(cfg, text) {
            return Err(Refusal::ForeignHost(echo(host)));
        }
    }
    if let Some(a) = uri.authority() {
        if !host_allowed(cfg, a.as_str()) {
            return Err(Refusal::ForeignHost(shorten(a.as_str())));
        }
    }
    let mut origins = headers.get_all(header::ORIGIN).iter().peekable();
    let has_origin = origins.peek().is_some();
    for origin in origins {
        if !origin.to_str().is_ok_and(|o| origin_allowed(cfg, o)) {
            return Err(Refusal::ForeignOrigin(echo(origin)));
        }
    }
    let fetch_site = headers.get(SEC_FETCH_SITE);
    if !has_origin {
        if let Some(site) = fetch_site {
            let s = site.to_str().unwrap_or("");
            if s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site") {
                return Err(Refusal::CrossSite(echo(site)));
            }
        }
    }
    if method != Method::GET && method != Method::HEAD {
        let from_browser = has_origin || fetch_site.is_some();
        if uri.path() == crate::http::TRANSCRIPTIONS {
            // Forms here, and only here.
            return match headers.get(header::CONTENT_TYPE) {
                Some(ct) if media_type_is(ct, "multipart/form-data") => Ok(()),
                None if !from_browser => Ok(()),
                Some(ct) => Err(Refusal::NotMultipart(echo(ct))),
                None => Err(Refusal::NotMultipart("none".into())),
            };
        }
        match headers.get(header::CONTENT_TYPE) {
            Some(ct) if media_type_is(ct, "application/json") => {}
            Some(ct) if !from_browser && media_type_is(ct, "application/x-www-form-urlencoded") => {
            }
            None if !from_browser => {}
            Some(ct) => return Err(Refusal::ContentType(echo(ct))),
            None => return Err(Refusal::ContentType("none".into())),
        }
    }
    Ok(())
}

/// Whether a `Content-Type` value has this media type (case-insensitive, parameters ignored).
fn media_type_is(value: &HeaderValue, want: &str) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(want))
}

/// Whether a `Host` value (`host[:port]`) names this client.
fn host_allowed(cfg: &ClientConfig, host: &str) -> bool {
    cfg.allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
        || own_authority(cfg, host)
}

/// Whether an `Origin` value is this client's own origin or a configured one.
fn origin_allowed(cfg: &ClientConfig, origin: &str) -> bool {
    let trimmed = origin.strip_suffix('/').unwrap_or(origin);
    if cfg.allowed_origins.iter().any(|o| {
        o.strip_suffix('/')
            .unwrap_or(o)
            .eq_ignore_ascii_case(trimmed)
    }) {
        return true;
    }
    // The scheme is compared case-insensitively (RFC 3986); the client serves plain HTTP only.
    trimmed
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| trimmed.get(7..))
        .is_some_and(|a| !a.contains('/') && own_authority(cfg, a))
}

/// Whether `host[:port]` is the bound address, a loopback name with the bound port, or (bound to
/// an unspecified address) an IP literal with the bound port. No port means 80.
fn own_authority(cfg: &ClientConfig, authority: &str) -> bool {
    let Ok(a) = Authority::from_str(authority) else {
        return false;
    };
    if authority.contains('@') || a.port_u16().unwrap_or(80) != cfg.http_listen.port() {
        return false;
    }
    let host = a.host();
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let Ok(ip) = literal.parse::<IpAddr>() else {
        return false;
    };
    let bound = cfg.http_listen.ip();
    ip == bound || ip.is_loopback() || bound.is_unspecified()
}

/// A header value for an error message: its text, shortened; never more than [`ECHO_MAX`].
fn echo(v: &HeaderValue) -> String {
    shorten(&String::from_utf8_lossy(v.as_bytes()))
}

fn shorten(s: &str) -> String {
    s.chars().take(ECHO_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> ClientConfig {
        ClientConfig {
            http_listen: listen.parse().expect("addr"),
            ..ClientConfig::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn post(cfg: &ClientConfig, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        check(
            cfg,
            &Method::POST,
            &"/v1/chat/completions".parse().expect("uri"),
            &headers(pairs),
        )
    }

    fn get(cfg: &ClientConfig, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        check(
            cfg,
            &Method::GET,
            &"/jsonstats".parse().expect("uri"),
            &headers(pairs),
        )
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn own_hosts_pass_and_rebound_names_are_refused() {
        let c = cfg("127.0.0.1:10000");
        for host in [
            "127.0.0.1:10000",
            "localhost:10000",
            "LOCALHOST:10000",
            "[::1]:10000",
        ] {
            assert_eq!(get(&c, &[("host", host)]), Ok(()), "{host}");
            assert_eq!(post(&c, &[("host", host), JSON]), Ok(()), "{host}");
        }
        for host in [
            "attacker.example:10000",
            "attacker.example",
            "127.0.0.1:10001",
            "127.0.0.1",
            "localhost",
            "user@127.0.0.1:10000",
            "10.0.0.1:10000",
            "",
        ] {
            assert!(
                matches!(get(&c, &[("host", host)]), Err(Refusal::ForeignHost(_))),
                "{host}"
            );
            assert!(
                matches!(
                    post(&c, &[("host", host), JSON]),
                    Err(Refusal::ForeignHost(_))
                ),
                "{host}"
            );
        }
        // Two Host headers: each must pass.
        assert!(get(
            &c,
            &[("host", "127.0.0.1:10000"), ("host", "evil.example:10000")]
        )
        .is_err());
        // HTTP/2 carries the host in the request target.
        let uri: axum::http::Uri = "http://evil.example:10000/v1/models".parse().expect("uri");
        assert!(check(&c, &Method::GET, &uri, &HeaderMap::new()).is_err());
        let uri: axum::http::Uri = "http://127.0.0.1:10000/v1/models".parse().expect("uri");
        assert_eq!(check(&c, &Method::GET, &uri, &HeaderMap::new()), Ok(()));
        // No Host at all (HTTP/1.0 tools) is no browser.
        assert_eq!(get(&c, &[]), Ok(()));
    }

    #[test]
    fn unspecified_bind_accepts_ip_literals_and_configured_names_only() {
        let mut c = cfg("0.0.0.0:8080");
        assert_eq!(get(&c, &[("host", "192.168.1.5:8080")]), Ok(()));
        assert_eq!(get(&c, &[("host", "localhost:8080")]), Ok(()));
        assert!(get(&c, &[("host", "192.168.1.5:8081")]).is_err());
        assert!(get(&c, &[("host", "gpu-box.lan:8080")]).is_err());
        c.allowed_hosts = vec!["gpu-box.lan:8080".into()];
        assert_eq!(get(&c, &[("host", "GPU-box.lan:8080")]), Ok(()));
        // A specific bind address: only itself and loopback.
        let c = cfg("192.168.1.5:10000");
        assert_eq!(get(&c, &[("host", "192.168.1.5:10000")]), Ok(()));
        assert!(get(&c, &[("host", "192.168.1.6:10000")]).is_err());
    }

    #[test]
    fn foreign_origins_are_refused_own_and_configured_pass() {
        let mut c = cfg("127.0.0.1:10000");
        let host = ("host", "127.0.0.1:10000");
        for origin in [
            "http://127.0.0.1:10000",
            "http://localhost:10000",
            "HTTP://[::1]:10000",
        ] {
            assert_eq!(
                post(&c, &[host, JSON, ("origin", origin)]),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "https://evil.example",
            "http://evil.example:10000",
            "http://127.0.0.1:3000",
            "https://127.0.0.1:10000",
            "http://127.0.0.1:10000/path",
            "null",
            "",
        ] {
            assert!(
                matches!(
                    post(&c, &[host, JSON, ("origin", origin)]),
                    Err(Refusal::ForeignOrigin(_))
                ),
                "{origin}"
            );
            assert!(
                matches!(
                    get(&c, &[host, ("origin", origin)]),
                    Err(Refusal::ForeignOrigin(_))
                ),
                "{origin}"
            );
        }
        c.allowed_origins = vec!["https://chat.example.com/".into()];
        assert_eq!(
            post(&c, &[host, JSON, ("origin", "https://chat.example.com")]),
            Ok(())
        );
        assert!(post(
            &c,
            &[host, JSON, ("origin", "https://chat.example.com.evil")]
        )
        .is_err());
    }

    #[test]
    fn cross_site_fetch_metadata_without_origin_is_refused() {
        let c = cfg("127.0.0.1:10000");
        for site in ["cross-site", "same-site"] {
            assert!(matches!(
                get(&c, &[("sec-fetch-site", site)]),
                Err(Refusal::CrossSite(_))
            ));
        }
        // Typed into the address bar, or the page's own.
        assert_eq!(get(&c, &[("sec-fetch-site", "none")]), Ok(()));
        assert_eq!(get(&c, &[("sec-fetch-site", "same-origin")]), Ok(()));
    }

    #[test]
    fn posts_need_json_unless_no_browser_sent_them() {
        let c = cfg("127.0.0.1:10000");
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert_eq!(post(&c, &[("content-type", ct)]), Ok(()), "{ct}");
        }
        // The CORS "simple" types a page can send without preflight.
        for ct in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "text/plain; a=application/json",
        ] {
            assert!(
                matches!(
                    post(&c, &[("content-type", ct)]),
                    Err(Refusal::ContentType(_))
                ),
                "{ct}"
            );
        }
        // curl -d (form type) and tools that send no type: fine without browser headers...
        assert_eq!(post(&c, &[]), Ok(()));
        assert_eq!(
            post(&c, &[("content-type", "application/x-www-form-urlencoded")]),
            Ok(())
        );
        // ...refused when a browser sent them, even from an allowed origin.
        let own = ("origin", "http://127.0.0.1:10000");
        let same = ("sec-fetch-site", "same-origin");
        for extra in [own, same] {
            assert!(matches!(post(&c, &[extra]), Err(Refusal::ContentType(_))));
            assert!(matches!(
                post(
                    &c,
                    &[extra, ("content-type", "application/x-www-form-urlencoded")]
                ),
                Err(Refusal::ContentType(_))
            ));
        }
        // GET carries no body: no content type needed.
        assert_eq!(get(&c, &[("content-type", "text/plain")]), Ok(()));
    }

    #[test]
    fn forms_pass_on_the_transcription_route_only() {
        let c = cfg("127.0.0.1:10000");
        let to = |path: &str, pairs: &[(&str, &str)]| {
            check(
                &c,
                &Method::POST,
                &path.parse().expect("uri"),
                &headers(pairs),
            )
        };
        let form = ("content-type", "multipart/form-data; boundary=x");
        let own = ("origin", "http://127.0.0.1:10000");
        let host = ("host", "127.0.0.1:10000");
        for pairs in [
            &[form][..],
            &[form, own, host],
            &[form, ("sec-fetch-site", "same-origin")],
        ] {
            assert_eq!(to("/v1/audio/transcriptions", pairs), Ok(()), "{pairs:?}");
        }
        // A form anywhere else is what a cross-site page would send.
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/admin/top-up",
            "/v1/audio/transcriptions/",
        ] {
            assert!(
                matches!(to(path, &[form]), Err(Refusal::ContentType(_))),
                "{path}"
            );
        }
        // On the form route, nothing but a form; a foreign page is refused before its type.
        for ct in [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
        ] {
            assert!(
                matches!(
                    to("/v1/audio/transcriptions", &[("content-type", ct)]),
                    Err(Refusal::NotMultipart(_))
                ),
                "{ct}"
            );
        }
        assert!(matches!(
            to(
                "/v1/audio/transcriptions",
                &[form, ("origin", "https://evil.example")]
            ),
            Err(Refusal::ForeignOrigin(_))
        ));
        assert!(matches!(
            to(
                "/v1/audio/transcriptions",
                &[form, ("sec-fetch-site", "cross-site")]
            ),
            Err(Refusal::CrossSite(_))
        ));
        // No type: only from a tool (the handler then asks for the form).
        assert_eq!(to("/v1/audio/transcriptions", &[]), Ok(()));
        assert!(matches!(
            to("/v1/audio/transcriptions", &[own]),
            Err(Refusal::NotMultipart(_))
        ));
        assert_eq!(
            Refusal::NotMultipart("x".into()).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[tokio::test]
    async fn refusals_are_openai_shaped_4xx() {
        use http_body_util::BodyExt;
        let r = Refusal::ContentType("text/plain".into()).response();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "unsupported_media_type");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("application/json")));
        let r = Refusal::ForeignOrigin("https://evil.example".into()).response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let long = HeaderValue::from_str(&"a".repeat(5000)).expect("value");
        assert_eq!(echo(&long).len(), ECHO_MAX);
    }
}
