//! The control side's view of the workers: which worker owns an SA, how to ask every worker
//! something and merge the answers. Used by start-up and by the API server.

use crate::sa::spd::Trap;
use crate::sa::{Direction, Prefix, RouteAction, RouteTable, SaConfig, SaDbError};
use crate::worker::handoff::owner_of_spi;
use crate::worker::xsk::WorkerUpdate;
use esprit_api::{Snapshot, SocketStats};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, SyncSender};
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
}

/// Where the workers' route table comes from.
#[derive(Default)]
struct RouteState {
    /// Configured routes (the file's `[[route]]`s and the API's).
    configured: RouteTable,
    /// The kernel's routes through tunnel interfaces, as (prefix, the interfaces' peers).
    kernel: Vec<(Prefix, Vec<IpAddr>)>,
    /// The tunnel interfaces' peers (route-based whether routes name them or not).
    pinned: Vec<IpAddr>,
}

impl RouteState {
    /// The table the workers use: the kernel's routes, overridden by configured routes of the
    /// same prefix.
    fn build(&self) -> RouteTable {
        let mut t = RouteTable::new();
        for (p, peers) in &self.kernel {
            t.insert_multipath(*p, peers);
        }
        for (p, a) in self.configured.entries() {
            t.insert(p, a);
        }
        for &p in &self.pinned {
            t.pin_peer(p);
        }
        t
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
        self.push_routes(&t);
    }

    /// Removes a configured route; false if there was none.
    pub fn remove_route(&self, prefix: Prefix) -> bool {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let found = t.configured.remove(prefix);
        if found {
            self.push_routes(&t);
        }
        found
    }

    /// Makes the tunnel interfaces' peers route-based for good (at start).
    pub fn pin_peers(&self, peers: &[IpAddr]) {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        t.pinned = peers.to_vec();
        self.push_routes(&t);
    }

    /// Replaces the routes learned from the kernel through tunnel interfaces, as (prefix,
    /// peers) sorted by prefix, and gives every worker the new table if they changed; true if
    /// they did.
    pub fn set_kernel_routes(&self, routes: Vec<(Prefix, Vec<IpAddr>)>) -> bool {
        let mut t = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if t.kernel == routes {
            return false;
        }
        t.kernel = routes;
        self.push_routes(&t);
        true
    }

    /// Every route the workers use (configured ones and those learned from the kernel),
    /// sorted.
    pub fn routes(&self) -> Vec<ListedRoute> {
        let st = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let t = st.build();
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

    fn push_routes(&self, st: &RouteState) {
        let t = std::sync::Arc::new(st.build());
        for w in &self.workers {
            let _ = w.send(WorkerUpdate::Routes(t.clone()));
        }
        self.wake_all();
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
