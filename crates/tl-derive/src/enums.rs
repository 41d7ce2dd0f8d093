//! Code generation for boxed enums: each variant wraps one boxed struct, decoding dispatches on
//! the leading constructor id, unknown ids are `TlError::UnknownConstructor`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{spanned::Spanned, DataEnum, DeriveInput, Fields, Ident, Type};

use crate::structs::reject_generics;

struct Variant {
    ident: Ident,
    ty: Type,
}

fn variants(data: &DataEnum) -> syn::Result<Vec<Variant>> {
    let mut out = Vec::new();
    for v in &data.variants {
        match &v.fields {
            Fields::Unnamed(u) if u.unnamed.len() == 1 => out.push(Variant {
                ident: v.ident.clone(),
                ty: u.unnamed[0].ty.clone(),
            }),
            _ => {
                return Err(syn::Error::new(
                    v.span(),
                    "each variant of a TL enum must wrap exactly one boxed struct: `Name(Type)`",
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(syn::Error::new(data.variants.span(), "empty TL enum"));
    }
    Ok(out)
}

pub fn expand_write(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let vars = variants(data)?;
    let name = &input.ident;
    let idents: Vec<_> = vars.iter().map(|v| &v.ident).collect();
    let tys: Vec<_> = vars.iter().map(|v| &v.ty).collect();
    let count = vars.len();

    // From<Variant> for the enum, unless two variants share a type (then From is ambiguous).
    let mut from_impls = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        let ty = &v.ty;
        let dup = vars.iter().enumerate().any(|(j, w)| {
            j != i
                && quote!(#ty).to_string() == {
                    let t = &w.ty;
                    quote!(#t).to_string()
                }
        });
        if !dup {
            let ident = &v.ident;
            from_impls.push(quote! {
                impl ::core::convert::From<#ty> for #name {
                    fn from(v: #ty) -> Self {
                        #name::#ident(v)
                    }
                }
            });
        }
    }

    Ok(quote! {
        impl ::cocoon_tl::TlWrite for #name {
            fn write_to(&self, out: &mut ::std::vec::Vec<u8>) {
                match self {
                    #(#name::#idents(v) => ::cocoon_tl::TlWrite::write_to(v, out),)*
                }
            }
            fn encoded_len(&self) -> usize {
                match self {
                    #(#name::#idents(v) => ::cocoon_tl::TlWrite::encoded_len(v),)*
                }
            }
        }

        impl ::cocoon_tl::TlEnum for #name {
            const CONSTRUCTOR_IDS: &'static [u32] = &[
                #(<#tys as ::cocoon_tl::TlBoxed>::ID,)*
            ];
            fn constructor_id(&self) -> u32 {
                match self {
                    #(#name::#idents(_) => <#tys as ::cocoon_tl::TlBoxed>::ID,)*
                }
            }
            fn tl_name(&self) -> &'static str {
                match self {
                    #(#name::#idents(_) => <#tys as ::cocoon_tl::TlConstructor>::TL_NAME,)*
                }
            }
        }

        // Two variants with one id would make dispatch ambiguous: refuse to compile.
        const _: () = {
            let ids: [u32; #count] = [#(<#tys as ::cocoon_tl::TlBoxed>::ID,)*];
            let mut i = 0;
            while i < ids.len() {
                let mut j = i + 1;
                while j < ids.len() {
                    assert!(ids[i] != ids[j], "two variants of a TL enum share a constructor id");
                    j += 1;
                }
                i += 1;
            }
        };

        #(#from_impls)*
    })
}

pub fn expand_read(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let vars = variants(data)?;
    let name = &input.ident;
    let arms = vars.iter().map(|v| {
        let ident = &v.ident;
        let ty = &v.ty;
        quote! {
            if __id == <#ty as ::cocoon_tl::TlBoxed>::ID {
                return <#ty as ::cocoon_tl::TlRead>::read_from(r).map(#name::#ident);
            }
        }
    });
    Ok(quote! {
        impl ::cocoon_tl::TlRead for #name {
            const MIN_ENCODED_LEN: usize = 4;
            fn read_from(
                r: &mut ::cocoon_tl::TlReader,
            ) -> ::core::result::Result<Self, ::cocoon_tl::TlError> {
                let __id = r.peek_u32()?;
                #(#arms)*
                ::core::result::Result::Err(::cocoon_tl::TlError::UnknownConstructor(__id))
            }
        }
    })
}

pub fn expand_debug(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    reject_generics(input)?;
    let vars = variants(data)?;
    let name = &input.ident;
    let arms = vars.iter().map(|v| {
        let ident = &v.ident;
        let label = ident.to_string();
        quote!(#name::#ident(v) => f.debug_tuple(#label).field(v).finish(),)
    });
    Ok(quote! {
        impl ::core::fmt::Debug for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    #(#arms)*
                }
            }
        }
    })
}
