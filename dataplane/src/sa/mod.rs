//! Security associations: their configuration, their per-worker state and the tables that
//! find them (by SPI inbound, by traffic selectors outbound), and the SA file loader.

pub mod config;
pub mod db;
pub mod event;
pub mod file;
pub mod flat;
pub mod huge;
pub mod index;
pub(crate) mod lpm;
pub mod replay;
pub mod route;
pub mod selector;
pub mod spd;
pub mod state;

pub use config::{Direction, Lifetime, Mode, SaConfig, UdpEncap};
pub use db::{SaDb, SaDbError, Warm};
pub use event::{SaEvent, SaEventKind};
pub use route::{RouteAction, RouteTable};
pub use selector::{Prefix, Selectors};
pub use state::{InboundSa, OutboundSa};
