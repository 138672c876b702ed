//! The same sockets as tokio types (feature `tokio`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = loopcheck::tokio::tcp_listener()?;
//! let addr = listener.local_addr()?;
//! let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
//! assert_eq!(client?.peer_addr()?, addr);
//! # drop(server?);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;

use crate::error::{Error, Result};

/// Makes a std socket ready for tokio: a running runtime is required and the socket must be
/// non-blocking before it is registered.
fn convert<S, T>(socket: S, addr: SocketAddr, from_std: impl FnOnce(S) -> io::Result<T>) -> Result<T>
where
    for<'s> SockRef<'s>: From<&'s S>,
{
    let failed = |action, source| Error::socket(action, addr, source);
    SockRef::from(&socket)
        .set_nonblocking(true)
        .map_err(|e| failed("make non-blocking", e))?;
    from_std(socket).map_err(|e| failed("register with tokio", e))
}

fn runtime_check() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidRequest(
            "tokio sockets need a running tokio runtime: call this inside `#[tokio::test]` or `Runtime::block_on`".into(),
        )),
    }
}

/// [`crate::tcp_listener`] as a [`tokio::net::TcpListener`]; needs a running tokio runtime.
pub fn tcp_listener() -> Result<tokio::net::TcpListener> {
    runtime_check()?;
    let listener = crate::tcp_listener()?;
    let addr = or_unknown(listener.local_addr());
    convert(listener, addr, tokio::net::TcpListener::from_std)
}

/// [`crate::udp_socket`] as a [`tokio::net::UdpSocket`]; needs a running tokio runtime.
pub fn udp_socket() -> Result<tokio::net::UdpSocket> {
    runtime_check()?;
    let socket = crate::udp_socket()?;
    let addr = or_unknown(socket.local_addr());
    convert(socket, addr, tokio::net::UdpSocket::from_std)
}

/// The address of a socket just bound by loopcheck, for error messages only.
fn or_unknown(addr: io::Result<SocketAddr>) -> SocketAddr {
    addr.unwrap_or_else(|_| SocketAddr::new(crate::loopback_ip(), 0))
}

impl crate::PortLease {
    /// [`PortLease::into_listener`](crate::PortLease::into_listener) as a tokio listener;
    /// needs a running tokio runtime.
    pub fn into_tokio_listener(self) -> Result<tokio::net::TcpListener> {
        runtime_check()?;
        let addr = self.addr();
        convert(self.into_listener()?, addr, tokio::net::TcpListener::from_std)
    }
}
