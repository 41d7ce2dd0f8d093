//! The Cocoon wire protocol: every message, the framing, the `tcp.*` RPC session, the PoW
//! pre-handshake and protocol-version negotiation. TLS and attestation live in `cocoon-ratls`;
//! what the roles do with messages lives in the role crates.
//!
//! # Layers, outer to inner
//! 1. **TCP**, with `TCP_NODELAY` (the caller sets it).
//! 2. **PoW** ([`pow`]): cleartext `cocoon.powSimple` challenge / `powSimpleResponse` before TLS,
//!    so each connection costs the dialer ~2^20 SHA-256 before the server does any TLS work.
//! 3. **RA-TLS** (`cocoon-ratls`): mutual TLS 1.3 with attested certificates.
//! 4. **Framing** ([`frame`]): `u32 len | i32 seqno | payload`, seqnos 0,1,2,… per direction.
//! 5. **Session** ([`session`]): `tcp.connect`/`tcp.connected`, then `tcp.packet` messages and
//!    `tcp.query`/`tcp.queryAnswer`/`tcp.queryError` request-response, `tcp.ping`/`tcp.pong`,
//!    idle timeouts.
//! 6. **Messages** ([`messages`]): boxed TL values (`client.*`, `proxy.*`, `worker.*`, `http.*`)
//!    carried as packet or query payloads, decoded with the dispatch enums.
//!
//! # Protocol versions ([`version`])
//! Negotiated in the client/worker handshakes as `min(local_max, remote_max)`, with upstream
//! COCOON 9060ce5's meanings:
//! - **0**: `client.runQuery` / `proxy.runQuery`, answers `*.queryAnswer[Part][Error]` with usage
//!   on every message.
//! - **1**: `*.runQueryEx` and `*.queryAnswer{,Part,Error}Ex`; usage only in the last message's
//!   `final_info`.
//! - **2**: timing fields in `final_info`.
//! - **3**: the encryption key field in every `runQueryEx` (flags bit 1).
//! - **4**: `worker.params.machine_description_json` (flags bit 2).
//!
//! Our additions (`schema/cocoon_ext.tl`) are a capability, not a version: both sides set
//! [`version::EXTENSIONS_FLAG`] in their params. Then: cancellation (`client.cancelQueryV3`
//! client → proxy, `proxy.cancelQueryV3` proxy → worker), `proxy.queryAnswerPartV3` (every part
//! carries cumulative usage so a proxy can stop a stream at its reservation) and
//! `client.queryWorkerInfoV3` (proxy → client, right before a request's final answer: the
//! serving worker's image hash, model hash, evidence digest and kind). Upstream peers never set
//! the bit, so they never receive a message they do not know.
//!
//! Schemas: `schema/cocoon_api.tl` (Cocoon's at 9060ce5, unchanged) and `schema/cocoon_ext.tl`
//! (ours).
//! Golden captures of Cocoon's traffic are in `tests/data/frames/`.

pub mod frame;
pub mod messages;
pub mod pow;
pub mod session;
pub mod version;

/// Cocoon's schema file, as shipped in this crate.
pub const COCOON_SCHEMA: &str = include_str!("../schema/cocoon_api.tl");
/// The cocoon-rs extensions (used only when both sides set the extensions bit).
pub const COCOON_EXT_SCHEMA: &str = include_str!("../schema/cocoon_ext.tl");
