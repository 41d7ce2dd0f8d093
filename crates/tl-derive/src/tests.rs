//! Expansion tests: the errors a wrong declaration must produce (the happy paths are exercised
//! by `cocoon-tl`'s tests, which can run the generated code).

use syn::{parse_quote, Data, DeriveInput};

use crate::{enums, schema, structs};

fn write_error(input: DeriveInput) -> String {
    let result = match &input.data {
        Data::Struct(s) => structs::expand_write(&input, s),
        Data::Enum(e) => enums::expand_write(&input, e),
        Data::Union(_) => unreachable!(),
    };
    match result {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn schema_id_and_fields() {
    let line = schema::parse_line(
        "client.workerTypes types:(vector client.workerType) = client.WorkerTypes;",
    )
    .unwrap();
    assert_eq!(line.name, "client.workerTypes");
    assert_eq!(line.id, 0xf64e_0e01);
    assert_eq!(
        line.fields,
        [("types".to_string(), "vector client.workerType".to_string())]
    );
    let line = schema::parse_line("worker.params#869c73ed flags:# a:flags.0?Bool = W").unwrap();
    assert_eq!(line.id, 0x869c_73ed);
    assert_eq!(line.fields[1].1, "flags.0?Bool");
    assert!(schema::parse_line("no.equals a:int").is_err());
}

#[test]
fn correct_declaration_expands() {
    let ok: DeriveInput = parse_quote! {
        #[tl(boxed, schema = "a.b flags:# x:flags.0?int t:flags.1?true y:long = A")]
        struct AB {
            #[tl(flags)] flags: u32,
            #[tl(flag = 0)] x: Option<i32>,
            #[tl(flag = 1, flag_true)] t: bool,
            y: i64,
        }
    };
    assert_eq!(write_error(ok), "");
}

#[test]
fn wrong_field_name_or_order() {
    let e = write_error(parse_quote! {
        #[tl(boxed, schema = "a.b x:int y:long = A")]
        struct AB { y: i64, x: i32 }
    });
    assert!(e.contains("schema field here is `x`"), "{e}");
}

#[test]
fn wrong_field_count() {
    let e = write_error(parse_quote! {
        #[tl(boxed, schema = "a.b x:int y:long = A")]
        struct AB { x: i32 }
    });
    assert!(e.contains("has 2 fields"), "{e}");
}

#[test]
fn missing_flag_attributes() {
    let e = write_error(parse_quote! {
        #[tl(boxed, schema = "a.b flags:# x:flags.0?int = A")]
        struct AB { #[tl(flags)] flags: u32, x: Option<i32> }
    });
    assert!(e.contains("flag = 0"), "{e}");
    let e = write_error(parse_quote! {
        #[tl(boxed, schema = "a.b flags:# x:flags.2?int = A")]
        struct AB { #[tl(flags)] flags: u32, #[tl(flag = 0)] x: Option<i32> }
    });
    assert!(e.contains("flag = 2"), "{e}");
    let e = write_error(parse_quote! {
        #[tl(boxed, schema = "a.b flags:# = A")]
        struct AB { flags: u32 }
    });
    assert!(e.contains("#[tl(flags)]"), "{e}");
}

#[test]
fn flag_fields_need_option_and_flags_first() {
    let e = write_error(parse_quote! {
        #[tl(boxed, id = 1)]
        struct AB { #[tl(flags)] flags: u32, #[tl(flag = 0)] x: i32 }
    });
    assert!(e.contains("must be an Option"), "{e}");
    let e = write_error(parse_quote! {
        #[tl(boxed, id = 1)]
        struct AB { #[tl(flag = 0)] x: Option<i32>, #[tl(flags)] flags: u32 }
    });
    assert!(e.contains("after the `flags` field"), "{e}");
}

#[test]
fn boxed_needs_an_id_and_ids_must_agree() {
    let e = write_error(parse_quote! {
        #[tl(boxed)]
        struct AB { x: i32 }
    });
    assert!(e.contains("needs `id"), "{e}");
    let e = write_error(parse_quote! {
        #[tl(boxed, id = 0x12345678, schema = "tcp.ping id:long = tcp.Packet")]
        struct AB { id: i64 }
    });
    assert!(e.contains("0xbbe9627c"), "{e}");
}

#[test]
fn enum_variants_must_wrap_one_type() {
    let e = write_error(parse_quote! {
        enum E { A(X, Y) }
    });
    assert!(e.contains("exactly one boxed struct"), "{e}");
    let e = write_error(parse_quote! {
        enum E { A { x: X } }
    });
    assert!(e.contains("exactly one boxed struct"), "{e}");
}

#[test]
fn generics_are_refused() {
    let e = write_error(parse_quote! {
        #[tl(boxed, id = 1)]
        struct AB<T> { x: T }
    });
    assert!(e.contains("generic"), "{e}");
}
