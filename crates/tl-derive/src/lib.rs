//! Derive macros for `cocoon-tl`: `TlWrite`, `TlRead` and `TlDebug` for structs (one TL
//! constructor each) and enums (one boxed struct per variant). The attribute language is
//! documented in `cocoon_tl`'s crate docs; this crate only generates code and holds no runtime
//! logic (it cannot: a proc-macro crate exports nothing else).
//!
//! - `attrs`: parsing `#[tl(...)]`.
//! - `schema`: the compile-time id rule and field list of a `schema = "..."` line.
//! - `structs` / `enums`: the generated impls.
//!
//! `TlWrite` also emits the id traits (`TlBoxed`, `TlConstructor`, `TlEnum`), the `From` impls of
//! enums and the schema check, so each is emitted once even when several derives are used.

use proc_macro::TokenStream;
use syn::{parse_macro_input, Data, DeriveInput};

mod attrs;
mod enums;
mod schema;
mod structs;

/// Derives `cocoon_tl::TlWrite` (plus `TlBoxed`/`TlConstructor` or `TlEnum`).
#[proc_macro_derive(TlWrite, attributes(tl))]
pub fn derive_tl_write(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let result = match &input.data {
        Data::Struct(s) => structs::expand_write(&input, s),
        Data::Enum(e) => enums::expand_write(&input, e),
        Data::Union(_) => Err(syn::Error::new_spanned(
            &input.ident,
            "unions are not TL types",
        )),
    };
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `cocoon_tl::TlRead`.
#[proc_macro_derive(TlRead, attributes(tl))]
pub fn derive_tl_read(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let result = match &input.data {
        Data::Struct(s) => structs::expand_read(&input, s),
        Data::Enum(e) => enums::expand_read(&input, e),
        Data::Union(_) => Err(syn::Error::new_spanned(
            &input.ident,
            "unions are not TL types",
        )),
    };
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives a `Debug` that prints `Bytes` fields as `<N bytes>` and `#[tl(redact)]` fields as
/// `<redacted>`, so messages can be logged without their payloads.
#[proc_macro_derive(TlDebug, attributes(tl))]
pub fn derive_tl_debug(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let result = match &input.data {
        Data::Struct(s) => structs::expand_debug(&input, s),
        Data::Enum(e) => enums::expand_debug(&input, e),
        Data::Union(_) => Err(syn::Error::new_spanned(
            &input.ident,
            "unions are not TL types",
        )),
    };
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

#[cfg(test)]
mod tests;
