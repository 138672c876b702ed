use loopcheck::loopback_test;

#[loopback_test]
async fn needs_a_runtime(port: u16) {}

fn main() {}
