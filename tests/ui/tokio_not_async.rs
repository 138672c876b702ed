use loopcheck::loopback_test;

#[loopback_test(tokio)]
fn not_async(port: u16) {}

fn main() {}
