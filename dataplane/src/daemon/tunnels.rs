//! Tunnel interfaces at run time: the thread that moves the gateway's own packets between the
//! TUN devices and the workers and switches each device's carrier with its SAs, and the thread
//! that follows the kernel's routes (through tunnel interfaces into the workers' route table,
//! through the LAN and WAN interfaces into their next hops).

use super::config::{TunnelConfig, TUNNEL_OVERHEAD};
use super::router::Router;
use crate::kernel::route::{self, KernelRoute, RouteMonitor};
use crate::kernel::tun::TunDevice;
use crate::sa::Prefix;
use crate::worker::handoff::{self, Waker, SLOT};
use crate::worker::host::{HostLink, TunnelStatus};
use crate::worker::pipeline::TunnelPort;
use crate::worker::Port;
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots in each ring between a worker and the tunnel-interface thread.
const HOST_SLOTS: usize = 1024;
/// Packets read from one interface per round, so one busy interface does not starve the rest.
const READ_BUDGET: usize = 256;
/// How often the carriers are checked against the workers' SAs at most.
const CARRIER_EVERY: Duration = Duration::from_millis(50);

/// Counters of the tunnel interfaces, shared with the API and metrics.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Packets read from the interfaces (sent by the gateway's stack).
    pub read: AtomicU64,
    /// Packets written to the interfaces (for the gateway's stack).
    pub written: AtomicU64,
    /// Packets read while no SA towards the interface's peer existed (carrier off).
    pub no_sa: AtomicU64,
    /// Packets dropped because a ring to a worker was full.
    pub ring_full: AtomicU64,
    /// Writes the kernel refused.
    pub write_errors: AtomicU64,
    /// Routes through tunnel interfaces left out because of `routing.max_routes`.
    pub routes_over_limit: AtomicU64,
    /// Routes through tunnel interfaces the workers use now.
    pub routes: AtomicU64,
}

/// The tunnel interfaces, created and configured, with the worker-side ends of their rings.
pub struct Tunnels {
    devs: Vec<TunDevice>,
    peers: Vec<IpAddr>,
    to_workers: Vec<handoff::Producer>,
    from_workers: Vec<handoff::Consumer>,
    worker_wakers: Vec<Arc<Waker>>,
    waker: Arc<Waker>,
    status: Arc<TunnelStatus>,
    carrier: Vec<bool>,
    /// Counters.
    pub stats: Arc<TunnelStats>,
}

/// Why a tunnel interface could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("tunnel interface {name}: {err}")]
pub struct TunnelError {
    /// Interface name.
    pub name: String,
    /// What failed.
    pub err: io::Error,
}

impl Tunnels {
    /// Creates every configured interface (addresses, MTU, up, carrier off) and one pair of
    /// rings per worker; returns the tunnels and each worker's [`HostLink`] (index = worker).
    pub fn open(
        cfgs: &[TunnelConfig],
        wan_mtu: usize,
        worker_wakers: Vec<Arc<Waker>>,
    ) -> Result<(Self, Vec<HostLink>), TunnelError> {
        let mut devs = Vec::with_capacity(cfgs.len());
        for c in cfgs {
            let err = |err| TunnelError {
                name: c.name.clone(),
                err,
            };
            let dev = TunDevice::create(&c.name).map_err(err)?;
            let mtu = c
                .mtu
                .unwrap_or(wan_mtu.saturating_sub(TUNNEL_OVERHEAD).max(576));
            dev.set_mtu_and_up(mtu).map_err(err)?;
            for &(a, len) in &c.addresses {
                dev.add_address(a, len).map_err(|e| TunnelError {
                    name: c.name.clone(),
                    err: io::Error::new(e.kind(), format!("address {a}/{len}: {e}")),
                })?;
            }
            tracing::info!(
                "tunnel interface {} (ifindex {}) for peer {}, MTU {mtu}",
                c.name,
                dev.ifindex(),
                c.peer
            );
            devs.push(dev);
        }
        let waker = Waker::new().map_err(|err| TunnelError {
            name: "(waker)".into(),
            err,
        })?;
        let status = TunnelStatus::new(cfgs.len());
        let mut to_workers = Vec::new();
        let mut from_workers = Vec::new();
        let mut links = Vec::new();
        for _ in &worker_wakers {
            let (to_p, to_c) = handoff::channel(HOST_SLOTS);
            let (from_p, from_c) = handoff::channel(HOST_SLOTS);
            to_workers.push(to_p);
            from_workers.push(from_c);
            links.push(HostLink {
                from_host: to_c,
                to_host: from_p,
                waker: waker.clone(),
                status: status.clone(),
            });
        }
        let n = devs.len();
        Ok((
            Tunnels {
                devs,
                peers: cfgs.iter().map(|c| c.peer).collect(),
                to_workers,
                from_workers,
                worker_wakers,
                waker,
                status,
                carrier: vec![false; n],
                stats: Arc::new(TunnelStats::default()),
            },
            links,
        ))
    }

    /// The pipeline's view of the interfaces (index = tunnel id).
    pub fn ports(cfgs: &[TunnelConfig]) -> Vec<TunnelPort> {
        cfgs.iter()
            .map(|c| TunnelPort {
                peer: c.peer,
                addrs: c.addresses.iter().map(|&(a, _)| a).collect(),
            })
            .collect()
    }

    /// The interfaces' (ifindex, peer) pairs, for following their routes.
    pub fn ifindexes(&self) -> Vec<(u32, IpAddr)> {
        self.devs
            .iter()
            .zip(&self.peers)
            .map(|(d, &p)| (d.ifindex(), p))
            .collect()
    }

    /// Moves packets until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; SLOT];
        let mut next_carrier = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_carrier {
                self.follow_carriers();
                next_carrier = now + CARRIER_EVERY;
            }
            let moved = self.read_stack(&mut buf) + self.write_stack(&mut buf);
            if moved == 0 {
                self.sleep();
            }
        }
    }

    /// Switches each interface's carrier on while a worker holds an SA towards its peer.
    fn follow_carriers(&mut self) {
        for (i, dev) in self.devs.iter().enumerate() {
            let up = self.status.owner(i).is_some();
            if up != self.carrier[i] {
                match dev.set_carrier(up) {
                    Ok(()) => {
                        self.carrier[i] = up;
                        tracing::info!(
                            "tunnel interface {}: carrier {} ({} SA towards {})",
                            dev.name(),
                            if up { "on" } else { "off" },
                            if up { "an" } else { "no" },
                            self.peers[i]
                        );
                    }
                    Err(e) => tracing::warn!("tunnel interface {}: carrier: {e}", dev.name()),
                }
            }
        }
    }

    /// Reads what the stack sent into the interfaces and hands it to the workers owning the
    /// peers' SAs.
    fn read_stack(&mut self, buf: &mut [u8]) -> usize {
        let mut woken = vec![false; self.to_workers.len()];
        let mut total = 0;
        for (i, dev) in self.devs.iter().enumerate() {
            for _ in 0..READ_BUDGET {
                let n = match dev.read(buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("tunnel interface {}: read: {e}", dev.name());
                        break;
                    }
                };
                total += 1;
                self.stats.read.fetch_add(1, Ordering::Relaxed);
                let Some(w) = self.status.owner(i).filter(|&w| w < self.to_workers.len()) else {
                    self.stats.no_sa.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if self.to_workers[w].push_tagged(i as u16, &buf[..n]) {
                    woken[w] = true;
                } else {
                    self.stats.ring_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (w, p) in self.to_workers.iter_mut().enumerate() {
            if woken[w] {
                p.publish();
                self.worker_wakers[w].wake_if_sleeping();
            }
        }
        total
    }

    /// Writes what the workers decrypted for the stack to its interfaces.
    fn write_stack(&mut self, buf: &mut [u8]) -> usize {
        let mut total = 0;
        for c in &mut self.from_workers {
            while let Some((tag, len)) = c.pop_tagged_into(buf) {
                total += 1;
                let Some(dev) = self.devs.get(usize::from(tag)) else {
                    continue;
                };
                match dev.write(&buf[..len]) {
                    Ok(()) => self.stats.written.fetch_add(1, Ordering::Relaxed),
                    Err(_) => self.stats.write_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            c.release();
        }
        total
    }

    fn sleep(&self) {
        let mut fds: Vec<libc::pollfd> = self
            .devs
            .iter()
            .map(|d| d.raw_fd())
            .chain(std::iter::once(self.waker.raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        self.waker.sleep_begin();
        if self.from_workers.iter().any(|c| !c.is_empty()) {
            self.waker.sleep_end();
            return;
        }
        let timeout = CARRIER_EVERY.as_millis() as i32;
        // SAFETY: a live array of pollfd entries of the stated length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        self.waker.sleep_end();
    }
}

/// The routes of one side's interface, as the workers' next hops take them.
pub(crate) type SideRoutes = Vec<(Prefix, Option<IpAddr>, u32)>;

/// Follows the kernel's main table: on every change (coalesced for `HOLD` after the first
/// notification, so a burst of BGP updates costs one read) and every [`RESYNC`], reads it once
/// and sends the LAN's and WAN's routes to `sides` (the control thread keeps the next hops)
/// and the routes through tunnel interfaces to the workers through `router`.
pub(crate) struct RouteFollower {
    /// (port, ifindex) of the LAN and WAN interfaces.
    pub sides: [(Port, u32); 2],
    /// (ifindex, peer) of the tunnel interfaces.
    pub tunnels: Vec<(u32, IpAddr)>,
    /// Most routes through tunnel interfaces taken.
    pub max_routes: usize,
    /// Counters.
    pub stats: Arc<TunnelStats>,
}

/// Time given to a burst of route notifications before the table is read.
const HOLD: Duration = Duration::from_millis(20);
/// Full re-reads without notifications.
const RESYNC: Duration = Duration::from_secs(5);

impl RouteFollower {
    /// Runs until `stop` is set.
    pub(crate) fn run(
        self,
        router: &Router,
        sides: &SyncSender<(Port, SideRoutes)>,
        wake_control: &Waker,
        stop: &AtomicBool,
    ) {
        let mut monitor = RouteMonitor::open()
            .map_err(|e| tracing::warn!("no route notifications ({e}); routes read every 5 s"))
            .ok();
        let mut last_sides: [Option<SideRoutes>; 2] = [None, None];
        let mut next_resync = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let changed = monitor.as_mut().is_some_and(|m| m.changed());
            if !changed && now < next_resync {
                match &monitor {
                    Some(m) => m.wait(Duration::from_millis(100)),
                    None => std::thread::sleep(Duration::from_millis(100)),
                }
                continue;
            }
            if changed {
                // Let a burst finish, then read once.
                std::thread::sleep(HOLD);
                if let Some(m) = monitor.as_mut() {
                    m.changed();
                }
            }
            next_resync = Instant::now() + RESYNC;
            let started = Instant::now();
            let all = match route::dump() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("reading the kernel's routes: {e}");
                    continue;
                }
            };
            for (k, &(port, ifindex)) in self.sides.iter().enumerate() {
                let mine = route::through_of(&all, ifindex);
                if last_sides[k].as_ref() != Some(&mine) {
                    last_sides[k] = Some(mine.clone());
                    if sides.try_send((port, mine)).is_ok() {
                        wake_control.wake_if_sleeping();
                    } else {
                        // The control thread is behind: send it again next time.
                        last_sides[k] = None;
                    }
                }
            }
            if self.tunnels.is_empty() {
                continue;
            }
            let (routes, over) = tunnel_routes(&all, &self.tunnels, self.max_routes);
            let n = routes.len();
            let prev_over = self.stats.routes_over_limit.swap(over, Ordering::Relaxed);
            if over > 0 && over != prev_over {
                tracing::warn!(
                    "{over} routes through tunnel interfaces left out: more than routing.max_routes = {}",
                    self.max_routes
                );
            }
            if router.set_kernel_routes(routes) {
                self.stats.routes.store(n as u64, Ordering::Relaxed);
                tracing::info!(
                    "routes through tunnel interfaces: {n} (read and built in {} ms)",
                    started.elapsed().as_millis()
                );
            }
        }
    }
}

/// The routes through tunnel interfaces in a dump of the main table, as (prefix, peers) sorted
/// by prefix: per prefix, the lowest metric's next hops, several of them (a multipath route,
/// or IPv6 routes of one prefix and metric through several interfaces) making an equal-cost
/// route. At most `max` prefixes are taken (the shortest prefixes first, so a flood of
/// specifics cannot push out the aggregates); the second value is how many were left out.
pub(crate) fn tunnel_routes(
    all: &[KernelRoute],
    tunnels: &[(u32, IpAddr)],
    max: usize,
) -> (Vec<(Prefix, Vec<IpAddr>)>, u64) {
    let mut best: BTreeMap<Prefix, (u32, Vec<IpAddr>)> = BTreeMap::new();
    for r in all {
        let Some(&(_, peer)) = tunnels.iter().find(|(ifx, _)| *ifx == r.oif) else {
            continue;
        };
        let e = best.entry(r.prefix).or_insert((r.metric, Vec::new()));
        if r.metric < e.0 {
            *e = (r.metric, Vec::new());
        }
        if r.metric == e.0 && !e.1.contains(&peer) {
            e.1.push(peer);
        }
    }
    let mut v: Vec<(Prefix, Vec<IpAddr>)> = best
        .into_iter()
        .map(|(p, (_, mut peers))| {
            peers.sort();
            (p, peers)
        })
        .collect();
    let over = v.len().saturating_sub(max) as u64;
    if over > 0 {
        v.sort_by_key(|(p, _)| (p.len(), *p));
        v.truncate(max);
        v.sort_by_key(|(p, _)| *p);
    }
    (v, over)
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

    #[test]
    fn tunnel_routes_take_the_best_metric_and_make_ecmp_groups() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let tunnels = [(10, a), (11, b)];
        let all = [
            r("10.1.0.0/24", 10, 0),
            r("10.1.0.0/24", 11, 0),
            r("10.2.0.0/24", 10, 100),
            r("10.2.0.0/24", 11, 50),
            r("10.3.0.0/24", 3, 0),
            r("fd00:1::/64", 11, 1024),
        ];
        let (v, over) = tunnel_routes(&all, &tunnels, 100);
        assert_eq!(over, 0);
        assert_eq!(
            v,
            vec![
                ("10.1.0.0/24".parse().unwrap(), vec![a, b]),
                ("10.2.0.0/24".parse().unwrap(), vec![b]),
                ("fd00:1::/64".parse().unwrap(), vec![b]),
            ]
        );
    }

    #[test]
    fn a_flood_keeps_the_shortest_prefixes_and_counts_the_rest() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut all = vec![r("10.0.0.0/8", 10, 0)];
        for i in 0..10u32 {
            all.push(r(&format!("10.9.{i}.0/24"), 10, 0));
        }
        let (v, over) = tunnel_routes(&all, &[(10, a)], 4);
        assert_eq!(over, 7);
        assert_eq!(v.len(), 4);
        assert!(v.iter().any(|(p, _)| p.len() == 8));
    }
}
