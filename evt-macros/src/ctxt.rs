//! Collects every error of one macro call, so they are reported together.

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    /// Records an error spanned on `tokens`.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// The user's item as it was plus the expansion made so far plus every error: one mistake,
    /// one message, no cascade of "cannot find" errors.
    pub(crate) fn finish(self, expanded: TokenStream) -> TokenStream {
        match self.errors {
            None => expanded,
            Some(errors) => {
                let errors = errors.into_compile_error();
                quote::quote!(#expanded #errors)
            }
        }
    }
}
