//! Collects every error of one attribute so the user sees them all at once.

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The `compile_error!` invocations of every error, empty when there is none.
    pub(crate) fn to_compile_error(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// Tokens as a user would write them, for messages: `std::net::TcpListener`, `[u16; 3]`.
pub(crate) fn display(tokens: impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let after_path_separator = out.ends_with("::");
            let glue_after = after_path_separator || matches!(prev, Some('<' | '[' | '(' | '&' | '!'));
            let glue_before = matches!(next, Some(':' | '<' | '>' | ']' | ')' | ',' | ';' | '!'));
            // `[u16; 3]`, `(a, b)` and `T: Default` keep the space after `;`, `,` and `:`.
            if glue_after || glue_before {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::display;
    use quote::quote;

    #[test]
    fn types_read_as_written() {
        assert_eq!(display(quote!(std::net::TcpListener)), "std::net::TcpListener");
        assert_eq!(display(quote!([u16; 3])), "[u16; 3]");
        assert_eq!(display(quote!(Vec<String>)), "Vec<String>");
        assert_eq!(display(quote!(&mut TcpListener)), "&mut TcpListener");
        assert_eq!(display(quote!((a, b))), "(a, b)");
        assert_eq!(display(quote!(T: Default)), "T: Default");
        assert_eq!(display(quote!(::loopcheck::PortLease)), "::loopcheck::PortLease");
        assert_eq!(display(quote!(HashMap<u16, Vec<u8> >)), "HashMap<u16, Vec<u8>>");
    }
}
