use loopcheck::{PortBlock, loopback_test};

#[loopback_test]
fn no_length(ports: PortBlock) {}

#[loopback_test]
fn empty(ports: PortBlock<0>) {}

#[loopback_test]
fn named_length(ports: PortBlock<N>) {}

#[loopback_test]
fn array_of_blocks(blocks: [PortBlock<2>; 3]) {}

fn main() {}
