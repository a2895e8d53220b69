//! esprit benchmarks: the ESP engine against bare AES-GCM (`esp`), with the fixtures shared by
//! the `esprit-bench` tool and the criterion benches, the gateway throughput benchmark
//! (`gateway`), IKE SA setups per second (`ike`), the cost of one datagram to the IKE endpoint
//! with few and many IKE SAs (`ike_cost`), and the cost of checksum completion and inner
//! fragmentation on the pipeline (`offload`), and the route table at Internet scale (`routes`).

#![warn(missing_docs)]

pub mod esp;
pub mod gateway;
pub mod ike;
pub mod ike_cost;
pub mod metrics;
pub mod offload;
pub mod pipeline;
pub mod pipeline_svg;
pub mod report;
pub mod route_hash;
pub mod routes;
pub mod routes_kernel;
pub mod stats;
