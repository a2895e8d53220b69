//! Checksum completion for packets from hosts that offload their transport checksums.
//!
//! A host whose interface offers TX checksum offload (veth, tap, virtio: containers and VMs)
//! hands its packets to the link with only the pseudo-header part of the TCP, UDP or ICMPv6
//! checksum filled in (the kernel's `CHECKSUM_PARTIAL`): the field holds the folded, *not*
//! complemented, pseudo-header sum, and whoever transmits is meant to finish it. XDP and
//! AF_XDP see the bare bytes without the skb's checksum metadata, so the gateway would encrypt
//! a broken checksum. [`complete`] recognises the pattern (the field equals the pseudo-header
//! sum, which costs a dozen additions) and only then sums the whole segment. A correct
//! checksum matches the pattern by chance once in 65,536 packets; recomputing a checksum from
//! scratch gives the same correct value, so such a false positive costs time, not data.

use crate::wire::checksum::{finish, fold, pseudo_header_sum, sum};
use crate::wire::{proto, Ipv4Packet, Ipv6Packet};

/// Offset of the checksum field in the upper-layer header, for the protocols that have a
/// pseudo-header, and the least header length that holds it.
#[inline]
fn checksum_at(protocol: u8, v6: bool) -> Option<(usize, usize)> {
    match protocol {
        proto::TCP => Some((16, 20)),
        proto::UDP => Some((6, 8)),
        proto::ICMPV6 if v6 => Some((2, 4)),
        _ => None,
    }
}

/// The offset and protocol of a TCP, UDP or ICMPv6 header after the IPv6 header `pkt` starts
/// with, through hop-by-hop and destination options only: behind a routing header the
/// pseudo-header holds the final destination, not the one in the header, and a fragment
/// header means a fragment. `None` for anything else.
#[inline]
fn upper_v6(pkt: &[u8], first: u8) -> Option<(usize, u8)> {
    let (mut nh, mut off) = (first, crate::wire::ipv6::HEADER_LEN);
    for _ in 0..crate::wire::ipv6::MAX_EXT_HEADERS {
        match nh {
            proto::TCP | proto::UDP | proto::ICMPV6 => {
                return (off <= pkt.len()).then_some((off, nh))
            }
            proto::HOPOPT | proto::IPV6_OPTS => {
                let len = (usize::from(*pkt.get(off + 1)?) + 1) * 8;
                nh = *pkt.get(off)?;
                off += len;
            }
            _ => return None,
        }
    }
    None
}

/// If the TCP, UDP or ICMPv6 checksum of the IP packet in `pkt` holds only the pseudo-header
/// sum (a checksum-offloading sender), computes the full checksum in place and returns true.
/// Fragments are left alone (a sender completes the checksum before it fragments, and a
/// fragment does not hold the whole segment), as is IPv4 UDP without a checksum (zero).
#[inline]
pub fn complete(pkt: &mut [u8]) -> bool {
    let (l4, end, protocol, pseudo) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(p) = Ipv4Packet::new_checked(&*pkt) else {
                return false;
            };
            if p.is_fragment() {
                return false;
            }
            let (l4, end, protocol) = (p.header_len(), p.total_len(), p.protocol());
            if checksum_at(protocol, false).is_none() {
                return false;
            }
            let s = pseudo_header_sum(&pkt[12..16], &pkt[16..20], protocol, end - l4);
            (l4, end, protocol, s)
        }
        Some(6) => {
            let Ok(p) = Ipv6Packet::new_checked(&*pkt) else {
                return false;
            };
            let end = p.total_len();
            let Some((l4, protocol)) = upper_v6(&pkt[..end], p.next_header()) else {
                return false;
            };
            let s = pseudo_header_sum(&pkt[8..24], &pkt[24..40], protocol, end - l4);
            (l4, end, protocol, s)
        }
        _ => return false,
    };
    let Some((at, min)) = checksum_at(protocol, pkt[0] >> 4 == 6) else {
        return false;
    };
    let seg = &mut pkt[l4..end];
    if seg.len() < min {
        return false;
    }
    let field = u16::from_be_bytes([seg[at], seg[at + 1]]);
    if field != fold(pseudo) {
        return false;
    }
    seg[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = finish(sum(pseudo, seg));
    if c == 0 && protocol == proto::UDP {
        // Zero means "no checksum" for UDP (RFC 768); a computed zero is sent as all ones.
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::ipv4::Ipv4Repr;
    use crate::wire::ipv6::Ipv6Repr;

    /// The checksum over pseudo-header and segment folds to zero when correct.
    fn valid(pkt: &[u8]) -> bool {
        let (l4, end, protocol, pseudo) = if pkt[0] >> 4 == 4 {
            let p = Ipv4Packet::new_checked(pkt).unwrap();
            let (l4, end) = (p.header_len(), p.total_len());
            let s = pseudo_header_sum(&pkt[12..16], &pkt[16..20], p.protocol(), end - l4);
            (l4, end, p.protocol(), s)
        } else {
            let p = Ipv6Packet::new_checked(pkt).unwrap();
            let w = p.upper_layer().unwrap();
            let end = p.total_len();
            let s = pseudo_header_sum(&pkt[8..24], &pkt[24..40], w.next_header, end - w.offset);
            (w.offset, end, w.next_header, s)
        };
        let _ = protocol;
        checksum::finish(sum(pseudo, &pkt[l4..end])) == 0
    }

    /// An IPv4 packet with `payload` after an L4 header of `protocol`, checksum left zero.
    fn v4(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let hl = if protocol == proto::TCP { 20 } else { 8 };
        let mut b = vec![0u8; 20 + hl + payload.len()];
        Ipv4Repr {
            src: "192.168.10.2".parse().unwrap(),
            dst: "10.20.30.40".parse().unwrap(),
            protocol,
            payload_len: hl + payload.len(),
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut b);
        l4_header(&mut b[20..], protocol, hl);
        b[20 + hl..].copy_from_slice(payload);
        b
    }

    fn v6(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let hl = match protocol {
            proto::TCP => 20,
            proto::UDP => 8,
            _ => 4,
        };
        let mut b = vec![0u8; 40 + hl + payload.len()];
        Ipv6Repr {
            src: "fd00:1::2".parse().unwrap(),
            dst: "fd00:2::2".parse().unwrap(),
            next_header: protocol,
            payload_len: hl + payload.len(),
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            flow_label: 0,
        }
        .emit(&mut b);
        l4_header(&mut b[40..], protocol, hl);
        if protocol == proto::ICMPV6 {
            b[40] = 128;
        }
        b[40 + hl..].copy_from_slice(payload);
        b
    }

    fn l4_header(seg: &mut [u8], protocol: u8, hl: usize) {
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&5201u16.to_be_bytes());
        match protocol {
            proto::TCP => {
                seg[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                seg[12] = ((hl / 4) as u8) << 4;
                seg[13] = 0x02;
                seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
            }
            proto::UDP => {
                let len = seg.len() as u16;
                seg[4..6].copy_from_slice(&len.to_be_bytes());
            }
            _ => {}
        }
    }

    /// What a checksum-offloading sender puts in the field: the folded pseudo-header sum.
    fn make_partial(pkt: &mut [u8]) {
        let (l4, end, protocol, src, dst) = if pkt[0] >> 4 == 4 {
            let p = Ipv4Packet::new_checked(&*pkt).unwrap();
            (p.header_len(), p.total_len(), p.protocol(), 12..16, 16..20)
        } else {
            let p = Ipv6Packet::new_checked(&*pkt).unwrap();
            let w = p.upper_layer().unwrap();
            (w.offset, p.total_len(), w.next_header, 8..24, 24..40)
        };
        let s = pseudo_header_sum(&pkt[src], &pkt[dst], protocol, end - l4);
        let (at, _) = checksum_at(protocol, pkt[0] >> 4 == 6).unwrap();
        pkt[l4 + at..l4 + at + 2].copy_from_slice(&fold(s).to_be_bytes());
    }

    fn cases() -> Vec<Vec<u8>> {
        let even: Vec<u8> = (0..200u16).map(|i| (i * 7) as u8).collect();
        let odd: Vec<u8> = (0..201u16).map(|i| (i * 13 + 1) as u8).collect();
        let mut v = Vec::new();
        for payload in [&even[..], &odd[..], &[][..], &[0xab][..]] {
            v.push(v4(proto::TCP, payload));
            v.push(v4(proto::UDP, payload));
            v.push(v6(proto::TCP, payload));
            v.push(v6(proto::UDP, payload));
            v.push(v6(proto::ICMPV6, payload));
        }
        v
    }

    #[test]
    fn completes_partial_checksums_v4_v6_tcp_udp_icmpv6_odd_lengths() {
        for mut p in cases() {
            make_partial(&mut p);
            assert!(!valid(&p), "a partial checksum is not a valid one");
            assert!(complete(&mut p));
            assert!(
                valid(&p),
                "completed checksum of {:02x?}",
                &p[..48.min(p.len())]
            );
        }
    }

    #[test]
    fn idempotent_and_leaves_correct_checksums_alone() {
        for mut p in cases() {
            make_partial(&mut p);
            complete(&mut p);
            let once = p.clone();
            assert!(
                !complete(&mut p),
                "an already complete checksum is not partial"
            );
            assert_eq!(p, once);
        }
    }

    #[test]
    fn recomputing_a_correct_checksum_is_harmless() {
        // The false-positive case: a correct checksum that happens to equal the pseudo-header
        // sum. Find payloads whose correct checksum matches it, and check nothing changes.
        let mut found = 0;
        for i in 0..=u16::MAX {
            let mut p = v4(proto::UDP, &i.to_be_bytes());
            make_partial(&mut p);
            let pattern = u16::from_be_bytes([p[26], p[27]]);
            complete(&mut p);
            if u16::from_be_bytes([p[26], p[27]]) != pattern {
                continue;
            }
            found += 1;
            let before = p.clone();
            assert!(complete(&mut p), "the pattern matches: recomputed");
            assert_eq!(p, before, "a correct checksum recomputes to itself");
            assert!(valid(&p));
        }
        assert!(
            found > 0,
            "some payload collides with the pseudo-header sum"
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(
            mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            v6 in proptest::bool::ANY,
        ) {
            if let Some(b) = bytes.first_mut() {
                *b = if v6 { 0x60 } else { 0x45 | (*b & 0x0f) };
            }
            if v6 && bytes.len() >= 40 {
                // A payload length that fits, and a chain of options headers now and then.
                let pl = (bytes.len() - 40) as u16;
                bytes[4..6].copy_from_slice(&pl.to_be_bytes());
            } else if bytes.len() >= 20 {
                let tl = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&tl.to_be_bytes());
            }
            complete(&mut bytes);
        }

        #[test]
        fn completion_is_correct_and_idempotent(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..1600),
            family_v6 in proptest::bool::ANY,
            protocol in proptest::sample::select(vec![proto::TCP, proto::UDP, proto::ICMPV6]),
        ) {
            let protocol = if protocol == proto::ICMPV6 && !family_v6 { proto::UDP } else { protocol };
            let mut p = if family_v6 { v6(protocol, &payload) } else { v4(protocol, &payload) };
            make_partial(&mut p);
            proptest::prop_assert!(complete(&mut p));
            proptest::prop_assert!(valid(&p));
            let once = p.clone();
            complete(&mut p);
            proptest::prop_assert_eq!(p, once);
        }
    }

    #[test]
    fn skips_fragments_udp_without_checksum_and_other_protocols() {
        let mut frag = v4(proto::UDP, &[1, 2, 3, 4]);
        make_partial(&mut frag);
        frag[6] = 0x20; // MF
        let ip = Ipv4Packet::new_checked(&mut frag[..]).unwrap();
        let mut ip = ip;
        ip.fill_checksum();
        let before = frag.clone();
        assert!(!complete(&mut frag));
        assert_eq!(frag, before);

        let mut zero = v4(proto::UDP, &[1, 2, 3, 4]);
        let before = zero.clone();
        assert!(!complete(&mut zero), "UDP checksum 0 means none");
        assert_eq!(zero, before);

        let mut icmp4 = v4(proto::ICMP, &[8, 0, 0, 0]);
        let before = icmp4.clone();
        assert!(!complete(&mut icmp4));
        assert_eq!(icmp4, before);

        assert!(!complete(&mut [0x45, 0, 0]));
        assert!(!complete(&mut []));
    }

    #[test]
    fn ipv6_behind_a_routing_or_fragment_header_is_left_alone() {
        for (ext, hdr) in [
            (proto::IPV6_ROUTE, [proto::UDP, 0, 0, 0, 0, 0, 0, 0]),
            (proto::IPV6_FRAG, [proto::UDP, 0, 0, 0, 0, 0, 0, 1]),
        ] {
            let inner = v6(proto::UDP, b"hello, world");
            let mut p = inner[..40].to_vec();
            p.extend_from_slice(&hdr);
            p.extend_from_slice(&inner[40..]);
            p[6] = ext;
            let pl = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&pl.to_be_bytes());
            make_partial(&mut p);
            let before = p.clone();
            assert!(!complete(&mut p), "after header {ext}");
            assert_eq!(p, before);
        }
    }

    #[test]
    fn ipv6_extension_header_past_the_end() {
        // Destination options claiming 16 bytes in a packet that has 8 after the header.
        let mut p = v6(proto::UDP, &[]);
        p[6] = proto::IPV6_OPTS;
        p[40] = proto::UDP;
        p[41] = 1;
        assert!(!complete(&mut p));
        p[41] = 0;
        p[40] = proto::TCP;
        assert!(!complete(&mut p), "TCP header right at the end: too short");
    }

    #[test]
    fn ipv6_with_extension_header() {
        // Hop-by-hop options (8 bytes, PadN) in front of UDP.
        let inner = v6(proto::UDP, b"hello, world");
        let mut p = Vec::new();
        p.extend_from_slice(&inner[..40]);
        p.extend_from_slice(&[proto::UDP, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&inner[40..]);
        p[6] = proto::HOPOPT;
        let pl = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&pl.to_be_bytes());
        make_partial(&mut p);
        assert!(complete(&mut p));
        assert!(valid(&p));
    }
}
