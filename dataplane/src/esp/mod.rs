//! ESP (RFC 4303) with AES-GCM (RFC 4106): encapsulation, decapsulation, anti-replay.
//!
//! The functions here are sans-IO: they transform packets in [`Frame`](crate::frame::Frame)
//! buffers in place and count every drop under a [`DropReason`].

pub mod decap;
pub mod ecn;
pub mod encap;

pub use crate::counters::{Counted, DropCounters, DropReason, SaCounters};
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
    /// Dropped and counted (per SA when the SA is known, in the SA database otherwise); the
    /// frame content is unspecified.
    Drop(Counted),
    /// A UDP datagram on the NAT-T port that is IKE (non-ESP marker): hand it to the control
    /// plane untouched.
    Ike,
    /// A NAT-keepalive (a single 0xFF byte): consumed.
    Keepalive,
    /// Not ESP (another protocol, or UDP to a port that is not a NAT-T port): not for this
    /// stage, left untouched.
    NotEsp,
}

impl Verdict {
    /// The reason a dropped packet was counted under; `None` for the other verdicts.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            Verdict::Drop(c) => Some(c.reason()),
            _ => None,
        }
    }
}
