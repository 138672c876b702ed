use loopcheck::loopback_test;

#[loopback_test]
struct Server {
    port: u16,
}

fn main() {}
