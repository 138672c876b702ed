use loopcheck::loopback_test;

#[loopback_test(timeout = "1s" leaks = "fail")]
fn missing_comma(port: u16) {}

#[loopback_test("10s")]
fn bare_literal(port: u16) {}

fn main() {}
