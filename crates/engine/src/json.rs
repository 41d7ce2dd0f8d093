//! A strict, order-preserving JSON value used by request validation.
//!
//! `serde_json::Value` silently keeps the last of duplicate keys and (without the workspace-wide
//! `preserve_order` feature, which we do not turn on because feature unification would change
//! every crate's output) sorts object keys. Request validation needs the opposite: duplicate keys
//! anywhere are an error (an engine might read the other copy: request smuggling), nesting depth
//! is capped, and re-serialisation keeps the client's key order. This module only parses and
//! serialises; it knows nothing about OpenAI fields.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// A JSON value whose objects keep their key order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<JsonValue>),
    Object(JsonObject),
}

/// An object as an ordered list of unique keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct JsonObject(Vec<(String, JsonValue)>);

/// Why [`parse_strict`] refused the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not JSON (or trailing garbage). The message is serde_json's, which quotes no input.
    Syntax(String),
    /// A key appears twice in one object. `path` leads to that object (`messages[0]`).
    DuplicateKey { path: String, key: String },
    /// Nesting deeper than the limit; `path` is where it was exceeded.
    TooDeep { path: String, limit: usize },
}

#[derive(Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug)]
enum FailKind {
    Duplicate(String),
    TooDeep,
}

/// Side channel for structured failures: serde's error type only carries a string.
#[derive(Debug)]
struct Failure {
    kind: FailKind,
    /// Path segments, innermost first (pushed while the error unwinds).
    rev_path: Vec<Seg>,
}

struct Seed<'a> {
    depth: usize,
    max_depth: usize,
    fail: &'a RefCell<Option<Failure>>,
}

/// Parses `bytes` as exactly one JSON value, rejecting duplicate keys and nesting deeper than
/// `max_depth` (the top-level value is depth 1).
pub(crate) fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<JsonValue, StrictJsonError> {
    let fail = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Seed {
        depth: 1,
        max_depth,
        fail: &fail,
    };
    let res = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match res {
        Ok(v) => Ok(v),
        Err(e) => match fail.into_inner() {
            Some(f) => {
                let path = render_path(&f.rev_path);
                Err(match f.kind {
                    FailKind::Duplicate(key) => StrictJsonError::DuplicateKey { path, key },
                    FailKind::TooDeep => StrictJsonError::TooDeep {
                        path,
                        limit: max_depth,
                    },
                })
            }
            None => Err(StrictJsonError::Syntax(e.to_string())),
        },
    }
}

fn render_path(rev: &[Seg]) -> String {
    let mut out = String::new();
    for seg in rev.iter().rev() {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

// === impl Seed ===

impl Seed<'_> {
    fn child(&self) -> Seed<'_> {
        Seed {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            fail: self.fail,
        }
    }

    fn check_depth<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > self.max_depth {
            *self.fail.borrow_mut() = Some(Failure {
                kind: FailKind::TooDeep,
                rev_path: Vec::new(),
            });
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }

    fn note_seg(&self, seg: Seg) {
        if let Some(f) = self.fail.borrow_mut().as_mut() {
            f.rev_path.push(seg);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = JsonValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<JsonValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
        serde_json::Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }
    fn visit_unit<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }
    fn visit_none<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        self.check_depth()?;
        let mut items = Vec::new();
        loop {
            match seq.next_element_seed(self.child()) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => break,
                Err(e) => {
                    self.note_seg(Seg::Index(items.len()));
                    return Err(e);
                }
            }
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        self.check_depth()?;
        let mut entries: Vec<(String, JsonValue)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match map.next_value_seed(self.child()) {
                Ok(v) => entries.push((key, v)),
                Err(e) => {
                    self.note_seg(Seg::Key(key));
                    return Err(e);
                }
            }
        }
        // Sorting borrowed keys finds duplicates in O(n log n) without hashing; objects in a
        // bounded request body are small.
        let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            let dup = w[0].to_owned();
            *self.fail.borrow_mut() = Some(Failure {
                kind: FailKind::Duplicate(dup),
                rev_path: Vec::new(),
            });
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(JsonValue::Object(JsonObject(entries)))
    }
}

// === impl JsonValue ===

impl JsonValue {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The value as an integer if it is written as one (`5`, not `5.0`).
    pub(crate) fn as_i128(&self) -> Option<i128> {
        match self {
            Self::Number(n) => n
                .as_u64()
                .map(i128::from)
                .or_else(|| n.as_i64().map(i128::from)),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[JsonValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&JsonObject> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Number(_) => "number",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::Object(_) => "object",
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        // Serialising this type cannot fail: keys are strings and numbers are finite.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => n.serialize(s),
            Self::String(v) => s.serialize_str(v),
            Self::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(obj) => obj.serialize(s),
        }
    }
}

// === impl JsonObject ===

impl JsonObject {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &JsonValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&JsonValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Replaces the value of `key` in place (keeping its position) or appends it.
    pub(crate) fn set(&mut self, key: &str, value: JsonValue) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut JsonValue> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_key_order() {
        let v = parse_strict(br#"{"z":1,"a":{"y":true,"b":null},"m":[1,2.5,"x"]}"#, 64).unwrap();
        assert_eq!(
            String::from_utf8(v.to_vec()).unwrap(),
            r#"{"z":1,"a":{"y":true,"b":null},"m":[1,2.5,"x"]}"#
        );
    }

    #[test]
    fn rejects_top_level_duplicate() {
        let e = parse_strict(br#"{"a":1,"b":2,"a":3}"#, 64).unwrap_err();
        assert_eq!(
            e,
            StrictJsonError::DuplicateKey {
                path: String::new(),
                key: "a".into()
            }
        );
    }

    #[test]
    fn rejects_nested_duplicate_with_path() {
        let e = parse_strict(
            br#"{"messages":[{"role":"user"},{"role":"user","content":"x","role":"system"}]}"#,
            64,
        )
        .unwrap_err();
        assert_eq!(
            e,
            StrictJsonError::DuplicateKey {
                path: "messages[1]".into(),
                key: "role".into()
            }
        );
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(5) + &"]".repeat(5);
        assert!(parse_strict(ok.as_bytes(), 5).is_ok());
        let deep = "[".repeat(6) + &"]".repeat(6);
        match parse_strict(deep.as_bytes(), 5).unwrap_err() {
            StrictJsonError::TooDeep { path, limit } => {
                assert_eq!(limit, 5);
                assert_eq!(path, "[0][0][0][0][0]");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Far deeper than serde_json's own recursion limit: still a clean error.
        let very = "[".repeat(100_000);
        assert!(parse_strict(very.as_bytes(), 64).is_err());
    }

    #[test]
    fn rejects_trailing_garbage_and_syntax() {
        assert!(matches!(
            parse_strict(br#"{"a":1} x"#, 64),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(matches!(
            parse_strict(br#"{"a":"#, 64),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(parse_strict(b" {\"a\":1}\n ", 64).is_ok());
    }

    #[test]
    fn set_keeps_position_or_appends() {
        let mut v = parse_strict(br#"{"a":1,"b":2}"#, 64).unwrap();
        let JsonValue::Object(o) = &mut v else {
            panic!("object")
        };
        o.set("a", JsonValue::Bool(true));
        o.set("c", JsonValue::Null);
        assert_eq!(v.to_vec(), br#"{"a":true,"b":2,"c":null}"#.to_vec());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            "[a-z\\u{e9}\\u{1F600}\"\\\\]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn same_meaning_as_serde_json(v in arb_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            let strict = parse_strict(&bytes, 64).unwrap();
            let back: serde_json::Value = serde_json::from_slice(&strict.to_vec()).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_strict(&bytes, 8);
        }
    }
}
