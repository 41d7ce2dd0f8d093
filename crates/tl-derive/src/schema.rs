//! Compile-time view of one schema combinator: its id (TON's crc32 rule) and its field list, so
//! `#[tl(schema = "...")]` can both compute the id and check the Rust fields against the line.
//!
//! `normalize` must stay identical to `cocoon_tl::normalize_combinator`; `cocoon-proto`'s tests
//! compare the ids both produce for every constructor of the schema files.

/// A parsed combinator line.
pub struct SchemaLine {
    /// Name without `#id`, e.g. `tcp.ping`.
    pub name: String,
    /// Explicit `#id`, or the crc32 of the normalized line.
    pub id: u32,
    /// `(field name, field type)` in order, type parameters (`{t:Type}`) excluded.
    pub fields: Vec<(String, String)>,
}

/// TON's normalization (see `cocoon_tl::normalize_combinator`): strip comments and `;`, drop
/// parentheses and braces, collapse whitespace, split off an explicit `#id`.
pub fn normalize(text: &str) -> (String, Option<u32>) {
    let without_comments: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let text = without_comments.join(" ");
    let text = text.trim().trim_end_matches(';');
    let text: String = text
        .chars()
        .filter(|&c| c != '(' && c != ')' && c != '{' && c != '}')
        .collect();
    let mut tokens = text.split_whitespace();
    let Some(first) = tokens.next() else {
        return (String::new(), None);
    };
    let (name, explicit) = match first.split_once('#') {
        Some((name, hex)) => (name, u32::from_str_radix(hex, 16).ok()),
        None => (first, None),
    };
    let mut line = String::from(name);
    for t in tokens {
        line.push(' ');
        line.push_str(t);
    }
    (line, explicit)
}

/// Parses one combinator for the derive; errors are messages for `compile_error!`.
pub fn parse_line(text: &str) -> Result<SchemaLine, String> {
    let (normalized, explicit) = normalize(text);
    let id = explicit.unwrap_or_else(|| crc32fast::hash(normalized.as_bytes()));

    let without_comments: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let text = without_comments.join(" ");
    let text = text.trim().trim_end_matches(';');

    // Split on whitespace, keeping parenthesized groups such as `(vector int256)` whole.
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }

    let mut iter = tokens.into_iter();
    let first = iter.next().ok_or("empty schema line")?;
    let name = first.split('#').next().unwrap_or("").to_string();
    if name.is_empty() {
        return Err("schema line has no combinator name".into());
    }
    let mut fields = Vec::new();
    let mut saw_eq = false;
    for t in iter {
        if t == "=" {
            saw_eq = true;
            break;
        }
        if t.starts_with('{') {
            continue;
        }
        let (fname, ftype) = t.split_once(':').ok_or_else(|| {
            format!("unsupported token `{t}` in schema line (expected name:type)")
        })?;
        let ftype = ftype.trim_start_matches('(').trim_end_matches(')');
        fields.push((fname.to_string(), ftype.to_string()));
    }
    if !saw_eq {
        return Err("schema line has no `= Type`".into());
    }
    Ok(SchemaLine { name, id, fields })
}
