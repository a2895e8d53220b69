//! The thread that follows the kernel's main table: the routes through tunnel interfaces into
//! the workers' route table, the routes through the LAN and WAN interfaces into their next hops.
//!
//! Incremental (decision 0025): the table is read whole (an RTM_GETROUTE dump) at start, after
//! lost notifications (ENOBUFS) and at a slow resync whose period grows with the time a read
//! takes; in between, each route notification is applied to [`KernelState`] and only the
//! prefixes it touched are passed on. The router changes its master table in place and the
//! workers get a copy at most every few copy-times during a burst.
//!
//! An interface set down loses its routes in the kernel without a route notification (IPv4
//! flushes them, a multipath route marks that hop dead): the link notification drops every
//! hop through it at once, and its coming back up (which revives the multipath hops, again
//! silently) has the table read whole.

use super::router::Router;
use super::tunnels::TunnelStats;
use crate::kernel::route::{self, KernelRoute, LinkMsg, Notice, RouteMonitor, RouteMsg};
use crate::sa::Prefix;
use crate::worker::handoff::Waker;
use crate::worker::Port;
use rustc_hash::FxHashSet;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The routes of one side's interface, as the workers' next hops take them.
pub type SideRoutes = Vec<(Prefix, Option<IpAddr>, u32)>;

/// One next hop of a kernel route: (prefix, metric, interface, router).
type Hop = (Prefix, u32, u32, Option<IpAddr>);

/// The largest [`Hop`] of (prefix, metric).
fn last_hop(p: Prefix, metric: u32) -> Hop {
    (
        p,
        metric,
        u32::MAX,
        Some(IpAddr::V6(Ipv6Addr::from(u128::MAX))),
    )
}

fn hops_of(set: &BTreeSet<Hop>, p: Prefix) -> impl Iterator<Item = &Hop> {
    set.range((
        Bound::Included((p, 0, 0, None)),
        Bound::Included(last_hop(p, u32::MAX)),
    ))
}

/// The kernel's routes through the interfaces esprit cares about, kept up to date from
/// notifications, and what changed since it was last asked.
#[derive(Debug, Default)]
pub struct KernelState {
    /// (ifindex, peer) of the tunnel interfaces.
    tunnels: Vec<(u32, IpAddr)>,
    /// ifindex of the LAN and WAN interfaces.
    sides: [u32; 2],
    tunnel_hops: BTreeSet<Hop>,
    side_hops: BTreeSet<Hop>,
    /// Tunnel-route prefixes touched since [`KernelState::take_changes`].
    changed: FxHashSet<Prefix>,
    /// A LAN or WAN route changed since [`KernelState::take_sides_changed`].
    sides_changed: bool,
    /// The interfaces of `tunnels` and `sides` last seen administratively down.
    down: FxHashSet<u32>,
}

impl KernelState {
    /// An empty state for these tunnel interfaces (ifindex, peer) and LAN and WAN ifindexes.
    pub fn new(tunnels: &[(u32, IpAddr)], sides: [u32; 2]) -> Self {
        KernelState {
            tunnels: tunnels.to_vec(),
            sides,
            ..Default::default()
        }
    }

    fn is_tunnel(&self, oif: u32) -> bool {
        self.tunnels.iter().any(|t| t.0 == oif)
    }

    /// Where a hop of `prefix` through `oif` via `gw` is kept: tunnel (true), side (false),
    /// or nowhere. Side routes through a router of the other family are left out (esprit
    /// cannot send through them).
    fn kind(&self, prefix: Prefix, oif: u32, gw: Option<IpAddr>) -> Option<bool> {
        if self.is_tunnel(oif) {
            Some(true)
        } else if self.sides.contains(&oif)
            && gw.is_none_or(|g| g.is_ipv4() == prefix.addr().is_ipv4())
        {
            Some(false)
        } else {
            None
        }
    }

    fn touch(&mut self, tunnel: bool, p: Prefix) {
        if tunnel {
            self.changed.insert(p);
        } else {
            self.sides_changed = true;
        }
    }

    /// Applies one route message.
    pub fn apply(&mut self, m: &RouteMsg) {
        let v4 = m.prefix.addr().is_ipv4();
        if (m.delete && v4) || (!m.delete && m.replace) {
            // The message stands for every hop of (prefix, metric).
            for tunnel in [true, false] {
                let set = if tunnel {
                    &mut self.tunnel_hops
                } else {
                    &mut self.side_hops
                };
                let gone: Vec<Hop> = set
                    .range((m.prefix, m.metric, 0, None)..=last_hop(m.prefix, m.metric))
                    .copied()
                    .collect();
                for h in &gone {
                    set.remove(h);
                }
                if !gone.is_empty() {
                    self.touch(tunnel, m.prefix);
                }
            }
        }
        for &(oif, gw) in &m.hops {
            let Some(tunnel) = self.kind(m.prefix, oif, gw) else {
                continue;
            };
            let set = if tunnel {
                &mut self.tunnel_hops
            } else {
                &mut self.side_hops
            };
            let hop = (m.prefix, m.metric, oif, gw);
            let changed = if m.delete {
                set.remove(&hop)
            } else {
                set.insert(hop)
            };
            if changed {
                self.touch(tunnel, m.prefix);
            }
        }
    }

    /// Applies one link message. Down (or deleted): every hop through the interface goes, as
    /// the kernel stops using them. Returns true when a watched interface came back up: the
    /// kernel revived its multipath hops without a word, so the table must be read again.
    pub fn link(&mut self, l: LinkMsg) -> bool {
        if !self.is_tunnel(l.ifindex) && !self.sides.contains(&l.ifindex) {
            return false;
        }
        if l.up {
            return self.down.remove(&l.ifindex);
        }
        if self.down.insert(l.ifindex) {
            for tunnel in [true, false] {
                let set = if tunnel {
                    &mut self.tunnel_hops
                } else {
                    &mut self.side_hops
                };
                let gone: Vec<Hop> = set.iter().filter(|h| h.2 == l.ifindex).copied().collect();
                for h in &gone {
                    set.remove(h);
                }
                for h in &gone {
                    self.touch(tunnel, h.0);
                }
            }
        }
        false
    }

    /// Replaces everything with a dump of the main table, noting what differs.
    pub fn replace_all(&mut self, all: &[KernelRoute]) {
        let (mut tunnel, mut side) = (BTreeSet::new(), BTreeSet::new());
        for r in all {
            match self.kind(r.prefix, r.oif, r.gateway) {
                Some(true) => tunnel.insert((r.prefix, r.metric, r.oif, r.gateway)),
                Some(false) => side.insert((r.prefix, r.metric, r.oif, r.gateway)),
                None => false,
            };
        }
        let diff: Vec<Prefix> = tunnel
            .symmetric_difference(&self.tunnel_hops)
            .map(|h| h.0)
            .collect();
        self.changed.extend(diff);
        self.sides_changed |= side != self.side_hops;
        self.tunnel_hops = tunnel;
        self.side_hops = side;
    }

    /// The peers of the best (lowest-metric) hops of `p` through tunnel interfaces: several
    /// make an equal-cost route. `None`: no route through a tunnel interface.
    pub fn best(&self, p: Prefix) -> Option<Vec<IpAddr>> {
        let mut it = hops_of(&self.tunnel_hops, p).peekable();
        let metric = it.peek()?.1;
        let mut peers: Vec<IpAddr> = it
            .take_while(|h| h.1 == metric)
            .filter_map(|h| self.tunnels.iter().find(|t| t.0 == h.2).map(|t| t.1))
            .collect();
        peers.sort();
        peers.dedup();
        (!peers.is_empty()).then_some(peers)
    }

    /// The tunnel-route prefixes touched since the last call, with their best peers now.
    pub fn take_changes(&mut self) -> Vec<(Prefix, Option<Vec<IpAddr>>)> {
        let changed = std::mem::take(&mut self.changed);
        changed.into_iter().map(|p| (p, self.best(p))).collect()
    }

    /// Whether a LAN or WAN route changed since the last call.
    pub fn take_sides_changed(&mut self) -> bool {
        std::mem::take(&mut self.sides_changed)
    }

    /// Every route through tunnel interfaces, as (prefix, peers) sorted by prefix.
    pub fn tunnel_routes(&self) -> Vec<(Prefix, Vec<IpAddr>)> {
        let mut v = Vec::new();
        let mut last = None;
        for h in &self.tunnel_hops {
            if last != Some(h.0) {
                last = Some(h.0);
                if let Some(peers) = self.best(h.0) {
                    v.push((h.0, peers));
                }
            }
        }
        v
    }

    /// The routes through interface `ifindex` of a side, as (prefix, router, metric).
    pub fn side_routes(&self, ifindex: u32) -> SideRoutes {
        self.side_hops
            .iter()
            .filter(|h| h.2 == ifindex)
            .map(|h| (h.0, h.3, h.1))
            .collect()
    }
}

/// Follows the kernel's main table (see the module doc): sends the LAN's and WAN's routes to
/// `sides` (the control thread keeps the next hops) and the routes through tunnel interfaces
/// to the workers through the router.
pub struct RouteFollower {
    /// (port, ifindex) of the LAN and WAN interfaces.
    pub sides: [(Port, u32); 2],
    /// (ifindex, peer) of the tunnel interfaces.
    pub tunnels: Vec<(u32, IpAddr)>,
    /// Most routes through tunnel interfaces taken.
    pub max_routes: usize,
    /// Counters.
    pub stats: Arc<TunnelStats>,
}

/// Shortest period of the full resync (and the period without notifications).
const RESYNC_MIN: Duration = Duration::from_secs(5);
/// Longest period of the full resync.
const RESYNC_MAX: Duration = Duration::from_secs(300);
/// The resync period is this many times what the last full read took (so a big table costs
/// at most a few percent of a core).
const RESYNC_FACTOR: u32 = 40;
/// Shortest time between two copies of the table for the workers.
const PUBLISH_MIN: Duration = Duration::from_millis(5);
/// During a burst the table is copied at most once per this many copy-times (a copy of a
/// full table takes tens of ms: the thread spends at most a fifth of its time copying); when
/// the burst goes quiet for [`HOLD`], at once (at most half of the time copying).
const PUBLISH_FACTOR: u32 = 4;
/// Time given to a burst of changes after a quiet time before the table is published (a
/// withdrawal of thousands of routes when a BGP session drops arrives within a few ms).
const HOLD: Duration = Duration::from_millis(20);
/// Notification datagrams read before the changes are passed on.
const DRAIN_BUDGET: usize = 4096;

impl RouteFollower {
    /// Runs until `stop` is set.
    pub fn run(
        self,
        router: &Router,
        sides: &SyncSender<(Port, SideRoutes)>,
        wake_control: &Waker,
        stop: &AtomicBool,
    ) {
        let mut monitor = RouteMonitor::open()
            .map_err(|e| tracing::warn!("no route notifications ({e}); routes read every 5 s"))
            .ok();
        let mut st = KernelState::new(&self.tunnels, [self.sides[0].1, self.sides[1].1]);
        let mut sides_pending = [false; 2];
        let (mut resync_at, mut publish_at) = (Instant::now(), Instant::now());
        let mut unpublished = false;
        // When the table last changed, and when the last copy ended and what it took.
        let (mut last_change, mut copied_at, mut copy_took) =
            (Instant::now(), Instant::now(), Duration::ZERO);
        let mut last_over = 0;
        let mut last_log = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut lost = false;
            if let Some(m) = monitor.as_mut() {
                let mut relinked = false;
                let d = m.drain(DRAIN_BUDGET, |n| match n {
                    Notice::Route(msg) => st.apply(&msg),
                    Notice::Link(l) => relinked |= st.link(l),
                });
                if relinked {
                    tracing::info!("a tunnel, LAN or WAN interface came back up: reading the kernel's routes again");
                    resync_at = Instant::now();
                }
                let s = &self.stats;
                s.route_messages.fetch_add(d.messages, Ordering::Relaxed);
                s.route_malformed.fetch_add(d.malformed, Ordering::Relaxed);
                if d.lost {
                    s.route_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("route notifications lost: reading the kernel's table again");
                    lost = true;
                }
            }
            if lost || Instant::now() >= resync_at {
                let t0 = Instant::now();
                match route::dump() {
                    Ok(all) => st.replace_all(&all),
                    Err(e) => tracing::warn!("reading the kernel's routes: {e}"),
                }
                self.stats.route_dumps.fetch_add(1, Ordering::Relaxed);
                let period = match monitor {
                    Some(_) => (t0.elapsed() * RESYNC_FACTOR).clamp(RESYNC_MIN, RESYNC_MAX),
                    None => RESYNC_MIN,
                };
                resync_at = Instant::now() + period;
                if router.kernel_routes().1 > 0 {
                    // Over the limit: choose again from everything, shortest prefixes first.
                    st.take_changes();
                    router.set_kernel_routes(st.tunnel_routes(), self.max_routes);
                    publish_at = Instant::now();
                }
            }
            if st.take_sides_changed() {
                sides_pending = [true; 2];
            }
            // When the control thread is behind (its channel full), sent again next round.
            for (k, &(port, ifindex)) in self.sides.iter().enumerate() {
                if sides_pending[k] && sides.try_send((port, st.side_routes(ifindex))).is_ok() {
                    wake_control.wake_if_sleeping();
                    sides_pending[k] = false;
                }
            }
            if !self.tunnels.is_empty() {
                let changes = st.take_changes();
                if !changes.is_empty() && router.apply_kernel_routes(changes, self.max_routes) > 0 {
                    if !unpublished {
                        // The first change after a quiet time: let the burst it starts
                        // gather for a moment, then publish at once.
                        publish_at = publish_at.max(Instant::now() + HOLD);
                    }
                    unpublished = true;
                    last_change = Instant::now();
                }
                let (n, over) = router.kernel_routes();
                self.stats.routes.store(n as u64, Ordering::Relaxed);
                self.stats
                    .routes_over_limit
                    .store(over as u64, Ordering::Relaxed);
                if over > 0 && over != last_over {
                    tracing::warn!(
                        "{over} routes through tunnel interfaces left out: more than routing.max_routes = {}",
                        self.max_routes
                    );
                }
                last_over = over;
                let now = Instant::now();
                // Due at the burst's pace, or as soon as it has gone quiet (but never more
                // than half of the time copying).
                let quiet = now.duration_since(last_change) >= HOLD && now >= copied_at + copy_took;
                if unpublished && (now >= publish_at || quiet) {
                    let took = router.publish_routes().unwrap_or_default();
                    unpublished = false;
                    (copied_at, copy_took) = (Instant::now(), took);
                    publish_at = now + (took * PUBLISH_FACTOR).max(PUBLISH_MIN);
                    if now.duration_since(last_log) >= Duration::from_secs(1) {
                        tracing::info!(
                            "routes through tunnel interfaces: {n} (table copied for the workers in {} ms)",
                            took.as_millis()
                        );
                        last_log = now;
                    }
                }
            }
            let now = Instant::now();
            let mut wait = resync_at
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if unpublished {
                wait = wait
                    .min(publish_at.saturating_duration_since(now))
                    .min((last_change + HOLD).saturating_duration_since(now));
            }
            match &monitor {
                Some(m) => m.wait(wait.max(Duration::from_millis(1))),
                None => std::thread::sleep(wait),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(prefix: &str, oif: u32, metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: prefix.parse().unwrap(),
            gateway: None,
            oif,
            metric,
        }
    }

    fn msg(delete: bool, replace: bool, prefix: &str, metric: u32, oifs: &[u32]) -> RouteMsg {
        RouteMsg {
            delete,
            replace,
            prefix: prefix.parse().unwrap(),
            metric,
            hops: oifs.iter().map(|&o| (o, None)).collect(),
        }
    }

    #[test]
    fn a_dump_gives_the_best_metric_and_ecmp_groups() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut st = KernelState::new(&[(10, a), (11, b)], [3, 4]);
        let mut dump = vec![
            r("10.1.0.0/24", 10, 0),
            r("10.1.0.0/24", 11, 0),
            r("10.2.0.0/24", 10, 100),
            r("10.2.0.0/24", 11, 50),
            r("10.3.0.0/24", 3, 0),
            r("fd00:1::/64", 11, 1024),
        ];
        dump.push(r("10.4.0.0/24", 9, 0));
        st.replace_all(&dump);
        assert_eq!(
            st.tunnel_routes(),
            vec![
                ("10.1.0.0/24".parse().unwrap(), vec![a, b]),
                ("10.2.0.0/24".parse().unwrap(), vec![b]),
                ("fd00:1::/64".parse().unwrap(), vec![b]),
            ]
        );
        assert_eq!(st.take_changes().len(), 3);
        assert!(st.take_sides_changed());
        assert_eq!(st.side_routes(3).len(), 1);
        // The same dump again (less the route through another interface) changes nothing.
        dump.pop();
        st.replace_all(&dump);
        assert!(st.take_changes().is_empty());
        assert!(!st.take_sides_changed());
    }

    #[test]
    fn notifications_add_replace_and_delete_hops() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut st = KernelState::new(&[(10, a), (11, b)], [3, 4]);
        let p4: Prefix = "10.1.0.0/24".parse().unwrap();
        let p6: Prefix = "2001:db8::/48".parse().unwrap();
        // IPv4: a multipath route in one message, then replaced by a single hop.
        st.apply(&msg(false, true, "10.1.0.0/24", 0, &[10, 11]));
        assert_eq!(st.take_changes(), vec![(p4, Some(vec![a, b]))]);
        st.apply(&msg(false, true, "10.1.0.0/24", 0, &[11]));
        assert_eq!(st.take_changes(), vec![(p4, Some(vec![b]))]);
        // A better metric wins; deleting it uncovers the worse one.
        st.apply(&msg(false, true, "10.1.0.0/24", 5, &[10]));
        st.apply(&msg(false, true, "10.1.0.0/24", 0, &[10]));
        assert_eq!(st.take_changes(), vec![(p4, Some(vec![a]))]);
        st.apply(&msg(true, true, "10.1.0.0/24", 0, &[10]));
        assert_eq!(st.take_changes(), vec![(p4, Some(vec![a]))]);
        st.apply(&msg(true, true, "10.1.0.0/24", 5, &[10]));
        assert_eq!(st.take_changes(), vec![(p4, None)]);
        // IPv6: an equal-cost route as one message per hop; deleting one hop keeps the other.
        st.apply(&msg(false, false, "2001:db8::/48", 1024, &[10]));
        st.apply(&msg(false, false, "2001:db8::/48", 1024, &[11]));
        assert_eq!(st.take_changes(), vec![(p6, Some(vec![a, b]))]);
        st.apply(&msg(true, false, "2001:db8::/48", 1024, &[10]));
        assert_eq!(st.take_changes(), vec![(p6, Some(vec![b]))]);
        // A replace of the IPv6 route takes all its hops at once.
        st.apply(&msg(false, true, "2001:db8::/48", 1024, &[10]));
        assert_eq!(st.take_changes(), vec![(p6, Some(vec![a]))]);
        // Routes through other interfaces are not kept.
        st.apply(&msg(false, true, "10.9.0.0/16", 0, &[99]));
        assert!(st.take_changes().is_empty());
        assert!(!st.take_sides_changed());
    }

    #[test]
    fn a_flood_keeps_the_shortest_prefixes_and_counts_the_rest() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let router = Router::new(Vec::new());
        let mut st = KernelState::new(&[(10, a)], [3, 4]);
        // Specifics first, within the limit, then an aggregate beyond it: refused...
        for i in 0..4u32 {
            st.apply(&msg(false, true, &format!("10.9.{i}.0/24"), 0, &[10]));
        }
        st.apply(&msg(false, true, "10.0.0.0/8", 0, &[10]));
        router.apply_kernel_routes(st.take_changes(), 4);
        assert_eq!(router.kernel_routes(), (4, 1));
        // ...until the resync chooses the shortest prefixes first.
        router.set_kernel_routes(st.tunnel_routes(), 4);
        assert_eq!(router.kernel_routes(), (4, 1));
        assert!(router
            .routes()
            .iter()
            .any(|r| r.prefix == "10.0.0.0/8".parse().unwrap()));
        // A withdrawal makes room for a prefix announced again.
        st.apply(&msg(true, true, "10.9.0.0/24", 0, &[10]));
        router.apply_kernel_routes(st.take_changes(), 4);
        assert_eq!(router.kernel_routes().0, 3);
    }

    #[test]
    fn a_link_set_down_drops_its_hops_and_its_return_asks_for_a_dump() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut st = KernelState::new(&[(10, a), (11, b)], [3, 4]);
        let p4: Prefix = "10.1.0.0/24".parse().unwrap();
        let p6: Prefix = "2001:db8::/48".parse().unwrap();
        st.apply(&msg(false, true, "10.1.0.0/24", 0, &[10, 11]));
        st.apply(&msg(false, true, "2001:db8::/48", 1024, &[10]));
        st.apply(&msg(false, true, "0.0.0.0/0", 0, &[4]));
        st.take_changes();
        assert!(st.take_sides_changed());
        let link = |ifindex, up| LinkMsg { ifindex, up };
        // Up messages of an interface never seen down (carrier changes) change nothing.
        assert!(!st.link(link(10, true)));
        assert!(st.take_changes().is_empty());
        // Tunnel 10 set down: the ECMP route keeps tunnel 11 only, the IPv6 route goes.
        assert!(!st.link(link(10, false)));
        let mut changes = st.take_changes();
        changes.sort();
        assert_eq!(changes, vec![(p4, Some(vec![b])), (p6, None)]);
        // Said again: nothing more.
        assert!(!st.link(link(10, false)));
        assert!(st.take_changes().is_empty());
        // Back up: the table must be read again (the kernel revives dead hops silently).
        assert!(st.link(link(10, true)));
        assert!(!st.link(link(10, true)));
        // The WAN set down: its routes go too; interfaces esprit does not use are ignored.
        assert!(!st.link(link(99, false)));
        assert!(!st.take_sides_changed());
        assert!(!st.link(link(4, false)));
        assert!(st.take_sides_changed());
        assert!(st.side_routes(4).is_empty());
    }
}
