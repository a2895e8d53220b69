//! esprit benchmarks: the ESP engine against bare AES-GCM (`esp`), with the fixtures shared by
//! the `esprit-bench` tool and the criterion benches, and the gateway throughput benchmark
//! (`gateway`).

#![warn(missing_docs)]

pub mod esp;
pub mod gateway;
pub mod report;
pub mod stats;
