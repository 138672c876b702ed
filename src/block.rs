//! Contiguous blocks of leased ports, for servers that take a base port and use the next few
//! (a node on `P` with its gossip, RPC and metrics ports on `P+1..P+3`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;

use crate::alloc::{PortLease, Protocols, allocator, probe, release_closed_sockets};
use crate::error::{Error, Result};
use crate::lease::Attempt;

/// `n` contiguous leased ports: `first()..=first() + n - 1`, each held from every other
/// loopcheck user until the block is dropped, and each bindable on `127.0.0.1` and `[::1]`
/// when it was leased, as [`reserve_port`](crate::reserve_port)'s ports are.
///
/// ```
/// let block = loopcheck::reserve_port_block(4)?;
/// let node = std::net::TcpListener::bind(block.addr(0))?;
/// let gossip = std::net::UdpSocket::bind(block.addr(1))?;
/// assert_eq!(block.addr(3).port(), block.first() + 3);
/// assert_eq!(block.ports().count(), 4);
/// # drop((node, gossip));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PortBlock {
    leases: Vec<PortLease>,
}

impl PortBlock {
    /// The block's ports, in order.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.first()..=self.last()
    }

    /// The block's first port.
    pub fn first(&self) -> u16 {
        self.leases[0].port()
    }

    /// The block's last port.
    pub fn last(&self) -> u16 {
        self.leases[self.leases.len() - 1].port()
    }

    /// How many ports the block holds (at least one).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Always `false`: a block holds at least one port.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// `127.0.0.1:first() + i`.
    ///
    /// # Panics
    ///
    /// When `i` is not below [`len`](PortBlock::len), as indexing does.
    pub fn addr(&self, i: usize) -> SocketAddr {
        match self.leases.get(i) {
            Some(lease) => lease.addr(),
            None => panic!(
                "port {i} of a block of {} ports (`{}`) does not exist",
                self.len(),
                crate::policy::PortRange::new(self.first(), self.last())
            ),
        }
    }

    /// The leases, one per port, in order.
    pub fn leases(&self) -> &[PortLease] {
        &self.leases
    }

    /// The leases, one per port, in order: to give ports back one at a time.
    pub fn into_leases(self) -> Vec<PortLease> {
        self.leases
    }

    /// Gives the ports back now (dropping the block does the same).
    pub fn release(self) {
        drop(self);
    }
}

/// Leases `n` contiguous ports, for a server that takes a base port and uses the next ones
/// too. Every port is leased and was bindable on `127.0.0.1` and `[::1]` (where IPv6 exists)
/// when the block was handed out; the block holds them until dropped.
///
/// A block is looked for where single ports are (see `docs/allocation.md`); a port that is
/// leased or in use moves the search past it. The error says so when no `n` contiguous ports
/// are free, or when the allocation range has no piece that long.
///
/// ```
/// let block = loopcheck::reserve_port_block(3)?;
/// let ports: Vec<u16> = block.ports().collect();
/// assert_eq!(ports, [block.first(), block.first() + 1, block.first() + 2]);
/// # Ok::<(), loopcheck::Error>(())
/// ```
pub fn reserve_port_block(n: usize) -> Result<PortBlock> {
    if n == 0 {
        return Err(Error::InvalidRequest(
            "a block of 0 ports: ask for at least one".into(),
        ));
    }
    let allocator = allocator()?;
    let policy = allocator.policy;
    let largest = policy.allocation.iter().map(|r| r.len()).max().unwrap_or(0);
    if n > largest {
        return Err(Error::RangeTooSmall {
            wanted: n,
            what: "contiguous ports",
            range: policy.allocation_display(),
            available: largest,
        });
    }
    release_closed_sockets();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let len = policy.allocation_len();
    // Blocks start where single ports are tried first, spread over the window like them.
    let start = allocator.window_base + allocator.cursor.fetch_add(n, Ordering::Relaxed) % allocator.window;
    let (mut leased, mut unbindable, mut unusable) = (0, 0, 0);
    let mut offset = 0;
    let mut leases = Vec::with_capacity(n);
    while offset < len {
        let index = (start + offset) % len;
        // A block may not wrap around the range's end, nor span a gap between its pieces.
        if index + n > len
            || policy.nth_port(index + n - 1) as usize != policy.nth_port(index) as usize + n - 1
        {
            offset += 1;
            continue;
        }
        let first = policy.nth_port(index);
        let mut failed = None;
        for k in 0..n {
            let port = first + k as u16;
            let lease = match allocator.registry.try_acquire(port) {
                Attempt::Acquired(lease) => lease,
                Attempt::Held => {
                    leased += 1;
                    failed = Some(k);
                    break;
                }
                Attempt::Unusable => {
                    unusable += 1;
                    failed = Some(k);
                    break;
                }
                Attempt::OutOfFiles(source) => {
                    return Err(Error::TooManyOpenFiles {
                        action: "open a lease file",
                        source,
                    });
                }
            };
            match probe(port, Protocols::Tcp) {
                Ok(()) => leases.push(PortLease { ip, lease }),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    unbindable += 1;
                    failed = Some(k);
                    break;
                }
                Err(source) => {
                    return Err(Error::socket("bind", SocketAddr::new(ip, port), source));
                }
            }
        }
        match failed {
            None => {
                for lease in &leases {
                    lease.lease.write_record(ip);
                }
                return Ok(PortBlock { leases });
            }
            // No block that holds the failed port can be leased now: start after it.
            Some(k) => {
                leases.clear();
                offset += k + 1;
            }
        }
    }
    Err(Error::NoBlock {
        len: n,
        range: policy.allocation_display(),
        leased,
        unbindable,
        unusable,
    })
}
