//! The dataplane daemon `esprit-dataplane`: configuration, start-up (SAs, interfaces, XDP,
//! workers), the control thread that keeps next hops fresh, and a clean shutdown.

pub mod api;
pub mod config;
pub mod follower;
pub mod metrics;
mod neigh;
pub mod privileges;
pub mod reload;
pub mod router;
pub mod run;
pub mod runtime;
pub mod tunnels;

pub use config::DataplaneConfig;
