//! Error codes carried in `*.queryAnswerError*` messages and their HTTP statuses.
//!
//! Codes below 1000 are TON/Cocoon's (`td` error codes): a Cocoon peer sends them and maps
//! `timeout` to 504, `notready` to 502 and the rest to 500. Codes `1000 + S` are ours and carry
//! the HTTP status `S` the client should answer with, so an app gets 402/404/429/503 instead of
//! a blanket 500. Every role uses these constants; none invents codes inline.

/// Generic failure (TON `error`; upstream 9060ce5 answers "unknown public key" and a failed
/// model change with it: `crates/proto/tests/data/frames-9060ce5`).
pub const ERROR: i32 = 602;
/// Malformed or disallowed request (TON `protoviolation`); Cocoon uses it for bad requests.
pub const PROTOVIOLATION: i32 = 621;
/// Nobody can serve it right now (TON `notready`).
pub const NOT_READY: i32 = 651;
/// A deadline passed (TON `timeout`).
pub const TIMEOUT: i32 = 652;
/// Cancelled by the requester (TON `cancelled`).
pub const CANCELLED: i32 = 653;

/// Client's credit does not cover the reservation.
pub const INSUFFICIENT_CREDIT: i32 = 1402;
/// No worker serves the requested model.
pub const UNKNOWN_MODEL: i32 = 1404;
/// Too many requests for the client's allowance right now.
pub const TOO_MANY_REQUESTS: i32 = 1429;
/// The worker or its engine failed.
pub const BAD_GATEWAY: i32 = 1502;
/// Workers exist but none can take the request (capacity, coefficient cap, disabled).
pub const NO_WORKER: i32 = 1503;
/// The stream used up its reservation and was cut.
pub const RESERVATION_EXCEEDED: i32 = 1509;

/// The HTTP status for an error code received from the network.
pub fn http_status(code: i32) -> u16 {
    match code {
        PROTOVIOLATION => 400,
        NOT_READY => 502,
        TIMEOUT => 504,
        CANCELLED => 499,
        1400..=1599 => (code - 1000) as u16,
        _ => 500,
    }
}

/// The OpenAI error `type` for an HTTP status.
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 => "invalid_request_error",
        401 | 403 => "authentication_error",
        402 => "insufficient_quota",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

/// An OpenAI-shaped error body.
pub fn openai_error_json(status: u16, message: &str, code: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": null,
            "code": code,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_to_statuses() {
        assert_eq!(http_status(TIMEOUT), 504);
        assert_eq!(http_status(NOT_READY), 502);
        assert_eq!(http_status(PROTOVIOLATION), 400);
        assert_eq!(http_status(INSUFFICIENT_CREDIT), 402);
        assert_eq!(http_status(UNKNOWN_MODEL), 404);
        assert_eq!(http_status(NO_WORKER), 503);
        assert_eq!(http_status(ERROR), 500);
        assert_eq!(http_status(-5), 500);
    }
}
