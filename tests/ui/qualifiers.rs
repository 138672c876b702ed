use loopcheck::loopback_test;

#[loopback_test]
unsafe fn is_unsafe(port: u16) {}

#[loopback_test]
const fn is_const(port: u16) {}

#[loopback_test]
extern "C" fn is_extern(port: u16) {}

fn main() {}
