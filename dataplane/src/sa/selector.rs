//! Traffic selectors: the address prefixes an SA may carry (RFC 4301 §4.4.1).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix such as `10.201.1.0/24` or `2001:db8:1::/48`. Invariant: the host
/// bits below the prefix length are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Builds a prefix, clearing host bits. `None` if `len` exceeds the address width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                IpAddr::V6((u128::from(a) & m).into())
            }
        };
        Some(Prefix { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for a zero-length prefix (matches every address of its family).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `ip` lies inside the prefix (an address of the other family never does).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.len)
                };
                u32::from(a) & m == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.len)
                };
                u128::from(a) & m == u128::from(n)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;
    /// Parses `addr/len`, or a bare address as a host prefix. Host bits must be zero, so that a
    /// typo such as `10.1.1.1/24` is caught rather than silently widened.
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        let p = Prefix::new(addr, len).expect("length checked");
        if p.addr != addr {
            return Err(format!("{s:?} has host bits set (did you mean {p}?)"));
        }
        Ok(p)
    }
}

/// How many prefixes a [`Selectors`] holds inside itself: a child SA's selectors are one
/// prefix nearly always, and keeping it inline spares the fast path a cache miss per packet.
const INLINE: usize = 2;

/// A set of prefixes; an empty set matches everything (no selector configured).
#[derive(Debug, Clone)]
pub struct Selectors(Set);

#[derive(Debug, Clone)]
enum Set {
    /// Up to [`INLINE`] prefixes: the first `n` of the array.
    Inline(u8, [Prefix; INLINE]),
    /// More.
    Heap(Box<[Prefix]>),
}

/// Fills the unused inline slots.
const FILLER: Prefix = Prefix {
    addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    len: 0,
};

impl Default for Selectors {
    fn default() -> Self {
        Selectors(Set::Inline(0, [FILLER; INLINE]))
    }
}

impl PartialEq for Selectors {
    fn eq(&self, other: &Self) -> bool {
        self.prefixes() == other.prefixes()
    }
}

impl Eq for Selectors {}

impl Selectors {
    /// Wraps a list of prefixes.
    pub fn new(prefixes: Vec<Prefix>) -> Self {
        if prefixes.len() <= INLINE {
            let mut a = [FILLER; INLINE];
            a[..prefixes.len()].copy_from_slice(&prefixes);
            Selectors(Set::Inline(prefixes.len() as u8, a))
        } else {
            Selectors(Set::Heap(prefixes.into_boxed_slice()))
        }
    }

    /// Starts loading the prefixes into the cache when they live apart from the SA.
    #[inline]
    pub fn prefetch(&self) {
        if let Set::Heap(v) = &self.0 {
            crate::prefetch::lines(v.as_ptr() as *const u8, std::mem::size_of_val(&**v));
        }
    }

    /// True if no prefix is configured (everything matches).
    pub fn is_any(&self) -> bool {
        self.prefixes().is_empty()
    }

    /// True if `ip` matches one of the prefixes, or none is configured.
    #[inline]
    pub fn matches(&self, ip: IpAddr) -> bool {
        let p = self.prefixes();
        p.is_empty() || p.iter().any(|p| p.contains(ip))
    }

    /// The prefixes.
    #[inline]
    pub fn prefixes(&self) -> &[Prefix] {
        match &self.0 {
            Set::Inline(n, a) => &a[..usize::from(*n)],
            Set::Heap(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_sets_behave_alike() {
        let ps: Vec<Prefix> = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for n in 0..=ps.len() {
            let s = Selectors::new(ps[..n].to_vec());
            assert_eq!(s.prefixes(), &ps[..n]);
            assert_eq!(s.is_any(), n == 0);
            assert!(s.matches("10.1.1.1".parse().unwrap()) == (n == 0 || n >= 1));
            assert_eq!(s.matches("192.168.1.9".parse().unwrap()), n != 1);
            assert_eq!(s.matches("2001:db8::5".parse().unwrap()), n == 0 || n == 3);
            assert_eq!(s, Selectors::new(ps[..n].to_vec()));
        }
        assert_eq!(Selectors::default(), Selectors::new(Vec::new()));
    }

    #[test]
    fn parse_and_contains() {
        let p: Prefix = "10.201.1.0/24".parse().unwrap();
        assert!(p.contains("10.201.1.77".parse().unwrap()));
        assert!(!p.contains("10.201.2.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let h: Prefix = "2001:db8::1".parse().unwrap();
        assert_eq!(h.len(), 128);
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Prefix = "2001:db8:1::/48".parse().unwrap();
        assert!(v6.contains("2001:db8:1:ffff::9".parse().unwrap()));
        assert!(!v6.contains("2001:db8:2::9".parse().unwrap()));
    }

    #[test]
    fn parse_errors_explain() {
        assert!("10.1.1.1/24"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("10.1.1.0/24"));
        assert!("10.1.1.0/33"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("0..=32"));
        assert!("banana".parse::<Prefix>().is_err());
    }

    #[test]
    fn empty_selectors_match_all() {
        assert!(Selectors::default().matches("1.1.1.1".parse().unwrap()));
        let s = Selectors::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(s.matches("10.9.9.9".parse().unwrap()));
        assert!(!s.matches("11.0.0.1".parse().unwrap()));
    }
}
