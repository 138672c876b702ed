//! Race-free loopback ports and sockets for tests, coordinated across processes.
//!
//! A test that binds a fixed port fails when anything else holds it; a test that asks
//! `portpicker` for a number can lose that number to another process before it binds; under
//! `cargo nextest run` every test is its own process, so in-process locks coordinate nothing.
//! loopcheck hands out ports through a lease registry shared by every process of the user:
//!
//! - **race-free**: [`tcp_listener`] and [`udp_socket`] return sockets bound while the port is
//!   leased; [`reserve_port`] returns a [`PortLease`] that keeps the number from every other
//!   loopcheck user until it is dropped;
//! - **outside the ephemeral range**: the kernel never picks the port as the source port of an
//!   outgoing connection (see [`policy`]);
//! - **released when the holder dies**: a lease is an OS file lock, so even a test killed with
//!   `SIGKILL` gives its ports back at once (see [`lease`]);
//! - **isolated addresses**: on Linux each process gets its own `127.X.Y.Z` ([`loopback_ip`]).
//!
//! # The attribute
//!
//! [`#[loopback_test]`](loopback_test) makes a test of a function and hands it sockets or
//! ports as arguments; when the test fails it prints who holds each of its addresses, and
//! after the test it reports listeners and child processes it leaked (see `docs/guide.md`).
//!
//! ```
//! use std::net::{SocketAddr, TcpListener, TcpStream};
//! use loopcheck::loopback_test;
//!
//! #[loopback_test]
//! fn echo(listener: TcpListener, client_addr: SocketAddr, ports: [u16; 2]) {
//!     let server_addr = listener.local_addr().unwrap();
//!     TcpStream::connect(server_addr).unwrap();
//! }
//! ```
//!
//! # Getting a socket
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//!
//! let listener = loopcheck::tcp_listener()?;
//! let addr = listener.local_addr()?;
//! let mut client = TcpStream::connect(addr)?;
//! let (mut server, _) = listener.accept()?;
//! server.write_all(b"hello")?;
//! let mut reply = String::new();
//! drop(server);
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Getting a number
//!
//! For code that binds by itself, such as a server started as a child process or configured
//! through a file, lease a port and keep the lease while the server runs:
//!
//! ```
//! let lease = loopcheck::reserve_port()?;
//! let config = format!("listen = \"127.0.0.1:{}\"", lease.port());
//! // ... start the server with `config`; keep `lease` alive until the test ends.
//! # assert!(config.contains(&lease.port().to_string()));
//! # Ok::<(), loopcheck::Error>(())
//! ```
//!
//! Migrating from `portpicker` is one changed import: [`pick_unused_port`] has the same
//! signature and keeps its lease until the process exits. To hand a bound socket to a child
//! server instead of a number, see [`activation`] (Unix).
//!
//! # Configuration
//!
//! | variable | meaning |
//! |---|---|
//! | `LOOPCHECK_DIR` | lease registry directory (default `$XDG_RUNTIME_DIR/loopcheck`, else `<temp>/loopcheck-<uid>`) |
//! | `LOOPCHECK_PORT_RANGE` | `LO-HI` allocation range, which may reach below 10000 and into ports named in `/etc/services` (left out by default); the kernel's ephemeral and reserved ports are still left out |
//! | `LOOPCHECK_TEST` | the test a process works for, recorded in its leases |
//! | `LOOPCHECK_RUN_DIR` | a run directory, set by `cargo loopcheck test`: each `#[loopback_test]` appends one JSON record to its `records.jsonl`; its name is recorded as the run id |
//!
//! # Platforms
//!
//! Linux is complete. On macOS and the BSDs the ephemeral range comes from `sysctl`, and only
//! `127.0.0.1` is used unless other loopback addresses are aliased. On Windows the dynamic and
//! excluded port ranges come from `netsh`, and leases of sockets handed out as std types are
//! kept until the process exits.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alloc;
mod block;
mod error;
mod harness;
mod json;
mod prober;
/// The run contract with `cargo loopcheck test`. Hidden from the docs: only the CLI reads the
/// records; users see the variables as `loopcheck::lease::{TEST_VAR, RUN_DIR_VAR}`.
#[doc(hidden)]
pub mod run;
/// Facts about this process and user that `cargo loopcheck` needs too. Hidden from the docs:
/// not an API for users of the library.
#[doc(hidden)]
pub mod sys;

#[cfg(unix)]
pub mod activation;
pub mod diagnose;
pub mod lease;
pub mod policy;
pub mod report;
pub mod scan;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use alloc::{
    PortLease, loopback_ip, pick_unused_port, reserve_port, reserve_ports, reserve_udp_port, tcp_listener,
    udp_socket,
};
pub use block::{PortBlock, reserve_port_block};
pub use diagnose::{diagnose, probe};
pub use error::{Error, Result};
/// Makes a test whose arguments are race-free loopback ports, addresses and sockets.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
///
/// use loopcheck::{PortLease, loopback_test};
///
/// #[loopback_test]
/// fn binds_both_families(port: u16) -> std::io::Result<()> {
///     let _v4 = TcpListener::bind(("127.0.0.1", port))?;
///     let _v6 = TcpListener::bind(("::1", port));
///     Ok(())
/// }
///
/// #[loopback_test]
/// fn echoes(listener: TcpListener) {
///     let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
///     let (mut server, _) = listener.accept().unwrap();
///     server.write_all(b"ping").unwrap();
///     drop(server);
///     let mut text = String::new();
///     client.read_to_string(&mut text).unwrap();
///     assert_eq!(text, "ping");
/// }
///
/// #[loopback_test]
/// fn distinct(ports: [u16; 3], addr: SocketAddr, socket: UdpSocket, lease: PortLease) {
///     assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
///     socket.send_to(b"hi", addr).unwrap();
///     drop(lease.into_listener().unwrap());
/// }
///
/// #[loopback_test]
/// fn contiguous(ports: loopcheck::PortBlock<3>) {
///     let node = TcpListener::bind(ports.addr(0)).unwrap();
///     let gossip = UdpSocket::bind(ports.addr(1)).unwrap();
///     assert_eq!(ports.addr(2).port(), ports.first() + 2);
/// #   drop((node, gossip));
/// }
///
/// #[loopback_test(timeout = "10s", leaks = "fail")]
/// #[ignore = "shows the options"]
/// fn with_options(addr: SocketAddr) {
///     drop(TcpListener::bind(addr).unwrap());
/// }
///
/// #[loopback_test]
/// #[should_panic(expected = "boom")]
/// fn panics(_port: u16) {
///     panic!("boom");
/// }
///
/// #[loopback_test(tokio)]
/// async fn accepts(listener: tokio::net::TcpListener) {
///     let addr = listener.local_addr().unwrap();
///     let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
///     client.unwrap();
///     accepted.unwrap();
/// }
/// # fn main() {}
/// ```
pub use loopcheck_macros::loopback_test;
pub use report::Diagnosis;
pub use scan::{SocketTable, scan};

/// What `#[loopback_test]` expands into. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::harness::{Arg, Context, Leaks, Test, TestReturn, port_block, run, run_with_timeout};
}
