//! Parsing of `#[tl(...)]` attributes on containers and fields. Nothing here generates code.

use proc_macro2::Span;
use syn::{Attribute, LitInt, LitStr};

use crate::schema::{parse_line, SchemaLine};

/// Container attributes: `boxed`, `id = 0x..`, `name = ".."`, `schema = ".."`.
#[derive(Default)]
pub struct ContainerAttrs {
    pub boxed: bool,
    pub id: Option<u32>,
    pub name: Option<String>,
    pub schema: Option<(SchemaLine, Span)>,
}

/// Field attributes: `flags`, `flag = N`, `flag_true`, `redact`.
#[derive(Default)]
pub struct FieldAttrs {
    pub flags: bool,
    pub flag: Option<u32>,
    pub flag_true: bool,
    pub redact: bool,
}

pub fn container(attrs: &[Attribute]) -> syn::Result<ContainerAttrs> {
    let mut out = ContainerAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tl")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("boxed") {
                out.boxed = true;
            } else if meta.path.is_ident("id") {
                let lit: LitInt = meta.value()?.parse()?;
                out.id = Some(lit.base10_parse::<u32>()?);
            } else if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                out.name = Some(lit.value());
            } else if meta.path.is_ident("schema") {
                let lit: LitStr = meta.value()?.parse()?;
                let line = parse_line(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))?;
                out.schema = Some((line, lit.span()));
            } else {
                return Err(meta.error("unknown tl attribute (expected boxed, id, name, schema)"));
            }
            Ok(())
        })?;
    }
    if let (Some((line, span)), Some(id)) = (&out.schema, out.id) {
        if line.id != id {
            return Err(syn::Error::new(
                *span,
                format!(
                    "schema gives id {:#010x} but id = {:#010x} was given",
                    line.id, id
                ),
            ));
        }
    }
    if let (Some((line, span)), Some(name)) = (&out.schema, &out.name) {
        if &line.name != name {
            return Err(syn::Error::new(*span, "schema and name disagree"));
        }
    }
    Ok(out)
}

impl ContainerAttrs {
    /// The constructor id, from `schema` or `id`.
    pub fn id(&self) -> Option<u32> {
        self.schema.as_ref().map(|(l, _)| l.id).or(self.id)
    }

    /// The TL name, from `schema` or `name` (empty if neither).
    pub fn tl_name(&self) -> String {
        self.schema
            .as_ref()
            .map(|(l, _)| l.name.clone())
            .or_else(|| self.name.clone())
            .unwrap_or_default()
    }
}

pub fn field(attrs: &[Attribute]) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tl")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("flags") {
                out.flags = true;
            } else if meta.path.is_ident("flag") {
                let lit: LitInt = meta.value()?.parse()?;
                let bit = lit.base10_parse::<u32>()?;
                if bit >= 32 {
                    return Err(syn::Error::new(lit.span(), "flag bit must be below 32"));
                }
                out.flag = Some(bit);
            } else if meta.path.is_ident("flag_true") {
                out.flag_true = true;
            } else if meta.path.is_ident("redact") {
                out.redact = true;
            } else {
                return Err(meta.error(
                    "unknown tl field attribute (expected flags, flag, flag_true, redact)",
                ));
            }
            Ok(())
        })?;
    }
    Ok(out)
}
