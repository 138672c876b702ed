use loopcheck::loopback_test;

#[loopback_test(flavor = "multi_thread")]
fn unknown(port: u16) {}

#[loopback_test(timout = "10s")]
fn misspelled(port: u16) {}

#[loopback_test(tokyo)]
async fn misspelled_runtime(port: u16) {}

fn main() {}
