//! Upstream COCOON's v1 field encryption on the worker (`"is_encrypted":"v1"`): opening an
//! encrypted request with the network key the proxy handed over in `proxy.runQueryEx.private_key`
//! (protocol >= 3), and sealing every JSON value of the answer to the app's key
//! (`sender_public_key` of the request), as upstream 9060ce5's worker does.
//!
//! Rules, as upstream's worker applies them: a request in clear with a key is refused ("encryption
//! key is provided, but request is unencrypted"); an encrypted request without a key is refused;
//! the key must be the one the request names (`receiver_public_key`). The four marker fields are
//! removed before the body is validated and given to the engine (upstream forwards them; engines
//! that refuse unknown fields would fail). Answers: each JSON value (a non-streamed body, each
//! JSON line, the JSON of each SSE `data:` event) is encrypted on its own with a fresh nonce;
//! `data: [DONE]` passes; anything else is dropped, never forwarded in clear (upstream drops SSE
//! entirely). The cryptography is `cocoon-field-encryption`; nothing here logs field contents.

use bytes::Bytes;
use cocoon_engine::usage::BodyKind;
use cocoon_field_encryption::{decrypt_json, encrypt_json, is_encrypted, Direction, SecretSeed};
use serde_json::Value;

/// The marker fields an encrypted request carries (dropped before the engine sees the body).
const MARKERS: [&str; 4] = cocoon_field_encryption::MARKER_FIELDS;

/// What a request body turned out to be.
pub(crate) enum Opened {
    /// In clear, and no key came with it.
    Clear,
    /// Encrypted: the body in clear (markers removed) and how to seal the answer.
    Sealed { body: Bytes, sealer: Sealer },
}

/// Why a request could not be opened (the message goes back to the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum OpenError {
    #[error("encryption key is provided, but request is unencrypted")]
    KeyForClearRequest,
    #[error("cannot find private key for an encrypted request")]
    NoKey,
    #[error("cannot decrypt the request: {0}")]
    Decrypt(String),
}

/// Opens `body` with `key` (`runQueryEx.private_key`; `None` or all zeros: no key).
pub(crate) fn open_request(body: &[u8], key: Option<[u8; 32]>) -> Result<Opened, OpenError> {
    let key = key.filter(|k| *k != [0; 32]);
    // Most requests are in clear and come without a key: no parse for them (the validator
    // parses the body next anyway).
    if key.is_none() && !mentions(body, b"\"is_encrypted\"") {
        return Ok(Opened::Clear);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Not JSON: the validator refuses it with its usual message.
        Err(_) if key.is_none() => return Ok(Opened::Clear),
        Err(e) => return Err(OpenError::Decrypt(format!("body is not JSON: {e}"))),
    };
    if !is_encrypted(&value) {
        return match key {
            Some(_) => Err(OpenError::KeyForClearRequest),
            None => Ok(Opened::Clear),
        };
    }
    let Some(key) = key else {
        return Err(OpenError::NoKey);
    };
    let seed = SecretSeed::from_bytes(key);
    let opened = decrypt_json(value, &seed, Direction::ClientToWorker, None)
        .map_err(|e| OpenError::Decrypt(e.to_string()))?;
    let mut value = opened.value;
    if let Some(obj) = value.as_object_mut() {
        for m in MARKERS {
            obj.remove(m);
        }
    }
    let body = serde_json::to_vec(&value).map_err(|e| OpenError::Decrypt(e.to_string()))?;
    Ok(Opened::Sealed {
        body: Bytes::from(body),
        sealer: Sealer {
            seed,
            app_key: opened.sender_public_key,
            dropped: 0,
        },
    })
}

fn mentions(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Seals the answer of one encrypted request, unit by unit.
pub(crate) struct Sealer {
    seed: SecretSeed,
    /// The app's public key: the answer's receiver.
    app_key: [u8; 32],
    /// Units that were not JSON values and were dropped instead of sent in clear.
    dropped: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("app_key", &hex::encode(self.app_key))
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// One complete unit of the body (a whole JSON body, one JSON line with its newline, or one
    /// SSE event with its blank line), sealed; empty when it had nothing to seal.
    pub fn seal_unit(&mut self, kind: BodyKind, unit: &[u8]) -> Bytes {
        let sealed = match kind {
            BodyKind::Sse => self.seal_sse_event(unit),
            BodyKind::Json | BodyKind::JsonLines => {
                let text = unit.trim_ascii();
                if text.is_empty() {
                    return Bytes::new();
                }
                self.seal_json(text).map(|mut j| {
                    j.push(b'\n');
                    j
                })
            }
        };
        match sealed {
            Some(b) => Bytes::from(b),
            None => {
                self.dropped += 1;
                Bytes::new()
            }
        }
    }

    /// Units dropped because they were not JSON values.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn seal_json(&self, text: &[u8]) -> Option<Vec<u8>> {
        let value: Value = serde_json::from_slice(text).ok()?;
        let sealed = encrypt_json(
            value,
            &self.seed,
            &self.app_key,
            Direction::WorkerToClient,
            &mut rand::rng(),
        )
        .ok()?;
        serde_json::to_vec(&sealed).ok()
    }

    fn seal_sse_event(&self, event: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(event).ok()?;
        let mut data = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("data:") {
                if data.is_some() {
                    return None;
                }
                data = Some(rest.strip_prefix(' ').unwrap_or(rest));
            } else if !line.is_empty() && !line.starts_with(':') {
                return None;
            }
        }
        let data = data?;
        if data.trim() == "[DONE]" {
            return Some(b"data: [DONE]\n\n".to_vec());
        }
        let json = self.seal_json(data.as_bytes())?;
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(&json);
        out.extend_from_slice(b"\n\n");
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_field_encryption::decrypt_json;

    const NETWORK: [u8; 32] = [7; 32];
    const APP: [u8; 32] = [9; 32];

    /// A request body as an app encrypts it to the network key.
    fn encrypted(body: Value) -> Vec<u8> {
        let network_public = SecretSeed::from_bytes(NETWORK).public_key();
        let app = SecretSeed::from_bytes(APP);
        let v = encrypt_json(
            body,
            &app,
            &network_public,
            Direction::ClientToWorker,
            &mut rand::rng(),
        )
        .expect("encrypt");
        serde_json::to_vec(&v).expect("json")
    }

    fn chat() -> Value {
        serde_json::json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": "a secret prompt"}]})
    }

    #[test]
    fn clear_requests_pass_and_keys_without_encryption_are_refused() {
        let clear = serde_json::to_vec(&chat()).expect("json");
        assert!(matches!(open_request(&clear, None), Ok(Opened::Clear)));
        assert!(matches!(
            open_request(&clear, Some([0; 32])),
            Ok(Opened::Clear)
        ));
        assert_eq!(
            open_request(&clear, Some(NETWORK)).err(),
            Some(OpenError::KeyForClearRequest)
        );
        assert!(matches!(open_request(b"not json", None), Ok(Opened::Clear)));
    }

    #[test]
    fn encrypted_requests_open_with_the_right_key_only() {
        let body = encrypted(chat());
        assert!(!mentions(&body, b"a secret prompt"));
        assert_eq!(open_request(&body, None).err(), Some(OpenError::NoKey));
        assert!(matches!(
            open_request(&body, Some([8; 32])),
            Err(OpenError::Decrypt(_))
        ));
        let Ok(Opened::Sealed { body, sealer }) = open_request(&body, Some(NETWORK)) else {
            panic!("not opened");
        };
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["messages"][0]["content"], "a secret prompt");
        assert_eq!(v["model"], "m");
        for m in MARKERS {
            assert!(v.get(m).is_none(), "{m} left in the body");
        }
        assert_eq!(sealer.app_key, SecretSeed::from_bytes(APP).public_key());
    }

    #[test]
    fn answers_are_sealed_to_the_app_unit_by_unit_and_nothing_leaks() {
        let Ok(Opened::Sealed { mut sealer, .. }) = open_request(&encrypted(chat()), Some(NETWORK))
        else {
            panic!("not opened");
        };
        let app = SecretSeed::from_bytes(APP);
        let network_public = SecretSeed::from_bytes(NETWORK).public_key();
        let open = |bytes: &[u8]| -> Value {
            let v: Value = serde_json::from_slice(bytes).expect("json");
            decrypt_json(v, &app, Direction::WorkerToClient, Some(network_public))
                .expect("decrypt")
                .value
        };
        // A whole JSON body.
        let body =
            br#"{"choices":[{"message":{"content":"the answer"}}],"usage":{"total_tokens":3}}"#;
        let sealed = sealer.seal_unit(BodyKind::Json, body);
        assert!(!mentions(&sealed, b"the answer"));
        let v = open(&sealed);
        assert_eq!(v["choices"][0]["message"]["content"], "the answer");
        assert_eq!(v["usage"]["total_tokens"], 3, "numbers stay in clear");
        // An SSE event and the end marker.
        let ev = sealer.seal_unit(
            BodyKind::Sse,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n",
        );
        let text = std::str::from_utf8(&ev).expect("utf-8");
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"));
        assert_eq!(
            open(json.expect("sse").as_bytes())["choices"][0]["delta"]["content"],
            "tok"
        );
        assert_eq!(
            &sealer.seal_unit(BodyKind::Sse, b"data: [DONE]\n\n")[..],
            b"data: [DONE]\n\n"
        );
        // What is not a JSON value is dropped, never sent in clear.
        assert!(sealer
            .seal_unit(BodyKind::JsonLines, b"plain words\n")
            .is_empty());
        assert!(sealer
            .seal_unit(BodyKind::Sse, b"data: plain words\n\n")
            .is_empty());
        assert_eq!(sealer.dropped(), 2);
    }
}
