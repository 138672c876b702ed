use loopcheck::loopback_test;

#[loopback_test(tokio = "multi_thread")]
async fn flavored(port: u16) {}

fn main() {}
