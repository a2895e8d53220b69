//! The policy table every worker keeps when there are several: which worker owns the outbound
//! SA a LAN packet needs, so the packet can be handed to it. Entries mirror the outbound SAs
//! (with their installation order), without keys or state.

use crate::sa::index::SelectorIndex;
use crate::sa::{Mode, SaConfig, Selectors};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

#[derive(Debug, Clone)]
struct Entry {
    spi: u32,
    local: IpAddr,
    remote: IpAddr,
    transport: bool,
    local_ts: Selectors,
    remote_ts: Selectors,
    owner: usize,
    /// Installation sequence number: the first installed wins.
    seq: u64,
}

/// Outbound policies with their owning workers, indexed by remote selectors like the SA
/// database's outbound SAs (so steering a packet does not scan every policy).
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// In slots: a removed entry's slot takes the last entry.
    entries: Vec<Entry>,
    /// Route-based peers (skipped by `owner_of`).
    route_peers: FxHashSet<IpAddr>,
    /// Slots in `entries` by remote selectors, route-based peers left out.
    index: SelectorIndex,
    /// Slots in `entries` by SPI.
    by_spi: FxHashMap<u32, Vec<u32>>,
    next_seq: u64,
}

impl Policies {
    /// Appends the policy of an outbound SA owned by worker `owner`.
    pub fn add(&mut self, cfg: &SaConfig, owner: usize) {
        let slot = self.entries.len();
        if !self.route_peers.contains(&cfg.remote) {
            self.index.push(slot, &cfg.remote_ts);
        }
        self.by_spi.entry(cfg.spi).or_default().push(slot as u32);
        self.next_seq += 1;
        self.entries.push(Entry {
            spi: cfg.spi,
            local: cfg.local,
            remote: cfg.remote,
            transport: cfg.mode == Mode::Transport,
            local_ts: cfg.local_ts.clone(),
            remote_ts: cfg.remote_ts.clone(),
            owner,
            seq: self.next_seq,
        });
    }

    /// Removes the policies of outbound SAs with this SPI (and remote address, if given): the
    /// cost of those policies, not of the table.
    pub fn remove(&mut self, spi: u32, remote: Option<IpAddr>) {
        loop {
            let Some(slot) = self.by_spi.get(&spi).and_then(|v| {
                v.iter()
                    .copied()
                    .find(|&i| remote.is_none_or(|r| r == self.entries[i as usize].remote))
            }) else {
                return;
            };
            self.remove_slot(slot as usize);
        }
    }

    fn remove_slot(&mut self, slot: usize) {
        let gone = &self.entries[slot];
        if !self.route_peers.contains(&gone.remote) {
            self.index.remove(slot, &gone.remote_ts);
        }
        unfile(&mut self.by_spi, gone.spi, slot as u32);
        let last = self.entries.len() - 1;
        if slot != last {
            let moved = &self.entries[last];
            if !self.route_peers.contains(&moved.remote) {
                self.index.moved(last, slot, &moved.remote_ts);
            }
            refile(&mut self.by_spi, moved.spi, last as u32, slot as u32);
        }
        self.entries.swap_remove(slot);
    }

    /// The worker owning the outbound SA for a packet from `src` to `dst` (the same first-match
    /// rule as `SaDb::outbound_index`).
    #[inline]
    pub fn owner_of(&self, src: IpAddr, dst: IpAddr) -> Option<usize> {
        self.index
            .first(
                dst,
                |i| self.entries[i].seq,
                |i| {
                    let e = &self.entries[i];
                    !self.route_peers.contains(&e.remote)
                        && e.local_ts.matches(src)
                        && e.remote_ts.matches(dst)
                        && (!e.transport || (e.local == src && e.remote == dst))
                },
            )
            .map(|i| self.entries[i].owner)
    }

    /// Declares the route-based peers (skipped by `owner_of`, as by the SA lookup); the
    /// index is rebuilt only when they changed (a route update rarely changes them).
    pub fn set_route_peers(&mut self, peers: Vec<IpAddr>) {
        let peers: FxHashSet<IpAddr> = peers.into_iter().collect();
        if peers == self.route_peers {
            return;
        }
        self.route_peers = peers;
        self.index.clear();
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_unstable_by_key(|&i| self.entries[i].seq);
        for i in order {
            let e = &self.entries[i];
            if !self.route_peers.contains(&e.remote) {
                self.index.push(i, &e.remote_ts);
            }
        }
    }

    /// The worker owning the first outbound SA towards `peer` (route-based tunnels).
    pub fn owner_of_peer(&self, peer: IpAddr) -> Option<usize> {
        self.entries
            .iter()
            .filter(|e| e.remote == peer)
            .min_by_key(|e| e.seq)
            .map(|e| e.owner)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Forgets `slot` in the list of slots of `key`.
pub(crate) fn unfile<K: std::hash::Hash + Eq>(m: &mut FxHashMap<K, Vec<u32>>, key: K, slot: u32) {
    if let Some(v) = m.get_mut(&key) {
        if let Some(i) = v.iter().position(|&s| s == slot) {
            v.remove(i);
        }
        if v.is_empty() {
            m.remove(&key);
        }
    }
}

/// Replaces `from` by `to` in the list of slots of `key` (its place in the list kept).
pub(crate) fn refile<K: std::hash::Hash + Eq>(
    m: &mut FxHashMap<K, Vec<u32>>,
    key: K,
    from: u32,
    to: u32,
) {
    if let Some(s) = m
        .get_mut(&key)
        .and_then(|v| v.iter_mut().find(|s| **s == from))
    {
        *s = to;
    }
}

/// A trap policy: traffic it matches should be protected, but no SA exists yet. The first
/// packets are dropped and raise an acquire event (at most one a second per trap and worker).
#[derive(Debug, Clone)]
pub struct Trap {
    /// Identifier chosen by the control plane.
    pub id: u32,
    /// Source prefixes (this side).
    pub local_ts: Selectors,
    /// Destination prefixes (the peer's side).
    pub remote_ts: Selectors,
    last_acquire: Option<std::time::Instant>,
}

impl Trap {
    /// A trap with these selectors.
    pub fn new(id: u32, local_ts: Selectors, remote_ts: Selectors) -> Self {
        Trap {
            id,
            local_ts,
            remote_ts,
            last_acquire: None,
        }
    }

    /// True if the trap covers a packet from `src` to `dst`.
    #[inline]
    pub fn matches(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.local_ts.matches(src) && self.remote_ts.matches(dst)
    }

    /// True if an acquire may be raised now (rate limit; reads the clock only on this path).
    pub fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .last_acquire
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            return false;
        }
        self.last_acquire = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(spi: u32, remote: &str, rts: &str) -> SaConfig {
        let text = format!(
            "[[sa]]\nspi = {spi}\ndirection = \"out\"\nsuite = \"aes128gcm16\"\n\
             key = \"000102030405060708090a0b0c0d0e0f10111213\"\nlocal = \"10.200.0.1\"\n\
             remote = \"{remote}\"\nlocal_ts = [\"10.201.1.0/24\"]\n\
             remote_ts = [\"{rts}\"]\n"
        );
        crate::sa::file::parse(&text, "test").unwrap().remove(0)
    }

    #[test]
    fn owner_follows_first_match_removal_and_route_peers() {
        let mut p = Policies::default();
        p.add(&out(1, "10.200.0.2", "10.202.0.0/16"), 0);
        p.add(&out(2, "10.200.0.3", "10.202.3.0/24"), 1);
        p.add(&out(3, "10.200.0.4", "10.202.3.0/24"), 2);
        let src: IpAddr = "10.201.1.5".parse().unwrap();
        let at = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p.owner_of(src, at("10.202.3.9")),
            Some(0),
            "first installed wins"
        );
        assert_eq!(p.owner_of(at("10.9.9.9"), at("10.202.3.9")), None);
        p.remove(1, None);
        assert_eq!(p.owner_of(src, at("10.202.3.9")), Some(1));
        assert_eq!(p.owner_of(src, at("10.202.4.9")), None);
        p.set_route_peers(vec![at("10.200.0.3")]);
        assert_eq!(
            p.owner_of(src, at("10.202.3.9")),
            Some(2),
            "route-based peers skipped"
        );
        assert_eq!(p.owner_of_peer(at("10.200.0.3")), Some(1));
        assert_eq!(p.len(), 2);
    }
}
