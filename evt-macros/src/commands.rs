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

const SHAPE: &str = "command handlers take the aggregate and the command's payload: \
                     `fn create(department: &Versioned<Self>, command: Create) -> Result<DepartmentCreated, DepartmentError>` \
                     (every function of a `#[commands]` block is a command; put helpers in another `impl` block)";

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
    let expanded = generate(&args, &input, &commands);
    cx.finish(expanded)
}

/// `#[command]` outside a `#[commands]` block.
pub(crate) fn stray_command(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    cx.push(syn::Error::new(
        Span::call_site(),
        "`#[command]` belongs on a handler inside an `impl` block marked `#[commands(client = ...)]`",
    ));
    cx.finish(item)
}

fn parse_args(cx: &mut Ctxt, attr: TokenStream, name: &str) -> Args {
    let mut args = Args::default();
    let span = attr.span();
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
        } else {
            return Err(args::unknown_key(&meta, "commands", KEYS));
        }
        Ok(())
    });
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
            if !attr.path().is_ident("command") {
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
                        format!("command handlers take the aggregate as an argument, not `self`; {SHAPE}"),
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
                cx.error_spanned_by(other, format!("the aggregate is borrowed; {SHAPE}"));
                continue;
            }
            _ => {
                cx.error_spanned_by(&sig.inputs, SHAPE);
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
                     take `&Versioned<Self>`; {SHAPE}"
                ),
            );
            continue;
        }
        if let syn::Type::Reference(reference) = payload {
            cx.error_spanned_by(
                reference,
                format!("the command's payload is taken by value; {SHAPE}"),
            );
            continue;
        }
        let output = match &sig.output {
            syn::ReturnType::Type(_, ty) => &**ty,
            syn::ReturnType::Default => {
                cx.error_spanned_by(
                    &sig.ident,
                    format!("a command handler returns `Result<events, error>`; {SHAPE}"),
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

/// `E` of a handler's `Result<T, E>`, read from the tokens; `None` for another spelling (an alias),
/// where the generated code asks the `Decision` trait instead.
fn error_type(output: &syn::Type) -> Option<&syn::Type> {
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
        let error = match error_type(command.output) {
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
            <#output as #krate::__private::Decision<<#self_ty as #krate::Aggregate>::Event>>::into_events(#decide)
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
                |#aggregate: #krate::Versioned<#self_ty>, command: #payload| async move {
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
            commands: #krate::__private::Commands<#self_ty>,
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
