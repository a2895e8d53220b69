//! The SA database of one worker: inbound SAs by (SPI, destination), outbound SAs by traffic
//! selectors.

use crate::counters::DropCounters;
use crate::crypto::Backend;
use crate::sa::config::NAT_T_PORT;
use crate::sa::flat::FlatIndex;
use crate::sa::index::SelectorIndex;
use crate::sa::spd::{refile, unfile};
use crate::sa::{Direction, InboundSa, Mode, OutboundSa, SaConfig, SaEvent};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

/// Why an SA could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaDbError {
    /// The configuration is inconsistent.
    #[error("SA {label}: {reason}")]
    Invalid {
        /// Which SA.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// An inbound SA with this SPI and destination exists already.
    #[error("SA {label}: an inbound SA with this SPI and destination exists already")]
    Duplicate {
        /// Which SA.
        label: String,
    },
}

/// The passes with which a worker prefetches a batch's SAs before processing it, in this
/// order, each over the whole batch: each pass reads what the one before loaded and starts
/// loading the next step's data, so the cache misses of the batch's packets overlap instead
/// of coming one after another (a lookup in a table of a million SAs is a chain of about four
/// dependent misses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// The index slots the lookup starts from (by SPI, or by remote selector prefix).
    Index,
    /// The SA the index points at, with its key schedule.
    Sa,
    /// What the SA points at: replay bitmap, long selector lists.
    Parts,
}

/// Slots of the outbound flow cache (direct-mapped by source and destination).
const FLOW_SLOTS: usize = 256;

/// One remembered outbound lookup.
#[derive(Debug, Clone, Copy)]
struct FlowSlot {
    src: IpAddr,
    dst: IpAddr,
    /// Index of the matching outbound SA, or `NO_SA`.
    idx: u32,
}

const NO_SA: u32 = u32::MAX;
const EMPTY: FlowSlot = FlowSlot {
    src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    idx: NO_SA - 1,
};

/// Inbound SAs by SPI (the receiver picks its SPIs, so they are unique in practice; SAs that
/// share an SPI with different local addresses wait in a short overflow list), and outbound SAs
/// with their installation order, indexed by their remote selectors, by SPI and by peer, behind
/// a direct-mapped flow cache. Both tables fill a removed SA's slot with the last SA, so that
/// adding or removing an SA costs the same whatever their number. Counters for drops that no SA can be
/// charged with (unknown SPI, malformed outer headers, no outbound SA) live in `drops`.
pub struct SaDb {
    /// Inbound SAs with distinct SPIs, in no particular order.
    inbound: Vec<InboundSa>,
    /// Position in `inbound` by SPI (prefetchable, for batches).
    by_spi: FlatIndex<u32>,
    inbound_overflow: Vec<InboundSa>,
    flow: Vec<FlowSlot>,
    /// Outbound SAs in slots (in no particular order).
    outbound: Vec<OutboundSa>,
    /// Installation sequence number of the outbound SA in each slot: among SAs that match, the
    /// first installed wins.
    out_order: Vec<u64>,
    next_order: u64,
    /// Slots in `outbound` by remote selectors (route-based SAs left out).
    out_index: SelectorIndex,
    /// Slots in `outbound` by SPI.
    out_by_spi: FxHashMap<u32, Vec<u32>>,
    /// Slots in `outbound` towards each peer, in installation order.
    peers: FxHashMap<IpAddr, Vec<u32>>,
    /// Slot of the first-installed outbound SA towards each peer (the first of `peers`).
    by_peer: FxHashMap<IpAddr, u32>,
    nat_t_ports: Vec<u16>,
    /// Drops not charged to an SA.
    pub drops: DropCounters,
    /// Events raised by SAs, for the control plane to collect (`take_events`).
    pub(crate) events: Vec<SaEvent>,
    /// Peers reached by routes: their outbound SAs are route-based, not matched by selectors.
    route_peers: FxHashSet<IpAddr>,
    /// Trap policies (traffic to protect, SA not negotiated yet).
    traps: Vec<crate::sa::spd::Trap>,
    backend: Option<Backend>,
}

impl SaDb {
    /// An empty database whose SAs use `backend` for AES-GCM.
    pub fn new(backend: Backend) -> Self {
        SaDb {
            nat_t_ports: vec![NAT_T_PORT],
            backend: Some(backend),
            flow: vec![EMPTY; FLOW_SLOTS],
            ..Default::default()
        }
    }
}

impl Default for SaDb {
    /// An empty database without a flow cache, for the default backend.
    fn default() -> Self {
        SaDb {
            inbound: Vec::new(),
            by_spi: FlatIndex::new(0),
            inbound_overflow: Vec::new(),
            flow: Vec::new(),
            outbound: Vec::new(),
            out_order: Vec::new(),
            next_order: 0,
            out_index: SelectorIndex::default(),
            out_by_spi: FxHashMap::default(),
            peers: FxHashMap::default(),
            by_peer: FxHashMap::default(),
            nat_t_ports: Vec::new(),
            drops: DropCounters::default(),
            events: Vec::new(),
            route_peers: FxHashSet::default(),
            traps: Vec::new(),
            backend: None,
        }
    }
}

impl SaDb {
    /// Adds an SA.
    pub fn insert(&mut self, cfg: SaConfig) -> Result<(), SaDbError> {
        let label = cfg.label();
        let invalid = |reason: String| SaDbError::Invalid {
            label: label.clone(),
            reason,
        };
        let backend = self.backend.unwrap_or_default();
        match cfg.direction {
            Direction::In => {
                let exists = self
                    .by_spi
                    .get(&cfg.spi)
                    .is_some_and(|i| self.inbound[i as usize].cfg.local == cfg.local)
                    || self
                        .inbound_overflow
                        .iter()
                        .any(|sa| sa.cfg.spi == cfg.spi && sa.cfg.local == cfg.local);
                if exists {
                    return Err(SaDbError::Duplicate { label });
                }
                if let Some(e) = cfg.encap {
                    if !self.nat_t_ports.contains(&e.dst_port) {
                        self.nat_t_ports.push(e.dst_port);
                    }
                }
                let spi = cfg.spi;
                let sa = InboundSa::new(cfg, backend).map_err(invalid)?;
                if self.by_spi.get(&spi).is_some() {
                    self.inbound_overflow.push(sa);
                } else {
                    self.by_spi.insert(spi, self.inbound.len() as u32);
                    push_advised(&mut self.inbound, sa);
                }
            }
            Direction::Out => {
                let sa = OutboundSa::new(cfg, backend).map_err(invalid)?;
                let slot = self.outbound.len();
                if !self.route_peers.contains(&sa.cfg.remote) {
                    self.out_index.push(slot, &sa.cfg.remote_ts);
                }
                self.out_by_spi
                    .entry(sa.cfg.spi)
                    .or_default()
                    .push(slot as u32);
                self.peers
                    .entry(sa.cfg.remote)
                    .or_default()
                    .push(slot as u32);
                self.by_peer.entry(sa.cfg.remote).or_insert(slot as u32);
                push_advised(&mut self.outbound, sa);
                self.out_order.push(self.next_order);
                self.next_order += 1;
                self.flush_flows();
            }
        }
        Ok(())
    }

    /// Events raised since the last call, oldest first.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, SaEvent> {
        self.events.drain(..)
    }

    /// True if events are waiting (cheap: a length check).
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Removes SAs with this SPI and direction; `address` narrows to one local address
    /// (inbound) or remote address (outbound). Returns how many were removed.
    pub fn remove(&mut self, spi: u32, direction: Direction, address: Option<IpAddr>) -> usize {
        let hit = |sa_spi: u32, addr: IpAddr| sa_spi == spi && address.is_none_or(|a| a == addr);
        match direction {
            Direction::In => {
                let mut n = 0;
                if let Some(i) = self.by_spi.get(&spi) {
                    let sa = &self.inbound[i as usize];
                    if hit(sa.cfg.spi, sa.cfg.local) {
                        self.remove_inbound_at(i as usize);
                        n += 1;
                    }
                }
                let before = self.inbound_overflow.len();
                self.inbound_overflow
                    .retain(|sa| !hit(sa.cfg.spi, sa.cfg.local));
                n += before - self.inbound_overflow.len();
                // An SA waiting in the overflow list takes the freed slot.
                if self.by_spi.get(&spi).is_none() {
                    if let Some(i) = self
                        .inbound_overflow
                        .iter()
                        .position(|sa| sa.cfg.spi == spi)
                    {
                        let sa = self.inbound_overflow.swap_remove(i);
                        self.by_spi.insert(spi, self.inbound.len() as u32);
                        self.inbound.push(sa);
                    }
                }
                n
            }
            Direction::Out => {
                let mut n = 0;
                while let Some(slot) = self.out_by_spi.get(&spi).and_then(|v| {
                    v.iter().copied().find(|&i| {
                        let c = &self.outbound[i as usize].cfg;
                        hit(c.spi, c.remote)
                    })
                }) {
                    self.remove_outbound_at(slot as usize);
                    n += 1;
                }
                if n > 0 {
                    self.flush_flows();
                }
                n
            }
        }
    }

    /// Removes the outbound SA in `slot`: the last one takes its place. The cost of its own
    /// index entries, whatever the number of SAs.
    fn remove_outbound_at(&mut self, slot: usize) {
        let gone = &self.outbound[slot].cfg;
        let (spi, remote) = (gone.spi, gone.remote);
        if !self.route_peers.contains(&remote) {
            self.out_index.remove(slot, &gone.remote_ts);
        }
        unfile(&mut self.out_by_spi, spi, slot as u32);
        unfile(&mut self.peers, remote, slot as u32);
        self.first_to_peer(remote);
        let last = self.outbound.len() - 1;
        if slot != last {
            let moved = &self.outbound[last].cfg;
            let (spi, remote) = (moved.spi, moved.remote);
            if !self.route_peers.contains(&remote) {
                self.out_index.moved(last, slot, &moved.remote_ts);
            }
            refile(&mut self.out_by_spi, spi, last as u32, slot as u32);
            refile(&mut self.peers, remote, last as u32, slot as u32);
            self.first_to_peer(remote);
        }
        self.outbound.swap_remove(slot);
        self.out_order.swap_remove(slot);
    }

    /// Files the first-installed outbound SA towards `peer` in `by_peer`.
    fn first_to_peer(&mut self, peer: IpAddr) {
        match self.peers.get(&peer).and_then(|v| v.first()) {
            Some(&s) => {
                self.by_peer.insert(peer, s);
            }
            None => {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Removes the inbound SA at `i` of `inbound`: the last one takes its place.
    fn remove_inbound_at(&mut self, i: usize) {
        let gone = self.inbound.swap_remove(i);
        self.by_spi.remove(&gone.cfg.spi);
        if let Some(moved) = self.inbound.get(i) {
            self.by_spi.insert(moved.cfg.spi, i as u32);
        }
    }

    /// Rebuilds the selector index (after the route-based peers changed), in installation
    /// order.
    fn index_selectors(&mut self) {
        self.out_index.clear();
        let mut slots: Vec<usize> = (0..self.outbound.len()).collect();
        slots.sort_unstable_by_key(|&i| self.out_order[i]);
        for i in slots {
            let sa = &self.outbound[i];
            if !self.route_peers.contains(&sa.cfg.remote) {
                self.out_index.push(i, &sa.cfg.remote_ts);
            }
        }
    }

    fn flush_flows(&mut self) {
        self.flow.iter_mut().for_each(|s| *s = EMPTY);
    }

    /// Replaces the SA with the same SPI, direction and addresses (counters restart), or adds
    /// it if there is none.
    pub fn replace(&mut self, cfg: SaConfig) -> Result<(), SaDbError> {
        let addr = match cfg.direction {
            Direction::In => cfg.local,
            Direction::Out => cfg.remote,
        };
        self.remove(cfg.spi, cfg.direction, Some(addr));
        self.insert(cfg)
    }

    /// True if `port` is a local UDP port on which ESP-in-UDP is expected.
    #[inline]
    pub fn is_nat_t_port(&self, port: u16) -> bool {
        self.nat_t_ports.contains(&port)
    }

    /// Local UDP ports on which ESP-in-UDP is expected (4500 and every inbound SA's port).
    pub fn nat_t_ports(&self) -> &[u16] {
        &self.nat_t_ports
    }

    /// The inbound SA for `spi` addressed to `dst`.
    #[inline]
    pub fn inbound_mut(&mut self, spi: u32, dst: IpAddr) -> Option<&mut InboundSa> {
        match self.by_spi.get(&spi) {
            Some(i) if self.inbound[i as usize].cfg.local == dst => {
                Some(&mut self.inbound[i as usize])
            }
            _ => self
                .inbound_overflow
                .iter_mut()
                .find(|sa| sa.cfg.spi == spi && sa.cfg.local == dst),
        }
    }

    /// One pass of a batch's prefetching for an outbound packet to `dst` (see [`Warm`]).
    #[inline]
    pub fn warm_outbound(&self, dst: IpAddr, stage: Warm) {
        match stage {
            Warm::Index => self.out_index.prefetch(dst),
            Warm::Sa => {
                if let Some(sa) = self.out_candidate(dst).map(|i| &self.outbound[i]) {
                    sa.prefetch_hot();
                }
            }
            Warm::Parts => {
                if let Some(sa) = self.out_candidate(dst).map(|i| &self.outbound[i]) {
                    sa.prefetch();
                }
            }
        }
    }

    #[inline]
    fn out_candidate(&self, dst: IpAddr) -> Option<usize> {
        self.out_index.candidate(dst, |i| self.out_order[i])
    }

    /// One pass of a batch's prefetching for an inbound packet with `spi` (see [`Warm`]).
    #[inline]
    pub fn warm_inbound(&self, spi: u32, stage: Warm) {
        match stage {
            Warm::Index => self.by_spi.prefetch(&spi),
            Warm::Sa => {
                if let Some(i) = self.by_spi.get(&spi) {
                    self.inbound[i as usize].prefetch_hot();
                }
            }
            Warm::Parts => {
                if let Some(i) = self.by_spi.get(&spi) {
                    self.inbound[i as usize].prefetch();
                }
            }
        }
    }

    /// Index of the first outbound SA whose selectors carry a packet from `src` to `dst`.
    /// Tunnel-mode SAs match on the inner addresses; transport-mode SAs also need the packet's
    /// addresses to be the SA's own endpoints.
    ///
    /// Among outbound SAs that match, the one installed first wins (`sa.update` re-installs,
    /// so it moves an SA last). The control plane switches traffic to a new outbound SA by
    /// removing the old one: the responder of a rekey installs the new pair before it answers
    /// and keeps sending on the old SA until the initiator's Delete, so the initiator has the
    /// new inbound SA before the first packet on it arrives (make-before-break); esprit-ike
    /// removes every other outbound SA of a child (rekeyed, replaced after INITIAL_CONTACT, or
    /// left by an earlier run) when it switches, so a stale SA never keeps the traffic.
    ///
    /// The candidates come from an index by remote selectors, so the cost does not grow with
    /// the number of SAs (one hash probe per distinct remote prefix length).
    ///
    /// The index is the SA's slot in [`outbound`](Self::outbound), valid until the next
    /// change of the outbound SAs (removing one moves the last into its slot).
    #[inline]
    pub fn outbound_index(&self, src: IpAddr, dst: IpAddr) -> Option<usize> {
        self.out_index.first(
            dst,
            |i| self.out_order[i],
            |i| {
                let c = &self.outbound[i].cfg;
                !self.route_peers.contains(&c.remote)
                    && c.local_ts.matches(src)
                    && c.remote_ts.matches(dst)
                    && (c.mode == Mode::Tunnel || (c.local == src && c.remote == dst))
            },
        )
    }

    /// Like [`outbound_index`](Self::outbound_index), remembered per (source, destination) in
    /// a direct-mapped cache that SA changes flush.
    #[inline]
    pub fn outbound_lookup(&mut self, src: IpAddr, dst: IpAddr) -> Option<usize> {
        if self.flow.is_empty() {
            return self.outbound_index(src, dst);
        }
        let slot = flow_slot(src, dst);
        let s = self.flow[slot];
        if s.idx != NO_SA - 1 && s.src == src && s.dst == dst {
            return (s.idx != NO_SA).then_some(s.idx as usize);
        }
        let idx = self.outbound_index(src, dst);
        self.flow[slot] = FlowSlot {
            src,
            dst,
            idx: idx.map_or(NO_SA, |i| i as u32),
        };
        idx
    }

    /// Declares the peers reached by tunnel routes: their outbound SAs are then used only by
    /// routes, never by the selector lookup.
    pub fn set_route_peers(&mut self, peers: Vec<IpAddr>) {
        let peers: FxHashSet<IpAddr> = peers.into_iter().collect();
        if peers != self.route_peers {
            self.route_peers = peers;
            self.index_selectors();
        }
        self.flush_flows();
    }

    /// Replaces the trap policies.
    pub fn set_traps(&mut self, traps: Vec<crate::sa::spd::Trap>) {
        self.traps = traps;
    }

    /// If a trap policy covers a packet no SA carries, raises an acquire event (rate-limited)
    /// and counts the packet's drop as `acquire`.
    pub fn trap(&mut self, src: IpAddr, dst: IpAddr) -> Option<crate::counters::Counted> {
        let t = self.traps.iter_mut().find(|t| t.matches(src, dst))?;
        if t.due() {
            self.events.push(SaEvent {
                kind: crate::sa::SaEventKind::Acquire,
                spi: 0,
                direction: Direction::Out,
                local: src,
                remote: dst,
                policy: Some(t.id),
            });
        }
        Some(self.drops.count(crate::counters::DropReason::Acquire))
    }

    /// Index of the first outbound SA towards `peer` (its remote address): the SA a
    /// route-based tunnel uses.
    #[inline]
    pub fn outbound_to(&self, peer: IpAddr) -> Option<usize> {
        self.by_peer.get(&peer).map(|&i| i as usize)
    }

    /// The outbound SA at `index`.
    pub fn outbound_mut(&mut self, index: usize) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(index)
    }

    /// Every inbound SA.
    pub fn inbound(&self) -> impl Iterator<Item = &InboundSa> {
        self.inbound.iter().chain(self.inbound_overflow.iter())
    }

    /// Every outbound SA, in slots (not in installation order once SAs were removed).
    pub fn outbound(&self) -> &[OutboundSa] {
        &self.outbound
    }

    /// Number of SAs in both directions.
    pub fn len(&self) -> usize {
        self.inbound.len() + self.inbound_overflow.len() + self.outbound.len()
    }

    /// True if there is no SA.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends `x` to a table, asking for huge pages when its buffer grew.
fn push_advised<T>(v: &mut Vec<T>, x: T) {
    let cap = v.capacity();
    v.push(x);
    if v.capacity() != cap {
        crate::sa::huge::advise(v);
    }
}

/// The flow-cache slot of a (source, destination) pair.
#[inline]
fn flow_slot(src: IpAddr, dst: IpAddr) -> usize {
    let fold = |a: IpAddr| -> u64 {
        match a {
            IpAddr::V4(v) => u64::from(u32::from(v)),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64)
            }
        }
    };
    // Fibonacci hashing: the golden-ratio multiplier spreads consecutive keys over the top bits.
    let h = (fold(src).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ fold(dst))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 56) as usize % FLOW_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_sa(spi: u32) -> SaConfig {
        let text = format!(
            "[[sa]]\nspi = {spi}\ndirection = \"out\"\nsuite = \"aes128gcm16\"\n\
             key = \"000102030405060708090a0b0c0d0e0f10111213\"\nlocal = \"10.200.0.1\"\n\
             remote = \"10.200.0.2\"\nlocal_ts = [\"10.201.1.0/24\"]\n\
             remote_ts = [\"10.201.2.0/24\"]\n"
        );
        crate::sa::file::parse(&text, "test").unwrap().remove(0)
    }

    fn out_sa_to(spi: u32, peer: u8, remote_ts: &str) -> SaConfig {
        let text = format!(
            "[[sa]]\nspi = {spi}\ndirection = \"out\"\nsuite = \"aes128gcm16\"\n\
             key = \"000102030405060708090a0b0c0d0e0f10111213\"\nlocal = \"10.200.0.1\"\n\
             remote = \"10.200.0.{peer}\"\nlocal_ts = [\"10.201.1.0/24\"]\n\
             remote_ts = [\"{remote_ts}\"]\n"
        );
        crate::sa::file::parse(&text, "test").unwrap().remove(0)
    }

    proptest::proptest! {
        /// Outbound SAs installed and removed in any order (each removal moves the last SA
        /// into the freed slot): the lookup by selectors and the lookup by peer answer what a
        /// scan of the SAs in installation order answers (the first installed that matches).
        #[test]
        fn outbound_lookups_match_a_scan_in_installation_order(
            ops in proptest::collection::vec((0u8..3, 0usize..4, 2u8..4, 0usize..64), 1..40),
        ) {
            const REMOTE: [&str; 4] = ["10.201.2.0/24", "10.201.0.0/16", "10.201.2.128/25", "0.0.0.0/0"];
            let mut db = SaDb::new(Backend::default());
            // (SPI, peer, remote selector) in installation order.
            let mut model: Vec<(u32, u8, usize)> = Vec::new();
            let mut next_spi = 1u32;
            for (kind, ts, peer, pick) in ops {
                if kind < 2 || model.is_empty() {
                    db.insert(out_sa_to(next_spi, peer, REMOTE[ts])).unwrap();
                    model.push((next_spi, peer, ts));
                    next_spi += 1;
                } else {
                    let (spi, _, _) = model.remove(pick % model.len());
                    proptest::prop_assert_eq!(db.remove(spi, Direction::Out, None), 1);
                }
                proptest::prop_assert_eq!(db.outbound().len(), model.len());
                let src: IpAddr = "10.201.1.7".parse().unwrap();
                for dst in ["10.201.2.9", "10.201.2.200", "10.201.3.1", "8.8.8.8"] {
                    let dst: IpAddr = dst.parse().unwrap();
                    let want = model.iter().find(|(_, _, ts)| {
                        REMOTE[*ts].parse::<crate::sa::Prefix>().unwrap().contains(dst)
                    }).map(|m| m.0);
                    let got = db.outbound_lookup(src, dst).map(|i| db.outbound()[i].cfg.spi);
                    proptest::prop_assert_eq!(got, want);
                }
                for peer in 2u8..4 {
                    let addr = IpAddr::from([10, 200, 0, peer]);
                    let want = model.iter().find(|m| m.1 == peer).map(|m| m.0);
                    let got = db.outbound_to(addr).map(|i| db.outbound()[i].cfg.spi);
                    proptest::prop_assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn the_first_installed_outbound_sa_wins_until_it_is_removed() {
        let mut db = SaDb::new(Backend::default());
        let (src, dst) = ("10.201.1.2".parse().unwrap(), "10.201.2.2".parse().unwrap());
        let spi_of = |db: &mut SaDb| {
            let i = db.outbound_lookup(src, dst).unwrap();
            db.outbound_mut(i).unwrap().cfg.spi
        };
        db.insert(out_sa(1)).unwrap();
        db.insert(out_sa(2)).unwrap();
        assert_eq!(spi_of(&mut db), 1, "the old SA keeps the traffic");
        assert_eq!(db.remove(1, Direction::Out, None), 1);
        assert_eq!(spi_of(&mut db), 2, "removing it switches to the new one");
        db.insert(out_sa(3)).unwrap();
        db.replace(out_sa(2)).unwrap();
        assert_eq!(spi_of(&mut db), 3, "a replaced SA goes last");
    }
}
