use loopcheck::loopback_test;

#[loopback_test(timeout = "ten")]
fn words(port: u16) {}

#[loopback_test(timeout = "10")]
fn no_unit(port: u16) {}

#[loopback_test(timeout = "0s")]
fn zero(port: u16) {}

#[loopback_test(timeout = "10h")]
fn hours(port: u16) {}

#[loopback_test(timeout = 10)]
fn not_a_string(port: u16) {}

#[loopback_test(timeout)]
fn no_value(port: u16) {}

fn main() {}
