//! Procedural macros of `evt`. An implementation detail: depend on `evt-core`, which re-exports
//! them and documents them.

use proc_macro::TokenStream;

mod aggregate;
mod args;
mod commands;
mod ctxt;
mod event;
mod projection;

/// See `evt_core::event`.
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    event::expand(attr.into(), item.into()).into()
}

/// See `evt_core::aggregate`.
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(attr.into(), item.into()).into()
}

/// See `evt_core::commands`.
#[proc_macro_attribute]
pub fn commands(attr: TokenStream, item: TokenStream) -> TokenStream {
    commands::expand(attr.into(), item.into()).into()
}

/// Options of one command handler (`#[command(retry = 3)]`); read by `#[commands]`.
#[proc_macro_attribute]
pub fn command(attr: TokenStream, item: TokenStream) -> TokenStream {
    commands::stray_command(attr.into(), item.into()).into()
}

/// See `evt_core::projection`.
#[proc_macro_attribute]
pub fn projection(attr: TokenStream, item: TokenStream) -> TokenStream {
    projection::expand(attr.into(), item.into()).into()
}
