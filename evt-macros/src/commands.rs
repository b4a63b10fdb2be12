//! `#[commands(client = ...)]`: a typed command client from an impl block of command handlers.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, LitInt};

use crate::args;
use crate::ctxt::Ctxt;

const KEYS: &[&str] = &["client", "retry", "crate"];

#[derive(Default)]
struct Args {
    client: Option<(syn::Visibility, syn::Ident)>,
    /// The `pub Name` given to an unknown key (a misspelled `client`), which the expansion uses
    /// in its place, so that the one error at the typo is the only one.
    stand_in: Option<(syn::Visibility, syn::Ident)>,
    retry: Option<u32>,
    krate: Option<syn::Path>,
}

/// A command handler.
struct Command<'a> {
    method: &'a syn::ImplItemFn,
    aggregate: &'a syn::Type,
    payload: &'a syn::Type,
    output: &'a syn::Type,
    retry: u32,
}

/// What a command handler looks like, shown with the user's method `sig` on the aggregate
/// `name`: its payload and return types when it has them.
fn shape(sig: &syn::Signature, name: &str) -> String {
    let typed: Vec<&syn::Type> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let payload = match typed.as_slice() {
        [.., payload @ syn::Type::Path(_)] => args::text(payload),
        [.., syn::Type::Reference(payload)] => args::text(&payload.elem),
        _ => args::pascal_case(&sig.ident.to_string()),
    };
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) if args::error_type(ty).is_some() => args::text(ty),
        _ => format!("Result<{name}Event, String>"),
    };
    format!(
        "command handlers take the aggregate and the command's payload: \
         `fn {}({}: &Versioned<Self>, command: {payload}) -> {output}` \
         (every function of a `#[commands]` block is a command; put helpers in another `impl` block)",
        sig.ident,
        args::snake_case(name)
    )
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let name = args::impl_type_name(&item);
    let args = parse_args(&mut cx, attr, &name);
    let mut input: ItemImpl = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            cx.error_spanned_by(
                &item,
                "`#[commands]` goes on an `impl` block of command handlers on the aggregate type",
            );
            return cx.finish(item);
        }
    };
    let retries = take_command_attrs(&mut cx, &mut input);
    let commands = check(&mut cx, &args, &input, &retries);
    let check = aggregate_check(&args, &input);
    let expanded = generate(&args, &input, &commands);
    cx.finish(quote!(#check #expanded))
}

/// The constant that asserts, at the user's type, that it has `#[aggregate]`; its name is made
/// from the client's, which is unique in its module, and is what rustc's label shows
/// ("evaluation of `AccountCommands_aggregate` failed here").
fn aggregate_check_name(client: &syn::Ident) -> syn::Ident {
    quote::format_ident!("{}_aggregate", client)
}

/// Asserts once that the type has `#[aggregate]`, with a message naming it: without it, the
/// client's aggregate type is an error type (see [`aggregate_checked`]), so rustc reports
/// nothing else about the client or its callers.
fn aggregate_check(args: &Args, input: &ItemImpl) -> TokenStream {
    let Some((_, client)) = &args.client else {
        return TokenStream::new();
    };
    let krate = args::runtime_path(args.krate.clone());
    let self_ty = &input.self_ty;
    let name = args::text(self_ty);
    let message = format!(
        "`{name}` is not an aggregate: add `#[aggregate(stream = \"{}\", events = ...)]` to the \
         `impl {name}` block of its fold methods (`#[commands]` needs it)",
        args::example_stream(&args::impl_type_name(&quote!(#input)))
    );
    let check = aggregate_check_name(client);
    let assertion = quote_spanned! {self_ty.span()=>
        ::core::assert!(#krate::__private::Probe::<#self_ty>::IS_AGGREGATE, #message)
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #check: ::core::primitive::bool = {
            #[allow(unused_imports)]
            use #krate::__private::ProbeFallback as _;
            #assertion;
            true
        };
    }
}

/// The aggregate type behind the check of [`aggregate_check`]: `self_ty` when it passes, an
/// error type otherwise.
fn aggregate_checked(krate: &TokenStream, self_ty: &syn::Type, client: &syn::Ident) -> TokenStream {
    let check = aggregate_check_name(client);
    quote!(<#krate::__private::Checked<#self_ty, #check> as #krate::__private::Pass>::Out)
}

/// `#[command]` outside a `#[commands]` block.
pub(crate) fn stray_command(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    cx.push(syn::Error::new(
        Span::call_site(),
        "`#[command]` marks a handler inside a `#[commands]` impl block; put this function in an \
         `impl` block marked `#[commands(client = ...)]`, or remove the attribute",
    ));
    cx.finish(item)
}

fn parse_args(cx: &mut Ctxt, attr: TokenStream, name: &str) -> Args {
    let mut args = Args::default();
    let span = attr.span();
    let mut unknown = Vec::new();
    let parsed = args::parse(cx, attr, |meta| {
        if meta.path.is_ident("client") {
            args::once(&meta, &args.client)?;
            let value = meta.value()?;
            let vis: syn::Visibility = value.parse()?;
            let ident: syn::Ident = value.parse()?;
            args.client = Some((vis, ident));
        } else if meta.path.is_ident("retry") {
            args::once(&meta, &args.retry)?;
            args.retry = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
        } else if meta.path.is_ident("crate") {
            args::once(&meta, &args.krate)?;
            args.krate = Some(args::crate_value(&meta)?);
        } else if let Some(value) =
            args::skip_unknown_tokens(&meta, "commands", KEYS, &mut unknown)?
        {
            let client = syn::parse::Parser::parse2(
                |input: syn::parse::ParseStream<'_>| {
                    Ok((
                        input.parse::<syn::Visibility>()?,
                        input.parse::<syn::Ident>()?,
                    ))
                },
                value,
            );
            if let (Ok(client), None) = (client, &args.stand_in) {
                args.stand_in = Some(client);
            }
        }
        Ok(())
    });
    let parsed = parsed && unknown.is_empty();
    for error in unknown {
        cx.push(error);
    }
    if args.client.is_none() {
        args.client = args.stand_in.take();
    }
    if parsed && args.client.is_none() {
        cx.push(syn::Error::new(
            span,
            format!(
                "missing `client`, the type to generate: `#[commands(client = pub {name}Commands)]`"
            ),
        ));
    }
    args
}

/// Removes `#[command(...)]` from the handlers and returns each handler's `retry`.
fn take_command_attrs(cx: &mut Ctxt, input: &mut ItemImpl) -> Vec<Option<u32>> {
    let mut retries = Vec::new();
    for item in &mut input.items {
        let ImplItem::Fn(method) = item else { continue };
        let mut retry = None;
        method.attrs.retain(|attr| {
            // `#[command]`, or `#[evt::command]` (the stand-alone macro, which errors alone).
            if attr
                .path()
                .segments
                .last()
                .is_none_or(|last| last.ident != "command")
            {
                return true;
            }
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("retry") {
                    args::once(&meta, &retry)?;
                    retry = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
                    Ok(())
                } else {
                    Err(args::unknown_key(&meta, "command", &["retry"]))
                }
            });
            if let Err(error) = parsed {
                cx.push(error);
            }
            false
        });
        retries.push(retry);
    }
    retries
}

fn check<'a>(
    cx: &mut Ctxt,
    args: &Args,
    input: &'a ItemImpl,
    retries: &[Option<u32>],
) -> Vec<Command<'a>> {
    let name = args::impl_type_name(&quote!(#input));
    if let Some((_, path, _)) = &input.trait_ {
        cx.error_spanned_by(
            path,
            "`#[commands]` goes on an inherent `impl` block of the aggregate",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "a generic aggregate is not supported");
    }
    let methods = input.items.iter().filter_map(|item| match item {
        ImplItem::Fn(method) => Some(method),
        _ => None,
    });
    let mut commands = Vec::new();
    for (method, retry) in methods.zip(retries) {
        let sig = &method.sig;
        if sig.ident == "new" || sig.ident == "domain" {
            cx.error_spanned_by(
                &sig.ident,
                format!(
                    "`{}` is a method of the generated client itself; name the command otherwise",
                    sig.ident
                ),
            );
            continue;
        }
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(&sig.generics, "command handlers cannot be generic");
            continue;
        }
        let mut typed = Vec::new();
        let mut bad = false;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    cx.error_spanned_by(
                        receiver,
                        format!(
                            "command handlers take the aggregate as an argument, not `self`; {}",
                            shape(sig, &name)
                        ),
                    );
                    bad = true;
                }
                FnArg::Typed(arg) => typed.push(&*arg.ty),
            }
        }
        if bad {
            continue;
        }
        let (aggregate, payload) = match typed.as_slice() {
            [aggregate @ syn::Type::Reference(_), payload] => (*aggregate, *payload),
            [other, _] => {
                cx.error_spanned_by(
                    other,
                    format!("the aggregate is borrowed; {}", shape(sig, &name)),
                );
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.inputs, shape(sig, &name));
                continue;
            }
        };
        if let syn::Type::Reference(syn::TypeReference {
            mutability: Some(mutability),
            ..
        }) = aggregate
        {
            cx.error_spanned_by(
                mutability,
                format!(
                    "a command decides on the aggregate without changing it (its events change it): \
                     take `&Versioned<Self>`; {}", shape(sig, &name)
                ),
            );
            continue;
        }
        if let syn::Type::Reference(reference) = payload {
            cx.error_spanned_by(
                reference,
                format!(
                    "the command's payload is taken by value; {}",
                    shape(sig, &name)
                ),
            );
            continue;
        }
        let output = match &sig.output {
            syn::ReturnType::Type(_, ty) => &**ty,
            syn::ReturnType::Default => {
                cx.error_spanned_by(
                    &sig.ident,
                    format!(
                        "a command handler returns `Result<events, error>`; {}",
                        shape(sig, &name)
                    ),
                );
                continue;
            }
        };
        commands.push(Command {
            method,
            aggregate,
            payload,
            output,
            retry: retry.or(args.retry).unwrap_or(0),
        });
    }
    commands
}

/// Replaces `Self` with the aggregate type, for types copied from the handlers into the client.
fn replace_self(tokens: TokenStream, self_ty: &syn::Type) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "Self" => quote_spanned!(ident.span()=> #self_ty),
            TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(
                    group.delimiter(),
                    replace_self(group.stream(), self_ty),
                );
                new.set_span(group.span());
                quote!(#new)
            }
            other => quote!(#other),
        })
        .collect()
}

fn generate(args: &Args, input: &ItemImpl, commands: &[Command<'_>]) -> TokenStream {
    let Some((vis, client)) = &args.client else {
        return quote!(#input);
    };
    let krate = args::runtime_path(args.krate.clone());
    let self_ty = &input.self_ty;
    let checked = aggregate_checked(&krate, self_ty, client);
    let mixed = Span::mixed_site();
    let aggregate = syn::Ident::new("__evt_aggregate", mixed);
    let decision = syn::Ident::new("__evt_decision", mixed);

    let methods = commands.iter().map(|command| {
        let method = &command.method;
        let name = &method.sig.ident;
        let name_str = name.to_string();
        let docs = method.attrs.iter().filter(|attr| attr.path().is_ident("doc"));
        let payload = {
            let ty = command.payload;
            replace_self(quote!(#ty), self_ty)
        };
        let output = {
            let ty = command.output;
            replace_self(quote!(#ty), self_ty)
        };
        let error = match args::error_type(command.output) {
            Some(error) => replace_self(quote!(#error), self_ty),
            None => quote! {
                <#output as #krate::__private::Decision<<#self_ty as #krate::Aggregate>::Event>>::Error
            },
        };
        let await_ = method.sig.asyncness.map(|_| quote!(.await));
        let output_span = command.output.span();
        let call_span = command.aggregate.span();
        let decide = quote_spanned! {call_span=>
            <#self_ty>::#name(&#aggregate, command) #await_
        };
        let decide = quote_spanned! {output_span=>
            <#output as #krate::__private::Decision<<#checked as #krate::Aggregate>::Event>>::into_events(#decide)
        };
        // Only a payload that is `Clone` can be decided on twice: on the cached aggregate first,
        // or again after a conflict (`retry`, which requires it).
        let clone = if command.retry == 0 {
            quote! {{
                use #krate::__private::{ProbeClone as _, ProbeNoClone as _};
                (&#krate::__private::CloneProbe::<#payload>::new()).cloner()
            }}
        } else {
            let payload_span = command.payload.span();
            quote_spanned! {payload_span=>
                ::core::option::Option::Some(<#payload as ::core::clone::Clone>::clone as fn(&#payload) -> #payload)
            }
        };
        let retry = command.retry;
        let body = quote! {
            self.commands.run(
                #name_str,
                aggregate_id,
                command,
                #clone,
                #retry,
                |#aggregate: #krate::Versioned<#checked>, command: #payload| async move {
                    let #decision = #decide;
                    (#aggregate, #decision)
                },
            ).await
        };
        let doc_default = format!(
            "Runs the `{name_str}` command on the aggregate `aggregate_id` and returns the new aggregate."
        );
        quote! {
            #[doc = #doc_default]
            #(#docs)*
            #vis async fn #name(
                &self,
                aggregate_id: &str,
                command: #payload,
            ) -> ::core::result::Result<#krate::Versioned<#self_ty>, #krate::CommandError<#error>> {
                #body
            }
        }
    });
    let doc = format!(
        "The typed command client of [`{}`], generated by `#[commands]`.",
        quote!(#self_ty).to_string().replace(' ', "")
    );
    quote! {
        #input

        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            commands: #krate::__private::Commands<#checked>,
        }

        impl #client {
            /// Commands through `domain`.
            #vis fn new(domain: &#krate::Domain) -> Self {
                Self { commands: #krate::__private::Commands::new(domain) }
            }

            /// The domain the commands run in.
            #vis fn domain(&self) -> &#krate::Domain {
                self.commands.domain()
            }

            #(#methods)*
        }
    }
}
