//! The sans-IO IKEv2 state machines: inputs are datagrams, time and randomness; outputs are
//! datagrams, child SAs to install or remove, and events. No sockets, threads or clocks inside.

pub mod cookie;
pub mod drops;
pub mod endpoint;
pub mod events;
pub mod ike_sa;
pub mod limits;
pub mod params;
pub mod proposal;
pub mod timers;
pub mod ts;

pub use cookie::CookiePolicy;
pub use drops::{DropCounters, DropReason};
pub use endpoint::{Endpoint, EndpointSettings, EndpointStats, InitiateError, SPI_REUSE_HOLD};
pub use events::{ChildLimits, ChildSaInstall, IkeEvent, LogLine, Transmit};
pub use ike_sa::{ChildSa, IkeSa, Role, SetupError, State};
pub use limits::HalfOpenLimits;
pub use params::{
    ChildMode, ChildParams, ConnectionParams, EspProposalSpec, IkeProposalSpec, LocalCredential,
    RemoteCredential, Retransmit, TsSpec,
};

#[cfg(test)]
pub(crate) mod tests;
