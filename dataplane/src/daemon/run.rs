//! Start-up, the control thread and shutdown of the dataplane daemon.

use super::config::{DataplaneConfig, SideConfig};
use crate::api::server::{ApiServer, EventHub};
use crate::api::Snapshot;
use crate::esp::DropReason;
use crate::kernel;
use crate::sa::{file, Direction, SaDb};
use crate::worker::xsk::{Worker, WorkerConfig, WorkerUpdate};
use crate::worker::{Neighbours, Pipeline, Port, Side};
use crate::xdp::program::{Classifier, ClassifierSpec, Role};
use crate::xdp::sys::action;
use crate::xdp::umem::UmemConfig;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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
    /// The worker failed while running.
    #[error("worker: {0}")]
    Worker(std::io::Error),
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
    Ok((
        Side {
            mac,
            onlink,
            gateway: c.gateway,
            neighbours,
            mtu,
            addrs: addrs.iter().map(|a| a.addr).collect(),
        },
        addrs.iter().map(|a| a.addr).collect(),
        ifindex,
    ))
}

/// The kernel's neighbours of `ifindex` with the static ones on top.
fn merged_neighbours(c: &SideConfig, ifindex: u32) -> Neighbours {
    let mut n = kernel::neigh::dump(ifindex).unwrap_or_default();
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
    let mut db = SaDb::new(cfg.backend);
    let mut n_sa = 0;
    if let Some(f) = &cfg.sa_file {
        for sa in file::load(f)? {
            db.insert(sa)?;
            n_sa += 1;
        }
    }
    let (lan_side, lan_addrs, lan_ifindex) = side(&cfg.lan)?;
    let (wan_side, wan_addrs, wan_ifindex) = side(&cfg.wan)?;
    let ports = db.nat_t_ports().to_vec();
    // Peers' next hops are known now: ask the kernel to resolve them before traffic needs them.
    let peer_hops: Vec<IpAddr> = db
        .outbound()
        .iter()
        .filter(|s| s.cfg.direction == Direction::Out)
        .map(|s| wan_side.next_hop(s.cfg.remote))
        .filter(|h| wan_side.neighbours.get(*h).is_none())
        .collect();
    let mut pipeline = Pipeline::new(db, lan_side, wan_side);
    pipeline.mss_clamp = cfg.mss_clamp;
    pipeline.icmp = crate::worker::icmp::IcmpLimiter::new(cfg.icmp_rate);
    let wcfg = WorkerConfig {
        lan: cfg.lan.interface.clone(),
        wan: cfg.wan.interface.clone(),
        queue: 0,
        ring_size: cfg.ring_size,
        umem: UmemConfig {
            frames: cfg.frames,
            ..Default::default()
        },
        poll: cfg.poll,
        mode: cfg.mode,
    };
    let mut worker = Worker::new(wcfg, pipeline).map_err(DaemonError::Socket)?;
    let (wan4, wan6) = split(&wan_addrs);
    let all: Vec<IpAddr> = lan_addrs.iter().chain(wan_addrs.iter()).copied().collect();
    let (all4, all6) = split(&all);
    let wan_cls = Classifier::load(
        &ClassifierSpec {
            role: Role::Wan,
            local_v4: wan4,
            local_v6: wan6,
            nat_t_ports: ports,
            no_socket_action: action::PASS,
        },
        1,
    )?;
    let lan_cls = Classifier::load(
        &ClassifierSpec {
            role: Role::Lan,
            local_v4: all4,
            local_v6: all6,
            nat_t_ports: vec![],
            no_socket_action: action::PASS,
        },
        1,
    )?;
    wan_cls.register_socket(0, worker.wan_fd())?;
    lan_cls.register_socket(0, worker.lan_fd())?;
    let (utx, urx) = sync_channel::<WorkerUpdate>(1024);
    let (mtx, mrx) = sync_channel::<IpAddr>(64);
    let (etx, erx) = sync_channel(4096);
    let hub = Arc::new(EventHub::default());
    let _events = hub.spawn(erx);
    let api =
        ApiServer::start(&cfg.api_socket, utx.clone(), hub).map_err(|err| DaemonError::Api {
            path: cfg.api_socket.display().to_string(),
            err,
        })?;
    for hop in peer_hops {
        let _ = mtx.try_send(hop);
    }
    worker.connect(urx, mtx, etx);
    let core = cfg.cores.first().copied();
    let wstop = stop.clone();
    let handle = std::thread::Builder::new()
        .name("esprit-worker-0".into())
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            let r = worker.run(&wstop);
            (worker, r)
        })
        .expect("spawn worker thread");
    // Attach last: from here on the kernel hands packets to the sockets.
    let _wan_link = wan_cls.attach(&cfg.wan.interface, cfg.generic_xdp)?;
    let _lan_link = lan_cls.attach(&cfg.lan.interface, cfg.generic_xdp)?;
    ready(&format!(
        "esprit-dataplane: {} SAs, lan {} wan {}, 1 worker{}, {}, backend {}, API {}",
        n_sa,
        cfg.lan.interface,
        cfg.wan.interface,
        core.map(|c| format!(" on core {c}")).unwrap_or_default(),
        if cfg.generic_xdp {
            "generic XDP"
        } else {
            "native XDP"
        },
        cfg.backend.name(),
        cfg.api_socket.display()
    ));
    control_loop(cfg, &stop, &utx, &mrx, lan_ifindex, wan_ifindex);
    stop.store(true, Ordering::Relaxed);
    drop(api);
    let (worker, r) = handle.join().expect("worker thread panicked");
    r.map_err(DaemonError::Worker)?;
    Ok(worker.snapshot())
}

/// Refreshes next hops from the kernel twice a second and asks the kernel to resolve the ones
/// workers miss (a datagram to the discard port makes it send ARP / neighbour solicitation).
fn control_loop(
    cfg: &DataplaneConfig,
    stop: &AtomicBool,
    updates: &SyncSender<WorkerUpdate>,
    missing: &Receiver<IpAddr>,
    lan_ifindex: u32,
    wan_ifindex: u32,
) {
    let mut solicited: HashMap<IpAddr, Instant> = HashMap::new();
    let mut next_refresh = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(hop) = missing.try_recv() {
            let due = solicited
                .get(&hop)
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
            if due {
                solicited.insert(hop, Instant::now());
                let bind: IpAddr = if hop.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    Ipv6Addr::UNSPECIFIED.into()
                };
                if let Ok(s) = UdpSocket::bind((bind, 0)) {
                    let _ = s.send_to(b"esprit neighbour probe", (hop, 9));
                }
                next_refresh = next_refresh.min(Instant::now() + Duration::from_millis(50));
            }
        }
        if Instant::now() >= next_refresh {
            for (port, c, idx) in [
                (Port::Lan, &cfg.lan, lan_ifindex),
                (Port::Wan, &cfg.wan, wan_ifindex),
            ] {
                let _ = updates.try_send(WorkerUpdate::Neighbours(port, merged_neighbours(c, idx)));
            }
            next_refresh = Instant::now() + Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The drop reasons a report may mention, for documentation and tests.
pub fn reasons() -> impl Iterator<Item = &'static str> {
    DropReason::ALL.iter().map(|r| r.name())
}
