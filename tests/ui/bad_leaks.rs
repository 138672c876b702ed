use loopcheck::loopback_test;

#[loopback_test(leaks = "ignore")]
fn ignore(port: u16) {}

#[loopback_test(leaks = fail)]
fn unquoted(port: u16) {}

#[loopback_test(leaks)]
fn no_value(port: u16) {}

fn main() {}
