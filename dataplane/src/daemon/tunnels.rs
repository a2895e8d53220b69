//! Tunnel interfaces at run time: the thread that moves the gateway's own packets between the
//! TUN devices and the workers and switches each device's carrier with its SAs. The routes
//! through them are followed by [`super::follower`].

use super::config::{TunnelConfig, TUNNEL_OVERHEAD};
use crate::kernel::tun::TunDevice;
use crate::worker::handoff::{self, Waker, SLOT};
use crate::worker::host::{HostLink, TunnelStatus};
use crate::worker::pipeline::TunnelPort;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Route notifications read from the kernel.
    pub route_messages: AtomicU64,
    /// Malformed route messages skipped.
    pub route_malformed: AtomicU64,
    /// Full reads of the kernel's table (at start, after lost notifications, periodic).
    pub route_dumps: AtomicU64,
    /// Times notifications were lost (ENOBUFS) and the table was read again.
    pub route_lost: AtomicU64,
}

impl TunnelStats {
    /// The route thread's counters, read now.
    pub fn route_counters(&self) -> RouteCounters {
        RouteCounters {
            routes: self.routes.load(Ordering::Relaxed),
            over_limit: self.routes_over_limit.load(Ordering::Relaxed),
            messages: self.route_messages.load(Ordering::Relaxed),
            malformed: self.route_malformed.load(Ordering::Relaxed),
            dumps: self.route_dumps.load(Ordering::Relaxed),
            lost: self.route_lost.load(Ordering::Relaxed),
        }
    }

    /// The counters now.
    pub fn counters(&self) -> TunnelCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TunnelCounters {
            read: get(&self.read),
            written: get(&self.written),
            no_sa: get(&self.no_sa),
            ring_full: get(&self.ring_full),
            write_errors: get(&self.write_errors),
        }
    }
}

/// The counters of the thread following the kernel's routes through tunnel interfaces
/// (decision 0025).
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteCounters {
    /// Kernel routes in the workers' table.
    pub routes: u64,
    /// Kernel routes left out because of `routing.max_routes`.
    pub over_limit: u64,
    /// Route notifications read.
    pub messages: u64,
    /// Malformed route messages skipped.
    pub malformed: u64,
    /// Full reads of the kernel's table.
    pub dumps: u64,
    /// Times notifications were lost (ENOBUFS).
    pub lost: u64,
}

/// A reading of [`TunnelStats`] (same fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Packets read from the interfaces.
    pub read: u64,
    /// Packets written to the interfaces.
    pub written: u64,
    /// Packets read while no SA towards the interface's peer existed.
    pub no_sa: u64,
    /// Packets dropped because a ring to a worker was full.
    pub ring_full: u64,
    /// Writes the kernel refused.
    pub write_errors: u64,
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
                crate::kernel::tun::hold_unreachable(a, len).map_err(|e| TunnelError {
                    name: c.name.clone(),
                    err: io::Error::new(
                        e.kind(),
                        format!("unreachable route under {a}/{len}: {e}"),
                    ),
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
