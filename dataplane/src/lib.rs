//! esprit dataplane: wire formats, ESP with AES-GCM, SA tables, and (later) AF_XDP I/O and
//! workers.
//!
//! Everything in this crate that touches packets is sans-IO and allocation-free per packet:
//! it transforms [`frame::Frame`]s in place and counts every drop under a named reason.

#![deny(missing_docs)]

pub mod api;
pub mod counters;
pub mod crypto;
pub mod daemon;
pub mod esp;
pub mod frame;
/// Least privilege for the daemons (the `esprit-harden` crate).
pub use esprit_harden as harden;
pub mod kernel;
pub mod pcap;
pub mod prefetch;
pub mod sa;
pub mod wire;
pub mod worker;
pub mod xdp;
