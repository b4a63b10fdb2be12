//! `#[event]`: one struct per variant of an event enum, evtstore's stored shape, type names.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, ItemEnum};

use crate::args;
use crate::ctxt::Ctxt;

/// One variant: the struct made from it and its stored type name.
struct Variant<'a> {
    variant: &'a syn::Variant,
    type_name: String,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let mut krate = None;
    let _ = args::parse(&mut cx, attr, |meta| {
        if meta.path.is_ident("crate") {
            args::once(&meta, &krate)?;
            krate = Some(args::crate_value(&meta)?);
            Ok(())
        } else {
            Err(args::unknown_key(&meta, "event", &["crate"]))
        }
    });
    let input: ItemEnum = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            let name = args::impl_type_name(&item);
            cx.error_spanned_by(
                &item,
                format!(
                    "`#[event]` goes on an enum of events, one variant per event type: make \
                     `{name}` a variant of one, e.g. `enum Events {{ {name} {{ .. }} }}`"
                ),
            );
            return cx.finish(item);
        }
    };
    let krate = args::runtime_path(krate);
    let variants = check(&mut cx, &input);
    let missing = check_derives(&mut cx, &input);
    let expanded = generate(&krate, &input, &variants, &missing);
    cx.finish(expanded)
}

fn check<'a>(cx: &mut Ctxt, input: &'a ItemEnum) -> Vec<Variant<'a>> {
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "an event enum cannot be generic");
    }
    if input.variants.is_empty() {
        let name = input.ident.to_string();
        let base = name
            .strip_suffix("Events")
            .or(name.strip_suffix("Event"))
            .unwrap_or(&name);
        cx.error_spanned_by(
            &input.ident,
            format!(
                "an event enum needs at least one variant, e.g. `{base}Created {{ name: String }}`"
            ),
        );
    }
    let mut seen: Vec<String> = Vec::new();
    let mut variants = Vec::new();
    for variant in &input.variants {
        if let Fields::Unnamed(fields) = &variant.fields {
            // Still generated (as a tuple struct), so that code using it does not cascade.
            cx.error_spanned_by(
                fields,
                format!(
                    "event variants have named fields or none: `{} {{ field: Type }}` or `{}`",
                    variant.ident, variant.ident
                ),
            );
        }
        if let Some((_, value)) = &variant.discriminant {
            cx.error_spanned_by(value, "event variants cannot have discriminants");
        }
        if let Fields::Named(fields) = &variant.fields {
            for field in &fields.named {
                if stored_as_type(field) {
                    cx.error_spanned_by(
                        field,
                        "an event field cannot be stored as `type` (fields are stored in \
                         camelCase, so `type_` and `_type` are too): the stored document's \
                         `type` is the event's type name; rename the field",
                    );
                }
            }
        }
        let type_name = camel_case(&variant.ident.to_string());
        if seen.contains(&type_name) {
            cx.error_spanned_by(
                &variant.ident,
                format!("two variants are stored as the event type `{type_name}`"),
            );
            continue;
        }
        seen.push(type_name.clone());
        variants.push(Variant { variant, type_name });
    }
    variants
}

/// Whether a field would be stored under the key `type`: named so once serde's `camelCase` has
/// renamed it (`r#type`, `type_`, `_type`), or renamed so.
fn stored_as_type(field: &syn::Field) -> bool {
    use syn::ext::IdentExt;
    let named_type = field
        .ident
        .as_ref()
        .is_some_and(|ident| camel_case_field(&ident.unraw().to_string()) == "type");
    let renamed_type = field
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .any(|attr| {
            let mut renamed = false;
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let value: syn::LitStr = meta.value()?.parse()?;
                    renamed |= value.value() == "type";
                } else if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
            renamed
        });
    named_type || renamed_type
}

/// The `Event` trait needs `Clone` and `Debug`; say so once rather than in three trait errors.
/// Returns the missing ones, which the expansion derives itself after the error, so that the
/// rest of the crate type-checks: one mistake, one message.
fn check_derives(cx: &mut Ctxt, input: &ItemEnum) -> Vec<&'static str> {
    let mut derived = Vec::new();
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("derive"))
    {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(last) = meta.path.segments.last() {
                derived.push(last.ident.to_string());
            }
            Ok(())
        });
    }
    if let Some(serde) = derived
        .iter()
        .find(|name| *name == "Serialize" || *name == "Deserialize")
    {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "`#[event]` implements serde for the event types itself; remove `{serde}` from the derives"
            ),
        );
    }
    let missing: Vec<_> = ["Debug", "Clone"]
        .into_iter()
        .filter(|name| !derived.iter().any(|derived| derived == name))
        .collect();
    if missing.is_empty() {
        return missing;
    }
    cx.error_spanned_by(
        &input.ident,
        format!(
            "an event enum derives `Debug` and `Clone` (missing: `{}`); add `#[derive(Debug, Clone)]` below `#[event]`",
            missing.join("`, `")
        ),
    );
    missing
}

/// The user's derives, without serde's (which `#[event]` adds itself), for the enum and each
/// struct, plus the `missing` ones that the `Event` trait needs (after their error).
fn derives_without_serde(attrs: &[syn::Attribute], missing: &[&str]) -> TokenStream {
    let mut paths: Vec<syn::Path> = missing
        .iter()
        .map(|name| match *name {
            "Clone" => syn::parse_quote!(::core::clone::Clone),
            _ => syn::parse_quote!(::core::fmt::Debug),
        })
        .collect();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        let parsed = attr.parse_args_with(
            syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
        );
        if let Ok(list) = parsed {
            paths.extend(list.into_iter().filter(|path| {
                !path
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == "Serialize" || last.ident == "Deserialize")
            }));
        }
    }
    if paths.is_empty() {
        quote!()
    } else {
        quote!(#[derive(#(#paths),*)])
    }
}

/// `DepartmentCreated` -> `departmentCreated`, as serde's `camelCase` renames a variant.
fn camel_case(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let mut chars = ident.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A field's name as serde's `rename_all = "camelCase"` stores it: each `_` dropped and the
/// letter after it upper-cased, then the first letter lower-cased (`user_phone` -> `userPhone`,
/// `type_` -> `type`).
fn camel_case_field(field: &str) -> String {
    let mut pascal = String::with_capacity(field.len());
    let mut capitalize = true;
    for ch in field.chars() {
        if ch == '_' {
            capitalize = true;
        } else if capitalize {
            pascal.push(ch.to_ascii_uppercase());
            capitalize = false;
        } else {
            pascal.push(ch);
        }
    }
    let mut chars = pascal.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn is_option(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        _ => false,
    }
}

fn generate(
    krate: &TokenStream,
    input: &ItemEnum,
    variants: &[Variant<'_>],
    missing: &[&str],
) -> TokenStream {
    let vis = &input.vis;
    let name = &input.ident;
    let derives = derives_without_serde(&input.attrs, missing);
    let serde_path = format!("{krate}::__private::serde").replace(' ', "");

    let structs = variants.iter().map(|Variant { variant, .. }| {
        let ident = &variant.ident;
        let attrs = &variant.attrs;
        let body = match &variant.fields {
            Fields::Named(fields) => {
                let fields = fields.named.iter().map(|field| {
                    let attrs = &field.attrs;
                    let ident = &field.ident;
                    let ty = &field.ty;
                    let skip_none = is_option(ty).then(|| {
                        quote!(#[serde(default, skip_serializing_if = "::core::option::Option::is_none")])
                    });
                    quote!(#(#attrs)* #skip_none #vis #ident: #ty)
                });
                quote!({ #(#fields,)* })
            }
            // Rejected by `check`, generated anyway so that its uses type-check.
            Fields::Unnamed(fields) => {
                let fields = fields.unnamed.iter().map(|field| {
                    let attrs = &field.attrs;
                    let ty = &field.ty;
                    quote!(#(#attrs)* #vis #ty)
                });
                quote!((#(#fields,)*);)
            }
            Fields::Unit => quote!(;),
        };
        let rename_all = matches!(variant.fields, Fields::Named(_)).then(|| quote!(, rename_all = "camelCase"));
        quote! {
            #(#attrs)*
            #derives
            #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
            #[serde(crate = #serde_path #rename_all)]
            #vis struct #ident #body
        }
    });

    let other_attrs = input
        .attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("derive"));
    let enum_attrs = quote!(#(#other_attrs)* #derives);
    let enum_variants = variants.iter().map(|Variant { variant, .. }| {
        let ident = &variant.ident;
        let doc = format!("The [`{ident}`] event.");
        quote!(#[doc = #doc] #ident(#ident))
    });
    let type_names: Vec<&str> = variants.iter().map(|v| v.type_name.as_str()).collect();

    let per_variant = variants.iter().map(|Variant { variant, type_name }| {
        let ident = &variant.ident;
        let from_json = match &variant.fields {
            Fields::Unit => quote!(::core::result::Result::Ok(#ident)),
            _ => quote!(#krate::__private::decode::<Self>(json)),
        };
        quote! {
            impl ::core::convert::From<#ident> for #name {
                fn from(event: #ident) -> Self {
                    #name::#ident(event)
                }
            }
            impl #krate::__private::EventVariant for #ident {
                type Event = #name;
                const TYPE: &'static str = #type_name;
                fn from_json(
                    json: &#krate::__private::serde_json::value::RawValue,
                ) -> ::core::result::Result<Self, #krate::__private::serde_json::Error> {
                    let _ = json;
                    #from_json
                }
            }
            impl #krate::__private::EventOf<#name> for #ident {
                #[allow(unreachable_patterns)]
                fn take(event: #name) -> ::core::result::Result<Self, #name> {
                    match event {
                        #name::#ident(event) => ::core::result::Result::Ok(event),
                        other => ::core::result::Result::Err(other),
                    }
                }
            }
            impl #krate::__private::IntoEvents<#name> for #ident {
                fn into_events(self) -> #krate::__private::Vec<#name> {
                    #krate::__private::vec![#name::#ident(self)]
                }
            }
        }
    });

    let idents: Vec<_> = variants.iter().map(|v| &v.variant.ident).collect();
    let event_type = format_ident!("event_type", span = proc_macro2::Span::mixed_site());
    let json = format_ident!("json", span = proc_macro2::Span::mixed_site());
    let items = quote! {
        #(#structs)*

        #enum_attrs
        // Variant names are the stored event type names, so they often share a prefix.
        #[allow(clippy::enum_variant_names)]
        #vis enum #name {
            #(#enum_variants,)*
        }
    };
    if variants.is_empty() || !input.generics.params.is_empty() {
        return items;
    }
    quote! {
        #items

        #(#per_variant)*

        impl #krate::__private::IntoEvents<#name> for #name {
            fn into_events(self) -> #krate::__private::Vec<#name> {
                #krate::__private::vec![self]
            }
        }

        impl #krate::Event for #name {
            const TYPES: &'static [&'static str] = &[#(#type_names),*];

            fn event_type(&self) -> &'static str {
                match self {
                    #(#name::#idents(_) => <#idents as #krate::__private::EventVariant>::TYPE,)*
                }
            }

            fn to_json(&self) -> ::core::result::Result<#krate::__private::Box<#krate::__private::serde_json::value::RawValue>, #krate::__private::serde_json::Error> {
                match self {
                    #(#name::#idents(event) => #krate::__private::encode(<#idents as #krate::__private::EventVariant>::TYPE, event),)*
                }
            }

            fn from_json(
                #event_type: &str,
                #json: &#krate::__private::serde_json::value::RawValue,
            ) -> ::core::result::Result<Self, #krate::__private::serde_json::Error> {
                match #event_type {
                    #(#type_names => <#idents as #krate::__private::EventVariant>::from_json(#json).map(#name::#idents),)*
                    other => ::core::result::Result::Err(#krate::__private::unknown_type(other, #json, <Self as #krate::Event>::TYPES)),
                }
            }
        }
    }
}
