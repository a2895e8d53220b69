//! Route-based forwarding: a longest-prefix-match table over inner destinations, for tunnels
//! whose SAs carry any traffic (0.0.0.0/0 selectors) and for bypass and drop routes.
//!
//! The table keeps one hash map per prefix length and probes the lengths in use from the
//! longest down, so a lookup costs one hash probe per distinct prefix length (a handful in
//! practice) whatever the number of routes.

use crate::sa::Prefix;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// What a route does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    /// Encrypt with the outbound SA towards this peer (its `remote` address).
    Tunnel(IpAddr),
    /// Forward in the clear out of the WAN.
    Bypass,
    /// Drop (counted as `no_policy`).
    Drop,
    /// Encrypt towards one of the peers of this equal-cost group ([`RouteTable::group`]),
    /// chosen per flow ([`RouteTable::pick`]).
    Ecmp(u32),
}

/// Longest-prefix-match routes for IPv4 and IPv6.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    v4: FxHashMap<(u8, u32), RouteAction>,
    v4_lens: Vec<u8>,
    v6: FxHashMap<(u8, u128), RouteAction>,
    v6_lens: Vec<u8>,
    /// Equal-cost groups by [`RouteAction::Ecmp`] index: two or more distinct peers, sorted.
    groups: Vec<Box<[IpAddr]>>,
    group_ids: FxHashMap<Box<[IpAddr]>, u32>,
    /// Peers whose SAs are route-based whether or not a route names them now (the peers of
    /// tunnel interfaces: their 0.0.0.0/0 SAs must never claim traffic by selectors, even
    /// while their routes are withdrawn).
    pinned: Vec<IpAddr>,
}

fn insert_len(lens: &mut Vec<u8>, len: u8) {
    if !lens.contains(&len) {
        lens.push(len);
        lens.sort_unstable_by(|a, b| b.cmp(a));
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the route for `prefix`.
    pub fn insert(&mut self, prefix: Prefix, action: RouteAction) {
        match prefix.addr() {
            IpAddr::V4(a) => {
                self.v4.insert((prefix.len(), u32::from(a)), action);
                insert_len(&mut self.v4_lens, prefix.len());
            }
            IpAddr::V6(a) => {
                self.v6.insert((prefix.len(), u128::from(a)), action);
                insert_len(&mut self.v6_lens, prefix.len());
            }
        }
    }

    /// Adds or replaces the route for `prefix` through any of `peers` (an equal-cost multipath
    /// route: one peer makes a plain [`RouteAction::Tunnel`]). No peer: nothing happens.
    pub fn insert_multipath(&mut self, prefix: Prefix, peers: &[IpAddr]) {
        let mut v: Vec<IpAddr> = peers.to_vec();
        v.sort();
        v.dedup();
        let action = match v.len() {
            0 => return,
            1 => RouteAction::Tunnel(v[0]),
            _ => {
                let key: Box<[IpAddr]> = v.into_boxed_slice();
                let id = match self.group_ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = self.groups.len() as u32;
                        self.groups.push(key.clone());
                        self.group_ids.insert(key, id);
                        id
                    }
                };
                RouteAction::Ecmp(id)
            }
        };
        self.insert(prefix, action);
    }

    /// The peers of equal-cost group `id` (empty for an unknown id).
    pub fn group(&self, id: u32) -> &[IpAddr] {
        self.groups.get(id as usize).map_or(&[], |g| g)
    }

    /// The tunnel peer a route's action sends a flow with hash `hash` to: the peer of a
    /// [`RouteAction::Tunnel`]; for a [`RouteAction::Ecmp`] group, the member the hash selects,
    /// or the next one `usable` accepts when it does not (a peer without an SA), so a dead
    /// member's flows spread over the others while the rest stay where they are. `None` for
    /// bypass, drop, or a group with no usable member.
    #[inline]
    pub fn pick(
        &self,
        action: RouteAction,
        hash: u32,
        usable: impl Fn(IpAddr) -> bool,
    ) -> Option<IpAddr> {
        match action {
            RouteAction::Tunnel(p) => Some(p),
            RouteAction::Ecmp(id) => {
                let g = self.group(id);
                let n = g.len();
                if n == 0 {
                    return None;
                }
                let first = hash as usize % n;
                (0..n).map(|k| g[(first + k) % n]).find(|&p| usable(p))
            }
            RouteAction::Bypass | RouteAction::Drop => None,
        }
    }

    /// Marks `peer` route-based for good (see [`RouteTable::peers`]).
    pub fn pin_peer(&mut self, peer: IpAddr) {
        if !self.pinned.contains(&peer) {
            self.pinned.push(peer);
        }
    }

    /// Removes the route for `prefix`; true if there was one.
    pub fn remove(&mut self, prefix: Prefix) -> bool {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.remove(&(prefix.len(), u32::from(a))).is_some(),
            IpAddr::V6(a) => self.v6.remove(&(prefix.len(), u128::from(a))).is_some(),
        }
    }

    /// The peers of the tunnel routes and equal-cost groups, and the pinned peers (their
    /// outbound SAs are route-based: the selector lookup skips them).
    pub fn peers(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .v4
            .values()
            .chain(self.v6.values())
            .filter_map(|a| match a {
                RouteAction::Tunnel(p) => Some(*p),
                _ => None,
            })
            .chain(self.groups.iter().flat_map(|g| g.iter().copied()))
            .chain(self.pinned.iter().copied())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every route, for listing.
    pub fn entries(&self) -> Vec<(Prefix, RouteAction)> {
        let mut v: Vec<(Prefix, RouteAction)> = self
            .v4
            .iter()
            .map(|(&(l, a), &act)| {
                (
                    Prefix::new(IpAddr::from(a.to_be_bytes()), l).expect("valid"),
                    act,
                )
            })
            .chain(self.v6.iter().map(|(&(l, a), &act)| {
                (
                    Prefix::new(IpAddr::from(a.to_be_bytes()), l).expect("valid"),
                    act,
                )
            }))
            .collect();
        v.sort_by_key(|(p, _)| (p.addr().is_ipv6(), p.addr(), p.len()));
        v
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The action of the route for exactly `prefix`, if there is one.
    pub fn lookup_exact(&self, prefix: Prefix) -> Option<RouteAction> {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.get(&(prefix.len(), u32::from(a))).copied(),
            IpAddr::V6(a) => self.v6.get(&(prefix.len(), u128::from(a))).copied(),
        }
    }

    /// The action of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<RouteAction> {
        match dst {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4_lens.iter().find_map(|&l| {
                    let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                    self.v4.get(&(l, a & m)).copied()
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6_lens.iter().find_map(|&l| {
                    let m = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                    self.v6.get(&(l, a & m)).copied()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        let peer: IpAddr = "10.200.0.2".parse().unwrap();
        t.insert(p("0.0.0.0/0"), RouteAction::Bypass);
        t.insert(p("10.201.0.0/16"), RouteAction::Tunnel(peer));
        t.insert(p("10.201.9.0/24"), RouteAction::Drop);
        t.insert(p("fd00::/8"), RouteAction::Tunnel(peer));
        assert_eq!(
            t.lookup("10.201.2.2".parse().unwrap()),
            Some(RouteAction::Tunnel(peer))
        );
        assert_eq!(
            t.lookup("10.201.9.9".parse().unwrap()),
            Some(RouteAction::Drop)
        );
        assert_eq!(
            t.lookup("8.8.8.8".parse().unwrap()),
            Some(RouteAction::Bypass)
        );
        assert_eq!(
            t.lookup("fd12::1".parse().unwrap()),
            Some(RouteAction::Tunnel(peer))
        );
        assert_eq!(t.lookup("2001:db8::1".parse().unwrap()), None);
        assert!(t.remove(p("10.201.9.0/24")));
        assert!(!t.remove(p("10.201.9.0/24")));
        assert_eq!(
            t.lookup("10.201.9.9".parse().unwrap()),
            Some(RouteAction::Tunnel(peer))
        );
        assert_eq!(t.len(), 3);
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            routes in prop::collection::vec((any::<u32>(), 0u8..=32, 0u8..3), 0..40),
            probes in prop::collection::vec(any::<u32>(), 1..60),
        ) {
            let mut t = RouteTable::new();
            let mut model: Vec<(Prefix, RouteAction)> = Vec::new();
            for (a, l, k) in routes {
                let pre = Prefix::new(IpAddr::from(a.to_be_bytes()), l).unwrap();
                let act = match k { 0 => RouteAction::Bypass, 1 => RouteAction::Drop, _ => RouteAction::Tunnel(IpAddr::from([1, 2, 3, l])) };
                t.insert(pre, act);
                model.retain(|(q, _)| *q != pre);
                model.push((pre, act));
            }
            for x in probes {
                let ip = IpAddr::from(x.to_be_bytes());
                let want = model.iter().filter(|(q, _)| q.contains(ip)).max_by_key(|(q, _)| q.len()).map(|(_, a)| *a);
                prop_assert_eq!(t.lookup(ip), want);
            }
        }
    }
}
