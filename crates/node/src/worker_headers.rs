//! The `X-Cocoon-Worker-*` evidence headers an answer carries about the worker that served it:
//! the proxy sets them from the worker's RA-TLS evidence (Cocoon's path), the client from its own
//! verdict (the sealed path). Only names and the check live here; what goes in them is each
//! role's.

/// Image hash of the worker's verified evidence (hex).
pub const HEADER_IMAGE_HASH: &str = "X-Cocoon-Worker-Image-Hash";
/// SHA-256 of the worker's full model string (hex), as the root contract hashes models.
pub const HEADER_MODEL_HASH: &str = "X-Cocoon-Worker-Model-Hash";
/// Kind of the worker's evidence (`cocoon_attest::EvidenceKind::name`).
pub const HEADER_EVIDENCE: &str = "X-Cocoon-Worker-Evidence";
/// Digest of the worker's evidence (hex).
pub const HEADER_EVIDENCE_DIGEST: &str = "X-Cocoon-Worker-Evidence-Digest";

/// Whether `name` is one of the evidence headers (any case): only the proxy, or for a sealed
/// request the client, may set them; a worker's own are dropped.
pub fn is_evidence_header(name: &str) -> bool {
    [
        HEADER_IMAGE_HASH,
        HEADER_MODEL_HASH,
        HEADER_EVIDENCE,
        HEADER_EVIDENCE_DIGEST,
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_headers_match_in_any_case_and_only_those() {
        assert!(is_evidence_header("x-cocoon-worker-image-hash"));
        assert!(is_evidence_header("X-COCOON-WORKER-EVIDENCE-DIGEST"));
        assert!(!is_evidence_header("X-Cocoon-Worker-Start"));
    }
}
