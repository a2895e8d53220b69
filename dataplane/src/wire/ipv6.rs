//! IPv6 headers (RFC 8200) and the walk over extension headers to the upper layer.

use super::{be16, need, proto, put16, WireError};
use std::net::Ipv6Addr;

/// IPv6 fixed header length.
pub const HEADER_LEN: usize = 40;

/// Most extension headers the walker follows before it gives up (bounds the work per packet).
pub const MAX_EXT_HEADERS: usize = 8;

/// A checked view of an IPv6 packet. Invariants: version is 6 and the buffer holds the fixed
/// header plus `payload_len` bytes (trailing bytes are ignored). Jumbograms are not accepted.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

/// Where an extension-header chain leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtWalk {
    /// Protocol number of the header that follows the walked chain.
    pub next_header: u8,
    /// Offset (from the start of the IPv6 header) of that following header.
    pub offset: usize,
    /// Offset of the byte holding `next_header` (6 for the fixed header).
    pub next_header_at: usize,
    /// True if the chain holds a fragment header of a real fragment (offset or M flag set).
    pub fragment: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks the version and that the payload length fits the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("ipv6 header", b, HEADER_LEN)?;
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed {
                what: "ipv6 version",
            });
        }
        let plen = usize::from(be16(b, 4));
        need("ipv6 payload", b, HEADER_LEN + plen)?;
        Ok(Ipv6Packet { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Traffic class byte.
    pub fn traffic_class(&self) -> u8 {
        let b = self.buf.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// DSCP (upper six bits of the traffic class).
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// ECN codepoint (lower two bits of the traffic class).
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.buf.as_ref();
        (u32::from(b[1] & 0x0f) << 16) | u32::from(be16(b, 2))
    }

    /// Payload length field (extension headers included).
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 4))
    }

    /// Total packet length: 40 plus the payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Next header field of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.buf.as_ref()[8..24].try_into().expect("checked length");
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.buf.as_ref()[24..40]
            .try_into()
            .expect("checked length");
        Ipv6Addr::from(a)
    }

    /// The payload after the fixed header, up to `payload_len`.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks extension headers while `follow(header)` says so, returning what comes next.
    fn walk(&self, follow: impl Fn(u8, &[u8], usize) -> bool) -> Result<ExtWalk, WireError> {
        let b = &self.buf.as_ref()[..self.total_len()];
        let mut w = ExtWalk {
            next_header: self.next_header(),
            offset: HEADER_LEN,
            next_header_at: 6,
            fragment: false,
        };
        for _ in 0..MAX_EXT_HEADERS {
            if !is_extension_header(w.next_header) || !follow(w.next_header, b, w.offset) {
                return Ok(w);
            }
            need("ipv6 extension header", b, w.offset + 8)?;
            let len = match w.next_header {
                proto::IPV6_FRAG => 8,
                proto::AH => (usize::from(b[w.offset + 1]) + 2) * 4,
                _ => (usize::from(b[w.offset + 1]) + 1) * 8,
            };
            need("ipv6 extension header", b, w.offset + len)?;
            let fragment = w.fragment
                || (w.next_header == proto::IPV6_FRAG && be16(b, w.offset + 2) & 0xfff9 != 0);
            w = ExtWalk {
                next_header: b[w.offset],
                offset: w.offset + len,
                next_header_at: w.offset,
                fragment,
            };
        }
        Err(WireError::Malformed {
            what: "too many ipv6 extension headers",
        })
    }

    /// Skips every extension header (hop-by-hop, routing, fragment, destination options, AH,
    /// mobility, HIP, shim6) and returns the upper-layer protocol and its offset.
    pub fn upper_layer(&self) -> Result<ExtWalk, WireError> {
        self.walk(|_, _, _| true)
    }

    /// Where ESP goes in transport mode (RFC 4303 §3.1.1): after hop-by-hop, routing and
    /// fragment headers, and after destination options only when a routing header follows them.
    pub fn esp_transport_point(&self) -> Result<ExtWalk, WireError> {
        self.walk(|nh, b, off| match nh {
            proto::HOPOPT | proto::IPV6_ROUTE | proto::IPV6_FRAG => true,
            proto::IPV6_OPTS => b.get(off).copied() == Some(proto::IPV6_ROUTE),
            _ => false,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the ECN codepoint.
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = self.buf.as_mut();
        b[1] = (b[1] & !0x30) | ((ecn & 0x03) << 4);
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buf.as_mut()[7] = h;
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buf.as_mut(), 4, len);
    }
}

/// True for the protocol numbers RFC 8200 and RFC 7045 list as IPv6 extension headers
/// (ESP excepted: the walk stops there).
pub fn is_extension_header(nh: u8) -> bool {
    matches!(
        nh,
        proto::HOPOPT
            | proto::IPV6_ROUTE
            | proto::IPV6_FRAG
            | proto::IPV6_OPTS
            | proto::AH
            | proto::MOBILITY
            | proto::HIP
            | proto::SHIM6
    )
}

/// Fields to build an IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Writes the 40-byte header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..HEADER_LEN];
        let tc = (self.dscp << 2) | (self.ecn & 0x03);
        let w0 = (6u32 << 28) | (u32::from(tc) << 20) | (self.flow_label & 0xf_ffff);
        h[0..4].copy_from_slice(&w0.to_be_bytes());
        put16(h, 4, self.payload_len as u16);
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, ext: &[u8], upper: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: next,
            payload_len: ext.len() + upper.len(),
            hop_limit: 64,
            dscp: 10,
            ecn: 2,
            flow_label: 0x12345,
        }
        .emit(&mut b);
        b.extend_from_slice(ext);
        b.extend_from_slice(upper);
        b
    }

    #[test]
    fn fields_roundtrip() {
        let b = packet(proto::UDP, &[], &[0; 8]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.dscp(), 10);
        assert_eq!(p.ecn(), 2);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.upper_layer().unwrap().next_header, proto::UDP);
    }

    #[test]
    fn walks_extension_headers() {
        // hop-by-hop (8 bytes) -> dest opts (16 bytes) -> routing (8) -> fragment (8) -> UDP
        let mut ext = vec![proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[proto::IPV6_ROUTE, 1]);
        ext.extend_from_slice(&[0; 14]);
        ext.extend_from_slice(&[proto::IPV6_FRAG, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[proto::UDP, 0, 0, 0, 0, 0, 0, 1]);
        let b = packet(proto::HOPOPT, &ext, &[0; 8]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let u = p.upper_layer().unwrap();
        assert_eq!(u.next_header, proto::UDP);
        assert_eq!(u.offset, HEADER_LEN + 40);
        assert_eq!(u.next_header_at, HEADER_LEN + 32);
        let t = p.esp_transport_point().unwrap();
        assert_eq!(
            t.offset,
            HEADER_LEN + 40,
            "dest opts before routing stay in front"
        );
    }

    #[test]
    fn dest_opts_without_routing_are_protected() {
        let ext = [proto::TCP, 0, 0, 0, 0, 0, 0, 0];
        let b = packet(proto::IPV6_OPTS, &ext, &[0; 20]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let t = p.esp_transport_point().unwrap();
        assert_eq!((t.next_header, t.offset), (proto::IPV6_OPTS, HEADER_LEN));
        assert_eq!(p.upper_layer().unwrap().next_header, proto::TCP);
    }

    #[test]
    fn truncated_and_looping_chains_fail() {
        let ext = [proto::UDP, 4, 0, 0, 0, 0, 0, 0];
        let b = packet(proto::HOPOPT, &ext, &[]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.upper_layer().is_err());
        let mut ext = Vec::new();
        for _ in 0..MAX_EXT_HEADERS + 1 {
            ext.extend_from_slice(&[proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let b = packet(proto::IPV6_OPTS, &ext, &[]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.upper_layer().is_err());
        assert!(Ipv6Packet::new_checked(&b[..b.len() - 1]).is_err());
    }
}
