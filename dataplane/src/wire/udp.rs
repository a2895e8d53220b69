//! UDP headers (RFC 768) and their checksum over the IPv4/IPv6 pseudo-header.

use super::checksum;
use super::{be16, need, proto, put16, WireError};
use std::net::IpAddr;

/// UDP header length.
pub const HEADER_LEN: usize = 8;

/// A checked view of a UDP datagram. Invariant: the length field is at least 8 and fits the
/// buffer (trailing bytes are ignored).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks the header and the length field.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("udp header", b, HEADER_LEN)?;
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN {
            return Err(WireError::Malformed { what: "udp length" });
        }
        need("udp payload", b, len)?;
        Ok(UdpPacket { buf })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// Length field (header plus payload).
    pub fn len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 4))
    }

    /// True if the datagram carries no payload.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// Checksum field (0 means "not computed" over IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.len()]
    }
}

/// Fields to build a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Writes the header in front of a payload that already sits at `buf[8..8 + payload_len]`.
    /// With `checksum` the UDP checksum is computed over the pseudo-header of `src`/`dst`;
    /// without it the field is zero (allowed over IPv4 only, as RFC 3948 recommends for ESP).
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        src: IpAddr,
        dst: IpAddr,
        checksum: bool,
    ) {
        let len = HEADER_LEN + payload_len;
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put16(buf, 4, len as u16);
        put16(buf, 6, 0);
        if checksum {
            let c = datagram_checksum(&buf[..len], src, dst);
            put16(buf, 6, c);
        }
    }
}

/// Checksum of a UDP datagram (with its checksum field zeroed) over its pseudo-header.
/// A computed zero is sent as 0xffff (RFC 768).
pub fn datagram_checksum(datagram: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::sum(checksum::sum(0, &s.octets()), &d.octets()),
        (s, d) => {
            let s6 = match s {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            let d6 = match d {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            checksum::sum(checksum::sum(0, &s6.octets()), &d6.octets())
        }
    };
    acc += u32::from(proto::UDP);
    acc += datagram.len() as u32;
    let c = checksum::finish(checksum::sum(acc, datagram));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_verify_checksum() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        let mut b = [0u8; 13];
        b[8..].copy_from_slice(b"hello");
        UdpRepr {
            src_port: 4500,
            dst_port: 4500,
        }
        .emit(&mut b, 5, src, dst, true);
        let u = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(u.payload(), b"hello");
        assert_ne!(u.checksum(), 0);
        // Summing a correct datagram (checksum included) with its pseudo-header folds to 0xffff.
        let mut acc = checksum::sum(0, &[0x20, 0x01, 0x0d, 0xb8]);
        acc = checksum::sum(acc, &[0; 10]);
        acc = checksum::sum(acc, &[0, 1, 0x20, 0x01, 0x0d, 0xb8]);
        acc = checksum::sum(acc, &[0; 10]);
        acc = checksum::sum(acc, &[0, 2]);
        acc += 17 + 13;
        assert_eq!(checksum::finish(checksum::sum(acc, &b)), 0);
    }

    #[test]
    fn rejects_bad_length() {
        let mut b = [0u8; 8];
        put16(&mut b, 4, 7);
        assert!(UdpPacket::new_checked(&b[..]).is_err());
        put16(&mut b, 4, 9);
        assert!(UdpPacket::new_checked(&b[..]).is_err());
        put16(&mut b, 4, 8);
        assert!(UdpPacket::new_checked(&b[..]).unwrap().is_empty());
    }
}
