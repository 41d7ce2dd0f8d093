//! Tests of the JSON Schema → GBNF converter: the text generated for each keyword, the refusals,
//! and a property test that random schemas never panic and stay within the bounds.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn g(schema: Value) -> String {
    schema_to_grammar(&schema).unwrap()
}

/// Rule names defined and referenced in a grammar: every reference must be defined (a cheap
/// structural check; llama.cpp's parser is exercised by the real-model tests).
fn check_rules(grammar: &str) {
    let mut defined = Vec::new();
    let mut bodies = Vec::new();
    for line in grammar.lines() {
        let (name, body) = line.split_once(" ::= ").expect("rule line");
        assert!(!defined.contains(&name), "duplicate rule {name}");
        defined.push(name);
        bodies.push(body);
    }
    assert_eq!(defined.first(), Some(&"root"));
    for body in bodies {
        let mut chars = body.chars().peekable();
        let mut ident = String::new();
        let check = |ident: &mut String| {
            if !ident.is_empty() {
                assert!(
                    defined.contains(&ident.as_str()),
                    "undefined rule {ident} in {body}"
                );
                ident.clear();
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '"' | '[' => {
                    check(&mut ident);
                    let end = if c == '"' { '"' } else { ']' };
                    while let Some(d) = chars.next() {
                        if d == '\\' {
                            chars.next();
                        } else if d == end {
                            break;
                        }
                    }
                }
                '{' => {
                    check(&mut ident);
                    for d in chars.by_ref() {
                        if d == '}' {
                            break;
                        }
                    }
                }
                c if c.is_ascii_alphanumeric() || c == '-' => ident.push(c),
                _ => check(&mut ident),
            }
        }
        check(&mut ident);
    }
}

#[test]
fn primitive_types() {
    for (t, rule) in [
        ("string", "string"),
        ("number", "number"),
        ("integer", "integer"),
        ("boolean", "boolean"),
        ("null", "null"),
    ] {
        let out = g(json!({"type": t}));
        check_rules(&out);
        assert!(
            out.contains(&format!("root ::= schema0\nschema0 ::= {rule}\n")),
            "{out}"
        );
    }
    let out = g(json!({"type": ["string", "null"]}));
    assert!(out.contains("schema0 ::= ( string | null )"), "{out}");
    check_rules(&out);
    let out = g(json!({"type": "integer"}));
    assert!(out.contains(r#"integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )"#));
}

#[test]
fn object_properties_in_declared_order() {
    let out = g(json!({
        "type": "object",
        "properties": {"b": {"type": "string"}, "a": {"type": "integer"}, "c": {"type": "boolean"}},
        "required": ["b", "a"],
        "additionalProperties": false
    }));
    check_rules(&out);
    let kv_b = out.find(r#"kv0 ::= "\"b\"" ws ":" ws string ws"#).unwrap();
    let kv_a = out.find(r#"kv1 ::= "\"a\"" ws ":" ws integer ws"#).unwrap();
    assert!(kv_b < kv_a);
    // Required first two, optional last.
    assert!(
        out.contains(r#""{" ws kv0 "," ws kv1 ( "," ws kv2 )? "}""#),
        "{out}"
    );
}

#[test]
fn optional_properties_may_all_be_absent() {
    let out = g(json!({"properties": {"x": {"type": "null"}, "y": {"const": 1}}}));
    check_rules(&out);
    assert!(out.contains(r#""\"x\"" ws ":" ws null ws"#), "{out}");
    assert!(out.contains(r#"( kv0 ( "," ws kv1 )? | props"#), "{out}");
    assert!(out.contains("( kv1 )?"), "{out}");
}

#[test]
fn additional_properties_true_or_schema() {
    let out = g(json!({"type": "object", "additionalProperties": {"type": "integer"}}));
    check_rules(&out);
    assert!(
        out.contains(r#"kv0 ::= string ws ":" ws integer ws"#),
        "{out}"
    );
    assert!(
        out.contains(r#""{" ws ( kv0 ( "," ws kv0 )* )? "}""#),
        "{out}"
    );
    let out = g(
        json!({"type": "object", "properties": {"a": {}}, "required": ["a"], "additionalProperties": true}),
    );
    check_rules(&out);
    assert!(out.contains("value0"), "{out}");
}

#[test]
fn arrays_and_bounds() {
    let out =
        g(json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}));
    check_rules(&out);
    assert!(
        out.contains(r#""[" ws item0 ws ( "," ws item0 ws ){0,2} "]""#),
        "{out}"
    );
    let out = g(json!({"type": "array", "items": {"type": "string"}}));
    assert!(
        out.contains(r#""[" ws ( item0 ws ( "," ws item0 ws ){0,} )? "]""#),
        "{out}"
    );
    // maxItems beyond the bound is capped (still valid output); minItems beyond it refused.
    let out = g(json!({"type": "array", "maxItems": 1000}));
    assert!(out.contains("{0,63}"), "{out}");
    let e = schema_to_grammar(&json!({"type": "array", "minItems": 65})).unwrap_err();
    assert!(matches!(e, SchemaError::Unsupported { .. }), "{e}");
    assert!(schema_to_grammar(&json!({"type": "array", "minItems": 3, "maxItems": 2})).is_err());
    let out = g(json!({"type": "array", "maxItems": 0}));
    assert!(out.contains(r#"schema0 ::= "[" ws "]""#), "{out}");
}

#[test]
fn strings_lengths_enum_const() {
    let out = g(json!({"type": "string", "minLength": 2, "maxLength": 5}));
    check_rules(&out);
    assert!(out.contains(r#""\"" char{2,5} "\"""#), "{out}");
    assert!(out.contains(r#"char ::= [^"\\\x7F\x00-\x1F]"#), "{out}");
    let out = g(json!({"enum": ["a\"b", 1, null, {"k": [true]}]}));
    check_rules(&out);
    assert!(
        out.contains(r#"( "\"a\\\"b\"" | "1" | "null" | "{\"k\":[true]}" )"#),
        "{out}"
    );
    // `type` filters enum values.
    let out = g(json!({"type": "string", "enum": ["x", 2]}));
    assert!(out.contains(r#"( "\"x\"" )"#), "{out}");
    assert!(schema_to_grammar(&json!({"type": "string", "enum": [2]})).is_err());
    let out = g(json!({"const": "c\n"}));
    assert!(out.contains(r#""\"c\\n\"""#), "{out}");
}

#[test]
fn any_of_one_of_and_refs() {
    let out = g(json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}));
    assert!(out.contains("( string | integer )"), "{out}");
    let out = g(json!({"oneOf": [{"type": "null"}, {"type": "boolean"}]}));
    assert!(out.contains("( null | boolean )"), "{out}");
    // Recursive reference through $defs.
    let out = g(json!({
        "$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}
        }, "required": ["v", "next"]}},
        "$ref": "#/$defs/node"
    }));
    check_rules(&out);
    assert!(out.contains("ref0 ::= "), "{out}");
    assert!(out.contains("( ref0 | null )"), "{out}");
    let out = g(
        json!({"definitions": {"a": {"type": "string"}}, "properties": {"x": {"$ref": "#/definitions/a"}}}),
    );
    check_rules(&out);
    for bad in [
        json!({"$ref": "http://x/y"}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"$ref": 5}),
    ] {
        assert!(schema_to_grammar(&bad).is_err(), "{bad}");
    }
}

#[test]
fn annotations_are_ignored() {
    let out = g(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "t", "description": "d", "default": 1, "examples": [1], "strict": true,
        "type": "integer"
    }));
    assert!(out.contains("schema0 ::= integer"), "{out}");
    let out = g(json!({}));
    assert!(out.contains("schema0 ::= value0"), "{out}");
    check_rules(&out);
    let out = g(json!(true));
    check_rules(&out);
}

#[test]
fn constraining_keywords_are_refused_with_their_path() {
    for kw in REFUSED {
        let schema = json!({"type": "object", "properties": {"p": {"type": "string", *kw: 1}}});
        match schema_to_grammar(&schema).unwrap_err() {
            SchemaError::Unsupported { path, keyword } => {
                assert_eq!(keyword, *kw);
                assert_eq!(path, "properties.p");
            }
            e => panic!("{kw}: {e}"),
        }
    }
    let e = schema_to_grammar(&json!({"type": "strin"})).unwrap_err();
    assert_eq!(e.path(), Some("type"));
    assert!(schema_to_grammar(&json!(false)).is_err());
    assert!(schema_to_grammar(&json!(3)).is_err());
    assert!(schema_to_grammar(&json!({"required": ["x"]})).is_err());
}

#[test]
fn bounds_are_enforced() {
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"type": "array", "items": deep});
    }
    assert!(matches!(
        schema_to_grammar(&deep),
        Err(SchemaError::TooDeep { .. })
    ));
    let big = json!({"enum": ["x".repeat(MAX_SCHEMA_BYTES)]});
    assert_eq!(schema_to_grammar(&big), Err(SchemaError::TooLarge));
    let mut props = serde_json::Map::new();
    for i in 0..1200 {
        props.insert(format!("p{i}"), json!({"type": "integer"}));
    }
    let e = schema_to_grammar(&json!({"properties": props})).unwrap_err();
    assert!(matches!(e, SchemaError::TooComplex(_)), "{e}");
}

#[test]
fn json_object_grammar_is_bounded() {
    let out = json_object_grammar();
    check_rules(&out);
    assert!(out.starts_with("root ::= object0\n"));
    assert!(out.contains(&format!(
        "value{ANY_DEPTH} ::= string | number | boolean | null"
    )));
    assert!(out.contains(r#"ws ::= ( " " | "\n" [ \t]{0,32} )?"#));
}

#[test]
fn builder_combines_schemas() {
    let mut b = GrammarBuilder::new();
    let a = b
        .add_schema(&json!({"$defs": {"x": {"type": "string"}}, "$ref": "#/$defs/x"}))
        .unwrap();
    let c = b
        .add_schema(&json!({"$defs": {"x": {"type": "integer"}}, "$ref": "#/$defs/x"}))
        .unwrap();
    let out = b.finish(&format!("{a} | {c}")).unwrap();
    check_rules(&out);
    assert!(out.contains("ref0 ::= string"), "{out}");
    assert!(out.contains("ref1 ::= integer"), "{out}");
}

fn arb_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": "integer"})),
        Just(json!({"type": ["number", "null"]})),
        Just(json!({"enum": ["a", 1, null]})),
        Just(json!({"const": {"k": "v"}})),
        Just(json!({"type": "string", "minLength": 1, "maxLength": 3000})),
        Just(json!({"$ref": "#/$defs/x"})),
        Just(json!({"pattern": "x"})),
        Just(json!(true)),
        Just(json!({})),
        any::<i64>().prop_map(|n| json!({"type": "array", "maxItems": n})),
        "[a-z\"\\\\]{0,4}".prop_map(|s| json!({"type": s})),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(("[a-z\"\\\\ ]{0,3}", inner.clone(), any::<bool>()), 0..6).prop_map(
                |ps| {
                    let mut props = serde_json::Map::new();
                    let mut req = Vec::new();
                    for (k, s, r) in ps {
                        if r {
                            req.push(Value::String(k.clone()));
                        }
                        props.insert(k, s);
                    }
                    json!({"type": "object", "properties": props, "required": req, "additionalProperties": false})
                }
            ),
            (inner.clone(), 0u64..80, 0u64..80)
                .prop_map(|(s, a, b)| json!({"type": "array", "items": s, "minItems": a, "maxItems": b})),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"anyOf": v})),
            inner.prop_map(|s| json!({"$defs": {"x": s}, "additionalProperties": {"$ref": "#/$defs/x"}})),
        ]
    })
}

proptest! {
    #[test]
    fn random_schemas_never_panic_and_stay_bounded(schema in arb_schema()) {
        if let Ok(out) = schema_to_grammar(&schema) {
            prop_assert!(out.len() <= MAX_GRAMMAR_BYTES);
            prop_assert!(out.lines().count() <= MAX_RULES + PRIMITIVES.len() + 3 * (ANY_DEPTH + 1) + 1);
            check_rules(&out);
        }
    }

    #[test]
    fn arbitrary_json_never_panics(s in "[\\[\\]{}:,\"a-z0-9 ]{0,200}") {
        if let Ok(v) = serde_json::from_str::<Value>(&s) {
            let _ = schema_to_grammar(&v);
        }
    }
}
