//! Chat templates: the Jinja template from the GGUF metadata (`tokenizer.chat_template`),
//! rendered with minijinja the way Hugging Face's `apply_chat_template` does (variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, plus the request's
//! `chat_template_kwargs`; function `raise_exception`).
//!
//! A model without a template (or with one minijinja cannot parse) falls back to ChatML,
//! which is what SmolLM2 ships anyway. The Python methods Hugging Face templates commonly call
//! are provided by [`pycompat`] (strings: `strip`, `lstrip`, `rstrip`, `startswith`,
//! `endswith`, `upper`, `lower`, `split`, `replace`; maps: `items`, `keys`, `values`, `get`);
//! others fail at render time with a 400.

use serde_json::{Map, Value};

/// ChatML without a default system prompt.
pub(crate) const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Largest template source accepted from a model file.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 64 << 10;

/// A compiled-on-demand chat template.
#[derive(Debug)]
pub(crate) struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Checks `source` parses; returns the reason when it does not.
    pub(crate) fn new(source: String, bos: String, eos: String) -> Result<Self, String> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("template larger than {MAX_TEMPLATE_BYTES} bytes"));
        }
        let mut env = minijinja::Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.set_unknown_method_callback(pycompat);
        env.template_from_str(&source).map_err(|e| e.to_string())?;
        Ok(Self {
            env,
            source,
            bos,
            eos,
        })
    }

    /// The ChatML template.
    pub(crate) fn chatml(bos: String, eos: String) -> Self {
        // CHATML is a constant that parses; fall back to an empty environment is unreachable
        // in practice but avoids a panic path.
        Self::new(CHATML.to_owned(), bos.clone(), eos.clone()).unwrap_or(Self {
            env: minijinja::Environment::new(),
            source: CHATML.to_owned(),
            bos,
            eos,
        })
    }

    /// The template source.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template renders a `tools` variable itself (SmolLM2's and ChatML do not;
    /// then the engine describes the tools in a system message).
    pub(crate) fn uses_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Renders a conversation. Errors carry the template's message (e.g. from
    /// `raise_exception`), which never contains message contents unless the template put them
    /// there.
    pub(crate) fn render(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
        kwargs: &Map<String, Value>,
    ) -> Result<String, String> {
        let ctx = minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
            ..minijinja::Value::from_serialize(kwargs)
        };
        self.env
            .render_str(&self.source, ctx)
            .map_err(|e| match e.detail() {
                Some(d) => format!("chat template: {d}"),
                None => format!("chat template: {}", e.kind()),
            })
    }
}

/// The Python methods chat templates use most (see the module docs).
fn pycompat(
    _: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
    method: &str,
    args: &[minijinja::Value],
) -> Result<minijinja::Value, minijinja::Error> {
    use minijinja::value::ValueKind;
    use minijinja::{Error, ErrorKind, Value};
    let unknown = || Error::new(ErrorKind::UnknownMethod, format!("no method {method}"));
    let arg = |i: usize| args.get(i).and_then(Value::as_str);
    if let Some(s) = value.as_str() {
        let set = |c: &str, ch: char| c.contains(ch);
        return Ok(match (method, arg(0)) {
            ("strip", None) => Value::from(s.trim()),
            ("strip", Some(c)) => Value::from(s.trim_matches(|ch| set(c, ch))),
            ("lstrip", None) => Value::from(s.trim_start()),
            ("lstrip", Some(c)) => Value::from(s.trim_start_matches(|ch| set(c, ch))),
            ("rstrip", None) => Value::from(s.trim_end()),
            ("rstrip", Some(c)) => Value::from(s.trim_end_matches(|ch| set(c, ch))),
            ("startswith", Some(p)) => Value::from(s.starts_with(p)),
            ("endswith", Some(p)) => Value::from(s.ends_with(p)),
            ("upper", _) => Value::from(s.to_uppercase()),
            ("lower", _) => Value::from(s.to_lowercase()),
            ("split", None) => {
                Value::from(s.split_whitespace().map(Value::from).collect::<Vec<_>>())
            }
            ("split", Some(sep)) if !sep.is_empty() => {
                Value::from(s.split(sep).map(Value::from).collect::<Vec<_>>())
            }
            ("replace", Some(from)) if !from.is_empty() => match arg(1) {
                Some(to) => Value::from(s.replace(from, to)),
                None => return Err(unknown()),
            },
            _ => return Err(unknown()),
        });
    }
    if value.kind() == ValueKind::Map {
        let keys = || value.try_iter().map(Iterator::collect::<Vec<_>>);
        return Ok(match method {
            "keys" => Value::from(keys()?),
            "values" => Value::from(
                keys()?
                    .iter()
                    .map(|k| value.get_item(k))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            "items" => Value::from(
                keys()?
                    .into_iter()
                    .map(|k| Ok(Value::from(vec![k.clone(), value.get_item(&k)?])))
                    .collect::<Result<Vec<_>, Error>>()?,
            ),
            "get" => {
                let v = value.get_item(args.first().ok_or_else(unknown)?)?;
                if v.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    v
                }
            }
            _ => return Err(unknown()),
        });
    }
    Err(unknown())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The template stored in SmolLM2-135M-Instruct's GGUF (ChatML with a default system
    /// prompt).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn conv() -> Vec<Value> {
        vec![
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "Hi"}),
            json!({"role": "assistant", "content": "Hello!"}),
        ]
    }

    #[test]
    fn chatml_system_user_assistant() {
        let t = ChatTemplate::chatml(String::new(), String::new());
        let out = t.render(&conv(), false, &Map::new()).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        );
        let out = t.render(&conv(), true, &Map::new()).unwrap();
        assert!(
            out.ends_with("Hello!<|im_end|>\n<|im_start|>assistant\n"),
            "{out}"
        );
    }

    #[test]
    fn smollm2_template_adds_default_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2.into(), String::new(), String::new()).unwrap();
        let out = t
            .render(
                &[json!({"role": "user", "content": "Hi"})],
                true,
                &Map::new(),
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // With a system message, the default is not added.
        let out = t.render(&conv(), false, &Map::new()).unwrap();
        assert!(out.starts_with("<|im_start|>system\nBe brief."), "{out}");
    }

    #[test]
    fn variables_kwargs_and_raise_exception() {
        let src = "{{ bos_token }}{% if not flag %}{{ raise_exception('flag must be set') }}{% endif %}{{ messages|length }}{{ eos_token }}";
        let t = ChatTemplate::new(src.into(), "<s>".into(), "</s>".into()).unwrap();
        let mut kw = Map::new();
        kw.insert("flag".into(), json!(true));
        assert_eq!(t.render(&conv(), true, &kw).unwrap(), "<s>3</s>");
        let e = t.render(&conv(), true, &Map::new()).unwrap_err();
        assert!(e.contains("flag must be set"), "{e}");
        // Core variables are not overridden by kwargs.
        kw.insert("bos_token".into(), json!("X"));
        assert_eq!(t.render(&conv(), true, &kw).unwrap(), "<s>3</s>");
    }

    #[test]
    fn python_methods_used_by_hf_templates() {
        let src = "{{ messages[1].content.strip() }}|{{ '  x '.lstrip() }}|{{ 'xay'.strip('xy') }}|\
            {% if messages[0].content.startswith('Be') %}S{% endif %}{% if 'ab'.endswith('b') %}E{% endif %}|\
            {{ 'a b'.split()|length }}{{ 'a,b,c'.split(',')|join('-') }}|{{ 'aXa'.replace('X', 'y') }}|\
            {% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %}|{{ d.get('missing', 'dflt') }}{{ d.get('k') }}|\
            {{ d.keys()|list|length }}";
        let t = ChatTemplate::new(src.into(), String::new(), String::new()).unwrap();
        let mut msgs = conv();
        msgs[1]["content"] = json!("  Hi  ");
        let mut kw = Map::new();
        kw.insert("d".into(), json!({"k": 1}));
        assert_eq!(
            t.render(&msgs, false, &kw).unwrap(),
            "Hi|x |a|SE|2a-b-c|aya|k=1|dflt1|1"
        );
        let t = ChatTemplate::new("{{ 'x'.nope() }}".into(), String::new(), String::new()).unwrap();
        assert!(t.render(&msgs, false, &Map::new()).is_err());
    }

    #[test]
    fn bad_template_is_refused() {
        assert!(ChatTemplate::new("{% for %}".into(), String::new(), String::new()).is_err());
        assert!(ChatTemplate::new(
            "x".repeat(MAX_TEMPLATE_BYTES + 1),
            String::new(),
            String::new()
        )
        .is_err());
    }
}
