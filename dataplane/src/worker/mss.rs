//! TCP MSS clamping: lowers the MSS option of SYN segments so that TCP never sends a segment
//! larger than the tunnel carries (RFC 879 MSS, the usual gateway remedy against PMTU
//! black holes).

use crate::wire::checksum;
use crate::wire::{proto, Ipv4Packet, Ipv6Packet};

/// Where the TCP segment of `pkt` lies if `pkt` is an unfragmented TCP SYN.
#[inline]
fn syn_segment(pkt: &[u8]) -> Option<(usize, usize)> {
    let (l4, end) = match pkt.first().map(|b| b >> 4) {
        Some(4) => match Ipv4Packet::new_checked(pkt) {
            Ok(p) if p.protocol() == proto::TCP && p.frag_offset() == 0 => {
                (p.header_len(), p.total_len())
            }
            _ => return None,
        },
        Some(6) => match Ipv6Packet::new_checked(pkt) {
            Ok(p) => match p.upper_layer() {
                Ok(w) if w.next_header == proto::TCP && !w.fragment => (w.offset, p.total_len()),
                _ => return None,
            },
            Err(_) => return None,
        },
        _ => return None,
    };
    let tcp = pkt.get(l4..end)?;
    (tcp.len() >= 20 && tcp[13] & 0x02 != 0).then_some((l4, end))
}

/// True if `pkt` is an unfragmented TCP SYN (the only segments [`clamp`] may change): callers
/// skip the work of finding the tunnel MTU for everything else.
#[inline]
pub fn is_syn(pkt: &[u8]) -> bool {
    syn_segment(pkt).is_some()
}

/// If `pkt` is a TCP SYN whose MSS option exceeds `max_mss`, lowers it (fixing the TCP
/// checksum incrementally) and returns true.
pub fn clamp(pkt: &mut [u8], max_mss: u16) -> bool {
    let Some((l4, end)) = syn_segment(pkt) else {
        return false;
    };
    let tcp = &mut pkt[l4..end];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < doff {
        match tcp[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > doff {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let mss = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if mss <= max_mss {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                    let old_sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    // The MSS value sits at an even offset of the segment (i is 20 + options,
                    // and the option starts the 16-bit word when i is even).
                    let (old, new) = if i % 2 == 0 {
                        (mss, max_mss)
                    } else {
                        return fix_odd(tcp, i, mss, max_mss, old_sum);
                    };
                    let s = checksum::update16(old_sum, old, new);
                    tcp[16..18].copy_from_slice(&s.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// The MSS value straddles two 16-bit words (option at an odd offset): update both words.
fn fix_odd(tcp: &mut [u8], i: usize, mss: u16, new: u16, old_sum: u16) -> bool {
    // Words at i+1 (bytes i+1, i+2) and i+3 (bytes i+3, i+4); rebuild the old bytes.
    let o = mss.to_be_bytes();
    let w1_old = u16::from_be_bytes([tcp[i + 1], o[0]]);
    let w1_new = u16::from_be_bytes([tcp[i + 1], tcp[i + 2]]);
    // Past the end of the segment the checksum pads with zero.
    let next = tcp.get(i + 4).copied().unwrap_or(0);
    let w2_old = u16::from_be_bytes([o[1], next]);
    let w2_new = u16::from_be_bytes([tcp[i + 3], next]);
    let _ = new;
    let s = checksum::update16(checksum::update16(old_sum, w1_old, w1_new), w2_old, w2_new);
    tcp[16..18].copy_from_slice(&s.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Repr;

    fn tcp_checksum(pkt: &[u8]) -> u16 {
        let p = Ipv4Packet::new_checked(pkt).unwrap();
        let seg = p.payload();
        let mut acc = checksum::sum(0, &p.src().octets());
        acc = checksum::sum(acc, &p.dst().octets());
        acc += u32::from(proto::TCP) + seg.len() as u32;
        checksum::finish(checksum::sum(acc, seg))
    }

    fn syn(options: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let mut b = vec![0u8; 20 + tcp_len];
        Ipv4Repr {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: proto::TCP,
            payload_len: tcp_len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut b);
        let t = &mut b[20..];
        t[0..2].copy_from_slice(&1234u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = ((tcp_len / 4) as u8) << 4;
        t[13] = 0x02;
        t[20..].copy_from_slice(options);
        let c = tcp_checksum(&b);
        b[36..38].copy_from_slice(&c.to_be_bytes());
        assert_eq!(tcp_checksum(&b), 0);
        b
    }

    #[test]
    fn clamps_and_keeps_the_checksum_valid() {
        let mut p = syn(&[2, 4, 0x05, 0xb4, 1, 1, 4, 2]);
        assert!(clamp(&mut p, 1360));
        assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1360);
        assert_eq!(tcp_checksum(&p), 0);
        assert!(!clamp(&mut p, 1400), "already small enough");
    }

    #[test]
    fn odd_offset_option() {
        let mut p = syn(&[1, 2, 4, 0x05, 0xb4, 1, 1, 0]);
        assert!(clamp(&mut p, 1300));
        assert_eq!(u16::from_be_bytes([p[43], p[44]]), 1300);
        assert_eq!(tcp_checksum(&p), 0);
    }

    #[test]
    fn ignores_non_syn_and_garbage() {
        let mut p = syn(&[2, 4, 0x05, 0xb4]);
        p[33] = 0x10;
        assert!(!clamp(&mut p, 1000));
        let mut bad = syn(&[2, 9, 0x05, 0xb4]);
        assert!(!clamp(&mut bad, 1000));
        assert!(!clamp(&mut [0x45, 0], 1000));
    }
}
