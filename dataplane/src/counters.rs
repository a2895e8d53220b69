//! The one table of drop reasons (the ESP engine's and forwarding's, [`DropReason`]), the
//! per-worker and per-SA counters. Below `esp`, `sa` and `worker`, which all count drops.

use std::fmt;

/// Why a packet was dropped. Every drop in the ESP path is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Headers, lengths or trailer fields that do not parse.
    Malformed = 0,
    /// No inbound SA for the SPI (and destination).
    UnknownSpi,
    /// Sequence number already seen, or older than the replay window.
    Replayed,
    /// The ICV did not verify.
    AuthFailed,
    /// The decrypted padding is not 1, 2, 3, … (RFC 4303 §2.4).
    BadPadding,
    /// The inner packet is outside the SA's traffic selectors.
    SelectorMismatch,
    /// The outbound SA has used its last sequence number (it never wraps).
    SeqExhausted,
    /// An outer IP fragment: ESP needs the reassembled datagram.
    Fragment,
    /// The encapsulated packet would not fit the frame or the outer length field.
    TooBig,
    /// The outer header says CE but the inner packet is not ECN-capable (RFC 6040 §4.2).
    EcnDrop,
    /// A dummy packet (next header 59, RFC 4303 §2.6): discarded by design, counted here.
    Dummy,
    /// Outbound: no SA's traffic selectors match the packet.
    NoPolicy,
    /// Forwarding: TTL or hop limit would reach zero.
    TtlExceeded,
    /// Forwarding: the next hop's link-layer address is unknown. No longer counted by the
    /// workers (such frames wait, see `NeighQueueFull`, `NeighFailed`, `NeighTimeout`); kept so
    /// reports and counter order stay stable.
    NoNeighbour,
    /// Forwarding: the transmit ring was full.
    TxFull,
    /// The SA reached a hard lifetime limit.
    Expired,
    /// Outbound: a trap policy matched but its SA does not exist yet (an acquire was raised).
    Acquire,
    /// Forwarding: the frame would have waited for its next hop's link-layer address, but the
    /// worker's neighbour queue (per next hop or in all) was full.
    NeighQueueFull,
    /// Forwarding: the frame waited for its next hop, and the kernel reported the next hop
    /// unreachable (resolution FAILED).
    NeighFailed,
    /// Forwarding: the frame waited for its next hop longer than the neighbour queue allows.
    NeighTimeout,
    /// Outbound: an IPv4 packet without DF needed fragmenting but no free frame was left for
    /// one of its fragments (the whole packet is dropped).
    FragNoFrame,
    /// Outbound: an IPv4 packet without DF would need more fragments than the gateway makes
    /// for one packet, or its header leaves no room for fragment data in the tunnel MTU.
    FragLimit,
    /// A packet between a tunnel interface (the gateway's own stack) and the workers found
    /// the ring between them full.
    HostQueueFull,
}

impl DropReason {
    /// Number of reasons (the length of a [`DropCounters`] array).
    pub const COUNT: usize = 23;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::UnknownSpi,
        DropReason::Replayed,
        DropReason::AuthFailed,
        DropReason::BadPadding,
        DropReason::SelectorMismatch,
        DropReason::SeqExhausted,
        DropReason::Fragment,
        DropReason::TooBig,
        DropReason::EcnDrop,
        DropReason::Dummy,
        DropReason::NoPolicy,
        DropReason::TtlExceeded,
        DropReason::NoNeighbour,
        DropReason::TxFull,
        DropReason::Expired,
        DropReason::Acquire,
        DropReason::NeighQueueFull,
        DropReason::NeighFailed,
        DropReason::NeighTimeout,
        DropReason::FragNoFrame,
        DropReason::FragLimit,
        DropReason::HostQueueFull,
    ];

    /// Stable snake_case name used in CLI output, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::Replayed => "replayed",
            DropReason::AuthFailed => "auth_failed",
            DropReason::BadPadding => "bad_padding",
            DropReason::SelectorMismatch => "selector_mismatch",
            DropReason::SeqExhausted => "seq_exhausted",
            DropReason::Fragment => "fragment",
            DropReason::TooBig => "too_big",
            DropReason::EcnDrop => "ecn_drop",
            DropReason::Dummy => "dummy",
            DropReason::NoPolicy => "no_policy",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TxFull => "tx_full",
            DropReason::Expired => "expired",
            DropReason::Acquire => "acquire",
            DropReason::NeighQueueFull => "neigh_queue_full",
            DropReason::NeighFailed => "neigh_failed",
            DropReason::NeighTimeout => "neigh_timeout",
            DropReason::FragNoFrame => "frag_no_frame",
            DropReason::FragLimit => "frag_limit",
            DropReason::HostQueueFull => "host_queue_full",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A drop already counted under its reason. Only [`DropCounters::count`] makes one, so a path
/// that drops a packet by returning a `Counted` (the ESP engine's [`Verdict::Drop`], the
/// worker pipeline's results) cannot have forgotten to count it, and a caller that receives
/// one has nothing left to count.
///
/// [`Verdict::Drop`]: crate::esp::Verdict::Drop
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted(DropReason);

impl Counted {
    /// The reason the drop was counted under.
    #[inline]
    pub fn reason(self) -> DropReason {
        self.0
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    /// Counts one drop that the caller disposes of itself (frees the frame).
    #[inline]
    pub fn add(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    /// Counts one drop and returns the proof, for a path that reports the drop to its caller.
    #[inline]
    #[must_use = "a counted drop is reported to the caller"]
    pub fn count(&mut self, r: DropReason) -> Counted {
        self.add(r);
        Counted(r)
    }

    /// The count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counters to this one.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters with their reasons.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n != 0)
    }
}

/// Traffic counters of one SA. `bytes` counts plaintext bytes (the inner packet in tunnel
/// mode, the protected payload in transport mode), the figure lifetime limits apply to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Packets processed successfully.
    pub packets: u64,
    /// Plaintext bytes processed successfully.
    pub bytes: u64,
    /// Drops charged to this SA.
    pub drops: DropCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_named() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(!r.name().is_empty());
        }
        let mut c = DropCounters::default();
        c.add(DropReason::Replayed);
        c.add(DropReason::Replayed);
        c.add(DropReason::Dummy);
        assert_eq!(c.total(), 3);
        assert_eq!(
            c.nonzero().collect::<Vec<_>>(),
            vec![(DropReason::Replayed, 2), (DropReason::Dummy, 1)]
        );
    }
}
