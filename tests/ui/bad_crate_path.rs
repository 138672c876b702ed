use loopcheck::loopback_test;

#[loopback_test(crate = "not a path")]
fn spaces(port: u16) {}

#[loopback_test(crate = 3)]
fn number(port: u16) {}

#[loopback_test(crate)]
fn no_value(port: u16) {}

fn main() {}
