//! Cheap looks into an Ethernet frame, for steering a packet to the worker that owns its SA
//! before any processing: the ESP SPI of a WAN frame, the addresses of a LAN frame, the flow
//! hash that spreads flows over equal-cost tunnels. `None` whenever the frame is not what is
//! expected (the full parsers then decide).

use super::{be32, proto, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, UdpPacket};
use std::net::IpAddr;

fn l3(frame: &[u8]) -> Option<&[u8]> {
    let e = EthernetFrame::new_checked(frame).ok()?;
    match e.ethertype() {
        EtherType::IPV4 | EtherType::IPV6 => Some(&frame[e.header_len()..]),
        _ => None,
    }
}

/// The SPI of an ESP or ESP-in-UDP packet in an Ethernet frame.
pub fn esp_spi(frame: &[u8]) -> Option<u32> {
    let pkt = l3(frame)?;
    let (nh, off, end) = match pkt.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(pkt).ok()?;
            (p.protocol(), p.header_len(), p.total_len())
        }
        6 => {
            let p = Ipv6Packet::new_checked(pkt).ok()?;
            let w = p.upper_layer().ok()?;
            (w.next_header, w.offset, p.total_len())
        }
        _ => return None,
    };
    let esp = match nh {
        proto::ESP => off,
        proto::UDP => {
            UdpPacket::new_checked(&pkt[off..end]).ok()?;
            off + 8
        }
        _ => return None,
    };
    let spi = (esp + 4 <= end).then(|| be32(pkt, esp))?;
    (spi != 0).then_some(spi)
}

/// Source and destination of the IP packet in an Ethernet frame.
pub fn ip_addrs(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let pkt = l3(frame)?;
    match pkt.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(pkt).ok()?;
            Some((p.src().into(), p.dst().into()))
        }
        6 => {
            let p = Ipv6Packet::new_checked(pkt).ok()?;
            Some((p.src().into(), p.dst().into()))
        }
        _ => None,
    }
}

/// The flow hash of the IP packet in an Ethernet frame ([`flow_hash_ip`]); 0 for anything else.
pub fn flow_hash(frame: &[u8]) -> u32 {
    l3(frame).map_or(0, flow_hash_ip)
}

/// A hash of the flow of the bare IP packet `pkt`, so every packet of a flow (and of a
/// fragmented datagram) takes the same one of several equal-cost tunnels: for IPv4 its
/// addresses, protocol and, for TCP, UDP and SCTP packets that are not fragments, its ports;
/// for IPv6 its addresses and flow label. 0 for anything that is not IP.
pub fn flow_hash_ip(pkt: &[u8]) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |chunk: &[u8]| {
        for c in chunk.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 29;
        }
    };
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(p) = Ipv4Packet::new_checked(pkt) else {
                return 0;
            };
            mix(&pkt[12..20]);
            mix(&[p.protocol()]);
            let fragment = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0;
            let l4 = matches!(p.protocol(), proto::TCP | proto::UDP | proto::SCTP);
            if l4 && !fragment {
                if let Some(ports) = pkt.get(p.header_len()..p.header_len() + 4) {
                    mix(ports);
                }
            }
        }
        Some(6) => {
            if Ipv6Packet::new_checked(pkt).is_err() {
                return 0;
            }
            // The flow label stands for the ports (RFC 6438): every packet of a flow carries
            // the same, fragments included, and no extension header needs walking.
            mix(&pkt[8..40]);
            mix(&[pkt[1] & 0x0f, pkt[2], pkt[3]]);
        }
        _ => return 0,
    }
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_spis_and_addresses() {
        let mut f = vec![0u8; 14 + 20 + 8 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        crate::wire::ipv4::Ipv4Repr {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: proto::UDP,
            payload_len: 16,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: false,
        }
        .emit(&mut f[14..]);
        f[34..42].copy_from_slice(&[0x11, 0x94, 0x11, 0x94, 0, 16, 0, 0]);
        f[42..46].copy_from_slice(&0x1234u32.to_be_bytes());
        assert_eq!(esp_spi(&f), Some(0x1234));
        assert_eq!(
            ip_addrs(&f).unwrap().1,
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        f[23] = proto::ESP;
        assert_eq!(esp_spi(&f), Some(0x11941194));
        assert_eq!(esp_spi(&f[..20]), None);
        f[12] = 0x86;
        assert_eq!(esp_spi(&f), None);
    }
}
