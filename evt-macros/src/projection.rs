//! `#[projection(bookmark = "...", streams = [...])]` (or `streams = "..."` for one stream): an
//! event handler from an impl block of
//! handler methods, one per event type.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, LitStr};

use crate::args;
use crate::ctxt::Ctxt;

const KEYS: &[&str] = &[
    "bookmark",
    "streams",
    "tail_stream",
    "always_tail_stream",
    "continue_on_error",
    "skip_unknown_events",
    "crate",
];

#[derive(Default)]
struct Args {
    bookmark: Option<LitStr>,
    streams: Option<Vec<LitStr>>,
    tail_stream: Option<bool>,
    always_tail_stream: Option<bool>,
    continue_on_error: Option<bool>,
    skip_unknown_events: Option<bool>,
    krate: Option<syn::Path>,
}

/// A handler method.
struct Handle<'a> {
    method: &'a syn::ImplItemFn,
    event: &'a syn::Type,
    fallible: bool,
}

const SHAPE: &str = "projection handlers take the aggregate id, the event and its meta: \
                     `async fn created(&self, id: &str, event: &DepartmentCreated, meta: &Meta) -> Result<(), Error>`";

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = parse_args(&mut cx, attr);
    let input: ItemImpl = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            cx.error_spanned_by(
                &item,
                "`#[projection]` goes on an `impl` block of event handler methods",
            );
            return cx.finish(item);
        }
    };
    let handles = check(&mut cx, &input);
    let expanded = generate(&args, &input, &handles);
    cx.finish(expanded)
}

fn parse_args(cx: &mut Ctxt, attr: TokenStream) -> Args {
    let mut args = Args::default();
    let span = attr.span();
    let mut unknown = Vec::new();
    let parsed = args::parse(cx, attr, |meta| {
        if meta.path.is_ident("bookmark") {
            args::once(&meta, &args.bookmark)?;
            let bookmark: LitStr = meta.value()?.parse()?;
            if bookmark.value().is_empty() {
                return Err(syn::Error::new(
                    bookmark.span(),
                    "the bookmark name cannot be empty",
                ));
            }
            args.bookmark = Some(bookmark);
        } else if meta.path.is_ident("streams") {
            args::once(&meta, &args.streams)?;
            let value = meta.value()?;
            // One stream may be given alone: `streams = "departments"`.
            let list: Vec<LitStr> = if value.peek(LitStr) {
                vec![value.parse()?]
            } else {
                let content;
                syn::bracketed!(content in value);
                content
                    .parse_terminated(<LitStr as syn::parse::Parse>::parse, syn::Token![,])?
                    .into_iter()
                    .collect()
            };
            let mut streams: Vec<LitStr> = Vec::new();
            for stream in list {
                if streams.iter().any(|seen| seen.value() == stream.value()) {
                    return Err(syn::Error::new(
                        stream.span(),
                        "this stream is listed twice",
                    ));
                }
                streams.push(stream);
            }
            if streams.is_empty() {
                return Err(meta.error(
                    "a projection reads at least one stream: `streams = [\"departments\"]`",
                ));
            }
            args.streams = Some(streams);
        } else if meta.path.is_ident("tail_stream") {
            args::once(&meta, &args.tail_stream)?;
            args.tail_stream = Some(args::flag(&meta)?);
        } else if meta.path.is_ident("always_tail_stream") {
            args::once(&meta, &args.always_tail_stream)?;
            args.always_tail_stream = Some(args::flag(&meta)?);
        } else if meta.path.is_ident("continue_on_error") {
            args::once(&meta, &args.continue_on_error)?;
            args.continue_on_error = Some(args::flag(&meta)?);
        } else if meta.path.is_ident("skip_unknown_events") {
            args::once(&meta, &args.skip_unknown_events)?;
            args.skip_unknown_events = Some(args::flag(&meta)?);
        } else if meta.path.is_ident("crate") {
            args::once(&meta, &args.krate)?;
            args.krate = Some(args::crate_value(&meta)?);
        } else {
            args::skip_unknown(&meta, "projection", KEYS, &mut unknown)?;
        }
        Ok(())
    });
    let parsed = parsed && unknown.is_empty();
    for error in unknown {
        cx.push(error);
    }
    if parsed && args.bookmark.is_none() {
        cx.push(syn::Error::new(
            span,
            "missing `bookmark`, the name its position is stored under: \
             `#[projection(bookmark = \"departments-model\", streams = [\"departments\"])]`",
        ));
    }
    if parsed && args.streams.is_none() {
        cx.push(syn::Error::new(
            span,
            "missing `streams`, the streams it reads: \
             `#[projection(bookmark = \"departments-model\", streams = [\"departments\"])]`",
        ));
    }
    args
}

fn check<'a>(cx: &mut Ctxt, input: &'a ItemImpl) -> Vec<Handle<'a>> {
    if let Some((_, path, _)) = &input.trait_ {
        cx.error_spanned_by(
            path,
            "`#[projection]` goes on an inherent `impl` block, not a trait impl",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "a generic projection is not supported");
    }
    let mut handles: Vec<Handle<'a>> = Vec::new();
    for item in &input.items {
        let ImplItem::Fn(method) = item else { continue };
        let sig = &method.sig;
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(&sig.generics, "projection handlers cannot be generic");
            continue;
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some() && receiver.mutability.is_none() => {}
            Some(FnArg::Receiver(receiver)) => {
                cx.error_spanned_by(
                    receiver,
                    "projection handlers take `&self`; keep changing state behind a lock or in a database",
                );
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.ident, SHAPE);
                continue;
            }
        }
        let typed: Vec<&syn::Type> = inputs
            .filter_map(|arg| match arg {
                FnArg::Typed(arg) => Some(&*arg.ty),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let event = match typed.as_slice() {
            [_, syn::Type::Reference(event), _] if event.mutability.is_none() => &*event.elem,
            [_, other, _] => {
                cx.error_spanned_by(other, format!("the event is borrowed; {SHAPE}"));
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.inputs, SHAPE);
                continue;
            }
        };
        let key = quote!(#event).to_string();
        if let Some(first) = handles.iter().find(|handle| {
            let other = handle.event;
            quote!(#other).to_string() == key
        }) {
            cx.error_spanned_by(
                event,
                format!(
                    "`{}` is already handled by `{}`; one handler per event type",
                    key.replace(' ', ""),
                    first.method.sig.ident
                ),
            );
            continue;
        }
        handles.push(Handle {
            method,
            event,
            fallible: match &sig.output {
                syn::ReturnType::Type(_, ty) => {
                    !matches!(&**ty, syn::Type::Tuple(unit) if unit.elems.is_empty())
                }
                syn::ReturnType::Default => false,
            },
        });
    }
    handles
}

fn generate(args: &Args, input: &ItemImpl, handles: &[Handle<'_>]) -> TokenStream {
    let krate = args::runtime_path(args.krate.clone());
    let self_ty = &input.self_ty;
    let bookmark = args
        .bookmark
        .clone()
        .unwrap_or_else(|| LitStr::new("(missing)", Span::call_site()));
    let streams = args.streams.clone().unwrap_or_default();
    let tail_stream = args.tail_stream.unwrap_or(false);
    let always_tail_stream = args.always_tail_stream.unwrap_or(false);
    let continue_on_error = args.continue_on_error.unwrap_or(false);
    let skip_unknown_events = args.skip_unknown_events.unwrap_or(false);
    let mixed = Span::mixed_site();
    let event = syn::Ident::new("__evt_event", mixed);
    let meta = syn::Ident::new("__evt_meta", mixed);
    let typed = syn::Ident::new("__evt_typed", mixed);

    let dispatch = handles.iter().map(|handle| {
        let ty = handle.event;
        let name = &handle.method.sig.ident;
        let await_ = handle.method.sig.asyncness.map(|_| quote!(.await));
        let call = quote_spanned! {handle.method.sig.span()=>
            self.#name(&#meta.aggregate_id, &#typed, #meta) #await_
        };
        let call = if handle.fallible {
            quote!(#call.map_err(#krate::__private::box_error)?;)
        } else {
            quote!(#call;)
        };
        quote_spanned! {ty.span()=>
            if #meta.stream == <<#ty as #krate::__private::EventVariant>::Event as #krate::__private::EventStream>::STREAM
                && #event.event_type == <#ty as #krate::__private::EventVariant>::TYPE
            {
                let #typed = <#ty as #krate::__private::EventVariant>::from_json(&#event.data)?;
                #call
                return ::core::result::Result::Ok(());
            }
        }
    });
    let event_types = handles.iter().map(|handle| {
        let ty = handle.event;
        quote_spanned! {ty.span()=>
            (
                <<#ty as #krate::__private::EventVariant>::Event as #krate::__private::EventStream>::STREAM,
                <<#ty as #krate::__private::EventVariant>::Event as #krate::Event>::TYPES,
            )
        }
    });
    let checks = handles.iter().map(|handle| {
        let ty = handle.event;
        let message = format!(
            "`{}` is an event of a stream this projection does not read; add its stream to `streams = [...]`",
            quote!(#ty).to_string().replace(' ', "")
        );
        quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(
                #krate::__private::contains(
                    <#self_ty as #krate::Projection>::STREAMS,
                    <<#ty as #krate::__private::EventVariant>::Event as #krate::__private::EventStream>::STREAM,
                ),
                #message
            );
        }
    });
    quote! {
        #input

        impl #krate::Projection for #self_ty {
            const BOOKMARK: &'static str = #bookmark;
            const STREAMS: &'static [&'static str] = &[#(#streams),*];
            const OPTIONS: #krate::HandlerOptions = #krate::HandlerOptions::DEFAULT
                .with_tail_stream(#tail_stream)
                .with_always_tail_stream(#always_tail_stream)
                .with_continue_on_error(#continue_on_error)
                .with_skip_unknown_events(#skip_unknown_events);
            const EVENT_TYPES: &'static [(&'static str, &'static [&'static str])] =
                &[#(#event_types),*];

            #[allow(unused_variables, unreachable_code)]
            async fn handle(
                &self,
                #event: &#krate::StoredEvent,
            ) -> ::core::result::Result<(), #krate::BoxError> {
                let #meta = &#event.meta;
                #(#dispatch)*
                ::core::result::Result::Ok(())
            }
        }

        #(#checks)*
    }
}
