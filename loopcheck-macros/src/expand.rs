//! The expansion: a plain `#[test] fn` that hands the body to `loopcheck::__private::run`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{AttrStyle, Ident, Item, ItemFn, ReturnType};

use crate::attr::{self, Leaks, Options};
use crate::error::Errors;
use crate::valid::{self, Checked};

pub(crate) fn loopback_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse(args, &mut errors);
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => function,
        Ok(other) => {
            errors.push(valid::not_a_fn(&other));
            return with_errors(quote!(#[allow(dead_code)] #other), &errors);
        }
        Err(error) => {
            errors.push(error);
            return with_errors(item, &errors);
        }
    };
    let checked = valid::check(&function, &options, &mut errors);
    if errors.is_empty() {
        expand(&function, &checked, &options)
    } else {
        fallback(function, &errors)
    }
}

/// The tokens followed by the errors, as tokio's `token_stream_with_error`.
fn with_errors(mut tokens: TokenStream, errors: &Errors) -> TokenStream {
    tokens.extend(errors.to_compile_error());
    tokens
}

/// The function as written, minus test attributes, so that rust-analyzer still sees the body
/// and the errors stand alone: its arguments are unused since nothing injects them.
fn fallback(mut function: ItemFn, errors: &Errors) -> TokenStream {
    function
        .attrs
        .retain(|attr| valid::duplicate_test(attr).is_none());
    strip_block_lengths(&mut function.sig);
    with_errors(quote!(#[allow(dead_code, unused_variables)] #function), errors)
}

/// `PortBlock<N>` is the attribute's notation for a block of `N` ports; the body takes the
/// library's `PortBlock`, whose length is known at run time.
fn strip_block_lengths(sig: &mut syn::Signature) {
    fn strip(ty: &mut syn::Type) {
        match ty {
            syn::Type::Array(array) => strip(&mut array.elem),
            syn::Type::Group(group) => strip(&mut group.elem),
            syn::Type::Paren(paren) => strip(&mut paren.elem),
            syn::Type::Path(path) => {
                if let Some(segment) = path.path.segments.last_mut()
                    && segment.ident == "PortBlock"
                {
                    segment.arguments = syn::PathArguments::None;
                }
            }
            _ => {}
        }
    }
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            strip(&mut typed.ty);
        }
    }
}

fn expand(function: &ItemFn, checked: &Checked, options: &Options) -> TokenStream {
    let krate = options
        .krate
        .as_ref()
        .map_or_else(|| quote!(::loopcheck), ToTokens::to_token_stream);
    let private = quote!(#krate::__private);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = function;
    let outer = attrs.iter().filter(|attr| matches!(attr.style, AttrStyle::Outer));
    let inner = attrs
        .iter()
        .filter(|attr| matches!(attr.style, AttrStyle::Inner(_)));
    let stmts = &block.stmts;
    let name = &sig.ident;
    let name_text = name.unraw().to_string();
    let output = &sig.output;

    let body = Ident::new("__loopcheck_body", Span::call_site());
    let mut body_sig = sig.clone();
    body_sig.ident = body.clone();
    strip_block_lengths(&mut body_sig);

    let cx = Ident::new("__loopcheck_cx", Span::mixed_site());
    // The user's names, hygienic: lints about the user's bindings (an `_addr` that is used)
    // do not fire on the macro's own.
    let idents: Vec<Ident> = checked
        .args
        .iter()
        .map(|arg| {
            let mut ident = arg.ident.clone();
            ident.set_span(Span::mixed_site());
            ident
        })
        .collect();
    let lets = checked.args.iter().zip(&idents).map(|(arg, ident)| {
        let ty = &arg.ty;
        if let Some(len) = arg.block {
            let len = Literal::usize_unsuffixed(len);
            let allocate = quote_spanned!(ty.span()=> #private::port_block);
            return quote!(let #ident = #allocate(#cx, #len););
        }
        // Spanned at the user's type, so an unsupported type is reported there.
        let allocate = quote_spanned!(ty.span()=> <#ty as #private::Arg>::allocate);
        quote!(let #ident = #allocate(#cx);)
    });
    let setup = match options.tokio {
        None => quote! {
            #(#lets)*
            move || #body(#(#idents),*)
        },
        Some(tokio) => {
            let rt = Ident::new("__loopcheck_rt", Span::mixed_site());
            let guard = Ident::new("__loopcheck_guard", Span::mixed_site());
            // The user's tokio, spanned at the option: a missing dependency is reported there.
            let build =
                quote_spanned!(tokio=> ::tokio::runtime::Builder::new_current_thread().enable_all().build());
            quote! {
                let #rt = #build.expect("loopcheck: cannot build the tokio runtime of this test");
                // tokio sockets register with the runtime they are created in.
                let #guard = #rt.enter();
                #(#lets)*
                ::core::mem::drop(#guard);
                move || #rt.block_on(#body(#(#idents),*))
            }
        }
    };

    let (run, timeout) = match options.timeout_ms {
        Some(ms) => {
            let ms = Literal::u64_unsuffixed(ms);
            (
                "run_with_timeout",
                quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
            )
        }
        None => ("run", quote!(::core::option::Option::None)),
    };
    let leaks = match options.leaks {
        Leaks::Warn => quote!(#private::Leaks::Warn),
        Leaks::Fail => quote!(#private::Leaks::Fail),
    };
    let should_panic = &checked.should_panic;
    let test = quote! {
        #private::Test {
            name: ::core::concat!(::core::module_path!(), "::", #name_text),
            timeout: #timeout,
            leaks: #leaks,
            should_panic: #should_panic,
        }
    };
    let setup = quote! {
        |#cx: &mut #private::Context| {
            #setup
        }
    };
    // The call is spanned at the return type, so a type that is no test outcome (or not `Send`
    // under a timeout) is reported there.
    let span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let private_here = respan(private.clone(), span);
    let run = Ident::new(run, span);
    let call = quote_spanned!(span=> #private_here::#run(#test, #setup,));

    quote! {
        #(#outer)*
        #[::core::prelude::v1::test]
        #vis fn #name() #output {
            #body_sig {
                #(#inner)*
                #(#stmts)*
            }
            #call
        }
    }
}

fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::loopback_test;

    #[test]
    fn expands_to_a_plain_test_calling_the_runtime() {
        let out = loopback_test(
            quote!(timeout = "10s"),
            quote! {
                /// docs
                #[ignore]
                fn g(addr: SocketAddr, mut ports: [u16; 2]) -> Result<(), E> { body() }
            },
        );
        let expected = quote! {
            /// docs
            #[ignore]
            #[::core::prelude::v1::test]
            fn g() -> Result<(), E> {
                fn __loopcheck_body(addr: SocketAddr, mut ports: [u16; 2]) -> Result<(), E> { body() }
                ::loopcheck::__private::run_with_timeout(
                    ::loopcheck::__private::Test {
                        name: ::core::concat!(::core::module_path!(), "::", "g"),
                        timeout: ::core::option::Option::Some(::core::time::Duration::from_millis(10000)),
                        leaks: ::loopcheck::__private::Leaks::Warn,
                        should_panic: false,
                    },
                    |__loopcheck_cx: &mut ::loopcheck::__private::Context| {
                        let addr = <SocketAddr as ::loopcheck::__private::Arg>::allocate(__loopcheck_cx);
                        let ports = <[u16; 2] as ::loopcheck::__private::Arg>::allocate(__loopcheck_cx);
                        move || __loopcheck_body(addr, ports)
                    },
                )
            }
        };
        assert_eq!(out.to_string(), expected.to_string());
    }

    #[test]
    fn tokio_builds_the_runtime_and_allocates_inside_it() {
        let out = loopback_test(
            quote!(tokio, crate = "x::loopcheck", leaks = "fail"),
            quote! {
                #[should_panic(expected = "x")]
                async fn f(listener: tokio::net::TcpListener) { body().await }
            },
        );
        let expected = quote! {
            #[should_panic(expected = "x")]
            #[::core::prelude::v1::test]
            fn f() {
                async fn __loopcheck_body(listener: tokio::net::TcpListener) { body().await }
                x::loopcheck::__private::run(
                    x::loopcheck::__private::Test {
                        name: ::core::concat!(::core::module_path!(), "::", "f"),
                        timeout: ::core::option::Option::None,
                        leaks: x::loopcheck::__private::Leaks::Fail,
                        should_panic: true,
                    },
                    |__loopcheck_cx: &mut x::loopcheck::__private::Context| {
                        let __loopcheck_rt = ::tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("loopcheck: cannot build the tokio runtime of this test");
                        let __loopcheck_guard = __loopcheck_rt.enter();
                        let listener =
                            <tokio::net::TcpListener as x::loopcheck::__private::Arg>::allocate(__loopcheck_cx);
                        ::core::mem::drop(__loopcheck_guard);
                        move || __loopcheck_rt.block_on(__loopcheck_body(listener))
                    },
                )
            }
        };
        assert_eq!(out.to_string(), expected.to_string());
    }

    #[test]
    fn a_block_is_allocated_by_length_and_taken_as_the_librarys_type() {
        let out = loopback_test(
            quote!(),
            quote!(
                fn b(ports: loopcheck::PortBlock<4>) {}
            ),
        );
        let expected = quote! {
            #[::core::prelude::v1::test]
            fn b() {
                fn __loopcheck_body(ports: loopcheck::PortBlock) {}
                ::loopcheck::__private::run(
                    ::loopcheck::__private::Test {
                        name: ::core::concat!(::core::module_path!(), "::", "b"),
                        timeout: ::core::option::Option::None,
                        leaks: ::loopcheck::__private::Leaks::Warn,
                        should_panic: false,
                    },
                    |__loopcheck_cx: &mut ::loopcheck::__private::Context| {
                        let ports = ::loopcheck::__private::port_block(__loopcheck_cx, 4);
                        move || __loopcheck_body(ports)
                    },
                )
            }
        };
        assert_eq!(out.to_string(), expected.to_string());
    }

    #[test]
    fn errors_keep_the_function_without_its_test_attributes() {
        let out = loopback_test(
            quote!(bogus),
            quote! {
                #[test]
                fn h(name: String) {}
            },
        )
        .to_string();
        assert!(
            out.starts_with(
                &quote!(
                    #[allow(dead_code, unused_variables)]
                    fn h(name: String) {}
                )
                .to_string()
            ),
            "{out}"
        );
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }
}
