//! The forwarding pipeline of one worker: LAN frames are routed into ESP and out of the WAN,
//! WAN frames are decrypted and routed out of the LAN. Sans-IO: frames in, verdicts out.

use super::fragment::{self, FragError, FramePool, NoFrames, MAX_PIECES};
use super::icmp::{build_error, IcmpError, IcmpLimiter};
use super::Neighbours;
use crate::esp::decap::decap;
use crate::esp::encap::inner_info;
use crate::esp::encap::LookupCache;
use crate::esp::{Counted, DropCounters, DropReason, Verdict};
use crate::frame::Frame;
use crate::sa::{Mode, Prefix, RouteAction, RouteTable, SaDb, Warm};
use crate::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, HEADER_LEN as ETH_LEN};
use crate::wire::peek::flow_hash_ip;
use crate::wire::{Ipv4Packet, Ipv6Packet};
use arrayvec::ArrayVec;
use std::net::IpAddr;
use std::sync::Arc;

/// SAs from which a batch's SAs are looked up and their keys prefetched before it is processed
/// ([`Pipeline::process_with`]): below this the tables stay in the cache and the extra pass
/// would only cost time.
pub const WARM_MIN_SAS: usize = 4096;

/// An interface of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Protected side.
    Lan,
    /// Unprotected side.
    Wan,
}

/// What to do with a processed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Transmit on this port (the frame holds a complete Ethernet frame).
    Tx(Port),
    /// Dropped and counted.
    Drop(DropReason),
    /// Waits for the link-layer address of this next hop before leaving by this port: the
    /// frame holds a complete Ethernet frame whose destination MAC is still zero (the worker
    /// queues it, see [`super::neigh_queue`]).
    Wait(Port, IpAddr),
    /// For the gateway's own stack: the frame holds a decrypted IP packet (no Ethernet
    /// header) to write to the tunnel interface with this index in [`Pipeline::tunnels`].
    Host(u16),
}

/// Why a frame does not leave now: a drop, already counted (by the pipeline in `drops`, or by
/// the ESP layer per SA or in the SA database), or a wait for the next hop.
enum Drop {
    Counted(Counted),
    /// Not a drop: the frame waits for its next hop (see [`Out::Wait`]).
    Wait(Port, IpAddr),
    /// Not a drop: the frame goes to the gateway's own stack (see [`Out::Host`]).
    Host(u16),
}

/// A tunnel interface as the pipeline sees it: which peer's SAs carry it and which inner
/// addresses are the gateway's own on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPort {
    /// The remote address of the tunnel's SAs.
    pub peer: IpAddr,
    /// The interface's addresses: decrypted packets from `peer` to one of these (or to an
    /// IPv6 link-local or any multicast address) go to the gateway's own stack.
    pub addrs: Vec<IpAddr>,
}

impl TunnelPort {
    /// Whether a packet from this tunnel to `dst` is for the gateway itself.
    #[inline]
    fn takes(&self, dst: IpAddr) -> bool {
        match dst {
            IpAddr::V4(a) => a.is_multicast() || self.addrs.contains(&dst),
            IpAddr::V6(a) => {
                a.is_multicast()
                    || (a.segments()[0] & 0xffc0) == 0xfe80
                    || self.addrs.contains(&dst)
            }
        }
    }
}

/// What the pipeline knows about one side.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Our MAC address on this interface.
    pub mac: [u8; 6],
    /// Prefixes reachable directly on the link (the next hop is the destination itself).
    pub onlink: Vec<Prefix>,
    /// Next hop for everything else of its family, if configured (a default route that wins
    /// over the kernel's default route).
    pub gateway: Option<IpAddr>,
    /// The kernel's routes through this interface, longest prefix first (see
    /// [`Side::set_routes`]): where what is neither on-link nor covered by a more specific
    /// route goes.
    pub routes: Vec<(Prefix, Option<IpAddr>)>,
    /// Next-hop link-layer addresses.
    pub neighbours: Neighbours,
    /// Link MTU (the WAN's bounds the tunnel MTU).
    pub mtu: usize,
    /// The gateway's own addresses on this side (the source of ICMP errors it sends).
    pub addrs: Vec<IpAddr>,
}

impl Side {
    /// Our address of `v6`'s family on this side, if any.
    pub fn addr(&self, v6: bool) -> Option<IpAddr> {
        self.addrs.iter().copied().find(|a| a.is_ipv6() == v6)
    }

    /// The next hop towards `dst`: the destination itself when it is on the link; otherwise the
    /// router of the longest kernel route that covers it, where the configured `gateway`
    /// counts as a default route of its family that wins over the kernel's own; with no route,
    /// the destination itself (the kernel's neighbour resolution then says whether it answers).
    #[inline]
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        if self.onlink.iter().any(|p| p.contains(dst)) {
            return dst;
        }
        let configured = self.gateway.filter(|g| g.is_ipv4() == dst.is_ipv4());
        for (p, via) in &self.routes {
            if p.is_empty() && configured.is_some() {
                break;
            }
            if p.contains(dst) {
                return via.unwrap_or(dst);
            }
        }
        configured.unwrap_or(dst)
    }

    /// Sets the kernel's routes through this side's interface: ordered longest prefix first,
    /// and among equal prefixes lowest metric first, so [`Side::next_hop`] takes the first
    /// that covers a destination.
    pub fn set_routes(&mut self, mut routes: Vec<(Prefix, Option<IpAddr>, u32)>) {
        routes.sort_by_key(|(p, _, metric)| (std::cmp::Reverse(p.len()), *metric));
        self.routes = routes.into_iter().map(|(p, via, _)| (p, via)).collect();
    }
}

/// The per-worker forwarding state: SAs, both sides, counters.
pub struct Pipeline {
    /// The worker's SAs.
    pub sadb: SaDb,
    /// Protected side.
    pub lan: Side,
    /// Unprotected side.
    pub wan: Side,
    /// Drops that belong to forwarding rather than to an SA.
    pub drops: DropCounters,
    /// Frames forwarded per direction: `[lan→wan, wan→lan]`.
    pub forwarded: [u64; 2],
    /// Clamp the MSS of TCP SYNs to what the tunnel carries.
    pub mss_clamp: bool,
    /// Rate limit of the ICMP errors this gateway sends.
    pub icmp: IcmpLimiter,
    /// ICMP errors sent (time exceeded, packet too big).
    pub icmp_sent: u64,
    /// TCP SYNs whose MSS was lowered.
    pub mss_clamped: u64,
    /// Routes for traffic no SA's selectors claim: route-based tunnels, bypass, drop. Shared
    /// by the workers (replaced whole, never changed in place).
    pub routes: Arc<RouteTable>,
    /// Tunnel interfaces, by index ([`Out::Host`]).
    pub tunnels: Vec<TunnelPort>,
    /// Decrypted packets handed to the gateway's own stack through a tunnel interface.
    pub to_host: u64,
    /// Packets from the gateway's own stack sent into a tunnel.
    pub from_host: u64,
    /// Packets forwarded in the clear by a bypass route.
    pub bypassed: u64,
    /// Complete TCP/UDP/ICMPv6 checksums that LAN hosts left to their NIC (on by default; off
    /// only to measure what the check costs).
    pub complete_checksums: bool,
    /// LAN packets whose TCP/UDP/ICMPv6 checksum held only the pseudo-header sum (a sender
    /// with checksum offload) and was completed here.
    pub checksums_completed: u64,
    /// IPv4 packets without DF cut into fragments because they did not fit the tunnel.
    pub fragmented: u64,
    /// Fragments those packets became (each its own ESP packet).
    pub fragments: u64,
    /// SAs from which batches are warmed ([`WARM_MIN_SAS`] by default; `usize::MAX` only to
    /// measure what warming gains).
    pub warm_min_sas: usize,
}

/// Decrements the TTL / hop limit of the IP packet in `pkt`; false if it would reach zero.
#[inline]
fn decrement_ttl(pkt: &mut [u8]) -> Result<(), DropReason> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let mut p = Ipv4Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
            let t = p.ttl();
            if t <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            p.set_ttl(t - 1);
            Ok(())
        }
        Some(6) => {
            let mut p = Ipv6Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
            let h = p.hop_limit();
            if h <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            p.set_hop_limit(h - 1);
            Ok(())
        }
        _ => Err(DropReason::Malformed),
    }
}

/// Destination address and EtherType of the IP packet in `pkt`.
#[inline]
fn dst_of(pkt: &[u8]) -> Option<(IpAddr, EtherType)> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => {
            let d: [u8; 4] = pkt[16..20].try_into().ok()?;
            Some((IpAddr::from(d), EtherType::IPV4))
        }
        Some(6) if pkt.len() >= 40 => {
            let d: [u8; 16] = pkt[24..40].try_into().ok()?;
            Some((IpAddr::from(d), EtherType::IPV6))
        }
        _ => None,
    }
}

/// Puts an Ethernet header for `side`'s next hop towards the packet's destination in front.
/// A next hop without a link-layer address gets a zero destination MAC and the frame waits for
/// it ([`Drop::Wait`]).
#[inline]
fn emit_l2<B: AsRef<[u8]> + AsMut<[u8]>>(
    side: &Side,
    port: Port,
    f: &mut Frame<B>,
    drops: &mut DropCounters,
) -> Result<(), Drop> {
    let Some((dst, ethertype)) = dst_of(f.data()) else {
        return Err(Drop::Counted(drops.count(DropReason::Malformed)));
    };
    let hop = side.next_hop(dst);
    let mac = side.neighbours.lookup(hop);
    if !f.push_front(ETH_LEN) {
        return Err(Drop::Counted(drops.count(DropReason::TooBig)));
    }
    EthernetRepr {
        dst: mac.unwrap_or_default(),
        src: side.mac,
        vlan_tci: None,
        ethertype,
    }
    .emit(f.data_mut());
    match mac {
        Some(_) => Ok(()),
        None => Err(Drop::Wait(port, hop)),
    }
}

/// Removes the Ethernet header of an IPv4/IPv6 frame.
#[inline]
fn strip_l2<B: AsRef<[u8]> + AsMut<[u8]>>(f: &mut Frame<B>) -> Result<(), DropReason> {
    let e = EthernetFrame::new_checked(f.data()).map_err(|_| DropReason::Malformed)?;
    if !matches!(e.ethertype(), EtherType::IPV4 | EtherType::IPV6) {
        return Err(DropReason::Malformed);
    }
    let hl = e.header_len();
    f.pull_front(hl);
    Ok(())
}

impl Pipeline {
    /// A pipeline over `sadb` between two sides.
    pub fn new(sadb: SaDb, lan: Side, wan: Side) -> Self {
        Pipeline {
            sadb,
            lan,
            wan,
            drops: DropCounters::default(),
            forwarded: [0; 2],
            mss_clamp: true,
            icmp: IcmpLimiter::new(100),
            icmp_sent: 0,
            mss_clamped: 0,
            routes: Arc::new(RouteTable::new()),
            tunnels: Vec::new(),
            to_host: 0,
            from_host: 0,
            bypassed: 0,
            complete_checksums: true,
            checksums_completed: 0,
            fragmented: 0,
            fragments: 0,
            warm_min_sas: WARM_MIN_SAS,
        }
    }

    /// Replaces the route table (and tells the SA database which peers are route-based).
    pub fn set_routes(&mut self, routes: Arc<RouteTable>) {
        self.sadb.set_route_peers(routes.peers());
        self.routes = routes;
    }

    /// Processes a batch received on `from`. `out[i]` says where `frames[i]` goes; frames
    /// marked `Tx` hold the complete Ethernet frame to send. Without a [`FramePool`], packets
    /// that would need fragmenting are dropped (`frag_no_frame`).
    pub fn process<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        from: Port,
        frames: &mut [Frame<B>],
        out: &mut [Out],
    ) {
        self.process_with(from, frames, out, &mut NoFrames);
    }

    /// [`Pipeline::process`], taking frames for the extra fragments of packets it has to
    /// fragment from `pool` and handing them back to it for transmission.
    pub fn process_with<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        from: Port,
        frames: &mut [Frame<B>],
        out: &mut [Out],
        pool: &mut P,
    ) {
        if self.sadb.len() >= self.warm_min_sas {
            self.warm(from, frames);
        }
        let mut cache = LookupCache::default();
        for (f, o) in frames.iter_mut().zip(out.iter_mut()) {
            let r = match from {
                Port::Lan => self.lan_to_wan(f, &mut cache, pool),
                Port::Wan => self.wan_to_lan(f),
            };
            *o = match r {
                Ok(port) => {
                    self.forwarded[(port == Port::Lan) as usize] += 1;
                    Out::Tx(port)
                }
                Err(Drop::Counted(c)) => Out::Drop(c.reason()),
                Err(Drop::Wait(port, hop)) => Out::Wait(port, hop),
                Err(Drop::Host(t)) => {
                    self.to_host += 1;
                    Out::Host(t)
                }
            };
        }
    }

    /// Processes packets the gateway's own stack sent into tunnel interface `tunnel`: each
    /// frame holds a bare IP packet, encrypted with the outbound SA towards the interface's
    /// peer whatever its destination (the kernel's routes chose the interface). `out[i]`
    /// says where `frames[i]` goes, as for [`Pipeline::process`].
    pub fn process_host<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        tunnel: u16,
        frames: &mut [Frame<B>],
        out: &mut [Out],
        pool: &mut P,
    ) {
        for (f, o) in frames.iter_mut().zip(out.iter_mut()) {
            *o = match self.host_into_tunnel(tunnel, f, pool) {
                Ok(port) => {
                    self.from_host += 1;
                    Out::Tx(port)
                }
                Err(Drop::Counted(c)) => Out::Drop(c.reason()),
                Err(Drop::Wait(port, hop)) => {
                    self.from_host += 1;
                    Out::Wait(port, hop)
                }
                Err(Drop::Host(t)) => Out::Host(t),
            };
        }
    }

    fn host_into_tunnel<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        tunnel: u16,
        f: &mut Frame<B>,
        pool: &mut P,
    ) -> Result<Port, Drop> {
        let Some(peer) = self.tunnels.get(usize::from(tunnel)).map(|t| t.peer) else {
            return Err(self.drop(DropReason::Malformed));
        };
        let info = inner_info(f.data()).map_err(|_| self.drop(DropReason::Malformed))?;
        let Some(idx) = self.sadb.outbound_to(peer) else {
            return Err(Drop::Counted(self.sadb.drops.count(DropReason::NoPolicy)));
        };
        // The interface's MTU keeps the stack's packets within the tunnel; one that is not
        // (an MTU set by hand) is dropped rather than answered with an ICMP error on the LAN.
        if info.len > self.sadb.outbound()[idx].max_inner_len(self.wan.mtu) && info.dont_frag() {
            return Err(self.drop(DropReason::TooBig));
        }
        self.seal(idx, f, &info, pool)
    }

    /// Prefetches the SA tables and key schedules a batch will need before it is processed:
    /// with many tunnels they are cold, and a lookup in them is a chain of dependent cache
    /// misses (index slot, SA, key schedule). The passes of [`Warm`] each go over the whole
    /// batch, starting the loads of one step for every frame before any frame needs them, so
    /// the misses of the batch's packets overlap. A wrong guess (a frame the pipeline then
    /// drops, a packet whose SA is not the index's first candidate) costs a few prefetches.
    #[inline]
    fn warm<B: AsRef<[u8]> + AsMut<[u8]>>(&self, from: Port, frames: &[Frame<B>]) {
        use crate::wire::peek;
        const CHUNK: usize = 64;
        const PASSES: [Warm; 3] = [Warm::Index, Warm::Sa, Warm::Parts];
        for chunk in frames.chunks(CHUNK) {
            match from {
                Port::Lan => {
                    let mut dst = [None; CHUNK];
                    for (k, f) in dst.iter_mut().zip(chunk) {
                        *k = peek::ip_addrs(f.data()).map(|(_, d)| d);
                    }
                    for pass in PASSES {
                        for &d in dst[..chunk.len()].iter().flatten() {
                            self.sadb.warm_outbound(d, pass);
                        }
                    }
                }
                Port::Wan => {
                    let mut spi = [None; CHUNK];
                    for (k, f) in spi.iter_mut().zip(chunk) {
                        *k = peek::esp_spi(f.data());
                    }
                    for pass in PASSES {
                        for &s in spi[..chunk.len()].iter().flatten() {
                            self.sadb.warm_inbound(s, pass);
                        }
                    }
                }
            }
        }
    }

    /// Answers the packet in `f` with an ICMP error from this side's address, sent back out of
    /// the LAN; the original is counted as dropped for `reason` either way.
    fn icmp_back<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        f: &mut Frame<B>,
        kind: IcmpError,
        reason: DropReason,
    ) -> Result<Port, Drop> {
        let dropped = Drop::Counted(self.drops.count(reason));
        let v6 = f.data().first().map(|b| b >> 4) == Some(6);
        let Some(from) = self.lan.addr(v6) else {
            return Err(dropped);
        };
        if !self.icmp.allow() || build_error(f, kind, from).is_err() {
            return Err(dropped);
        }
        // The frame is counted once, under the original reason, even if the error it now
        // holds cannot be sent.
        match emit_l2(&self.lan, Port::Lan, f, &mut DropCounters::default()) {
            Ok(()) => {
                self.icmp_sent += 1;
                Ok(Port::Lan)
            }
            Err(wait @ Drop::Wait(..)) => {
                self.icmp_sent += 1;
                Err(wait)
            }
            Err(Drop::Counted(_) | Drop::Host(_)) => Err(dropped),
        }
    }

    /// Answers a decrypted packet that expired here with ICMP time exceeded from this
    /// gateway's LAN address, encrypted back to its sender through the tunnel (if an SA covers
    /// that path); the original is counted as dropped for `reason` either way.
    fn icmp_through_tunnel<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        f: &mut Frame<B>,
        reason: DropReason,
    ) -> Result<Port, Drop> {
        let counted = self.drops.count(reason);
        let v6 = f.data().first().map(|b| b >> 4) == Some(6);
        let Some(from) = self.lan.addr(v6) else {
            return Err(Drop::Counted(counted));
        };
        // Only through a tunnel: not in the clear by a bypass route (the error quotes the
        // protected packet), and no second drop counted (no policy, acquire) for a packet
        // that was never received.
        let back = inner_info(f.data()).is_ok_and(|i| self.tunnel_to(from, i.src));
        if !back || !self.icmp.allow() || build_error(f, IcmpError::TimeExceeded, from).is_err() {
            return Err(Drop::Counted(counted));
        }
        let mut cache = LookupCache::default();
        match self.protect(f, &mut cache, &mut NoFrames) {
            Ok(p) => {
                self.icmp_sent += 1;
                Ok(p)
            }
            Err(Drop::Wait(p, hop)) => {
                self.icmp_sent += 1;
                Err(Drop::Wait(p, hop))
            }
            Err(_) => Err(Drop::Counted(counted)),
        }
    }

    /// Counts a drop the pipeline itself decides on.
    #[inline]
    fn drop(&mut self, reason: DropReason) -> Drop {
        Drop::Counted(self.drops.count(reason))
    }

    /// Whether an outbound SA carries packets from `src` to `dst`, by its selectors or by a
    /// tunnel route; counts nothing.
    fn tunnel_to(&mut self, src: IpAddr, dst: IpAddr) -> bool {
        if self.sadb.outbound_lookup(src, dst).is_some() {
            return true;
        }
        let sadb = &self.sadb;
        self.routes
            .lookup(dst)
            .and_then(|a| self.routes.pick(a, 0, |p| sadb.outbound_to(p).is_some()))
            .is_some_and(|p| sadb.outbound_to(p).is_some())
    }

    /// The outbound SA a route's action sends the bare IP packet `pkt` through (for an
    /// equal-cost group, the member its flow hash picks among those with an SA).
    #[inline]
    fn route_sa(&self, action: RouteAction, pkt: &[u8]) -> Option<usize> {
        let hash = match action {
            RouteAction::Ecmp(_) => flow_hash_ip(pkt),
            _ => 0,
        };
        let sadb = &self.sadb;
        self.routes
            .pick(action, hash, |p| sadb.outbound_to(p).is_some())
            .and_then(|p| sadb.outbound_to(p))
    }

    #[inline]
    fn lan_to_wan<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        f: &mut Frame<B>,
        cache: &mut LookupCache,
        pool: &mut P,
    ) -> Result<Port, Drop> {
        strip_l2(f).map_err(|r| self.drop(r))?;
        if let Err(r) = decrement_ttl(f.data_mut()) {
            return match r {
                DropReason::TtlExceeded => self.icmp_back(f, IcmpError::TimeExceeded, r),
                r => Err(self.drop(r)),
            };
        }
        self.protect(f, cache, pool)
    }

    /// Sends the plaintext IP packet in `f` (TTL already handled) into its tunnel, in the
    /// clear by a bypass route, or drops it: SA lookup, trap, routes, tunnel MTU, MSS clamping,
    /// ESP and the WAN's Ethernet header. Checksums a sender left to its NIC are completed
    /// first; IPv4 packets without DF that do not fit are fragmented with frames from `pool`.
    #[inline]
    fn protect<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        f: &mut Frame<B>,
        cache: &mut LookupCache,
        pool: &mut P,
    ) -> Result<Port, Drop> {
        let info = inner_info(f.data()).map_err(|_| self.drop(DropReason::Malformed))?;
        // Before anything reads or patches the transport checksum (MSS clamping updates it
        // incrementally, which would carry a partial sum along), and in both ESP modes and
        // bypass alike: AF_XDP transmits without offloads.
        if self.complete_checksums && super::offload::complete(f.data_mut()) {
            self.checksums_completed += 1;
        }
        let idx = match cache.get(info.src, info.dst) {
            Some(idx) => idx,
            None => {
                let idx = self.sadb.outbound_lookup(info.src, info.dst);
                cache.set(info.src, info.dst, idx);
                idx
            }
        };
        // No SA's selectors claim the packet: the route table decides (route-based tunnel,
        // bypass in the clear, or drop).
        let idx = match idx {
            Some(i) => i,
            None => {
                if let Some(acquire) = self.sadb.trap(info.src, info.dst) {
                    return Err(Drop::Counted(acquire));
                }
                match self.routes.lookup(info.dst) {
                    Some(a @ (RouteAction::Tunnel(_) | RouteAction::Ecmp(_))) => {
                        match self.route_sa(a, f.data()) {
                            Some(i) => i,
                            None => {
                                return Err(Drop::Counted(
                                    self.sadb.drops.count(DropReason::NoPolicy),
                                ));
                            }
                        }
                    }
                    Some(RouteAction::Bypass) => {
                        if info.len > self.wan.mtu {
                            // As for the tunnel, with the WAN's MTU: DF (and IPv6) learn it, the
                            // rest is fragmented.
                            if info.dont_frag() {
                                let mtu = u16::try_from(self.wan.mtu).unwrap_or(u16::MAX);
                                return self.icmp_back(
                                    f,
                                    IcmpError::TooBig { mtu },
                                    DropReason::TooBig,
                                );
                            }
                            let n = self.fragment_out(None, f, self.wan.mtu, pool)?;
                            self.bypassed += n;
                            return Ok(Port::Wan);
                        }
                        let r = emit_l2(&self.wan, Port::Wan, f, &mut self.drops);
                        if matches!(r, Ok(()) | Err(Drop::Wait(..))) {
                            self.bypassed += 1;
                        }
                        r?;
                        return Ok(Port::Wan);
                    }
                    Some(RouteAction::Drop) | None => {
                        return Err(Drop::Counted(self.sadb.drops.count(DropReason::NoPolicy)));
                    }
                }
            }
        };
        self.seal(idx, f, &info, pool)
    }

    /// Sends the plaintext IP packet in `f` through the outbound SA at `idx`: tunnel MTU
    /// (ICMP errors or fragments), MSS clamping, ESP and the WAN's Ethernet header.
    #[inline]
    fn seal<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        idx: usize,
        f: &mut Frame<B>,
        info: &crate::esp::encap::InnerInfo,
        pool: &mut P,
    ) -> Result<Port, Drop> {
        let max = self.sadb.outbound()[idx].max_inner_len(self.wan.mtu);
        if info.len > max {
            // DF set (always for IPv6): tell the sender the tunnel MTU. Otherwise cut the
            // packet into fragments that fit (tunnel mode; a transport-mode packet cannot be
            // fragmented before ESP, which carries its transport payload).
            if info.dont_frag() {
                let mtu = u16::try_from(max).unwrap_or(u16::MAX);
                return self.icmp_back(f, IcmpError::TooBig { mtu }, DropReason::TooBig);
            }
            if self.sadb.outbound()[idx].cfg.mode != Mode::Tunnel {
                return Err(self.drop(DropReason::TooBig));
            }
            self.clamp_mss(f, info, max);
            return self
                .fragment_out(Some(idx), f, max, pool)
                .map(|_| Port::Wan);
        }
        self.clamp_mss(f, info, max);
        match self.sadb.encrypt_at(idx, f, info) {
            Verdict::Pass => {}
            Verdict::Drop(c) => return Err(Drop::Counted(c)),
            _ => return Err(self.drop(DropReason::Malformed)),
        }
        emit_l2(&self.wan, Port::Wan, f, &mut self.drops)?;
        Ok(Port::Wan)
    }

    /// Lowers the MSS of a TCP SYN to what a tunnel taking `max`-byte inner packets carries.
    #[inline]
    fn clamp_mss<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        f: &mut Frame<B>,
        info: &crate::esp::encap::InnerInfo,
        max: usize,
    ) {
        if self.mss_clamp {
            let overhead = if info.is_v6() { 60 } else { 40 };
            if super::mss::clamp(
                f.data_mut(),
                u16::try_from(max.saturating_sub(overhead)).unwrap_or(u16::MAX),
            ) {
                self.mss_clamped += 1;
            }
        }
    }

    /// Cuts the IPv4 packet in `f` into fragments of at most `max` bytes, encrypts each with
    /// the outbound SA at `idx` (or none: bypass) and sends them out of the WAN: the first in
    /// `f` (the caller transmits it), the others in frames from `pool`, handed back to it to
    /// send, or to hold while the WAN's next hop resolves. Without enough frames nothing is
    /// sent (`frag_no_frame`). Returns the number of fragments on their way, or
    /// [`Drop::Wait`] when the first one waits for the next hop (the others wait with it).
    #[cold]
    fn fragment_out<B: AsRef<[u8]> + AsMut<[u8]>, P: FramePool<B>>(
        &mut self,
        idx: Option<usize>,
        f: &mut Frame<B>,
        max: usize,
        pool: &mut P,
    ) -> Result<u64, Drop> {
        let plan = fragment::plan(f.data(), max).map_err(|e| {
            self.drop(match e {
                FragError::Malformed => DropReason::Malformed,
                FragError::Limit => DropReason::FragLimit,
            })
        })?;
        // Write the later pieces first: the first one is cut from the packet in place.
        let mut rest: ArrayVec<Frame<B>, MAX_PIECES> = ArrayVec::new();
        for k in 1..plan.count {
            let written = pool.take().and_then(|mut g| {
                match fragment::write_piece(f.data(), &plan, k, g.data_mut()) {
                    Some(n) if g.set_len(n) => Some(g),
                    _ => {
                        pool.give_back(g);
                        None
                    }
                }
            });
            match written {
                Some(g) => rest.push(g),
                None => {
                    for g in rest.drain(..) {
                        pool.give_back(g);
                    }
                    return Err(self.drop(DropReason::FragNoFrame));
                }
            }
        }
        let n = fragment::cut_first(f.data_mut(), &plan);
        f.set_len(n);
        // A first piece waiting for the WAN's next hop is not a failure: the others wait too.
        let first = self.seal_piece(idx, f);
        if let Err(d @ Drop::Counted(_)) = first {
            for g in rest.drain(..) {
                pool.give_back(g);
            }
            return Err(d);
        }
        self.fragmented += 1;
        self.fragments += 1;
        let mut sent = 1;
        for mut g in rest.drain(..) {
            match self.seal_piece(idx, &mut g) {
                Ok(()) => {
                    self.fragments += 1;
                    self.forwarded[0] += 1;
                    sent += 1;
                    pool.send(g, Port::Wan);
                }
                Err(Drop::Wait(port, hop)) => {
                    self.fragments += 1;
                    sent += 1;
                    pool.wait(g, port, hop);
                }
                // Counted where it was dropped (a fragment never goes to the host).
                Err(Drop::Counted(_) | Drop::Host(_)) => pool.give_back(g),
            }
        }
        first.map(|()| sent)
    }

    /// Encrypts one fragment with the outbound SA at `idx` (none: bypass) and puts the WAN's
    /// Ethernet header in front.
    fn seal_piece<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        idx: Option<usize>,
        f: &mut Frame<B>,
    ) -> Result<(), Drop> {
        if let Some(idx) = idx {
            let info = inner_info(f.data()).map_err(|_| self.drop(DropReason::Malformed))?;
            match self.sadb.encrypt_at(idx, f, &info) {
                Verdict::Pass => {}
                Verdict::Drop(c) => return Err(Drop::Counted(c)),
                _ => return Err(self.drop(DropReason::Malformed)),
            }
        }
        emit_l2(&self.wan, Port::Wan, f, &mut self.drops)
    }

    /// The tunnel interface of `peer`, if the decrypted packet `pkt` is for the gateway's own
    /// stack on it.
    #[inline]
    fn host_tunnel(&self, peer: IpAddr, pkt: &[u8]) -> Option<u16> {
        let (dst, _) = dst_of(pkt)?;
        let i = self
            .tunnels
            .iter()
            .position(|t| t.peer == peer && t.takes(dst))?;
        u16::try_from(i).ok()
    }

    #[inline]
    fn wan_to_lan<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, f: &mut Frame<B>) -> Result<Port, Drop> {
        strip_l2(f).map_err(|r| self.drop(r))?;
        match decap(&mut self.sadb, f) {
            Ok(o) => {
                if !self.tunnels.is_empty() {
                    if let Some(t) = self.host_tunnel(o.peer, f.data()) {
                        return Err(Drop::Host(t));
                    }
                }
            }
            // IKE, keepalives and non-ESP should never have been redirected here; the XDP
            // classifier leaves them to the kernel.
            Err(Verdict::Drop(c)) => return Err(Drop::Counted(c)),
            Err(_) => return Err(self.drop(DropReason::Malformed)),
        }
        if let Err(r) = decrement_ttl(f.data_mut()) {
            return match r {
                // The packet expired at this gateway after the tunnel: its sender is on the
                // far side, so the ICMP time exceeded goes back through the tunnel.
                DropReason::TtlExceeded => self.icmp_through_tunnel(f, r),
                r => Err(self.drop(r)),
            };
        }
        // Only SYNs are clamped: the outbound SA lookup (cold memory with many tunnels) is
        // skipped for every other packet.
        if self.mss_clamp && super::mss::is_syn(f.data()) {
            // The reply path uses the outbound SA towards the sender: clamp to its tunnel MTU.
            if let Ok(info) = inner_info(f.data()) {
                if let Some(idx) = self.sadb.outbound_lookup(info.dst, info.src) {
                    let max = self.sadb.outbound()[idx].max_inner_len(self.wan.mtu);
                    let overhead = if info.is_v6() { 60 } else { 40 };
                    if super::mss::clamp(
                        f.data_mut(),
                        u16::try_from(max.saturating_sub(overhead)).unwrap_or(u16::MAX),
                    ) {
                        self.mss_clamped += 1;
                    }
                }
            }
        }
        emit_l2(&self.lan, Port::Lan, f, &mut self.drops)?;
        Ok(Port::Lan)
    }
}

#[cfg(test)]
mod next_hop_tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn on_link_then_longest_route_then_the_configured_default() {
        let mut s = Side {
            onlink: vec![p("10.200.1.0/24")],
            ..Side::default()
        };
        s.set_routes(vec![
            (p("0.0.0.0/0"), Some(ip("10.200.1.254")), 100),
            (p("10.9.0.0/16"), Some(ip("10.200.1.9")), 0),
            (p("0.0.0.0/0"), Some(ip("10.200.1.253")), 50),
            (p("::/0"), Some(ip("fd00::1")), 0),
        ]);
        assert_eq!(s.next_hop(ip("10.200.1.7")), ip("10.200.1.7"));
        assert_eq!(s.next_hop(ip("10.9.3.3")), ip("10.200.1.9"));
        // Among default routes the lowest metric wins.
        assert_eq!(s.next_hop(ip("192.0.2.1")), ip("10.200.1.253"));
        assert_eq!(s.next_hop(ip("2001:db8::1")), ip("fd00::1"));
        // A configured gateway beats the kernel's default route of its family only.
        s.gateway = Some(ip("10.200.1.1"));
        assert_eq!(s.next_hop(ip("192.0.2.1")), ip("10.200.1.1"));
        assert_eq!(s.next_hop(ip("10.9.3.3")), ip("10.200.1.9"));
        assert_eq!(s.next_hop(ip("2001:db8::1")), ip("fd00::1"));
        // No route at all: the destination itself (resolution then says if it answers).
        s.set_routes(Vec::new());
        s.gateway = None;
        assert_eq!(s.next_hop(ip("192.0.2.1")), ip("192.0.2.1"));
        // A gateway of the other family is not used.
        s.gateway = Some(ip("10.200.1.1"));
        assert_eq!(s.next_hop(ip("2001:db8::1")), ip("2001:db8::1"));
    }
}
