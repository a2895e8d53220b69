//! esprit benchmarks.
