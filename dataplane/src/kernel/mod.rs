//! What the dataplane reads from the kernel: interface MACs and addresses, the neighbour
//! table and the routes (netlink), so next hops resolve the way the rest of the host sees them.

pub mod iface;
pub mod neigh;
pub mod route;
pub mod tun;
