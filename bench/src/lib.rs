//! esprit benchmarks: the ESP engine against bare AES-GCM (`esp`), with the fixtures shared by
//! the `esprit-bench` tool and the criterion benches, the gateway throughput benchmark
//! (`gateway`), and IKE SA setups per second (`ike`).

#![warn(missing_docs)]

pub mod esp;
pub mod gateway;
pub mod ike;
pub mod report;
pub mod stats;
