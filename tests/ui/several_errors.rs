use loopcheck::loopback_test;

#[loopback_test(timeout = "ten", retries = 3, leaks = "never")]
#[test]
async fn everything_wrong<T>((a, b): (u16, u16), name: String, addr: std::net::SocketAddr) {}

fn main() {}
