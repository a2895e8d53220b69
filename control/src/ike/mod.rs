//! IKEv2 (RFC 7296): algorithms, identities, randomness, the message codec, crypto and the
//! sans-IO state machines.

pub mod algorithms;
pub mod crypto;
pub mod identity;
pub mod message;
pub mod rng;
pub mod session;
