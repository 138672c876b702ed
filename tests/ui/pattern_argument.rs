use loopcheck::loopback_test;

#[loopback_test]
fn destructured([first, second]: [u16; 2]) {}

#[loopback_test]
fn wildcard(_: std::net::TcpListener) {}

#[loopback_test]
fn by_ref(ref port: u16) {}

fn main() {}
