//! Whole JSON messages (ENCRYPTION.md §2–§4.2): upstream's `encrypt_json` / `decrypt_json` with
//! the four marker fields, the fields kept in clear at every depth, and the bounded walk over
//! untrusted JSON; plus the two reads client-side code needs from a request body
//! ([`is_encrypted`], [`receiver_public_key`]).
//!
//! What must not live here: string cryptography (in `field`), key agreement (in `keys`), and any
//! field content or key bytes in errors: a [`JsonError`] names at most the path of a field
//! (object keys and array indexes, which travel in clear anyway).

use base64::Engine as _;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::field::{decrypt_string, encrypt_string, FieldError};
use crate::keys::{parse_public_key, shared_secret, KeyError, SecretSeed};
use crate::Direction;

#[cfg(test)]
mod tests;

/// Deepest nesting of objects and arrays the walk enters below the top-level object. Upstream
/// has no limit; serde_json's parser stops at 128, and no OpenAI body needs more than a dozen.
pub const MAX_DEPTH: usize = 64;

/// Most object members and array elements one message may have in the parts the walk enters
/// (fields kept in clear are not entered, so they do not count beyond themselves).
pub const MAX_FIELDS: usize = 100_000;

/// The version string `encrypt_json` writes into `is_encrypted`. Decryption does not check the
/// value, only that the field is a string (as upstream).
pub const VERSION: &str = "v1";

/// Marker fields: set by [`encrypt_json`], required by [`decrypt_json`], never encrypted.
pub const MARKER_FIELDS: [&str; 4] = [
    "is_encrypted",
    "sender_public_key",
    "receiver_public_key",
    "encryption_nonce",
];

/// Fields kept in clear at every depth so client-runner and proxy can route, reserve and time a
/// request (upstream's `should_encrypt` list). Their values, nested ones included, are not
/// entered.
pub const CLEAR_FIELDS: [&str; 8] = [
    "model",
    "max_completion_tokens",
    "max_tokens",
    "max_coefficient",
    "timeout",
    "debug",
    "enable_debug",
    "request_guid",
];

const IS_ENCRYPTED: &str = MARKER_FIELDS[0];
const SENDER_PUBLIC_KEY: &str = MARKER_FIELDS[1];
const RECEIVER_PUBLIC_KEY: &str = MARKER_FIELDS[2];
const ENCRYPTION_NONCE: &str = MARKER_FIELDS[3];

/// Longest field path an error carries; longer ones are cut (keys are untrusted and unbounded).
const MAX_PATH_LEN: usize = 200;

/// Why a message was not encrypted or decrypted. Carries no field content and no key bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The message is not a JSON object (upstream cannot add the marker fields to anything
    /// else, and treats anything else as unencrypted).
    #[error("message is not a JSON object")]
    NotAnObject,
    /// [`decrypt_json`] got an object without `is_encrypted`. Whether that is acceptable is the
    /// caller's decision (upstream's worker takes it only when it was given no key).
    #[error("message has no is_encrypted field")]
    NotEncrypted,
    /// `is_encrypted` is present but one of the four marker fields is missing or not a string.
    #[error("not all encryption-related fields are present")]
    MissingEncryptionFields,
    /// A public key (named by `field`) is malformed, not a curve point, or agrees to zero.
    #[error("{field}: {reason}")]
    Key {
        /// `sender_public_key` or `receiver_public_key`.
        field: &'static str,
        /// Which check failed.
        reason: KeyError,
    },
    /// `receiver_public_key` is not the public key of the seed given to decrypt
    /// (upstream: "public key mismatch").
    #[error("public key mismatch: receiver_public_key is not the decrypting key's")]
    ReceiverMismatch,
    /// `sender_public_key` is not the sender the caller expected (upstream's
    /// `check_public_key`: "public key mismatch").
    #[error("public key mismatch: sender_public_key is not the expected sender")]
    SenderMismatch,
    /// One string field did not decrypt.
    #[error("field {path}: {reason}")]
    Field {
        /// Object keys and array indexes from the top, joined by `.` (cut at 200 bytes).
        path: String,
        /// Which check failed.
        reason: FieldError,
    },
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} at {path}")]
    TooDeep {
        /// Where the limit was passed.
        path: String,
        /// [`MAX_DEPTH`].
        limit: usize,
    },
    /// More than [`MAX_FIELDS`] members and elements.
    #[error("more than {limit} fields")]
    TooManyFields {
        /// [`MAX_FIELDS`].
        limit: usize,
    },
}

/// A decrypted message and the keys it named.
#[derive(Debug, Clone, PartialEq)]
pub struct Decrypted {
    /// The message with every encrypted field in clear. The four marker fields are **still
    /// there**, as in the body upstream's worker forwards to its inference backend.
    pub value: Value,
    /// Who encrypted it: for a request the app's key (the answer goes to it), for an answer the
    /// network key.
    pub sender_public_key: [u8; 32],
    /// Whom it was for: the public key of the seed that decrypted it.
    pub receiver_public_key: [u8; 32],
}

/// Whether a request or answer body is encrypted: an object with an `is_encrypted` member of any
/// value (upstream checks presence only).
pub fn is_encrypted(body: &Value) -> bool {
    body.as_object()
        .is_some_and(|obj| obj.contains_key(IS_ENCRYPTED))
}

/// The key a request is encrypted to, as client-runner reads it for `client.runQueryEx`'s
/// `public_key`: `None` without a `receiver_public_key` member (upstream then sends all zeros),
/// an error when the member is not a string or not a key in one of the accepted forms.
pub fn receiver_public_key(body: &Value) -> Result<Option<[u8; 32]>, JsonError> {
    let Some(field) = body
        .as_object()
        .and_then(|obj| obj.get(RECEIVER_PUBLIC_KEY))
    else {
        return Ok(None);
    };
    let key_error = |reason| JsonError::Key {
        field: RECEIVER_PUBLIC_KEY,
        reason,
    };
    let text = field.as_str().ok_or(key_error(KeyError::BadFormat))?;
    parse_public_key(text).map(Some).map_err(key_error)
}

/// Encrypts a message as upstream's `encrypt_json(value, own, peer_public, dir)`: sets
/// `is_encrypted = "v1"`, `sender_public_key = hex(own public key)`, `receiver_public_key =
/// hex(peer_public)`, `encryption_nonce = base64(32 random bytes)`, then replaces every string
/// value outside [`MARKER_FIELDS`] and [`CLEAR_FIELDS`] (at any depth, array elements included)
/// by its `ENC_…` form. Keys, numbers, booleans and null stay as they are.
///
/// The app encrypts a request with `ClientToWorker` to the network key; the worker encrypts each
/// answer value with `WorkerToClient` to the request's `sender_public_key`.
///
/// Key order: objects keep serde_json's map order: sorted keys, unless serde_json's
/// `preserve_order` feature is on somewhere in the build (dcap-qvl turns it on in this
/// workspace), then insertion order with new marker fields last. Upstream dumps sorted keys; a
/// caller that must match its bytes sorts every object before serialising. Decryption does not
/// depend on order.
pub fn encrypt_json(
    value: Value,
    own: &SecretSeed,
    peer_public: &[u8; 32],
    dir: Direction,
    rng: &mut (impl rand::CryptoRng + ?Sized),
) -> Result<Value, JsonError> {
    let Value::Object(mut obj) = value else {
        return Err(JsonError::NotAnObject);
    };
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    let secret = shared_secret(own, peer_public, &nonce, dir).map_err(|reason| JsonError::Key {
        field: RECEIVER_PUBLIC_KEY,
        reason,
    })?;

    let own_public = hex::encode(own.public_key());
    obj.insert(IS_ENCRYPTED.to_owned(), VERSION.into());
    obj.insert(SENDER_PUBLIC_KEY.to_owned(), own_public.into());
    obj.insert(
        RECEIVER_PUBLIC_KEY.to_owned(),
        hex::encode(peer_public).into(),
    );
    obj.insert(ENCRYPTION_NONCE.to_owned(), nonce.into());

    walk_strings(&mut obj, |s| {
        *s = encrypt_string(&secret, s, rng);
        Ok(())
    })?;
    Ok(Value::Object(obj))
}

/// Decrypts a message as upstream's `decrypt_json(value, own, expected_sender, check, dir)`, with
/// its checks in its order:
///
/// 1. an object with `is_encrypted` ([`JsonError::NotAnObject`], [`JsonError::NotEncrypted`]);
/// 2. all four [`MARKER_FIELDS`] are strings ([`JsonError::MissingEncryptionFields`]);
/// 3. both keys parse (64 hex, 44 base64 or 32 raw characters);
/// 4. `receiver_public_key` is `own`'s public key ([`JsonError::ReceiverMismatch`]), and with
///    `expected_sender`, `sender_public_key` is that key ([`JsonError::SenderMismatch`]);
/// 5. the shared secret (sender key, nonce, `dir`), then every string outside the marker and
///    clear fields: `ENC_…` decrypted, `DEC_…` taken as it is, anything else refused.
///
/// The worker decrypts a request with `ClientToWorker` and no expected sender (the request's
/// sender key is whoever the app is); the app decrypts each answer value with `WorkerToClient`
/// and the network key it encrypted to as the expected sender.
///
/// The four marker fields stay in the returned value, as upstream forwards them; a caller that
/// does not want them removes them. Key order: as [`encrypt_json`].
pub fn decrypt_json(
    value: Value,
    own: &SecretSeed,
    dir: Direction,
    expected_sender: Option<[u8; 32]>,
) -> Result<Decrypted, JsonError> {
    let Value::Object(mut obj) = value else {
        return Err(JsonError::NotAnObject);
    };
    if !obj.contains_key(IS_ENCRYPTED) {
        return Err(JsonError::NotEncrypted);
    }
    let marker = |name: &str| obj.get(name).and_then(Value::as_str);
    let (Some(_), Some(sender), Some(receiver), Some(nonce)) = (
        marker(IS_ENCRYPTED),
        marker(SENDER_PUBLIC_KEY),
        marker(RECEIVER_PUBLIC_KEY),
        marker(ENCRYPTION_NONCE),
    ) else {
        return Err(JsonError::MissingEncryptionFields);
    };
    let sender_key = parse_public_key(sender).map_err(|reason| JsonError::Key {
        field: SENDER_PUBLIC_KEY,
        reason,
    })?;
    let receiver_key = parse_public_key(receiver).map_err(|reason| JsonError::Key {
        field: RECEIVER_PUBLIC_KEY,
        reason,
    })?;
    if own.public_key() != receiver_key {
        return Err(JsonError::ReceiverMismatch);
    }
    if expected_sender.is_some_and(|expected| expected != sender_key) {
        return Err(JsonError::SenderMismatch);
    }
    let secret = shared_secret(own, &sender_key, nonce, dir).map_err(|reason| JsonError::Key {
        field: SENDER_PUBLIC_KEY,
        reason,
    })?;

    walk_strings(&mut obj, |s| {
        *s = decrypt_string(&secret, s)?;
        Ok(())
    })?;
    Ok(Decrypted {
        value: Value::Object(obj),
        sender_public_key: sender_key,
        receiver_public_key: receiver_key,
    })
}

/// Whether upstream's `should_encrypt` takes a member of this name.
fn is_walked(name: &str) -> bool {
    !MARKER_FIELDS.contains(&name) && !CLEAR_FIELDS.contains(&name)
}

/// A container still to be walked.
enum Container<'a> {
    Object(&'a mut Map<String, Value>),
    Array(&'a mut Vec<Value>),
}

/// Where a container sits, for error paths: its parent's index in the arena and its own name.
struct PathNode {
    parent: Option<usize>,
    name: Name,
}

enum Name {
    Root,
    Key(String),
    Index(usize),
}

/// One container still to be walked: the container, its node in the path arena, its depth.
type Frame<'a> = (Container<'a>, usize, usize);

/// Calls `on_string` for every string upstream's `encrypt_all_strings` / `decrypt_all_strings`
/// touch: members not in the marker or clear lists (array elements always), at every depth;
/// objects and arrays under such members are entered, those under skipped members are not.
/// Iterative, with [`MAX_DEPTH`] and [`MAX_FIELDS`] enforced.
fn walk_strings(
    root: &mut Map<String, Value>,
    on_string: impl FnMut(&mut String) -> Result<(), FieldError>,
) -> Result<(), JsonError> {
    let mut walker = Walker {
        nodes: vec![PathNode {
            parent: None,
            name: Name::Root,
        }],
        fields: 0,
        on_string,
    };
    let mut stack: Vec<Frame<'_>> = vec![(Container::Object(root), 0, 0)];
    while let Some((container, node, depth)) = stack.pop() {
        match container {
            Container::Object(map) => {
                for (key, value) in map.iter_mut() {
                    walker.count()?;
                    if is_walked(key) {
                        walker.visit(value, || Name::Key(key.clone()), node, depth, &mut stack)?;
                    }
                }
            }
            Container::Array(items) => {
                for (index, value) in items.iter_mut().enumerate() {
                    walker.count()?;
                    walker.visit(value, || Name::Index(index), node, depth, &mut stack)?;
                }
            }
        }
    }
    Ok(())
}

struct Walker<F> {
    /// Every container entered so far, for error paths.
    nodes: Vec<PathNode>,
    /// Members and elements seen so far.
    fields: usize,
    on_string: F,
}

// === impl Walker ===

impl<F: FnMut(&mut String) -> Result<(), FieldError>> Walker<F> {
    fn count(&mut self) -> Result<(), JsonError> {
        self.fields += 1;
        if self.fields > MAX_FIELDS {
            return Err(JsonError::TooManyFields { limit: MAX_FIELDS });
        }
        Ok(())
    }

    /// Handles one walked member or element of the container `parent` (at `depth`): a string
    /// goes to `on_string`, an object or array is queued one level deeper.
    fn visit<'a>(
        &mut self,
        value: &'a mut Value,
        name: impl FnOnce() -> Name,
        parent: usize,
        depth: usize,
        stack: &mut Vec<Frame<'a>>,
    ) -> Result<(), JsonError> {
        let child = match value {
            Value::String(s) => {
                return (self.on_string)(s).map_err(|reason| JsonError::Field {
                    path: render_path(&self.nodes, parent, &name()),
                    reason,
                });
            }
            Value::Object(map) => Container::Object(map),
            Value::Array(items) => Container::Array(items),
            Value::Null | Value::Bool(_) | Value::Number(_) => return Ok(()),
        };
        if depth >= MAX_DEPTH {
            return Err(JsonError::TooDeep {
                path: render_path(&self.nodes, parent, &name()),
                limit: MAX_DEPTH,
            });
        }
        self.nodes.push(PathNode {
            parent: Some(parent),
            name: name(),
        });
        stack.push((child, self.nodes.len() - 1, depth + 1));
        Ok(())
    }
}

/// `a.b.0.c` for `leaf` in the container `node`, cut to [`MAX_PATH_LEN`] bytes.
fn render_path(nodes: &[PathNode], node: usize, leaf: &Name) -> String {
    let mut names = vec![leaf];
    let mut at = Some(node);
    while let Some(index) = at {
        let Some(path_node) = nodes.get(index) else {
            break;
        };
        names.push(&path_node.name);
        at = path_node.parent;
    }
    let mut path = String::new();
    for name in names.iter().rev() {
        let part = match name {
            Name::Root => continue,
            Name::Key(key) => key.clone(),
            Name::Index(index) => index.to_string(),
        };
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&part);
        if path.len() > MAX_PATH_LEN {
            break;
        }
    }
    if path.len() > MAX_PATH_LEN {
        let mut cut = MAX_PATH_LEN;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    path
}
