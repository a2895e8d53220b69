//! Start-up, the control thread and shutdown of the dataplane daemon.

use super::api::{ApiListener, ApiServer, EventHub};
use super::config::{DataplaneConfig, FailMode, SideConfig};
use super::metrics::exposition;
use crate::api::Snapshot;
use crate::daemon::follower::{RouteFollower, SideRoutes};
use crate::daemon::neigh::NeighKeeper;
use crate::daemon::router::Router;
use crate::daemon::runtime::{bind_mode_name, InterfaceSetup, RuntimeSetup, WorkerSetup};
use crate::daemon::tunnels::{TunnelStats, Tunnels};
use crate::esp::DropReason;
use crate::kernel;
use crate::sa::spd::Policies;
use crate::sa::{file, Direction, SaDb};
use crate::worker::handoff;
use crate::worker::xsk::{PollMode, Shard, Worker, WorkerConfig, WorkerUpdate};
use crate::worker::{NeighRequest, Neighbours, Pipeline, Port, Side};
use crate::xdp::program::{Classifier, ClassifierSpec, Role};
use crate::xdp::sys::action;
use crate::xdp::umem::UmemConfig;
use esprit_metrics::MetricsServer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The SA file is wrong.
    #[error("{0}")]
    SaFile(#[from] file::SaFileError),
    /// An SA could not be installed.
    #[error("installing SAs: {0}")]
    Sa(#[from] crate::sa::SaDbError),
    /// An interface fact could not be read.
    #[error("interface {iface}: {err}")]
    Interface {
        /// Interface.
        iface: String,
        /// Cause.
        err: std::io::Error,
    },
    /// XDP could not be set up.
    #[error("{0}")]
    Xdp(#[from] crate::xdp::program::ClassifierError),
    /// AF_XDP sockets could not be set up.
    #[error("AF_XDP: {0}")]
    Socket(std::io::Error),
    /// A tunnel interface could not be set up.
    #[error("{0}")]
    Tunnel(#[from] super::tunnels::TunnelError),
    /// The worker failed while running.
    #[error("worker: {0}")]
    Worker(std::io::Error),
    /// Privileges could not be dropped.
    #[error("dropping privileges: {0}")]
    Privileges(std::io::Error),
    /// The metrics listener could not be opened.
    #[error("{0}")]
    Metrics(#[from] esprit_metrics::MetricsError),
    /// The API socket could not be opened.
    #[error("API socket {path}: {err}")]
    Api {
        /// Socket path.
        path: String,
        /// Cause.
        err: std::io::Error,
    },
}

fn iface_err(iface: &str) -> impl Fn(std::io::Error) -> DaemonError + '_ {
    move |err| DaemonError::Interface {
        iface: iface.to_string(),
        err,
    }
}

/// Builds one side from its configuration and the interface's kernel state.
fn side(c: &SideConfig) -> Result<(Side, Vec<IpAddr>, u32), DaemonError> {
    let e = iface_err(&c.interface);
    let ifindex = crate::xdp::sys::ifindex(&c.interface).map_err(&e)?;
    let mac = kernel::iface::mac(&c.interface).map_err(&e)?;
    let addrs = kernel::iface::addresses(&c.interface).map_err(&e)?;
    let onlink = if c.onlink.is_empty() {
        addrs.iter().map(|a| a.network()).collect()
    } else {
        c.onlink.clone()
    };
    let neighbours = merged_neighbours(c, ifindex);
    let mtu = match c.mtu {
        Some(m) => m,
        None => kernel::iface::mtu(&c.interface).map_err(&e)?,
    };
    let mut side = Side {
        mac,
        onlink,
        gateway: c.gateway,
        routes: Vec::new(),
        neighbours,
        mtu,
        addrs: addrs.iter().map(|a| a.addr).collect(),
    };
    // Without routes from the kernel (a failed dump) the side still has its links and its
    // configured gateway; the control thread retries when routes change.
    side.set_routes(kernel::route::through(ifindex).unwrap_or_default());
    Ok((side, addrs.iter().map(|a| a.addr).collect(), ifindex))
}

/// The kernel's neighbours of `ifindex` with the static ones on top.
fn merged_neighbours(c: &SideConfig, ifindex: u32) -> Neighbours {
    let mut n: Neighbours = kernel::neigh::dump(ifindex).unwrap_or_default();
    for (ip, mac) in &c.neighbours {
        n.insert(*ip, *mac);
    }
    n
}

fn split(addrs: &[IpAddr]) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let v4 = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(x) => Some(*x),
            _ => None,
        })
        .collect();
    let v6 = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(x) => Some(*x),
            _ => None,
        })
        .collect();
    (v4, v6)
}

/// Starts the dataplane, calls `ready` once packets flow, runs until `stop` is set, and returns
/// the counters.
pub fn run(
    cfg: &DataplaneConfig,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(&str),
) -> Result<Snapshot, DaemonError> {
    run_locked(cfg, stop, None, ready)
}

/// The capabilities the dataplane needs once it is set up: `CAP_NET_ADMIN`, for the
/// neighbour requests that resolve next hops and keep used ones resolved (RTM_NEWNEIGH with
/// NTF_USE, see `daemon/neigh.rs`) and, with `fail_mode = "open"`, to detach the classifiers
/// on exit. Nothing else: no `bpf(2)` call, socket bind or attach happens after start-up.
pub fn runtime_capabilities(_cfg: &DataplaneConfig) -> Vec<u32> {
    super::privileges::RUNTIME_CAPABILITIES.to_vec()
}

/// Like [`run`], and once everything that needs privileges is done (XDP attached, sockets
/// bound and registered, API socket bound) and before any thread starts, applies `lock`
/// (see [`crate::harden::lock_down`]): the daemon's threads inherit it.
pub fn run_locked(
    cfg: &DataplaneConfig,
    stop: Arc<AtomicBool>,
    lock: Option<&crate::harden::LockDown>,
    ready: impl FnOnce(&str),
) -> Result<Snapshot, DaemonError> {
    run_reloading(cfg, None, stop, lock, ready)
}

/// Where a running dataplane reloads its configuration from, and the flag that asks it to
/// (set by SIGHUP): see [`super::reload`].
pub struct ReloadOn {
    /// The configuration file the daemon was started with.
    pub path: std::path::PathBuf,
    /// Set to ask for a reload; the control loop clears it.
    pub requested: Arc<AtomicBool>,
}

/// Like [`run_locked`], and reloads the configuration from `reload.path` whenever
/// `reload.requested` is set.
pub fn run_reloading(
    cfg: &DataplaneConfig,
    reload: Option<ReloadOn>,
    stop: Arc<AtomicBool>,
    lock: Option<&crate::harden::LockDown>,
    ready: impl FnOnce(&str),
) -> Result<Snapshot, DaemonError> {
    let n = cfg.workers.max(1) as usize;
    // Each SA goes to the worker that owns it: inbound by SPI, outbound with its inbound
    // partner (so a tunnel's two directions share a worker); every worker keeps every
    // outbound policy, to hand LAN packets to the right worker.
    let sas = match &cfg.sa_file {
        Some(f) => file::load(f)?,
        None => Vec::new(),
    };
    let (lan_side, lan_addrs, lan_ifindex) = side(&cfg.lan)?;
    let (wan_side, wan_addrs, wan_ifindex) = side(&cfg.wan)?;
    let mut ports = vec![crate::sa::config::NAT_T_PORT];
    for e in sas.iter().filter_map(|s| s.encap) {
        if !ports.contains(&e.dst_port) {
            ports.push(e.dst_port);
        }
    }
    // Attach first, replacing atomically whatever an earlier instance left attached: from here
    // on, in fail-closed mode, transit traffic the workers do not take yet is dropped in XDP.
    let no_socket_action = match cfg.fail_mode {
        FailMode::Closed => action::DROP,
        FailMode::Open => action::PASS,
    };
    let (wan4, wan6) = split(&wan_addrs);
    let all: Vec<IpAddr> = lan_addrs.iter().chain(wan_addrs.iter()).copied().collect();
    let (all4, all6) = split(&all);
    let wan_cls = Classifier::load(
        &ClassifierSpec {
            role: Role::Wan,
            local_v4: wan4,
            local_v6: wan6,
            nat_t_ports: ports,
            no_socket_action,
        },
        n as u32,
    )?;
    let lan_cls = Classifier::load(
        &ClassifierSpec {
            role: Role::Lan,
            local_v4: all4,
            local_v6: all6,
            nat_t_ports: vec![],
            no_socket_action,
        },
        n as u32,
    )?;
    let mut lan_xdp = lan_cls.attach_persistent(&cfg.lan.interface, cfg.generic_xdp)?;
    let mut wan_xdp = wan_cls.attach_persistent(&cfg.wan.interface, cfg.generic_xdp)?;
    if cfg.fail_mode == FailMode::Open {
        lan_xdp.detach_on_drop();
        wan_xdp.detach_on_drop();
    }
    let mut dbs: Vec<SaDb> = (0..n).map(|_| SaDb::new(cfg.backend)).collect();
    let mut policies = Policies::default();
    let mut peer_hops: Vec<IpAddr> = Vec::new();
    let (channels, receivers): (Vec<_>, Vec<_>) =
        (0..n).map(|_| sync_channel::<WorkerUpdate>(1024)).unzip();
    let router = Arc::new(Router::new(channels));
    for sa in sas.iter().filter(|s| s.direction == Direction::In) {
        let owner = router.owner(sa);
        dbs[owner].insert(sa.clone())?;
        router.note_inbound(sa, owner);
    }
    for sa in sas.iter().filter(|s| s.direction == Direction::Out) {
        let owner = router.owner(sa);
        // Peers' next hops are known now: have the kernel resolve them before traffic needs them.
        let hop = wan_side.next_hop(sa.remote);
        if wan_side.neighbours.get(hop).is_none() && !peer_hops.contains(&hop) {
            peer_hops.push(hop);
        }
        dbs[owner].insert(sa.clone())?;
        policies.add(sa, owner);
    }
    // Handoff rings between every ordered pair of workers.
    let mut outs: Vec<Vec<Option<handoff::Producer>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut inboxes: Vec<Vec<handoff::Consumer>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in outs.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (p, c) = handoff::channel(HANDOFF_SLOTS);
                *slot = Some(p);
                inboxes[to].push(c);
            }
        }
    }
    let mut routes = crate::sa::RouteTable::new();
    for (p, a) in &cfg.routes {
        routes.insert(*p, *a);
    }
    let tunnel_peers: Vec<IpAddr> = cfg.tunnels.iter().map(|t| t.peer).collect();
    for &p in &tunnel_peers {
        routes.pin_peer(p);
    }
    policies.set_route_peers(routes.peers());
    let (mtx, mrx) = sync_channel::<NeighRequest>(1024);
    let (etx, erx) = sync_channel(4096);
    let wakers = (0..n)
        .map(|_| handoff::Waker::new())
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::Socket)?;
    let control_waker = handoff::Waker::new().map_err(DaemonError::Socket)?;
    let (tunnels, mut host_links) = if cfg.tunnels.is_empty() {
        (None, Vec::new())
    } else {
        let (t, links) = Tunnels::open(&cfg.tunnels, wan_side.mtu, wakers.clone())?;
        (Some(t), links)
    };
    host_links.reverse();
    let routes = Arc::new(routes);
    let mut workers = Vec::with_capacity(n);
    for (i, ((db, rx), (out, inbox))) in dbs
        .into_iter()
        .zip(receivers)
        .zip(outs.into_iter().zip(inboxes))
        .enumerate()
    {
        let mut pipeline = Pipeline::new(db, lan_side.clone(), wan_side.clone());
        pipeline.mss_clamp = cfg.mss_clamp;
        pipeline.icmp = crate::worker::icmp::IcmpLimiter::new(cfg.icmp_rate);
        pipeline.set_routes(routes.clone());
        pipeline.tunnels = Tunnels::ports(&cfg.tunnels);
        let wcfg = WorkerConfig {
            lan: cfg.lan.interface.clone(),
            wan: cfg.wan.interface.clone(),
            queue: i as u32,
            ring_size: cfg.ring_size,
            umem: UmemConfig {
                frames: cfg.frames,
                ..Default::default()
            },
            poll: cfg.poll,
            mode: cfg.mode,
        };
        let mut w = bind_worker(&wcfg, || {
            Pipeline::new(SaDb::new(cfg.backend), lan_side.clone(), wan_side.clone())
        })?;
        w.pipeline = pipeline;
        w.connect(rx, mtx.clone(), etx.clone());
        w.set_waker(wakers[i].clone());
        w.set_control_waker(control_waker.clone());
        if let Some(link) = host_links.pop() {
            w.set_host(link);
        }
        if n > 1 {
            w.set_shard(Shard {
                id: i,
                workers: n,
                out,
                inbox,
                policies: policies.clone(),
                wakers: wakers.clone(),
            });
        }
        workers.push(w);
    }
    for (i, w) in workers.iter().enumerate() {
        wan_cls.register_socket(i as u32, w.wan_fd())?;
        lan_cls.register_socket(i as u32, w.lan_fd())?;
    }
    let runtime = Arc::new(runtime_setup(cfg, &workers, (lan_ifindex, wan_ifindex)));
    router.pin_peers(&tunnel_peers);
    for (p, a) in &cfg.routes {
        router.set_route(*p, *a);
    }
    let api_err = |err| DaemonError::Api {
        path: cfg.api_socket.display().to_string(),
        err,
    };
    let group = match &cfg.api_group {
        Some(g) => Some(crate::harden::lookup_group(g).map_err(|e| {
            api_err(std::io::Error::new(
                e.kind(),
                format!("api_group {g:?}: {e}"),
            ))
        })?),
        None => None,
    };
    let listener = ApiListener::bind(&cfg.api_socket, group).map_err(api_err)?;
    let mut metrics = cfg.metrics.map(MetricsServer::bind).transpose()?;
    let kept = match lock {
        Some(l) => Some(crate::harden::lock_down(l).map_err(DaemonError::Privileges)?),
        None => None,
    };
    let hub = Arc::new(EventHub::default());
    let _events = hub.spawn(erx);
    let api = ApiServer::serve(listener, router.clone(), hub, runtime.clone()).map_err(api_err)?;
    let mut keeper = NeighKeeper::new(
        (&lan_side, &cfg.lan.neighbours, lan_ifindex),
        (&wan_side, &cfg.wan.neighbours, wan_ifindex),
        control_waker.clone(),
    );
    for hop in peer_hops {
        let _ = mtx.try_send(NeighRequest::Resolve(Port::Wan, hop));
    }
    router.set_wakers(wakers.clone());
    router.set_probe(mtx.clone());
    let (side_tx, side_rx) = sync_channel(16);
    let follower = RouteFollower {
        sides: [(Port::Lan, lan_ifindex), (Port::Wan, wan_ifindex)],
        tunnels: tunnels.as_ref().map(|t| t.ifindexes()).unwrap_or_default(),
        max_routes: cfg.max_routes,
        stats: tunnels
            .as_ref()
            .map(|t| t.stats.clone())
            .unwrap_or_default(),
    };
    let tunnel_stats = tunnels.as_ref().map(|t| t.stats.clone());
    if tunnels.is_some() {
        router.set_route_stats(follower.stats.clone());
    }
    let mut helpers = Vec::new();
    {
        let (router, stop, waker) = (router.clone(), stop.clone(), control_waker.clone());
        helpers.push(
            std::thread::Builder::new()
                .name("esprit-routes".into())
                .spawn(move || follower.run(&router, &side_tx, &waker, &stop))
                .expect("spawn route thread"),
        );
    }
    if let Some(t) = tunnels {
        let stop = stop.clone();
        helpers.push(
            std::thread::Builder::new()
                .name("esprit-tunnels".into())
                .spawn(move || t.run(&stop))
                .expect("spawn tunnel interface thread"),
        );
    }
    let mut handles = Vec::with_capacity(n);
    for (i, mut w) in workers.into_iter().enumerate() {
        let core = cfg.cores.get(i).copied();
        let wstop = stop.clone();
        let rt = runtime.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("esprit-worker-{i}"))
                .spawn(move || {
                    rt.workers[i].record_current_thread();
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                            tracing::warn!("worker {i}: cannot pin to CPU {c}");
                        }
                    }
                    let r = w.run(&wstop);
                    (w, r)
                })
                .expect("spawn worker thread"),
        );
    }
    ready(&format!(
        "esprit-dataplane: {} SAs, lan {} wan {}, {} worker{}{}, {}, fail {}, backend {}, API {}{}{}",
        sas.len(),
        cfg.lan.interface,
        cfg.wan.interface,
        n,
        if n == 1 { "" } else { "s" },
        if cfg.cores.is_empty() {
            String::new()
        } else {
            format!(" on cores {:?}", &cfg.cores[..cfg.cores.len().min(n)])
        },
        if cfg.generic_xdp {
            "generic XDP"
        } else {
            "native XDP"
        },
        cfg.fail_mode.name(),
        cfg.backend.name(),
        cfg.api_socket.display(),
        match &metrics {
            Some(m) => format!(", metrics http://{}/metrics", m.local_addr()),
            None => String::new(),
        },
        match kept {
            None => String::new(),
            Some(k) => format!(", capabilities kept {k:?}"),
        }
    ));
    let mut reloader =
        reload.map(|r| super::reload::Reloader::new(r.path, cfg.clone(), sas.clone(), r.requested));
    control_loop(
        &stop,
        &router,
        &mrx,
        &side_rx,
        &mut keeper,
        metrics.as_mut().map(|m| (m, tunnel_stats.as_deref())),
        reloader.as_mut(),
    );
    stop.store(true, Ordering::Relaxed);
    drop(api);
    for h in helpers {
        let _ = h.join();
    }
    let mut parts = Vec::with_capacity(n);
    for h in handles {
        let (w, r) = h.join().expect("worker thread panicked");
        r.map_err(DaemonError::Worker)?;
        parts.push(w.snapshot());
    }
    Ok(crate::daemon::router::merge(parts))
}

/// What the daemon runs with, for the `runtime` request: interfaces with the bind mode the
/// kernel reports for each worker's sockets, workers with their pinning.
fn runtime_setup(
    cfg: &DataplaneConfig,
    workers: &[Worker],
    (lan_ifindex, wan_ifindex): (u32, u32),
) -> RuntimeSetup {
    let (lan_modes, wan_modes): (Vec<_>, Vec<_>) = workers.iter().map(|w| w.bind_modes()).unzip();
    RuntimeSetup {
        xdp_requested: if cfg.generic_xdp { "generic" } else { "native" },
        mode_requested: bind_mode_name(cfg.mode),
        poll: match cfg.poll {
            PollMode::Adaptive => "adaptive",
            PollMode::Busy => "busy",
        },
        interfaces: vec![
            InterfaceSetup {
                role: "lan",
                name: cfg.lan.interface.clone(),
                ifindex: lan_ifindex,
                bind_modes: lan_modes,
            },
            InterfaceSetup {
                role: "wan",
                name: cfg.wan.interface.clone(),
                ifindex: wan_ifindex,
                bind_modes: wan_modes,
            },
        ],
        workers: (0..workers.len())
            .map(|i| WorkerSetup::new(i as u32, cfg.cores.get(i).map(|&c| c as u32)))
            .collect(),
    }
}

/// Creates a worker and binds its sockets. The kernel releases a dead predecessor's AF_XDP
/// sockets from their queues asynchronously, so a quick restart can find a queue still busy:
/// binding is retried for up to 5 s. The worker starts with the (empty) pipeline `empty` makes.
fn bind_worker(wcfg: &WorkerConfig, empty: impl Fn() -> Pipeline) -> Result<Worker, DaemonError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Worker::new(wcfg.clone(), empty()) {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r.map_err(DaemonError::Socket),
        }
    }
}

/// Slots in each handoff ring (one per ordered pair of workers).
const HANDOFF_SLOTS: usize = 2048;

/// Keeps next hops current: handles the workers' requests (resolve, used) and the kernel's
/// neighbour notifications as they come (see [`NeighKeeper`]); serves the metrics listener,
/// if any, every round (at most 10 ms after a client connects).
fn control_loop(
    stop: &AtomicBool,
    router: &Router,
    requests: &Receiver<NeighRequest>,
    side_routes: &Receiver<(Port, SideRoutes)>,
    keeper: &mut NeighKeeper,
    mut metrics: Option<(&mut MetricsServer, Option<&TunnelStats>)>,
    mut reloader: Option<&mut super::reload::Reloader>,
) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match reloader.as_deref_mut().and_then(|r| r.poll(router)) {
            None => {}
            Some(Ok(r)) => {
                tracing::info!(
                    "configuration reloaded: SAs {} added, {} removed, {} replaced; routes {} set, {} removed",
                    r.sas_added,
                    r.sas_removed,
                    r.sas_replaced,
                    r.routes_set,
                    r.routes_removed
                );
                if !r.restart_needed.is_empty() {
                    tracing::warn!(
                        "reload: {} changed; restart esprit-dataplane to apply (the running values stay)",
                        r.restart_needed.join(", ")
                    );
                }
            }
            Some(Err(e)) => tracing::warn!("reload refused, the running configuration stays: {e}"),
        }
        while let Ok(r) = requests.try_recv() {
            keeper.request(r, now);
        }
        while let Ok((port, r)) = side_routes.try_recv() {
            keeper.set_side_routes(port, r, router);
        }
        keeper.tick(router, now);
        if let Some((m, tunnels)) = metrics.as_mut() {
            m.service(
                now,
                // A worker that does not answer makes the scrape fail (503): Prometheus
                // marks the target down rather than recording partial counters.
                |server| {
                    router.snapshots().map(|workers| {
                        let t = tunnels.map(|t| t.counters());
                        exposition(workers, *server, t, router.route_counters())
                    })
                },
                |line| tracing::warn!("{line}"),
            );
        }
        keeper.wait(Duration::from_millis(10));
    }
}

/// The drop reasons a report may mention, for documentation and tests.
pub fn reasons() -> impl Iterator<Item = &'static str> {
    DropReason::ALL.iter().map(|r| r.name())
}
