//! `multipart/form-data` bodies, for `POST /v1/audio/transcriptions` (added upstream in 9060ce5):
//! parse a form, check it against OpenAI's transcription fields, and re-encode it canonically.
//! The client checks a form before anything leaves the machine; the worker checks it again (it
//! trusts no proxy) and hands the engine the canonical form.
//!
//! Parsing is [`multer`] 3.1.0 (the parser behind axum's `Multipart`), driven over the body
//! already in memory, so every poll is ready (a poll that is not counts as a malformed body,
//! never a hang). Rules:
//! - The `Content-Type` is `multipart/form-data` (else 415) with a `boundary` of 1 to 70
//!   characters from RFC 2046's `bchars`, not ending in a space (else 400 `invalid_multipart`).
//!   A body that does not use that boundary, is cut off, or has a part whose headers do not
//!   parse or that has no `name` is refused (400 `invalid_multipart`).
//! - Bounds: the whole body is at most [`ValidationLimits::max_body_bytes`] (413), and so is
//!   the file in it; at most [`ValidationLimits::max_form_parts`] parts (400 `too_many_parts`);
//!   each text field at most [`ValidationLimits::max_form_text_bytes`] (400 `field_too_large`).
//! - Fields (OpenAI's `createTranscription`): `file` (required: exactly one part with a
//!   `filename`, not empty) and `model` (required, non-empty text); optional `language` (a code
//!   of letters and `-`, at most 16), `prompt` (text), `response_format` (`json`,
//!   `verbose_json` or `diarized_json`; `text`, `srt` and `vtt` are refused as unsupported
//!   because an answer that is not JSON carries no usage and could not be billed),
//!   `temperature` (a number in 0..=1), `stream` (`true`/`false`, also `1`/`0`),
//!   `chunking_strategy` (`auto` or a JSON object `{"type":"server_vad", ...}` with
//!   `prefix_padding_ms`, `silence_duration_ms` non-negative integers and `threshold` in
//!   0..=1), and the arrays `timestamp_granularities[]` (`word`, `segment`) and `include[]`
//!   (`logprobs`), each value at most once. Text fields are UTF-8 parts without a `filename`.
//!   An unknown field is refused naming it (400 `unknown_parameter`), as is a non-array field
//!   given twice (400 `duplicate_key`).
//! - Canonical form ([`validate_multipart`]'s body): the checked fields in a fixed order, the
//!   file last, each part with only `Content-Disposition: form-data; name="..."` (the file's
//!   also `filename` and `Content-Type`), values normalised (`stream` → `true`/`false`,
//!   `temperature` as Rust prints the number, `chunking_strategy` compact JSON), under a
//!   boundary derived from the content (`cocoon-` + 32 hex digits of a SHA-256, checked absent
//!   from every value). The engine therefore reads exactly the fields that were checked, whatever
//!   its own parser makes of preambles, repeated parameters or header folding (no smuggling
//!   between two parsers). The file's name becomes `audio` plus its extension (letters and
//!   digits, at most 10, lower-cased): engines need the format, not the app's file name. Its
//!   `Content-Type` keeps only the media type (`audio/wav`), `application/octet-stream` if none.
//!   Re-checking a canonical form gives the same bytes.
//! - With `ask_stream_usage` a streaming form also gets `stream_include_usage=true`: vLLM's
//!   field that makes a transcription stream end with its usage (what the worker sends its
//!   engine, so a streamed transcription can be billed; apps cannot send it themselves).
//!
//! Error messages name fields, never echo values; nothing here logs field contents or file
//! bytes.

use std::convert::Infallible;
use std::fmt;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use sha2::{Digest, Sha256};

use crate::engine::Endpoint;
use crate::json::{parse_strict, JsonValue};
use crate::validate::{codes, truncate, ValidatedRequest, ValidationError, ValidationLimits};

/// The media type of a form body.
pub const MULTIPART_FORM_DATA: &str = "multipart/form-data";

/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;
/// Longest language code accepted.
const MAX_LANGUAGE: usize = 16;
/// Longest file extension kept.
const MAX_EXTENSION: usize = 10;
/// Nesting bound of `chunking_strategy`'s JSON (one flat object).
const CHUNKING_DEPTH: usize = 2;

/// One part of a parsed form.
#[derive(Clone, PartialEq, Eq)]
pub struct FormPart {
    /// The part's `name`.
    pub name: String,
    /// The part's `filename`: `Some` for a file, `None` for a text field.
    pub filename: Option<String>,
    /// The part's media type (`audio/wav`), when it declared one that parses.
    pub content_type: Option<String>,
    /// The part's content.
    pub data: Bytes,
}

/// A parsed `multipart/form-data` body: its parts in order (see [`parse_form`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    parts: Vec<FormPart>,
}

/// How one field is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Model,
    Language,
    Prompt,
    ResponseFormat,
    Temperature,
    Stream,
    ChunkingStrategy,
    /// An array field (`name[]`): each part one value from this list, each at most once.
    OneOf(&'static [&'static str]),
}

/// The transcription form's fields, in the canonical order (the file last).
const FIELDS: &[(&str, Kind)] = &[
    ("model", Kind::Model),
    ("language", Kind::Language),
    ("prompt", Kind::Prompt),
    ("response_format", Kind::ResponseFormat),
    ("temperature", Kind::Temperature),
    (
        "timestamp_granularities[]",
        Kind::OneOf(&["word", "segment"]),
    ),
    ("stream", Kind::Stream),
    ("chunking_strategy", Kind::ChunkingStrategy),
    ("include[]", Kind::OneOf(&["logprobs"])),
    ("file", Kind::File),
];

/// Response formats answered in JSON (so their usage can be counted and billed).
const JSON_FORMATS: [&str; 3] = ["json", "verbose_json", "diarized_json"];
/// Response formats OpenAI accepts that answer plain text.
const TEXT_FORMATS: [&str; 3] = ["text", "srt", "vtt"];

// === impl FormPart ===

impl fmt::Debug for FormPart {
    // Never the content, nor the app's file name: sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormPart")
            .field("name", &self.name)
            .field("file", &self.filename.is_some())
            .field("content_type", &self.content_type)
            .field("len", &self.data.len())
            .finish()
    }
}

impl FormPart {
    /// A text field.
    pub fn text(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            filename: None,
            content_type: None,
            data: Bytes::from(value.into()),
        }
    }

    /// A file part.
    pub fn file(name: &str, filename: &str, content_type: &str, data: impl Into<Bytes>) -> Self {
        Self {
            name: name.to_owned(),
            filename: Some(filename.to_owned()),
            content_type: Some(content_type.to_owned()),
            data: data.into(),
        }
    }

    /// The content as a text field's value: refused when the part is a file or not UTF-8.
    fn as_text(&self) -> Result<&str, ValidationError> {
        let name = truncate(&self.name);
        if self.filename.is_some() {
            return Err(ValidationError::new(
                codes::INVALID_TYPE,
                Some(&name),
                format!("'{name}' must be a text field, not a file"),
            ));
        }
        std::str::from_utf8(&self.data)
            .map_err(|_| ValidationError::bad_value(&name, format!("'{name}' must be UTF-8 text")))
    }
}

// === impl Form ===

impl Form {
    /// A form of these parts (to build a request: [`Form::encode`]).
    pub fn new(parts: Vec<FormPart>) -> Self {
        Self { parts }
    }

    /// The form as a `multipart/form-data` body: its `Content-Type` (with the boundary) and
    /// bytes, encoded as [`validate_multipart`] encodes its canonical forms. Fails only when no
    /// boundary fits, which no real input causes.
    pub fn encode(&self) -> Result<(String, Bytes), ValidationError> {
        encode(&self.parts)
    }

    /// The parts, in the order they came.
    pub fn parts(&self) -> &[FormPart] {
        &self.parts
    }

    /// The first text field named `name`, if there is one and it is UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .and_then(|p| std::str::from_utf8(&p.data).ok())
    }

    /// Removes every part named `name` and returns its text: `None` when there is none; refused
    /// when there are several, or it is a file or not UTF-8. For fields a caller handles itself
    /// (Cocoon's `max_coefficient`, `timeout` on the client) before [`validate_transcription`].
    pub fn take_text(&mut self, name: &str) -> Result<Option<String>, ValidationError> {
        let (taken, kept): (Vec<FormPart>, Vec<FormPart>) = std::mem::take(&mut self.parts)
            .into_iter()
            .partition(|p| p.name == name);
        self.parts = kept;
        match taken.as_slice() {
            [] => Ok(None),
            [one] => one.as_text().map(|t| Some(t.to_owned())),
            _ => Err(duplicate(name)),
        }
    }
}

// === parsing ===

/// Parses a `multipart/form-data` body into its parts (the structural checks and bounds of the
/// module docs; no field rules). `content_type` is the request's `Content-Type`, `None` when
/// it had none.
pub fn parse_form(
    content_type: Option<&str>,
    body: &[u8],
    limits: &ValidationLimits,
) -> Result<Form, ValidationError> {
    crate::validate::check_body_size(body, limits)?;
    let boundary = boundary(content_type)?;
    let chunk = Bytes::copy_from_slice(body);
    let mut reader = multer::Multipart::new(
        futures::stream::iter([Ok::<_, Infallible>(chunk)]),
        boundary,
    );
    let mut parts = Vec::new();
    loop {
        // The whole body is in memory: every poll is ready, or the form is malformed.
        let mut field = match reader.next_field().now_or_never() {
            Some(Ok(Some(field))) => field,
            Some(Ok(None)) => break,
            Some(Err(e)) => return Err(multer_error(&e)),
            None => return Err(incomplete()),
        };
        if parts.len() >= limits.max_form_parts {
            return Err(ValidationError::new(
                codes::TOO_MANY_PARTS,
                None,
                format!("the form has more than {} parts", limits.max_form_parts),
            ));
        }
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(ValidationError::new(
                codes::INVALID_MULTIPART,
                None,
                "a part of the form has no name",
            ));
        };
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.essence_str().to_owned());
        let limit = match filename {
            Some(_) => limits.max_body_bytes,
            None => limits.max_form_text_bytes,
        };
        let mut data = BytesMut::new();
        loop {
            match field.chunk().now_or_never() {
                Some(Ok(Some(chunk))) => {
                    if data.len().saturating_add(chunk.len()) > limit {
                        let shown = truncate(&name);
                        return Err(ValidationError::new(
                            codes::FIELD_TOO_LARGE,
                            Some(&shown),
                            format!("'{shown}' is larger than {limit} bytes"),
                        ));
                    }
                    data.extend_from_slice(&chunk);
                }
                Some(Ok(None)) => break,
                Some(Err(e)) => return Err(multer_error(&e)),
                None => return Err(incomplete()),
            }
        }
        parts.push(FormPart {
            name,
            filename,
            content_type,
            data: data.freeze(),
        });
    }
    Ok(Form { parts })
}

/// The boundary a `Content-Type` names, checked against RFC 2046.
fn boundary(content_type: Option<&str>) -> Result<String, ValidationError> {
    let wrong_type = || {
        ValidationError::new(
            codes::UNSUPPORTED_MEDIA_TYPE,
            None,
            "the body must be multipart/form-data (Content-Type: multipart/form-data; boundary=...)",
        )
    };
    let ct = content_type.ok_or_else(wrong_type)?;
    let media = ct.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(MULTIPART_FORM_DATA) {
        return Err(wrong_type());
    }
    let Ok(boundary) = multer::parse_boundary(ct) else {
        return Err(ValidationError::new(
            codes::INVALID_MULTIPART,
            None,
            "the multipart/form-data Content-Type names no usable boundary",
        ));
    };
    let bchar = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if boundary.is_empty()
        || boundary.len() > MAX_BOUNDARY
        || !boundary.chars().all(bchar)
        || boundary.ends_with(' ')
    {
        return Err(ValidationError::new(
            codes::INVALID_MULTIPART,
            None,
            format!(
                "the multipart boundary must be 1 to {MAX_BOUNDARY} letters, digits or '()+_,-./:=? (not ending in a space)"
            ),
        ));
    }
    Ok(boundary)
}

fn incomplete() -> ValidationError {
    ValidationError::new(
        codes::INVALID_MULTIPART,
        None,
        "the multipart body is incomplete or does not use the boundary of its Content-Type",
    )
}

/// A parse error, without multer's text (which may quote header values).
fn multer_error(e: &multer::Error) -> ValidationError {
    match e {
        multer::Error::ReadHeaderFailed(_)
        | multer::Error::DecodeHeaderName { .. }
        | multer::Error::DecodeHeaderValue { .. } => ValidationError::new(
            codes::INVALID_MULTIPART,
            None,
            "the headers of a part of the form do not parse",
        ),
        _ => incomplete(),
    }
}

// === validation ===

/// Parses and checks a transcription form and returns it in canonical form (see the module
/// docs). `content_type` is the request's `Content-Type` (`None` when it had none); with
/// `ask_stream_usage` a streaming form also asks the engine for usage.
pub fn validate_multipart(
    endpoint: Endpoint,
    content_type: Option<&str>,
    body: &[u8],
    ask_stream_usage: bool,
    limits: &ValidationLimits,
) -> Result<ValidatedRequest, ValidationError> {
    if !endpoint.is_multipart() {
        return Err(ValidationError::new(
            codes::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("{endpoint} takes a JSON body, not a multipart form"),
        ));
    }
    let form = parse_form(content_type, body, limits)?;
    validate_transcription(form, ask_stream_usage)
}

/// Checks a parsed form against the transcription fields and encodes it canonically (see the
/// module docs).
pub fn validate_transcription(
    form: Form,
    ask_stream_usage: bool,
) -> Result<ValidatedRequest, ValidationError> {
    // Unknown names first, as for JSON bodies: a stray field is reported as such.
    if let Some(p) = form
        .parts
        .iter()
        .find(|p| !FIELDS.iter().any(|(n, _)| *n == p.name))
    {
        let shown = truncate(&p.name);
        return Err(ValidationError::new(
            codes::UNKNOWN_PARAMETER,
            Some(&shown),
            format!("unknown parameter '{shown}'"),
        ));
    }
    let mut out: Vec<FormPart> = Vec::with_capacity(form.parts.len() + 1);
    let mut model = None;
    let mut stream = false;
    let mut prompt_tokens_floor = 0;
    for (name, kind) in FIELDS {
        let given: Vec<&FormPart> = form.parts.iter().filter(|p| p.name == *name).collect();
        if let Kind::OneOf(allowed) = kind {
            let mut seen: Vec<&str> = Vec::new();
            for p in given {
                let v = p.as_text()?;
                let Some(v) = allowed.iter().find(|a| **a == v) else {
                    return Err(ValidationError::bad_value(
                        name,
                        format!("'{name}' values must be one of {}", allowed.join(", ")),
                    ));
                };
                if seen.contains(v) {
                    return Err(ValidationError::bad_value(
                        name,
                        format!("'{name}' lists '{v}' twice"),
                    ));
                }
                seen.push(v);
                out.push(FormPart::text(name, *v));
            }
            continue;
        }
        let part = match given.as_slice() {
            [] => match kind {
                Kind::File | Kind::Model => return Err(missing(name)),
                _ => continue,
            },
            [one] => *one,
            _ => return Err(duplicate(name)),
        };
        if *kind == Kind::File {
            out.push(check_file(part)?);
            continue;
        }
        let text = part.as_text()?;
        let value = match kind {
            Kind::Model if text.is_empty() => {
                return Err(ValidationError::bad_value(
                    name,
                    "'model' must not be empty",
                ))
            }
            Kind::Model => {
                model = Some(text.to_owned());
                text.to_owned()
            }
            Kind::Language => check_language(text)?,
            Kind::Prompt => {
                prompt_tokens_floor = text.split_whitespace().count() as u64;
                text.to_owned()
            }
            Kind::ResponseFormat => check_response_format(text)?,
            Kind::Temperature => check_temperature(text)?,
            Kind::Stream => {
                stream = parse_bool(name, text)?;
                stream.to_string()
            }
            Kind::ChunkingStrategy => check_chunking_strategy(text)?,
            Kind::File | Kind::OneOf(_) => continue, // handled above
        };
        out.push(FormPart::text(name, value));
    }
    let Some(model) = model else {
        return Err(missing("model"));
    };
    if stream && ask_stream_usage {
        // Before the file, which stays last.
        let at = out.len().saturating_sub(1);
        out.insert(at, FormPart::text("stream_include_usage", "true"));
    }
    let (content_type, body) = encode(&out)?;
    Ok(ValidatedRequest {
        endpoint: Endpoint::AudioTranscriptions,
        model,
        content_type: Some(content_type),
        stream,
        max_tokens: None,
        body,
        prompt_tokens_floor,
    })
}

fn missing(name: &str) -> ValidationError {
    ValidationError::new(
        codes::MISSING_PARAMETER,
        Some(name),
        format!("missing required parameter '{name}'"),
    )
}

fn duplicate(name: &str) -> ValidationError {
    let shown = truncate(name);
    ValidationError::new(
        codes::DUPLICATE_KEY,
        Some(&shown),
        format!("duplicate field '{shown}' in the form"),
    )
}

/// The `file` part, canonical: `audio.<ext>`, its media type only.
fn check_file(part: &FormPart) -> Result<FormPart, ValidationError> {
    let Some(filename) = &part.filename else {
        return Err(ValidationError::new(
            codes::INVALID_TYPE,
            Some("file"),
            "'file' must be a file (a part with a filename)",
        ));
    };
    if part.data.is_empty() {
        return Err(ValidationError::bad_value("file", "'file' is empty"));
    }
    let base = filename.rsplit(['/', '\\']).next().unwrap_or_default();
    let extension = base.rsplit_once('.').map(|(_, ext)| ext).filter(|ext| {
        (1..=MAX_EXTENSION).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let filename = match extension {
        Some(ext) => format!("audio.{}", ext.to_ascii_lowercase()),
        None => "audio".to_owned(),
    };
    Ok(FormPart {
        name: "file".to_owned(),
        filename: Some(filename),
        content_type: Some(
            part.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
        ),
        data: part.data.clone(),
    })
}

fn check_language(text: &str) -> Result<String, ValidationError> {
    if (1..=MAX_LANGUAGE).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
    {
        Ok(text.to_owned())
    } else {
        Err(ValidationError::bad_value(
            "language",
            format!("'language' must be a language code such as 'en' (letters and '-', at most {MAX_LANGUAGE})"),
        ))
    }
}

fn check_response_format(text: &str) -> Result<String, ValidationError> {
    if JSON_FORMATS.contains(&text) {
        return Ok(text.to_owned());
    }
    if TEXT_FORMATS.contains(&text) {
        return Err(ValidationError::new(
            codes::UNSUPPORTED_VALUE,
            Some("response_format"),
            format!(
                "'response_format' {text} is not supported: answers must be JSON ({}) so that their usage can be billed",
                JSON_FORMATS.join(", ")
            ),
        ));
    }
    Err(ValidationError::bad_value(
        "response_format",
        format!(
            "'response_format' must be one of {}",
            JSON_FORMATS.join(", ")
        ),
    ))
}

fn check_temperature(text: &str) -> Result<String, ValidationError> {
    let t: f64 = text.trim().parse().map_err(|_| {
        ValidationError::new(
            codes::INVALID_TYPE,
            Some("temperature"),
            "'temperature' must be a number",
        )
    })?;
    if !(0.0..=1.0).contains(&t) {
        return Err(ValidationError::bad_value(
            "temperature",
            "'temperature' must be between 0 and 1",
        ));
    }
    Ok(t.to_string())
}

fn parse_bool(name: &str, text: &str) -> Result<bool, ValidationError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Ok(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Ok(false)
    } else {
        Err(ValidationError::new(
            codes::INVALID_TYPE,
            Some(name),
            format!("'{name}' must be a boolean ('true' or 'false')"),
        ))
    }
}

fn check_chunking_strategy(text: &str) -> Result<String, ValidationError> {
    const NAME: &str = "chunking_strategy";
    if text == "auto" {
        return Ok(text.to_owned());
    }
    let value = parse_strict(text.as_bytes(), CHUNKING_DEPTH).map_err(|_| {
        ValidationError::new(
            codes::INVALID_TYPE,
            Some(NAME),
            "'chunking_strategy' must be 'auto' or a JSON object",
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(ValidationError::bad_type(
            NAME,
            "'auto' or a JSON object",
            &value,
        ));
    };
    if obj.get("type").and_then(JsonValue::as_str) != Some("server_vad") {
        return Err(ValidationError::bad_value(
            "chunking_strategy.type",
            "'chunking_strategy.type' must be 'server_vad'",
        ));
    }
    for (k, v) in obj.iter() {
        let param = format!("{NAME}.{}", truncate(k));
        let ok = match k {
            "type" => true,
            "prefix_padding_ms" | "silence_duration_ms" => v
                .as_i128()
                .is_some_and(|n| (0..=i128::from(u32::MAX)).contains(&n)),
            "threshold" => v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)),
            _ => {
                return Err(ValidationError::new(
                    codes::UNKNOWN_PARAMETER,
                    Some(&param),
                    format!("unknown parameter '{param}'"),
                ))
            }
        };
        if !ok {
            return Err(ValidationError::bad_value(
                &param,
                format!("'{param}' is out of range or of the wrong type"),
            ));
        }
    }
    String::from_utf8(value.to_vec())
        .map_err(|_| ValidationError::bad_value(NAME, "'chunking_strategy' must be UTF-8 text"))
}

// === encoding ===

/// Encodes `parts` as `multipart/form-data` under a boundary absent from every value; returns
/// the `Content-Type` and the body.
fn encode(parts: &[FormPart]) -> Result<(String, Bytes), ValidationError> {
    let boundary = (0u8..8)
        .map(|salt| content_boundary(parts, salt))
        .find(|b| !parts.iter().any(|p| mentions(p, b.as_bytes())))
        .ok_or_else(|| {
            // 8 distinct SHA-256 prefixes all inside the content: not a real input.
            ValidationError::new(
                codes::INVALID_MULTIPART,
                None,
                "no multipart boundary fits this form",
            )
        })?;
    let mut body = BytesMut::new();
    for p in parts {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(p.name.as_bytes());
        body.extend_from_slice(b"\"");
        if let Some(f) = &p.filename {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(f.as_bytes());
            body.extend_from_slice(b"\"");
        }
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = &p.content_type {
            body.extend_from_slice(b"Content-Type: ");
            body.extend_from_slice(ct.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    Ok((
        format!("{MULTIPART_FORM_DATA}; boundary={boundary}"),
        body.freeze(),
    ))
}

/// `cocoon-` and 32 hex digits of the SHA-256 of `salt` and every part.
fn content_boundary(parts: &[FormPart], salt: u8) -> String {
    let mut h = Sha256::new();
    h.update([salt]);
    for p in parts {
        for field in [
            p.name.as_bytes(),
            p.filename.as_deref().unwrap_or_default().as_bytes(),
            p.content_type.as_deref().unwrap_or_default().as_bytes(),
            &p.data,
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
    }
    format!("cocoon-{}", hex::encode(&h.finalize()[..16]))
}

fn mentions(p: &FormPart, needle: &[u8]) -> bool {
    memchr::memmem::find(&p.data, needle).is_some()
        || [p.filename.as_deref(), p.content_type.as_deref()]
            .into_iter()
            .flatten()
            .any(|s| memchr::memmem::find(s.as_bytes(), needle).is_some())
}

#[cfg(test)]
mod tests;
