use loopcheck::loopback_test;

#[loopback_test]
#[test]
fn plain(port: u16) {}

#[loopback_test(tokio)]
#[tokio::test]
async fn tokio_test(port: u16) {}

fn main() {}
