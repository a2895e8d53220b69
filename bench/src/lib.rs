//! esprit benchmarks: the ESP engine against bare AES-GCM (`esp`), with the fixtures shared by
//! the `esprit-bench` tool and the criterion benches.

#![warn(missing_docs)]

pub mod esp;
pub mod report;
pub mod stats;
