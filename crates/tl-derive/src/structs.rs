//! Code generation for structs: the bare/boxed codec, flags handling, the id traits, and the
//! compile-time check of fields against a `schema` line.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{spanned::Spanned, DataStruct, DeriveInput, Fields, Ident, Type};

use crate::attrs::{self, ContainerAttrs};

/// How one field travels on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Always present.
    Plain,
    /// The `#` flags word.
    Flags,
    /// `flags.N?T`: an `Option<T>` present iff bit N is set.
    Opt(u32),
    /// `flags.N?true`: a `bool` that is bit N, nothing on the wire.
    True(u32),
}

pub struct Field {
    pub ident: Ident,
    pub ty: Type,
    pub kind: Kind,
    pub redact: bool,
}

/// A validated struct: its container attributes and fields.
pub struct Model {
    pub attrs: ContainerAttrs,
    pub fields: Vec<Field>,
    pub unit: bool,
}

pub fn model(input: &DeriveInput, data: &DataStruct) -> syn::Result<Model> {
    let attrs = attrs::container(&input.attrs)?;
    let (raw_fields, unit) = match &data.fields {
        Fields::Named(n) => (n.named.iter().collect::<Vec<_>>(), false),
        Fields::Unit => (Vec::new(), true),
        Fields::Unnamed(u) => {
            return Err(syn::Error::new(
                u.span(),
                "TL derive needs named fields (or a unit struct)",
            ))
        }
    };
    let mut fields = Vec::new();
    let mut flags_seen = false;
    for f in raw_fields {
        let fa = attrs::field(&f.attrs)?;
        let ident = f
            .ident
            .clone()
            .ok_or_else(|| syn::Error::new(f.span(), "unnamed field"))?;
        let kind = match (fa.flags, fa.flag, fa.flag_true) {
            (true, None, false) => {
                if flags_seen {
                    return Err(syn::Error::new(
                        f.span(),
                        "only one `flags` field is supported",
                    ));
                }
                flags_seen = true;
                Kind::Flags
            }
            (false, Some(bit), flag_true) => {
                if !flags_seen {
                    return Err(syn::Error::new(
                        f.span(),
                        "a `flag = N` field must come after the `flags` field",
                    ));
                }
                if flag_true {
                    Kind::True(bit)
                } else {
                    if !is_option(&f.ty) {
                        return Err(syn::Error::new(
                            f.ty.span(),
                            "a `flag = N` field must be an Option<T> (or add flag_true on a bool)",
                        ));
                    }
                    Kind::Opt(bit)
                }
            }
            (false, None, false) => Kind::Plain,
            _ => {
                return Err(syn::Error::new(
                    f.span(),
                    "use `flags`, or `flag = N`, or `flag = N, flag_true`",
                ))
            }
        };
        fields.push(Field {
            ident,
            ty: f.ty.clone(),
            kind,
            redact: fa.redact,
        });
    }
    if attrs.boxed && attrs.id().is_none() {
        return Err(syn::Error::new(
            Span::call_site(),
            "a boxed TL struct needs `id = 0x...` or `schema = \"...\"`",
        ));
    }
    Ok(Model {
        attrs,
        fields,
        unit,
    })
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        _ => false,
    }
}

/// Whether a field's type is `Bytes` (printed as a length by `TlDebug`).
pub fn is_bytes(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Bytes"),
        _ => false,
    }
}

fn field_name(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").unwrap_or(&s).to_string()
}

/// Checks field names, order and flag attributes against the `schema` line, if there is one.
fn check_schema(model: &Model) -> syn::Result<()> {
    let Some((line, span)) = &model.attrs.schema else {
        return Ok(());
    };
    if line.fields.len() != model.fields.len() {
        return Err(syn::Error::new(
            *span,
            format!(
                "schema `{}` has {} fields, the struct has {}",
                line.name,
                line.fields.len(),
                model.fields.len()
            ),
        ));
    }
    let flags_name = model
        .fields
        .iter()
        .find(|f| f.kind == Kind::Flags)
        .map(|f| field_name(&f.ident));
    for (f, (sname, stype)) in model.fields.iter().zip(&line.fields) {
        let name = field_name(&f.ident);
        if &name != sname {
            return Err(syn::Error::new(
                f.ident.span(),
                format!("schema field here is `{sname}`, not `{name}`"),
            ));
        }
        let expected = if stype == "#" {
            Kind::Flags
        } else if let Some((cond, inner)) = stype.split_once('?') {
            let (fname, bit) = cond
                .split_once('.')
                .ok_or_else(|| syn::Error::new(*span, format!("cannot read condition `{cond}`")))?;
            if Some(fname.to_string()) != flags_name {
                return Err(syn::Error::new(
                    f.ident.span(),
                    format!("condition uses `{fname}`, which is not the flags field"),
                ));
            }
            let bit: u32 = bit
                .parse()
                .map_err(|_| syn::Error::new(*span, format!("cannot read flag bit in `{cond}`")))?;
            if inner == "true" {
                Kind::True(bit)
            } else {
                Kind::Opt(bit)
            }
        } else {
            Kind::Plain
        };
        if expected != f.kind {
            let want = match expected {
                Kind::Plain => "no flag attribute".to_string(),
                Kind::Flags => "#[tl(flags)]".to_string(),
                Kind::Opt(b) => format!("#[tl(flag = {b})] on an Option"),
                Kind::True(b) => format!("#[tl(flag = {b}, flag_true)] on a bool"),
            };
            return Err(syn::Error::new(
                f.ident.span(),
                format!("schema type `{stype}` needs {want}"),
            ));
        }
    }
    Ok(())
}

/// Bits owned by optional fields, and which of those bits are shared by several fields.
fn flag_bits(model: &Model) -> (u32, u32) {
    let mut mask = 0u32;
    let mut shared = 0u32;
    for f in &model.fields {
        if let Kind::Opt(b) | Kind::True(b) = f.kind {
            let bit = 1u32 << b;
            if mask & bit != 0 {
                shared |= bit;
            }
            mask |= bit;
        }
    }
    (mask, shared)
}

/// The statement computing `__tl_flags` for encoding (empty without a flags field).
fn flags_value(model: &Model) -> TokenStream {
    let Some(flags) = model.fields.iter().find(|f| f.kind == Kind::Flags) else {
        return quote!();
    };
    let (mask, _) = flag_bits(model);
    let fident = &flags.ident;
    let parts = model.fields.iter().filter_map(|f| {
        let ident = &f.ident;
        match f.kind {
            Kind::Opt(b) => {
                let bit = 1u32 << b;
                Some(quote!(if self.#ident.is_some() { #bit } else { 0u32 }))
            }
            Kind::True(b) => {
                let bit = 1u32 << b;
                Some(quote!(if self.#ident { #bit } else { 0u32 }))
            }
            _ => None,
        }
    });
    quote! {
        let __tl_flags: u32 = (self.#fident & !#mask) #(| #parts)*;
    }
}

pub fn expand_write(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let model = model(input, data)?;
    check_schema(&model)?;
    let name = &input.ident;
    let (_, shared) = flag_bits(&model);
    let flags_value = flags_value(&model);

    let mut writes = Vec::new();
    let mut lens = Vec::new();
    for f in &model.fields {
        let ident = &f.ident;
        match f.kind {
            Kind::Plain => {
                writes.push(quote!(::cocoon_tl::TlWrite::write_to(&self.#ident, out);));
                lens.push(quote!(::cocoon_tl::TlWrite::encoded_len(&self.#ident)));
            }
            Kind::Flags => {
                writes.push(quote!(::cocoon_tl::TlWrite::write_to(&__tl_flags, out);));
                lens.push(quote!(4usize));
            }
            Kind::Opt(b) => {
                let bit = 1u32 << b;
                let (absent_write, absent_len) = if shared & bit != 0 {
                    // Another field set this bit, so the wire needs a value here too.
                    (
                        quote!(if __tl_flags & #bit != 0 {
                            ::cocoon_tl::__private::write_default(&self.#ident, out);
                        }),
                        quote!(if __tl_flags & #bit != 0 {
                            ::cocoon_tl::__private::default_len(&self.#ident)
                        } else { 0usize }),
                    )
                } else {
                    (quote!({}), quote!(0usize))
                };
                writes.push(quote! {
                    match &self.#ident {
                        ::core::option::Option::Some(v) => ::cocoon_tl::TlWrite::write_to(v, out),
                        ::core::option::Option::None => #absent_write,
                    }
                });
                lens.push(quote! {
                    match &self.#ident {
                        ::core::option::Option::Some(v) => ::cocoon_tl::TlWrite::encoded_len(v),
                        ::core::option::Option::None => #absent_len,
                    }
                });
            }
            Kind::True(_) => {}
        }
    }

    let (id_write, id_len) = if model.attrs.boxed {
        let id = model.attrs.id().unwrap_or_default();
        (
            quote!(out.extend_from_slice(&#id.to_le_bytes());),
            quote!(4usize),
        )
    } else {
        (quote!(), quote!(0usize))
    };

    let id_impls = match model.attrs.id() {
        Some(id) => {
            let tl_name = model.attrs.tl_name();
            let boxed = model.attrs.boxed;
            let boxed_impl = if boxed {
                quote! {
                    impl ::cocoon_tl::TlBoxed for #name {
                        const ID: u32 = #id;
                    }
                }
            } else {
                quote!()
            };
            quote! {
                #boxed_impl
                impl ::cocoon_tl::TlConstructor for #name {
                    const CONSTRUCTOR_ID: u32 = #id;
                    const TL_NAME: &'static str = #tl_name;
                    const BOXED: bool = #boxed;
                }
            }
        }
        None => quote!(),
    };

    let len_flags = if model.fields.iter().any(|f| f.kind == Kind::Flags) {
        flags_value.clone()
    } else {
        quote!()
    };

    Ok(quote! {
        impl ::cocoon_tl::TlWrite for #name {
            #[allow(clippy::identity_op, clippy::bad_bit_mask)]
            fn write_to(&self, out: &mut ::std::vec::Vec<u8>) {
                #flags_value
                #id_write
                #(#writes)*
            }
            #[allow(clippy::identity_op, clippy::bad_bit_mask, unused_variables)]
            fn encoded_len(&self) -> usize {
                #len_flags
                #id_len #(+ #lens)*
            }
        }
        #id_impls
    })
}

pub fn expand_read(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let model = model(input, data)?;
    let name = &input.ident;

    let expect_id = if model.attrs.boxed {
        let id = model.attrs.id().unwrap_or_default();
        quote!(__r.expect_id(#id)?;)
    } else {
        quote!()
    };

    let mut reads = Vec::new();
    let mut inits = Vec::new();
    let mut min_lens = Vec::new();
    for f in &model.fields {
        let ident = &f.ident;
        let var = format_ident!("__f_{}", field_name(ident));
        let ty = &f.ty;
        match f.kind {
            Kind::Plain => {
                reads.push(quote!(let #var: #ty = ::cocoon_tl::TlRead::read_from(__r)?;));
                min_lens.push(quote!(<#ty as ::cocoon_tl::TlRead>::MIN_ENCODED_LEN));
            }
            Kind::Flags => {
                reads.push(quote! {
                    let __tl_flags: u32 = ::cocoon_tl::TlRead::read_from(__r)?;
                    let #var = __tl_flags;
                });
                min_lens.push(quote!(4usize));
            }
            Kind::Opt(b) => {
                let bit = 1u32 << b;
                reads.push(quote! {
                    let #var: #ty = if __tl_flags & #bit != 0 {
                        ::core::option::Option::Some(::cocoon_tl::TlRead::read_from(__r)?)
                    } else {
                        ::core::option::Option::None
                    };
                });
            }
            Kind::True(b) => {
                let bit = 1u32 << b;
                reads.push(quote!(let #var: #ty = __tl_flags & #bit != 0;));
            }
        }
        inits.push(quote!(#ident: #var));
    }
    let construct = if model.unit {
        quote!(#name)
    } else {
        quote!(#name { #(#inits),* })
    };
    let id_min = if model.attrs.boxed {
        quote!(4usize)
    } else {
        quote!(0usize)
    };

    Ok(quote! {
        impl ::cocoon_tl::TlRead for #name {
            const MIN_ENCODED_LEN: usize = #id_min #(+ #min_lens)*;
            fn read_from(
                r: &mut ::cocoon_tl::TlReader,
            ) -> ::core::result::Result<Self, ::cocoon_tl::TlError> {
                r.nested(|__r| {
                    #expect_id
                    #(#reads)*
                    ::core::result::Result::Ok(#construct)
                })
            }
        }
    })
}

pub fn expand_debug(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let model = model(input, data)?;
    let name = &input.ident;
    let label = name.to_string();
    let body = if model.unit {
        quote!(f.write_str(#label))
    } else {
        let entries = model.fields.iter().map(|fld| {
            let ident = &fld.ident;
            let key = field_name(ident);
            if fld.redact {
                quote!(.field(#key, &::cocoon_tl::__private::Redacted))
            } else if is_bytes(&fld.ty) {
                quote!(.field(#key, &::cocoon_tl::__private::BytesLen(self.#ident.len())))
            } else {
                quote!(.field(#key, &self.#ident))
            }
        });
        quote!(f.debug_struct(#label) #(#entries)* .finish())
    };
    Ok(quote! {
        impl ::core::fmt::Debug for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #body
            }
        }
    })
}

pub fn reject_generics(input: &DeriveInput) -> syn::Result<()> {
    if input.generics.params.is_empty() {
        Ok(())
    } else {
        Err(syn::Error::new(
            input.generics.span(),
            "TL derives do not support generic types",
        ))
    }
}
