//! The control side's view of the workers: which worker owns an SA, how to ask every worker
//! something and merge the answers. Used by start-up and by the API server.

use crate::sa::spd::Trap;
use crate::sa::{Direction, Prefix, RouteAction, RouteTable, SaConfig, SaDbError};
use crate::worker::handoff::owner_of_spi;
use crate::worker::xsk::WorkerUpdate;
use esprit_api::{Snapshot, SocketStats};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// How long a request waits for a worker (it answers between batches).
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// The workers' update channels and the ownership rules.
pub struct Router {
    workers: Vec<SyncSender<WorkerUpdate>>,
    /// (local, remote) of inbound SAs → owning worker: an outbound SA goes where its inbound
    /// partner lives, so both directions of a tunnel share a worker.
    partners: Mutex<HashMap<(IpAddr, IpAddr), usize>>,
    /// The routes every worker shares: configured, and learned from the kernel through
    /// tunnel interfaces.
    routes: Mutex<RouteState>,
    /// The trap policies (every worker has a copy).
    traps: Mutex<Vec<Trap>>,
    /// Each worker's waker: an update wakes a worker sleeping in poll(2), so it applies the
    /// change now rather than at its next timeout.
    wakers: std::sync::OnceLock<Vec<std::sync::Arc<crate::worker::handoff::Waker>>>,
    /// Where to ask for a next hop's link-layer address (the control loop probes it).
    probe: std::sync::OnceLock<SyncSender<crate::worker::NeighRequest>>,
    /// The route thread's counters (with tunnel interfaces), for the metrics.
    route_stats: std::sync::OnceLock<Arc<super::tunnels::TunnelStats>>,
}

/// Where the workers' route table comes from, and the table itself: kept here and changed in
/// place route by route; the workers get a copy ([`Router::publish_routes`]) — decision 0025.
#[derive(Default)]
struct RouteState {
    /// Configured routes (the file's `[[route]]`s and the API's).
    configured: RouteTable,
    /// The kernel's routes through tunnel interfaces, as (prefix → action in `table`).
    kernel: FxHashMap<Prefix, RouteAction>,
    /// Kernel routes left out because of the limit (prefix → peers).
    refused: FxHashMap<Prefix, Vec<IpAddr>>,
    /// The table the workers use: the kernel's routes, overridden by configured routes of the
    /// same prefix, and the pinned peers.
    table: RouteTable,
    /// `table` changed since the workers' copy was made.
    dirty: bool,
}

impl RouteState {
    /// Sets (or with `None` removes) the kernel's route for `prefix`, within `max` kernel
    /// routes; true if the table changed.
    fn set_kernel(&mut self, prefix: Prefix, peers: Option<Vec<IpAddr>>, max: usize) -> bool {
        let action = peers.as_deref().and_then(|p| self.table.multipath(p));
        let Some(action) = action else {
            self.refused.remove(&prefix);
            if self.kernel.remove(&prefix).is_none() {
                return false;
            }
            if self.configured.lookup_exact(prefix).is_none() {
                self.table.remove(prefix);
            }
            return true;
        };
        if !self.kernel.contains_key(&prefix) && self.kernel.len() >= max {
            self.refused.insert(prefix, peers.unwrap_or_default());
            return false;
        }
        self.refused.remove(&prefix);
        if self.kernel.insert(prefix, action) == Some(action) {
            return false;
        }
        if self.configured.lookup_exact(prefix).is_none() {
            self.table.insert(prefix, action);
        }
        true
    }
}

/// One route as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRoute {
    /// Destination.
    pub prefix: Prefix,
    /// What it does (for an equal-cost route, [`RouteAction::Ecmp`]).
    pub action: RouteAction,
    /// The tunnel peers it sends to (one, several for an equal-cost route, none for bypass
    /// and drop).
    pub peers: Vec<IpAddr>,
    /// Learned from the kernel through a tunnel interface (else configured).
    pub kernel: bool,
}

/// Why a change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The worker refused it.
    #[error(transparent)]
    Sa(#[from] SaDbError),
    /// A worker did not answer in time.
    #[error("a worker did not answer")]
    Unavailable,
}

impl Router {
    /// A router over these workers' channels (index = worker id = queue).
    pub fn new(workers: Vec<SyncSender<WorkerUpdate>>) -> Self {
        Router {
            workers,
            partners: Mutex::new(HashMap::new()),
            routes: Mutex::new(RouteState::default()),
            traps: Mutex::new(Vec::new()),
            wakers: std::sync::OnceLock::new(),
            probe: std::sync::OnceLock::new(),
            route_stats: std::sync::OnceLock::new(),
        }
    }

    /// Gives the router the workers' wakers (once, at start).
    pub fn set_wakers(&self, wakers: Vec<std::sync::Arc<crate::worker::handoff::Waker>>) {
        let _ = self.wakers.set(wakers);
    }

    /// Gives the router the channel to the neighbour prober (once, at start).
    pub fn set_probe(&self, probe: SyncSender<crate::worker::NeighRequest>) {
        let _ = self.probe.set(probe);
    }

    /// Gives the router the route thread's counters (once, at start, with tunnel interfaces).
    pub fn set_route_stats(&self, stats: Arc<super::tunnels::TunnelStats>) {
        let _ = self.route_stats.set(stats);
    }

    /// The route thread's counters, if there is one following tunnel routes.
    pub fn route_counters(&self) -> Option<super::tunnels::RouteCounters> {
        Some(self.route_stats.get()?.route_counters())
    }

    fn wake(&self, w: usize) {
        if let Some(k) = self.wakers.get().and_then(|v| v.get(w)) {
            k.wake_if_sleeping();
        }
    }

    fn wake_all(&self) {
        for w in 0..self.workers.len() {
            self.wake(w);
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker that owns (or will own) `sa`.
    pub fn owner(&self, sa: &SaConfig) -> usize {
        let n = self.workers.len();
        match sa.direction {
            Direction::In => owner_of_spi(sa.spi, n),
            Direction::Out => self
                .partners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(sa.local, sa.remote))
                .copied()
                .unwrap_or_else(|| owner_of_spi(sa.spi, n)),
        }
    }

    /// Records where an inbound SA lives (for its outbound partner).
    pub fn note_inbound(&self, sa: &SaConfig, owner: usize) {
        if sa.direction == Direction::In {
            self.partners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((sa.local, sa.remote))
                .or_insert(owner);
        }
    }

    fn ask<T>(&self, w: usize, make: impl FnOnce(SyncSender<T>) -> WorkerUpdate) -> Option<T> {
        let (tx, rx) = sync_channel(1);
        self.workers.get(w)?.send(make(tx)).ok()?;
        self.wake(w);
        rx.recv_timeout(WORKER_TIMEOUT).ok()
    }

    /// Installs (or, with `replace`, replaces) an SA on its owner; an outbound SA's policy goes
    /// to every worker.
    pub fn add(&self, sa: SaConfig, replace: bool) -> Result<(), RouteError> {
        if replace {
            let addr = match sa.direction {
                Direction::In => sa.local,
                Direction::Out => sa.remote,
            };
            self.delete(sa.spi, sa.direction, Some(addr))?;
        }
        let owner = self.owner(&sa);
        // The SA's identity for the log, never its key.
        let (spi, dir, local, remote, suite) =
            (sa.spi, sa.direction, sa.local, sa.remote, sa.suite.name());
        let policy = (sa.direction == Direction::Out && self.workers.len() > 1).then(|| sa.clone());
        let sa_out_remote = (sa.direction == Direction::Out).then_some(sa.remote);
        let inbound = (sa.direction == Direction::In).then(|| sa.clone());
        let r = self
            .ask(owner, |reply| WorkerUpdate::AddSa {
                sa: Box::new(sa),
                replace: false,
                reply,
            })
            .ok_or(RouteError::Unavailable)?;
        r?;
        tracing::debug!(
            "SA 0x{spi:08x} {dir} {local} -> {remote} ({suite}) installed on worker {owner}"
        );
        if let Some(sa) = inbound {
            self.note_inbound(&sa, owner);
        }
        if sa_out_remote.is_some() {
            // Have the kernel resolve the peer's next hop now, before the first packet needs it.
            if let (Some(p), Some(r)) = (self.probe.get(), sa_out_remote) {
                let _ = p.try_send(crate::worker::NeighRequest::Resolve(
                    crate::worker::Port::Wan,
                    r,
                ));
            }
        }
        if let Some(sa) = policy {
            for w in &self.workers {
                let _ = w.send(WorkerUpdate::AddPolicy {
                    sa: Box::new(sa.clone()),
                    owner,
                });
            }
            self.wake_all();
        }
        Ok(())
    }

    /// Removes SAs from every worker; returns how many.
    pub fn delete(
        &self,
        spi: u32,
        direction: Direction,
        address: Option<IpAddr>,
    ) -> Result<usize, RouteError> {
        let mut n = 0;
        for w in 0..self.workers.len() {
            n += self
                .ask(w, |reply| WorkerUpdate::DeleteSa {
                    spi,
                    direction,
                    address,
                    reply,
                })
                .ok_or(RouteError::Unavailable)?;
            if direction == Direction::Out && self.workers.len() > 1 {
                let _ = self.workers[w].send(WorkerUpdate::RemovePolicy {
                    spi,
                    remote: address,
                });
                self.wake(w);
            }
        }
        tracing::debug!("SA 0x{spi:08x} {direction} removed ({n} found)");
        Ok(n)
    }

    /// Sends an update to every worker (for tables every worker keeps).
    pub fn broadcast(&self, make: impl Fn() -> WorkerUpdate) {
        for w in &self.workers {
            let _ = w.try_send(make());
        }
        self.wake_all();
    }

    /// Adds or replaces a configured route and gives every worker the new table.
    pub fn set_route(&self, prefix: Prefix, action: RouteAction) {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        t.configured.insert(prefix, action);
        t.table.insert(prefix, action);
        t.dirty = true;
        self.push_routes(&mut t);
    }

    /// Removes a configured route (uncovering the kernel's route of the same prefix, if any);
    /// false if there was none.
    pub fn remove_route(&self, prefix: Prefix) -> bool {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let found = t.configured.remove(prefix);
        if found {
            match t.kernel.get(&prefix).copied() {
                Some(a) => t.table.insert(prefix, a),
                None => {
                    t.table.remove(prefix);
                }
            }
            t.dirty = true;
            self.push_routes(&mut t);
        }
        found
    }

    /// Makes the tunnel interfaces' peers route-based for good (at start).
    pub fn pin_peers(&self, peers: &[IpAddr]) {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for &p in peers {
            t.table.pin_peer(p);
        }
        t.dirty = true;
        self.push_routes(&mut t);
    }

    /// Applies changes to the routes learned from the kernel through tunnel interfaces: per
    /// prefix, its peers (`None`: withdrawn). At most `max` kernel routes are taken; a new
    /// prefix beyond it is refused (counted, see [`Router::kernel_routes`]) until room frees
    /// and it is announced again. The workers get the table at the next
    /// [`Router::publish_routes`]. Returns how many routes changed.
    pub fn apply_kernel_routes(
        &self,
        changes: impl IntoIterator<Item = (Prefix, Option<Vec<IpAddr>>)>,
        max: usize,
    ) -> usize {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let n = changes
            .into_iter()
            .filter(|(p, peers)| t.set_kernel(*p, peers.clone(), max))
            .count();
        t.dirty |= n > 0;
        n
    }

    /// Replaces the routes learned from the kernel through tunnel interfaces, as (prefix,
    /// peers): at most `max` of them, the shortest prefixes first (so a flood of specifics
    /// cannot push out the aggregates), the rest refused; gives every worker the new table if
    /// it changed. True if it did.
    pub fn set_kernel_routes(&self, mut routes: Vec<(Prefix, Vec<IpAddr>)>, max: usize) -> bool {
        routes.sort_by_key(|(p, _)| (p.len(), *p));
        let rest = routes.split_off(max.min(routes.len()));
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let keep: rustc_hash::FxHashSet<Prefix> = routes.iter().map(|r| r.0).collect();
        let gone: Vec<Prefix> = t
            .kernel
            .keys()
            .filter(|p| !keep.contains(p))
            .copied()
            .collect();
        let mut n = 0;
        for p in gone {
            n += usize::from(t.set_kernel(p, None, max));
        }
        for (p, peers) in routes {
            n += usize::from(t.set_kernel(p, Some(peers), usize::MAX));
        }
        t.refused = rest.into_iter().collect();
        t.dirty |= n > 0;
        drop(t);
        self.publish_routes();
        n > 0
    }

    /// (kernel routes in the table, kernel routes refused by the limit).
    pub fn kernel_routes(&self) -> (usize, usize) {
        let t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        (t.kernel.len(), t.refused.len())
    }

    /// Gives every worker a copy of the table if it changed since the last one; returns how
    /// long the copy took (`None`: nothing to publish).
    pub fn publish_routes(&self) -> Option<std::time::Duration> {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        t.dirty.then(|| self.push_routes(&mut t))
    }

    /// Every route the workers use (configured ones and those learned from the kernel),
    /// sorted.
    pub fn routes(&self) -> Vec<ListedRoute> {
        let st = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let t = &st.table;
        t.entries()
            .into_iter()
            .map(|(prefix, action)| ListedRoute {
                prefix,
                action,
                peers: match action {
                    RouteAction::Tunnel(p) => vec![p],
                    RouteAction::Ecmp(g) => t.group(g).to_vec(),
                    RouteAction::Bypass | RouteAction::Drop => Vec::new(),
                },
                kernel: st.configured.lookup_exact(prefix).is_none(),
            })
            .collect()
    }

    /// Sends every worker a copy of the table; returns how long the copy took.
    fn push_routes(&self, st: &mut RouteState) -> std::time::Duration {
        let t0 = std::time::Instant::now();
        let t = Arc::new(st.table.clone());
        let took = t0.elapsed();
        st.dirty = false;
        for w in &self.workers {
            let _ = w.send(WorkerUpdate::Routes(t.clone()));
        }
        self.wake_all();
        took
    }

    /// Adds or replaces a trap policy and gives every worker the new list.
    pub fn set_trap(&self, trap: Trap) {
        let mut t = self.traps.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|x| x.id != trap.id);
        t.push(trap);
        self.push_traps(&t);
    }

    /// Removes a trap policy; false if there was none.
    pub fn remove_trap(&self, id: u32) -> bool {
        let mut t = self.traps.lock().unwrap_or_else(|p| p.into_inner());
        let before = t.len();
        t.retain(|x| x.id != id);
        let found = t.len() != before;
        if found {
            self.push_traps(&t);
        }
        found
    }

    /// The trap policies.
    pub fn traps(&self) -> Vec<Trap> {
        self.traps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push_traps(&self, t: &[Trap]) {
        for w in &self.workers {
            let _ = w.send(WorkerUpdate::Traps(t.to_vec()));
        }
        self.wake_all();
    }

    /// Every worker's counters, merged.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshots().map(merge)
    }

    /// Every worker's counters, in worker order (the worker answers between batches).
    pub fn snapshots(&self) -> Option<Vec<Snapshot>> {
        (0..self.workers.len())
            .map(|w| self.ask(w, WorkerUpdate::Snapshot))
            .collect()
    }
}

fn add_maps(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn add_sockets(a: &mut SocketStats, b: &SocketStats) {
    a.rx_dropped += b.rx_dropped;
    a.rx_ring_full += b.rx_ring_full;
    a.rx_fill_ring_empty += b.rx_fill_ring_empty;
    a.tx_invalid += b.tx_invalid;
}

/// Merges the snapshots of several workers into one.
pub fn merge(parts: Vec<Snapshot>) -> Snapshot {
    let mut it = parts.into_iter();
    let Some(mut s) = it.next() else {
        return Snapshot {
            sas: vec![],
            sadb_drops: BTreeMap::new(),
            forwarding_drops: BTreeMap::new(),
            lan_to_wan: 0,
            wan_to_lan: 0,
            icmp_sent: 0,
            mss_clamped: 0,
            handoff_sent: 0,
            handoff_received: 0,
            handoff_dropped: 0,
            workers: 0,
            bypassed: 0,
            checksums_completed: 0,
            fragmented: 0,
            fragments: 0,
            lan_socket: SocketStats::default(),
            wan_socket: SocketStats::default(),
            events_lost: 0,
            neigh_queued: 0,
            neigh_released: 0,
        };
    };
    for p in it {
        s.sas.extend(p.sas);
        add_maps(&mut s.sadb_drops, &p.sadb_drops);
        add_maps(&mut s.forwarding_drops, &p.forwarding_drops);
        s.lan_to_wan += p.lan_to_wan;
        s.wan_to_lan += p.wan_to_lan;
        s.icmp_sent += p.icmp_sent;
        s.mss_clamped += p.mss_clamped;
        s.handoff_sent += p.handoff_sent;
        s.handoff_received += p.handoff_received;
        s.handoff_dropped += p.handoff_dropped;
        s.workers += p.workers;
        s.bypassed += p.bypassed;
        s.checksums_completed += p.checksums_completed;
        s.fragmented += p.fragmented;
        s.fragments += p.fragments;
        add_sockets(&mut s.lan_socket, &p.lan_socket);
        add_sockets(&mut s.wan_socket, &p.wan_socket);
        s.events_lost += p.events_lost;
        s.neigh_queued += p.neigh_queued;
        s.neigh_released += p.neigh_released;
    }
    s.sas.sort_by(|a, b| a.label.cmp(&b.label));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rx: &std::sync::mpsc::Receiver<WorkerUpdate>) -> Arc<RouteTable> {
        let mut last = None;
        while let Ok(u) = rx.try_recv() {
            if let WorkerUpdate::Routes(t) = u {
                last = Some(t);
            }
        }
        last.expect("a table was published")
    }

    #[test]
    fn configured_routes_override_kernel_ones_and_uncover_them_when_removed() {
        let (tx, rx) = sync_channel(64);
        let r = Router::new(vec![tx]);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        let q: Prefix = "10.2.0.0/16".parse().unwrap();
        let dst: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            r.apply_kernel_routes([(p, Some(vec![a, b])), (q, Some(vec![a]))], 10),
            2
        );
        // Nothing reaches the workers before a publish.
        assert!(rx.try_recv().is_err());
        assert!(r.publish_routes().is_some());
        assert!(r.publish_routes().is_none(), "nothing new to publish");
        let t = table(&rx);
        assert_eq!(t.lookup(dst), Some(RouteAction::Ecmp(0)));
        assert_eq!(t.peers(), vec![a, b]);
        // A configured route of the same prefix wins, and a kernel change under it is kept
        // aside.
        r.set_route(p, RouteAction::Drop);
        r.apply_kernel_routes([(p, Some(vec![b]))], 10);
        r.publish_routes();
        assert_eq!(table(&rx).lookup(dst), Some(RouteAction::Drop));
        let listed = r.routes();
        assert!(listed.iter().any(|l| l.prefix == p && !l.kernel));
        assert!(listed.iter().any(|l| l.prefix == q && l.kernel));
        // Removing it uncovers the kernel's route as it is now.
        assert!(r.remove_route(p));
        assert_eq!(table(&rx).lookup(dst), Some(RouteAction::Tunnel(b)));
        // A withdrawal of the kernel's route removes it.
        r.apply_kernel_routes([(p, None)], 10);
        r.publish_routes();
        assert_eq!(table(&rx).lookup(dst), None);
        assert_eq!(r.kernel_routes(), (1, 0));
    }
}
