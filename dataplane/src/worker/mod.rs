//! Workers: the forwarding pipeline (sans-IO, batch in, batch out) and the AF_XDP poll loop
//! that feeds it.

pub mod fragment;
pub mod handoff;
pub mod host;
pub mod icmp;
pub mod mss;
pub mod neigh;
pub mod neigh_queue;
pub mod offload;
pub mod pipeline;
pub mod pool;
pub mod xsk;

pub use neigh::{NeighRequest, Neighbours};
pub use pipeline::{Out, Pipeline, Port, Side};
