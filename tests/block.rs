//! `reserve_port_block`: contiguous, leased, bindable on both loopback families, released on
//! drop.

use std::net::{Ipv6Addr, TcpListener, UdpSocket};

use loopcheck::lease::{LeaseStatus, lease_of};

#[test]
fn a_block_is_contiguous_leased_and_bindable_on_both_families() {
    let block = loopcheck::reserve_port_block(4).unwrap();
    let ports: Vec<u16> = block.ports().collect();
    assert_eq!(ports, (block.first()..block.first() + 4).collect::<Vec<_>>());
    assert_eq!((block.len(), block.last()), (4, block.first() + 3));
    for (i, &port) in ports.iter().enumerate() {
        assert_eq!(block.addr(i), std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let lease = lease_of(port).unwrap().expect("a lease file");
        assert_eq!(lease.status, LeaseStatus::Held);
        assert_eq!(lease.record.unwrap().pid, std::process::id());
        let _tcp = TcpListener::bind(block.addr(i)).unwrap();
        let _udp = UdpSocket::bind(block.addr(i)).unwrap();
        if loopcheck::policy::ipv6_available() {
            let _v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).unwrap();
        }
    }
    let first = block.first();
    drop(block);
    for port in first..first + 4 {
        assert_ne!(
            lease_of(port).unwrap().unwrap().status,
            LeaseStatus::Held,
            "{port}"
        );
    }
}

#[test]
fn blocks_never_overlap_each_other_or_single_leases() {
    let singles = loopcheck::reserve_ports(16).unwrap();
    let blocks: Vec<_> = (0..16)
        .map(|_| loopcheck::reserve_port_block(3).unwrap())
        .collect();
    let mut all: Vec<u16> = singles.iter().map(|l| l.port()).collect();
    all.extend(blocks.iter().flat_map(|b| b.ports()));
    let len = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), len, "every port is leased once");
}

#[test]
fn a_block_can_be_given_back_port_by_port() {
    let block = loopcheck::reserve_port_block(2).unwrap();
    let first = block.first();
    let mut leases = block.into_leases();
    drop(leases.remove(0));
    assert_ne!(lease_of(first).unwrap().unwrap().status, LeaseStatus::Held);
    assert_eq!(lease_of(first + 1).unwrap().unwrap().status, LeaseStatus::Held);
}

#[test]
#[should_panic(expected = "port 2 of a block of 2 ports")]
fn an_address_past_the_end_panics() {
    loopcheck::reserve_port_block(2).unwrap().addr(2);
}

#[test]
fn impossible_blocks_are_clear_errors() {
    let zero = loopcheck::reserve_port_block(0).unwrap_err().to_string();
    assert!(zero.contains("a block of 0 ports"), "{zero}");
    let huge = loopcheck::reserve_port_block(60_000).unwrap_err().to_string();
    assert!(
        huge.contains("60000 contiguous ports cannot fit in the allocation range")
            && huge.contains("LOOPCHECK_PORT_RANGE"),
        "{huge}"
    );
    let many = loopcheck::reserve_ports(70_000).unwrap_err().to_string();
    assert!(many.contains("70000 ports cannot fit"), "{many}");
}
