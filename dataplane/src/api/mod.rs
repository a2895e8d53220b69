//! The dataplane's side of the control API. The messages, the envelope and the client live in
//! the `esprit-api` crate (re-exported here); this module converts between them and the
//! dataplane's types. The server is part of the daemon (`crate::daemon::api`).

pub mod convert;

pub use esprit_api::client;
pub use esprit_api::proto;
pub use esprit_api::{ApiError, Client, Request, Response, SaInfo, Snapshot, VERSION};
