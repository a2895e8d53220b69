//! Traffic selectors: resolving the configuration's `dynamic`, narrowing (RFC 7296 §2.9) and
//! checking a responder's narrowing.

use super::params::TsSpec;
use crate::ike::message::TrafficSelector;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

fn from_key(family: u8, v: u128) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// A selector for one host, all protocols and ports.
pub fn host(a: IpAddr) -> TrafficSelector {
    TrafficSelector {
        protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: a,
        end: a,
    }
}

/// A selector for a prefix, all protocols and ports.
pub fn prefix(a: IpAddr, len: u8) -> TrafficSelector {
    let (fam, v) = key(a);
    let bits = if fam == 4 { 32 } else { 128 };
    let len = u32::from(len).min(bits);
    let host_mask: u128 = match bits - len {
        0 => 0,
        128 => u128::MAX,
        n => (1u128 << n) - 1,
    };
    TrafficSelector {
        protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: from_key(fam, v & !host_mask),
        end: from_key(fam, v | host_mask),
    }
}

/// The configured selectors with `dynamic` replaced by `addr` (this end's or the peer's).
pub fn resolve(specs: &[TsSpec], addr: IpAddr) -> Vec<TrafficSelector> {
    if specs.is_empty() {
        return vec![host(addr)];
    }
    specs
        .iter()
        .map(|s| match s {
            TsSpec::Dynamic => host(addr),
            TsSpec::Fixed(t) => t.clone(),
        })
        .collect()
}

/// The intersection of two selectors, if not empty.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (fa, sa) = key(a.start);
    let (_, ea) = key(a.end);
    let (fb, sb) = key(b.start);
    let (_, eb) = key(b.end);
    if fa != fb {
        return None;
    }
    let protocol = match (a.protocol, b.protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let (s, e) = (sa.max(sb), ea.min(eb));
    let (ps, pe) = (a.start_port.max(b.start_port), a.end_port.min(b.end_port));
    if s > e || ps > pe {
        return None;
    }
    Some(TrafficSelector {
        protocol,
        start_port: ps,
        end_port: pe,
        start: from_key(fa, s),
        end: from_key(fa, e),
    })
}

/// The responder's narrowing: every non-empty intersection of a proposed selector with a
/// configured one, without duplicates. Empty means TS_UNACCEPTABLE.
pub fn narrow(
    proposed: &[TrafficSelector],
    configured: &[TrafficSelector],
) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for c in configured {
        for p in proposed {
            if let Some(i) = intersect(p, c) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// Whether `inner` lies entirely inside `outer`.
pub fn contains(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// Whether every selector of a responder's answer lies inside one we proposed.
pub fn is_narrowing(proposed: &[TrafficSelector], answer: &[TrafficSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|a| proposed.iter().any(|p| contains(p, a)))
}

/// The selector as `addr/len` when it is a whole prefix with any protocol and port, else a range.
pub fn display(t: &TrafficSelector) -> String {
    let (f, s) = key(t.start);
    let (_, e) = key(t.end);
    let bits = if f == 4 { 32 } else { 128 };
    let span = e.wrapping_sub(s);
    let base = if (span.wrapping_add(1)).is_power_of_two() && s & span == 0 {
        format!(
            "{}/{}",
            t.start,
            bits - (span.wrapping_add(1)).trailing_zeros().min(bits)
        )
    } else if span == u128::MAX {
        format!("{}/0", t.start)
    } else {
        format!("{}-{}", t.start, t.end)
    };
    if t.protocol == 0 && t.start_port == 0 && t.end_port == 65535 {
        base
    } else if t.start_port == t.end_port {
        format!("{base}[{}/{}]", t.protocol, t.start_port)
    } else {
        format!("{base}[{}/{}-{}]", t.protocol, t.start_port, t.end_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_and_display() {
        let p = prefix(ip("10.201.1.77"), 24);
        assert_eq!((p.start, p.end), (ip("10.201.1.0"), ip("10.201.1.255")));
        assert_eq!(display(&p), "10.201.1.0/24");
        assert_eq!(display(&prefix(ip("0.0.0.0"), 0)), "0.0.0.0/0");
        assert_eq!(display(&host(ip("fd00::1"))), "fd00::1/128");
        assert_eq!(display(&prefix(ip("::"), 0)), "::/0");
    }

    #[test]
    fn narrowing() {
        let proposed = vec![host(ip("10.201.1.5")), prefix(ip("10.201.1.0"), 24)];
        let configured = vec![prefix(ip("10.201.0.0"), 16)];
        assert_eq!(narrow(&proposed, &configured), proposed);
        let smaller = vec![prefix(ip("10.201.1.0"), 25)];
        let n = narrow(&proposed, &smaller);
        assert_eq!(
            n,
            vec![host(ip("10.201.1.5")), prefix(ip("10.201.1.0"), 25)]
        );
        assert!(is_narrowing(&proposed, &n));
        assert!(!is_narrowing(&smaller, &proposed));
        assert!(narrow(&proposed, &[prefix(ip("10.9.0.0"), 16)]).is_empty());
        assert!(narrow(&proposed, &[prefix(ip("fd00::"), 8)]).is_empty());
        let mut tcp = prefix(ip("10.201.1.0"), 24);
        tcp.protocol = 6;
        let mut udp = tcp.clone();
        udp.protocol = 17;
        assert!(intersect(&tcp, &udp).is_none());
        assert_eq!(intersect(&tcp, &proposed[1]), Some(tcp));
    }
}
