//! Tests with the socket problems `cargo loopcheck` finds.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn roundtrip(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    writeln!(stream, "hello").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// A fixed port: collides with every other run of this test, and with anything on 8080.
#[test]
fn echoes_on_a_fixed_port() {
    let listener = TcpListener::bind("127.0.0.1:8080").unwrap();
    std::thread::spawn(move || demo::serve(listener));
    assert_eq!(roundtrip("127.0.0.1:8080"), "hello\n");
}

/// A wildcard bind: the test server is reachable from the network.
#[test]
fn echoes_on_all_interfaces() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || demo::serve(listener));
    assert_eq!(roundtrip(&format!("127.0.0.1:{port}")), "hello\n");
}

/// A racy pick: another process can take the port between the pick and the bind.
#[test]
fn echoes_on_a_picked_port() {
    let port = portpicker::pick_unused_port().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || demo::serve(listener));
    assert_eq!(roundtrip(&format!("127.0.0.1:{port}")), "hello\n");
}

/// Clean: the OS picks the port and the test keeps the socket. The lint must not flag it.
#[test]
fn echoes_on_a_kept_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || demo::serve(listener));
    assert_eq!(roundtrip(&addr), "hello\n");
}
