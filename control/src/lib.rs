//! esprit control plane: IKEv2 per RFC 7296 as a sans-IO core (codec, crypto, state machines),
//! its configuration, and the daemon that keys the dataplane.

pub mod config;
pub mod daemon;
pub mod doctor;
pub mod ike;
