//! Link-layer addresses of next hops.

use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Next-hop IP → MAC. Filled from static configuration (and, later, the kernel's neighbour
/// table); read-only on the fast path.
#[derive(Debug, Clone, Default)]
pub struct Neighbours(FxHashMap<IpAddr, [u8; 6]>);

impl Neighbours {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, ip: IpAddr, mac: [u8; 6]) {
        self.0.insert(ip, mac);
    }

    /// The MAC of `ip`, if known.
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.0.get(&ip).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for o in out.iter_mut() {
        *o = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }
}
