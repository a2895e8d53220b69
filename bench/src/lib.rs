//! esprit benchmarks: the ESP engine against bare AES-GCM (`esp`), with the fixtures shared by
//! the `esprit-bench` tool and the criterion benches.

pub mod esp;
pub mod report;
pub mod stats;
