//! JSON Schema → llama.cpp GBNF: the grammars behind structured output (`response_format`)
//! and tool calls in the embedded engine.
//!
//! What lives here: a pure, bounded converter from a `serde_json::Value` schema to a GBNF
//! grammar string whose root rule is `root` ([`schema_to_grammar`]), the grammar for "any JSON
//! object" ([`json_object_grammar`]), and a [`GrammarBuilder`] that puts several schemas into
//! one grammar (tool calls). It does no I/O, needs no llama.cpp, and runs on untrusted client
//! input: it never panics, and every size is bounded ([`MAX_SCHEMA_BYTES`], [`MAX_DEPTH`],
//! [`MAX_RULES`], [`MAX_GRAMMAR_BYTES`], [`MAX_REPEAT`], [`MAX_STRING_LEN`]).
//!
//! What must not live here: request parsing, prompts, sampling; nothing here logs.
//!
//! Supported keywords: `type` (a name or an array of names), `properties`, `required`,
//! `additionalProperties` (absent or `false`: no other keys; `true` or a schema: extra keys
//! after the declared ones), `items`, `minItems`/`maxItems`, `enum`, `const`, `anyOf`/`oneOf`
//! (`oneOf` is generated as `anyOf`), `$ref` to `#/$defs/...` or `#/definitions/...`
//! (recursion allowed), `minLength`/`maxLength`; boolean schemas (`true` = any value).
//! Annotations and unknown keywords are ignored (a JSON Schema validator ignores them too).
//! Keywords whose constraint the grammar cannot express (`pattern`, `format`, `minimum`,
//! `multipleOf`, `allOf`, `not`, `if`, `uniqueItems`, `patternProperties`, `minProperties`,
//! ...) are refused with [`SchemaError::Unsupported`], since ignoring them could let the
//! output violate the schema. Properties are generated in the order of `required` (OpenAI
//! strict schemas list all of them there, in declared order), then the optional ones by name:
//! `serde_json::Value` does not keep the order of object keys. Bounds that only
//! shrink the set of valid outputs are applied silently: `maxItems` above [`MAX_REPEAT`] and
//! `maxLength` above [`MAX_STRING_LEN`] are capped, whitespace between tokens is limited, and
//! numbers have bounded digit counts; "any JSON value" nests at most [`ANY_DEPTH`] levels.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Largest schema accepted, as compact JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Deepest nesting of subschemas.
pub const MAX_DEPTH: usize = 32;
/// Most grammar rules generated.
pub const MAX_RULES: usize = 1000;
/// Largest grammar text generated.
pub const MAX_GRAMMAR_BYTES: usize = 256 << 10;
/// Most array items spelled out (`minItems` above it is refused, `maxItems` is capped to it).
pub const MAX_REPEAT: u64 = 64;
/// Longest string bound (`minLength` above it is refused, `maxLength` is capped to it).
pub const MAX_STRING_LEN: u64 = 1024;
/// Nesting of "any JSON value" (`{}`, `true`, `json_object`).
pub const ANY_DEPTH: usize = 8;

/// Why a schema cannot be turned into a grammar; `path` is a dotted path inside the schema
/// (empty for the root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A keyword whose constraint cannot be enforced.
    #[error("'{keyword}' is not supported in a schema (at '{path}')")]
    Unsupported { path: String, keyword: String },
    /// A malformed or unsatisfiable schema.
    #[error("invalid schema at '{path}': {reason}")]
    Invalid { path: String, reason: String },
    /// The schema text is over [`MAX_SCHEMA_BYTES`].
    #[error("the schema is larger than {MAX_SCHEMA_BYTES} bytes")]
    TooLarge,
    /// Subschemas nest deeper than [`MAX_DEPTH`].
    #[error("the schema nests deeper than {MAX_DEPTH} levels (at '{path}')")]
    TooDeep { path: String },
    /// The grammar would exceed [`MAX_RULES`] or [`MAX_GRAMMAR_BYTES`].
    #[error("the schema is too complex for a grammar ({0})")]
    TooComplex(&'static str),
}

impl SchemaError {
    /// The path inside the schema the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Unsupported { path, .. }
            | Self::Invalid { path, .. }
            | Self::TooDeep { path } => Some(path),
            Self::TooLarge | Self::TooComplex(_) => None,
        }
    }
}

/// Keywords that constrain values in ways the grammar cannot express.
const REFUSED: &[&str] = &[
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "$dynamicRef",
    "$recursiveRef",
];

/// Shared primitive rules, emitted only when used.
const PRIMITIVES: &[(&str, &str)] = &[
    // At most one newline plus indentation, or one space: no endless whitespace.
    ("ws", r#"( " " | "\n" [ \t]{0,32} )?"#),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )"#,
    ),
    ("string", r#""\"" char* "\"""#),
    ("integer", r#""-"? ( "0" | [1-9] [0-9]{0,15} )"#),
    (
        "number",
        r#""-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?"#,
    ),
    ("boolean", r#""true" | "false""#),
    ("null", r#""null""#),
];

/// A GBNF literal for `text` (`"..."` with GBNF escapes).
pub fn gbnf_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A GBNF literal matching `v` written as compact JSON.
fn json_literal(v: &Value) -> String {
    gbnf_literal(&v.to_string())
}

/// The grammar for `schema` (root rule `root`).
pub fn schema_to_grammar(schema: &Value) -> Result<String, SchemaError> {
    let mut b = GrammarBuilder::new();
    let rule = b.add_schema(schema)?;
    b.finish(&rule)
}

/// The grammar for any JSON object (nested at most [`ANY_DEPTH`] levels).
pub fn json_object_grammar() -> String {
    let mut b = GrammarBuilder::new();
    // The "any" rules are a few dozen; the bounds cannot be hit.
    let obj = b.any_object();
    b.finish(&obj).unwrap_or_default()
}

/// Builds one grammar out of several schemas and literals; rule names never clash.
#[derive(Debug, Default)]
pub struct GrammarBuilder {
    rules: Vec<(String, String)>,
    bytes: usize,
    used_primitives: Vec<&'static str>,
    any_built: bool,
    /// `$ref` targets already given a rule, per schema root.
    refs: HashMap<(usize, String), String>,
    roots: usize,
    /// Next number per rule-name hint.
    counters: HashMap<String, usize>,
}

impl GrammarBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts `schema` (its own `$ref` root) and returns the name of its rule.
    pub fn add_schema(&mut self, schema: &Value) -> Result<String, SchemaError> {
        if schema.to_string().len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge);
        }
        self.roots += 1;
        let mut conv = Conv {
            b: self,
            root: schema,
            root_id: 0,
        };
        conv.root_id = conv.b.roots;
        let expr = conv.visit(schema, "", 0)?;
        self.rule("schema", expr)
    }

    /// The rule for any JSON object.
    pub fn any_object(&mut self) -> String {
        self.build_any();
        "object0".to_owned()
    }

    /// The rule for whitespace between tokens.
    pub fn ws(&mut self) -> String {
        self.primitive("ws")
    }

    /// Adds a rule `hint<n> ::= body` and returns its name. `hint` is reduced to ASCII
    /// letters and prefixed when it could clash with the builder's own rule names.
    pub fn rule(&mut self, hint: &str, body: String) -> Result<String, SchemaError> {
        let mut hint: String = hint
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(16)
            .collect();
        if hint.is_empty() || ["value", "object", "array", "ref"].contains(&hint.as_str()) {
            hint.insert(0, 'r');
        }
        let n = self.counters.entry(hint.clone()).or_insert(0);
        let name = format!("{hint}{n}");
        *n += 1;
        self.push(name.clone(), body)?;
        Ok(name)
    }

    fn push(&mut self, name: String, body: String) -> Result<(), SchemaError> {
        if self.rules.len() >= MAX_RULES {
            return Err(SchemaError::TooComplex("too many rules"));
        }
        self.bytes += name.len() + body.len() + 6;
        if self.bytes > MAX_GRAMMAR_BYTES {
            return Err(SchemaError::TooComplex("grammar too large"));
        }
        self.rules.push((name, body));
        Ok(())
    }

    fn primitive(&mut self, name: &'static str) -> String {
        if name == "string" {
            self.primitive("char");
        }
        if !self.used_primitives.contains(&name) {
            self.used_primitives.push(name);
        }
        name.to_owned()
    }

    /// `value<d>`, `object<d>`, `array<d>` for d in 0..=ANY_DEPTH; the deepest level holds
    /// scalars only.
    fn build_any(&mut self) {
        if std::mem::replace(&mut self.any_built, true) {
            return;
        }
        for p in ["ws", "string", "number", "boolean", "null"] {
            self.primitive(p);
        }
        for d in 0..=ANY_DEPTH {
            let scalars = "string | number | boolean | null";
            let (value, object, array) = if d == ANY_DEPTH {
                (
                    scalars.to_owned(),
                    r#""{" ws "}""#.to_owned(),
                    r#""[" ws "]""#.to_owned(),
                )
            } else {
                let n = d + 1;
                (
                    format!("object{n} | array{n} | {scalars}"),
                    format!(
                        r#""{{" ws ( string ws ":" ws value{d} ws ( "," ws string ws ":" ws value{d} ws )* )? "}}""#
                    ),
                    format!(r#""[" ws ( value{d} ws ( "," ws value{d} ws )* )? "]""#),
                )
            };
            // Fixed, small: these pushes cannot exceed the bounds of an empty builder, and
            // later pushes are checked.
            self.rules.push((format!("value{d}"), value));
            self.rules.push((format!("object{d}"), object));
            self.rules.push((format!("array{d}"), array));
        }
        self.bytes += 3000;
    }

    /// The grammar text with `root ::= root_expr`.
    pub fn finish(mut self, root_expr: &str) -> Result<String, SchemaError> {
        let mut out = String::new();
        let _ = writeln!(out, "root ::= {root_expr}");
        for (name, body) in &self.rules {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        // `string` needs `char`, any-values need `ws` etc.; all were registered.
        self.used_primitives.sort_unstable();
        for (name, body) in PRIMITIVES {
            if self.used_primitives.contains(name) {
                let _ = writeln!(out, "{name} ::= {body}");
            }
        }
        if out.len() > MAX_GRAMMAR_BYTES {
            return Err(SchemaError::TooComplex("grammar too large"));
        }
        Ok(out)
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_owned()
    } else {
        format!("{path}.{seg}")
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

struct Conv<'b, 'v> {
    b: &'b mut GrammarBuilder,
    root: &'v Value,
    root_id: usize,
}

impl Conv<'_, '_> {
    /// A GBNF expression for `schema`.
    fn visit(&mut self, schema: &Value, path: &str, depth: usize) -> Result<String, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep {
                path: path.to_owned(),
            });
        }
        let obj = match schema {
            Value::Bool(true) => return Ok(self.any_value()),
            Value::Bool(false) => return Err(invalid(path, "the schema 'false' matches nothing")),
            Value::Object(o) => o,
            _ => return Err(invalid(path, "a schema must be an object or a boolean")),
        };
        if let Some(k) = REFUSED.iter().find(|k| obj.contains_key(**k)) {
            return Err(SchemaError::Unsupported {
                path: path.to_owned(),
                keyword: (*k).to_owned(),
            });
        }
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, path, depth);
        }
        let types = self.types(obj, path)?;
        for key in ["const", "enum"] {
            if let Some(v) = obj.get(key) {
                let values = match (key, v) {
                    ("const", v) => vec![v],
                    (_, Value::Array(a)) => a.iter().collect(),
                    _ => return Err(invalid(&join(path, key), "'enum' must be an array")),
                };
                let alts: Vec<String> = values
                    .into_iter()
                    .filter(|v| {
                        types
                            .as_ref()
                            .is_none_or(|t| t.iter().any(|t| type_matches(t, v)))
                    })
                    .map(json_literal)
                    .collect();
                if alts.is_empty() {
                    return Err(invalid(
                        &join(path, key),
                        "no value matches the schema's type",
                    ));
                }
                return Ok(format!("( {} )", alts.join(" | ")));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(v) = obj.get(key) {
                let subs = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| invalid(&join(path, key), "must be a non-empty array"))?;
                let mut alts = Vec::with_capacity(subs.len());
                for (i, s) in subs.iter().enumerate() {
                    let e = self.visit(s, &join(path, &format!("{key}[{i}]")), depth + 1)?;
                    alts.push(e);
                }
                return Ok(format!("( {} )", alts.join(" | ")));
            }
        }
        let types = match types {
            Some(t) => t,
            None if obj.contains_key("properties")
                || obj.contains_key("additionalProperties")
                || obj.contains_key("required") =>
            {
                vec!["object"]
            }
            None if obj.contains_key("items") => vec!["array"],
            None if obj.contains_key("minLength") || obj.contains_key("maxLength") => {
                vec!["string"]
            }
            None => return Ok(self.any_value()),
        };
        let mut alts = Vec::with_capacity(types.len());
        for t in types {
            alts.push(self.typed(t, obj, path, depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.swap_remove(0)
        } else {
            format!("( {} )", alts.join(" | "))
        })
    }

    fn any_value(&mut self) -> String {
        self.b.build_any();
        "value0".to_owned()
    }

    fn types(
        &self,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<Option<Vec<&'static str>>, SchemaError> {
        let one = |v: &Value| {
            v.as_str()
                .and_then(|s| TYPES.iter().find(|t| **t == s).copied())
                .ok_or_else(|| invalid(&join(path, "type"), "unknown type"))
        };
        match obj.get("type") {
            None => Ok(None),
            Some(Value::Array(a)) if !a.is_empty() && a.len() <= TYPES.len() => {
                let mut out = Vec::new();
                for v in a {
                    let t = one(v)?;
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                Ok(Some(out))
            }
            Some(v @ Value::String(_)) => Ok(Some(vec![one(v)?])),
            Some(_) => Err(invalid(
                &join(path, "type"),
                "must be a type name or an array of them",
            )),
        }
    }

    fn reference(&mut self, r: &Value, path: &str, depth: usize) -> Result<String, SchemaError> {
        let p = join(path, "$ref");
        let r = r.as_str().ok_or_else(|| invalid(&p, "must be a string"))?;
        let key = (self.root_id, r.to_owned());
        if let Some(name) = self.b.refs.get(&key) {
            return Ok(name.clone());
        }
        let pointer = r
            .strip_prefix('#')
            .filter(|p| p.starts_with("/$defs/") || p.starts_with("/definitions/"))
            .ok_or_else(|| SchemaError::Unsupported {
                path: p.clone(),
                keyword: "$ref (other than #/$defs/... or #/definitions/...)".into(),
            })?;
        let target = self
            .root
            .pointer(pointer)
            .ok_or_else(|| invalid(&p, "the reference does not resolve"))?;
        // Reserve the name first so recursive references point at it.
        let name = format!("ref{}", self.b.refs.len());
        self.b.refs.insert(key, name.clone());
        let body = self.visit(target, &p, depth + 1)?;
        self.b.push(name.clone(), body)?;
        Ok(name)
    }

    fn typed(
        &mut self,
        t: &'static str,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        Ok(match t {
            "object" => self.object(obj, path, depth)?,
            "array" => self.array(obj, path, depth)?,
            "string" => self.string(obj, path)?,
            other => self.b.primitive(other),
        })
    }

    fn bound(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, SchemaError> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(&join(path, key), "must be a non-negative integer")),
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let min = Self::bound(obj, "minLength", path)?.unwrap_or(0);
        let max = Self::bound(obj, "maxLength", path)?;
        if min > MAX_STRING_LEN {
            return Err(SchemaError::Unsupported {
                path: join(path, "minLength"),
                keyword: format!("minLength above {MAX_STRING_LEN}"),
            });
        }
        if max.is_some_and(|m| m < min) {
            return Err(invalid(path, "maxLength is below minLength"));
        }
        if min == 0 && max.is_none() {
            return Ok(self.b.primitive("string"));
        }
        self.b.primitive("char");
        let max = max.map(|m| m.min(MAX_STRING_LEN));
        let rep = match max {
            Some(m) => format!("{{{min},{m}}}"),
            None => format!("{{{min},}}"),
        };
        Ok(format!(r#""\"" char{rep} "\"""#))
    }

    fn array(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        let min = Self::bound(obj, "minItems", path)?.unwrap_or(0);
        let max = Self::bound(obj, "maxItems", path)?;
        if min > MAX_REPEAT {
            return Err(SchemaError::Unsupported {
                path: join(path, "minItems"),
                keyword: format!("minItems above {MAX_REPEAT}"),
            });
        }
        if max.is_some_and(|m| m < min) {
            return Err(invalid(path, "maxItems is below minItems"));
        }
        let max = max.map(|m| m.min(MAX_REPEAT));
        let item = match obj.get("items") {
            None => self.any_value(),
            Some(Value::Bool(false)) => {
                if min > 0 {
                    return Err(invalid(path, "items is false but minItems > 0"));
                }
                let ws = self.b.ws();
                return Ok(format!(r#""[" {ws} "]""#));
            }
            Some(s) => {
                let e = self.visit(s, &join(path, "items"), depth + 1)?;
                self.b.rule("item", e)?
            }
        };
        let ws = self.b.ws();
        if max == Some(0) {
            return Ok(format!(r#""[" {ws} "]""#));
        }
        let seq = match max {
            Some(1) => format!("{item} {ws}"),
            Some(m) => format!(
                r#"{item} {ws} ( "," {ws} {item} {ws} ){{{},{}}}"#,
                min.saturating_sub(1),
                m - 1
            ),
            None => format!(
                r#"{item} {ws} ( "," {ws} {item} {ws} ){{{},}}"#,
                min.saturating_sub(1)
            ),
        };
        Ok(if min == 0 {
            format!(r#""[" {ws} ( {seq} )? "]""#)
        } else {
            format!(r#""[" {ws} {seq} "]""#)
        })
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        let ws = self.b.ws();
        let props = match obj.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(invalid(&join(path, "properties"), "must be an object")),
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        invalid(&join(path, "required"), "must be an array of strings")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    &join(path, "required"),
                    "must be an array of strings",
                ))
            }
        };
        for r in &required {
            if !props.is_some_and(|p| p.contains_key(*r)) {
                return Err(invalid(
                    &join(path, "required"),
                    "a required property is not declared in 'properties'",
                ));
            }
        }
        // Extra keys: only when asked for (absent means none, a subset of what is valid).
        let extra = match obj.get("additionalProperties") {
            None | Some(Value::Bool(false)) => None,
            Some(s) => {
                let v = self.visit(s, &join(path, "additionalProperties"), depth + 1)?;
                let string = self.b.primitive("string");
                Some(
                    self.b
                        .rule("kv", format!(r#"{string} {ws} ":" {ws} {v} {ws}"#))?,
                )
            }
        };
        // One `kv` rule per declared property, in declared order.
        let mut kvs: Vec<(String, bool)> = Vec::new();
        if let Some(p) = props {
            let ppath = join(path, "properties");
            // `serde_json::Value` keeps key order only with its `preserve_order` feature (the
            // workspace's other crates turn it on; this crate alone does not), so the order is
            // that of `required` (OpenAI strict schemas list every property there, in declared
            // order), then the optional properties in the map's order (declared, or by name).
            let mut ordered: Vec<(&String, &Value)> = Vec::with_capacity(p.len());
            for r in &required {
                if let Some((k, v)) = p.get_key_value(*r) {
                    if !ordered.iter().any(|(o, _)| *o == k) {
                        ordered.push((k, v));
                    }
                }
            }
            for (k, v) in p {
                if !required.contains(&k.as_str()) {
                    ordered.push((k, v));
                }
            }
            for (name, sub) in ordered {
                let e = self.visit(sub, &join(&ppath, name), depth + 1)?;
                let key = json_literal(&Value::String(name.clone()));
                let kv = self
                    .b
                    .rule("kv", format!(r#"{key} {ws} ":" {ws} {e} {ws}"#))?;
                kvs.push((kv, required.contains(&name.as_str())));
            }
        }
        let extras_after = |extra: &Option<String>| match extra {
            Some(x) => format!(r#" ( "," {ws} {x} )*"#),
            None => String::new(),
        };
        // tail(i): properties i.. after something was written (each prefixed by a comma).
        let tail = |from: usize| -> String {
            let mut s = String::new();
            for (kv, req) in &kvs[from..] {
                if *req {
                    let _ = write!(s, r#" "," {ws} {kv}"#);
                } else {
                    let _ = write!(s, r#" ( "," {ws} {kv} )?"#);
                }
            }
            s.push_str(&extras_after(&extra));
            s
        };
        // head(i): properties i.. with nothing written yet; built from the end.
        let mut head = match &extra {
            Some(x) => format!(r#"( {x} ( "," {ws} {x} )* )?"#),
            None => String::new(),
        };
        for i in (0..kvs.len()).rev() {
            let (kv, req) = &kvs[i];
            let this = format!("{kv}{}", tail(i + 1));
            head = if *req {
                this
            } else if head.is_empty() {
                format!("( {this} )?")
            } else {
                let rest = self.b.rule("props", head)?;
                format!("( {this} | {rest} )")
            };
        }
        Ok(format!(r#""{{" {ws} {head} "}}""#))
    }
}

#[cfg(test)]
mod tests;
