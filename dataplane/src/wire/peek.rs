//! Cheap looks into an Ethernet frame, for steering a packet to the worker that owns its SA
//! before any processing: the ESP SPI of a WAN frame, the addresses of a LAN frame. `None`
//! whenever the frame is not what is expected (the full parsers then decide).

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
