//! ICMP errors the gateway sends itself (time exceeded, fragmentation needed / packet too big),
//! built in place in the frame of the packet that caused them, and a rate limit for them
//! (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).

use crate::esp::DropReason;
use crate::frame::Frame;
use crate::wire::checksum;
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{proto, Ipv4Packet, Ipv6Packet};
use std::net::IpAddr;
use std::time::Instant;

/// Which error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// TTL / hop limit reached zero in transit.
    TimeExceeded,
    /// The packet does not fit the tunnel; `mtu` is the largest inner packet that does.
    TooBig {
        /// The tunnel MTU to report.
        mtu: u16,
    },
}

/// Largest IPv4 ICMP error (RFC 1812: as much of the original as fits in 576 bytes).
const V4_MAX: usize = 576;
/// Largest ICMPv6 error (RFC 4443: as much as fits the IPv6 minimum MTU).
const V6_MAX: usize = 1280;

/// Turns the IP packet in `f` into an ICMP error about it, from `from` to its source. Returns
/// `Err` when no error may be sent (about an ICMP error, a non-first fragment, a multicast or
/// broadcast packet, or an unspecified source) or the frame has no room.
pub fn build_error<B: AsRef<[u8]> + AsMut<[u8]>>(
    f: &mut Frame<B>,
    kind: IcmpError,
    from: IpAddr,
) -> Result<(), DropReason> {
    let pkt = f.data();
    match (pkt.first().map(|b| b >> 4), from) {
        (Some(4), IpAddr::V4(from)) => {
            let p = Ipv4Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
            let (src, dst) = (p.src(), p.dst());
            let forbidden = p.frag_offset() != 0
                || src.is_unspecified()
                || src.is_broadcast()
                || src.is_multicast()
                || dst.is_multicast()
                || dst.is_broadcast()
                || (p.protocol() == proto::ICMP
                    && p.payload()
                        .first()
                        .is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12)));
            if forbidden {
                return Err(DropReason::Malformed);
            }
            let quote = p.total_len().min(V4_MAX - 28);
            let (ty, code, rest) = match kind {
                IcmpError::TimeExceeded => (11u8, 0u8, [0u8; 4]),
                IcmpError::TooBig { mtu } => {
                    let m = mtu.to_be_bytes();
                    (3, 4, [0, 0, m[0], m[1]])
                }
            };
            if !f.push_front(28) || !f.set_len(28 + quote) {
                return Err(DropReason::TooBig);
            }
            let d = f.data_mut();
            Ipv4Repr {
                src: from,
                dst: src,
                protocol: proto::ICMP,
                payload_len: 8 + quote,
                ttl: 64,
                dscp: 0,
                ecn: 0,
                ident: 0,
                dont_frag: false,
            }
            .emit(d);
            let icmp = &mut d[20..];
            icmp[0] = ty;
            icmp[1] = code;
            icmp[2..4].copy_from_slice(&[0, 0]);
            icmp[4..8].copy_from_slice(&rest);
            let c = checksum::checksum(icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        (Some(6), IpAddr::V6(from)) => {
            let p = Ipv6Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
            let (src, dst) = (p.src(), p.dst());
            let is_icmp_error = p
                .upper_layer()
                .ok()
                .filter(|w| w.next_header == proto::ICMPV6)
                .and_then(|w| pkt.get(w.offset))
                .is_some_and(|t| *t < 128);
            if src.is_unspecified() || src.is_multicast() || dst.is_multicast() || is_icmp_error {
                return Err(DropReason::Malformed);
            }
            let quote = p.total_len().min(V6_MAX - 48);
            let (ty, rest) = match kind {
                IcmpError::TimeExceeded => (3u8, [0u8; 4]),
                IcmpError::TooBig { mtu } => (2, u32::from(mtu).to_be_bytes()),
            };
            if !f.push_front(48) || !f.set_len(48 + quote) {
                return Err(DropReason::TooBig);
            }
            let d = f.data_mut();
            Ipv6Repr {
                src: from,
                dst: src,
                next_header: proto::ICMPV6,
                payload_len: 8 + quote,
                hop_limit: 64,
                dscp: 0,
                ecn: 0,
                flow_label: 0,
            }
            .emit(d);
            let len = 8 + quote;
            let icmp = &mut d[40..];
            icmp[0] = ty;
            icmp[1] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            icmp[4..8].copy_from_slice(&rest);
            let mut acc = checksum::sum(0, &from.octets());
            acc = checksum::sum(acc, &src.octets());
            acc += len as u32 + u32::from(proto::ICMPV6);
            let c = checksum::finish(checksum::sum(acc, &icmp[..len]));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        _ => Err(DropReason::Malformed),
    }
}

/// A token bucket: at most `rate` errors a second, bursts of `rate`.
#[derive(Debug, Clone)]
pub struct IcmpLimiter {
    rate: u32,
    tokens: u32,
    last: Option<Instant>,
}

impl IcmpLimiter {
    /// A limiter allowing `rate` errors per second (0 disables ICMP errors).
    pub fn new(rate: u32) -> Self {
        IcmpLimiter {
            rate,
            tokens: rate,
            last: None,
        }
    }

    /// Takes a token if one is left (reads the clock: only on the error path).
    pub fn allow(&mut self) -> bool {
        if self.rate == 0 {
            return false;
        }
        let now = Instant::now();
        let last = *self.last.get_or_insert(now);
        let refill =
            (now.duration_since(last).as_millis() as u64 * u64::from(self.rate) / 1000) as u32;
        if refill > 0 {
            self.tokens = (self.tokens.saturating_add(refill)).min(self.rate);
            self.last = Some(now);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OwnedFrame;

    fn v4(len: usize, proto: u8, df: bool) -> Vec<u8> {
        let mut b = vec![0x5au8; len];
        Ipv4Repr {
            src: "10.201.1.2".parse().unwrap(),
            dst: "10.201.2.2".parse().unwrap(),
            protocol: proto,
            payload_len: len - 20,
            ttl: 1,
            dscp: 0,
            ecn: 0,
            ident: 9,
            dont_frag: df,
        }
        .emit(&mut b);
        b
    }

    #[test]
    fn v4_too_big_quotes_and_checksums() {
        let orig = v4(1500, proto::UDP, true);
        let mut f = OwnedFrame::from_packet(&orig, 128, 0);
        build_error(
            &mut f,
            IcmpError::TooBig { mtu: 1438 },
            "10.201.1.1".parse().unwrap(),
        )
        .unwrap();
        let p = Ipv4Packet::new_checked(f.data()).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.total_len(), 576);
        assert_eq!(p.dst(), "10.201.1.2".parse::<std::net::Ipv4Addr>().unwrap());
        let icmp = p.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1438);
        assert_eq!(checksum::checksum(icmp), 0);
        assert_eq!(&icmp[8..28], &orig[..20], "the original header is quoted");
    }

    #[test]
    fn v6_time_exceeded() {
        let mut b = vec![0u8; 100];
        Ipv6Repr {
            src: "fd00:201:1::2".parse().unwrap(),
            dst: "fd00:201:2::2".parse().unwrap(),
            next_header: proto::UDP,
            payload_len: 60,
            hop_limit: 1,
            dscp: 0,
            ecn: 0,
            flow_label: 0,
        }
        .emit(&mut b);
        let mut f = OwnedFrame::from_packet(&b, 128, 0);
        build_error(
            &mut f,
            IcmpError::TimeExceeded,
            "fd00:201:1::1".parse().unwrap(),
        )
        .unwrap();
        let p = Ipv6Packet::new_checked(f.data()).unwrap();
        assert_eq!(p.payload_len(), 108);
        assert_eq!(p.payload()[0], 3);
        let mut acc = checksum::sum(0, &p.src().octets());
        acc = checksum::sum(acc, &p.dst().octets());
        acc += 108 + 58;
        assert_eq!(checksum::finish(checksum::sum(acc, p.payload())), 0);
    }

    #[test]
    fn no_errors_about_errors_or_multicast() {
        let mut err = v4(60, proto::ICMP, false);
        err[20] = 3;
        let mut f = OwnedFrame::from_packet(&err, 128, 0);
        assert!(build_error(&mut f, IcmpError::TimeExceeded, "10.0.0.1".parse().unwrap()).is_err());
        let mut mc = v4(60, proto::UDP, false);
        mc[16..20].copy_from_slice(&[224, 0, 0, 5]);
        Ipv4Packet::new_checked(&mut mc[..])
            .unwrap()
            .fill_checksum();
        let mut f = OwnedFrame::from_packet(&mc, 128, 0);
        assert!(build_error(&mut f, IcmpError::TimeExceeded, "10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn limiter_bounds_bursts() {
        let mut l = IcmpLimiter::new(3);
        assert_eq!((0..10).filter(|_| l.allow()).count(), 3);
        assert!(!IcmpLimiter::new(0).allow());
    }
}
