//! The `#[loopback_test]` attribute of [loopcheck](https://docs.rs/loopcheck).
//!
//! Use it through loopcheck, which re-exports it as `loopcheck::loopback_test` and provides
//! the runtime the expansion calls. This crate only parses, validates and expands.
//!
//! The examples here are not compiled, since this crate cannot depend on loopcheck; the
//! documentation of `loopcheck::loopback_test` carries compiled ones.

#![warn(missing_docs)]

mod attr;
mod error;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// `#[loopback_test]` turns a function into a plain `#[test]` whose arguments are race-free
/// loopback ports, addresses and sockets.
///
/// loopcheck allocates each argument (leased, so no other test, process or worktree gets the
/// same port), runs the body, prints a diagnosis of every address the test was given when it
/// fails, and checks for leaked listeners and child processes when it ends. `#[test]` is added
/// by the attribute: do not write it too.
///
/// # Arguments
///
/// Each argument is allocated by its type, named by the last segment of its path:
///
/// | type | what the test gets |
/// |---|---|
/// | `u16` | a port number, leased for the test, safe to bind on `127.0.0.1` and `[::1]` |
/// | `SocketAddr` | an address on the test's own loopback address, leased |
/// | `std::net::TcpListener`, `std::net::UdpSocket` | a socket already bound on the test's loopback address |
/// | `loopcheck::PortLease` | the lease itself, to hand to code that binds by itself |
/// | `tokio::net::TcpListener`, `tokio::net::UdpSocket` | with loopcheck's `tokio` feature and `#[loopback_test(tokio)]` |
/// | `[T; N]` of any of these | `N` distinct values |
/// | `loopcheck::PortBlock<N>` | `N` contiguous leased ports (`first()`, `addr(i)`); the body sees a `PortBlock` |
///
/// ```ignore
/// use std::net::{SocketAddr, TcpListener, UdpSocket};
/// use loopcheck::{PortLease, loopback_test};
///
/// #[loopback_test]
/// fn a(port: u16) { /* bind 127.0.0.1:port and [::1]:port */ }
///
/// #[loopback_test]
/// fn b(addr: SocketAddr) { /* start a server on addr */ }
///
/// #[loopback_test]
/// fn c(listener: TcpListener, socket: UdpSocket, lease: PortLease) { /* ... */ }
///
/// #[loopback_test]
/// fn d(ports: [u16; 3], addrs: [SocketAddr; 2]) { /* three ports, two addresses, all distinct */ }
///
/// #[loopback_test]
/// fn node(ports: loopcheck::PortBlock<4>) { /* a node on ports.first(), gossip on ports.addr(1), ... */ }
///
/// #[loopback_test]
/// fn e(port: u16) -> Result<(), Box<dyn std::error::Error>> {
///     let listener = TcpListener::bind(("127.0.0.1", port))?;
///     Ok(())
/// }
/// ```
///
/// A body returning `Result<(), E>` with `E: Debug` fails the test on `Err`, as a `#[test]`
/// would. `#[ignore]`, `#[should_panic]` (also `expected = ".."`), `#[cfg_attr(..)]` and doc
/// comments work as on any test; every attribute other than `#[loopback_test]` is kept.
///
/// # Options
///
/// Options are comma-separated: `#[loopback_test(tokio, timeout = "10s", leaks = "fail")]`.
///
/// | option | meaning |
/// |---|---|
/// | `tokio` | the function is an `async fn`, run on a current-thread runtime of the user's `tokio` (`enable_all`), built by the test; the arguments are allocated inside it |
/// | `timeout = "10s"` | fail the test when the body has not returned in time (units `ms`, `s`, `m`); the body then runs on a thread of its own, so its arguments and result must be `Send` (`Box<dyn Error + Send + Sync>`, not `Box<dyn Error>`) |
/// | `leaks = "fail"` | fail a test that passed but left a port listening or a child running; the default `"warn"` only prints them |
/// | `crate = "path"` | the path through which loopcheck is reachable, when it is re-exported (default `::loopcheck`) |
///
/// ```ignore
/// use loopcheck::loopback_test;
///
/// #[loopback_test(tokio)]
/// async fn f(listener: tokio::net::TcpListener) {
///     let addr = listener.local_addr().unwrap();
///     let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
///     client.unwrap();
///     server.unwrap();
/// }
///
/// #[loopback_test(timeout = "10s", leaks = "fail")]
/// fn g(addr: std::net::SocketAddr) {
///     let listener = std::net::TcpListener::bind(addr).unwrap();
///     drop(listener);
/// }
///
/// #[loopback_test(crate = "my_support::loopcheck")]
/// fn h(port: u16) {}
/// ```
///
/// # Compile errors
///
/// Misuse is a compile error pointing at the token to change, and every problem of one
/// attribute is reported at once: an argument of another type or bound by a pattern, an
/// unknown, repeated or malformed option, an `async fn` without `tokio` (or `tokio` on a
/// plain `fn`), a second test attribute, generics, a `self` receiver, or the attribute on
/// something other than a function.
#[proc_macro_attribute]
pub fn loopback_test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::loopback_test(args.into(), item.into()).into()
}
