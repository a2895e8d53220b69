//! Route-based forwarding: a longest-prefix-match table over inner destinations, for tunnels
//! whose SAs carry any traffic (0.0.0.0/0 selectors) and for bypass and drop routes.
//!
//! Built for a full Internet table (decision 0025): IPv4 is a DIR-24-8 multibit trie
//! ([`super::lpm`]) whose slots hold small next-hop ids into a table of [`RouteAction`]s, so a
//! lookup is one or two memory reads whatever the number of routes. IPv6 prefixes of /32 and
//! shorter are in a 16-8-8 trie; the longer ones (most of an IPv6 table: /48s scattered over
//! the registries' /32 allocations, for which trie nodes would be nearly empty) are found by
//! hash: a map from each /32 to the lengths of the prefixes under it, then one probe per
//! such length, longest first — two probes for a typical /48. Beside it the table keeps its prefixes (for exact lookups,
//! listing, and to find the prefix a removed one uncovers) and how many routes use each
//! action, so the set of tunnel peers is known without walking the routes.

use super::lpm::{leaf, Trie, NH_MASK, V4_STRIDES, V6_STRIDES};
use crate::sa::Prefix;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a route does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// How a family's hash map of prefixes keys them: IPv4 packs address and length in a `u64`
/// (half the memory of a `(u128, u8)` key, which IPv6 needs).
trait RuleKey: Copy + Eq + std::hash::Hash + std::fmt::Debug {
    fn pack(key: u128, len: u8) -> Self;
    fn unpack(self) -> (u128, u8);
}

impl RuleKey for u64 {
    fn pack(key: u128, len: u8) -> Self {
        (((key >> 96) as u64) << 8) | u64::from(len)
    }
    fn unpack(self) -> (u128, u8) {
        (u128::from(self >> 8) << 96, self as u8)
    }
}

impl RuleKey for (u128, u8) {
    fn pack(key: u128, len: u8) -> Self {
        (key, len)
    }
    fn unpack(self) -> (u128, u8) {
        self
    }
}

/// One address family: the trie, the prefixes, and how many prefixes of each length there
/// are (to find the cover of a removed prefix by probing only the lengths in use).
#[derive(Debug, Clone)]
struct Family<K> {
    trie: Trie,
    rules: FxHashMap<K, u32>,
    /// IPv6 only: per /32, the lengths longer than /32 of the prefixes under it (longest
    /// first) and how many prefixes of each. Those prefixes are not in the trie.
    long: FxHashMap<u32, Vec<(u8, u32)>>,
    lens: [u32; 129],
    /// Address width in bits (32 or 128).
    width: u8,
}

impl<K: RuleKey> Family<K> {
    fn new(width: u8) -> Self {
        Family {
            trie: Trie::new(if width == 32 { V4_STRIDES } else { V6_STRIDES }),
            rules: FxHashMap::default(),
            long: FxHashMap::default(),
            lens: [0; 129],
            width,
        }
    }

    /// True for the IPv6 prefixes found by hash rather than in the trie.
    fn hashed(&self, len: u8) -> bool {
        self.width == 128 && len > HASHED_FROM
    }

    /// Counts a prefix of length `len` under the /32 of `key` in or out of [`Family::long`].
    fn count_long(&mut self, key: u128, len: u8, add: bool) {
        let top = (key >> 96) as u32;
        let v = self.long.entry(top).or_default();
        match v.iter().position(|e| e.0 == len) {
            Some(i) if add => v[i].1 += 1,
            Some(i) => {
                v[i].1 -= 1;
                if v[i].1 == 0 {
                    v.remove(i);
                }
            }
            None if add => {
                v.push((len, 1));
                v.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            }
            None => {}
        }
        if v.is_empty() {
            self.long.remove(&top);
        }
    }

    /// The previous next-hop id of the prefix, if it had one.
    fn insert(&mut self, key: u128, len: u8, nh: u32) -> Option<u32> {
        let old = self.rules.insert(K::pack(key, len), nh);
        if old.is_none() {
            self.lens[usize::from(len)] += 1;
        }
        if self.hashed(len) {
            if old.is_none() {
                self.count_long(key, len, true);
            }
        } else if old != Some(nh) {
            self.trie.insert(key, len, nh);
        }
        old
    }

    fn remove(&mut self, key: u128, len: u8) -> Option<u32> {
        let old = self.rules.remove(&K::pack(key, len))?;
        self.lens[usize::from(len)] -= 1;
        if self.hashed(len) {
            self.count_long(key, len, false);
            return Some(old);
        }
        let cover = (0..len)
            .rev()
            .filter(|&l| self.lens[usize::from(l)] > 0)
            .find_map(|l| {
                let k = key & mask(l);
                self.rules.get(&K::pack(k, l)).map(|&nh| leaf(l, nh))
            })
            .unwrap_or(0);
        self.trie.remove(key, len, cover);
        Some(old)
    }

    /// The leaf slot of the longest prefix containing IPv6 address `a` (see the module doc).
    #[inline]
    fn lookup_v6(&self, a: u128) -> u32 {
        if let Some(lens) = self.long.get(&((a >> 96) as u32)) {
            for &(l, _) in lens {
                if let Some(&nh) = self.rules.get(&K::pack(a & mask(l), l)) {
                    return nh;
                }
            }
        }
        self.trie.lookup(a)
    }

    fn prefix(&self, k: K) -> Prefix {
        let (key, len) = k.unpack();
        let addr = if self.width == 32 {
            IpAddr::V4(Ipv4Addr::from((key >> 96) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(key))
        };
        Prefix::new(addr, len).unwrap_or_else(|| unreachable!("lengths are checked on insert"))
    }

    fn memory(&self) -> usize {
        self.trie.memory()
            + self.rules.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
            + self.long.capacity() * (std::mem::size_of::<(u32, Vec<(u8, u32)>)>() + 1)
            + self.long.values().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

/// IPv6 prefixes longer than this are found by hash, the others in the trie.
const HASHED_FROM: u8 = 32;

/// The mask of the first `len` bits of a `u128`.
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// A prefix as (left-aligned key, length, is IPv6).
fn key_of(prefix: Prefix) -> (u128, u8, bool) {
    match prefix.addr() {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, prefix.len(), false),
        IpAddr::V6(a) => (u128::from(a), prefix.len(), true),
    }
}

/// Longest-prefix-match routes for IPv4 and IPv6.
#[derive(Debug, Clone)]
pub struct RouteTable {
    v4: Family<u64>,
    v6: Family<(u128, u8)>,
    /// Next-hop id - 1 → action, and how many routes use it.
    actions: Vec<(RouteAction, u32)>,
    action_ids: FxHashMap<RouteAction, u32>,
    /// Equal-cost groups by [`RouteAction::Ecmp`] index: two or more distinct peers, sorted.
    groups: Vec<Box<[IpAddr]>>,
    group_ids: FxHashMap<Box<[IpAddr]>, u32>,
    /// Peers whose SAs are route-based whether or not a route names them now (the peers of
    /// tunnel interfaces: their 0.0.0.0/0 SAs must never claim traffic by selectors, even
    /// while their routes are withdrawn).
    pinned: Vec<IpAddr>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            v4: Family::new(32),
            v6: Family::new(128),
            actions: Vec::new(),
            action_ids: FxHashMap::default(),
            groups: Vec::new(),
            group_ids: FxHashMap::default(),
            pinned: Vec::new(),
        }
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next-hop id of `action` (interned; ids are never reused, there are few actions).
    fn nh_of(&mut self, action: RouteAction) -> u32 {
        if let Some(&id) = self.action_ids.get(&action) {
            return id;
        }
        self.actions.push((action, 0));
        let id = self.actions.len() as u32;
        debug_assert!(id <= NH_MASK);
        self.action_ids.insert(action, id);
        id
    }

    fn action(&self, nh: u32) -> Option<RouteAction> {
        self.actions.get((nh as usize).checked_sub(1)?).map(|a| a.0)
    }

    fn uses(&mut self, nh: Option<u32>, delta: i32) {
        if let Some(a) = nh.and_then(|n| self.actions.get_mut((n as usize).wrapping_sub(1))) {
            a.1 = a.1.wrapping_add_signed(delta);
        }
    }

    /// Adds or replaces the route for `prefix`.
    pub fn insert(&mut self, prefix: Prefix, action: RouteAction) {
        let nh = self.nh_of(action);
        let (key, len, v6) = key_of(prefix);
        let old = if v6 {
            self.v6.insert(key, len, nh)
        } else {
            self.v4.insert(key, len, nh)
        };
        self.uses(old, -1);
        self.uses(Some(nh), 1);
    }

    /// The action of an equal-cost route through `peers`: one peer makes a plain
    /// [`RouteAction::Tunnel`], several an [`RouteAction::Ecmp`] group of this table; `None`
    /// without peers.
    pub fn multipath(&mut self, peers: &[IpAddr]) -> Option<RouteAction> {
        let mut v: Vec<IpAddr> = peers.to_vec();
        v.sort();
        v.dedup();
        match v.len() {
            0 => None,
            1 => Some(RouteAction::Tunnel(v[0])),
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
                Some(RouteAction::Ecmp(id))
            }
        }
    }

    /// Adds or replaces the route for `prefix` through any of `peers` (an equal-cost multipath
    /// route: one peer makes a plain [`RouteAction::Tunnel`]). No peer: nothing happens.
    pub fn insert_multipath(&mut self, prefix: Prefix, peers: &[IpAddr]) {
        if let Some(action) = self.multipath(peers) {
            self.insert(prefix, action);
        }
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
        let (key, len, v6) = key_of(prefix);
        let old = if v6 {
            self.v6.remove(key, len)
        } else {
            self.v4.remove(key, len)
        };
        self.uses(old, -1);
        old.is_some()
    }

    /// The peers of the tunnel routes and equal-cost groups in use, and the pinned peers
    /// (their outbound SAs are route-based: the selector lookup skips them), sorted. Costs
    /// one step per distinct action, not per route.
    pub fn peers(&self) -> Vec<IpAddr> {
        let mut v = self.pinned.clone();
        for &(a, uses) in &self.actions {
            match a {
                _ if uses == 0 => {}
                RouteAction::Tunnel(p) => v.push(p),
                RouteAction::Ecmp(g) => v.extend_from_slice(self.group(g)),
                RouteAction::Bypass | RouteAction::Drop => {}
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Every route, for listing, sorted.
    pub fn entries(&self) -> Vec<(Prefix, RouteAction)> {
        let mut v: Vec<(Prefix, RouteAction)> = Vec::with_capacity(self.len());
        v.extend(
            self.v4
                .rules
                .iter()
                .filter_map(|(&k, &nh)| Some((self.v4.prefix(k), self.action(nh)?))),
        );
        v.extend(
            self.v6
                .rules
                .iter()
                .filter_map(|(&k, &nh)| Some((self.v6.prefix(k), self.action(nh)?))),
        );
        v.sort_by_key(|(p, _)| (p.addr().is_ipv6(), p.addr(), p.len()));
        v
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.v4.rules.len() + self.v6.rules.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the table holds (trie nodes and the prefixes' hash maps, by capacity).
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory() + self.v6.memory() + self.actions.capacity() * 24
    }

    /// Trie nodes below the roots (IPv4 groups of 256 slots, IPv6 nodes of 16 to 256 slots).
    pub fn trie_nodes(&self) -> (usize, usize) {
        (self.v4.trie.nodes(), self.v6.trie.nodes())
    }

    /// The action of the route for exactly `prefix`, if there is one.
    pub fn lookup_exact(&self, prefix: Prefix) -> Option<RouteAction> {
        let (key, len, v6) = key_of(prefix);
        let nh = if v6 {
            self.v6.rules.get(&RuleKey::pack(key, len))
        } else {
            self.v4.rules.get(&RuleKey::pack(key, len))
        };
        nh.and_then(|&nh| self.action(nh))
    }

    /// The action of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<RouteAction> {
        let slot = match dst {
            IpAddr::V4(a) => self.v4.trie.lookup_24_8(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup_v6(u128::from(a)),
        };
        self.action(slot & NH_MASK)
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

    /// One step of a random history: insert (kind 0..3: bypass, drop, tunnel) or remove.
    fn step(
        t: &mut RouteTable,
        model: &mut Vec<(Prefix, RouteAction)>,
        pre: Prefix,
        kind: u8,
    ) -> Result<(), TestCaseError> {
        if kind >= 3 {
            let had = model.iter().any(|(q, _)| *q == pre);
            model.retain(|(q, _)| *q != pre);
            prop_assert_eq!(t.remove(pre), had);
        } else {
            let act = match kind {
                0 => RouteAction::Bypass,
                1 => RouteAction::Drop,
                _ => RouteAction::Tunnel(IpAddr::from([1, 2, 3, pre.len()])),
            };
            t.insert(pre, act);
            model.retain(|(q, _)| *q != pre);
            model.push((pre, act));
        }
        Ok(())
    }

    fn check(
        t: &RouteTable,
        model: &[(Prefix, RouteAction)],
        ip: IpAddr,
    ) -> Result<(), TestCaseError> {
        let want = model
            .iter()
            .filter(|(q, _)| q.contains(ip))
            .max_by_key(|(q, _)| q.len())
            .map(|(_, a)| *a);
        prop_assert_eq!(t.lookup(ip), want, "{}", ip);
        Ok(())
    }

    fn check_all(t: &RouteTable, model: &[(Prefix, RouteAction)]) -> Result<(), TestCaseError> {
        prop_assert_eq!(t.len(), model.len());
        let mut m = model.to_vec();
        m.sort_by_key(|(p, _)| (p.addr().is_ipv6(), p.addr(), p.len()));
        prop_assert_eq!(t.entries(), m);
        let mut peers: Vec<IpAddr> = model
            .iter()
            .filter_map(|(_, a)| match a {
                RouteAction::Tunnel(p) => Some(*p),
                _ => None,
            })
            .collect();
        peers.sort();
        peers.dedup();
        prop_assert_eq!(t.peers(), peers);
        Ok(())
    }

    /// A v4 address near `base` (so random prefixes nest and overlap often).
    fn near4(base: u32, x: u32) -> u32 {
        (base & 0xffff_0000) | (x & 0xffff)
    }

    proptest! {
        // A short IPv4 prefix writes up to 2^24 root slots, slow in a debug build: fewer cases,
        // and lengths of /12 and shorter one step in twenty.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn ipv4_matches_a_linear_scan_through_inserts_and_removes(
            base in any::<u32>(),
            ops in prop::collection::vec(
                (any::<u32>(), prop_oneof![1 => 0u8..=12, 19 => 13u8..=32], 0u8..5),
                0..80,
            ),
            probes in prop::collection::vec(any::<u32>(), 1..60),
        ) {
            let mut t = RouteTable::new();
            let mut model = Vec::new();
            for (k, (a, l, kind)) in ops.into_iter().enumerate() {
                let pre = Prefix::new(IpAddr::from(near4(base, a).to_be_bytes()), l).unwrap();
                step(&mut t, &mut model, pre, kind)?;
                // Probe inside the prefix just changed, and random neighbours.
                check(&t, &model, pre.addr())?;
                check(&t, &model, IpAddr::from(near4(base, a ^ probes[k % probes.len()]).to_be_bytes()))?;
            }
            for x in probes {
                check(&t, &model, IpAddr::from(near4(base, x).to_be_bytes()))?;
                check(&t, &model, IpAddr::from(x.to_be_bytes()))?;
            }
            check_all(&t, &model)?;
            // Removing everything leaves an empty trie: every node folded away.
            for (p, _) in model.clone() {
                step(&mut t, &mut model, p, 3)?;
            }
            prop_assert_eq!(t.trie_nodes(), (0, 0));
            prop_assert_eq!(t.lookup(IpAddr::from(base.to_be_bytes())), None);
        }

        #[test]
        fn ipv6_matches_a_linear_scan_through_inserts_and_removes(
            base in any::<u128>(),
            ops in prop::collection::vec((any::<u64>(), 0u8..=128, 0u8..5), 0..80),
            probes in prop::collection::vec(any::<u64>(), 1..60),
        ) {
            // Prefixes share their first 64 bits now and then, and their lengths spread over
            // every level of the trie.
            let addr = |x: u64| -> IpAddr {
                let hi = if x & 1 == 0 { base >> 64 } else { (base >> 64) ^ u128::from(x >> 40) };
                IpAddr::from(((hi << 64) | u128::from(x.rotate_left(7))).to_be_bytes())
            };
            let mut t = RouteTable::new();
            let mut model = Vec::new();
            for (k, (a, l, kind)) in ops.into_iter().enumerate() {
                let pre = Prefix::new(addr(a), l).unwrap();
                step(&mut t, &mut model, pre, kind)?;
                check(&t, &model, pre.addr())?;
                check(&t, &model, addr(a ^ probes[k % probes.len()]))?;
            }
            for x in probes {
                check(&t, &model, addr(x))?;
            }
            check_all(&t, &model)?;
            for (p, _) in model.clone() {
                step(&mut t, &mut model, p, 3)?;
            }
            prop_assert_eq!(t.trie_nodes(), (0, 0));
        }
    }

    #[test]
    fn peers_follow_the_routes_and_the_pins() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        let mut t = RouteTable::new();
        t.insert_multipath(p("10.0.0.0/8"), &[b, a]);
        t.insert(p("10.1.0.0/16"), RouteAction::Tunnel(c));
        assert_eq!(t.peers(), vec![a, b, c]);
        assert_eq!(t.lookup_exact(p("10.0.0.0/8")), Some(RouteAction::Ecmp(0)));
        assert_eq!(t.group(0), &[a, b]);
        t.insert(p("10.1.0.0/16"), RouteAction::Drop);
        assert_eq!(t.peers(), vec![a, b]);
        t.remove(p("10.0.0.0/8"));
        assert_eq!(t.peers(), Vec::<IpAddr>::new());
        t.pin_peer(c);
        assert_eq!(t.peers(), vec![c]);
    }
}
