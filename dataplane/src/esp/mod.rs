//! ESP (RFC 4303) with AES-GCM (RFC 4106): encapsulation, decapsulation, anti-replay.
//!
//! The functions here are sans-IO: they transform packets in [`Frame`](crate::frame::Frame)
//! buffers in place and count every drop under a [`DropReason`].

pub mod decap;
pub mod ecn;
pub mod encap;

pub use crate::counters::{DropCounters, DropReason, SaCounters};
pub use crate::crypto::{
    Aead, AeadError, Backend, Suite, ESP_PREFIX_LEN, ICV_LEN, IV_LEN, SALT_LEN,
};
pub use crate::sa::replay::ReplayWindow;
pub use decap::{decrypt_batch, DecapOutcome};
pub use encap::encrypt_batch;

/// Per-packet result of a batch operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Processed: the frame holds the result and goes on to the next stage.
    Pass,
    /// Dropped and counted under this reason; the frame content is unspecified.
    Drop(DropReason),
    /// A UDP datagram on the NAT-T port that is IKE (non-ESP marker): hand it to the control
    /// plane untouched.
    Ike,
    /// A NAT-keepalive (a single 0xFF byte): consumed.
    Keepalive,
    /// Not ESP (another protocol, or UDP to a port that is not a NAT-T port): not for this
    /// stage, left untouched.
    NotEsp,
}
