//! ESP (RFC 4303) with AES-GCM (RFC 4106): encapsulation, decapsulation, anti-replay.
//!
//! The functions here are sans-IO: they transform packets in [`Frame`](crate::frame::Frame)
//! buffers in place and count every drop under a [`DropReason`].

pub mod aead;
pub mod counters;
pub mod decap;
pub mod ecn;
pub mod encap;
pub mod replay;

pub use aead::{Aead, AeadError, Backend, Suite};
pub use counters::{DropCounters, DropReason, SaCounters};
pub use decap::{decrypt_batch, DecapOutcome};
pub use encap::encrypt_batch;
pub use replay::ReplayWindow;

/// Length of the explicit IV in ESP with AES-GCM (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;
/// Length of the ICV of the `*gcm16` suites.
pub const ICV_LEN: usize = 16;
/// Length of the salt at the end of the key material (RFC 4106 §8.1).
pub const SALT_LEN: usize = 4;
/// ESP header plus IV: the bytes in front of the ciphertext.
pub const ESP_PREFIX_LEN: usize = crate::wire::esp::HEADER_LEN + IV_LEN;

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
