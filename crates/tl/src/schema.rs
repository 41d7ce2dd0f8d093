//! TL schema text: constructor ids and a combinator-level parser. No codec lives here; this is
//! what tests and tools use to check that Rust types carry the ids the `.tl` files define.
//!
//! The id rule is TON's: crc32 (IEEE) of the normalized combinator. Normalization strips `//`
//! comments and the trailing `;`, collapses whitespace to single spaces, drops an explicit `#id`
//! from the name (that id then *is* the result), writes `(vector X)` as `vector X` (parentheses
//! are dropped) and writes a type parameter `{t:Type}` as `t:Type`. That last point differs from a
//! naive "drop `{...}`": only keeping the contents gives the well-known `vector#1cb5c415`.
//!
//! `cocoon-tl-derive` carries a copy of [`normalize_combinator`] (a proc-macro crate cannot
//! depend on this one); `cocoon-proto`'s tests compare both over every constructor of the schema.

/// One combinator (constructor or function) of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    /// The combinator name, e.g. `tcp.ping` (without any `#id`).
    pub name: String,
    /// Its constructor id: the explicit `#id` if given, else the crc32 of `line`.
    pub id: u32,
    /// The normalized line the id is computed from, e.g. `tcp.ping id:long = tcp.Packet`.
    pub line: String,
    /// The result type, e.g. `tcp.Packet`.
    pub result_type: String,
    /// True in a `---functions---` section (a query), false in `---types---`.
    pub is_function: bool,
}

/// The constructor id of one combinator line (see the module docs for the rule).
pub fn constructor_id(schema_line: &str) -> u32 {
    let (line, explicit) = normalize_combinator(schema_line);
    explicit.unwrap_or_else(|| crc32fast::hash(line.as_bytes()))
}

/// Normalizes one combinator; returns the line the crc is taken of and the explicit `#id`, if
/// the name carries one.
pub fn normalize_combinator(schema_line: &str) -> (String, Option<u32>) {
    let without_comments: Vec<&str> = schema_line
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

/// Parses a whole schema file into its combinators, in file order.
///
/// Handles combinators that span several lines, `//` comments, and any number of
/// `---functions---` / `---types---` markers. Built-in type declarations (`int ? = Int;`) are
/// not combinators and are skipped; everything else (including `boolTrue = Bool;` and
/// `vector {t:Type} # [ t ] = Vector t;`) is returned.
pub fn parse_schema(text: &str) -> Vec<SchemaEntry> {
    let stripped: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let stripped = stripped.join("\n");
    let mut is_function = false;
    let mut out = Vec::new();
    for stmt in stripped.split(';') {
        let mut stmt = stmt.trim();
        // Section markers precede the next combinator inside the same `;`-separated chunk.
        while let Some(rest) = stmt.strip_prefix("---") {
            let Some((marker, after)) = rest.split_once("---") else {
                break;
            };
            match marker.trim() {
                "functions" => is_function = true,
                "types" => is_function = false,
                _ => {}
            }
            stmt = after.trim();
        }
        if stmt.is_empty() {
            continue;
        }
        let (line, explicit) = normalize_combinator(stmt);
        let Some((lhs, rhs)) = line.split_once(" = ") else {
            continue;
        };
        let name = lhs.split_whitespace().next().unwrap_or("");
        if name.is_empty() || lhs.split_whitespace().nth(1) == Some("?") {
            continue;
        }
        let id = explicit.unwrap_or_else(|| crc32fast::hash(line.as_bytes()));
        out.push(SchemaEntry {
            name: name.to_string(),
            id,
            result_type: rhs.trim().to_string(),
            line: line.clone(),
            is_function,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_ids() {
        assert_eq!(
            constructor_id("tcp.ping id:long = tcp.Packet;"),
            0xbbe9_627c
        );
        assert_eq!(constructor_id("boolTrue = Bool;"), 0x9972_75b5);
        assert_eq!(constructor_id("boolFalse = Bool"), 0xbc79_9737);
        assert_eq!(
            constructor_id("vector {t:Type} # [ t ] = Vector t;"),
            0x1cb5_c415
        );
        assert_eq!(constructor_id("true = True;"), 0x3fed_d339);
    }

    #[test]
    fn whitespace_comments_and_vector_parens_are_normalized() {
        let a = constructor_id(
            "client.workerTypes   types:(vector client.workerType)\n  = client.WorkerTypes; // x",
        );
        let b = constructor_id(
            "client.workerTypes types:vector client.workerType = client.WorkerTypes",
        );
        assert_eq!(a, b);
        assert_eq!(a, 0xf64e_0e01);
    }

    #[test]
    fn explicit_id_wins() {
        assert_eq!(
            constructor_id("client.workerInstanceV2#3ea93d00 flags:# coefficient:int = X;"),
            0x3ea9_3d00
        );
        let (line, id) = normalize_combinator("a.b#0000abcd x:int = A");
        assert_eq!(line, "a.b x:int = A");
        assert_eq!(id, Some(0xabcd));
    }

    #[test]
    fn parse_handles_sections_and_multiline() {
        let text = "int ? = Int;\nboolTrue = Bool;\n---functions---\n\
                    foo.bar\n  a:int\n  b:(vector long) = foo.Bar;\n---types---\n\
                    ---functions---\n---types---\nfoo.baz = foo.Baz;";
        let entries = parse_schema(text);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["boolTrue", "foo.bar", "foo.baz"]);
        assert!(!entries[0].is_function);
        assert!(entries[1].is_function);
        assert!(!entries[2].is_function);
        assert_eq!(entries[1].line, "foo.bar a:int b:vector long = foo.Bar");
        assert_eq!(entries[1].result_type, "foo.Bar");
        assert_eq!(entries[2].line, "foo.baz = foo.Baz");
    }
}
