//! Link-layer addresses of next hops.

use super::Port;
use rustc_hash::FxHashMap;
use std::cell::Cell;
use std::net::IpAddr;

/// Next-hop IP → MAC, filled by the control thread from the kernel's neighbour table and the
/// static configuration. The fast path reads it and marks the entries it uses
/// ([`Neighbours::lookup`]), so the control thread can keep them resolved in the kernel.
#[derive(Debug, Clone, Default)]
pub struct Neighbours(FxHashMap<IpAddr, ([u8; 6], Cell<bool>)>);

impl Extend<(IpAddr, [u8; 6])> for Neighbours {
    fn extend<I: IntoIterator<Item = (IpAddr, [u8; 6])>>(&mut self, entries: I) {
        for (ip, mac) in entries {
            self.insert(ip, mac);
        }
    }
}

impl Neighbours {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, ip: IpAddr, mac: [u8; 6]) {
        self.0.insert(ip, (mac, Cell::new(false)));
    }

    /// Removes an entry; true if there was one.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.0.remove(&ip).is_some()
    }

    /// The MAC of `ip`, if known.
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.0.get(&ip).map(|e| e.0)
    }

    /// The MAC of `ip`, if known, marking the entry used (for the fast path).
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.0.get(&ip).map(|(mac, used)| {
            used.set(true);
            *mac
        })
    }

    /// Calls `f` with each entry used since the previous call, and clears the marks.
    pub fn take_used(&self, mut f: impl FnMut(IpAddr)) {
        for (ip, (_, used)) in &self.0 {
            if used.replace(false) {
                f(*ip);
            }
        }
    }

    /// Carries the marks of `old` over to the same addresses in this table (a new table from
    /// the control thread replaces the old one between two reports).
    pub fn inherit_used(&self, old: &Neighbours) {
        for (ip, (_, used)) in &old.0 {
            if used.get() {
                if let Some((_, u)) = self.0.get(ip) {
                    u.set(true);
                }
            }
        }
    }

    /// The entries as (address, MAC), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, [u8; 6])> + '_ {
        self.0.iter().map(|(ip, (mac, _))| (*ip, *mac))
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

/// What a worker tells the control thread about next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighRequest {
    /// Frames wait for this address (a next hop, or a destination whose next hop the control
    /// thread works out) on this port: have the kernel resolve it now.
    Resolve(Port, IpAddr),
    /// The worker sent frames to this next hop recently: keep its kernel entry resolved.
    Used(Port, IpAddr),
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

    #[test]
    fn lookups_mark_entries_used() {
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let mut t = Neighbours::new();
        t.insert(a, [2, 0, 0, 0, 0, 1]);
        t.insert(b, [2, 0, 0, 0, 0, 2]);
        assert_eq!(t.get(a), Some([2, 0, 0, 0, 0, 1]));
        let mut used = Vec::new();
        t.take_used(|ip| used.push(ip));
        assert!(used.is_empty(), "get does not mark");
        assert_eq!(t.lookup(b), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(t.lookup(IpAddr::from([10, 0, 0, 3])), None);
        let mut fresh = Neighbours::new();
        fresh.insert(b, [2, 0, 0, 0, 0, 3]);
        fresh.inherit_used(&t);
        t.take_used(|ip| used.push(ip));
        assert_eq!(used, vec![b]);
        t.take_used(|ip| used.push(ip));
        assert_eq!(used, vec![b], "marks are cleared");
        fresh.take_used(|ip| used.push(ip));
        assert_eq!(used, vec![b, b], "the new table kept the mark");
        assert!(fresh.remove(b) && !fresh.remove(b));
    }
}
