//! Events an SA raises for the control plane: lifetime expiry and sequence exhaustion.

use crate::sa::Direction;
use std::net::IpAddr;

/// What happened to an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaEventKind {
    /// A soft byte or packet limit was reached: time to rekey.
    SoftExpire,
    /// A hard limit was reached: the SA no longer processes packets.
    HardExpire,
    /// An outbound SA used its last sequence number: it no longer sends.
    SeqExhausted,
    /// Traffic matched a trap policy that has no SA yet: the control plane should negotiate one
    /// (`spi` is 0, `local`/`remote` are the packet's source and destination, `policy` the
    /// trap's id).
    Acquire,
}

impl SaEventKind {
    /// Stable name used in the API.
    pub fn name(self) -> &'static str {
        match self {
            SaEventKind::SoftExpire => "soft_expire",
            SaEventKind::HardExpire => "hard_expire",
            SaEventKind::SeqExhausted => "seq_exhausted",
            SaEventKind::Acquire => "acquire",
        }
    }
}

/// An event with the SA it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaEvent {
    /// What happened.
    pub kind: SaEventKind,
    /// The SA's SPI.
    pub spi: u32,
    /// Its direction.
    pub direction: Direction,
    /// Its local (this gateway's) address.
    pub local: IpAddr,
    /// Its remote address.
    pub remote: IpAddr,
    /// For `Acquire`: the id of the trap policy.
    pub policy: Option<u32>,
}

/// Pending events of one SA, as bits, so the packet path only sets a bit.
pub(crate) const EV_SOFT: u8 = 1;
pub(crate) const EV_HARD: u8 = 2;
pub(crate) const EV_SEQ: u8 = 4;
