//! Checks the function under `#[loopback_test]`: what it takes, how it is declared, which
//! attributes it carries.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, FnArg, Ident, Item, ItemFn, Pat, PathArguments, Type};

use crate::attr::Options;
use crate::error::{Errors, display};

/// The types `#[loopback_test]` can hand to a test, by the last segment of their path.
const ACCEPTED: [&str; 5] = ["u16", "SocketAddr", "TcpListener", "UdpSocket", "PortLease"];
const ACCEPTED_TEXT: &str =
    "use u16, SocketAddr, TcpListener, UdpSocket, PortLease, an array of them, or PortBlock<N>";

/// The type that takes `N` contiguous ports, written `PortBlock<N>` in a test's signature.
const BLOCK: &str = "PortBlock";

/// One argument to allocate: its binding and its type, as the user wrote them.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// For `PortBlock<N>`: `N`, the number of contiguous ports.
    pub(crate) block: Option<usize>,
}

/// What the expansion needs beyond the function itself.
pub(crate) struct Checked {
    pub(crate) args: Vec<Arg>,
    pub(crate) should_panic: bool,
}

/// The error for an attribute placed on something other than a function, pointing at the
/// item's keyword and name.
pub(crate) fn not_a_fn(item: &Item) -> syn::Error {
    fn pair(keyword: &impl ToTokens, ident: &Ident) -> TokenStream {
        quote!(#keyword #ident)
    }
    let (what, tokens) = match item {
        Item::Struct(s) => ("a struct", pair(&s.struct_token, &s.ident)),
        Item::Enum(e) => ("an enum", pair(&e.enum_token, &e.ident)),
        Item::Union(u) => ("a union", pair(&u.union_token, &u.ident)),
        Item::Mod(m) => ("a module", pair(&m.mod_token, &m.ident)),
        Item::Trait(t) => ("a trait", pair(&t.trait_token, &t.ident)),
        Item::Const(c) => ("a const", pair(&c.const_token, &c.ident)),
        Item::Static(s) => ("a static", pair(&s.static_token, &s.ident)),
        Item::Type(t) => ("a type alias", pair(&t.type_token, &t.ident)),
        Item::Impl(i) => ("an impl block", i.impl_token.to_token_stream()),
        Item::Use(u) => ("a use declaration", u.use_token.to_token_stream()),
        _ => ("this item", item.to_token_stream()),
    };
    syn::Error::new_spanned(
        tokens,
        format!("`#[loopback_test]` goes on a test function, not on {what}: put it on a `fn`"),
    )
}

/// Checks `item` against `options`, recording every problem in `errors`.
pub(crate) fn check(item: &ItemFn, options: &Options, errors: &mut Errors) -> Checked {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "a test cannot be a `const fn`: remove `const`");
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.spanned(
            unsafety,
            "a test cannot be an `unsafe fn`: remove `unsafe`, and use an `unsafe` block in the body",
        );
    }
    if let Some(abi) = &sig.abi {
        let abi_text = display(abi);
        errors.spanned(
            abi,
            format!("a test cannot be an `{abi_text}` fn: remove `{abi_text}`"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(
            variadic.dots,
            "a test cannot take variadic arguments: remove `...`",
        );
    }
    if !sig.generics.params.is_empty() {
        let first = match sig.generics.params.first() {
            Some(syn::GenericParam::Type(param)) => param.ident.to_string(),
            Some(syn::GenericParam::Const(param)) => param.ident.to_string(),
            Some(syn::GenericParam::Lifetime(param)) => param.lifetime.to_string(),
            _ => display(&sig.generics.params),
        };
        errors.spanned(
            &sig.generics,
            format!(
                "a test cannot be generic: nothing would choose `{first}`; remove the generic parameters"
            ),
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(where_clause, "a test cannot have a `where` clause: remove it");
    }
    match (&sig.asyncness, options.tokio) {
        (Some(asyncness), None) if !options.incomplete => errors.spanned(
            asyncness,
            "an `async fn` needs a runtime: write `#[loopback_test(tokio)]`, or remove `async`",
        ),
        (None, Some(tokio)) => errors.push(syn::Error::new(
            tokio,
            "`tokio` runs an `async fn`, and this fn is not async: write `async fn`, or remove `tokio`",
        )),
        _ => {}
    }
    for attr in &item.attrs {
        if let Some(message) = duplicate_test(attr) {
            errors.spanned(attr, message);
        }
    }
    let args = sig.inputs.iter().filter_map(|input| arg(input, errors)).collect();
    Checked {
        args,
        should_panic: should_panic(&item.attrs),
    }
}

fn arg(input: &FnArg, errors: &mut Errors) -> Option<Arg> {
    let typed = match input {
        FnArg::Receiver(receiver) => {
            errors.spanned(
                receiver,
                "`self` cannot be injected: a test is a free function; move it out of the `impl` block",
            );
            return None;
        }
        FnArg::Typed(typed) => typed,
    };
    let ident = match &*typed.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(pat.ident.clone()),
        Pat::Ident(pat) if pat.by_ref.is_some() && pat.subpat.is_none() => {
            errors.spanned(
                pat,
                format!(
                    "`{}` is a pattern, not a name: write `{}: {}`, and borrow it in the body",
                    display(pat),
                    pat.ident,
                    display(&typed.ty)
                ),
            );
            None
        }
        Pat::Wild(_) => {
            let name = format!("_{}", suggested_name(&typed.ty));
            errors.spanned(
                &typed.pat,
                format!(
                    "`_` is a pattern, not a name: write a name, like `{name}: {}`",
                    display(&typed.ty)
                ),
            );
            None
        }
        pat => {
            let example = if accepted_or_array(&typed.ty) {
                format!(", like `{}: {}`,", suggested_name(&typed.ty), display(&typed.ty))
            } else {
                String::new()
            };
            let pat_text = display(pat);
            errors.spanned(
                pat,
                format!("`{pat_text}` is a pattern, not a name: write a name{example} and destructure it in the body"),
            );
            None
        }
    };
    if let Some(segment) = block_segment(&typed.ty) {
        let len = block_len(segment, errors);
        return Some(Arg {
            ident: ident?,
            ty: (*typed.ty).clone(),
            block: Some(len?),
        });
    }
    let type_ok = check_type(&typed.ty, errors);
    Some(Arg {
        ident: ident?,
        ty: (*typed.ty).clone(),
        block: None,
    })
    .filter(|_| type_ok)
}

/// The last segment of a `PortBlock<..>` type.
pub(crate) fn block_segment(ty: &Type) -> Option<&syn::PathSegment> {
    last_segment(ty).filter(|segment| segment.ident == BLOCK)
}

/// `N` of `PortBlock<N>`; records the error when it is missing or not a positive number.
fn block_len(segment: &syn::PathSegment, errors: &mut Errors) -> Option<usize> {
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        errors.spanned(
            segment,
            format!("`{BLOCK}` needs its length: write `{BLOCK}<4>` for 4 contiguous ports"),
        );
        return None;
    };
    let number = match args.args.first() {
        Some(syn::GenericArgument::Const(syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }))) if args.args.len() == 1 => int.base10_parse::<u16>().ok(),
        _ => None,
    };
    match number {
        Some(0) => {
            errors.spanned(
                args,
                format!("a `{BLOCK}<0>` holds no port: give it a length of 1 or more, like `{BLOCK}<4>`"),
            );
            None
        }
        Some(len) => Some(len.into()),
        None => {
            errors.spanned(
                args,
                format!(
                    "the length of a `{BLOCK}` is a number of ports, not `{}`: write it as a literal, like `{BLOCK}<4>`",
                    display(&args.args)
                ),
            );
            None
        }
    }
}

/// Whether `ty` names an injectable type; records the error when not.
fn check_type(ty: &Type, errors: &mut Errors) -> bool {
    if let Type::Array(array) = ty
        && block_segment(&array.elem).is_some()
    {
        errors.spanned(
            ty,
            format!("an array of blocks cannot be injected: take one `{BLOCK}<N>` argument per block"),
        );
        return false;
    }
    match ty {
        Type::Array(array) => return check_type(&array.elem, errors),
        Type::Group(group) => return check_type(&group.elem, errors),
        Type::Paren(paren) => return check_type(&paren.elem, errors),
        _ if accepted(ty) => return true,
        _ => {}
    }
    let text = display(ty);
    let message = match (ty, sequence_of_accepted(ty)) {
        (Type::Reference(reference), _) if accepted(&reference.elem) => {
            let owned = display(&reference.elem);
            format!(
                "`{text}` cannot be injected: take it by value, like `{}: {owned}`",
                suggested_name(ty)
            )
        }
        (_, Some(elem)) => format!(
            "`{text}` cannot be injected: use an array, like `[{}; 3]`",
            display(elem)
        ),
        (_, None) => format!("`{text}` cannot be injected: {ACCEPTED_TEXT}"),
    };
    errors.spanned(ty, message);
    false
}

fn accepted_or_array(ty: &Type) -> bool {
    match ty {
        Type::Array(array) => accepted_or_array(&array.elem),
        Type::Group(group) => accepted_or_array(&group.elem),
        Type::Paren(paren) => accepted_or_array(&paren.elem),
        _ => accepted(ty),
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

fn accepted(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| {
        matches!(segment.arguments, PathArguments::None) && ACCEPTED.iter().any(|name| segment.ident == name)
    })
}

/// `T` in `Vec<T>` or `[T]` when `T` is injectable.
fn sequence_of_accepted(ty: &Type) -> Option<&Type> {
    let elem = match ty {
        Type::Slice(slice) => &slice.elem,
        _ => {
            let segment = last_segment(ty).filter(|segment| segment.ident == "Vec")?;
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            match args.args.first() {
                Some(syn::GenericArgument::Type(elem)) if args.args.len() == 1 => elem,
                _ => return None,
            }
        }
    };
    Some(elem).filter(|elem| accepted(elem))
}

/// A name for an argument of this type, for messages: `port`, `ports`, `listener`...
fn suggested_name(ty: &Type) -> &'static str {
    match ty {
        Type::Array(array) => match suggested_name(&array.elem) {
            "port" => "ports",
            "addr" => "addrs",
            "listener" => "listeners",
            "socket" => "sockets",
            "lease" => "leases",
            _ => "values",
        },
        Type::Reference(reference) => suggested_name(&reference.elem),
        _ => match last_segment(ty).map(|s| s.ident.to_string()).as_deref() {
            Some("u16") => "port",
            Some("SocketAddr") => "addr",
            Some("TcpListener") => "listener",
            Some("UdpSocket") => "socket",
            Some("PortLease") => "lease",
            _ => "value",
        },
    }
}

/// The message for a second test attribute, if `attr` is one: `#[test]`, `#[tokio::test]`,
/// `#[core::prelude::v1::test]`...
pub(crate) fn duplicate_test(attr: &Attribute) -> Option<String> {
    let path = attr.path();
    if path.segments.last().is_none_or(|segment| segment.ident != "test") {
        return None;
    }
    let first = path.segments.first().map(|segment| segment.ident.to_string());
    Some(match first.as_deref() {
        _ if path.segments.len() == 1 => "`#[loopback_test]` adds `#[test]` itself: remove this `#[test]`".to_owned(),
        Some("core" | "std") => "`#[loopback_test]` adds `#[test]` itself: remove this test attribute".to_owned(),
        Some("tokio") => "`#[loopback_test]` makes the test and runs it: remove `#[tokio::test]`, and write `#[loopback_test(tokio)]` on the `async fn`".to_owned(),
        _ => format!("`#[loopback_test]` makes the test itself: remove `#[{}]`", display(path)),
    })
}

/// Whether the test carries `#[should_panic]`, bare, with `expected = ".."` or `= ".."`.
/// rustc expands `#[cfg_attr(..)]` before calling the macro, so a conditional one arrives
/// here already resolved.
fn should_panic(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "should_panic")
    })
}
