//! Attribute arguments: `key = value` lists with precise errors, and the runtime crate's path.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::meta::ParseNestedMeta;

use crate::ctxt::Ctxt;

/// The error for a key that `attribute` does not know, listing the valid ones and the closest.
pub(crate) fn unknown_key(
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    keys: &[&str],
) -> syn::Error {
    let found = meta.path.get_ident().map_or_else(
        || {
            quote::ToTokens::to_token_stream(&meta.path)
                .to_string()
                .replace(' ', "")
        },
        ToString::to_string,
    );
    let expected = keys
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let suggestion = keys
        .iter()
        .map(|key| (strsim::jaro_winkler(key, &found), key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, key)| format!("; did you mean `{key}`?"))
        .unwrap_or_default();
    meta.error(format!(
        "unknown `{attribute}` argument `{found}`; expected one of: {expected}{suggestion}"
    ))
}

/// Records the error for a key that `attribute` does not know ([`unknown_key`]) in `unknown`,
/// and reads past its value (`key = value` or `key(..)`), so that the keys after it are still
/// read: one mistake, one message. Returns the value of `key = value`.
pub(crate) fn skip_unknown(
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    keys: &[&str],
    unknown: &mut Vec<syn::Error>,
) -> syn::Result<Option<syn::Expr>> {
    Ok(skip_unknown_tokens(meta, attribute, keys, unknown)?
        .and_then(|value| syn::parse2::<syn::Expr>(value).ok()))
}

/// [`skip_unknown`] for a value that need not be an expression (`clent = pub AccountCommands`):
/// returns the tokens of `key = value` up to the next `,`.
pub(crate) fn skip_unknown_tokens(
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    keys: &[&str],
    unknown: &mut Vec<syn::Error>,
) -> syn::Result<Option<TokenStream>> {
    unknown.push(unknown_key(meta, attribute, keys));
    if meta.input.peek(syn::Token![=]) {
        let value = meta.value()?;
        let mut tokens = TokenStream::new();
        while !value.is_empty() && !value.peek(syn::Token![,]) {
            tokens.extend([value.parse::<proc_macro2::TokenTree>()?]);
        }
        return Ok(Some(tokens));
    }
    if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(None)
}

/// Parses `#[name(...)]` arguments with `each`, collecting errors into `cx`.
///
/// Returns whether they parsed: after a bad argument the rest are unread, so callers report
/// missing arguments only when this is `true` (one mistake, one message).
pub(crate) fn parse(
    cx: &mut Ctxt,
    attr: TokenStream,
    each: impl FnMut(ParseNestedMeta<'_>) -> syn::Result<()>,
) -> bool {
    let parser = syn::meta::parser(each);
    match syn::parse::Parser::parse2(parser, attr) {
        Ok(()) => true,
        Err(error) => {
            cx.push(error);
            false
        }
    }
}

/// A `key` or `key = true|false` flag.
pub(crate) fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if meta.input.peek(syn::Token![=]) {
        let value: syn::LitBool = meta.value()?.parse()?;
        Ok(value.value)
    } else {
        Ok(true)
    }
}

/// Rejects a second occurrence of a key.
pub(crate) fn once<T>(meta: &ParseNestedMeta<'_>, slot: &Option<T>) -> syn::Result<()> {
    match slot {
        Some(_) => Err(meta.error(format!(
            "duplicate argument `{}`",
            meta.path
                .get_ident()
                .map_or_else(String::new, ToString::to_string)
        ))),
        None => Ok(()),
    }
}

/// The path of `evt_core` in generated code: the `crate = "..."` override, or found in the
/// caller's `Cargo.toml` (`evt-core`, or the `evt` facade that re-exports it, under any name).
pub(crate) fn runtime_path(custom: Option<syn::Path>) -> TokenStream {
    if let Some(path) = custom {
        return quote!(#path);
    }
    use proc_macro_crate::{FoundCrate, crate_name};
    let found = |name: &str| -> TokenStream {
        let ident = syn::Ident::new(&name.replace('-', "_"), Span::call_site());
        quote!(::#ident)
    };
    match crate_name("evt-core") {
        Ok(FoundCrate::Itself) => found("evt_core"),
        Ok(FoundCrate::Name(name)) => found(&name),
        Err(_) => match crate_name("evt") {
            Ok(FoundCrate::Itself) => found("evt"),
            Ok(FoundCrate::Name(name)) => found(&name),
            Err(_) => found("evt_core"),
        },
    }
}

/// Parses the value of `crate = "path"`.
pub(crate) fn crate_value(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    lit.parse()
}

/// The name of the type an `impl` block is for (`Account` in `impl Account { .. }`), so that
/// examples in messages use the user's own names; for another item, its own name.
pub(crate) fn impl_type_name(item: &TokenStream) -> String {
    let name = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(input)) => match *input.self_ty {
            syn::Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        },
        Ok(syn::Item::Struct(item)) => Some(item.ident.to_string()),
        Ok(syn::Item::Enum(item)) => Some(item.ident.to_string()),
        Ok(syn::Item::Union(item)) => Some(item.ident.to_string()),
        Ok(syn::Item::Fn(item)) => Some(pascal_case(&item.sig.ident.to_string())),
        _ => None,
    };
    name.unwrap_or_else(|| "MyType".to_owned())
}

/// A type name in snake case: `BankAccount` -> `bank_account`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 2);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.extend(ch.to_lowercase());
    }
    snake
}

/// A stream name for the aggregate type `name` in examples: `BankAccount` -> `bank_accounts`.
pub(crate) fn example_stream(name: &str) -> String {
    snake_case(name) + "s"
}

/// A method name as a type name in examples: `manager_added` -> `ManagerAdded`.
pub(crate) fn pascal_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Tokens as a user writes them in a message: `Result < A , B >` -> `Result<A, B>`.
pub(crate) fn text(tokens: &impl quote::ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .replace(' ', "")
        .replace(',', ", ")
}

/// `E` of a written `Result<T, E>`, read from the tokens; `None` for another spelling (an
/// alias), where generated code asks a trait instead.
pub(crate) fn error_type(output: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(path) = output else {
        return None;
    };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (last.ident == "Result", args.args.len(), args.args.last()) {
        (true, 2, Some(syn::GenericArgument::Type(error))) => Some(error),
        _ => None,
    }
}
