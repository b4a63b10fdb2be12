//! `#[aggregate(stream = "...", events = ...)]`: the `Aggregate` impl and fold dispatch from an
//! impl block of fold methods.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, LitStr};

use crate::args;
use crate::ctxt::Ctxt;

const KEYS: &[&str] = &["stream", "events", "snapshot", "create", "crate"];

#[derive(Default)]
struct Args {
    stream: Option<LitStr>,
    /// The string given to an unknown key (a misspelled `stream`), which the expansion uses in
    /// its place, so that the one error at the typo is the only one.
    stand_in: Option<LitStr>,
    /// The type given to an unknown key (a misspelled `events`), likewise.
    events_stand_in: Option<syn::Type>,
    /// The error for a missing `stream` or `events`, emitted where the expansion would use the
    /// value (a `compile_error!` as the stream or the event type), so that the aggregate is still
    /// generated and its commands, projections and callers add no error of their own.
    missing_stream: Option<syn::Error>,
    missing_events: Option<syn::Error>,
    events: Option<syn::Type>,
    snapshot: Option<LitStr>,
    create: Option<syn::Path>,
    krate: Option<syn::Path>,
}

/// A fold method: its name and the event type it takes, by value or by reference.
struct Fold<'a> {
    method: &'a syn::Ident,
    event: &'a syn::Type,
    by_value: bool,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let name = args::impl_type_name(&item);
    let args = parse_args(&mut cx, attr, &name);
    let input: ItemImpl = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            cx.error_spanned_by(
                &item,
                format!(
                    "`#[aggregate]` goes on the `impl` block of an aggregate's fold methods, e.g. \
                     `impl {name} {{ fn opened(&mut self, event: &Opened) {{ .. }} }}`"
                ),
            );
            return cx.finish(item);
        }
    };
    let folds = check(&mut cx, &args, &input);
    let expanded = generate(&args, &input, &folds);
    cx.finish(expanded)
}

fn parse_args(cx: &mut Ctxt, attr: TokenStream, name: &str) -> Args {
    let mut args = Args::default();
    let span = attr.span();
    let mut unknown = Vec::new();
    let parsed = args::parse(cx, attr, |meta| {
        if meta.path.is_ident("stream") {
            args::once(&meta, &args.stream)?;
            let stream: LitStr = meta.value()?.parse()?;
            if stream.value().is_empty() {
                return Err(syn::Error::new(
                    stream.span(),
                    "the stream name cannot be empty",
                ));
            }
            args.stream = Some(stream);
        } else if meta.path.is_ident("events") {
            args::once(&meta, &args.events)?;
            args.events = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("snapshot") {
            args::once(&meta, &args.snapshot)?;
            args.snapshot = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("create") {
            args::once(&meta, &args.create)?;
            args.create = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("crate") {
            args::once(&meta, &args.krate)?;
            args.krate = Some(args::crate_value(&meta)?);
        } else {
            match args::skip_unknown(&meta, "aggregate", KEYS, &mut unknown)? {
                Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(value),
                    ..
                })) => {
                    args.stand_in.get_or_insert(value);
                }
                // A misspelled `events`: its type stands in the same way.
                Some(syn::Expr::Path(path)) if path.qself.is_none() => {
                    args.events_stand_in
                        .get_or_insert(syn::Type::Path(syn::TypePath {
                            qself: None,
                            path: path.path,
                        }));
                }
                _ => {}
            }
        }
        Ok(())
    });
    let parsed = parsed && unknown.is_empty();
    for error in unknown {
        cx.push(error);
    }
    let example = format!(
        "`#[aggregate(stream = \"{}\", events = {name}Event)]`",
        args::example_stream(name)
    );
    if parsed && args.stream.is_none() {
        args.missing_stream = Some(syn::Error::new(
            span,
            format!("missing `stream`: {example}"),
        ));
    }
    if parsed && args.events.is_none() {
        args.missing_events = Some(syn::Error::new(
            span,
            format!("missing `events`, the event enum this aggregate folds: {example}"),
        ));
    }
    args
}

/// What a fold method looks like, shown with the user's method `sig` and its event type (or
/// one named after the method).
fn fold_shape(sig: &syn::Signature) -> String {
    let event = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        })
        .map(|ty| match ty {
            syn::Type::Reference(reference) => &*reference.elem,
            other => other,
        })
        .find(|ty| matches!(ty, syn::Type::Path(_)))
        .map_or_else(|| args::pascal_case(&sig.ident.to_string()), args::text);
    format!(
        "fold methods take `&mut self` and one event, by reference or by value: \
         `fn {}(&mut self, event: &{event})` \
         (every function of an `#[aggregate]` block is a fold method; put helpers in another `impl` block)",
        sig.ident
    )
}

fn check<'a>(cx: &mut Ctxt, _args: &Args, input: &'a ItemImpl) -> Vec<Fold<'a>> {
    if let Some((_, path, _)) = &input.trait_ {
        let name = args::impl_type_name(&quote::ToTokens::to_token_stream(input));
        cx.error_spanned_by(
            path,
            format!(
                "`#[aggregate]` goes on an inherent `impl` block (`impl {name} {{ .. }}`), not a trait impl"
            ),
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "a generic aggregate is not supported");
    }
    let mut folds: Vec<Fold<'a>> = Vec::new();
    for item in &input.items {
        let ImplItem::Fn(method) = item else { continue };
        let sig = &method.sig;
        if let Some(asyncness) = &sig.asyncness {
            cx.error_spanned_by(asyncness, "fold methods cannot be `async`: folding is pure");
            continue;
        }
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(&sig.generics, fold_shape(sig));
            continue;
        }
        if let syn::ReturnType::Type(_, ty) = &sig.output
            && !matches!(&**ty, syn::Type::Tuple(unit) if unit.elems.is_empty())
        {
            cx.error_spanned_by(
                ty,
                "fold methods return nothing; they change `self` (put helpers in another `impl` block)",
            );
            continue;
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some() && receiver.mutability.is_some() => {}
            Some(other) => {
                cx.error_spanned_by(other, fold_shape(sig));
                continue;
            }
            None => {
                cx.error_spanned_by(&sig.ident, fold_shape(sig));
                continue;
            }
        }
        let (event, by_value) = match (inputs.next(), inputs.next()) {
            (Some(FnArg::Typed(arg)), None) => match &*arg.ty {
                syn::Type::Reference(reference) if reference.mutability.is_none() => {
                    (&*reference.elem, false)
                }
                by_value @ syn::Type::Path(_) => (by_value, true),
                other => {
                    cx.error_spanned_by(other, fold_shape(sig));
                    continue;
                }
            },
            (_, Some(extra)) => {
                cx.error_spanned_by(extra, fold_shape(sig));
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.inputs, fold_shape(sig));
                continue;
            }
        };
        let key = quote!(#event).to_string();
        if let Some(first) = folds.iter().find(|fold| {
            let other = fold.event;
            quote!(#other).to_string() == key
        }) {
            cx.error_spanned_by(
                event,
                format!(
                    "`{}` is already folded by `{}`; one fold method per event type",
                    key.replace(' ', ""),
                    first.method
                ),
            );
            continue;
        }
        folds.push(Fold {
            method: &sig.ident,
            event,
            by_value,
        });
    }
    folds
}

fn generate(args: &Args, input: &ItemImpl, folds: &[Fold<'_>]) -> TokenStream {
    let stream = match (
        args.stream.as_ref().or(args.stand_in.as_ref()),
        &args.missing_stream,
    ) {
        (Some(stream), _) => quote!(#stream),
        (None, Some(missing)) => missing.to_compile_error(),
        (None, None) => return quote!(#input),
    };
    let events = args.events.as_ref().or(args.events_stand_in.as_ref());
    if events.is_none() && args.missing_events.is_none() {
        return quote!(#input);
    }
    let krate = args::runtime_path(args.krate.clone());
    let self_ty = &input.self_ty;
    let event = syn::Ident::new("event", proc_macro2::Span::mixed_site());
    let variant = syn::Ident::new("variant", proc_macro2::Span::mixed_site());
    let dispatch = folds.iter().map(
        |Fold {
             method,
             event: ty,
             by_value,
         }| {
            let arg = if *by_value {
                quote!(#variant)
            } else {
                quote!(&#variant)
            };
            quote_spanned! {ty.span()=>
                let #event = match <#ty as #krate::__private::EventOf<<Self as #krate::Aggregate>::Event>>::take(#event) {
                    ::core::result::Result::Ok(#variant) => return Self::#method(self, #arg),
                    ::core::result::Result::Err(#event) => #event,
                };
            }
        },
    );
    let create = match &args.create {
        Some(path) => quote!(#path()),
        None => quote_spanned!(self_ty.span()=> <Self as ::core::default::Default>::default()),
    };
    let snapshot = match &args.snapshot {
        Some(version) => {
            // Only the paths carry the version's span (a missing `Serialize` points at it):
            // `self` and `value` keep the expansion's, for a version written by `macro_rules!`.
            let to = quote_spanned! {version.span()=>
                #krate::__private::serde_json::to_value
            };
            let to = quote!(#to(self));
            let from = quote_spanned! {version.span()=>
                <Self as #krate::__private::serde::Deserialize>::deserialize
            };
            let from = quote!(#from(value));
            quote! {
                const SNAPSHOT: ::core::option::Option<&'static str> = ::core::option::Option::Some(#version);

                fn to_snapshot(&self) -> ::core::result::Result<#krate::__private::serde_json::Value, #krate::__private::serde_json::Error> {
                    #to
                }

                fn from_snapshot(value: &#krate::__private::serde_json::Value) -> ::core::result::Result<Self, #krate::__private::serde_json::Error> {
                    #from
                }
            }
        }
        None => quote!(),
    };
    // `events` must be an `#[event]` enum: asserted once, at its name; when it is not, the
    // aggregate's event type is an error type and nothing that uses it gives another error.
    // Without `events`, the type is the `compile_error!` saying so, to the same effect.
    let (check, checked_events, event_stream) = match events {
        Some(events) => {
            let message = format!(
                "`{0}` is not an event enum: add `#[event]` to `enum {0}` (an aggregate folds the events of an `#[event]` enum)",
                args::text(events)
            );
            // Named after the aggregate (unique in its module), which rustc's label shows.
            let name = quote::format_ident!("{}_events", args::impl_type_name(&quote!(#input)));
            let assertion = quote_spanned! {events.span()=>
                ::core::assert!(#krate::__private::Probe::<#events>::IS_EVENT, #message)
            };
            let check = quote! {
                #[doc(hidden)]
                #[allow(non_upper_case_globals)]
                const #name: ::core::primitive::bool = {
                    #[allow(unused_imports)]
                    use #krate::__private::ProbeFallback as _;
                    #assertion;
                    true
                };
            };
            let checked_events = quote! {
                <#krate::__private::Checked<#events, #name> as #krate::__private::Pass>::Out
            };
            // The bound holds for an `#[event]` enum; for another enum, it keeps this impl from
            // adding a second error to the one above. Spanned at `events`, so that a second
            // aggregate of the same enum is one error there, pointing at the first one's.
            let event_stream = quote_spanned! {events.span()=>
                impl #krate::__private::EventStream for #events where for<'evt> #events: #krate::Event {
                    const STREAM: &'static str = <#self_ty as #krate::Aggregate>::STREAM;
                }
            };
            (check, checked_events, event_stream)
        }
        None => {
            let missing = args
                .missing_events
                .as_ref()
                .map(syn::Error::to_compile_error);
            // The constant is the error, so the type is an error type (a `compile_error!` as
            // the type itself would be `()`).
            let checked_events = quote! {
                <#krate::__private::Checked<(), { #missing }> as #krate::__private::Pass>::Out
            };
            (quote!(), checked_events, quote!())
        }
    };
    quote! {
        #input

        #check

        impl #krate::Aggregate for #self_ty {
            #[doc(hidden)]
            type Event = #checked_events;
            const STREAM: &'static str = #stream;
            #snapshot

            fn create() -> Self {
                #create
            }

            #[allow(unused_variables)]
            fn fold(&mut self, #event: <Self as #krate::Aggregate>::Event) {
                #(#dispatch)*
            }
        }

        #event_stream
    }
}
