//! Every form of `#[loopback_test]`, run as real tests doing real work on their sockets.

use std::collections::HashSet;
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use loopcheck::{PortLease, loopback_test};

/// Accepts one connection on `listener` from a fresh client and passes a line through it.
fn round_trip(listener: &TcpListener) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let mut client = TcpStream::connect(addr)?;
    let (mut server, peer) = listener.accept()?;
    assert_eq!(peer, client.local_addr()?);
    client.write_all(b"ping")?;
    client.shutdown(std::net::Shutdown::Write)?;
    let mut received = String::new();
    server.read_to_string(&mut received)?;
    assert_eq!(received, "ping");
    Ok(())
}

/// Sends a datagram to `socket` from a second socket and reads it back.
fn datagram(socket: &UdpSocket) -> io::Result<()> {
    let target = socket.local_addr()?;
    let sender = UdpSocket::bind(SocketAddr::new(target.ip(), 0))?;
    sender.send_to(b"hello", target)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0; 16];
    let (n, from) = socket.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, sender.local_addr()?);
    Ok(())
}

fn assert_loopback(addr: SocketAddr) {
    assert!(addr.ip().is_loopback(), "{addr} is not a loopback address");
    assert_ne!(addr.port(), 0);
}

fn assert_distinct(ports: impl IntoIterator<Item = u16>) {
    let ports: Vec<u16> = ports.into_iter().collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len(), "ports are not distinct: {ports:?}");
}

#[loopback_test]
fn port_binds_on_both_loopback_families(port: u16) {
    assert_ne!(port, 0);
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    round_trip(&v4).unwrap();
    if loopcheck::policy::ipv6_available() {
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).unwrap();
        round_trip(&v6).unwrap();
    }
}

#[loopback_test]
fn addr_is_bindable_on_the_test_loopback_address(addr: SocketAddr) {
    assert_loopback(addr);
    let listener = TcpListener::bind(addr).unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr);
    round_trip(&listener).unwrap();
}

#[loopback_test]
fn listener_accepts_a_connection(listener: TcpListener) {
    assert_loopback(listener.local_addr().unwrap());
    round_trip(&listener).unwrap();
}

#[loopback_test]
fn udp_socket_receives_a_datagram(socket: UdpSocket) {
    assert_loopback(socket.local_addr().unwrap());
    datagram(&socket).unwrap();
}

#[loopback_test]
fn lease_becomes_a_listener(lease: PortLease) {
    let port = lease.port();
    let listener = lease.into_listener().unwrap();
    assert_eq!(listener.local_addr().unwrap().port(), port);
    round_trip(&listener).unwrap();
}

#[loopback_test]
fn port_arrays_are_distinct(ports: [u16; 3]) {
    assert_distinct(ports);
    let listeners: Vec<TcpListener> = ports
        .iter()
        .map(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap())
        .collect();
    for listener in &listeners {
        round_trip(listener).unwrap();
    }
}

#[loopback_test]
fn addr_and_socket_arrays_are_distinct(
    addrs: [SocketAddr; 2],
    listeners: [TcpListener; 2],
    sockets: [UdpSocket; 2],
) {
    assert_distinct(addrs.iter().map(SocketAddr::port));
    let listener_addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    assert_distinct(listener_addrs.iter().map(SocketAddr::port));
    for addr in addrs {
        round_trip(&TcpListener::bind(addr).unwrap()).unwrap();
    }
    for listener in &listeners {
        round_trip(listener).unwrap();
    }
    for socket in &sockets {
        datagram(socket).unwrap();
    }
}

#[loopback_test]
fn several_arguments_at_once(
    port: u16,
    addr: SocketAddr,
    listener: TcpListener,
    socket: UdpSocket,
    lease: PortLease,
) {
    let listener_port = listener.local_addr().unwrap().port();
    let socket_port = socket.local_addr().unwrap().port();
    // A UDP port may equal a TCP one; the TCP ports are all distinct.
    assert_distinct([port, addr.port(), listener_port, lease.port()]);
    assert_ne!(socket_port, 0);
    round_trip(&TcpListener::bind(addr).unwrap()).unwrap();
    round_trip(&listener).unwrap();
    datagram(&socket).unwrap();
    round_trip(&TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap()).unwrap();
}

#[loopback_test]
fn mutable_bindings_stay_mutable(mut ports: [u16; 4], mut listener: TcpListener) {
    ports.sort_unstable();
    assert!(ports.windows(2).all(|pair| pair[0] < pair[1]));
    listener = TcpListener::bind(SocketAddr::new(listener.local_addr().unwrap().ip(), 0)).unwrap();
    round_trip(&listener).unwrap();
}

#[loopback_test]
fn no_arguments_still_runs_under_the_harness() {
    assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).is_ok());
}

#[loopback_test]
fn result_with_boxed_error(port: u16) -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    round_trip(&listener)?;
    Ok(())
}

#[loopback_test]
fn result_with_io_error(listener: TcpListener) -> io::Result<()> {
    round_trip(&listener)
}

#[loopback_test(timeout = "10s")]
fn timeout_passes_when_the_body_is_quick(addr: SocketAddr) {
    round_trip(&TcpListener::bind(addr).unwrap()).unwrap();
}

#[loopback_test(timeout = "30000ms")]
fn timeout_with_a_result(socket: UdpSocket) -> Result<(), String> {
    datagram(&socket).map_err(|e| e.to_string())
}

#[loopback_test(leaks = "fail")]
fn leaks_fail_on_a_clean_test(addr: SocketAddr, listener: TcpListener) {
    round_trip(&TcpListener::bind(addr).unwrap()).unwrap();
    round_trip(&listener).unwrap();
}

#[loopback_test(timeout = "1m", leaks = "warn", crate = "reexport::loopcheck")]
fn options_combined_through_a_reexported_crate(port: u16) {
    round_trip(&TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap()).unwrap();
}

mod reexport {
    pub(crate) use ::loopcheck;
}

/// Doc comments are kept on the generated test.
#[loopback_test]
#[ignore = "ignored on purpose: runs only with --ignored"]
fn ignored_test_still_compiles(port: u16) {
    round_trip(&TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap()).unwrap();
}

#[loopback_test]
#[should_panic]
fn should_panic_passes_when_the_body_panics(port: u16) {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    panic!("on purpose");
}

#[loopback_test]
#[should_panic(expected = "port in the message")]
fn should_panic_with_expected_message(port: u16) {
    panic!("port in the message: {port}");
}

#[loopback_test(timeout = "10s")]
#[should_panic(expected = "through the timeout thread")]
fn should_panic_under_a_timeout(_addr: SocketAddr) {
    panic!("through the timeout thread");
}

#[loopback_test]
#[cfg_attr(all(), should_panic(expected = "behind cfg_attr"))]
#[cfg_attr(any(), ignore)]
#[allow(unreachable_code)]
fn should_panic_behind_cfg_attr(listener: TcpListener) {
    drop(listener);
    panic!("behind cfg_attr");
}

#[loopback_test]
fn raw_identifier_name_r_type(r#type: u16) {
    assert_ne!(r#type, 0);
}

/// A body that outlives its timeout fails the test with "timed out after".
#[test]
fn a_body_past_its_timeout_fails() {
    use loopcheck::__private::{Leaks, Test, run_with_timeout};
    let test = Test {
        name: "macro_forms::sleeper",
        timeout: Some(Duration::from_millis(200)),
        leaks: Leaks::Warn,
        should_panic: false,
    };
    // The body's thread is left to finish by itself, so it sleeps only a little past the limit.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_with_timeout(test, |_cx| move || std::thread::sleep(Duration::from_secs(2)));
    }));
    let payload = outcome.expect_err("a body sleeping past its timeout must fail the test");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(message.contains("timed out after"), "{message}");
    assert!(message.contains("macro_forms::sleeper"), "{message}");
}

#[cfg(feature = "tokio")]
mod tokio_forms {
    use std::net::{SocketAddr, TcpListener as StdTcpListener};

    use loopcheck::loopback_test;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    async fn round_trip(listener: &TcpListener) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut client, (mut server, _)) = (client?, accepted?);
        client.write_all(b"ping").await?;
        client.shutdown().await?;
        let mut received = String::new();
        server.read_to_string(&mut received).await?;
        assert_eq!(received, "ping");
        Ok(())
    }

    #[loopback_test(tokio)]
    async fn tokio_listener_accepts(listener: TcpListener) {
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        round_trip(&listener).await.unwrap();
    }

    #[loopback_test(tokio)]
    async fn tokio_udp_socket_receives(socket: UdpSocket) -> std::io::Result<()> {
        let target = socket.local_addr()?;
        let sender = UdpSocket::bind(SocketAddr::new(target.ip(), 0)).await?;
        sender.send_to(b"hello", target).await?;
        let mut buf = [0; 16];
        let (n, from) = socket.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, sender.local_addr()?);
        Ok(())
    }

    #[loopback_test(tokio, timeout = "10s", leaks = "fail")]
    async fn tokio_with_std_arguments_and_options(
        addr: SocketAddr,
        ports: [u16; 2],
        listeners: [TcpListener; 2],
    ) {
        assert_ne!(ports[0], ports[1]);
        let listener = TcpListener::from_std({
            let std = StdTcpListener::bind(addr).unwrap();
            std.set_nonblocking(true).unwrap();
            std
        })
        .unwrap();
        round_trip(&listener).await.unwrap();
        for listener in &listeners {
            round_trip(listener).await.unwrap();
        }
    }

    #[loopback_test(tokio)]
    #[should_panic(expected = "inside the runtime")]
    async fn tokio_should_panic(_listener: TcpListener) {
        tokio::task::yield_now().await;
        panic!("inside the runtime");
    }
}

#[loopback_test]
fn a_block_is_contiguous_and_leased(ports: loopcheck::PortBlock<4>, other: u16) {
    assert_eq!(ports.len(), 4);
    let numbers: Vec<u16> = ports.ports().collect();
    assert_eq!(numbers, (ports.first()..ports.first() + 4).collect::<Vec<_>>());
    assert!(!ports.ports().contains(&other));
    for i in 0..ports.len() {
        let lease = loopcheck::lease::lease_of(ports.addr(i).port()).unwrap().unwrap();
        assert_eq!(lease.status, loopcheck::lease::LeaseStatus::Held);
        round_trip(&TcpListener::bind(ports.addr(i)).unwrap()).unwrap();
    }
}

#[loopback_test]
fn two_blocks_never_overlap(node: loopcheck::PortBlock<3>, peer: loopcheck::PortBlock<3>) {
    assert_distinct(node.ports().chain(peer.ports()));
}
