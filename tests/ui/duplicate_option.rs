use loopcheck::loopback_test;

#[loopback_test(timeout = "1s", leaks = "fail", timeout = "2s")]
fn twice(port: u16) {}

fn main() {}
