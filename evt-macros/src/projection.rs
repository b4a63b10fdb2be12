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
    /// The types of the aggregate id, the event and the meta, as written.
    args: [&'a syn::Type; 3],
    event: &'a syn::Type,
    fallible: bool,
}

/// What a handler looks like, shown with the user's method `sig` and its event type (the first
/// borrowed type that is not `str` or `Meta`, or one named after the method).
fn shape(sig: &syn::Signature) -> String {
    let event = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => match &*arg.ty {
                syn::Type::Reference(reference) => Some(&*reference.elem),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .map(args::text)
        .find(|ty| ty != "str" && ty != "Meta" && !ty.ends_with("::Meta"))
        .unwrap_or_else(|| args::pascal_case(&sig.ident.to_string()));
    format!(
        "projection handlers take the aggregate id, the event and its meta: \
         `async fn {}(&self, id: &str, event: &{event}, meta: &Meta) -> Result<(), Error>`",
        sig.ident
    )
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
                "`#[projection]` goes on an `impl` block of event handler methods",
            );
            return cx.finish(item);
        }
    };
    let handles = check(&mut cx, &input);
    let expanded = generate(&args, &input, &handles);
    cx.finish(expanded)
}

fn parse_args(cx: &mut Ctxt, attr: TokenStream, name: &str) -> Args {
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
                    "a projection reads at least one stream: `streams = [\"...\"]`, the `stream` of an `#[aggregate]`",
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
    let example = || {
        let bookmark = match &args.bookmark {
            Some(bookmark) => bookmark.value(),
            None => args::snake_case(name).replace('_', "-"),
        };
        let streams = match &args.streams {
            Some(streams) => streams
                .iter()
                .map(|stream| format!("{:?}", stream.value()))
                .collect::<Vec<_>>()
                .join(", "),
            None => "\"...\"".to_owned(),
        };
        format!("`#[projection(bookmark = {bookmark:?}, streams = [{streams}])]`")
    };
    if parsed && args.bookmark.is_none() {
        cx.push(syn::Error::new(
            span,
            format!(
                "missing `bookmark`, the name its position is stored under: {}",
                example()
            ),
        ));
    }
    if parsed && args.streams.is_none() {
        cx.push(syn::Error::new(
            span,
            format!("missing `streams`, the streams it reads: {}", example()),
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
                cx.error_spanned_by(&sig.ident, shape(sig));
                continue;
            }
        }
        let typed: Vec<&syn::Type> = inputs
            .filter_map(|arg| match arg {
                FnArg::Typed(arg) => Some(&*arg.ty),
                FnArg::Receiver(_) => None,
            })
            .collect();
        if let [id, _, meta] = typed.as_slice() {
            let borrowed = |ty: &syn::Type| matches!(ty, syn::Type::Reference(_));
            if !borrowed(id) {
                cx.error_spanned_by(
                    id,
                    format!("the aggregate id is borrowed: `id: &str`; {}", shape(sig)),
                );
                continue;
            }
            if !borrowed(meta) {
                cx.error_spanned_by(
                    meta,
                    format!("the meta is borrowed: `meta: &Meta`; {}", shape(sig)),
                );
                continue;
            }
        }
        let event = match typed.as_slice() {
            [_, syn::Type::Reference(event), _] if event.mutability.is_none() => &*event.elem,
            [_, other, _] => {
                cx.error_spanned_by(other, format!("the event is borrowed; {}", shape(sig)));
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.inputs, shape(sig));
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
            args: [typed[0], typed[1], typed[2]],
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
    let event = syn::Ident::new("event", mixed);
    let meta = syn::Ident::new("meta", mixed);
    let typed = syn::Ident::new("typed", mixed);

    let projection = args::text(self_ty);
    let error_checks: Vec<TokenStream> = handles
        .iter()
        .filter_map(|handle| error_check(&krate, &projection, handle))
        .collect();
    let dispatch = handles.iter().map(|handle| {
        let ty = handle.event;
        let name = &handle.method.sig.ident;
        let await_ = handle.method.sig.asyncness.map(|_| quote!(.await));
        // Each argument spanned at its type, so that a mismatch points there.
        let [id_ty, event_ty, meta_ty] = handle.args;
        let id = quote_spanned!(id_ty.span()=> &#meta.aggregate_id);
        let typed_arg = quote_spanned!(event_ty.span()=> &#typed);
        let meta_arg = quote_spanned!(meta_ty.span()=> #meta);
        let call = quote_spanned! {handle.method.sig.span()=>
            self.#name(#id, #typed_arg, #meta_arg) #await_
        };
        let call = if handle.fallible {
            let boxed = box_error(&krate, &projection, handle);
            quote!(#call.map_err(#boxed)?;)
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
    // The streams of the events the handlers take, and whether each listed stream is one of
    // them: a misspelled stream is one error at its name (listing these), and the handlers'
    // checks below then keep quiet.
    let handled = handles.iter().map(|handle| {
        let ty = handle.event;
        quote_spanned! {ty.span()=>
            <<#ty as #krate::__private::EventVariant>::Event as #krate::__private::EventStream>::STREAM
        }
    });
    let handled = quote!(&[#(#handled),*]);
    let all_handled = quote! {
        #krate::__private::all_in(<#self_ty as #krate::Projection>::STREAMS, #handled)
    };
    let stream_checks = streams.iter().filter(|_| !handles.is_empty()).map(|stream| {
        let message = format!(
            "no handler of `{projection}` takes an event of the stream `{}`; the streams of the events its handlers take: ",
            stream.value()
        );
        quote_spanned! {stream.span()=>
            const _: () = {
                const HANDLED: &[&str] = #handled;
                if !#krate::__private::contains(HANDLED, #stream) {
                    const MESSAGE: #krate::__private::Message =
                        #krate::__private::Message::new().push(#message).push_list(HANDLED);
                    ::core::panic!("{}", MESSAGE.as_str());
                }
            };
        }
    });
    let checks = handles.iter().map(|handle| {
        let ty = handle.event;
        let message = format!(
            "`{}` is an event of a stream this projection does not read; add its stream to `streams = [...]`",
            args::text(ty)
        );
        quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(
                #krate::__private::contains(
                    <#self_ty as #krate::Projection>::STREAMS,
                    <<#ty as #krate::__private::EventVariant>::Event as #krate::__private::EventStream>::STREAM,
                ) || !#all_handled,
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

        #(#stream_checks)*
        #(#checks)*
        #(#error_checks)*
    }
}

/// The error type `E` of a handler returning `Result<_, E>`, when it can be named in a constant
/// (not through `Self`).
fn handler_error<'a>(handle: &Handle<'a>) -> Option<&'a syn::Type> {
    let syn::ReturnType::Type(_, output) = &handle.method.sig.output else {
        return None;
    };
    let error = args::error_type(output)?;
    let mentions_self = quote!(#error)
        .to_string()
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|word| word == "Self");
    (!mentions_self).then_some(error)
}

/// The constant that asserts that a handler's error can be boxed, named after the projection
/// and the handler (which rustc's label shows).
fn error_check_name(projection: &str, handle: &Handle<'_>) -> syn::Ident {
    let projection = projection.rsplit("::").next().unwrap_or(projection);
    quote::format_ident!("{}_{}_error", projection, handle.method.sig.ident)
}

/// Asserts, at the user's `E` of `Result<_, E>`, that a handler's error converts into the boxed
/// error the runtime reports, with a message naming the handler.
fn error_check(krate: &TokenStream, projection: &str, handle: &Handle<'_>) -> Option<TokenStream> {
    let error = handler_error(handle)?;
    let message = format!(
        "the error of the handler `{}`, `{}`, cannot be returned: a handler's error converts into \
         `Box<dyn std::error::Error + Send + Sync>`; implement `std::error::Error` for it or return another type",
        handle.method.sig.ident,
        args::text(error)
    );
    let check = error_check_name(projection, handle);
    let assertion = quote_spanned! {error.span()=>
        ::core::assert!(#krate::__private::Probe::<#error>::IS_BOX_ERROR, #message)
    };
    Some(quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #check: ::core::primitive::bool = {
            #[allow(unused_imports)]
            use #krate::__private::ProbeBoxFallback as _;
            #assertion;
            true
        };
    })
}

/// The function that boxes a handler's error: `box_error` for the error type checked by
/// [`error_check`], which is an error type when the check fails, so that the call gives no
/// second error.
fn box_error(krate: &TokenStream, projection: &str, handle: &Handle<'_>) -> TokenStream {
    let Some(error) = handler_error(handle) else {
        return quote!(#krate::__private::box_error);
    };
    let check = error_check_name(projection, handle);
    quote! {
        #krate::__private::box_error::<<#krate::__private::Checked<#error, #check> as #krate::__private::Pass>::Out>
    }
}
