//! Zero-copy views of the packet formats the gateway handles.
//!
//! Every view is a thin wrapper around a byte buffer. `new_checked` validates the lengths
//! once; after that, field accessors never fail and never allocate. Builders (`emit`
//! functions and `*Repr` types) write headers into caller-provided buffers.

pub mod checksum;
pub mod esp;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod peek;
pub mod udp;

pub use esp::EspPacket;
pub use ethernet::{EtherType, EthernetFrame};
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use udp::UdpPacket;

/// IANA protocol numbers used by the gateway.
pub mod proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IP (tunnel mode inner IPv4).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated in IP (tunnel mode inner IPv6).
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options.
    pub const IPV6_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// Mobility header (an IPv6 extension header).
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol (an IPv6 extension header).
    pub const HIP: u8 = 139;
    /// Shim6 (an IPv6 extension header).
    pub const SHIM6: u8 = 140;
}

/// Why a buffer is not a valid packet of the expected format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field claims).
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The header or field being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A field has a value the format does not allow.
    #[error("malformed {what}")]
    Malformed {
        /// Which field or rule.
        what: &'static str,
    },
}

/// Returns `Truncated` unless `buf` holds at least `need` bytes.
#[inline]
pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<(), WireError> {
    if buf.len() < need {
        Err(WireError::Truncated {
            what,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
