//! The dataplane's control API: newline-delimited JSON over a Unix stream socket (root-only),
//! versioned. The IKE daemon and `espctl` are its clients. Reference: `docs/api.md`.

pub mod client;
pub mod proto;
pub mod server;

pub use client::{ApiError, Client};
pub use proto::{Request, Response, SaInfo, Snapshot, VERSION};
