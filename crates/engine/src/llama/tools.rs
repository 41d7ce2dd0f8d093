//! Tools and structured output for the embedded engine: reading `tools`, `tool_choice`,
//! `parallel_tool_calls` and `response_format` into a grammar (see [`crate::grammar`]) and an
//! answer mode, the system text that describes the tools to the model, and reading the tool
//! calls back out of the generated text.
//!
//! The call format is fixed: the marker [`TOOL_CALL_MARKER`] followed by a JSON array of
//! `{"name": ..., "arguments": {...}}` objects (one object, not an array, when
//! `parallel_tool_calls` is false or `tool_choice` names a function: one call to it). With `tool_choice: "required"` or a named function the
//! grammar allows only that; with `"auto"` it allows a call or an answer that does not start
//! with `<` (or, with a `response_format`, the answer in that format); `"none"` describes no
//! tools and constrains nothing. Pure functions over request JSON: no llama.cpp, no I/O, and
//! nothing here logs (tool definitions and arguments are client data).

use serde_json::{json, Map, Value};

use super::params::RequestError;
use crate::grammar::{gbnf_literal, GrammarBuilder, SchemaError};
use crate::validate::MAX_TOOLS;

/// What introduces a tool call in the model's output.
pub(crate) const TOOL_CALL_MARKER: &str = "<tool_call>";
/// Most calls in one answer when parallel calls are allowed.
pub(crate) const MAX_PARALLEL_CALLS: usize = 8;
/// Longest function name (OpenAI's limit).
const MAX_NAME: usize = 64;

/// How tool calls shape the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToolMode {
    /// The answer must be a call (`required` or a named function); else it may be text.
    pub required: bool,
    /// Several calls (a JSON array) rather than one object.
    pub parallel: bool,
}

/// A declared function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Function {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
}

/// The constraints of one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Constraints {
    /// The GBNF grammar (root rule `root`), if the output is constrained.
    pub grammar: Option<String>,
    /// Set when tool calls may be answered.
    pub tools: Option<ToolMode>,
    /// The functions to describe in the prompt (empty unless `tools` is set).
    pub functions: Vec<Function>,
}

fn bad(code: &'static str, param: &str, message: impl Into<String>) -> RequestError {
    RequestError {
        message: message.into(),
        param: Some(param.to_owned()),
        code,
    }
}

fn schema_error(param: &str, e: &SchemaError) -> RequestError {
    let param = match e.path() {
        Some(p) if !p.is_empty() => format!("{param}.{p}"),
        _ => param.to_owned(),
    };
    let code = match e {
        SchemaError::Unsupported { .. } => "unsupported_value",
        _ => "invalid_value",
    };
    bad(code, &param, format!("'{param}': {e}"))
}

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Reads `tools`, `tool_choice`, `parallel_tool_calls` (chat only) and `response_format`.
pub(crate) fn constraints(
    obj: &Map<String, Value>,
    chat: bool,
) -> Result<Constraints, RequestError> {
    let mut b = GrammarBuilder::new();
    let format = response_format(obj, &mut b)?;
    let functions = functions(obj)?;
    if !chat && !functions.is_empty() {
        return Err(bad(
            "unsupported_value",
            "tools",
            "'tools' is only supported on chat completions",
        ));
    }
    // (required, the allowed function) or None for no calls.
    let choice: Option<(bool, Option<String>)> = match present(obj, "tool_choice") {
        None => (!functions.is_empty()).then_some((false, None)),
        Some(Value::String(s)) => match s.as_str() {
            "none" => None,
            "auto" => (!functions.is_empty()).then_some((false, None)),
            "required" => Some((true, None)),
            _ => {
                return Err(bad(
                    "invalid_value",
                    "tool_choice",
                    "'tool_choice' must be \"none\", \"auto\", \"required\" or a function",
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = (o.get("type").and_then(Value::as_str) == Some("function"))
                .then(|| o.get("function").and_then(|f| f.get("name")))
                .flatten()
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(
                        "invalid_value",
                        "tool_choice",
                        "'tool_choice' object must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !functions.iter().any(|f| f.name == name) {
                return Err(bad(
                    "invalid_value",
                    "tool_choice",
                    "'tool_choice' names a function that is not in 'tools'",
                ));
            }
            Some((true, Some(name.to_owned())))
        }
        Some(_) => {
            return Err(bad(
                "invalid_type",
                "tool_choice",
                "'tool_choice' must be a string or an object",
            ))
        }
    };
    let Some((required, only)) = choice else {
        let grammar = match format {
            Some(rule) => Some(
                b.finish(&rule)
                    .map_err(|e| schema_error("response_format", &e))?,
            ),
            None => None,
        };
        return Ok(Constraints {
            grammar,
            ..Constraints::default()
        });
    };
    if functions.is_empty() {
        return Err(bad(
            "invalid_value",
            "tool_choice",
            "'tool_choice' requires 'tools'",
        ));
    }
    // A named function is one call to it (the model is told which call to make); otherwise
    // several at once unless the request says not.
    let parallel = match present(obj, "parallel_tool_calls") {
        None => only.is_none(),
        Some(Value::Bool(p)) => *p && only.is_none(),
        Some(_) => {
            return Err(bad(
                "invalid_type",
                "parallel_tool_calls",
                "'parallel_tool_calls' must be a boolean",
            ))
        }
    };
    let ws = b.ws();
    let mut calls = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        if only.as_ref().is_some_and(|n| *n != f.name) {
            continue;
        }
        let args = match &f.parameters {
            Some(p) => b
                .add_schema(p)
                .map_err(|e| schema_error(&format!("tools[{i}].function.parameters"), &e))?,
            None => format!(r#""{{" {ws} "}}""#),
        };
        let name = gbnf_literal(&Value::String(f.name.clone()).to_string());
        let body = format!(
            r#""{{" {ws} "\"name\"" {ws} ":" {ws} {name} {ws} "," {ws} "\"arguments\"" {ws} ":" {ws} {args} {ws} "}}""#
        );
        calls.push(
            b.rule("call", body)
                .map_err(|e| schema_error("tools", &e))?,
        );
    }
    let call = b
        .rule("calls", calls.join(" | "))
        .map_err(|e| schema_error("tools", &e))?;
    let body = if parallel {
        format!(
            r#""[" {ws} {call} {ws} ( "," {ws} {call} {ws} ){{0,{}}} "]""#,
            MAX_PARALLEL_CALLS - 1
        )
    } else {
        call
    };
    let marked = format!("{} {ws} {body}", gbnf_literal(TOOL_CALL_MARKER));
    let root = if required {
        marked
    } else {
        // Free text must not begin with '<', so it cannot begin like the marker.
        let text = format.unwrap_or_else(|| r#"( [^<] .* )?"#.to_owned());
        format!("( {marked} ) | {text}")
    };
    let grammar = b.finish(&root).map_err(|e| schema_error("tools", &e))?;
    let functions = match only {
        Some(n) => functions.into_iter().filter(|f| f.name == n).collect(),
        None => functions,
    };
    Ok(Constraints {
        grammar: Some(grammar),
        tools: Some(ToolMode { required, parallel }),
        functions,
    })
}

/// The rule for `response_format`, or None for text.
fn response_format(
    obj: &Map<String, Value>,
    b: &mut GrammarBuilder,
) -> Result<Option<String>, RequestError> {
    let Some(rf) = present(obj, "response_format") else {
        return Ok(None);
    };
    let kind = rf.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(b.any_object())),
        Some("json_schema") => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| {
                    bad(
                        "missing_required_parameter",
                        "response_format.json_schema.schema",
                        "'response_format.json_schema.schema' is required",
                    )
                })?;
            b.add_schema(schema)
                .map(Some)
                .map_err(|e| schema_error("response_format.json_schema.schema", &e))
        }
        _ => Err(bad(
            "invalid_value",
            "response_format.type",
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

fn functions(obj: &Map<String, Value>) -> Result<Vec<Function>, RequestError> {
    let Some(tools) = present(obj, "tools") else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("invalid_type", "tools", "'tools' must be an array"))?;
    if tools.len() > MAX_TOOLS {
        return Err(bad(
            "invalid_value",
            "tools",
            format!("at most {MAX_TOOLS} tools are supported"),
        ));
    }
    let mut out: Vec<Function> = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(
                "unsupported_value",
                &format!("{param}.type"),
                format!("'{param}.type': only \"function\" tools are supported"),
            ));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                bad(
                    "invalid_type",
                    &format!("{param}.function"),
                    format!("'{param}.function' must be an object"),
                )
            })?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= MAX_NAME
                    && n.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            })
            .ok_or_else(|| {
                bad(
                    "invalid_value",
                    &format!("{param}.function.name"),
                    format!(
                        "'{param}.function.name' must be 1-{MAX_NAME} of a-z, A-Z, 0-9, _ and -"
                    ),
                )
            })?;
        if out.iter().any(|o| o.name == name) {
            return Err(bad(
                "invalid_value",
                &format!("{param}.function.name"),
                "function names must be unique",
            ));
        }
        let description = match f.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => {
                return Err(bad(
                    "invalid_type",
                    &format!("{param}.function.description"),
                    "a description must be a string",
                ))
            }
        };
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => {
                return Err(bad(
                    "invalid_type",
                    &format!("{param}.function.parameters"),
                    "'parameters' must be a JSON Schema object",
                ))
            }
        };
        out.push(Function {
            name: name.to_owned(),
            description,
            parameters,
        });
    }
    Ok(out)
}

/// The system text that tells the model about the tools and the call format. `list` says
/// whether to list the functions (false when the chat template renders `tools` itself).
pub(crate) fn system_text(functions: &[Function], mode: ToolMode, list: bool) -> String {
    let mut s = String::new();
    if list {
        s.push_str("You can call these functions:\n");
        for f in functions {
            let mut d = json!({"name": f.name});
            if let Some(desc) = &f.description {
                d["description"] = Value::String(desc.clone());
            }
            d["parameters"] = f.parameters.clone().unwrap_or_else(|| json!({}));
            s.push_str(&d.to_string());
            s.push('\n');
        }
    }
    let shape = r#"{"name": "<function name>", "arguments": {<the arguments as JSON>}}"#;
    let calls = if mode.parallel {
        format!("a JSON array of calls, [{shape}]")
    } else {
        format!("one call, {shape}")
    };
    if mode.required {
        s.push_str(&format!(
            "Answer with {TOOL_CALL_MARKER} followed by {calls}, and nothing else."
        ));
    } else {
        s.push_str(&format!(
            "To call a function, answer with {TOOL_CALL_MARKER} followed by {calls}, and nothing else. Otherwise answer normally."
        ));
    }
    s
}

/// How an assistant message's `tool_calls` are written into a prompt for a template that does
/// not render them itself: the same format the model is asked to produce.
pub(crate) fn render_calls(tool_calls: &[Value]) -> String {
    let calls: Vec<Value> = tool_calls
        .iter()
        .map(|c| {
            let f = c.get("function");
            let name = f
                .and_then(|f| f.get("name"))
                .cloned()
                .unwrap_or(Value::Null);
            let args = f.and_then(|f| f.get("arguments"));
            // Arguments travel as JSON text; show them as JSON when they are.
            let args = match args {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => json!({}),
            };
            json!({"name": name, "arguments": args})
        })
        .collect();
    format!("{TOOL_CALL_MARKER}{}", Value::Array(calls))
}

/// A tool call read from the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// The calls in `text`, when it is a complete call answer (marker, then JSON); None when it
/// is text (or a call cut short).
pub(crate) fn parse_calls(text: &str) -> Option<Vec<ToolCall>> {
    let rest = text.trim_start().strip_prefix(TOOL_CALL_MARKER)?;
    let v: Value = serde_json::from_str(rest.trim()).ok()?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return None,
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let name = it.get("name")?.as_str()?.to_owned();
        let arguments = it.get("arguments")?.to_string();
        out.push(ToolCall {
            id: call_id(),
            name,
            arguments,
        });
    }
    (!out.is_empty()).then_some(out)
}

/// `call_` and 24 random letters and digits, as OpenAI's ids.
pub(crate) fn call_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("call_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

/// Whether `text` could still turn into the start of a call (a prefix of the marker, after
/// leading whitespace), so streaming must hold it back.
pub(crate) fn may_be_call(text: &str) -> bool {
    let t = text.trim_start();
    TOOL_CALL_MARKER.starts_with(t) || t.starts_with(TOOL_CALL_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(extra: Value) -> Result<Constraints, RequestError> {
        let mut body = json!({"messages": []});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        constraints(body.as_object().unwrap(), true)
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "ping"}}])
    }

    #[test]
    fn tool_choice_forms() {
        let auto = c(json!({"tools": weather()})).unwrap();
        assert_eq!(
            auto.tools,
            Some(ToolMode {
                required: false,
                parallel: true
            })
        );
        assert_eq!(auto.functions.len(), 2);
        let g = auto.grammar.unwrap();
        assert!(g.contains(r#"( [^<] .* )?"#), "{g}");
        assert!(g.contains(r#""\"get_weather\"""#), "{g}");
        assert!(g.contains(r#""\"ping\"""#), "{g}");
        let req =
            c(json!({"tools": weather(), "tool_choice": "required", "parallel_tool_calls": false}))
                .unwrap();
        assert_eq!(
            req.tools,
            Some(ToolMode {
                required: true,
                parallel: false
            })
        );
        assert!(!req.grammar.unwrap().contains("[^<]"));
        let named = c(json!({"tools": weather(), "tool_choice": {"type": "function", "function": {"name": "ping"}}})).unwrap();
        assert_eq!(named.functions.len(), 1);
        assert_eq!(
            named.tools,
            Some(ToolMode {
                required: true,
                parallel: false
            }),
            "a named function is one call to it"
        );
        let g = named.grammar.unwrap();
        assert!(!g.contains("get_weather") && g.contains("ping"), "{g}");
        let none = c(json!({"tools": weather(), "tool_choice": "none"})).unwrap();
        assert_eq!(none, Constraints::default());
        assert_eq!(
            c(json!({"tool_choice": "auto"})).unwrap(),
            Constraints::default()
        );
        assert_eq!(c(json!({"tools": []})).unwrap(), Constraints::default());
    }

    #[test]
    fn bad_tools_and_choices_are_400s_naming_the_field() {
        for (extra, param) in [
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tools": weather(), "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (json!({"tools": weather(), "tool_choice": 3}), "tool_choice"),
            (
                json!({"tools": weather(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                "tool_choice",
            ),
            (
                json!({"tools": weather(), "tool_choice": {"type": "allowed_tools"}}),
                "tool_choice",
            ),
            (
                json!({"tools": weather(), "parallel_tool_calls": "yes"}),
                "parallel_tool_calls",
            ),
            (
                json!({"tools": [{"type": "code_interpreter"}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}]}),
                "tools[1].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}}}]}),
                "tools[0].function.parameters.properties.x",
            ),
            (json!({"tools": 5}), "tools"),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 1}}}}),
                "response_format.json_schema.schema",
            ),
        ] {
            let e = c(extra.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{extra}: {e:?}");
        }
        let many: Vec<Value> = (0..=MAX_TOOLS)
            .map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}}))
            .collect();
        assert_eq!(
            c(json!({"tools": many})).unwrap_err().param.as_deref(),
            Some("tools")
        );
        let e = c(json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string", "format": "date"}}}})).unwrap_err();
        assert!(e.message.contains("'format'"), "{}", e.message);
        assert_eq!(e.code, "unsupported_value");
    }

    #[test]
    fn response_formats() {
        assert_eq!(
            c(json!({"response_format": {"type": "text"}})).unwrap(),
            Constraints::default()
        );
        let g = c(json!({"response_format": {"type": "json_object"}}))
            .unwrap()
            .grammar
            .unwrap();
        assert!(g.starts_with("root ::= object0\n"), "{g}");
        let g = c(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": true,
            "schema": {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"], "additionalProperties": false}}}}))
            .unwrap().grammar.unwrap();
        assert!(g.starts_with("root ::= schema0\n"), "{g}");
        // With tools in auto mode, the non-call answer is the response format.
        let g = c(json!({"tools": weather(), "response_format": {"type": "json_object"}}))
            .unwrap()
            .grammar
            .unwrap();
        assert!(g.contains("| object0"), "{g}");
        // Completions take response_format but not tools.
        let body = json!({"prompt": "x", "tools": weather()});
        assert_eq!(
            constraints(body.as_object().unwrap(), false)
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools")
        );
    }

    #[test]
    fn calls_are_parsed_back() {
        let calls = parse_calls(
            r#"<tool_call> [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]"#,
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, r#"{"city":"Paris","unit":"c"}"#);
        assert!(calls[0].id.starts_with("call_"));
        assert_eq!(calls[0].id.len(), 29);
        assert!(calls[0].id[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let one = parse_calls(r#"<tool_call>{"name": "ping", "arguments": {}}"#).unwrap();
        assert_eq!(one[0].arguments, "{}");
        assert!(parse_calls("hello").is_none());
        assert!(parse_calls(r#"<tool_call>[{"name": "ping", "argu"#).is_none());
        assert!(
            may_be_call(" <tool")
                && may_be_call("<tool_call>[")
                && !may_be_call("<b>")
                && !may_be_call("hi")
        );
        let r = render_calls(&[
            json!({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}),
        ]);
        // Key order depends on serde_json's `preserve_order`, which other crates of the
        // workspace turn on: compare as JSON.
        let rendered: Value =
            serde_json::from_str(r.strip_prefix(TOOL_CALL_MARKER).expect("marker")).unwrap();
        assert_eq!(rendered, json!([{"name": "f", "arguments": {"a": 1}}]));
        let s = system_text(
            &[Function {
                name: "f".into(),
                description: None,
                parameters: None,
            }],
            ToolMode {
                required: true,
                parallel: true,
            },
            true,
        );
        assert!(
            s.contains(r#"{"name":"f","parameters":{}}"#) && s.contains(TOOL_CALL_MARKER),
            "{s}"
        );
    }
}
