//! The control API of `esprit-dataplane`: newline-delimited JSON over a Unix stream socket,
//! versioned. This crate holds the typed messages ([`proto`], [`sa`]), the wire envelope and a
//! blocking [`Client`]; it depends on neither daemon, so the IKE daemon and `espctl` use the
//! API without linking the dataplane. Reference: `docs/api.md`.

pub mod client;
pub mod owner;
pub mod proto;
pub mod runtime;
pub mod sa;

pub use client::{ApiError, Client, DEFAULT_SOCKET};
pub use proto::{
    Envelope, ErrorBody, EventLine, Hello, Request, Response, SaInfo, Snapshot, SocketStats,
    VERSION,
};
pub use runtime::{InterfaceRuntime, Runtime, WorkerRuntime};
pub use sa::{Direction, Encap, Mode, SaKey, SaShapeError, SaSpec, Spi};
