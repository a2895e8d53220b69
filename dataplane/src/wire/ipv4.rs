//! IPv4 headers (RFC 791), with options, the header checksum and its incremental update.

use super::checksum;
use super::{be16, need, put16, WireError};
use std::net::Ipv4Addr;

/// Minimum IPv4 header length (no options).
pub const MIN_HEADER_LEN: usize = 20;

/// A checked view of an IPv4 packet. Invariants: version is 4, the header (options included)
/// fits the buffer, and `total_len` lies between the header length and the buffer length
/// (trailing bytes past `total_len`, such as Ethernet padding, are ignored).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length and total length.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("ipv4 header", b, MIN_HEADER_LEN)?;
        if b[0] >> 4 != 4 {
            return Err(WireError::Malformed {
                what: "ipv4 version",
            });
        }
        let hl = usize::from(b[0] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed { what: "ipv4 IHL" });
        }
        need("ipv4 options", b, hl)?;
        let total = usize::from(be16(b, 2));
        if total < hl {
            return Err(WireError::Malformed {
                what: "ipv4 total length",
            });
        }
        need("ipv4 payload", b, total)?;
        Ok(Ipv4Packet { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Header length in bytes (20–60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }

    /// DSCP (the upper six bits of the former TOS byte).
    pub fn dscp(&self) -> u8 {
        self.buf.as_ref()[1] >> 2
    }

    /// ECN codepoint (the lower two bits of the former TOS byte).
    pub fn ecn(&self) -> u8 {
        self.buf.as_ref()[1] & 0x03
    }

    /// Total length field: header plus payload.
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 2))
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 6) & 0x1fff) * 8
    }

    /// True if this packet is a fragment (not the whole datagram).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    /// True if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buf.as_ref()[..self.header_len()]) == 0
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The payload, up to `total_len`.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Rewrites the 16-bit word at `at` and updates the checksum incrementally.
    fn rewrite16(&mut self, at: usize, new: u16) {
        let b = self.buf.as_mut();
        let old = be16(b, at);
        let sum = be16(b, 10);
        put16(b, at, new);
        put16(b, 10, checksum::update16(sum, old, new));
    }

    /// Sets the ECN codepoint, keeping the checksum valid.
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = self.buf.as_ref();
        let word = (u16::from(b[0]) << 8) | u16::from((b[1] & !0x03) | (ecn & 0x03));
        self.rewrite16(0, word);
    }

    /// Sets the TTL, keeping the checksum valid.
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_ref();
        let word = (u16::from(ttl) << 8) | u16::from(b[9]);
        self.rewrite16(8, word);
    }

    /// Sets the protocol field, keeping the checksum valid.
    pub fn set_protocol(&mut self, proto: u8) {
        let b = self.buf.as_ref();
        let word = (u16::from(b[8]) << 8) | u16::from(proto);
        self.rewrite16(8, word);
    }

    /// Sets the total length, keeping the checksum valid.
    pub fn set_total_len(&mut self, len: u16) {
        self.rewrite16(2, len);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        put16(b, 10, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, 10, c);
    }
}

/// Fields to build an option-less IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length (the total length is this plus 20).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Writes a 20-byte header with a valid checksum at the start of `buf`.
    #[inline]
    /// `payload_len + 20` must fit in 16 bits; callers check the MTU before.
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..MIN_HEADER_LEN];
        h[0] = 0x45;
        h[1] = (self.dscp << 2) | (self.ecn & 0x03);
        put16(h, 2, (self.payload_len + MIN_HEADER_LEN) as u16);
        put16(h, 4, self.ident);
        put16(h, 6, if self.dont_frag { 0x4000 } else { 0 });
        h[8] = self.ttl;
        h[9] = self.protocol;
        put16(h, 10, 0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        put16(h, 10, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 28] {
        let mut b = [0u8; 28];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp: 46,
            ecn: 1,
            ident: 7,
            dont_frag: true,
        }
        .emit(&mut b);
        b
    }

    #[test]
    fn emit_parse_roundtrip() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 1);
        assert_eq!(p.ttl(), 64);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn incremental_setters_keep_checksum() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl(63);
        p.set_ecn(3);
        p.set_protocol(50);
        p.set_total_len(24);
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.ecn(), 3);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.protocol(), 50);
    }

    #[test]
    fn rejects_bad_headers() {
        let b = sample();
        assert!(Ipv4Packet::new_checked(&b[..19]).is_err());
        assert!(
            Ipv4Packet::new_checked(&b[..27]).is_err(),
            "total length past buffer"
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&v6[..]).is_err());
        let mut short_ihl = b;
        short_ihl[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&short_ihl[..]).is_err());
        let mut long_ihl = b;
        long_ihl[0] = 0x4f;
        assert!(Ipv4Packet::new_checked(&long_ihl[..]).is_err());
    }

    #[test]
    fn options_are_skipped() {
        let mut b = [0u8; 32];
        b[0] = 0x46;
        put16(&mut b, 2, 32);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 8);
    }
}
